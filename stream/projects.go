package stream

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"

	"github.com/nats-io/nats.go/jetstream"
)

// projectKeys are the registry keys of projects ("projects.<id>", as the
// admin API writes them).
const projectKeys = "projects.*"

// ProjectSet is the set of projects in the registry (the Records bucket),
// kept current by Run: the projects the admin API created and has not
// deleted. Telemetry asks it which projects are real tenants, so that
// they always have their own metric label, whatever ids junk events make
// up. Has is safe for concurrent use and never waits on NATS.
type ProjectSet struct {
	records *KVStore
	ready   chan struct{} // closed once the registry's projects at start are in

	// mu guards ids.
	mu  sync.RWMutex
	ids map[string]struct{}
}

// NewProjectSet returns an empty set of the projects of records; Run
// fills it and keeps it current.
func NewProjectSet(records *KVStore) *ProjectSet {
	return &ProjectSet{records: records, ready: make(chan struct{}), ids: map[string]struct{}{}}
}

// Run watches the registry's projects until ctx ends; it returns nil then.
func (s *ProjectSet) Run(ctx context.Context) error {
	w, err := s.records.kv.Watch(ctx, projectKeys)
	if err != nil {
		return fmt.Errorf("watch projects: %w", err)
	}
	defer w.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case e, ok := <-w.Updates():
			if !ok {
				if ctx.Err() != nil {
					return nil
				}
				return errors.New("watch projects: the watch ended")
			}
			if e == nil { // every project there was at start is in
				select {
				case <-s.ready:
				default:
					close(s.ready)
				}
				continue
			}
			id := strings.TrimPrefix(e.Key(), "projects.")
			s.mu.Lock()
			switch e.Operation() {
			case jetstream.KeyValuePut:
				s.ids[id] = struct{}{}
			default: // deleted or purged
				delete(s.ids, id)
			}
			s.mu.Unlock()
		}
	}
}

// Wait returns once the set holds every project the registry had when Run
// started, or with ctx's error. Start the hub after it, so that the
// stream's replay is labelled by the registry too.
func (s *ProjectSet) Wait(ctx context.Context) error {
	select {
	case <-s.ready:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("wait for the projects: %w", ctx.Err())
	}
}

// Has reports whether project is in the registry.
func (s *ProjectSet) Has(project string) bool {
	s.mu.RLock()
	defer s.mu.RUnlock()
	_, ok := s.ids[project]
	return ok
}

// Len returns how many projects the registry holds.
func (s *ProjectSet) Len() int {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return len(s.ids)
}
