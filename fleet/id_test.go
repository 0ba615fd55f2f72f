package fleet_test

import (
	"testing"
	"time"

	"github.com/sagewai/observatory/fleet"
)

func TestULID(t *testing.T) {
	// The time part of the ULID specification's example.
	at := time.UnixMilli(1469918176385)
	if got, want := fleet.ULID(at, [10]byte{}), "01ARYZ6S41"+"0000000000000000"; got != want {
		t.Errorf("ULID = %s, want %s", got, want)
	}
	var ff [10]byte
	for i := range ff {
		ff[i] = 0xff
	}
	if got, want := fleet.ULID(at, ff), "01ARYZ6S41"+"ZZZZZZZZZZZZZZZZ"; got != want {
		t.Errorf("ULID = %s, want %s", got, want)
	}
	a, b := fleet.NewID(at), fleet.NewID(at.Add(time.Millisecond))
	if a == fleet.NewID(at) || !(a < b) || len(a) != 26 {
		t.Errorf("NewID: %s then %s: want 26 characters, unique, sorted by time", a, b)
	}
}
