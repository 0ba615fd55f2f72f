package stream

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/sagewai/observatory/fleet"
)

// Checkpoints keeps the hub's folded state in a file of the data dir, so a
// restart folds only what came after it. Every replica folds the same stream
// to the same state, so each keeps its own file.
type Checkpoints struct {
	dir string
}

// NewCheckpoints stores checkpoints in dir.
func NewCheckpoints(dir string) *Checkpoints { return &Checkpoints{dir: dir} }

type checkpointFile struct {
	Epoch string          `json:"epoch"`
	State json.RawMessage `json:"state"`
}

func (c *Checkpoints) path() string { return filepath.Join(c.dir, "hub-checkpoint.json") }

// Load returns the checkpointed state of epoch, or nil if there is none
// for that epoch.
func (c *Checkpoints) Load(epoch string, p *fleet.Pricing) (*fleet.State, error) {
	b, err := os.ReadFile(c.path())
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("load checkpoint: %w", err)
	}
	var f checkpointFile
	if err := json.Unmarshal(b, &f); err != nil {
		return nil, fmt.Errorf("load checkpoint %s: %w", c.path(), err)
	}
	if f.Epoch != epoch {
		return nil, fmt.Errorf("load checkpoint: epoch %q, stream is %q", f.Epoch, epoch)
	}
	st, err := fleet.RestoreState(f.State, p)
	if err != nil {
		return nil, fmt.Errorf("load checkpoint: %w", err)
	}
	return st, nil
}

// Save writes a checkpoint atomically: a crash leaves the old one or the new
// one, never a torn file. sync also flushes it to disk.
func (c *Checkpoints) Save(epoch string, state []byte, sync bool) error {
	if err := os.MkdirAll(c.dir, 0o700); err != nil {
		return fmt.Errorf("save checkpoint: %w", err)
	}
	b, err := json.Marshal(checkpointFile{Epoch: epoch, State: state})
	if err != nil {
		return fmt.Errorf("save checkpoint: %w", err)
	}
	tmp, err := os.CreateTemp(c.dir, ".hub-checkpoint-*")
	if err != nil {
		return fmt.Errorf("save checkpoint: %w", err)
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(b); err != nil {
		tmp.Close()
		return fmt.Errorf("save checkpoint: %w", err)
	}
	if sync {
		if err := tmp.Sync(); err != nil {
			tmp.Close()
			return fmt.Errorf("save checkpoint: %w", err)
		}
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("save checkpoint: %w", err)
	}
	if err := os.Rename(tmp.Name(), c.path()); err != nil {
		return fmt.Errorf("save checkpoint: %w", err)
	}
	return nil
}
