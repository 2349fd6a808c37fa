package bench

import (
	"context"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"netpolbench/catalogue"
	"netpolbench/internal/testenv"
	"netpolbench/results"
)

// TestQuickSweepEndToEnd runs a one-scale version of `bench --quick` through every backend
// with real packets in the testbed, and checks that each part of the run produced figures.
func TestQuickSweepEndToEnd(t *testing.T) {
	testenv.Long(t, "end-to-end sweep")
	spec := QuickSpec()
	testenv.NeedKernel(t, catalogue.NeedsOf(false, spec.Backends...)...)
	spec.Pods = []int{100}
	spec.Samples = 2
	spec.Packets = 200
	spec.ChurnEvents = 2
	spec.Duration = Duration(time.Second)
	src, err := NewWorkloadSource(spec)
	if err != nil {
		t.Fatal(err)
	}
	r := &Runner{Spec: spec, Source: src, Kernel: true}
	var log strings.Builder
	r.Log = &log
	run, err := r.Run(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("bench log:\n%s", log.String())
		}
	})
	for _, c := range run.Caps {
		if c.Skipped {
			t.Errorf("%s skipped at %d pods: %s", c.Backend, c.Pods, c.Reason)
		}
	}
	dir := t.TempDir()
	if err := r.Write(dir); err != nil {
		t.Fatal(err)
	}
	loaded, err := results.Load(filepath.Join(dir, ResultsFile))
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]bool{}
	for _, b := range []string{"ebpf", "iptables", "ipset"} {
		for _, v := range []string{results.VerdictAllow, results.VerdictDeny} {
			attach := attachNetfilter
			if b == "ebpf" {
				attach = attachTCX
			}
			want[HistKey{Kind: results.KindStampDelta, Backend: b, Pods: 100, Attach: attach, Verdict: v, Flow: results.FlowNew}.Name()] = true
		}
	}
	digests := map[string]bool{}
	for _, h := range loaded.Latency {
		if want[h.Name] {
			delete(want, h.Name)
			if h.Count == 0 || h.Floor == "" || h.AboveFloor == nil || h.HgrmPath == "" {
				t.Errorf("%s: count %d floor %q hgrm %q", h.Name, h.Count, h.Floor, h.HgrmPath)
			}
			if loaded.FindLatency(h.Floor) == nil {
				t.Errorf("%s: floor %s not in the run", h.Name, h.Floor)
			}
		}
		if h.Kind == results.KindStampDelta {
			digests[h.StateDigest+" "+h.FlowDigest] = true
		}
		if h.StateDigest == "" || h.FlowDigest == "" {
			t.Errorf("%s: no state or flow digest", h.Name)
		}
	}
	// Every backend was stamped on the same state and the same flow list.
	if len(digests) != 1 {
		t.Errorf("stamped histograms carry %d state and flow digest pairs, want 1: %v", len(digests), digests)
	}
	for name := range want {
		t.Errorf("no stamped histogram %s", name)
	}
	if len(loaded.Churn) != 3 {
		t.Errorf("churn-under-load timelines: %d, want one per kernel backend (3)", len(loaded.Churn))
	}
	for _, name := range []string{"BenchmarkTestRun/backend=ebpf/pods=100/path=new-deny", "BenchmarkRoundTrip/backend=iptables/pods=100/test=tcp_rr",
		"BenchmarkUpdate/backend=ipset/pods=100/event=policy-add", "BenchmarkSync/backend=iptables/pods=100"} {
		if loaded.Find(name) == nil {
			t.Errorf("no %s", name)
		}
	}
	if len(loaded.Claims) != 3 {
		t.Errorf("claims: %d, want 3", len(loaded.Claims))
	}
}
