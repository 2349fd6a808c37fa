package bench

import (
	"bytes"
	"fmt"
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

// Write writes the run into dir (created): results.json, one .hgrm percentile file per latency
// histogram, and bench.txt in Go benchmark format for benchstat.
func (r *Runner) Write(dir string) error {
	if r.run == nil {
		return fmt.Errorf("write results: the sweep has not run")
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("write results: %w", err)
	}
	lat, err := r.hists.Results(dir)
	if err != nil {
		return fmt.Errorf("write results: %w", err)
	}
	r.run.Latency = lat
	if err := r.run.Validate(); err != nil {
		return err
	}
	if err := results.Save(filepath.Join(dir, ResultsFile), r.run); err != nil {
		return err
	}
	var buf bytes.Buffer
	if err := results.WriteBenchfmt(&buf, r.run); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(dir, BenchfmtFile), buf.Bytes(), 0o644); err != nil {
		return fmt.Errorf("write benchfmt: %w", err)
	}
	return nil
}

// Results returns the run (after Run), with latency summaries but no .hgrm paths.
func (r *Runner) Results() (*results.Run, error) {
	if r.run == nil {
		return nil, fmt.Errorf("the sweep has not run")
	}
	lat, err := r.hists.Results("")
	if err != nil {
		return nil, err
	}
	r.run.Latency = lat
	return r.run, nil
}
