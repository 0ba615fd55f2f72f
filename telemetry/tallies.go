package telemetry

import (
	"encoding/json"
	"fmt"
	"slices"
	"strings"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"

	"github.com/sagewai/observatory/fleet"
)

// tally is one domain counter: its exact value per attribute set, read
// by the collector through an observable counter.
type tally struct {
	name string
	inst metric.Int64ObservableCounter
	vals map[attribute.Distinct]*tallyVal
}

type tallyVal struct {
	set attribute.Set
	n   int64
}

// addLocked adds n to t's series set; the caller holds costMu.
func (t *tally) addLocked(n int64, set attribute.Set) {
	v := t.vals[set.Equivalent()]
	if v == nil {
		v = &tallyVal{set: set}
		t.vals[set.Equivalent()] = v
	}
	v.n += n
}

// add adds n to t's series set.
func (o *fleetObserver) add(t *tally, n int64, set attribute.Set) {
	o.costMu.Lock()
	t.addLocked(n, set)
	o.costMu.Unlock()
}

// observerCheckpoint is what a hub checkpoint keeps of the observer: the
// domain counters and the exact cost sums at the checkpoint's seq.
type observerCheckpoint struct {
	Tallies     map[string][]tallyPoint `json:"tallies"`
	Cost        []costPoint             `json:"cost"`
	CostByAgent []costPoint             `json:"cost_by_agent"`
}

type tallyPoint struct {
	Attrs map[string]string `json:"attrs"`
	N     int64             `json:"n"`
}

type costPoint struct {
	Keys []string     `json:"keys"`
	USD  fleet.Micros `json:"usd"`
}

func (o *fleetObserver) saveCheckpoint() ([]byte, error) {
	o.costMu.Lock()
	defer o.costMu.Unlock()
	cp := observerCheckpoint{Tallies: map[string][]tallyPoint{}}
	type keyed struct {
		key string // attrKey, made once per point rather than per comparison
		pt  tallyPoint
	}
	for _, t := range o.tallies {
		ks := make([]keyed, 0, len(t.vals))
		for _, v := range t.vals {
			attrs := make(map[string]string, v.set.Len())
			for _, kv := range v.set.ToSlice() {
				attrs[string(kv.Key)] = kv.Value.Emit()
			}
			ks = append(ks, keyed{attrKey(attrs), tallyPoint{Attrs: attrs, N: v.n}})
		}
		slices.SortFunc(ks, func(a, b keyed) int { return strings.Compare(a.key, b.key) })
		pts := make([]tallyPoint, len(ks))
		for i := range ks {
			pts[i] = ks[i].pt
		}
		cp.Tallies[t.name] = pts
	}
	for k, v := range o.cost {
		cp.Cost = append(cp.Cost, costPoint{Keys: k[:], USD: v})
	}
	for k, v := range o.costByAgent {
		cp.CostByAgent = append(cp.CostByAgent, costPoint{Keys: k[:], USD: v})
	}
	// Sorted, so that a checkpoint of the same tallies is the same bytes.
	byKeys := func(ps []costPoint) {
		slices.SortFunc(ps, func(a, b costPoint) int { return slices.Compare(a.Keys, b.Keys) })
	}
	byKeys(cp.Cost)
	byKeys(cp.CostByAgent)
	return json.Marshal(cp)
}

// loadCheckpoint replaces the tallies and cost sums with a checkpoint's,
// before the hub folds what came after it. The project labels the
// checkpoint's series carry are taken as they are.
func (o *fleetObserver) loadCheckpoint(b []byte) error {
	var cp observerCheckpoint
	if err := json.Unmarshal(b, &cp); err != nil {
		return fmt.Errorf("telemetry checkpoint: %w", err)
	}
	o.costMu.Lock()
	defer o.costMu.Unlock()
	for _, t := range o.tallies {
		clear(t.vals)
		for _, p := range cp.Tallies[t.name] {
			kvs := make([]attribute.KeyValue, 0, len(p.Attrs))
			for k, v := range p.Attrs {
				kvs = append(kvs, attribute.String(k, v))
			}
			t.addLocked(p.N, attribute.NewSet(kvs...))
		}
	}
	clear(o.cost)
	for _, p := range cp.Cost {
		if len(p.Keys) == 2 {
			o.cost[[2]string{p.Keys[0], p.Keys[1]}] += p.USD
		}
	}
	clear(o.costByAgent)
	for _, p := range cp.CostByAgent {
		if len(p.Keys) == 3 {
			o.costByAgent[[3]string{p.Keys[0], p.Keys[1], p.Keys[2]}] += p.USD
		}
	}
	return nil
}

// SaveCheckpoint and LoadCheckpoint make Telemetry the hub's
// stream.CheckpointExtra: the domain counters continue across a restart
// from a checkpoint instead of counting only the events after it, so a
// replica that becomes the exporter later still reports the fleet's
// figures. Histograms are not kept: they start again, as after any
// restart. Both run on the hub goroutine.
func (t *Telemetry) SaveCheckpoint() ([]byte, error) { return t.fleet.saveCheckpoint() }

// LoadCheckpoint is SaveCheckpoint's other half.
func (t *Telemetry) LoadCheckpoint(b []byte) error { return t.fleet.loadCheckpoint(b) }

// attrKey orders tally points: their attributes as sorted JSON.
func attrKey(m map[string]string) string {
	b, _ := json.Marshal(m)
	return string(b)
}
