package agent_test

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"os"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"netpolbench/agent"
	"netpolbench/catalogue"
	"netpolbench/controlplane/controlplanetest"
	"netpolbench/driver"
	"netpolbench/internal/testenv"
	"netpolbench/iptables"
	"netpolbench/policy"
	"netpolbench/workloads"
)

// stateBackend is a backend that holds the compiled state it is given, nothing else.
type stateBackend struct{ s *policy.State }

func (b *stateBackend) Name() string { return "state" }
func (b *stateBackend) Sync(s *policy.State) (policy.SyncStats, error) {
	b.s = s
	return policy.SyncStats{}, nil
}
func (b *stateBackend) Update(s *policy.State, _ *policy.Delta) (policy.SyncStats, error) {
	b.s = s
	return policy.SyncStats{}, nil
}
func (b *stateBackend) Close() error { return nil }

// testBackend is a backend under test and how to tell that it holds what a fresh sync of a
// state would give.
type testBackend struct {
	name  string
	b     policy.Backend
	check func(s *policy.State) error
}

// dumper is a backend that renders its kernel state for comparison (the eBPF datapath).
type dumper interface {
	Dump() (string, error)
}

// openBackends opens every backend the agent is tested with: the catalogue's compiled state
// and eBPF datapath (root), opened by name as the agent command opens them, with the
// datapath's maps compared with those of a second one synced from scratch; and iptables and
// ipset on the stateful fake of their tools, compared with a fresh sync into another fake
// (the kernel's tables agree with the fake's in the iptables package's own tests).
func openBackends(t *testing.T, initial *policy.State) []testBackend {
	t.Helper()
	var out []testBackend
	for _, name := range []string{"compiled", "ebpf"} {
		cb := catalogue.MustGet(name)
		b, err := cb.Open(catalogue.Env{State: initial})
		if errors.Is(err, catalogue.ErrUnavailable) && os.Getenv("CI") == "" {
			t.Logf("%s is left out: %v", name, err)
			continue
		}
		if err != nil {
			t.Fatalf("open %s: %v", name, err)
		}
		t.Cleanup(func() { b.Close() })
		tb := testBackend{name: name, b: b, check: func(*policy.State) error {
			return nil // it holds the agent's state, which is compared with a fresh compile
		}}
		if d, ok := b.(dumper); ok {
			ref, err := cb.Open(catalogue.Env{State: initial})
			if err != nil {
				t.Fatalf("open %s: %v", name, err)
			}
			t.Cleanup(func() { ref.Close() })
			tb.check = func(s *policy.State) error {
				if _, err := ref.Sync(s); err != nil {
					return fmt.Errorf("fresh sync: %w", err)
				}
				got, err := d.Dump()
				if err != nil {
					return err
				}
				want, err := ref.(dumper).Dump()
				if err != nil {
					return err
				}
				if got != want {
					return fmt.Errorf("kernel state differs from a fresh sync:\n%s", firstDiff(got, want))
				}
				return nil
			}
		}
		out = append(out, tb)
	}
	for _, v := range []iptables.Variant{iptables.VariantIPTables, iptables.VariantIPSet} {
		fake := iptables.NewFake()
		b, err := iptables.New(iptables.Config{Variant: v, Runner: fake})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { b.Close() })
		out = append(out, testBackend{name: string(v) + "-fake", b: b, check: func(s *policy.State) error {
			ref := iptables.NewFake()
			rb, err := iptables.New(iptables.Config{Variant: v, Runner: ref})
			if err != nil {
				return err
			}
			if _, err := rb.Sync(s); err != nil {
				return fmt.Errorf("fresh sync: %w", err)
			}
			if got, want := fakeDump(t, fake), fakeDump(t, ref); got != want {
				return fmt.Errorf("rules and sets differ from a fresh sync:\n%s", firstDiff(got, want))
			}
			return nil
		}})
	}
	return out
}

// fakeDump is the fake's rules and sets, as iptables-save and ipset save would print them.
func fakeDump(t *testing.T, f *iptables.Fake) string {
	sets, _, err := f.Run("ipset", []string{"save"}, nil)
	if err != nil {
		t.Fatalf("ipset save on the fake: %v", err)
	}
	lines := strings.Split(string(sets), "\n")
	slices.Sort(lines)
	return iptables.NormalSave(f.Save()) + "\n" + strings.Join(lines, "\n")
}

