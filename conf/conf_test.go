package conf

import (
	"strings"
	"testing"
	"time"
)

func valid() Map {
	return Map{"Bucket": "your-company-audit-logs", "Role_ARN": "arn:aws:iam::123456789012:role/wiv-audit-logs-sync",
		"External_ID": "681d1539-fd63-4e6e-9426-fccdfdae1862"}
}

func TestDefaults(t *testing.T) {
	c, err := Parse(Map{"bucket": "b-1"})
	if err != nil {
		t.Fatal(err)
	}
	want := Config{Bucket: "b-1", Region: "us-east-1", RoleSessionName: "wivaudit", StoreDir: DefaultStoreDir,
		TotalFileSize: 50_000_000, UploadTimeout: 10 * time.Minute, OrgIDKey: "org_id",
		CannedACL: "bucket-owner-full-control", UploadWorkers: 4, ShutdownTimeout: 4 * time.Second,
		ConditionalWrites: true, RequestTimeout: 30 * time.Second, SessionDuration: time.Hour,
		RefreshWindow: 5 * time.Minute, RefreshJitter: 2 * time.Minute, HoldRetryInterval: 5 * time.Minute,
		QuarantineAfter: 7 * 24 * time.Hour, QuarantineLimitSize: 1_000_000_000, DeadLetterLimitSize: 100_000_000,
		MaxRecordSize: 1_000_000, CompressionLevel: 1, UnlistedOrgs: "default", DestinationsRefresh: 10 * time.Second,
		StatusInterval: 5 * time.Minute}
	if *c != want {
		t.Errorf("got %+v\nwant %+v", *c, want)
	}
}

func TestSettings(t *testing.T) {
	src := valid()
	for k, v := range map[string]string{"REGION": "eu-west-1", "role_session_name": "wiv-prod", "Endpoint": "http://127.0.0.1:5000",
		"STS_Endpoint": "https://sts.eu-west-1.amazonaws.com", "Store_Dir": "/data/wiv", "Total_File_Size": "1.5M",
		"Upload_Timeout": "90", "Org_ID_Key": "tenant", "Kind_Key": "log_kind", "Key_Prefix": "audit/v1/",
		"Canned_ACL": "NONE", "Upload_Workers": "8", "Shutdown_Timeout": "0", "Store_Dir_Limit_Size": "2G",
		"Conditional_Writes": "Off", "Request_Timeout": "5s", "Role_Session_Duration": "2h",
		"Credential_Refresh_Window": "10m", "Credential_Refresh_Jitter": "0", "Hold_Retry_Interval": "30s",
		"Quarantine_After": "1d", "Quarantine_Limit_Size": "0", "Dead_Letter_Limit_Size": "0", "Status_Interval": "0", "Allow_Plain_HTTP": "yes"} {
		src[k] = v
	}
	c, err := Parse(src)
	if err != nil {
		t.Fatal(err)
	}
	if c.Region != "eu-west-1" || c.RoleSessionName != "wiv-prod" || c.TotalFileSize != 1_500_000 ||
		c.UploadTimeout != 90*time.Second || c.OrgIDKey != "tenant" || c.KindKey != "log_kind" ||
		c.KeyPrefix != "audit/v1/" || c.CannedACL != "" || c.UploadWorkers != 8 || c.ShutdownTimeout != 0 ||
		c.Endpoint != "http://127.0.0.1:5000" || c.StoreDir != "/data/wiv" || c.StoreDirLimitSize != 2e9 ||
		c.ConditionalWrites || c.RequestTimeout != 5*time.Second || c.SessionDuration != 2*time.Hour ||
		c.RefreshWindow != 10*time.Minute || c.RefreshJitter != 0 || c.HoldRetryInterval != 30*time.Second ||
		c.QuarantineAfter != 24*time.Hour || c.QuarantineLimitSize != 0 || c.DeadLetterLimitSize != 0 || c.StatusInterval != 0 || !c.AllowPlainHTTP {
		t.Errorf("settings not applied: %+v", c)
	}
}

