// Package digest makes and verifies signed, chained digests: evidence a customer can check, with their own read
// access and a public key, of which objects wivaudit delivered into their bucket.
//
// # What a digest is
//
// For each organisation, at every Digest_Interval boundary (multiples of the interval since the Unix epoch, so
// hourly digests end on the hour, UTC), the plugin writes one object
//
//	{prefix}{org_id}/digests/{chain}/{org_id}-digest-{interval end, 20060102T150405Z}.json
//
// which no glob for *-audit-logs-*.json.gz matches. Its body is a JSON document (Document, indented, readable
// with jq): the organisation, the chain and the digest's sequence number in it, the interval [start, end), every
// object whose delivery the ledger recorded in the interval (key, SHA-256 of its bytes, size, record count, the
// first and last event's id and created_at, the version id when S3 gave one, when it was delivered), the
// previous digest's key and signature (null in a chain's first digest), the signing key's fingerprint and when
// it was made. A digest is written for an interval with no objects too: "nothing was delivered" is then as
// provable as the rest. Each digest starts where the previous one ended, so after a downtime one digest spans
// it and the chain covers time without holes.
//
// # What is signed
//
// The Ed25519 signature is over the exact bytes of the body, with no canonical form to agree on: the verifier
// checks the bytes it downloaded. It is carried, base64, in the object's user metadata x-amz-meta-signature (as
// CloudTrail does), so the body stays plain JSON; a customer can check one digest by hand with
// `openssl pkeyutl -verify -pubin -inkey key.pem -rawin -in digest.json -sigfile sig.bin`. The body names its own
// organisation, chain and interval end, from which its key follows: a signed digest copied to another key or
// another organisation's prefix fails. Each digest also carries the previous digest's signature, so the chain
// cannot be cut and re-joined, and a replaced digest breaks the next one's link even if its own signature
// were valid. The signing key is dedicated to digests and never leaves the plugin; customers get its public
// key (SubjectPublicKeyInfo PEM) and fingerprint.
//
// # Chains
//
// Every Store_Dir has its own chain id (16 random hex digits) in the key, so replicas delivering for the same
// organisation each keep a chain and never write the same digest key; a digest is uploaded with
// If-None-Match, and a 412 on a retry means this chain already wrote it (before a crash or a lost answer). A
// 412 on its first upload means another writer holds the key (a Store_Dir copied to a second replica, or state
// reset while the clock was behind): the digest is made again as the first of a new chain, from where the old
// one stood, and the Store_Dir takes the new chain id. A digest is made and persisted before it is uploaded,
// and uploaded as it is until S3 accepts it, so a crash never makes a second, different digest for the same
// interval. A Store_Dir that is lost starts a new chain; the old one stops.
//
// # What verification proves
//
// With the customer's ListBucket and GetObject, Verify proves, for the period asked: every digest there is was
// signed by the key (not altered, not forged); each chain's digests follow one another (sequence, previous key
// and signature, each starting where the previous ended), so a digest deleted in the middle is named by the
// next one's link; each chain reaches the end of the period within one interval plus a grace (Query.Grace), so
// deleted last digests show as a stopped chain, even when all of the period's were (its last digest before the
// period says when the next was due); every object a digest lists is in the bucket with the SHA-256
// the plugin computed of the bytes it sent; every object written under {prefix}{org_id}/ in the period (by S3's
// LastModified, which no writer chooses) is listed by a digest, except probe objects and those written after
// the newest digest's interval end (reported as not yet covered, not as failures).
//
// # What it does not prove
//
//   - That the plugin was given every event: a digest lists what was delivered, not what the platform emitted.
//   - That an object was never in the bucket: one written and deleted between two verifications, and never
//     listed by a digest (not written by wivaudit), leaves no trace. An object that was listed does: its
//     deletion is found whenever the digest listing it is in the period verified.
//   - That a chain that stops was cut by an attacker rather than by a replica removed or a lost Store_Dir: both
//     are reported the same way, with the last digest's key.
//   - That a chain existed at all: one whose every digest and object was deleted leaves nothing to name, and
//     while another replica's chain covers the period, nothing is missing from what remains.
//   - Anything while the digest is not yet due: a deletion or addition within the last interval (plus the grace)
//     is found by the next verification, once the next digest exists.
//   - Anything if the signing key leaked: whoever holds it can sign a new chain. Rotate it and give customers
//     the new public key; Verify accepts several keys so digests signed before the rotation still verify.
//   - An upload whose answer S3 never gave: the object may or may not be there. The plugin records it as
//     unconfirmed when S3 later answers 412 for its key; a digest lists it so marked, and Verify accepts it
//     whether present (with its SHA-256, or the SHA-256 another chain lists for that key) or absent.
package digest
