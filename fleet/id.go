package fleet

import (
	"crypto/rand"
	"encoding/binary"
	"time"
)

const crockford = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"

// ULID encodes a ULID: the 48 bits of t's Unix milliseconds, then the first
// 80 bits of entropy, as 26 characters of Crockford base32. Ids made this
// way sort by time and are unique without coordination. ULID is pure: the
// caller chooses the entropy (NewID reads the OS's; a seeded generator gives
// reproducible ids).
func ULID(t time.Time, entropy [10]byte) string {
	var b [16]byte
	ms := uint64(t.UnixMilli())
	binary.BigEndian.PutUint16(b[0:2], uint16(ms>>32))
	binary.BigEndian.PutUint32(b[2:6], uint32(ms))
	copy(b[6:], entropy[:])
	hi, lo := binary.BigEndian.Uint64(b[:8]), binary.BigEndian.Uint64(b[8:])
	var out [26]byte
	for i := len(out) - 1; i >= 0; i-- {
		out[i] = crockford[lo&31]
		lo = lo>>5 | hi<<59
		hi >>= 5
	}
	return string(out[:])
}

// NewID returns a ULID for an event or a record made at t, with 80 bits
// from crypto/rand.
func NewID(t time.Time) string {
	var e [10]byte
	_, _ = rand.Read(e[:])
	return ULID(t, e)
}