// runs numbers the runs of tests that write to the shared control plane.
var runs atomic.Int32

type agentRun struct {
	testBackend
	a *agent.Agent
}

// TestAgentConvergesThroughChurnRestartAndRelist is the agent's integration test, on a real
// etcd and kube-apiserver. A generated cluster is written through the API; one agent per
// backend, with only the read rights of deploy/rbac.yaml, enforces it. Then a churn stream
// (pod adds, deletes, relabels, bursts, policy adds, updates, removes, and namespace relabels)
// is written event by event, and after every event each agent's compiled state must render as
// a fresh compile of what the API server holds, and each backend must hold what a fresh sync
// of that state gives. In the middle the agents are cut off from the API server while churn
// goes on and the API server restarts: they must relist, learn the deletions they missed, and
// converge again, with no event applied twice (the compiler would reject it) or lost.
func TestAgentConvergesThroughChurnRestartAndRelist(t *testing.T) {
	testenv.Long(t, "the agent's integration test")
	cp := controlplanetest.Shared(t)
	admin := controlplanetest.AdminClient(cp)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	mustApplyManifest(t, admin, "../deploy/rbac.yaml")

	spec, err := workloads.Preset("small")
	if err != nil {
		t.Fatal(err)
	}
	// Namespaces of this run's own: the control plane is shared, and a namespace outlives its
	// deletion without a namespace controller.
	spec.Namespaces.Prefix = fmt.Sprintf("churn%d", runs.Add(1))
	g, err := workloads.Generate(spec)
	if err != nil {
		t.Fatal(err)
	}
	mustDeleteAtEnd(t, admin, g.Namespaces)
	initial, err := policy.Compile(g.Cluster, policy.Options{})
	if err != nil {
		t.Fatal(err)
	}
	w := &driver.Writer{Client: admin}
	start := time.Now()
	if err := w.WriteCluster(ctx, g, 8); err != nil {
		t.Fatal(err)
	}
	t.Logf("wrote %d namespaces, %d pods and %d policies in %s", len(g.Namespaces), len(g.Pods), len(g.Policies), time.Since(start).Round(time.Millisecond))

	proxy := mustProxy(t, strings.TrimPrefix(cp.URL, "https://"))
	agentClient := kubernetes.NewForConfigOrDie(agentConfig(cp, proxy))
	if _, err := agentClient.CoreV1().ConfigMaps("default").Create(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "x"}}, metav1.CreateOptions{}); !apierrors.IsForbidden(err) {
		t.Fatalf("the agent's service account could write (err %v): deploy/rbac.yaml must grant reads only", err)
	}
	var logMu sync.Mutex
	var logs []string
	var runs []*agentRun
	var wg sync.WaitGroup
	for _, tb := range openBackends(t, initial.State()) {
		a, err := agent.New(agentClient, agent.Options{
			Backend: tb.b,
			Resync:  2 * time.Second,
			Logf: func(format string, args ...any) {
				logMu.Lock()
				logs = append(logs, tb.name+": "+fmt.Sprintf(format, args...))
				logMu.Unlock()
			},
		})
		if err != nil {
			t.Fatal(err)
		}
		runs = append(runs, &agentRun{tb, a})
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := a.Run(ctx); err != nil {
				t.Errorf("%s agent: %v", tb.name, err)
			}
		}()
	}
	defer wg.Wait()
	defer cancel()
	for _, r := range runs {
		if err := r.a.Started(ctx); err != nil {
			t.Fatalf("%s agent: %v", r.name, err)
		}
	}

	checks := 0
	converge := func(label string, timeout time.Duration) {
		t.Helper()
		want, err := freshCanonical(ctx, admin)
		if err != nil {
			t.Fatalf("%s: %v", label, err)
		}
		for _, r := range runs {
			err := waitFor(timeout, func() error {
				return r.a.Inspect(func(s *policy.State, _ policy.Backend) error {
					if got := s.Canonical(); got != want {
						return fmt.Errorf("differs from a fresh compile of the API server's objects at %s", firstDiff(got, want))
					}
					return nil
				})
			})
			if err != nil {
				t.Fatalf("%s: %s agent did not converge in %s: %v", label, r.name, timeout, err)
			}
			if err := r.a.Inspect(func(s *policy.State, _ policy.Backend) error { return r.check(s) }); err != nil {
				t.Fatalf("%s: %s backend: %v", label, r.name, err)
			}
		}
		checks++
	}
	converge("initial sync", 30*time.Second)

	churn, err := workloads.NewChurn(workloads.ChurnSpec{Mix: workloads.DefaultChurn().Mix, Count: 1 << 20, BurstSize: 4}, g, 7)
	if err != nil {
		t.Fatal(err)
	}
	// Namespace relabels swap the namespaces' labels around, so namespace selectors start and
	// stop matching whole namespaces.
	nsRelabels := 0
	next := func(i int) []policy.Event {
		if i%9 == 4 {
			from := g.Namespaces[(nsRelabels+1)%len(g.Namespaces)].Labels
			if nsRelabels%4 == 3 {
				from = nil
			}
			lbl := maps.Clone(from)
			delete(lbl, policy.NamespaceNameLabel)
			ns := g.Namespaces[nsRelabels%len(g.Namespaces)].Name
			nsRelabels++
			return []policy.Event{{Kind: policy.NamespaceRelabel, Namespace: ns, Labels: lbl}}
		}
		evs, _ := churn.Next()
		return evs
	}
	kinds := map[policy.EventKind]int{}
	write := func(ev policy.Event) {
		t.Helper()
		if _, err := w.Apply(ctx, ev); err != nil {
			t.Fatal(err)
		}
		kinds[ev.Kind]++
	}
	events := 0
	churnChecked := func(batches int, phase string) {
		for i := range batches {
			for _, ev := range next(events + i) {
				write(ev)
				events++
				converge(fmt.Sprintf("%s: event %d (%s)", phase, events, ev.Kind), 10*time.Second)
			}
		}
	}
	churnChecked(40, "before the restart")

	// Cut off, the agents miss churn and the API server's restart; their watches then resume
	// against a watch cache that starts after what they saw, and they relist.
	proxy.Cut()
	deletesMissed := 0
	for i := range 20 {
		for _, ev := range next(events + i) {
			write(ev)
			events++
			if ev.Kind == policy.PodDelete || ev.Kind == policy.PolicyRemove {
				deletesMissed++
			}
		}
	}
	down, err := cp.RestartAPIServer(ctx)
	if err != nil {
		t.Fatal(err)
	}
	proxy.Restore()
	converge(fmt.Sprintf("after the restart (API server down %s, %d deletions missed)", down.Round(time.Millisecond), deletesMissed), 60*time.Second)
	tombstones := 0
	for _, r := range runs {
		tombstones += r.a.Stats().Tombstones
	}
	t.Logf("after the cut and restart: %d deletions missed, %d learned from relists by %d agents", deletesMissed, tombstones, len(runs))
	if deletesMissed > 0 && tombstones == 0 {
		t.Error("no agent learned a deletion from a relist: the cut did not make them relist")
	}
	churnChecked(40, "after the restart")

	for _, r := range runs {
		st := r.a.Stats()
		t.Logf("%s agent: %d items, events %v, %d retries, %d full syncs, %d backend errors", r.name, st.Processed, st.Events, st.Retries, st.FullSyncs, st.BackendErrors)
		if st.BackendErrors > 0 {
			t.Errorf("%s agent: %d backend errors", r.name, st.BackendErrors)
		}
	}
	for _, l := range logs {
		if strings.Contains(l, "rejected") || strings.Contains(l, "update:") {
			t.Errorf("agent log: %s", l)
		}
	}
	t.Logf("%d events written (%v), %d convergence checks", events, kinds, checks)
	for _, k := range []policy.EventKind{policy.PodAdd, policy.PodDelete, policy.PodRelabel, policy.PolicyAdd, policy.PolicyUpdate, policy.PolicyRemove, policy.NamespaceRelabel} {
		if kinds[k] == 0 {
			t.Errorf("the churn wrote no %s event", k)
		}
	}
}
