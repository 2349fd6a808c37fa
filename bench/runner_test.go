package bench

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"netpolbench/catalogue"
	"netpolbench/policy"
	"netpolbench/results"
)

// fingerprint names a compiled state by what enforcement depends on: its pods with their
// labels, its policies and its entries.
func fingerprint(st *policy.State) string {
	var b strings.Builder
	cl := st.Cluster()
	for _, k := range cl.PodKeys() {
		fmt.Fprintf(&b, "%s%v;", k, cl.Pods[k].Labels)
	}
	for _, k := range cl.PolicyKeys() {
		fmt.Fprintf(&b, "%s;", k)
	}
	fmt.Fprintf(&b, "%d/%d", st.NumEntries(), len(st.RuleSets()))
	return b.String()
}

// recorder is a backend that keeps the state it was handed and logs every call with the
// fingerprint of the state at that moment. It test-runs, so it has every phase a program
// backend has without a kernel.
type recorder struct {
	name string
	mu   *sync.Mutex
	log  *[]string
	st   *policy.State
	// update, when set, is called before each Update with its number (1, 2, ...); an error it
	// returns fails the Update.
	update  func(n int) error
	updates int
}

func (b *recorder) note(what string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	*b.log = append(*b.log, what+" "+fingerprint(b.st))
}

func (b *recorder) Name() string { return b.name }
func (b *recorder) Sync(s *policy.State) (policy.SyncStats, error) {
	b.st = s
	b.note("sync")
	return policy.SyncStats{Ops: 1}, nil
}
func (b *recorder) Update(s *policy.State, d *policy.Delta) (policy.SyncStats, error) {
	b.updates++
	if b.update != nil {
		if err := b.update(b.updates); err != nil {
			return policy.SyncStats{}, err
		}
	}
	b.st = s
	b.note("update")
	return policy.SyncStats{Ops: 1}, nil
}
func (b *recorder) Close() error { return nil }
func (b *recorder) TestRun(f policy.Flow, repeat int) (time.Duration, error) {
	b.note("testrun")
	return 120 * time.Nanosecond, nil
}
func (b *recorder) TestRunFloor(repeat int) (time.Duration, error) { return 30 * time.Nanosecond, nil }

// recorders registers one recording backend per name; each one's calls go to its own log.
func recorders(t *testing.T, update func(name string, n int) error, names ...string) map[string]*[]string {
	t.Helper()
	logs := map[string]*[]string{}
	var mu sync.Mutex
	for _, n := range names {
		log := &[]string{}
		logs[n] = log
		t.Cleanup(catalogue.Register(&catalogue.Backend{Name: n, Help: "test only: records its calls", Family: catalogue.InProcess, Path: "test",
			New: func(catalogue.Env) (policy.Backend, error) {
				b := &recorder{name: n, mu: &mu, log: log}
				if update != nil {
					b.update = func(i int) error { return update(n, i) }
				}
				return b, nil
			}}))
	}
	return logs
}

func smallSpec(backends ...string) Spec {
	return Spec{Pods: []int{40, 80}, Backends: backends, Samples: 2, ChurnEvents: 2, ScaleBurst: 3}.withDefaults()
}

