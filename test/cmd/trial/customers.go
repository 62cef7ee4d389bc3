package main

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"

	"github.com/wiv/out_wivaudit/test/backend"
	"github.com/wiv/out_wivaudit/test/customerkit"
	"github.com/wiv/out_wivaudit/test/sample"
)

// customer is one organisation of the sample events whose customer set up its bucket and role with the kit.
type customer struct {
	sample.Org
	how         string // how the kit was deployed, for the summary
	dest        customerkit.Destination
	workarounds []customerkit.Workaround
	reader      []string // KEY=VALUE: the customer's own read-only credentials, for verify
}

// deploy sets up the customers as they would with the customer kit: the first organisation with the
// CloudFormation template, the second with the Terraform module, both at once (Terraform takes the longest).
// Each trusts the platform's identity, then gets the moto workarounds and a read-only user for verify.
func deploy(ctx context.Context, m *backend.Moto, p *backend.Platform, kit, dir, mirror string) ([]*customer, error) {
	cfn := &customer{Org: sample.Orgs[0], how: "CloudFormation stack " + sample.Orgs[0].Slug}
	tf := &customer{Org: sample.Orgs[1], how: "Terraform in " + display(filepath.Join(dir, "terraform"))}
	errs := make(chan error, 2)
	go func() {
		var err error
		cfn.dest, err = customerkit.DeployStack(ctx, m, customerkit.Stack{Template: filepath.Join(kit, "cloudformation.yaml"),
			Name: cfn.Slug, ExternalID: cfn.ExternalID, TrustedPrincipal: p.UserARN, RoleName: cfn.Role, BucketName: cfn.Bucket})
		errs <- err
	}()
	go func() {
		var err error
		tf.dest, err = customerkit.ApplyModule(ctx, m, customerkit.Module{Source: filepath.Join(kit, "terraform"),
			Dir: filepath.Join(dir, "terraform"), Mirror: mirror,
			ExternalID: tf.ExternalID, TrustedPrincipal: p.UserARN, RoleName: tf.Role, BucketName: tf.Bucket})
		errs <- err
	}()
	var failed []string
	for range 2 {
		if err := <-errs; err != nil {
			failed = append(failed, err.Error())
		}
	}
	if len(failed) > 0 {
		return nil, fmt.Errorf("the customer kit: %s", strings.Join(failed, "; "))
	}
	customers := []*customer{cfn, tf}
	for _, c := range customers {
		var err error
		if c.workarounds, err = customerkit.Apply(ctx, m, c.dest); err != nil {
			return nil, err
		}
		env, err := m.AddReader(ctx, c.Slug+"-auditor", c.dest.Bucket)
		if err != nil {
			return nil, err
		}
		for _, kv := range env {
			if strings.HasPrefix(kv, "AWS_ACCESS_KEY_ID=") || strings.HasPrefix(kv, "AWS_SECRET_ACCESS_KEY=") {
				c.reader = append(c.reader, kv)
			}
		}
	}
	return customers, nil
}

// prefix is where the customer's objects are: {key_prefix}{org_id}/.
func (c *customer) prefix() string { return c.KeyPrefix + c.ID + "/" }

// entries are the destinations file's entries: what each customer submitted in guide step 3.3.
func entries(customers []*customer) []sample.Entry {
	var out []sample.Entry
	for _, c := range customers {
		out = append(out, sample.Entry{Org: c.ID, Bucket: c.dest.Bucket, RoleARN: c.dest.RoleARN, ExternalID: c.dest.ExternalID,
			Region: c.dest.Region, KeyPrefix: c.KeyPrefix})
	}
	return out
}
