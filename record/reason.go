package record

// Reason is the class of a rejection: a small fixed set that metrics can count by, where Event.Reject keeps
// the detail for the dead-letter file.
type Reason uint8

// Rejection classes. The decoder gives the first five; the plugin gives Unserved and Unlisted, which depend
// on where an organisation's records go.
const (
	NotRejected Reason = iota
	Malformed          // the msgpack, the event's shape, its timestamp or its body cannot be read
	TooLarge           // over Max_Record_Size
	NoOrgID            // no organisation field
	BadOrgID           // the organisation field is not a string, or not a safe organisation ID
	BadKind            // no kind, or not one of org, user, api
	Unserved           // no output of this process that receives the tag serves the organisation
	Unlisted           // not in Destinations_File, with Unlisted_Orgs deadletter
	Reasons            // the number of classes
)

var reasonNames = [Reasons]string{"", "malformed", "too_large", "no_org_id", "bad_org_id", "bad_kind", "unserved", "unlisted"}

// String is the class's name, as the metrics label it.
func (r Reason) String() string { return reasonNames[r] }
