package fleet_test

import (
	"bytes"
	_ "embed"
	"encoding/json"
	"errors"
	"math/big"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/sagewai/observatory/fleet"
	"github.com/sagewai/observatory/fleet/fleettest"
)

// FuzzRestoreState checks that no checkpoint, however damaged, panics
// RestoreState or the State it gives: either RestoreState refuses it with
// an error, or the State shows its views, folds more events, and
// checkpoints to bytes that restore to the very same checkpoint again.
func FuzzRestoreState(f *testing.F) {
	// Real checkpoints: empty, early, late in a stream, and after a day of
	// silence (windows expired, workers forgotten).
	msgs := generated(3, 200) // small, so that the fuzzer runs fast
	for _, cut := range []int{0, 40, 200} {
		s := fleettest.Fold(msgs[:cut])
		f.Add(checkpointOf(f, s))
	}
	s := fleettest.Fold(msgs)
	s.Tick(uint64(len(msgs)+1), s.Clock().Add(25*time.Hour))
	f.Add(checkpointOf(f, s))
	for _, b := range []string{
		`{}`, `null`, `[]`, `{"version":3}`, `{"version":3,"pricing_as_of":"x"}`,
		`{"version":2,"pricing_as_of":"2026-11-01"}`,
		`{"version":3,"pricing_as_of":"` + fleet.DefaultPricing().AsOf + `","projects":{"acme":{"row":{"id":"acme"},"agents":{"a":null}}}}`,
		`{"version":3,"pricing_as_of":"` + fleet.DefaultPricing().AsOf + `","projects":{"acme":{"row":{"id":"acme","win":{"head":1,"buckets":{"1":null}}}}}}`,
		// Entities that disagree with where they are kept, and an id two
		// projects share.
		`{"version":3,"pricing_as_of":"` + fleet.DefaultPricing().AsOf + `","projects":{"acme":{"row":{"id":"globex","agents":7},` +
			`"agents":{"a":{"id":"b","project_id":"initech","active":true}},"missions":{"m":{"id":"n","agent_id":"a"}},` +
			`"workers":{"w":{"id":"v","status":"online","projects":["x","y"]}},"runs":[{"id":"r"},{"id":"r"}],"finished":["m","m"]},` +
			`"globex":{"row":{"id":"globex","announced":true},"agents":{"a":{}},"missions":{"m":{}},"workers":{"w":{}}}}}`,
	} {
		f.Add([]byte(b))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		s, err := fleet.RestoreState(b, nil)
		if err != nil {
			if s != nil {
				t.Fatalf("RestoreState returned a State and the error %v", err)
			}
			return
		}
		cp := checkpointOf(t, s)
		again, err := fleet.RestoreState(cp, nil)
		if err != nil {
			t.Fatalf("a restored state checkpoints to bytes RestoreState refuses: %v\n%s", err, cp)
		}
		if cp2 := checkpointOf(t, again); !bytes.Equal(cp, cp2) {
			t.Fatalf("checkpoint, restore, checkpoint changed it:\nfirst:  %s\nsecond: %s", cp, cp2)
		}
		// The restored State works: it shows and folds on.
		for _, scope := range append([]string{fleet.ScopeAll}, s.Projects()...) {
			if _, err := json.Marshal(s.View(scope)); err != nil {
				t.Fatalf("the %s view of a restored state cannot be encoded: %v", scope, err)
			}
		}
		at := s.Clock()
		if y := at.Year(); y < 1900 || y > 9000 { // a clock the events below cannot carry
			at = fleettest.Epoch()
		}
		seq := s.Seq()
		for _, ev := range []fleet.Event{
			fleettest.Heartbeat("acme", "w-1", "busy", at),
			fleettest.LLMCall("acme", "a-1", "r-1", "gpt-5", 100, 10, 0, 0, at),
			fleettest.ToolCall("acme", "a-1", "r-1", "search", "error", at),
			fleettest.RunCompleted("acme", "a-1", "r-1", at),
			fleettest.MissionProgress("acme", "m-1", 50, at),
		} {
			seq++
			s.Apply(seq, at.Add(time.Minute), ev)
		}
		s.Tick(seq+1, at.Add(25*time.Hour))
		ch := s.TakeChanges()
		for _, scope := range append([]string{fleet.ScopeAll}, s.Projects()...) {
			if _, err := json.Marshal(s.Delta(scope, ch)); err != nil {
				t.Fatalf("the %s diff of a restored state cannot be encoded: %v", scope, err)
			}
		}
		if _, err := s.MarshalCheckpoint(); err != nil {
			t.Fatalf("a restored state that folded on cannot be checkpointed: %v", err)
		}
	})
}