func TestInvalid(t *testing.T) {
	cases := []struct {
		key, value, want string
	}{
		{"Bucket", "", "Bucket: not set"},
		{"Bucket", "s3://bucket/path", `Bucket: "s3://bucket/path" is not a valid S3 bucket name`},
		{"Region", "Mars", `Region: "Mars" is not an AWS region`},
		{"Role_ARN", "arn:aws:iam::123:role/x", `Role_ARN: "arn:aws:iam::123:role/x" is not an IAM role ARN`},
		{"Role_ARN", "arn:aws:s3:::bucket", "is not an IAM role ARN"},
		{"External_ID", "", "External_ID: not set although Role_ARN is"},
		{"External_ID", "x", "External_ID: the value (not shown) is not a valid External ID"},
		{"Role_Session_Name", "has space", `Role_Session_Name: "has space"`},
		{"Endpoint", "localhost:9000", `Endpoint: "localhost:9000" is not a URL`},
		{"STS_Endpoint", "ftp://x", `STS_Endpoint: "ftp://x" is not a URL`},
		{"Endpoint", "http://127.0.0.1:9000", `Endpoint: "http://127.0.0.1:9000" uses plain HTTP`},
		{"STS_Endpoint", "http://sts.local", `STS_Endpoint: "http://sts.local" uses plain HTTP`},
		{"Store_Dir", "var/lib", `Store_Dir: "var/lib" is not an absolute path`},
		{"Total_File_Size", "12XB", `Total_File_Size: "12XB" is not a size`},
		{"Total_File_Size", "10", `Total_File_Size: "10" is out of range`},
		{"Total_File_Size", "2G", `Total_File_Size: "2G" is out of range`},
		{"Upload_Timeout", "ten minutes", `Upload_Timeout: "ten minutes" is not a duration`},
		{"Upload_Timeout", "0", `Upload_Timeout: "0" is out of range`},
		{"Upload_Timeout", "2d", `Upload_Timeout: "2d" is out of range`},
		{"Key_Prefix", "audit", `Key_Prefix: "audit" must end with "/"`},
		{"Key_Prefix", "/audit/", `must not start with "/"`},
		{"Key_Prefix", "a/../b/", `"a/../b/" has an empty, ".", ".."`},
		{"Canned_ACL", "public-read", `Canned_ACL: "public-read" is not accepted`},
		{"Upload_Workers", "0", `Upload_Workers: "0" is not a whole number from 1 to 64`},
		{"Org_ID_Key", "a\x01b", "Org_ID_Key"},
		{"Store_Dir_Limit_Size", "5K", "Store_Dir_Limit_Size: 5000 bytes is too small"},
		{"Conditional_Writes", "maybe", `Conditional_Writes: "maybe" is not a switch`},
		{"Role_Session_Duration", "5m", `Role_Session_Duration: "5m" is out of range`},
		{"Credential_Refresh_Window", "1h", "Credential_Refresh_Window: 1h0m0s must be shorter than Role_Session_Duration"},
		{"Credential_Refresh_Jitter", "6m", "Credential_Refresh_Jitter: 6m0s must not exceed Credential_Refresh_Window"},
		{"Request_Timeout", "0", `Request_Timeout: "0" is out of range`},
		{"Dead_Letter_Limit_Size", "-1", `Dead_Letter_Limit_Size: "-1" is not a size`},
		{"Status_Interval", "2d", `Status_Interval: "2d" is out of range`},
		{"Max_Record_Size", "100M", `Max_Record_Size: "100M" is out of range`},
		{"Unlisted_Orgs", "drop", `Unlisted_Orgs: "drop" is not one of default, hold, deadletter`},
		{"Destinations_File", "dest.json", `Destinations_File: "dest.json" is not an absolute path`},
	}
	for _, c := range cases {
		t.Run(c.key+"="+c.value, func(t *testing.T) {
			src := valid()
			src[c.key] = c.value
			_, err := Parse(src)
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Errorf("error %v, want it to contain %q", err, c.want)
			}
		})
	}
}

