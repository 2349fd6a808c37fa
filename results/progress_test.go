package results_test

import (
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"netpolbench/results"
	"netpolbench/results/resultstest"
)

// TestFilesWithoutProgressReadAsComplete: results.json files written before runs recorded
// their progress were written only at the end, so they must keep reading as complete runs.
func TestFilesWithoutProgressReadAsComplete(t *testing.T) {
	run, err := results.Decode([]byte(`{"schema":"` + results.SchemaVersion + `","start":"2026-01-01T00:00:00Z"}`))
	if err != nil {
		t.Fatal(err)
	}
	if !run.Complete || run.Partial() {
		t.Errorf("an old file reads as complete %v, partial %v; want complete", run.Complete, run.Partial())
	}
	run, err = results.Decode([]byte(`{"schema":"` + results.SchemaVersion + `","complete":false,"progress":{"phases":[{"id":"pods=100/workload","duration_ns":5}]}}`))
	if err != nil {
		t.Fatal(err)
	}
	if run.Complete || !run.Partial() || !run.PhaseDone("pods=100/workload") || run.PhaseDone("pods=100/backend=ebpf/sync") {
		t.Errorf("a partial file: complete %v, partial %v, phases %+v", run.Complete, run.Partial(), run.Progress.Phases)
	}
}

func TestValidateRejectsAPhaseRecordedTwiceAndACompleteRunThatStopped(t *testing.T) {
	run := resultstest.Run(resultstest.DefaultOptions())
	run.Progress = &results.Progress{Phases: []results.Phase{{ID: "pods=100/workload"}, {ID: "pods=100/workload"}}}
	if err := run.Validate(); err == nil || !strings.Contains(err.Error(), "recorded twice") {
		t.Errorf("Validate = %v, want a phase recorded twice", err)
	}
	run.Progress = &results.Progress{Phases: []results.Phase{{ID: "pods=100/workload"}}, Stopped: &results.Stop{Phase: "pods=100/backend=ebpf/sync", Reason: "interrupted by SIGINT"}}
	run.Complete = true
	if err := run.Validate(); err == nil || !strings.Contains(err.Error(), "cannot have stopped") {
		t.Errorf("Validate = %v, want a complete run that stopped rejected", err)
	}
	run.Complete = false
	if err := run.Validate(); err != nil {
		t.Errorf("a valid partial run: %v", err)
	}
}

// TestAtomicWriteKeepsThePreviousFileWhenTheWriteFails: a write that fails half-way (as one
// cut short by a kill would) leaves the previous content and no temporary file.
func TestAtomicWriteKeepsThePreviousFileWhenTheWriteFails(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "results.json")
	run := resultstest.Run(resultstest.DefaultOptions())
	if err := results.Save(path, run); err != nil {
		t.Fatal(err)
	}
	before, _ := os.ReadFile(path)
	boom := errors.New("cut short")
	err := results.WriteFileAtomic(path, func(w io.Writer) error {
		w.Write(before[:len(before)/2])
		return boom
	})
	if !errors.Is(err, boom) {
		t.Fatalf("WriteFileAtomic = %v, want the writer's error", err)
	}
	after, _ := os.ReadFile(path)
	if string(after) != string(before) {
		t.Error("a failed write changed the file")
	}
	if _, err := results.Load(path); err != nil {
		t.Errorf("the previous file no longer loads: %v", err)
	}
	ents, _ := os.ReadDir(dir)
	if len(ents) != 1 {
		t.Errorf("directory holds %d files, want results.json alone", len(ents))
	}
	// A temporary file a killed writer left is removed by RemoveStaleTemps, nothing else.
	os.WriteFile(filepath.Join(dir, ".results.json.tmp-123"), []byte("{"), 0o644)
	if err := results.RemoveStaleTemps(dir); err != nil {
		t.Fatal(err)
	}
	if ents, _ := os.ReadDir(dir); len(ents) != 1 || ents[0].Name() != "results.json" {
		t.Errorf("after RemoveStaleTemps: %v", ents)
	}
}
