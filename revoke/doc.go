// Package revoke keeps the revoked token ids of DESIGN §11.2 in a NATS KV
// bucket (Bucket) that every replica watches, so that a token revoked on
// one replica is refused by all of them within moments.
//
// A revocation is one key, the token id, whose value says when it was
// revoked and until when it matters: when the token would have expired
// anyway. The entry expires then (a per-key TTL where the NATS server
// supports it, and the bucket's MaxAge, the longest lifetime of any
// token, in any case), so the bucket holds only revocations of tokens
// that could still verify. Nothing in the bucket is a secret.
//
// A Store answers Revoked from memory (a map filled by the watch), so
// the check costs a map lookup per request, never a NATS round trip. A
// replica that loses NATS keeps the revocations it has and learns the
// others' when the watch resumes.
//
// revoke imports nats.go's jetstream package and the standard library.
//
// # Concurrency
//
// Open loads every revocation before it returns. Run, which the owner
// must call, applies the watch's updates and drops revocations past their
// time until its context ends; every second it also compares the
// bucket's last sequence with what the watch delivered and replaces a
// watch that fell behind (a consumer that did not come back after NATS
// restarted) or ended, reloading the whole set. Run is the only writer
// of the map apart from Revoke, which records its own revocation at
// once. One RWMutex guards the map; Revoked takes it for reading only.
package revoke
