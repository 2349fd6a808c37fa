package bench

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	"netpolbench/results"
)

// Files written into a run directory.
const (
	ResultsFile   = "results.json"
	BenchfmtFile  = "bench.txt"
	ReportFile    = "report.html"
	timestampForm = "20060102T150405Z"
)

// RunDir returns out/<UTC timestamp of start>.
func RunDir(out string, start time.Time) string {
	return filepath.Join(out, start.UTC().Format(timestampForm))
}

// ErrInterrupted is returned (wrapped) by Run when its context ends before the sweep does: the
// run then holds every phase it finished, and context.Cause says why it stopped.
var ErrInterrupted = errors.New("run interrupted")

// Write writes the run into dir (created): results.json, one .hgrm percentile file per latency
// histogram, and bench.txt in Go benchmark format for benchstat. A runner with Dir set has
// written dir after every phase already; Write into another directory copies the run there.
func (r *Runner) Write(dir string) error {
	if r.run == nil {
		return fmt.Errorf("write results: the sweep has not run")
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("write results: %w", err)
	}
	lat, err := r.latency(dir)
	if err != nil {
		return fmt.Errorf("write results: %w", err)
	}
	r.run.Latency = lat
	if err := r.run.Validate(); err != nil {
		return err
	}
	b, err := results.Encode(r.run)
	if err != nil {
		return err
	}
	return writeRun(dir, b, r.run)
}

// writeRun writes results.json (encoded as b) and bench.txt into dir, each atomically.
func writeRun(dir string, b []byte, run *results.Run) error {
	var buf bytes.Buffer
	if err := results.WriteBenchfmt(&buf, run); err != nil {
		return err
	}
	if err := results.WriteFileAtomic(filepath.Join(dir, BenchfmtFile), func(w io.Writer) error {
		_, err := w.Write(buf.Bytes())
		return err
	}); err != nil {
		return err
	}
	// results.json last: it names the .hgrm files, which are in place by now.
	return results.WriteFileAtomic(filepath.Join(dir, ResultsFile), func(w io.Writer) error {
		_, err := w.Write(b)
		return err
	})
}

// Results returns the run (after Run), with latency summaries but no .hgrm paths.
func (r *Runner) Results() (*results.Run, error) {
	if r.run == nil {
		return nil, fmt.Errorf("the sweep has not run")
	}
	lat, err := r.latency("")
	if err != nil {
		return nil, err
	}
	r.run.Latency = lat
	return r.run, nil
}

// latency is the run's latency summaries: those set aside (finished scales, and the phases a
// resumed run had finished), as they were, and those measured since, whose .hgrm files are
// written into dir ("" for none).
func (r *Runner) latency(dir string) ([]results.Histogram, error) {
	lat, err := r.hists.Results(dir)
	if err != nil {
		return nil, err
	}
	if len(r.restored) == 0 {
		return lat, nil
	}
	return append(append([]results.Histogram(nil), r.restored...), lat...), nil
}

// checkpoint records the phase id as finished (none for "") and writes the run as it stands
// into Dir: the .hgrm files first, then bench.txt and results.json, each atomically, so a
// process killed at any moment leaves the previous checkpoint's files readable. It keeps the
// encoded run, which an interruption falls back to.
func (r *Runner) checkpoint(id string, took time.Duration) error {
	if id != "" {
		r.run.Progress.Phases = append(r.run.Progress.Phases, results.Phase{ID: id, Duration: took})
	}
	r.run.Duration = r.prior + time.Since(r.segStart)
	r.run.PeakRSSBytes = max(r.run.PeakRSSBytes, peakRSS())
	st, err := r.saveState()
	if err != nil {
		return fmt.Errorf("checkpoint: %w", err)
	}
	r.run.Progress.State = st
	lat, err := r.latency(r.Dir)
	if err != nil {
		return fmt.Errorf("checkpoint: %w", err)
	}
	r.run.Latency = lat
	if err := r.run.Validate(); err != nil {
		return fmt.Errorf("checkpoint after %s: %w", id, err)
	}
	b, err := results.Encode(r.run)
	if err != nil {
		return err
	}
	r.last = b
	if r.Dir == "" {
		return nil
	}
	return writeRun(r.Dir, b, r.run)
}

// interrupted rolls the run back to its last finished phase, records where and why it
// stopped, writes that into Dir and returns the run with an error wrapping ErrInterrupted.
func (r *Runner) interrupted(ctx context.Context) (*results.Run, error) {
	why := "interrupted"
	if c := context.Cause(ctx); c != nil && !errors.Is(c, context.Canceled) {
		why = c.Error()
	}
	where := "between phases"
	if r.current != "" {
		where = "in " + r.current
	}
	run, err := r.stop(why)
	if err != nil {
		return run, err
	}
	return run, fmt.Errorf("%w %s: %s", ErrInterrupted, where, why)
}

// stop rolls the run back to its last finished phase, records that it stopped in the phase
// under way and why, and writes that into Dir.
func (r *Runner) stop(why string) (*results.Run, error) {
	total := r.prior + time.Since(r.segStart)
	run, err := results.Decode(r.last)
	if err != nil {
		return nil, fmt.Errorf("roll back to the last phase: %w", err)
	}
	if err := r.restore(run); err != nil {
		return nil, err
	}
	run.Complete = false
	run.Progress.Stopped = &results.Stop{Phase: r.current, Reason: why, At: time.Now().UTC()}
	run.Duration = total
	r.prior, r.segStart = total, time.Now()
	b, err := results.Encode(run)
	if err != nil {
		return nil, err
	}
	r.last = b
	if r.Dir != "" {
		if err := writeRun(r.Dir, b, run); err != nil {
			return run, err
		}
	}
	return run, nil
}
