package bench

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"netpolbench/catalogue"
	"netpolbench/controlplane"
	"netpolbench/internal/testenv"
	"netpolbench/policy"
	"netpolbench/results"
	"netpolbench/testbed"
)

// stopWriter watches the progress lines and cancels the run a little after a line with at.
type stopWriter struct {
	mu     sync.Mutex
	at     string
	cancel func()
	fired  time.Time
}

func (w *stopWriter) Write(b []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.fired.IsZero() && strings.Contains(string(b), w.at) {
		w.fired = time.Now()
		time.AfterFunc(300*time.Millisecond, w.cancel)
	}
	return len(b), nil
}

// TestAPIServerPhaseTimesEveryStageAndResumesAfterAStop runs the end-to-end phase alone at 100
// pods through the embedded control plane: the compiled state (no packets), the eBPF datapath
// (TCX) and ipset (the node's FORWARD path), one after another on the same API server. The
// run is stopped while the eBPF agent works through its churn: it must stop within seconds,
// with its control plane and testbed gone and the phases before recorded, and a resume must
// finish it without measuring the compiled state again. Then every write must be paired with
// its enforcement, every backend must have met the same events (the churn is taken back
// between backends, and written anew after the resume), and the kernel backends' probes must
// see each probed event's new verdict on real packets, never before the agent could have
// applied it.
func TestAPIServerPhaseTimesEveryStageAndResumesAfterAStop(t *testing.T) {
	testenv.Long(t, "the end-to-end phase")
	testenv.NeedKernel(t, catalogue.NeedsOf(false, "ebpf", "ipset")...)
	for _, find := range []func() (string, error){controlplane.FindKubeAPIServer, controlplane.FindEtcd} {
		if _, err := find(); err != nil {
			testenv.Missing(t, err.Error())
		}
	}
	spec := QuickSpec()
	spec.Pods = nil
	spec.APIServer = &APIServerSpec{Pods: []int{100}, QPS: []float64{40}, Seconds: 1.5, Settle: Duration(10 * time.Second),
		Backends: []string{"compiled", "ebpf", "ipset"}}
	spec = spec.withDefaults()
	if err := spec.Validate(); err != nil {
		t.Fatal(err)
	}
	src, err := NewWorkloadSource(spec)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	var log strings.Builder
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("bench log:\n%s", log.String())
		}
	})

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	stop := &stopWriter{at: "backend=ebpf: 64 events", cancel: cancel}
	r := &Runner{Spec: spec, Source: src, Kernel: true, Dir: dir, Log: &log, Progress: NewProgress(stop)}
	if _, err := r.Run(ctx); !errors.Is(err, ErrInterrupted) {
		t.Fatalf("stopped run: err %v, want ErrInterrupted", err)
	}
	if stop.fired.IsZero() {
		t.Fatal("the run never reached the eBPF agent's churn")
	}
	took := time.Since(stop.fired) - 300*time.Millisecond
	t.Logf("stopped %s after the signal", took.Round(time.Millisecond))
	if took > 5*time.Second {
		t.Errorf("the run took %s to stop", took)
	}
	left, err := controlplane.Leftovers()
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range left {
		if l.PID == os.Getpid() {
			t.Errorf("the stopped run left its control plane: %s (processes %v)", l.Dir, l.Processes)
		}
	}
	beds, err := testbed.Leftovers()
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range beds {
		if l.PID == os.Getpid() {
			t.Errorf("the stopped run left a testbed namespace: %s", l.Name)
		}
	}
	stopped, err := results.Load(filepath.Join(dir, ResultsFile))
	if err != nil {
		t.Fatal(err)
	}
	if !stopped.PhaseDone("apiserver/pods=100/backend=compiled") || stopped.PhaseDone("apiserver/pods=100/backend=ebpf") || stopped.Complete {
		t.Fatalf("stopped run: phases %v, complete %v; want the compiled state's done and the eBPF datapath's not", stopped.Progress.Phases, stopped.Complete)
	}
	if len(stopped.EndToEnd) != 1 {
		t.Errorf("stopped run: %d end-to-end runs, want the compiled state's only", len(stopped.EndToEnd))
	}

	r = &Runner{Spec: spec, Source: src, Kernel: true, Log: &log}
	if err := r.Resume(dir); err != nil {
		t.Fatal(err)
	}
	run, err := r.Run(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := r.Results(); err != nil {
		t.Fatal(err)
	}
	for _, c := range run.Caps {
		t.Errorf("%s capped at %d pods: %s", c.Backend, c.Pods, c.Reason)
	}
	if len(run.EndToEnd) != 3 {
		t.Fatalf("%d end-to-end runs, want 3", len(run.EndToEnd))
	}
	digest := run.EndToEnd[0].EventsDigest
	for _, e := range run.EndToEnd {
		t.Logf("%s: %d writes, %d samples, %d probed (%d skipped), agent start %s, %.0f events/s; requests %v", e.Backend, e.Writes, e.Samples,
			e.Probed, e.ProbesSkipped, time.Duration(e.AgentStartNS).Round(time.Millisecond), e.Achieved(), e.Requests)
		if e.Writes != e.Events || e.Failed > 0 || e.Samples != e.Writes || e.Unmatched > 0 {
			t.Errorf("%s: %d events, %d written, %d failed, %d paired, %d not", e.Backend, e.Events, e.Writes, e.Failed, e.Samples, e.Unmatched)
		}
		if e.EventsDigest != digest {
			t.Errorf("%s met other events (digest %s) than %s (%s)", e.Backend, e.EventsDigest, run.EndToEnd[0].Backend, digest)
		}
		if e.Requests["POST pods"] == 0 || e.WatchEvents["pods"] == 0 {
			t.Errorf("%s: no load recorded: requests %v, watch events %v", e.Backend, e.Requests, e.WatchEvents)
		}
		kernel := e.Backend != "compiled"
		if kernel != (e.Probe == "real packets in the testbed") {
			t.Errorf("%s: probe %q", e.Backend, e.Probe)
		}
		if kernel && (e.Probed == 0 || e.ProbesFailed > 0 || e.ProbeError != "") {
			t.Errorf("%s: %d probed, %d failed: %s", e.Backend, e.Probed, e.ProbesFailed, e.ProbeError)
		}
		// Before the agent had the event's delta, the backend cannot have changed: a probe
		// that saw the new verdict then was not timing this event.
		if e.ProbesEarly > 0 {
			t.Errorf("%s: %d probes saw the new verdict before the agent had the event's delta", e.Backend, e.ProbesEarly)
		}
	}
	if n := len(run.Benchmarks); n == 0 || run.Find("BenchmarkAPIWriteCluster/pods=100") == nil {
		t.Error("no BenchmarkAPIWriteCluster/pods=100")
	}
	if !run.Complete {
		t.Error("the resumed run is not complete")
	}
	hists := map[string]*results.Histogram{}
	for i, h := range run.Latency {
		hists[h.Name] = &run.Latency[i]
	}
	for _, name := range []string{"compiled", "ebpf", "ipset"} {
		for _, stage := range []string{results.StageAck, results.StageWatch, results.StageApply, results.StageAgent} {
			key := HistKey{Kind: results.KindEnforcement, Backend: name, Pods: 100, Extra: "stage=" + stage + "/qps=40"}.Name()
			if h := hists[key]; h == nil || h.Count == 0 || h.Labels["stage"] != stage || h.Labels["qps"] != "40" {
				t.Errorf("no histogram %s", key)
			}
		}
	}
	for _, name := range []string{"ebpf", "ipset"} {
		probe := hists[HistKey{Kind: results.KindEnforcement, Backend: name, Pods: 100, Extra: "stage=probe/qps=40"}.Name()]
		if probe == nil || probe.Count == 0 {
			t.Errorf("%s: no probe histogram", name)
		}
	}
}

