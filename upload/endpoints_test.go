package upload

import (
	"context"
	"reflect"
	"slices"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	smithyauth "github.com/aws/smithy-go/auth"
	smithyendpoints "github.com/aws/smithy-go/endpoints"
	smithyhttp "github.com/aws/smithy-go/transport/http"
)

// TestEndpointParametersAreKnown: endpointKey holds every parameter of S3's endpoint rules but the object's
// key, prefix and copy source, which the rules do not read. A new SDK that adds one fails here: add it to
// endpointKey, or to the ones left out once its rules are seen not to read it.
func TestEndpointParametersAreKnown(t *testing.T) {
	known := []string{"Bucket", "Region", "Endpoint", "UseFIPS", "UseDualStack", "ForcePathStyle", "Accelerate",
		"UseGlobalEndpoint", "UseObjectLambdaEndpoint", "DisableAccessPoints", "DisableMultiRegionAccessPoints",
		"UseArnRegion", "UseS3ExpressControlEndpoint", "DisableS3ExpressSessionAuth", "Key", "Prefix", "CopySource"}
	typ := reflect.TypeFor[s3.EndpointParameters]()
	var got []string
	for i := range typ.NumField() {
		got = append(got, typ.Field(i).Name)
	}
	slices.Sort(got)
	slices.Sort(known)
	if !slices.Equal(got, known) {
		t.Fatalf("s3.EndpointParameters has fields %v; endpointKey knows %v", got, known)
	}
}

// countingRules counts the evaluations of S3's own endpoint rules.
type countingRules struct {
	rules s3.EndpointResolverV2
	n     atomic.Int64
}

func (c *countingRules) ResolveEndpoint(ctx context.Context, p s3.EndpointParameters) (smithyendpoints.Endpoint, error) {
	c.n.Add(1)
	return c.rules.ResolveEndpoint(ctx, p)
}

// TestEndpointsAreResolvedOncePerBucket: the endpoints remembered are those S3's rules give, for any key; the
// rules are asked once per bucket and settings; what a caller changes in the endpoint it got does not reach
// the next caller's.
func TestEndpointsAreResolvedOncePerBucket(t *testing.T) {
	rules := s3.NewDefaultEndpointResolverV2()
	counting := &countingRules{rules: rules}
	e := newEndpoints(counting)
	ctx := context.Background()
	shapes := []s3.EndpointParameters{
		{Bucket: aws.String("acme-audit"), Region: aws.String("eu-west-1")},
		{Bucket: aws.String("acme-audit"), Region: aws.String("us-east-1"), UseFIPS: aws.Bool(true)},
		{Bucket: aws.String("acme-audit"), Region: aws.String("us-east-1"), UseDualStack: aws.Bool(true)},
		{Bucket: aws.String("acme-audit"), Region: aws.String("us-east-1"), Endpoint: aws.String("http://127.0.0.1:9000"), ForcePathStyle: aws.Bool(true)},
		{Bucket: aws.String("other.bucket"), Region: aws.String("us-east-1")},
	}
	for i, p := range shapes {
		for _, key := range []string{"org-1/org-audit-logs-1.json.gz", "org-2/api-audit-logs-2.json.gz"} {
			p.Key = aws.String(key)
			want, err := rules.ResolveEndpoint(ctx, p)
			if err != nil {
				t.Fatalf("shape %d: %v", i, err)
			}
			got, err := e.ResolveEndpoint(ctx, p)
			if err != nil {
				t.Fatalf("shape %d: %v", i, err)
			}
			if got.URI.String() != want.URI.String() || !reflect.DeepEqual(got.Headers, want.Headers) {
				t.Errorf("shape %d: %s, want %s", i, got.URI.String(), want.URI.String())
			}
			gotOpts, _ := smithyauth.GetAuthOptions(&got.Properties)
			wantOpts, _ := smithyauth.GetAuthOptions(&want.Properties)
			if len(gotOpts) != len(wantOpts) {
				t.Fatalf("shape %d: %d auth options, want %d", i, len(gotOpts), len(wantOpts))
			}
			for j := range gotOpts {
				name, _ := smithyhttp.GetSigV4SigningName(&gotOpts[j].SignerProperties)
				wantName, _ := smithyhttp.GetSigV4SigningName(&wantOpts[j].SignerProperties)
				if gotOpts[j].SchemeID != wantOpts[j].SchemeID || name != wantName {
					t.Errorf("shape %d: auth option %s (%s), want %s (%s)", i, gotOpts[j].SchemeID, name, wantOpts[j].SchemeID, wantName)
				}
				smithyhttp.SetSigV4SigningName(&gotOpts[j].SignerProperties, "changed")
				gotOpts[j].SchemeID = "changed"
			}
		}
	}
	if n := counting.n.Load(); n != int64(len(shapes)) {
		t.Errorf("the rules were asked %d times for %d shapes, each with two keys", n, len(shapes))
	}
	again, _ := e.ResolveEndpoint(ctx, shapes[0])
	opts, _ := smithyauth.GetAuthOptions(&again.Properties)
	for _, o := range opts {
		if name, _ := smithyhttp.GetSigV4SigningName(&o.SignerProperties); o.SchemeID == "changed" || name == "changed" {
			t.Errorf("a change to an endpoint given out reached the one remembered: %s, %s", o.SchemeID, name)
		}
	}
}

// TestEndpointsAreSafeForConcurrentUse, under -race: uploads resolve and change their endpoints at once.
func TestEndpointsAreSafeForConcurrentUse(t *testing.T) {
	e := newEndpoints(s3.NewDefaultEndpointResolverV2())
	var wg sync.WaitGroup
	for w := range 8 {
		wg.Go(func() {
			for i := range 200 {
				p := s3.EndpointParameters{Bucket: aws.String("b"), Region: aws.String([]string{"eu-west-1", "us-east-1"}[(w+i)%2])}
				got, err := e.ResolveEndpoint(context.Background(), p)
				if err != nil {
					t.Error(err)
					return
				}
				opts, _ := smithyauth.GetAuthOptions(&got.Properties)
				for _, o := range opts {
					smithyhttp.SetSigV4SigningName(&o.SignerProperties, "s3")
				}
			}
		})
	}
	wg.Wait()
}
