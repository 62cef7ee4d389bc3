// Package workload generates the reference audit-log workload deterministically from a seed: events shaped like
// the delivery guide's example (about 390 bytes of JSON each), spread over organisations and the three kinds,
// and packed into Fluent Bit V2 chunks the way a tail input per kind hands them over (one tag per chunk).
package workload

import (
	"encoding/hex"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"strconv"
	"time"

	"github.com/vmihailenco/msgpack/v5"
	"github.com/wiv/out_wivaudit/test/chunks"
)

// Spec says what to generate. The output is a pure function of it: no clock, no map iteration.
type Spec struct {
	Seed       uint64
	Events     int
	Orgs       int
	ChunkBytes int // a chunk is handed over once it holds at least this many bytes
}

// Reference is the reference shape: 200,000 events over 100 organisations, chunks of about 256 KiB.
var Reference = Spec{Seed: 20261125, Events: 200_000, Orgs: 100, ChunkBytes: 256 << 10}

// Event is one generated event: its stream and its body as compact JSON, fields in the guide's order.
type Event struct {
	Org, Kind string
	JSON      []byte
}

// Chunk is what Fluent Bit hands to a flush: one tag, events in the V2 layout.
type Chunk struct {
	Tag    string
	Data   []byte
	Events int
}

// Workload is a generated workload: its events in order, and the same events as chunks.
type Workload struct {
	Spec      Spec
	Events    []Event
	Chunks    []Chunk
	JSONBytes int64 // the events' JSON, summed
}

// Kinds are the three kinds; the tag of a kind is audit.<kind>.
var Kinds = []string{"org", "user", "api"}

var eventTypes = map[string][]string{
	"org":  {"OrgSettingsUpdated", "IntegrationConnected", "PolicyCreated", "PolicyDeleted"},
	"user": {"UserLoggedIn", "UserRoleChanged", "UserInvited", "UserDeactivated"},
	"api":  {"ApiKeyCreated", "ApiKeyRotated", "ApiKeyUsed", "ApiKeyRevoked"},
}

var (
	orgWords   = []string{"Northwind", "Contoso", "Globex", "Initech", "Umbrella", "Hooli", "Vandelay", "Stark", "Wayne", "Tyrell"}
	orgSuffix  = []string{"Inc", "Ltd", "GmbH", "Labs", "Group", "Systems"}
	settings   = []string{"sso_enforced", "mfa_required", "session_timeout_minutes", "ip_allowlist", "data_retention_days", "default_role"}
	roles      = []string{"viewer", "analyst", "editor", "admin", "owner"}
	scopeNames = []string{"read:findings", "write:findings", "read:policies", "write:policies", "read:assets", "admin:org"}
)

// The body, in the guide's field order; encoding/json and msgpack both keep struct field order.
type event struct {
	ID                string  `json:"id" msgpack:"id"`
	OrgID             string  `json:"org_id" msgpack:"org_id"`
	OrgName           string  `json:"org_name" msgpack:"org_name"`
	EventType         string  `json:"event_type" msgpack:"event_type"`
	EventData         any     `json:"event_data" msgpack:"event_data"`
	CreatedAt         int64   `json:"created_at" msgpack:"created_at"`
	CausedByID        string  `json:"caused_by_id" msgpack:"caused_by_id"`
	CausedByType      string  `json:"caused_by_type" msgpack:"caused_by_type"`
	CausedBySourceIP  string  `json:"caused_by_source_ip" msgpack:"caused_by_source_ip"`
	RelevantUserEmail *string `json:"relevant_user_email" msgpack:"relevant_user_email"`
}

type orgData struct {
	Setting  string `json:"setting" msgpack:"setting"`
	OldValue string `json:"old_value" msgpack:"old_value"`
	NewValue string `json:"new_value" msgpack:"new_value"`
}

type userData struct {
	UserID   string `json:"user_id" msgpack:"user_id"`
	RoleFrom string `json:"role_from" msgpack:"role_from"`
	RoleTo   string `json:"role_to" msgpack:"role_to"`
	MFA      bool   `json:"mfa" msgpack:"mfa"`
}

type apiData struct {
	KeyID   string   `json:"key_id" msgpack:"key_id"`
	Scopes  []string `json:"scopes" msgpack:"scopes"`
	Expires int      `json:"expires_in_days" msgpack:"expires_in_days"`
}

type actor struct{ id, typ, ip string }

type org struct {
	id, name, domain string
	actors           []actor
}

const (
	actorsPerOrg = 10
	usersPerOrg  = 300
	firstSecond  = 1769611845
)

