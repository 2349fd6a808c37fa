package main

import (
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"

	"netpolbench/catalogue"
)

// tripwireOpened counts the openings of the test-tripwire backend.
var tripwireOpened atomic.Int32

func init() {
	catalogue.Register(&catalogue.Backend{Name: "test-tripwire", Help: "test only: counts its openings", Family: catalogue.InProcess,
		Decide: func(catalogue.Env) (catalogue.Decider, error) { tripwireOpened.Add(1); return allowAll{}, nil }})
}

// badDumps are cluster dumps a command must refuse before it opens a backend or creates
// anything, and what the refusal must say (file, document, line, object and field).
var badDumps = []struct {
	name, doc string
	want      []string
}{
	{"invalid object", "apiVersion: v1\nkind: Namespace\nmetadata: {name: x}\n---\napiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {namespace: x, name: p}\nspec:\n  podSelector: {}\n  ingress:\n  - ports:\n    - {port: 80, endPort: 70}\n",
		[]string{"dump.yaml: document 1: line 12: networkpolicy x/p: spec.ingress[0].ports[0].endPort"}},
	{"two running pods with one IP", "apiVersion: v1\nkind: Pod\nmetadata: {namespace: x, name: a}\nstatus: {phase: Running, podIP: 198.18.0.1}\n---\napiVersion: v1\nkind: Pod\nmetadata: {namespace: x, name: b}\nstatus: {phase: Running, podIP: 198.18.0.1}\n",
		[]string{"dump.yaml: document 1: line 9: pod x/b: status.podIP: 198.18.0.1 is also the IP of pod x/a"}},
	{"no pod is an endpoint", "apiVersion: v1\nkind: Pod\nmetadata: {namespace: x, name: a}\nstatus: {phase: Succeeded, podIP: 198.18.0.1}\n",
		[]string{"dump.yaml", "no pods"}},
}

func writeDump(t *testing.T, doc string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "dump.yaml")
	if err := os.WriteFile(p, []byte(doc), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestVerdictRefusesABadDumpBeforeOpeningABackend(t *testing.T) {
	cluster, probes := modelFiles(t)
	for _, tc := range badDumps[:2] {
		t.Run(tc.name, func(t *testing.T) {
			before := tripwireOpened.Load()
			_, code, err := runErr(t, "verdict", "-f", writeDump(t, tc.doc), "--probes", probes, "--backends", "reference,test-tripwire")
			if code != 2 {
				t.Fatalf("exit %d, want 2 (bad input)", code)
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not say %q", err, w)
				}
			}
			if tripwireOpened.Load() != before {
				t.Error("a backend was opened for a dump that was refused")
			}
		})
	}
	// The tripwire does catch an opening.
	before := tripwireOpened.Load()
	if _, code := run(t, "verdict", "-f", cluster, "--probes", probes, "--backends", "reference,test-tripwire"); code != 1 || tripwireOpened.Load() != before+1 {
		t.Fatalf("a good dump: exit %d (want 1: the tripwire allows all), %d openings (want 1)", code, tripwireOpened.Load()-before)
	}
}

func TestBenchRefusesABadDumpBeforeRunning(t *testing.T) {
	for _, tc := range badDumps {
		t.Run(tc.name, func(t *testing.T) {
			out := t.TempDir()
			_, code, err := runErr(t, "bench", "--cluster", writeDump(t, tc.doc), "--out", out, "--no-packets", "--samples", "1")
			if code != 2 {
				t.Fatalf("exit %d, want 2 (bad input)", code)
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not say %q", err, w)
				}
			}
			if entries, _ := os.ReadDir(out); len(entries) > 0 {
				t.Errorf("a refused dump left %s in the results directory", entries[0].Name())
			}
		})
	}
}
