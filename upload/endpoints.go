package upload

import (
	"context"
	"sync"

	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/smithy-go"
	smithyauth "github.com/aws/smithy-go/auth"
	smithyendpoints "github.com/aws/smithy-go/endpoints"
)

// maxEndpoints bounds the endpoints remembered (about 1.2 KB each): one per bucket and its settings. Past it
// they are all forgotten and resolved again; with more buckets than that taking turns, each upload resolves its
// endpoint as it would without them.
const maxEndpoints = 1024

// endpoints remembers the endpoint S3's rules resolve for each set of parameters. The SDK evaluates those
// rules twice per PutObject (for the auth scheme, then for the request), which cost more than signing it,
// though for one bucket they always give the same answer. The object's key is left out of the parameters
// remembered: S3's rules do not read it (nor Prefix or CopySource); TestEndpointParametersAreKnown fails when
// the SDK's parameters change, so that this is looked at again.
type endpoints struct {
	rules s3.EndpointResolverV2
	mu    sync.Mutex
	known map[endpointKey]smithyendpoints.Endpoint
}

func newEndpoints(rules s3.EndpointResolverV2) *endpoints {
	return &endpoints{rules: rules, known: map[endpointKey]smithyendpoints.Endpoint{}}
}

// endpointKey is s3.EndpointParameters but the object's key, prefix and copy source, by value.
type endpointKey struct {
	bucket, region, endpoint string
	set, flags               uint16 // which of the optional strings and flags are set, and to what
}

// Bits of endpointKey's set and flags.
const (
	hasBucket = 1 << iota
	hasRegion
	hasEndpoint
	useFIPS
	useDualStack
	forcePathStyle
	accelerate
	useGlobalEndpoint
	useObjectLambdaEndpoint
	disableAccessPoints
	disableMultiRegionAccessPoints
	useArnRegion
	useS3ExpressControlEndpoint
	disableS3ExpressSessionAuth
)

func keyOf(p s3.EndpointParameters) endpointKey {
	var k endpointKey
	str := func(s *string, bit uint16) string {
		if s == nil {
			return ""
		}
		k.set |= bit
		return *s
	}
	flag := func(b *bool, bit uint16) {
		if b != nil {
			k.set |= bit
			if *b {
				k.flags |= bit
			}
		}
	}
	k.bucket, k.region, k.endpoint = str(p.Bucket, hasBucket), str(p.Region, hasRegion), str(p.Endpoint, hasEndpoint)
	flag(p.UseFIPS, useFIPS)
	flag(p.UseDualStack, useDualStack)
	flag(p.ForcePathStyle, forcePathStyle)
	flag(p.Accelerate, accelerate)
	flag(p.UseGlobalEndpoint, useGlobalEndpoint)
	flag(p.UseObjectLambdaEndpoint, useObjectLambdaEndpoint)
	flag(p.DisableAccessPoints, disableAccessPoints)
	flag(p.DisableMultiRegionAccessPoints, disableMultiRegionAccessPoints)
	flag(p.UseArnRegion, useArnRegion)
	flag(p.UseS3ExpressControlEndpoint, useS3ExpressControlEndpoint)
	flag(p.DisableS3ExpressSessionAuth, disableS3ExpressSessionAuth)
	return k
}

// ResolveEndpoint returns the endpoint the rules gave for p's parameters before, or asks them. An error is
// not remembered.
func (e *endpoints) ResolveEndpoint(ctx context.Context, p s3.EndpointParameters) (smithyendpoints.Endpoint, error) {
	k := keyOf(p)
	e.mu.Lock()
	end, ok := e.known[k]
	e.mu.Unlock()
	if ok {
		return copyEndpoint(end), nil
	}
	end, err := e.rules.ResolveEndpoint(ctx, p)
	if err != nil {
		return end, err
	}
	e.mu.Lock()
	if len(e.known) >= maxEndpoints {
		clear(e.known)
	}
	e.known[k] = copyEndpoint(end)
	e.mu.Unlock()
	return end, nil
}

// copyEndpoint copies what the SDK may change in an endpoint it was given: its properties, and in them the
// auth options and theirs (it merges them with its own, and sets signing names and regions in them).
func copyEndpoint(e smithyendpoints.Endpoint) smithyendpoints.Endpoint {
	c := smithyendpoints.Endpoint{URI: e.URI, Headers: e.Headers.Clone()}
	c.Properties.SetAll(&e.Properties)
	if opts, ok := smithyauth.GetAuthOptions(&e.Properties); ok {
		copied := make([]*smithyauth.Option, len(opts))
		for i, o := range opts {
			oc := *o
			oc.IdentityProperties, oc.SignerProperties = smithy.Properties{}, smithy.Properties{}
			oc.IdentityProperties.SetAll(&o.IdentityProperties)
			oc.SignerProperties.SetAll(&o.SignerProperties)
			copied[i] = &oc
		}
		smithyauth.SetAuthOptions(&c.Properties, copied)
	}
	return c
}