func checkpointOf(tb testing.TB, s *fleet.State) []byte {
	tb.Helper()
	s.TakeChanges()
	b, err := s.MarshalCheckpoint()
	if err != nil {
		tb.Fatalf("MarshalCheckpoint: %v", err)
	}
	return b
}

//go:embed pricing.json
var embeddedPricing []byte

// FuzzParsePricing checks that no pricing file panics ParsePricing, and
// that a table it accepts prices every model it lists at exactly the
// prices written (names are case-insensitive), and prices any call, up to
// the largest token counts an event may carry, at exactly tokens × price
// rounded half up: no overflow, no negative cost.
func FuzzParsePricing(f *testing.F) {
	f.Add(embeddedPricing)
	for _, b := range []string{
		`{"as_of":"2026-01-01","models":{"m":{"provider":"p","input":"1","output":"2","cache_read":"0.1","cache_write":"0"}}}`,
		`{"as_of":"2026-01-01","models":{"M":{"input":"1","output":"1","cache_read":"1","cache_write":"1"},"m":{"input":"2","output":"2","cache_read":"2","cache_write":"2"}}}`,
		`{"as_of":"2026-01-01","models":{"big":{"input":"999999999999","output":"0","cache_read":"0","cache_write":"0"}}}`,
		`{"as_of":"2026-01-01","models":{"neg":{"input":"-1","output":"0","cache_read":"0","cache_write":"0"}}}`,
		`{"as_of":"2026-01-01","models":{"e":{"input":"1e-6","output":"2.5E2","cache_read":"0","cache_write":"0"}}}`,
		`{"as_of":"2026-01-01","models":{"t":{"input":"1","output":"2","cache_read":"0.1","cache_write":"1.25","tiers":[{"above_input_tokens":200000,"input":"2","output":"3","cache_read":"0.2","cache_write":"2.5"}]}}}`,
		`{"as_of":"2026-01-01","models":{"r":{"match":{"or":[{"equals":"r-1"},{"and":[{"starts_with":"r-"},{"not":{"contains":"-tts"}}]},{"regex":"^r\\d+$"}]},"input":"1","output":"2","cache_read":"1","cache_write":"1"}}}`,
		`{"as_of":"2026-01-01","models":{"n":{"match":{"not":{"equals":"n"}},"input":"1","output":"2","cache_read":"1","cache_write":"1"}}}`,
		`{"as_of":"2026-01-01","models":{}}`, `{"models":{"m":{}}}`, `{}`, `null`, ``,
	} {
		f.Add([]byte(b))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		p, err := fleet.ParsePricing(b)
		if err != nil {
			if p != nil {
				t.Fatalf("ParsePricing returned a table and the error %v", err)
			}
			return
		}
		// The file as JSON reads it (field names match in any case).
		type prices struct {
			Input      string `json:"input"`
			Output     string `json:"output"`
			CacheRead  string `json:"cache_read"`
			CacheWrite string `json:"cache_write"`
		}
		var file struct {
			AsOf   string `json:"as_of"`
			Models map[string]struct {
				prices
				Match json.RawMessage `json:"match"`
				Tiers []struct {
					prices
					AboveInputTokens int64 `json:"above_input_tokens"`
				} `json:"tiers"`
			}
		}
		if err := json.Unmarshal(b, &file); err != nil {
			t.Fatalf("ParsePricing accepted what is not a pricing file: %v", err)
		}
		if p.AsOf != file.AsOf || p.AsOf == "" {
			t.Fatalf("as_of %q, file says %q", p.AsOf, file.AsOf)
		}
		for name, m := range file.Models {
			price, ok := p.Entry(name)
			if !ok {
				t.Fatalf("model %q is in the file but not in the table", name)
			}
			if len(price.Tiers) != len(m.Tiers) {
				t.Fatalf("model %q has %d tiers, the file says %d", name, len(price.Tiers), len(m.Tiers))
			}
			type kinds struct {
				got     [4]fleet.Micros
				written prices
			}
			all := []kinds{{[4]fleet.Micros{price.Input, price.Output, price.CacheRead, price.CacheWrite}, m.prices}}
			for i, tier := range price.Tiers {
				if tier.AboveInputTokens != m.Tiers[i].AboveInputTokens {
					t.Fatalf("model %q tier %d above %d input tokens, the file says %d", name, i, tier.AboveInputTokens, m.Tiers[i].AboveInputTokens)
				}
				all = append(all, kinds{[4]fleet.Micros{tier.Input, tier.Output, tier.CacheRead, tier.CacheWrite}, m.Tiers[i].prices})
			}
			for _, k := range all {
				for i, written := range []string{k.written.Input, k.written.Output, k.written.CacheRead, k.written.CacheWrite} {
					if want, err := fleet.ParseUSD(written); err != nil || want != k.got[i] {
						t.Fatalf("model %q price %d is %s, the file says %q", name, i, k.got[i], written)
					}
				}
			}
			// An entry without a rule prices its own name; any name prices
			// alike in any case.
			got, priced := p.Lookup(name)
			if len(m.Match) == 0 && !priced {
				t.Fatalf("model %q has no match rule but its name is unpriced", name)
			}
			if upper, upriced := p.Lookup(strings.ToUpper(name)); upriced != priced || !reflect.DeepEqual(upper, got) {
				t.Fatalf("model %q and %q price differently", name, strings.ToUpper(name))
			}
			for _, n := range []int64{0, 1, 999_999, 100_000_000, fleet.MaxTokensPerKind} {
				call := fleet.LLMCall{Model: name, InputTokens: n, OutputTokens: n, CacheReadTokens: n, CacheWriteTokens: n}
				if got, want := price.Cost(call), exactCost(price, n); !want.IsInt64() || got != fleet.Micros(want.Int64()) {
					t.Fatalf("model %q, %d tokens of each kind: cost %d µ$, want %s µ$", name, n, got, want)
				}
			}
		}
	})
}

