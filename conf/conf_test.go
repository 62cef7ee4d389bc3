package conf

import (
	"errors"
	"fmt"
	"regexp"
	"strings"
	"testing"
	"time"
)

func valid() Map {
	return Map{"Org_ID": "3f7539ad-7f8b-4688-aee0-b9dbf2db728e", "Bucket": "your-company-audit-logs",
		"Role_ARN": "arn:aws:iam::123456789012:role/wiv-audit-logs-sync", "External_ID": "681d1539-fd63-4e6e-9426-fccdfdae1862"}
}

func TestDefaults(t *testing.T) {
	c, err := Parse(Map{"org_id": "org-a", "bucket": "b-1"})
	if err != nil {
		t.Fatal(err)
	}
	c.settings = ""
	want := Config{OrgID: "org-a", Bucket: "b-1", Region: "us-east-1", RoleSessionName: "wivaudit", StoreDir: DefaultStoreDir,
		TotalFileSize: 50_000_000, UploadTimeout: 10 * time.Minute, OrgIDKey: "org_id",
		CannedACL: "bucket-owner-full-control", UploadWorkers: 4, ShutdownTimeout: 4 * time.Second,
		ConditionalWrites: true, RequestTimeout: 30 * time.Second, SessionDuration: time.Hour,
		RefreshWindow: 5 * time.Minute, RefreshJitter: 2 * time.Minute, HoldRetryInterval: 5 * time.Minute,
		QuarantineAfter: 7 * 24 * time.Hour, QuarantineLimitSize: 1_000_000_000, DeadLetterLimitSize: 100_000_000,
		MaxRecordSize: 1_000_000, CompressionLevel: 1, UnlistedOrgs: "hold", DestinationsRefresh: 10 * time.Second,
		StatusInterval: 5 * time.Minute, LedgerLimitSize: 100_000_000, DigestInterval: time.Hour}
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
		{"Bucket", "", "Bucket: not set although Org_ID is"},
		{"Org_ID", "a/b", `Org_ID: "a/b" is not a valid organisation ID`},
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
		{"Ledger_Limit_Size", "64K", "Ledger_Limit_Size: 64000 bytes is too small for the delivery ledger"},
		{"Max_Record_Size", "100M", `Max_Record_Size: "100M" is out of range`},
		{"Unlisted_Orgs", "drop", `Unlisted_Orgs: "drop" is not one of hold, deadletter, archive`},
		{"Unlisted_Orgs", "default", "Unlisted_Orgs: default is no longer accepted"},
		{"Account_ID", "1111-2222-3333", `Account_ID: "1111-2222-3333" is not an AWS account ID (12 digits`},
		{"Account_ID", "11112222333", `Account_ID: "11112222333" is not an AWS account ID`},
		{"Metrics_Listen", "2021", `Metrics_Listen: "2021" is not host:port`},
		{"Metrics_Listen", "127.0.0.1:0", `Metrics_Listen: "127.0.0.1:0" is not host:port with a port from 1 to 65535`},
		{"Metrics_Listen", ":70000", `Metrics_Listen: ":70000" is not host:port`},
		{"Metrics_Listen", "http://127.0.0.1:2021", `Metrics_Listen: "http://127.0.0.1:2021" is not host:port`},
		{"Metrics_Listen", "bad_host!:2021", `Metrics_Listen: "bad_host!:2021": "bad_host!" is neither an IP address nor a host name`},
		{"Metrics_Per_Org", "on", "Metrics_Per_Org: set without Metrics_Listen"},
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

func TestMetricsListen(t *testing.T) {
	for in, want := range map[string]string{"127.0.0.1:2021": "127.0.0.1:2021", " :2021 ": ":2021", "localhost:9100": "localhost:9100", "[::1]:2021": "[::1]:2021"} {
		src := valid()
		src["Metrics_Listen"], src["Metrics_Per_Org"] = in, "on"
		c, err := Parse(src)
		if err != nil {
			t.Errorf("%q: %v", in, err)
			continue
		}
		if c.MetricsListen != want || !c.MetricsPerOrg {
			t.Errorf("%q: Metrics_Listen %q, Metrics_Per_Org %v", in, c.MetricsListen, c.MetricsPerOrg)
		}
	}
}

func TestExternalIDWithoutRole(t *testing.T) {
	_, err := Parse(Map{"Org_ID": "org-a", "Bucket": "b-1", "External_ID": "681d1539-fd63"})
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

// TestWhoseDestination: an [OUTPUT] says whose data goes where in one of three ways, and every setting that
// contradicts its way fails with the key and what to do.
func TestWhoseDestination(t *testing.T) {
	const file = "/etc/wiv/destinations.json"
	role := map[string]string{"Role_ARN": "arn:aws:iam::123456789012:role/r", "External_ID": "681d1539-fd63"}
	with := func(m Map, extra map[string]string) Map {
		for k, v := range extra {
			m[k] = v
		}
		return m
	}
	good := []Map{
		{"Org_ID": "org-a", "Bucket": "b-1"},
		with(Map{"Org_ID": "org-a", "Bucket": "b-1"}, role),
		{"Destinations_File": file},
		{"Destinations_File": file, "Unlisted_Orgs": "deadletter", "Region": "eu-west-1", "Key_Prefix": "wiv/"},
		{"Destinations_File": file, "Unlisted_Orgs": "ARCHIVE", "Bucket": "platform-archive"},
		{"Unlisted_Orgs": "archive", "Bucket": "platform-archive"},
	}
	for _, m := range good {
		if _, err := Parse(m); err != nil {
			t.Errorf("%v: %v", m, err)
		}
	}
	bad := []struct {
		m    Map
		want string
	}{
		{Map{}, "Bucket: not set; set Org_ID and Bucket"},
		{Map{"Bucket": "b-1"}, "Org_ID: not set: a Bucket at the [OUTPUT] level is one organisation's destination"},
		{with(Map{"Bucket": "b-1"}, role), "Org_ID: not set"},
		{Map{"Org_ID": "org-a"}, "Bucket: not set although Org_ID is"},
		{Map{"Org_ID": "org-a", "Bucket": "b-1", "Destinations_File": file}, "Org_ID: set together with Destinations_File"},
		{Map{"Org_ID": "org-a", "Bucket": "b-1", "Unlisted_Orgs": "archive"}, "Org_ID: set together with Unlisted_Orgs archive"},
		{Map{"Org_ID": "org-a", "Bucket": "b-1", "Unlisted_Orgs": "hold"}, "Unlisted_Orgs: set together with Org_ID"},
		{Map{"Unlisted_Orgs": "hold", "Bucket": "b-1"}, "Org_ID: not set"},
		{Map{"Unlisted_Orgs": "deadletter", "Org_ID": "org-a", "Bucket": "b-1"}, "Unlisted_Orgs: set together with Org_ID"},
		{Map{"Unlisted_Orgs": "archive"}, "Bucket: not set although Unlisted_Orgs is archive"},
		{Map{"Destinations_File": file, "Unlisted_Orgs": "archive"}, "Bucket: not set although Unlisted_Orgs is archive"},
		{Map{"Destinations_File": file, "Bucket": "b-1"}, "Bucket: Bucket, Role_ARN or External_ID is set with Destinations_File, but Unlisted_Orgs is hold"},
		{with(Map{"Destinations_File": file, "Unlisted_Orgs": "deadletter"}, role), "but Unlisted_Orgs is deadletter, so it would never be used"},
		{Map{"Org_ID": "org-a", "Bucket": "b-1", "Destinations_Refresh_Interval": "5s"}, "Destinations_Refresh_Interval: set without Destinations_File"},
		{Map{"Destinations_File": "dest.json"}, `Destinations_File: "dest.json" is not an absolute path`},
	}
	for _, tc := range bad {
		_, err := Parse(tc.m)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%v: got %v, want %q", tc.m, err, tc.want)
		}
	}
}

func TestErrorsAreOneLine(t *testing.T) {
	_, err := Parse(Map{"Bucket": "BAD", "Upload_Timeout": "x", "Region": "Mars"})
	if err == nil || strings.Contains(err.Error(), "\n") || strings.Count(err.Error(), "; ") < 3 {
		t.Errorf("want every problem on one line, got %q", err)
	}
}

// TestSettingsLine: the line Init logs shows every key as in effect, set ones first and defaults after, so a
// misspelt key appears as a default; the External ID never appears.
func TestSettingsLine(t *testing.T) {
	src := valid()
	src["Upload_Timout"] = "5m" // misspelt: not read
	src["Store_Dir"] = "/data/wiv audit"
	c, err := Parse(src)
	if err != nil {
		t.Fatal(err)
	}
	line := c.String()
	set, defaults, ok := strings.Cut(line, "; defaults: ")
	if !ok || !strings.HasPrefix(set, "settings: Org_ID=3f7539ad-7f8b-4688-aee0-b9dbf2db728e Bucket=your-company-audit-logs ") {
		t.Fatalf("line %q", line)
	}
	for _, want := range []string{"External_ID=(hidden)", `Store_Dir="/data/wiv audit"`, "Role_ARN=arn:aws:iam::123456789012:role/wiv-audit-logs-sync"} {
		if !strings.Contains(set, want) {
			t.Errorf("settings part lacks %s: %q", want, set)
		}
	}
	for _, want := range []string{"Upload_Timeout=10m", "Region=us-east-1", "Unlisted_Orgs=hold", "Kind_Key=(none)"} {
		if !strings.Contains(defaults, want) {
			t.Errorf("defaults part lacks %s: %q", want, defaults)
		}
	}
	if strings.Contains(line, src["External_ID"]) || strings.Contains(fmt.Sprint(c), src["External_ID"]) {
		t.Errorf("the External ID is shown: %q", line)
	}
}

// firstPosition is the first position an error of a destinations file names.
var firstPosition = regexp.MustCompile(`line \d+, column \d+`)

func TestParseDestinations(t *testing.T) {
	c, _ := Parse(Map{"Destinations_File": "/d.json", "Region": "eu-west-1", "Key_Prefix": "audit/"})
	good := `[
	  {"org_id":"3F7539AD-7f8b-4688-aee0-b9dbf2db728e","bucket_name":"acme-audit","role_arn":"arn:aws:iam::111122223333:role/wiv-audit-logs-sync","external_id":"681d1539-fd63-4e6e-9426-fccdfdae1862"},
	  {"org_id":"org-b","bucket_name":"b-audit","role_arn":"arn:aws:iam::444455556666:role/r","external_id":"ext-b-0001","region":"us-west-2","key_prefix":"wiv/"}
	]`
	d, err := ParseDestinations([]byte(good), c)
	if err != nil {
		t.Fatal(err)
	}
	a := d["3f7539ad-7f8b-4688-aee0-b9dbf2db728e"]
	if a.Region != "eu-west-1" || a.KeyPrefix != "audit/" || a.Bucket != "acme-audit" || a.OrgID != "3F7539AD-7f8b-4688-aee0-b9dbf2db728e" {
		t.Errorf("defaults, key or spelling wrong: %v", a)
	}
	if b := d["org-b"]; b.Region != "us-west-2" || b.KeyPrefix != "wiv/" {
		t.Errorf("%+v", b)
	}
	const secret = "s3cr3t-external-id"
	entry := func(org, more string) string {
		return `{"org_id":"` + org + `","bucket_name":"bb-1","role_arn":"arn:aws:iam::111122223333:role/r","external_id":"abc"` + more + `}`
	}
	cases := []struct{ file, want string }{
		{``, "line 1, column 1: unexpected end of JSON input"},
		{`{"org_id":"x"}`, "line 1, column 1: not a JSON array"},
		{` null`, "line 1, column 2: not a JSON array"},
		{"[\n  {\"org_id\": x}\n]", "line 2, column 14: invalid character 'x' looking for beginning of value"},
		{"[\n" + entry("a", "") + ",\n]", "line 3, column 1: invalid character ']' looking for beginning of value"},
		{"[\n" + entry("a", ""), "line 2, column 102: unexpected end of JSON input"},
		{`[] []`, "line 1, column 4: invalid character '[' after top-level value"},
		{"[\n  {\"org_id\":\"a\",\"bucket\":\"x\"}]", `entry 0 (line 2, column 3): unknown field "bucket"; the fields are org_id`},
		{`[{"org_id":"a","external_id":"x-1","External_ID":"x-2"}]`, `entry 0 (line 1, column 2): External_ID is given twice (field names match without case); keep one`},
		{"[\n  {\"org_id\":\"a\",\n   \"bucket_name\": 5}]", `entry 0 (line 3, column 19): bucket_name: a JSON number where a string belongs`},
		{`[1]`, `entry 0 (line 1, column 2): a JSON number where an object {org_id, bucket_name, role_arn, external_id} belongs`},
		{"[" + entry("../x", "") + "]", `entry 0 (line 1, column 2, org_id "../x"): org_id: not a valid organisation ID`},
		{`[{"org_id":"a","bucket_name":"BAD","role_arn":"arn:aws:iam::111122223333:role/r","external_id":"abc"}]`, `entry 0 (line 1, column 2, org_id "a"): bucket_name: "BAD" is not a valid S3 bucket name`},
		{`[{"org_id":"a","bucket_name":"bb-1","role_arn":"nope","external_id":"abc"}]`, `org_id "a"): role_arn: "nope" is not an IAM role ARN`},
		{`[{"org_id":"a","bucket_name":"bb-1","role_arn":"arn:aws:iam::111122223333:role/r","external_id":"` + secret + ` !"}]`, `org_id "a"): external_id: the value (not shown)`},
		{`[{"org_id":"a","bucket_name":"bb-1","role_arn":"arn:aws:iam::111122223333:role/r"}]`, `org_id "a"): external_id:`},
		{"[" + entry("a", `,"region":"mars"`) + "]", `region: "mars"`},
		{"[" + entry("a", `,"key_prefix":"x"`) + "]", `key_prefix: "x" must end with "/"`},
		{"[" + entry("a", `,"account_id":"arn:aws:iam::111122223333:root"`) + "]", `account_id: "arn:aws:iam::111122223333:root" is not an AWS account ID`},
		{"[\n " + entry("a", "") + ",\n " + entry("A", "") + "]", `entry 1 (line 3, column 2, org_id "A"): org_id: listed twice (also entry 0; organisation IDs match case-insensitively)`},
	}
	for _, tc := range cases {
		_, err := ParseDestinations([]byte(tc.file), c)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: got %v, want %q", tc.file, err, tc.want)
		}
		if err != nil && (strings.Contains(err.Error(), secret) || strings.Contains(err.Error(), "\n")) {
			t.Errorf("the External ID leaked or the error spans lines: %q", err)
		}
		var at *PositionError
		if first := firstPosition.FindString(fmt.Sprint(err)); !errors.As(err, &at) || at.Position.String() != first {
			t.Errorf("%s: errors.As finds the position %v, the message names %q first: %v", tc.file, at, first, err)
		}
	}
}