// Generate makes the workload of s.
func Generate(s Spec) (*Workload, error) {
	if s.Events <= 0 || s.Orgs <= 0 || s.ChunkBytes <= 0 {
		return nil, fmt.Errorf("workload: events, orgs and chunk bytes must be positive: %+v", s)
	}
	r := rand.New(rand.NewPCG(s.Seed, 0xa0d17))
	orgs := make([]org, s.Orgs)
	for i := range orgs {
		o := &orgs[i]
		o.id = uuid(r)
		o.name = orgWords[r.IntN(len(orgWords))] + " " + orgSuffix[r.IntN(len(orgSuffix))] + " " + strconv.Itoa(i+1)
		o.domain = "org" + strconv.Itoa(i+1) + ".example.com"
		for j := range actorsPerOrg {
			a := actor{id: "usr_" + hexid(r, 8), typ: "User", ip: ipv4(r)}
			if j%3 == 0 {
				a.id, a.typ = "ak_"+hexid(r, 8), "ApiKey"
			}
			o.actors = append(o.actors, a)
		}
	}
	w := &Workload{Spec: s, Events: make([]Event, 0, s.Events)}
	open := map[string]*Chunk{}
	for i := range s.Events {
		o := &orgs[r.IntN(len(orgs))]
		kind := Kinds[r.IntN(len(Kinds))]
		ev := body(r, o, kind, int64(firstSecond+i/4))
		js, err := json.Marshal(ev)
		if err != nil {
			return nil, err
		}
		mp, err := msgpack.Marshal(ev)
		if err != nil {
			return nil, err
		}
		w.Events = append(w.Events, Event{Org: o.id, Kind: kind, JSON: js})
		w.JSONBytes += int64(len(js))
		c := open[kind]
		if c == nil {
			c = &Chunk{Tag: "audit." + kind}
			open[kind] = c
		}
		c.Data = append(c.Data, chunks.V2(chunks.EventTime(time.Unix(ev.CreatedAt, 0)), mp)...)
		c.Events++
		if len(c.Data) >= s.ChunkBytes {
			w.Chunks = append(w.Chunks, *c)
			delete(open, kind)
		}
	}
	for _, k := range Kinds {
		if c := open[k]; c != nil {
			w.Chunks = append(w.Chunks, *c)
		}
	}
	return w, nil
}

func body(r *rand.Rand, o *org, kind string, at int64) *event {
	a := o.actors[r.IntN(len(o.actors))]
	ev := &event{ID: uuid(r), OrgID: o.id, OrgName: o.name, CreatedAt: at, CausedByID: a.id, CausedByType: a.typ,
		CausedBySourceIP: a.ip}
	types := eventTypes[kind]
	ev.EventType = types[r.IntN(len(types))]
	user := "user" + strconv.Itoa(r.IntN(usersPerOrg))
	switch kind {
	case "org":
		ev.EventData = orgData{Setting: settings[r.IntN(len(settings))], OldValue: strconv.Itoa(r.IntN(100)),
			NewValue: strconv.Itoa(r.IntN(100))}
	case "user":
		ev.EventData = userData{UserID: "usr_" + hexid(r, 8), RoleFrom: roles[r.IntN(len(roles))],
			RoleTo: roles[r.IntN(len(roles))], MFA: r.IntN(3) != 0}
		email := user + "@" + o.domain
		ev.RelevantUserEmail = &email
	case "api":
		n := 1 + r.IntN(3)
		scopes := make([]string, n)
		for i := range scopes {
			scopes[i] = scopeNames[r.IntN(len(scopeNames))]
		}
		ev.EventData = apiData{KeyID: "ak_" + hexid(r, 8), Scopes: scopes, Expires: 30 * (1 + r.IntN(12))}
	}
	return ev
}

func uuid(r *rand.Rand) string {
	var b [16]byte
	for i, v := range [2]uint64{r.Uint64(), r.Uint64()} {
		for j := range 8 {
			b[i*8+j] = byte(v >> (8 * j))
		}
	}
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	h := hex.EncodeToString(b[:])
	return h[0:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:32]
}

func hexid(r *rand.Rand, n int) string {
	return fmt.Sprintf("%0*x", n, r.Uint64N(1<<(4*n)))
}

func ipv4(r *rand.Rand) string {
	return fmt.Sprintf("%d.%d.%d.%d", 3+r.IntN(220), r.IntN(256), r.IntN(256), 1+r.IntN(254))
}

// Streams returns the events' JSON grouped by (organisation, kind), streams in order of first appearance:
// what the plugin puts into its objects when every stream fits in one batch.
func (w *Workload) Streams() [][][]byte {
	index := map[[2]string]int{}
	var out [][][]byte
	for _, ev := range w.Events {
		k := [2]string{ev.Org, ev.Kind}
		i, ok := index[k]
		if !ok {
			i = len(out)
			index[k] = i
			out = append(out, nil)
		}
		out[i] = append(out[i], ev.JSON)
	}
	return out
}

// WriteInput writes the chunks to path in the test host's input framing.
func (w *Workload) WriteInput(path string) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	for _, c := range w.Chunks {
		if err := chunks.WriteFrame(f, c.Tag, c.Data); err != nil {
			f.Close()
			return err
		}
	}
	return f.Close()
}
