package customerkit

import (
	"os"
	"slices"
	"strconv"
	"testing"

	"go.yaml.in/yaml/v3"
)

// child is the value under key of a YAML mapping node, or nil.
func child(n *yaml.Node, key string) *yaml.Node {
	for i := 0; n != nil && i+1 < len(n.Content); i += 2 {
		if n.Content[i].Value == key {
			return n.Content[i+1]
		}
	}
	return nil
}

// TestIgnoredBucketSettingsCoverTheTemplate: each property of the template's bucket is either applied by moto's
// CloudFormation or put by PutIgnoredBucketSettings (LoggingConfiguration is off without an AccessLogBucket),
// with the template's default retention, and the bucket policy the workaround leaves out is the TLS-only Deny.
func TestIgnoredBucketSettingsCoverTheTemplate(t *testing.T) {
	data, err := os.ReadFile("../../deploy/customer/cloudformation.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var doc yaml.Node
	if err := yaml.Unmarshal(data, &doc); err != nil {
		t.Fatal(err)
	}
	root := doc.Content[0]
	props := child(child(child(root, "Resources"), "AuditLogsBucket"), "Properties")
	if props == nil {
		t.Fatal("no Resources.AuditLogsBucket.Properties in the template")
	}
	covered := []string{"BucketName", "BucketEncryption", "Tags", "LoggingConfiguration"}
	for _, s := range ignoredBucketSettings {
		covered = append(covered, s.property)
	}
	for i := 0; i < len(props.Content); i += 2 {
		if p := props.Content[i].Value; !slices.Contains(covered, p) {
			t.Errorf("the template's bucket sets %s, which moto's CloudFormation ignores and no workaround puts", p)
		}
	}
	days := child(child(child(root, "Parameters"), "NoncurrentVersionExpirationDays"), "Default")
	if days == nil || days.Value != strconv.Itoa(NoncurrentVersionExpirationDays) {
		t.Errorf("the template's NoncurrentVersionExpirationDays default is %v, the workaround puts %d", days, NoncurrentVersionExpirationDays)
	}
	var policies []string
	for i, r := 0, child(root, "Resources"); i < len(r.Content); i += 2 {
		if child(r.Content[i+1], "Type").Value == "AWS::S3::BucketPolicy" {
			var s []Statement
			if err := child(child(r.Content[i+1], "Properties"), "PolicyDocument").Decode(&struct{ Statement *[]Statement }{&s}); err != nil {
				t.Fatal(err)
			}
			for _, st := range s {
				if !st.tlsOnlyDeny() {
					policies = append(policies, st.Sid)
				}
			}
		}
	}
	if len(policies) > 0 {
		t.Errorf("the template's bucket policy has statements other than the TLS-only Deny, which the workaround does not put: %v", policies)
	}
}