// TestBucketOwner: the account that must own the bucket is account_id when given, else the role's account, else
// none (base credentials).
func TestBucketOwner(t *testing.T) {
	c, _ := Parse(Map{"Destinations_File": "/d.json"})
	file := `[{"org_id":"a","bucket_name":"bb-1","role_arn":"arn:aws:iam::111122223333:role/path/r","external_id":"abc"},
	  {"org_id":"b","bucket_name":"bb-1","role_arn":"arn:aws-cn:iam::111122223333:role/r","external_id":"abc","account_id":"444455556666"}]`
	d, err := ParseDestinations([]byte(file), c)
	if err != nil {
		t.Fatal(err)
	}
	if a, b := d["a"].BucketOwner(), d["b"].BucketOwner(); a != "111122223333" || b != "444455556666" {
		t.Errorf("bucket owners %q, %q; want the role's account, then account_id", a, b)
	}
	for _, tc := range []struct {
		settings Map
		want     string
	}{
		{valid(), "123456789012"},
		{Map{"Org_ID": "org-a", "Bucket": "b-1"}, ""},
		{Map{"Org_ID": "org-a", "Bucket": "b-1", "Account_ID": "444455556666"}, "444455556666"},
		{Map{"Unlisted_Orgs": "archive", "Bucket": "b-1", "Account_ID": "444455556666"}, "444455556666"},
	} {
		c, err := Parse(tc.settings)
		if err != nil {
			t.Fatal(err)
		}
		if d, _ := c.Output(); d.BucketOwner() != tc.want {
			t.Errorf("%v: bucket owner %q, want %q", tc.settings, d.BucketOwner(), tc.want)
		}
	}
	_, err = Parse(Map{"Destinations_File": "/d.json", "Account_ID": "444455556666"})
	if err == nil || !strings.Contains(err.Error(), "Account_ID: set without Bucket") {
		t.Errorf("Account_ID with a destinations file and no Bucket: %v", err)
	}
}

