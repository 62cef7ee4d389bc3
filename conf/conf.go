// Package conf reads and validates the settings of one [OUTPUT] wivaudit section.
package conf

import (
	"errors"
	"fmt"
	"net"
	"net/url"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Source returns the value of a setting, or "" when it is not set. Keys are matched case-insensitively,
// as Fluent Bit does for [OUTPUT] properties.
type Source interface {
	Get(key string) string
}

// Map is a Source backed by a map, for tests and tools. Lookups ignore case.
type Map map[string]string

// Get returns the value of key, ignoring case.
func (m Map) Get(key string) string {
	for k, v := range m {
		if strings.EqualFold(k, key) {
			return v
		}
	}
	return ""
}

// Config is the validated configuration of one output instance.
type Config struct {
	OrgID           string // the organisation the [OUTPUT]-level destination belongs to
	Bucket          string
	Region          string
	RoleARN         string
	ExternalID      string
	AccountID       string // the account that must own Bucket; "" for the account of RoleARN
	RoleSessionName string
	STSEndpoint     string
	Endpoint        string
	StoreDir        string
	TotalFileSize   int64
	UploadTimeout   time.Duration
	OrgIDKey        string
	KindKey         string
	KeyPrefix       string
	CannedACL       string // "" means no ACL header
	UploadWorkers   int
	ShutdownTimeout time.Duration

	StoreDirLimitSize   int64 // 0: no limit
	ConditionalWrites   bool
	RequestTimeout      time.Duration
	SessionDuration     time.Duration
	RefreshWindow       time.Duration
	RefreshJitter       time.Duration
	HoldRetryInterval   time.Duration
	QuarantineAfter     time.Duration
	QuarantineLimitSize int64
	DeadLetterLimitSize int64 // 0: no limit
	AllowPlainHTTP      bool
	MaxRecordSize       int64
	CompressionLevel    int // gzip level of the objects

	DestinationsFile    string
	UnlistedOrgs        string
	DestinationsRefresh time.Duration

	StatusInterval time.Duration // 0: no status lines

	LedgerLimitSize int64 // of the delivery ledger; 0: no limit

	MetricsListen string // host:port of the metrics and health endpoints; "": none
	MetricsPerOrg bool   // an org label on the per-organisation series

	Digests          bool          // signed digests for the [OUTPUT]-level organisation, and the file's entries by default
	DigestInterval   time.Duration // how often each organisation's digest is due
	DigestSigningKey string        // absolute path of the Ed25519 PKCS#8 PEM that signs digests; "": none

	settings string // the settings line: every key as in effect, the External ID hidden
}

// What happens to organisations that no destination of this output lists (Unlisted_Orgs).
const (
	UnlistedHold       = "hold"       // buffer, and deliver once the destinations file lists them
	UnlistedDeadLetter = "deadletter" // reject the records into the dead-letter file
	UnlistedArchive    = "archive"    // deliver to the [OUTPUT]-level Bucket: the platform's own archive
)

// Output returns the [OUTPUT]-level destination (Bucket, Role_ARN, External_ID, Region, Key_Prefix), or
// ok=false when Bucket is not set. Its OrgID is Org_ID: empty for the platform's archive.
func (c *Config) Output() (Destination, bool) {
	return Destination{OrgID: c.OrgID, Bucket: c.Bucket, RoleARN: c.RoleARN, ExternalID: c.ExternalID,
		Region: c.Region, KeyPrefix: c.KeyPrefix, AccountID: c.AccountID, Digests: c.Digests}, c.Bucket != ""
}

// Archive reports whether the [OUTPUT]-level Bucket is the platform's catch-all archive.
func (c *Config) Archive() bool { return c.UnlistedOrgs == UnlistedArchive }

// String is the settings line: every setting as in effect, those set first, then the defaults, so that a
// misspelt key shows up as a default. The External ID is never shown.
func (c *Config) String() string { return c.settings }

// Defaults, in the units operators write them in.
const (
	DefaultRegion          = "us-east-1"
	DefaultRoleSessionName = "wivaudit"
	DefaultStoreDir        = "/var/lib/fluent-bit/wivaudit"
	DefaultTotalFileSize   = "50M"
	DefaultUploadTimeout   = "10m"
	DefaultOrgIDKey        = "org_id"
	DefaultCannedACL       = "bucket-owner-full-control"
	DefaultUploadWorkers   = 4
	DefaultShutdownTimeout = "4s"
	DefaultRequestTimeout  = "30s"
	DefaultSession         = "1h"
	DefaultRefreshWindow   = "5m"
	DefaultRefreshJitter   = "2m"
	DefaultHoldRetry       = "5m"
	DefaultQuarantineAfter = "7d"
	DefaultQuarantineLimit = "1G"
	DefaultDeadLetterLimit = "100M"
	DefaultStatusInterval  = "5m"
	DefaultLedgerLimit     = "100M"
	DefaultDigestInterval  = "1h"
)

// Digest_Interval bounds: short intervals are for tests; a day at most keeps "nothing was delivered" provable
// within a day.
const (
	minDigestInterval = 2 * time.Second
	maxDigestInterval = 24 * time.Hour
)

// Compression_Level is a klauspost/compress gzip level: 1 (fastest) to 9 (smallest). 0 (stored) and HuffmanOnly
// are refused: their objects are larger than Fluent Bit's out_s3 makes. The default comes from the measurement
// in docs/configuration.md (Compression_Level).
const (
	DefaultCompressionLevel = 1
	minCompressionLevel     = 1
	maxCompressionLevel     = 9
)

const (
	minFileSize = 1000
	// One PutObject takes at most 5 GB; the batch is compressed before upload, but a cap well below that
	// keeps each upload short enough to retry.
	maxFileSize      = 1000 * 1000 * 1000
	minUploadTimeout = time.Second
	maxUploadTimeout = 24 * time.Hour
	maxShutdown      = 10 * time.Minute
	maxUploadWorkers = 64
	maxBytes         = 1 << 50
	// STS accepts 15 minutes to 12 hours (the role's maximum session duration may be lower).
	minSession = 15 * time.Minute
	maxSession = 12 * time.Hour
)

var (
	// IAM role ARNs: partition, 12-digit account (submatch 1), optional path, role name.
	roleARNPattern   = regexp.MustCompile(`^arn:aws[a-zA-Z-]*:iam::([0-9]{12}):role/(?:[\x21-\x7e]+/)?[\w+=,.@-]{1,64}$`)
	accountIDPattern = regexp.MustCompile(`^[0-9]{12}$`)
	// STS limits: ExternalId 2-1224 characters, RoleSessionName 2-64.
	externalIDPattern  = regexp.MustCompile(`^[\w+=,.@:/-]+$`)
	sessionNamePattern = regexp.MustCompile(`^[\w+=,.@-]{2,64}$`)
	bucketPattern      = regexp.MustCompile(`^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$`)
	regionPattern      = regexp.MustCompile(`^[a-z]{2}(-[a-z0-9]+)+-[0-9]+$`)
	fieldKeyPattern    = regexp.MustCompile(`^[^\x00-\x1f\x7f]{1,128}$`)
	hostnamePattern    = regexp.MustCompile(`^[a-zA-Z0-9]([a-zA-Z0-9.-]{0,251}[a-zA-Z0-9])?$`)
)

// Canned ACLs we accept, and none for no ACL header. Public and any-AWS-account ACLs are refused: these
// objects are audit trails.
var cannedACLs = []string{"bucket-owner-full-control", "bucket-owner-read", "private", "none"}

// unlistedOrgs are the values of Unlisted_Orgs.
var unlistedOrgs = []string{UnlistedHold, UnlistedDeadLetter, UnlistedArchive}

// Parse reads every setting from src, applies defaults and validates. The error lists every problem found,
// each naming the key, the value (never a secret) and what to do.
func Parse(src Source) (*Config, error) {
	p := parser{src: src}
	c := p.read()
	p.validate(c)
	if len(p.errs) > 0 {
		return nil, problems(p.errs)
	}
	c.settings = "settings: " + strings.Join(p.set, " ") + "; defaults: " + strings.Join(p.defaults, " ")
	return c, nil
}

// Keys lists every key Parse reads, in the order it reads them, with its default and the values it accepts.
func Keys() []Key {
	p := parser{src: Map{}}
	p.read()
	return p.keys
}

// read reads every setting, with its default and range; validate checks what involves several settings.
func (p *parser) read() *Config {
	return &Config{
		OrgID:           p.str("Org_ID", ""),
		Bucket:          p.str("Bucket", ""),
		Region:          p.str("Region", DefaultRegion),
		RoleARN:         p.str("Role_ARN", ""),
		ExternalID:      p.secret("External_ID"),
		AccountID:       p.str("Account_ID", ""),
		RoleSessionName: p.str("Role_Session_Name", DefaultRoleSessionName),
		STSEndpoint:     p.str("STS_Endpoint", ""),
		Endpoint:        p.str("Endpoint", ""),
		StoreDir:        p.str("Store_Dir", DefaultStoreDir),
		TotalFileSize:   p.size("Total_File_Size", DefaultTotalFileSize, minFileSize, maxFileSize),
		UploadTimeout:   p.duration("Upload_Timeout", DefaultUploadTimeout, minUploadTimeout, maxUploadTimeout),
		OrgIDKey:        p.str("Org_ID_Key", DefaultOrgIDKey),
		KindKey:         p.str("Kind_Key", ""),
		KeyPrefix:       p.str("Key_Prefix", ""),
		CannedACL:       p.choice("Canned_ACL", DefaultCannedACL, cannedACLs),
		UploadWorkers:   p.integer("Upload_Workers", DefaultUploadWorkers, 1, maxUploadWorkers),
		ShutdownTimeout: p.duration("Shutdown_Timeout", DefaultShutdownTimeout, 0, maxShutdown),

		StoreDirLimitSize:   p.limit("Store_Dir_Limit_Size", "0", 10*minFileSize, "to hold a batch"),
		ConditionalWrites:   p.boolean("Conditional_Writes", true),
		RequestTimeout:      p.duration("Request_Timeout", DefaultRequestTimeout, time.Second, 10*time.Minute),
		SessionDuration:     p.duration("Role_Session_Duration", DefaultSession, minSession, maxSession),
		RefreshWindow:       p.duration("Credential_Refresh_Window", DefaultRefreshWindow, time.Second, maxSession),
		RefreshJitter:       p.duration("Credential_Refresh_Jitter", DefaultRefreshJitter, 0, maxSession),
		HoldRetryInterval:   p.duration("Hold_Retry_Interval", DefaultHoldRetry, time.Second, 24*time.Hour),
		QuarantineAfter:     p.duration("Quarantine_After", DefaultQuarantineAfter, time.Second, 365*24*time.Hour),
		QuarantineLimitSize: p.size("Quarantine_Limit_Size", DefaultQuarantineLimit, 0, maxBytes),
		DeadLetterLimitSize: p.size("Dead_Letter_Limit_Size", DefaultDeadLetterLimit, 0, maxBytes),
		AllowPlainHTTP:      p.boolean("Allow_Plain_HTTP", false),
		MaxRecordSize:       p.size("Max_Record_Size", "1M", 1000, 64_000_000),
		CompressionLevel:    p.integer("Compression_Level", DefaultCompressionLevel, minCompressionLevel, maxCompressionLevel),

		DestinationsFile:    p.str("Destinations_File", ""),
		UnlistedOrgs:        strings.ToLower(p.choice("Unlisted_Orgs", UnlistedHold, unlistedOrgs)),
		DestinationsRefresh: p.duration("Destinations_Refresh_Interval", "10s", time.Second, time.Hour),

		StatusInterval: p.duration("Status_Interval", DefaultStatusInterval, 0, 24*time.Hour),

		LedgerLimitSize: p.limit("Ledger_Limit_Size", DefaultLedgerLimit, 1_000_000, "for the delivery ledger"),

		MetricsListen: p.str("Metrics_Listen", ""),
		MetricsPerOrg: p.boolean("Metrics_Per_Org", false),

		Digests:          p.boolean("Digests", false),
		DigestInterval:   p.duration("Digest_Interval", DefaultDigestInterval, minDigestInterval, maxDigestInterval),
		DigestSigningKey: p.str("Digest_Signing_Key", ""),
	}
}

// problems joins errors into one line, so that each reaches the log as a single line with its level.
type problems []error

func (e problems) Error() string {
	msgs := make([]string, len(e))
	for i, err := range e {
		msgs[i] = err.Error()
	}
	return strings.Join(msgs, "; ")
}

func (e problems) Unwrap() []error { return e }

type parser struct {
	src           Source
	errs          []error
	set, defaults []string // key=value as in effect, for the settings line
	keys          []Key    // every key read, for Keys
}

// Key is one setting as Parse reads it: its name, its type, its default and the values it accepts.
type Key struct {
	Name    string
	Type    KeyType
	Default string // as written in the settings line when the key is not set; "" for none
	// Min and Max bound a size (bytes), a duration (nanoseconds) or an integer. Off: 0 is accepted too, below
	// Min, and means none.
	Min, Max int64
	Off      bool
	Values   []string // the words a choice accepts, in any case
}

// KeyType is the kind of value a key takes.
type KeyType string

// Key types.
const (
	TypeString   KeyType = "string"
	TypeSecret   KeyType = "secret" // a string never shown
	TypeChoice   KeyType = "choice"
	TypeSwitch   KeyType = "switch"
	TypeInteger  KeyType = "integer"
	TypeSize     KeyType = "size"
	TypeDuration KeyType = "duration"
)

func (p *parser) fail(key, format string, args ...any) {
	p.errs = append(p.errs, fmt.Errorf("%s: "+format, append([]any{key}, args...)...))
}

// str reads a string setting.
func (p *parser) str(key, def string) string {
	p.keys = append(p.keys, Key{Name: key, Type: TypeString, Default: def})
	return p.value(key, def)
}

// choice reads a setting that takes one of values; validate checks it against them.
func (p *parser) choice(key, def string, values []string) string {
	p.keys = append(p.keys, Key{Name: key, Type: TypeChoice, Default: def, Values: values})
	return p.value(key, def)
}

// value reads a setting and notes it for the settings line.
func (p *parser) value(key, def string) string {
	v := strings.TrimSpace(p.src.Get(key))
	if v != "" {
		p.set = append(p.set, key+"="+shown(v))
		return v
	}
	p.defaults = append(p.defaults, key+"="+shown(def))
	return def
}

// secret reads a setting whose value the settings line never shows.
func (p *parser) secret(key string) string {
	p.keys = append(p.keys, Key{Name: key, Type: TypeSecret})
	v := strings.TrimSpace(p.src.Get(key))
	if v != "" {
		p.set = append(p.set, key+"=(hidden)")
	} else {
		p.defaults = append(p.defaults, key+"=(none)")
	}
	return v
}

func shown(v string) string {
	switch {
	case v == "":
		return "(none)"
	case strings.ContainsFunc(v, func(r rune) bool { return r <= ' ' || r == '"' || r == 0x7f }):
		return strconv.Quote(v)
	}
	return v
}

// isSet reports whether the operator wrote key, whatever its value means.
func (p *parser) isSet(key string) bool { return strings.TrimSpace(p.src.Get(key)) != "" }

func (p *parser) size(key, def string, lo, hi int64) int64 {
	p.keys = append(p.keys, Key{Name: key, Type: TypeSize, Default: def, Min: lo, Max: hi})
	return p.sizeIn(key, def, lo, hi)
}

// limit reads a size that bounds something: 0 for no limit, else at least lo, which is too small otherwise.
func (p *parser) limit(key, def string, lo int64, tooSmall string) int64 {
	p.keys = append(p.keys, Key{Name: key, Type: TypeSize, Default: def, Min: lo, Max: maxBytes, Off: true})
	n := p.sizeIn(key, def, 0, maxBytes)
	if n > 0 && n < lo {
		p.fail(key, "%d bytes is too small %s; use 0 (no limit) or at least %d bytes", n, tooSmall, lo)
	}
	return n
}

func (p *parser) sizeIn(key, def string, lo, hi int64) int64 {
	v := p.value(key, def)
	n, err := ParseSize(v)
	if err != nil {
		p.fail(key, "%q is not a size: %v; write a number with an optional K, M or G suffix, such as 50M", v, err)
		return 0
	}
	if n < lo || n > hi {
		p.fail(key, "%q is out of range; use a size from %d to %d bytes", v, lo, hi)
	}
	return n
}

func (p *parser) duration(key, def string, lo, hi time.Duration) time.Duration {
	p.keys = append(p.keys, Key{Name: key, Type: TypeDuration, Default: def, Min: int64(lo), Max: int64(hi)})
	v := p.value(key, def)
	d, err := ParseDuration(v)
	if err != nil {
		p.fail(key, "%q is not a duration: %v; write whole seconds with an optional s, m, h or d suffix, such as 10m", v, err)
		return 0
	}
	if d < lo || d > hi {
		p.fail(key, "%q is out of range; use a duration from %s to %s", v, lo, hi)
	}
	return d
}

// boolean reads a switch as Fluent Bit does: true/on/yes or false/off/no, in any case.
func (p *parser) boolean(key string, def bool) bool {
	word := map[bool]string{true: "on", false: "off"}[def]
	p.keys = append(p.keys, Key{Name: key, Type: TypeSwitch, Default: word, Values: []string{"on", "off"}})
	v := strings.ToLower(p.value(key, word))
	switch v {
	case "true", "on", "yes":
		return true
	case "false", "off", "no":
		return false
	}
	p.fail(key, "%q is not a switch; use on or off", v)
	return def
}

func (p *parser) integer(key string, def, lo, hi int) int {
	p.keys = append(p.keys, Key{Name: key, Type: TypeInteger, Default: strconv.Itoa(def), Min: int64(lo), Max: int64(hi)})
	v := p.value(key, strconv.Itoa(def))
	n, err := strconv.Atoi(v)
	if err != nil || n < lo || n > hi {
		p.fail(key, "%q is not a whole number from %d to %d", v, lo, hi)
	}
	return n
}

func (p *parser) validate(c *Config) {
	p.destination(c)
	if c.Bucket != "" {
		p.check("Bucket", bucketProblem(c.Bucket))
	}
	p.check("Region", regionProblem(c.Region))
	if c.RoleARN != "" {
		p.check("Role_ARN", roleProblem(c.RoleARN))
	}
	if c.RoleARN != "" && c.ExternalID == "" {
		p.fail("External_ID", "not set although Role_ARN is; set it to the external_id the customer put in the role's trust policy (it protects them against the confused deputy)")
	}
	if c.ExternalID != "" {
		p.check("External_ID", externalIDProblem(c.ExternalID))
	}
	p.check("Account_ID", accountIDProblem(c.AccountID))
	if c.AccountID != "" && c.Bucket == "" {
		p.fail("Account_ID", "set without Bucket, so it would mean nothing; give each destinations file entry its own account_id instead, or remove it")
	}
	if c.ExternalID != "" && c.RoleARN == "" {
		p.fail("Role_ARN", "not set although External_ID is; set the role_arn the customer submitted, or remove External_ID")
	}
	if c.DestinationsFile != "" && !filepath.IsAbs(c.DestinationsFile) {
		p.fail("Destinations_File", "%q is not an absolute path", c.DestinationsFile)
	}
	if !sessionNamePattern.MatchString(c.RoleSessionName) {
		p.fail("Role_Session_Name", "%q is not a valid session name: 2-64 characters of letters, digits and +=,.@-", c.RoleSessionName)
	}
	p.endpoint("Endpoint", c.Endpoint, c.AllowPlainHTTP)
	p.endpoint("STS_Endpoint", c.STSEndpoint, c.AllowPlainHTTP)
	if !filepath.IsAbs(c.StoreDir) {
		p.fail("Store_Dir", "%q is not an absolute path; give a directory on persistent storage, such as %s", c.StoreDir, DefaultStoreDir)
	}
	if !fieldKeyPattern.MatchString(c.OrgIDKey) {
		p.fail("Org_ID_Key", "%q is not a usable record key (1-128 characters, no control characters)", c.OrgIDKey)
	}
	if c.KindKey != "" && !fieldKeyPattern.MatchString(c.KindKey) {
		p.fail("Kind_Key", "%q is not a usable record key (1-128 characters, no control characters)", c.KindKey)
	}
	if c.KeyPrefix != "" {
		p.check("Key_Prefix", keyPrefixProblem(c.KeyPrefix))
	}
	if c.RefreshWindow >= c.SessionDuration {
		p.fail("Credential_Refresh_Window", "%s must be shorter than Role_Session_Duration (%s)", c.RefreshWindow, c.SessionDuration)
	}
	if c.RefreshJitter > c.RefreshWindow {
		p.fail("Credential_Refresh_Jitter", "%s must not exceed Credential_Refresh_Window (%s)", c.RefreshJitter, c.RefreshWindow)
	}
	if c.MetricsListen != "" {
		p.check("Metrics_Listen", listenProblem(c.MetricsListen))
	}
	if c.MetricsListen == "" && p.isSet("Metrics_Per_Org") {
		p.fail("Metrics_Per_Org", "set without Metrics_Listen, so it would mean nothing; set Metrics_Listen too, or remove it")
	}
	p.digests(c)
	acl := strings.ToLower(c.CannedACL)
	switch {
	case acl == "none":
		c.CannedACL = ""
	case slices.Contains(cannedACLs, acl):
		c.CannedACL = acl
	default:
		p.fail("Canned_ACL", "%q is not accepted; use bucket-owner-full-control (default), bucket-owner-read, private, or none to send no ACL header", c.CannedACL)
	}
}

// destination checks that the [OUTPUT] section says whose data goes where, without contradiction: one
// organisation's destination (Org_ID with Bucket), a destinations file, or the platform's archive
// (Unlisted_Orgs archive with Bucket), never a Bucket that would take every organisation's records by default.
func (p *parser) destination(c *Config) {
	switch {
	case slices.Contains(unlistedOrgs, c.UnlistedOrgs):
	case c.UnlistedOrgs == "default":
		p.fail("Unlisted_Orgs", "default is no longer accepted: it sent every unlisted organisation to Bucket; set archive if Bucket is the platform's own archive bucket (never a customer's), or hold")
		return
	default:
		p.fail("Unlisted_Orgs", "%q is not one of hold, deadletter, archive", c.UnlistedOrgs)
		return
	}
	outputLevel := c.Bucket != "" || c.RoleARN != "" || c.ExternalID != ""
	switch {
	case c.OrgID != "" && !ValidOrgID(c.OrgID):
		p.fail("Org_ID", "%q is not a valid organisation ID (1-%d letters, digits, '.', '_' or '-', starting with a letter or digit)", c.OrgID, MaxOrgIDLen)
	case c.OrgID != "" && c.DestinationsFile != "":
		p.fail("Org_ID", "set together with Destinations_File: an output takes its organisations from one place; list %s in the file instead", c.OrgID)
	case c.OrgID != "" && c.Archive():
		p.fail("Org_ID", "set together with Unlisted_Orgs archive: the archive bucket is the platform's own, not %s's; remove one of them", c.OrgID)
	case c.OrgID != "" && p.isSet("Unlisted_Orgs"):
		p.fail("Unlisted_Orgs", "set together with Org_ID: this output delivers only %s, and records of other organisations are left to the outputs that serve them; remove Unlisted_Orgs", c.OrgID)
	case c.OrgID != "" && c.Bucket == "":
		p.fail("Bucket", "not set although Org_ID is; set it to the bucket_name organisation %s submitted", c.OrgID)
	case c.Archive() && c.Bucket == "":
		p.fail("Bucket", "not set although Unlisted_Orgs is archive; set it to the platform's own archive bucket")
	case c.DestinationsFile == "" && c.Bucket == "":
		p.fail("Bucket", "not set; set Org_ID and Bucket to one organisation's org_id and bucket_name (docs/customer-guide.md step 3.3), or list organisations in Destinations_File")
	case c.DestinationsFile == "" && c.OrgID == "" && !c.Archive():
		p.fail("Org_ID", "not set: a Bucket at the [OUTPUT] level is one organisation's destination, so set Org_ID to the organisation it belongs to; use Destinations_File for many organisations, or Unlisted_Orgs archive if Bucket is the platform's own archive")
	case c.DestinationsFile == "" && p.isSet("Unlisted_Orgs") && !c.Archive():
		p.fail("Unlisted_Orgs", "%s only applies with Destinations_File", c.UnlistedOrgs)
	case c.DestinationsFile != "" && outputLevel && !c.Archive():
		p.fail("Bucket", "Bucket, Role_ARN or External_ID is set with Destinations_File, but Unlisted_Orgs is %s, so it would never be used; remove them, or set Unlisted_Orgs archive if they are the platform's own archive bucket", c.UnlistedOrgs)
	}
	if c.DestinationsFile == "" && p.isSet("Destinations_Refresh_Interval") {
		p.fail("Destinations_Refresh_Interval", "set without Destinations_File, so it would mean nothing; remove it")
	}
}

// digests checks the digest settings: a signing key whenever digests can be on (Digests, or a destinations file
// whose entries may say "digests": true), and no digest setting that could never apply.
func (p *parser) digests(c *Config) {
	archiveOnly := c.Archive() && c.DestinationsFile == ""
	switch {
	case c.DigestSigningKey != "" && !filepath.IsAbs(c.DigestSigningKey):
		p.fail("Digest_Signing_Key", "%q is not an absolute path; give the PEM file `wivaudit digest keygen` wrote", c.DigestSigningKey)
	case c.Digests && archiveOnly:
		p.fail("Digests", "on, but this output is the platform's archive, which gets no digests (they are evidence for a customer's own bucket); remove Digests")
	case c.Digests && c.DigestSigningKey == "":
		p.fail("Digest_Signing_Key", "not set although Digests is on; create a key with `wivaudit digest keygen FILE` and set its absolute path")
	case c.DigestSigningKey != "" && !c.Digests && c.DestinationsFile == "":
		p.fail("Digest_Signing_Key", "set, but Digests is off and there is no Destinations_File whose entries could turn digests on, so it would never be used; set Digests on, or remove it")
	}
	if p.isSet("Digest_Interval") && c.DigestSigningKey == "" {
		p.fail("Digest_Interval", "set without Digest_Signing_Key, so no digest is ever written; set Digests on and Digest_Signing_Key, or remove it")
	}
}

func (p *parser) endpoint(key, v string, allowHTTP bool) {
	if v == "" {
		return
	}
	u, err := url.Parse(v)
	switch {
	case err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "":
		p.fail(key, "%q is not a URL; write scheme and host, such as https://s3.us-east-1.amazonaws.com", v)
	case u.Scheme == "http" && !allowHTTP:
		p.fail(key, "%q uses plain HTTP, which would send audit data and signed requests unencrypted; use https, or set Allow_Plain_HTTP on for a local test server", v)
	}
}

// check records a problem found by one of the value checks below, which callers share with the
// destinations file.
func (p *parser) check(key, problem string) {
	if problem != "" {
		p.fail(key, "%s", problem)
	}
}

func bucketProblem(v string) string {
	if !bucketPattern.MatchString(v) || strings.Contains(v, "..") {
		return fmt.Sprintf("%q is not a valid S3 bucket name (3-63 lowercase letters, digits, dots and hyphens); give the bare name, without s3:// or a path", v)
	}
	return ""
}

// accountIDProblem accepts "" (not set) or an AWS account ID.
func accountIDProblem(v string) string {
	if v != "" && !accountIDPattern.MatchString(v) {
		return fmt.Sprintf("%q is not an AWS account ID (12 digits, such as 111122223333); give the account that owns the bucket, or leave it out to use the role's", v)
	}
	return ""
}

func regionProblem(v string) string {
	if !regionPattern.MatchString(v) {
		return fmt.Sprintf("%q is not an AWS region name such as us-east-1", v)
	}
	return ""
}

func roleProblem(v string) string {
	if !roleARNPattern.MatchString(v) {
		return fmt.Sprintf("%q is not an IAM role ARN; expected arn:aws:iam::<12-digit account>:role/<name>, the role_arn the customer submitted", v)
	}
	return ""
}

// externalIDProblem never shows the value: it is the customer's secret.
func externalIDProblem(v string) string {
	if len(v) < 2 || len(v) > 1224 || !externalIDPattern.MatchString(v) {
		return "the value (not shown) is not a valid External ID: 2-1224 characters of letters, digits and +=,.@:/-"
	}
	return ""
}

// listenProblem checks an address to listen on: an optional host (a name or an IP address; none for every
// interface) and a port.
func listenProblem(v string) string {
	host, port, err := net.SplitHostPort(v)
	n, perr := strconv.Atoi(port)
	switch {
	case err != nil || perr != nil || n < 1 || n > 65535:
		return fmt.Sprintf("%q is not host:port with a port from 1 to 65535; write 127.0.0.1:2021 (this machine only) or :2021 (every interface)", v)
	case host != "" && net.ParseIP(host) == nil && !hostnamePattern.MatchString(host):
		return fmt.Sprintf("%q: %q is neither an IP address nor a host name", v, host)
	}
	return ""
}

func keyPrefixProblem(v string) string {
	switch {
	case !strings.HasSuffix(v, "/"):
		return fmt.Sprintf("%q must end with \"/\" (e.g. %q); objects are written as <Key_Prefix><org_id>/<kind>-audit-logs-<ms>.json.gz", v, v+"/")
	case strings.HasPrefix(v, "/"):
		return fmt.Sprintf("%q must not start with \"/\"", v)
	case len(v) > 256:
		return fmt.Sprintf("is %d bytes long; keep it under 256", len(v))
	}
	for _, seg := range strings.Split(strings.TrimSuffix(v, "/"), "/") {
		if seg == "" || seg == "." || seg == ".." || strings.ContainsFunc(seg, isControl) || strings.Contains(seg, `\`) {
			return fmt.Sprintf("%q has an empty, \".\", \"..\", backslash or control-character segment", v)
		}
	}
	return ""
}

func isControl(r rune) bool { return r < 0x20 || r == 0x7f }

// ParseSize reads a size as Fluent Bit does: a number with an optional K, M or G suffix (decimal: K = 1000),
// optionally followed by B, in any case.
func ParseSize(s string) (int64, error) {
	s = strings.TrimSpace(s)
	num := strings.TrimRightFunc(s, func(r rune) bool { return r < '0' || r > '9' })
	unit := strings.ToUpper(s[len(num):])
	mult := map[string]float64{"": 1, "B": 1, "K": 1e3, "KB": 1e3, "M": 1e6, "MB": 1e6, "G": 1e9, "GB": 1e9}[unit]
	if mult == 0 {
		return 0, fmt.Errorf("unknown unit %q", unit)
	}
	f, err := strconv.ParseFloat(num, 64)
	if err != nil || f < 0 || f*mult > 1<<62 {
		return 0, fmt.Errorf("bad number %q", num)
	}
	return int64(f * mult), nil
}

// ParseDuration reads a duration as Fluent Bit does: whole seconds with an optional s, m, h or d suffix.
func ParseDuration(s string) (time.Duration, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return 0, errors.New("empty")
	}
	unit := time.Second
	switch s[len(s)-1] {
	case 's', 'S':
		s = s[:len(s)-1]
	case 'm', 'M':
		unit, s = time.Minute, s[:len(s)-1]
	case 'h', 'H':
		unit, s = time.Hour, s[:len(s)-1]
	case 'd', 'D':
		unit, s = 24*time.Hour, s[:len(s)-1]
	}
	n, err := strconv.ParseUint(s, 10, 32)
	if err != nil {
		return 0, fmt.Errorf("bad number %q", s)
	}
	return time.Duration(n) * unit, nil
}