func TestErrorsListEveryProblemAndHideTheExternalID(t *testing.T) {
	_, err := Parse(Map{"Role_ARN": "nope", "External_ID": "secret value!", "Upload_Timeout": "x"})
	if err == nil {
		t.Fatal("no error")
	}
	msg := err.Error()
	for _, key := range []string{"Bucket:", "Role_ARN:", "External_ID:", "Upload_Timeout:"} {
		if !strings.Contains(msg, key) {
			t.Errorf("%q missing from %q", key, msg)
		}
	}
	if strings.Contains(msg, "secret value") {
		t.Errorf("the External ID leaked: %s", msg)
	}
}

func TestExternalIDWithoutRole(t *testing.T) {
	_, err := Parse(Map{"Bucket": "b-1", "External_ID": "681d1539-fd63"})
	if err == nil || !strings.Contains(err.Error(), "Role_ARN: not set although External_ID is") {
		t.Errorf("got %v", err)
	}
}

func TestParseSize(t *testing.T) {
	cases := map[string]int64{"1": 1, "50": 50, "1000": 1000, "1K": 1000, "1kb": 1000, "1KB": 1000, "5m": 5_000_000,
		"1.5M": 1_500_000, "2g": 2_000_000_000, "1GB": 1_000_000_000, " 7k ": 7000}
	for in, want := range cases {
		if got, err := ParseSize(in); err != nil || got != want {
			t.Errorf("ParseSize(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
	for _, in := range []string{"", "K", "12XB", "1KiB", "-1", "1.2.3M", "1T"} {
		if _, err := ParseSize(in); err == nil {
			t.Errorf("ParseSize(%q) accepted", in)
		}
	}
}

func TestParseDuration(t *testing.T) {
	cases := map[string]time.Duration{"10": 10 * time.Second, "10s": 10 * time.Second, "5m": 5 * time.Minute,
		"2H": 2 * time.Hour, "1d": 24 * time.Hour, "0": 0}
	for in, want := range cases {
		if got, err := ParseDuration(in); err != nil || got != want {
			t.Errorf("ParseDuration(%q) = %v, %v; want %v", in, got, err, want)
		}
	}
	for _, in := range []string{"", "m", "1.5m", "-1s", "10ms", "ten"} {
		if _, err := ParseDuration(in); err == nil {
			t.Errorf("ParseDuration(%q) accepted", in)
		}
	}
}

func TestBucketOptionalWithDestinationsFile(t *testing.T) {
	if _, err := Parse(Map{"Destinations_File": "/etc/wiv/destinations.json", "Unlisted_Orgs": "hold"}); err != nil {
		t.Errorf("destinations file without a default: %v", err)
	}
	_, err := Parse(Map{"Destinations_File": "/etc/wiv/destinations.json"})
	if err == nil || !strings.Contains(err.Error(), "Bucket: not set, but Unlisted_Orgs is default") {
		t.Errorf("got %v", err)
	}
}

func TestParseDestinations(t *testing.T) {
	c, _ := Parse(Map{"Bucket": "default-bucket", "Region": "eu-west-1", "Key_Prefix": "audit/"})
	good := `[
	  {"org_id":"3f7539ad-7f8b-4688-aee0-b9dbf2db728e","bucket_name":"acme-audit","role_arn":"arn:aws:iam::111122223333:role/wiv-audit-logs-sync","external_id":"681d1539-fd63-4e6e-9426-fccdfdae1862"},
	  {"org_id":"org-b","bucket_name":"b-audit","role_arn":"arn:aws:iam::444455556666:role/r","external_id":"ext-b-0001","region":"us-west-2","key_prefix":"wiv/"}
	]`
	d, err := ParseDestinations([]byte(good), c)
	if err != nil {
		t.Fatal(err)
	}
	if a := d["3f7539ad-7f8b-4688-aee0-b9dbf2db728e"]; a.Region != "eu-west-1" || a.KeyPrefix != "audit/" || a.Bucket != "acme-audit" {
		t.Errorf("defaults not applied: %+v", a)
	}
	if b := d["org-b"]; b.Region != "us-west-2" || b.KeyPrefix != "wiv/" {
		t.Errorf("%+v", b)
	}
	const secret = "s3cr3t-external-id"
	cases := []struct{ file, want string }{
		{`{"org_id":"x"}`, "not a JSON array"},
		{`[{"org_id":"a","bucket":"x"}]`, `unknown field "bucket"`},
		{`[] []`, "unexpected data after the JSON array"},
		{`[{"org_id":"../x","bucket_name":"bb-1","role_arn":"arn:aws:iam::111122223333:role/r","external_id":"abc"}]`, `entry 0 (org_id "../x"): org_id: not a valid organisation ID`},
		{`[{"org_id":"a","bucket_name":"BAD","role_arn":"arn:aws:iam::111122223333:role/r","external_id":"abc"}]`, `entry 0 (org_id "a"): bucket_name: "BAD" is not a valid S3 bucket name`},
		{`[{"org_id":"a","bucket_name":"bb-1","role_arn":"nope","external_id":"abc"}]`, `entry 0 (org_id "a"): role_arn: "nope" is not an IAM role ARN`},
		{`[{"org_id":"a","bucket_name":"bb-1","role_arn":"arn:aws:iam::111122223333:role/r","external_id":"` + secret + ` !"}]`, `entry 0 (org_id "a"): external_id: the value (not shown)`},
		{`[{"org_id":"a","bucket_name":"bb-1","role_arn":"arn:aws:iam::111122223333:role/r"}]`, `entry 0 (org_id "a"): external_id:`},
		{`[{"org_id":"a","bucket_name":"bb-1","role_arn":"arn:aws:iam::111122223333:role/r","external_id":"abc","region":"mars"}]`, `region: "mars"`},
		{`[{"org_id":"a","bucket_name":"bb-1","role_arn":"arn:aws:iam::111122223333:role/r","external_id":"abc","key_prefix":"x"}]`, `key_prefix: "x" must end with "/"`},
		{`[{"org_id":"a","bucket_name":"bb-1","role_arn":"arn:aws:iam::111122223333:role/r","external_id":"abc"},{"org_id":"a","bucket_name":"bb-2","role_arn":"arn:aws:iam::111122223333:role/r","external_id":"abc"}]`, `entry 1 (org_id "a"): org_id: listed twice`},
	}
	for _, tc := range cases {
		_, err := ParseDestinations([]byte(tc.file), c)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: got %v, want %q", tc.file, err, tc.want)
		}
		if err != nil && strings.Contains(err.Error(), secret) {
			t.Errorf("the External ID leaked: %v", err)
		}
	}
}

func TestValidOrgID(t *testing.T) {
	ok := []string{"3f7539ad-7f8b-4688-aee0-b9dbf2db728e", "a", "Org_1.prod", strings.Repeat("a", MaxOrgIDLen)}
	bad := []string{"", "..", ".", ".hidden", "a/b", `a\b`, "a..b", "a\x00b", "a\nb", "-lead", "_lead",
		strings.Repeat("a", MaxOrgIDLen+1), "a b", "a\u2215b", "ａbc", "a\u200bb", "org/../x", "a:b", "a~b"}
	for _, id := range ok {
		if !ValidOrgID(id) {
			t.Errorf("%q refused", id)
		}
	}
	for _, id := range bad {
		if ValidOrgID(id) {
			t.Errorf("%q accepted", id)
		}
	}
}
