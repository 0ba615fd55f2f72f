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
// one. Files others can read are refused, not used. Writes are atomic
// (temporary file, sync, rename).
//
// keyring imports the standard library only.
//
// # Concurrency
//
// A Ring is immutable; replace it to change it. Functions that touch
// files do not lock them: one process (observatory rotate-key) writes, the
// servers read.
package keyring
