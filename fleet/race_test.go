//go:build race

package fleet_test

// raceEnabled is true under the race detector, which slows the fold about
// tenfold; the property tests then try fewer seeds.
const raceEnabled = true
