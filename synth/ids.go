package synth

import (
	"encoding/hex"
	"math/rand/v2"
	"time"
)

const crockford = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"

// ulid returns a ULID: 48 bits of milliseconds since the epoch, then 80
// random bits, in Crockford base32 (26 characters). Ids of one process are
// unique by their random part; the time part keeps them unique across
// restarts of the demo too, whatever the seed.
func ulid(t time.Time, rng *rand.Rand) string {
	var raw [16]byte
	ms := uint64(t.UnixMilli())
	for i := 0; i < 6; i++ {
		raw[i] = byte(ms >> (8 * (5 - i)))
	}
	lo, hi := rng.Uint64(), rng.Uint64()
	for i := 0; i < 8; i++ {
		raw[6+i] = byte(lo >> (8 * i))
	}
	raw[14], raw[15] = byte(hi), byte(hi>>8)
	// 26 characters of 5 bits are 130 bits: the 128 bits of raw after two
	// leading zero bits.
	var b [26]byte
	for k := range b {
		var v byte
		for j := 0; j < 5; j++ {
			v <<= 1
			if p := 5*k + j - 2; p >= 0 && raw[p/8]&(0x80>>(p%8)) != 0 {
				v |= 1
			}
		}
		b[k] = crockford[v]
	}
	return string(b[:])
}

// hexID returns n random bytes in lower-case hex.
func hexID(rng *rand.Rand, n int) string {
	b := make([]byte, n)
	for i := 0; i < n; i += 8 {
		v := rng.Uint64()
		for j := 0; j < 8 && i+j < n; j++ {
			b[i+j] = byte(v >> (8 * j))
		}
	}
	return hex.EncodeToString(b)
}
