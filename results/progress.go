package results

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// Progress records how far a run got: the phases it finished, where it stopped if it stopped
// early, and what a resumed run must match. The benchmark writes results.json after every phase,
// so a file of an unfinished run holds every phase it finished and nothing of the phase it was in.
type Progress struct {
	// Phases are the phases the run finished, in the order they finished. Required.
	Phases []Phase `json:"phases"`
	// Stopped says where a run that was interrupted stopped; nil while it runs, when it
	// finished, and when it was killed (the file then is the one written after its last phase).
	Stopped *Stop `json:"stopped,omitempty"`
	// Binary identifies the netpolbench binary that wrote the run. A run is resumed only by the
	// same binary.
	Binary Binary `json:"binary"`
	// Resume is what a resumed run must match besides the binary: the sweep, its seed and its
	// source, as the benchmark encodes them. Opaque to readers.
	Resume json.RawMessage `json:"resume,omitempty"`
	// State is the benchmark's own bookkeeping that the fits and claims at the end of the run
	// need (series over the finished scales). Opaque to readers.
	State json.RawMessage `json:"state,omitempty"`
}

// Phase is one finished phase of a run.
type Phase struct {
	// ID names the phase uniquely within the run, in benchmark style:
	// "pods=1000/backend=ebpf/churn", "pods=1000/workload".
	ID string `json:"id"`
	// Duration is its wall-clock time, in ns.
	Duration time.Duration `json:"duration_ns"`
}

// Stop is where an interrupted run stopped.
type Stop struct {
	// Phase is the ID of the phase the run was in; its figures are not in the file (a resumed
	// run measures it again). "" when the run stopped between phases.
	Phase string `json:"phase"`
	// Reason says why, e.g. "interrupted by SIGINT".
	Reason string `json:"reason"`
	// At is when it stopped (UTC).
	At time.Time `json:"at"`
}

// Binary identifies a netpolbench binary.
type Binary struct {
	// BuildID is the Go build ID of the executable ("" when it could not be read); equal IDs
	// mean the same compiled code.
	BuildID string `json:"build_id,omitempty"`
	// Revision is the VCS revision the binary was built from and Modified whether the tree had
	// changes ("" and false when the build did not stamp them, as `go run` does not).
	Revision string `json:"vcs_revision,omitempty"`
	Modified bool   `json:"vcs_modified,omitempty"`
}

func (b Binary) String() string {
	var parts []string
	if b.BuildID != "" {
		parts = append(parts, "build id "+b.BuildID)
	}
	if b.Revision != "" {
		rev := b.Revision
		if b.Modified {
			rev += " (modified)"
		}
		parts = append(parts, "revision "+rev)
	}
	if len(parts) == 0 {
		return "an unidentified binary"
	}
	return strings.Join(parts, ", ")
}

// Partial reports whether the run did not finish: it recorded its progress and is not complete.
func (run *Run) Partial() bool { return run.Progress != nil && !run.Complete }

// PhaseDone reports whether the run finished the phase id.
func (run *Run) PhaseDone(id string) bool {
	if run.Progress == nil {
		return false
	}
	for _, p := range run.Progress.Phases {
		if p.ID == id {
			return true
		}
	}
	return false
}

// validateProgress checks that phases are named once and that a complete run did not stop.
func (run *Run) validateProgress() []string {
	p := run.Progress
	if p == nil {
		return nil
	}
	var errs []string
	seen := map[string]bool{}
	for _, ph := range p.Phases {
		if ph.ID == "" {
			errs = append(errs, "progress: a phase without an id")
		}
		if seen[ph.ID] {
			errs = append(errs, fmt.Sprintf("progress: phase %s recorded twice", ph.ID))
		}
		seen[ph.ID] = true
	}
	if run.Complete && p.Stopped != nil {
		errs = append(errs, "progress: a complete run cannot have stopped")
	}
	return errs
}

// WriteFileAtomic writes path through write so that readers, and a process killed at any
// moment, see either the old content or the whole new one: it writes a temporary file in the
// same directory, syncs it, renames it over path and syncs the directory.
func WriteFileAtomic(path string, write func(io.Writer) error) error {
	dir, base := filepath.Split(path)
	if dir == "" {
		dir = "."
	}
	f, err := os.CreateTemp(dir, "."+base+".tmp-*")
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	tmp := f.Name()
	fail := func(err error) error {
		f.Close()
		os.Remove(tmp)
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := write(f); err != nil {
		return fail(err)
	}
	if err := f.Chmod(0o644); err != nil {
		return fail(err)
	}
	if err := f.Sync(); err != nil {
		return fail(err)
	}
	if err := f.Close(); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := os.Rename(tmp, path); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("write %s: %w", path, err)
	}
	if d, err := os.Open(dir); err == nil {
		// The rename is durable once the directory is; a failure here loses nothing a reader
		// could see now.
		d.Sync()
		d.Close()
	}
	return nil
}

// RemoveStaleTemps removes the temporary files WriteFileAtomic leaves behind when its process
// is killed mid-write.
func RemoveStaleTemps(dir string) error {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return fmt.Errorf("list %s: %w", dir, err)
	}
	for _, e := range ents {
		if n := e.Name(); strings.HasPrefix(n, ".") && strings.Contains(n, ".tmp-") {
			if err := os.Remove(filepath.Join(dir, n)); err != nil {
				return err
			}
		}
	}
	return nil
}
