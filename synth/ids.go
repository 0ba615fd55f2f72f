package synth

import (
	"encoding/binary"
	"encoding/hex"
	"math/rand/v2"
	"time"

	"github.com/sagewai/observatory/fleet"
)

// ulid returns a ULID whose random part comes from rng, so that a seeded
// fleet produces the same ids; the time part keeps them unique across
// restarts of the demo too, whatever the seed.
func ulid(t time.Time, rng *rand.Rand) string {
	var e [10]byte
	lo, hi := rng.Uint64(), rng.Uint64()
	binary.LittleEndian.PutUint64(e[:8], lo)
	binary.LittleEndian.PutUint16(e[8:], uint16(hi))
	return fleet.ULID(t, e)
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
