package digest

import (
	"cmp"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/wiv/out_wivaudit/ledger"
	"github.com/wiv/out_wivaudit/record"
)

// Version is the digest format this package writes and verifies.
const Version = 1

// MetadataSignature is the user metadata key (x-amz-meta-signature) that carries a digest's signature.
const MetadataSignature = "signature"

// Object is one object a digest lists.
type Object struct {
	Key         string          `json:"key"`
	SHA256      string          `json:"sha256"` // lower-case hex
	Bytes       int64           `json:"bytes"`
	Records     int             `json:"records"`
	First       record.EventRef `json:"first_event"`
	Last        record.EventRef `json:"last_event"`
	VersionID   string          `json:"version_id,omitempty"`
	DeliveredAt time.Time       `json:"delivered_at"`
	// Unconfirmed: S3 never confirmed this upload (its answer was lost, then the key was found taken), so the
	// object may be ours, another writer's, or absent.
	Unconfirmed bool `json:"unconfirmed,omitempty"`
}

// Document is a digest's body. Its JSON, field order as here, is what is signed.
type Document struct {
	Version           int       `json:"version"`
	OrgID             string    `json:"org_id"`
	Chain             string    `json:"chain"`
	Sequence          uint64    `json:"sequence"` // 1 for a chain's first digest
	Start             time.Time `json:"interval_start"`
	End               time.Time `json:"interval_end"`
	IntervalSeconds   int64     `json:"digest_interval_seconds"` // how often the chain's digests are due
	Objects           []Object  `json:"objects"`
	PreviousKey       *string   `json:"previous_digest_key"`
	PreviousSignature *string   `json:"previous_digest_signature"`
	KeyFingerprint    string    `json:"public_key_fingerprint"`
	MadeAt            time.Time `json:"made_at"`
}

// keyTime is how a digest's key spells its interval end.
const keyTime = "20060102T150405Z"

// Key is where a digest goes: {prefix}{org}/digests/{chain}/{org}-digest-{end}.json. A glob for
// *-audit-logs-*.json.gz never matches it.
func Key(prefix, org, chain string, end time.Time) string {
	return fmt.Sprintf("%s%s/digests/%s/%s-digest-%s.json", prefix, org, chain, org, end.UTC().Format(keyTime))
}

// NewChainID is a new random chain id, 16 hex digits: one per Store_Dir, so that replicas' chains never
// share keys.
func NewChainID() (string, error) {
	b := make([]byte, 8)
	if _, err := rand.Read(b); err != nil {
		return "", err
	}
	return hex.EncodeToString(b), nil
}

// Signed is a digest ready to upload: its key, its body and its signature (base64), for the object's
// MetadataSignature.
type Signed struct {
	Key       string    `json:"key"`
	Body      []byte    `json:"body"`
	Signature string    `json:"signature"`
	Sequence  uint64    `json:"sequence"`
	End       time.Time `json:"interval_end"`
	// Unsent: no upload of it was tried yet, so a key already taken then was taken by another writer.
	Unsent bool `json:"unsent,omitempty"`
}

// ChainState is what the plugin keeps per organisation between digests: where its chain stands, and the digest
// made but not yet known to be uploaded. Persist it after Make (before uploading) and after Uploaded.
type ChainState struct {
	Chain         string    `json:"chain"`
	Sequence      uint64    `json:"sequence"`     // of the last digest uploaded; 0 before the first
	End           time.Time `json:"interval_end"` // the next digest starts here
	LastKey       string    `json:"last_key,omitempty"`
	LastSignature string    `json:"last_signature,omitempty"`
	// Where the chain's digests go: its destination's bucket and key prefix, from its first digest on.
	Bucket string `json:"bucket,omitempty"`
	Prefix string `json:"key_prefix,omitempty"`
	// Pending is made and signed but not known to be in the bucket: upload exactly it (a crash may have
	// uploaded it already, and a digest made again would not match the next one's link).
	Pending *Signed `json:"pending,omitempty"`
}

// NewChain starts a chain whose first digest covers from start.
func NewChain(chain string, start time.Time) ChainState {
	return ChainState{Chain: chain, End: start.UTC()}
}

// Due says whether a new digest is due at now, and the end of the interval it covers: the last boundary
// (a multiple of interval since the Unix epoch) not after now. It covers from st.End, so one digest spans a
// downtime. None is due while one is pending.
func (st ChainState) Due(now time.Time, interval time.Duration) (end time.Time, ok bool) {
	end = time.Unix(0, 0).Add(now.Sub(time.Unix(0, 0)).Truncate(interval)).UTC()
	return end, st.Pending == nil && end.After(st.End)
}

// Sending is the state to persist before the pending digest's first upload: from then on, a 412 for its key
// may be this upload's own, its answer lost.
func (st ChainState) Sending() ChainState {
	if st.Pending != nil {
		p := *st.Pending
		p.Unsent = false
		st.Pending = &p
	}
	return st
}

// Uploaded moves the pending digest into the chain, once S3 answered 200, or 412 to an upload tried before (the
// key exists: this digest, uploaded before a crash or a lost answer).
func (st ChainState) Uploaded() ChainState {
	if st.Pending == nil {
		return st
	}
	p := st.Pending
	st.Sequence, st.End, st.LastKey, st.LastSignature, st.Pending = p.Sequence, p.End, p.Key, p.Signature, nil
	return st
}