// TestCappedChurnDoesNotChangeWhatIsMeasured: every backend's test runs see the scale's
// state as compiled, before any churn, also when one backend's churn is cut short and the
// other's is not, and its size is taken on that state too.
func TestCappedChurnDoesNotChangeWhatIsMeasured(t *testing.T) {
	logs := recorders(t, func(name string, n int) error {
		if name == "test-rec-capped" && n == 3 {
			return errors.New("update refused")
		}
		return nil
	}, "test-rec-full", "test-rec-capped")
	spec := smallSpec("test-rec-capped", "test-rec-full")
	spec.Pods = []int{60}
	r := &Runner{Spec: spec, Source: testSource{labelSets: 6}}
	run, err := r.Run(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if !run.ChurnCapped("test-rec-capped", 60) || run.ChurnCapped("test-rec-full", 60) {
		t.Fatalf("churn caps: %+v", run.Caps)
	}
	frozen := fingerprint(mustTestCompiler(t, 60, 6).State())
	for name, log := range logs {
		var sawUpdate bool
		var testRuns int
		for _, l := range *log {
			what, fp, _ := strings.Cut(l, " ")
			switch what {
			case "update":
				sawUpdate = true
			case "testrun":
				testRuns++
				if sawUpdate || fp != frozen {
					t.Fatalf("%s: a test run after churn began or on another state (%.60s…)", name, fp)
				}
			case "sync":
				if fp != frozen {
					t.Errorf("%s: synced a state other than the frozen one", name)
				}
			}
		}
		if testRuns == 0 || !sawUpdate {
			t.Errorf("%s: %d test runs, updates %v: nothing to compare", name, testRuns, sawUpdate)
		}
	}
	// Every test-run histogram says what it was measured on, and the two backends' say the same.
	digests := map[string]map[string]bool{}
	for _, h := range run.Latency {
		if h.StateDigest == "" || h.FlowDigest == "" {
			t.Errorf("%s: state digest %q, flow digest %q", h.Name, h.StateDigest, h.FlowDigest)
		}
		key := h.Kind + " " + h.Verdict + " " + h.Backend
		if h.Backend != results.BackendFloorName {
			key = h.Kind + " " + h.Verdict
		}
		if digests[key] == nil {
			digests[key] = map[string]bool{}
		}
		digests[key][h.StateDigest+" "+h.FlowDigest] = true
	}
	if len(run.Latency) < 4 {
		t.Errorf("%d latency histograms, want the test runs of both backends", len(run.Latency))
	}
	for key, d := range digests {
		if len(d) != 1 {
			t.Errorf("%s: %d digest pairs across backends, want 1", key, len(d))
		}
	}
	// The capped backend's figures before churn are all there and equal in kind to the other's.
	for _, name := range []string{"BenchmarkTestRun/backend=test-rec-capped/pods=60/path=new-allow", "BenchmarkSync/backend=test-rec-capped/pods=60"} {
		if run.Find(name) == nil {
			t.Errorf("no %s", name)
		}
	}
}

// TestEveryBackendReplaysTheIdenticalChurnList: two backends see the same sequence of states
// under churn, and their updates carry the same list digest.
func TestEveryBackendReplaysTheIdenticalChurnList(t *testing.T) {
	logs := recorders(t, nil, "test-rec-a", "test-rec-b")
	r := &Runner{Spec: smallSpec("test-rec-a", "test-rec-b"), Source: testSource{labelSets: 6}}
	run, err := r.Run(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	updates := func(log []string) []string {
		var out []string
		for _, l := range log {
			if strings.HasPrefix(l, "update ") {
				out = append(out, l)
			}
		}
		return out
	}
	a, b := updates(*logs["test-rec-a"]), updates(*logs["test-rec-b"])
	if len(a) < len(churnKinds)*2 || !slices.Equal(a, b) {
		t.Fatalf("the backends saw different churn: %d and %d updates", len(a), len(b))
	}
	digests := map[int]map[string]bool{}
	for _, u := range run.Updates {
		if u.Event == results.EventFullSync {
			continue
		}
		if u.EventsDigest == "" {
			t.Errorf("%s %s at %d pods: no events digest", u.Backend, u.Event, u.Pods)
		}
		if digests[u.Pods] == nil {
			digests[u.Pods] = map[string]bool{}
		}
		digests[u.Pods][u.EventsDigest] = true
	}
	for pods, d := range digests {
		if len(d) != 1 {
			t.Errorf("at %d pods the updates carry %d list digests, want 1", pods, len(d))
		}
	}
	if len(digests) != 2 {
		t.Errorf("digests at %d scales, want 2", len(digests))
	}
}

// TestPlannedSizeCapsABackendBeforeItOpens: a backend whose own plan exceeds the run's budget
// (an iptables-family one on rules or set members, nftables on set elements) is capped before
// it is opened, and the cap records the planned size.
func TestPlannedSizeCapsABackendBeforeItOpens(t *testing.T) {
	for _, c := range []struct {
		name    string
		family  *catalogue.Family
		planned results.Size
		want    string
	}{
		{"rules", catalogue.Iptables, results.Size{Iptables: &results.IptablesSize{Rules: 900, IpsetMembers: 10}}, "plan writes 900 rules"},
		{"members", catalogue.Iptables, results.Size{Iptables: &results.IptablesSize{Rules: 10, IpsetMembers: 900}},
			"plan writes 10 rules and 900 set members: more than 500 set members"},
		{"elements", catalogue.Nftables, results.Size{Nftables: &results.NftablesSize{Rules: 10, Elements: 900}},
			"plan writes 900 set and map elements and 10 rules: one nft transaction of more than 500 elements"},
	} {
		t.Run(c.name, func(t *testing.T) {
			name := "test-planned-" + c.name
			var planned int
			defer catalogue.Register(&catalogue.Backend{Name: name, Help: "test only: plans a large state", Family: c.family,
				New: func(catalogue.Env) (policy.Backend, error) { panic("opened over its budget") },
				Plan: func(catalogue.Env) (results.Size, error) {
					planned++
					return c.planned, nil
				}})()
			spec := smallSpec(name, "compiled")
			spec.Pods = []int{40}
			spec.Budget.IptablesMaxRules, spec.Budget.IpsetMaxMembers, spec.Budget.NftablesMaxElements = 500, 500, 500
			r := &Runner{Spec: spec, Source: testSource{labelSets: 4}}
			run, err := r.Run(context.Background())
			if err != nil {
				t.Fatal(err)
			}
			if len(run.Caps) != 1 {
				t.Fatalf("caps = %+v, want one", run.Caps)
			}
			cp := run.Caps[0]
			if cp.Backend != name || !cp.Skipped || cp.Planned == nil || !reflect.DeepEqual(cp.Planned.Iptables, c.planned.Iptables) ||
				!reflect.DeepEqual(cp.Planned.Nftables, c.planned.Nftables) || !strings.Contains(cp.Reason, c.want) || cp.Planned.Pods != 40 {
				t.Errorf("cap = %+v (planned %+v), want a skip with the plan and %q", cp, cp.Planned, c.want)
			}
			if planned != 1 {
				t.Errorf("planned %d times, want once", planned)
			}
			if run.Find("BenchmarkSync/backend=compiled/pods=40") == nil {
				t.Error("the other backend was not measured")
			}
		})
	}
}

// TestRunWritesAValidFileAfterEveryPhase: with a run directory, results.json is there and
// valid at every phase (read from inside the next phase's syncs), marked incomplete, with the
// phases finished so far; at the end it is complete and every phase is recorded once.
func TestRunWritesAValidFileAfterEveryPhase(t *testing.T) {
	dir := t.TempDir()
	var seen []int
	var problems []string
	defer catalogue.Register(&catalogue.Backend{Name: "test-reader", Help: "test only: reads the run's file when synced", Family: catalogue.InProcess,
		New: func(catalogue.Env) (policy.Backend, error) {
			return &fileReader{dir: dir, seen: &seen, problems: &problems}, nil
		}})()
	r := &Runner{Spec: smallSpec("compiled", "test-reader"), Source: testSource{labelSets: 5}, Dir: dir}
	run, err := r.Run(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range problems {
		t.Error(p)
	}
	if len(seen) < 4 || !slices.IsSorted(seen) || seen[0] == seen[len(seen)-1] {
		t.Errorf("phases on file as the run went: %v, want a growing count", seen)
	}
	loaded, err := results.Load(filepath.Join(dir, ResultsFile))
	if err != nil {
		t.Fatal(err)
	}
	if !loaded.Complete || loaded.Partial() || loaded.Progress.Stopped != nil {
		t.Errorf("final file: complete %v, stopped %+v", loaded.Complete, loaded.Progress.Stopped)
	}
	// Per scale: the workload, and the sync and churn of each backend.
	if got, want := len(loaded.Progress.Phases), len(run.Progress.Phases); got != want || got != 2*5 {
		t.Errorf("%d phases on file, %d in the run", got, want)
	}
	if _, err := os.Stat(filepath.Join(dir, BenchfmtFile)); err != nil {
		t.Error(err)
	}
}

// fileReader loads the run's results.json on every Sync and checks it is a valid partial run.
type fileReader struct {
	dir      string
	seen     *[]int
	problems *[]string
}

func (b *fileReader) Name() string { return "test-reader" }
func (b *fileReader) Sync(*policy.State) (policy.SyncStats, error) {
	run, err := results.Load(filepath.Join(b.dir, ResultsFile))
	switch {
	case err != nil:
		*b.problems = append(*b.problems, fmt.Sprintf("mid-run: %v", err))
	case run.Validate() != nil:
		*b.problems = append(*b.problems, fmt.Sprintf("mid-run: %v", run.Validate()))
	case run.Complete || !run.Partial():
		*b.problems = append(*b.problems, "mid-run: the file says the run is complete")
	default:
		*b.seen = append(*b.seen, len(run.Progress.Phases))
	}
	return policy.SyncStats{}, nil
}
func (b *fileReader) Update(*policy.State, *policy.Delta) (policy.SyncStats, error) {
	return policy.SyncStats{}, nil
}
func (b *fileReader) Close() error { return nil }

// TestInterruptedRunResumesToTheUninterruptedRunsFigures: a run cancelled in the middle of a
// churn phase rolls back to its last finished phase, says where it stopped, records no cap for
// it, and, resumed, ends with the phases and the exact figures of a run that was never
// interrupted.
func TestInterruptedRunResumesToTheUninterruptedRunsFigures(t *testing.T) {
	ctx, cancel := context.WithCancelCause(context.Background())
	defer cancel(nil)
	stopAt := 0
	recorders(t, func(name string, n int) error {
		if name == "test-rec-b" && stopAt > 0 && n == stopAt {
			cancel(errors.New("test stop"))
		}
		return nil
	}, "test-rec-a", "test-rec-b")
	spec := smallSpec("test-rec-a", "test-rec-b")

	whole, err := (&Runner{Spec: spec, Source: testSource{labelSets: 6}}).Run(context.Background())
	if err != nil {
		t.Fatal(err)
	}

	stopAt = 5
	dir := t.TempDir()
	r := &Runner{Spec: spec, Source: testSource{labelSets: 6}, Dir: dir}
	part, err := r.Run(ctx)
	if !errors.Is(err, ErrInterrupted) || part == nil {
		t.Fatalf("Run = %v, want ErrInterrupted with the run", err)
	}
	if !strings.Contains(err.Error(), "test stop") {
		t.Errorf("error %q does not give the cause", err)
	}
	onFile, err := results.Load(filepath.Join(dir, ResultsFile))
	if err != nil {
		t.Fatal(err)
	}
	st := onFile.Progress.Stopped
	if !onFile.Partial() || st == nil || st.Phase != "pods=40/backend=test-rec-b/churn" || st.Reason != "test stop" {
		t.Fatalf("stopped = %+v, want the churn phase of test-rec-b at 40 pods", st)
	}
	if onFile.PhaseDone(st.Phase) || len(onFile.Caps) != 0 {
		t.Errorf("the interrupted phase was recorded (done %v, caps %+v)", onFile.PhaseDone(st.Phase), onFile.Caps)
	}
	if onFile.Find("BenchmarkUpdate/backend=test-rec-b/pods=40/event=pod-add") != nil {
		t.Error("figures of the interrupted phase were kept")
	}

	stopAt = 0
	again := &Runner{Spec: spec, Source: testSource{labelSets: 6}}
	if err := again.Resume(dir); err != nil {
		t.Fatal(err)
	}
	done, err := again.Run(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if !done.Complete {
		t.Fatal("the resumed run is not complete")
	}
	ids := func(run *results.Run) []string {
		var out []string
		for _, p := range run.Progress.Phases {
			out = append(out, p.ID)
		}
		slices.Sort(out)
		return out
	}
	if a, b := ids(whole), ids(done); !slices.Equal(a, b) {
		t.Errorf("phases:\nuninterrupted %v\nresumed       %v", a, b)
	}
	exact := func(run *results.Run) map[string]float64 {
		out := map[string]float64{}
		for _, b := range run.AllBenchmarks() {
			for _, m := range b.Metrics {
				if m.Exact || m.Unit == "kernel-ops/op" {
					out[b.Name+" "+m.Unit] = m.Samples[0]
				}
			}
		}
		return out
	}
	a, b := exact(whole), exact(done)
	if len(a) == 0 || len(a) != len(b) {
		t.Fatalf("exact figures: %d uninterrupted, %d resumed", len(a), len(b))
	}
	for k, v := range a {
		if b[k] != v {
			t.Errorf("%s: %v uninterrupted, %v resumed", k, v, b[k])
		}
	}
	if len(done.Claims) != len(whole.Claims) || len(done.Fits) != len(whole.Fits) {
		t.Errorf("claims %d/%d, fits %d/%d", len(done.Claims), len(whole.Claims), len(done.Fits), len(whole.Fits))
	}
}

// TestResumeRefusesAnotherSweepOrACompleteRun names what differs.
func TestResumeRefusesAnotherSweepOrACompleteRun(t *testing.T) {
	recorders(t, nil, "test-rec-a")
	dir := t.TempDir()
	spec := smallSpec("test-rec-a")
	spec.Pods = []int{40}
	if _, err := (&Runner{Spec: spec, Source: testSource{labelSets: 4}, Dir: dir}).Run(context.Background()); err != nil {
		t.Fatal(err)
	}
	err := (&Runner{Spec: spec, Source: testSource{labelSets: 4}}).Resume(dir)
	if !errors.Is(err, ErrResumeMismatch) || !strings.Contains(err.Error(), "complete") {
		t.Errorf("resume of a complete run: %v", err)
	}
	// Make the file partial again and ask for another seed.
	run, _ := results.Load(filepath.Join(dir, ResultsFile))
	run.Complete = false
	if err := results.Save(filepath.Join(dir, ResultsFile), run); err != nil {
		t.Fatal(err)
	}
	other := spec
	other.Seed = 7
	err = (&Runner{Spec: other, Source: testSource{labelSets: 4}}).Resume(dir)
	if !errors.Is(err, ErrResumeMismatch) || !strings.Contains(err.Error(), "seed is 7, the run's is 1") {
		t.Errorf("resume with another seed: %v", err)
	}
	// Another binary.
	run.Progress.Binary = results.Binary{BuildID: "other", Revision: "abc"}
	results.Save(filepath.Join(dir, ResultsFile), run)
	err = (&Runner{Spec: spec, Source: testSource{labelSets: 4}}).Resume(dir)
	if !errors.Is(err, ErrResumeMismatch) || !strings.Contains(err.Error(), "build id other") {
		t.Errorf("resume with another binary: %v", err)
	}
}

// slowSync is a recorder whose full sync takes a fixed time.
type slowSync struct {
	*recorder
	d time.Duration
}

func (b *slowSync) Sync(s *policy.State) (policy.SyncStats, error) {
	time.Sleep(b.d)
	return b.recorder.Sync(s)
}

// TestSyncPhaseDoesNotStartASampleThatWouldPassTheBudget: with syncs of 300 ms and a phase
// budget of 500 ms, the second sample would end at 600 ms, so it is not started: the phase
// keeps one sample and is capped, and takes no longer than the budget.
func TestSyncPhaseDoesNotStartASampleThatWouldPassTheBudget(t *testing.T) {
	var mu sync.Mutex
	t.Cleanup(catalogue.Register(&catalogue.Backend{Name: "test-slow-sync", Help: "test only: syncs slowly", Family: catalogue.InProcess, Path: "test",
		New: func(catalogue.Env) (policy.Backend, error) {
			return &slowSync{recorder: &recorder{name: "test-slow-sync", mu: &mu, log: &[]string{}}, d: 300 * time.Millisecond}, nil
		}}))
	spec := smallSpec("test-slow-sync")
	spec.Pods, spec.Samples = []int{40}, 5
	spec.Budget.MaxPhase = Duration(500 * time.Millisecond)
	r := &Runner{Spec: spec, Source: testSource{labelSets: 6}}
	run, err := r.Run(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	var syncs []float64
	for _, u := range run.Updates {
		if u.Backend == "test-slow-sync" && u.Event == results.EventFullSync {
			syncs = u.ApplyNS
		}
	}
	if len(syncs) != 1 {
		t.Errorf("full syncs timed: %d, want 1 (the second would end past the 500 ms budget)", len(syncs))
	}
	var capped bool
	for _, c := range run.Caps {
		capped = capped || c.Backend == "test-slow-sync" && strings.Contains(c.Reason, "full sync stopped after 1 of 5 samples")
	}
	if !capped {
		t.Errorf("no cap for the stopped sync phase: %+v", run.Caps)
	}
}
