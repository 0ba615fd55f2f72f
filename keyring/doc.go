// Package keyring keeps the keys that sign Observatory's tokens, embed
// tokens and enrollment keys (DESIGN §11.1): never in NATS, but in a file
// under --data-dir with mode 0600, or one an operator provides (a
// Kubernetes secret, say).
//
// A Ring holds the current key, which signs, and the keys rotated out of
// service, which still verify until they retire: Rotate makes a fresh
// current key and gives the old one a grace window, so tokens issued
// before a rotation keep working until then and none after. The file is
// JSON ({"keys":[{"id","secret","created","retires"}]}, secrets in base64);
// a file holding a single raw key (base64 or hex) is read as a ring of
// one. Files any user may read (or the group write) are refused, not
// used; the group may read (a Kubernetes secret with an fsGroup). Writes
// are atomic
// (temporary file, sync, rename).
//
// keyring imports the standard library only.
//
// # Concurrency
//
// A Ring is immutable; replace it to change it. Functions that touch
// files do not lock them: one process (observatory rotate-key) writes, the
// servers read. A Watcher polls its file on the goroutine that calls Run,
// its owner's, and calls the function it was given there; a rotation
// reaches a server within a poll (DefaultPoll, a second).
//
// Static and Import make the rings of keys that come from elsewhere: a
// raw key (id StaticID) and the key of a release that kept it in NATS
// (id LegacyID), which verifies tokens without a key id.
package keyring