// Moved says whether the organisation's digests now go somewhere else than where the chain's went: its next
// digest cannot name as previous one the new place does not hold.
func (st ChainState) Moved(bucket, prefix string) bool {
	return st.Bucket != "" && (st.Bucket != bucket || st.Prefix != prefix)
}

// Encode is the state's bytes to persist.
func (st ChainState) Encode() ([]byte, error) { return json.Marshal(st) }

// DecodeChainState reads what Encode wrote.
func DecodeChainState(data []byte) (ChainState, error) {
	var st ChainState
	if err := json.Unmarshal(data, &st); err != nil {
		return ChainState{}, fmt.Errorf("digest chain state: %w", err)
	}
	if st.Chain == "" || st.End.IsZero() {
		return ChainState{}, errors.New("digest chain state: no chain id or interval end")
	}
	return st, nil
}

// Interval is what a digest covers for one organisation.
type Interval struct {
	Org, Prefix string // as in the organisation's object keys: {Prefix}{Org}/
	Bucket      string // where the digest goes
	End         time.Time
	Every       time.Duration // Digest_Interval
	Objects     []Object      // every object delivered since the chain's End, and before End
	MadeAt      time.Time
}

// Make signs the chain's next digest, covering from st.End to iv.End, and returns the state with it pending.
func (s *Signer) Make(st ChainState, iv Interval) (ChainState, error) {
	end := iv.End.UTC()
	switch {
	case st.Pending != nil:
		return st, fmt.Errorf("digest %s: %s is not uploaded yet", iv.Org, st.Pending.Key)
	case st.Chain == "":
		return st, fmt.Errorf("digest %s: no chain id", iv.Org)
	case !end.Equal(end.Truncate(time.Second)) || !end.After(st.End):
		return st, fmt.Errorf("digest %s: interval end %s is not a whole second after its start %s", iv.Org, end, st.End)
	}
	base := iv.Prefix + iv.Org + "/"
	objects := slices.Clone(iv.Objects)
	for i := range objects {
		o := &objects[i]
		if !strings.HasPrefix(o.Key, base) || strings.HasPrefix(o.Key, base+"digests/") {
			return st, fmt.Errorf("digest %s: object %s is not under %s", iv.Org, o.Key, base)
		}
		if sum, err := hex.DecodeString(o.SHA256); err != nil || len(sum) != 32 || strings.ToLower(o.SHA256) != o.SHA256 {
			return st, fmt.Errorf("digest %s: object %s: SHA-256 %q is not 64 lower-case hex digits", iv.Org, o.Key, o.SHA256)
		}
		o.DeliveredAt = o.DeliveredAt.UTC()
	}
	slices.SortStableFunc(objects, func(a, b Object) int {
		return cmp.Or(a.DeliveredAt.Compare(b.DeliveredAt), strings.Compare(a.Key, b.Key))
	})
	doc := Document{Version: Version, OrgID: iv.Org, Chain: st.Chain, Sequence: st.Sequence + 1, Start: st.End.UTC(),
		End: end, IntervalSeconds: int64(iv.Every / time.Second), Objects: objects, KeyFingerprint: s.fp,
		MadeAt: iv.MadeAt.UTC()}
	if doc.Objects == nil {
		doc.Objects = []Object{}
	}
	if st.Sequence > 0 {
		doc.PreviousKey, doc.PreviousSignature = &st.LastKey, &st.LastSignature
	}
	body, err := json.MarshalIndent(&doc, "", "  ")
	if err != nil {
		return st, fmt.Errorf("digest %s: %w", iv.Org, err)
	}
	body = append(body, '\n')
	st.Bucket, st.Prefix = iv.Bucket, iv.Prefix
	st.Pending = &Signed{Key: Key(iv.Prefix, iv.Org, st.Chain, end), Body: body,
		Signature: base64.StdEncoding.EncodeToString(s.sign(body)), Sequence: doc.Sequence, End: end, Unsent: true}
	return st, nil
}

// Rechain makes the pending digest again as the first of a new chain, covering the same interval and listing
// the same objects: for when its key was found taken by another writer before it was ever sent.
func (s *Signer) Rechain(st ChainState, chain string, madeAt time.Time) (ChainState, error) {
	if st.Pending == nil {
		return st, errors.New("digest: no pending digest to make again")
	}
	var doc Document
	if err := json.Unmarshal(st.Pending.Body, &doc); err != nil {
		return st, fmt.Errorf("digest %s: %w", st.Pending.Key, err)
	}
	return s.Make(NewChain(chain, doc.Start), Interval{Org: doc.OrgID, Prefix: st.Prefix, Bucket: st.Bucket, End: doc.End,
		Every: time.Duration(doc.IntervalSeconds) * time.Second, Objects: doc.Objects, MadeAt: madeAt})
}

// FromLedger is the digest's listing of a ledger entry.
func FromLedger(e ledger.Entry) Object {
	return Object{Key: e.Key, SHA256: e.SHA256, Bytes: e.Bytes, Records: e.Records, First: e.First, Last: e.Last,
		VersionID: e.VersionID, DeliveredAt: e.Time, Unconfirmed: e.Status == ledger.Unconfirmed}
}