// exactCost is n tokens of each kind at price, worked out with math/big:
// µ$ per million tokens × tokens / 10⁶, rounded half up. The prices are
// those of the last tier whose threshold the 3n input tokens (input, cache
// read, cache write) pass, else the base prices.
func exactCost(price fleet.Price, n int64) *big.Int {
	per := []fleet.Micros{price.Input, price.Output, price.CacheRead, price.CacheWrite}
	for _, tier := range price.Tiers {
		if 3*n > tier.AboveInputTokens {
			per = []fleet.Micros{tier.Input, tier.Output, tier.CacheRead, tier.CacheWrite}
		}
	}
	sum := new(big.Int)
	for _, p := range per {
		sum.Add(sum, new(big.Int).Mul(big.NewInt(int64(p)), big.NewInt(n)))
	}
	sum.Add(sum, big.NewInt(500_000))
	return sum.Quo(sum, big.NewInt(1_000_000))
}

// TestRestoreStateRefusesDamage checks that a checkpoint with holes where
// entities should be is refused with an error, not restored into a State
// that panics later.
func TestRestoreStateRefusesDamage(t *testing.T) {
	asOf := fleet.DefaultPricing().AsOf
	for name, body := range map[string]string{
		"a null project":            `{"projects":{"acme":null}}`,
		"a project without its row": `{"projects":{"acme":{}}}`,
		"a null agent":              `{"projects":{"acme":{"row":{"id":"acme"},"agents":{"a":null}}}}`,
		"a null worker":             `{"projects":{"acme":{"row":{"id":"acme"},"workers":{"w":null}}}}`,
		"a null mission":            `{"projects":{"acme":{"row":{"id":"acme"},"missions":{"m":null}}}}`,
		"a null budget":             `{"projects":{"acme":{"row":{"id":"acme"},"budgets":{"b":null}}}}`,
		"a null run":                `{"projects":{"acme":{"row":{"id":"acme"},"runs":[null]}}}`,
		"a null bucket":             `{"projects":{"acme":{"row":{"id":"acme","win":{"head":1,"buckets":{"1":null}}}}}}`,
	} {
		t.Run(name, func(t *testing.T) {
			b := `{"version":3,"pricing_as_of":"` + asOf + `",` + body[1:]
			s, err := fleet.RestoreState([]byte(b), nil)
			if err == nil || s != nil || errors.Is(err, fleet.ErrCheckpointVersion) {
				t.Fatalf("RestoreState(%s) = %v, %v; want a damage error", b, s, err)
			}
		})
	}
}
