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
	// Extra is HubConfig.Extra's part, at the same seq (absent when none).
	Extra json.RawMessage `json:"extra,omitempty"`
}

func (c *Checkpoints) path() string { return filepath.Join(c.dir, "hub-checkpoint.json") }

// Load returns the checkpointed state of epoch, or nil if there is none
// for that epoch. It removes the temporary files a crash during Save left
// behind.
func (c *Checkpoints) Load(epoch string, p *fleet.Pricing) (*fleet.State, error) {
	st, _, err := c.LoadWith(epoch, p)
	return st, err
}

// LoadWith is Load, and returns the extra part saved with the state too
// (nil when there is none).
func (c *Checkpoints) LoadWith(epoch string, p *fleet.Pricing) (*fleet.State, []byte, error) {
	if stale, _ := filepath.Glob(filepath.Join(c.dir, ".hub-checkpoint-*")); len(stale) > 0 {
		for _, f := range stale {
			_ = os.Remove(f)
		}
	}
	b, err := os.ReadFile(c.path())
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil, nil
	}
	if err != nil {
		return nil, nil, fmt.Errorf("load checkpoint: %w", err)
	}
	var f checkpointFile
	if err := json.Unmarshal(b, &f); err != nil {
		return nil, nil, fmt.Errorf("load checkpoint %s: %w", c.path(), err)
	}
	if f.Epoch != epoch {
		return nil, nil, fmt.Errorf("load checkpoint: epoch %q, stream is %q", f.Epoch, epoch)
	}
	st, err := fleet.RestoreState(f.State, p)
	if err != nil {
		return nil, nil, fmt.Errorf("load checkpoint: %w", err)
	}
	return st, f.Extra, nil
}

// Save writes a checkpoint atomically and durably: the file is written
// beside the old one, synced, renamed over it, and the directory synced,
// so a process crash or a power loss leaves the old checkpoint or the new
// one, never a torn or empty file.
func (c *Checkpoints) Save(epoch string, state []byte) error {
	return c.SaveWith(epoch, state, nil)
}

// SaveWith is Save with an extra part kept beside the state (nil: none).
func (c *Checkpoints) SaveWith(epoch string, state, extra []byte) error {
	if err := os.MkdirAll(c.dir, 0o700); err != nil {
		return fmt.Errorf("save checkpoint: %w", err)
	}
	b, err := json.Marshal(checkpointFile{Epoch: epoch, State: state, Extra: extra})
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
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return fmt.Errorf("save checkpoint: %w", err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("save checkpoint: %w", err)
	}
	if err := os.Rename(tmp.Name(), c.path()); err != nil {
		return fmt.Errorf("save checkpoint: %w", err)
	}
	d, err := os.Open(c.dir)
	if err != nil {
		return fmt.Errorf("save checkpoint: %w", err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("save checkpoint: sync %s: %w", c.dir, err)
	}
	return nil
}
