package upload

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"

	"github.com/wiv/out_wivaudit/conf"
)

func TestReassumeIsLimitedPerDestination(t *testing.T) {
	c, _ := conf.Parse(conf.Map{"Org_ID": "org-a", "Bucket": "b-1"})
	cl, err := New(context.Background(), c)
	if err != nil {
		t.Fatal(err)
	}
	a := conf.Destination{Bucket: "b-a", RoleARN: "arn:aws:iam::111122223333:role/a", ExternalID: "ext-a"}
	b := conf.Destination{Bucket: "b-b", RoleARN: "arn:aws:iam::444455556666:role/b", ExternalID: "ext-b"}
	now := time.Now()
	if !cl.MayReassume(a, now) || !cl.Reassume(a, now) {
		t.Error("a's session: the first drop was refused")
	}
	if cl.MayReassume(a, now.Add(time.Second)) || cl.Reassume(a, now.Add(time.Second)) {
		t.Error("a's session: a second drop within 30 s was allowed")
	}
	if !cl.Reassume(b, now.Add(time.Second)) {
		t.Error("b's session was refused because of a's")
	}
	if !cl.MayReassume(a, now.Add(reassumeEvery)) || !cl.Reassume(a, now.Add(reassumeEvery)) {
		t.Error("a's session could not be dropped again after 30 s")
	}
	if none := (conf.Destination{Bucket: "b-1"}); cl.MayReassume(none, now) || cl.Reassume(none, now) {
		t.Error("a destination without a role has no session to drop")
	}
}

// script is a credentials provider that answers with its errors in turn (nil: credentials).
type script struct{ errs []error }

func (s *script) Retrieve(context.Context) (aws.Credentials, error) {
	err := s.errs[0]
	s.errs = s.errs[1:]
	return aws.Credentials{AccessKeyID: "AKIDEXAMPLE"}, err
}

func TestRoleCallsAreCounted(t *testing.T) {
	var counts RoleCounts
	p := &counted{provider: &script{errs: []error{errors.New("AccessDenied"), nil, nil, errors.New("timeout"), nil}}, counts: &counts}
	for range 5 {
		p.Retrieve(context.Background())
	}
	if a, f, r := counts.Assumed.Load(), counts.Failed.Load(), counts.Renewed.Load(); a != 3 || f != 2 || r != 2 {
		t.Errorf("assumed %d, failed %d, renewed %d; want 3, 2, 2", a, f, r)
	}
}