// TestTakeBackUndoesOnlyTheListsWritten writes the first of a scale's churn lists, or both,
// and takes them back: the cluster must be as generated again, without an event that undoes
// a write never made (a backend that fell behind the lower rate never gets the higher one).
func TestTakeBackUndoesOnlyTheListsWritten(t *testing.T) {
	spec := QuickSpec()
	spec.Pods = nil
	spec.APIServer = &APIServerSpec{Pods: []int{100}, QPS: []float64{20, 100}, Seconds: 1}
	spec = spec.withDefaults()
	src, err := NewWorkloadSource(spec)
	if err != nil {
		t.Fatal(err)
	}
	s, err := (&Runner{Spec: spec, Source: src}).newAPIScale(100)
	if err != nil {
		t.Fatal(err)
	}
	if len(s.lists) != 2 || len(s.lists[0]) == 0 || len(s.lists[1]) == 0 {
		t.Fatalf("lists of %d rates, want 2 non-empty", len(s.lists))
	}
	for written := 1; written <= 2; written++ {
		comp, err := policy.Compile(s.base.Clone(), policy.Options{})
		if err != nil {
			t.Fatal(err)
		}
		for _, evs := range [][]policy.Event{slices.Concat(s.lists[:written]...), s.takeBack(written)} {
			for _, ev := range evs {
				if _, err := comp.Apply(ev); err != nil {
					t.Fatalf("%d lists written: %s: %v", written, ev.Kind, err)
				}
			}
		}
		if d := comp.Cluster().Diff(s.base, nil); d != "" {
			t.Errorf("%d lists written and taken back: %s", written, d)
		}
	}
}