func TestDestinationNeverShowsItsExternalID(t *testing.T) {
	d := Destination{OrgID: "org-a", Bucket: "b-1", RoleARN: "arn:aws:iam::111122223333:role/r", ExternalID: "s3cr3t-ext", Region: "us-east-1"}
	for _, format := range []string{"%v", "%+v", "%#v", "%s"} {
		if got := fmt.Sprintf(format, d); strings.Contains(got, "s3cr3t") || !strings.Contains(got, "s3://b-1/org-a/") {
			t.Errorf("%s: %s", format, got)
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

func TestDigestSettings(t *testing.T) {
	const key = "/etc/wivaudit/digest-key.pem"
	with := func(extra Map) Map {
		m := valid()
		for k, v := range extra {
			m[k] = v
		}
		return m
	}
	c, err := Parse(with(Map{"Digests": "on", "Digest_Signing_Key": key, "Digest_Interval": "10s"}))
	if err != nil {
		t.Fatal(err)
	}
	if d, _ := c.Output(); !c.Digests || c.DigestInterval != 10*time.Second || c.DigestSigningKey != key || !d.Digests {
		t.Errorf("%+v", c)
	}
	if _, err := Parse(Map{"Destinations_File": "/d.json", "Digest_Signing_Key": key}); err != nil {
		t.Errorf("a key for the file's entries to use: %v", err)
	}
	file := Map{"Destinations_File": "/d.json", "Unlisted_Orgs": "archive", "Bucket": "platform-archive", "Digests": "on", "Digest_Signing_Key": key}
	if _, err := Parse(file); err != nil {
		t.Errorf("digests for the file's entries, an archive besides: %v", err)
	}
	for _, tc := range []struct {
		src  Map
		want string
	}{
		{with(Map{"Digests": "on"}), "Digest_Signing_Key: not set although Digests is on"},
		{with(Map{"Digests": "on", "Digest_Signing_Key": "key.pem"}), `Digest_Signing_Key: "key.pem" is not an absolute path`},
		{with(Map{"Digest_Signing_Key": key}), "Digest_Signing_Key: set, but Digests is off"},
		{with(Map{"Digest_Interval": "5m"}), "Digest_Interval: set without Digest_Signing_Key"},
		{with(Map{"Digests": "on", "Digest_Signing_Key": key, "Digest_Interval": "1s"}), `Digest_Interval: "1s" is out of range; use a duration from 2s to 24h0m0s`},
		{with(Map{"Digests": "maybe", "Digest_Signing_Key": key}), `Digests: "maybe" is not a switch`},
		{Map{"Unlisted_Orgs": "archive", "Bucket": "platform-archive", "Digests": "on", "Digest_Signing_Key": key}, "Digests: on, but this output is the platform's archive"},
	} {
		if _, err := Parse(tc.src); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%v: got %v, want %q", tc.src, err, tc.want)
		}
	}
}

func TestDestinationDigests(t *testing.T) {
	entry := func(org, more string) string {
		return `{"org_id":"` + org + `","bucket_name":"bb-1","role_arn":"arn:aws:iam::111122223333:role/r","external_id":"abc"` + more + `}`
	}
	file := []byte("[" + entry("a", "") + "," + entry("b", `,"digests":true`) + "," + entry("c", `,"digests":false`) + "]")
	for _, tc := range []struct {
		digests string
		want    map[string]bool
	}{
		{"off", map[string]bool{"a": false, "b": true, "c": false}},
		{"on", map[string]bool{"a": true, "b": true, "c": false}},
	} {
		c, err := Parse(Map{"Destinations_File": "/d.json", "Digests": tc.digests, "Digest_Signing_Key": "/k.pem"})
		if err != nil {
			t.Fatal(err)
		}
		d, err := ParseDestinations(file, c)
		if err != nil {
			t.Fatal(err)
		}
		for org, want := range tc.want {
			if d[org].Digests != want {
				t.Errorf("Digests %s: %s has digests %v", tc.digests, org, d[org].Digests)
			}
		}
	}
	c, _ := Parse(Map{"Destinations_File": "/d.json"})
	for _, tc := range []struct{ file, want string }{
		{"[" + entry("b", `,"digests":true`) + "]", `org_id "b"): digests: true, but the [OUTPUT] section has no Digest_Signing_Key`},
		{"[\n" + entry("b", `,"digests":"yes"`) + "]", `digests: a JSON string where true or false belongs`},
	} {
		if _, err := ParseDestinations([]byte(tc.file), c); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: got %v, want %q", tc.file, err, tc.want)
		}
	}
}
