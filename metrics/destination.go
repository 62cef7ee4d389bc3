package metrics

import "time"

// State is where an organisation's delivery stands.
type State string

// States of a destination.
const (
	OK          State = "ok"          // delivering, or nothing to deliver
	Retrying    State = "retrying"    // its last upload failed in a way that passes (network, throttling, credentials)
	Refused     State = "refused"     // its last upload was refused by its setup: see ErrorClass and GuideStep
	Held        State = "held"        // no usable destination now (not in Destinations_File): see HeldReason
	Quarantined State = "quarantined" // its last batch was refused for Quarantine_After, or found altered, and set aside
)

// Destination is one organisation of one output, as GET /destinations shows it. It never holds a secret.
type Destination struct {
	Output     string `json:"output"`
	OrgID      string `json:"org_id"`
	State      State  `json:"state"`
	HeldReason string `json:"held_reason,omitempty"`
	Bucket     string `json:"bucket,omitempty"`
	RoleARN    string `json:"role_arn,omitempty"`

	LastAttempt time.Time `json:"last_attempt,omitzero"`
	LastSuccess time.Time `json:"last_success,omitzero"`
	LastError   string    `json:"last_error,omitempty"` // what failed and what to check, never a secret
	LastErrorAt time.Time `json:"last_error_at,omitzero"`
	ErrorClass  string    `json:"error_class,omitempty"` // of the last error: upload.Problem
	GuideStep   string    `json:"guide_step,omitempty"`  // of the customer guide, for the last error

	BatchesWaiting    int       `json:"batches_waiting"`
	RecordsWaiting    int64     `json:"records_waiting"`
	BytesWaiting      int64     `json:"bytes_waiting"` // JSON bytes of the records
	OldestUndelivered time.Time `json:"oldest_undelivered,omitzero"`
	OldestAgeSeconds  float64   `json:"oldest_undelivered_age_seconds,omitempty"`

	RecordsDelivered   int64 `json:"records_delivered"`   // since start
	BatchesQuarantined int64 `json:"batches_quarantined"` // since start
}

// DestinationsFile is an output's Destinations_File as its reloads left it, as GET /destinations shows it.
// It never holds a secret: the file's problems never quote an External ID.
type DestinationsFile struct {
	Output        string    `json:"output"`
	Path          string    `json:"path"`
	Failing       bool      `json:"failing"`       // the file in place cannot be used: the version loaded at LoadedAt is
	LoadedAt      time.Time `json:"loaded_at"`     // when the version in use was loaded: the last good load
	Organisations int       `json:"organisations"` // in the version in use
	FailingSince  time.Time `json:"failing_since,omitzero"`
	LastError     string    `json:"last_error,omitempty"` // kept after the file is fixed
	LastErrorAt   time.Time `json:"last_error_at,omitzero"`
	ErrorLine     int       `json:"error_line,omitempty"` // of the last error, when the parser names a position
	ErrorColumn   int       `json:"error_column,omitempty"`
}
