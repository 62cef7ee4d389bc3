package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"
	"github.com/aws/smithy-go"

	"github.com/wiv/out_wivaudit/conf"
	"github.com/wiv/out_wivaudit/digest"
)

// runVerify checks, with the caller's own read access to the bucket, an organisation's signed digests and the
// objects they list.
func runVerify(e *env, c *command, args []string) int {
	fs := flags(e, c)
	bucket := fs.String("bucket", "", "the bucket the audit logs are delivered to (required)")
	org := fs.String("org", "", "the organisation's org_id, as in the object keys (required)")
	keyFile := fs.String("public-key", "", "the public key PEM wivaudit gave you; several keys in one file after a rotation (required)")
	prefix := fs.String("prefix", "", "the key prefix before {org_id}/, if the delivery has one (ends with /)")
	from := fs.String("from", "", "verify from this time (RFC 3339, e.g. 2026-11-29T00:00:00Z); default: the first digest")
	to := fs.String("to", "", "verify up to this time (RFC 3339); default: now")
	grace := fs.Duration("grace", digest.DefaultGrace, "how late a digest may be written after its interval ends before it counts as missing")
	region := fs.String("region", conf.DefaultRegion, "the bucket's region")
	endpoint := fs.String("endpoint", "", "S3 endpoint URL (an S3-compatible store)")
	plainHTTP := fs.Bool("allow-plain-http", false, "allow an http:// endpoint (local test servers)")
	if _, code, ok := parse(e, fs, args); !ok {
		return code
	}
	switch {
	case *bucket == "" || *org == "" || *keyFile == "":
		return usageError(e, fs, "--bucket, --org and --public-key are required")
	case *prefix != "" && !strings.HasSuffix(*prefix, "/"):
		return usageError(e, fs, "--prefix %q must end with /", *prefix)
	case strings.HasPrefix(*endpoint, "http://") && !*plainHTTP:
		return usageError(e, fs, "--endpoint %q uses plain HTTP; use https, or add --allow-plain-http for a local test server", *endpoint)
	}
	q := digest.Query{Org: *org, Prefix: *prefix, Now: e.now(), Grace: *grace}
	if code, ok := parseTimes(e, fs, timeFlag{"--from", *from, &q.From}, timeFlag{"--to", *to, &q.To}); !ok {
		return code
	}
	pem, err := os.ReadFile(*keyFile)
	if err == nil {
		q.Keys, err = digest.ParsePublicKeys(pem)
	}
	if err != nil {
		return usageError(e, fs, "--public-key %s: %v", *keyFile, err)
	}
	cfg, err := config.LoadDefaultConfig(e.ctx, config.WithRegion(*region))
	if err != nil {
		fmt.Fprintf(e.stderr, "%s: load AWS configuration: %v\n", fs.Name(), err)
		return exitUsage
	}
	client := s3.NewFromConfig(cfg, func(o *s3.Options) {
		// The verifier hashes every object itself: the SDK's note that it did not is noise.
		o.DisableLogOutputChecksumValidationSkipped = true
		if *endpoint != "" {
			o.BaseEndpoint, o.UsePathStyle = aws.String(*endpoint), true
		}
	})
	rep := digest.Verify(e.ctx, bucketReader{client, *bucket}, q)
	return printReport(e, rep, fmt.Sprintf("s3://%s/%s%s/", *bucket, *prefix, *org))
}

// printReport prints one line per finding, then a summary and the verdict, and returns the exit code.
func printReport(e *env, rep digest.Report, where string) int {
	n := map[digest.Severity]int{}
	for _, f := range rep.Findings {
		fmt.Fprintln(e.stdout, f)
		n[f.Severity]++
	}
	fmt.Fprintf(e.stdout, "checked %s: %d digests verified (chains: %s), %d listed objects present with their SHA-256; %d problems, %d could not be verified, %d notices\n",
		where, rep.Digests, strings.Join(rep.Chains, ", "), rep.Objects, n[digest.Problem], n[digest.CannotVerify], n[digest.Notice])
	code := rep.Code()
	fmt.Fprintf(e.stdout, "result: %s\n", map[int]string{0: "verified (exit 0)",
		1: "PROBLEMS: evidence missing or contradicted, see the PROBLEM lines (exit 1)",
		2: "could not verify: something could not be read, see the CANNOT VERIFY lines (exit 2)"}[code])
	return code
}

// bucketReader is digest.Reader over S3 with ListBucket and GetObject.
type bucketReader struct {
	c      *s3.Client
	bucket string
}

// List asks for the prefix without its last "/" and keeps the keys under the whole prefix: the same keys, and
// S3-compatible servers that check a "/" in a query value against the wrong signature (moto 5) answer too.
func (r bucketReader) List(ctx context.Context, prefix string) ([]digest.ObjectInfo, error) {
	var out []digest.ObjectInfo
	pages := s3.NewListObjectsV2Paginator(r.c, &s3.ListObjectsV2Input{Bucket: aws.String(r.bucket), Prefix: aws.String(strings.TrimSuffix(prefix, "/"))})
	for pages.HasMorePages() {
		page, err := pages.NextPage(ctx)
		if err != nil {
			return nil, err
		}
		for _, o := range page.Contents {
			if !strings.HasPrefix(aws.ToString(o.Key), prefix) {
				continue
			}
			out = append(out, digest.ObjectInfo{Key: aws.ToString(o.Key), Size: aws.ToInt64(o.Size), LastModified: aws.ToTime(o.LastModified)})
		}
	}
	return out, nil
}

func (r bucketReader) Open(ctx context.Context, key string) (io.ReadCloser, map[string]string, error) {
	out, err := r.c.GetObject(ctx, &s3.GetObjectInput{Bucket: aws.String(r.bucket), Key: aws.String(key)})
	var missing *types.NoSuchKey
	var apiErr smithy.APIError
	var status interface{ HTTPStatusCode() int }
	if errors.As(err, &missing) || errors.As(err, &apiErr) && apiErr.ErrorCode() == "NoSuchKey" ||
		errors.As(err, &status) && status.HTTPStatusCode() == http.StatusNotFound {
		return nil, nil, fmt.Errorf("%s: %w", key, digest.ErrNotFound)
	}
	if err != nil {
		return nil, nil, err
	}
	return out.Body, out.Metadata, nil
}
