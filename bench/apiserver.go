package bench

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	mrand "math/rand/v2"
	"slices"
	"time"

	"k8s.io/apimachinery/pkg/api/equality"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"

	"netpolbench/agent"
	"netpolbench/catalogue"
	"netpolbench/controlplane"
	"netpolbench/driver"
	"netpolbench/policy"
	"netpolbench/results"
	"netpolbench/testbed"
	"netpolbench/workloads"
)

// APIServerSpec is the end-to-end phase of a sweep: at each of its scales a generated cluster
// is written through a Kubernetes API server, and then, for each backend in turn, the agent
// enforces it while churn is written at each rate; every event is timed from its write to the
// first packet with its new verdict (package driver). Between backends the churn is taken back
// (policy.Cluster.Inverse), so every backend meets the same events on the same cluster.
type APIServerSpec struct {
	// Pods are the scales (required; DefaultSpec: 1,000 and 10,000).
	Pods []int `json:"pods"`
	// QPS are the write rates, in churn events per second (default 20 and 100).
	QPS []float64 `json:"qps,omitempty"`
	// Seconds is the length of a run at each rate: QPS × Seconds events (default 5).
	Seconds float64 `json:"seconds,omitempty"`
	// Settle bounds the wait after a run's last write for its enforcement and probes
	// (default 5s: an agent that needs longer has fallen behind the rate).
	Settle Duration `json:"settle,omitempty"`
	// Backends are measured one after another, each with an agent of its own (default: the
	// sweep's backends; DefaultSpec: ebpf, iptables, ipset and nftables, leaving out ebpf-cilium, whose
	// agent and update path are ebpf's, and the compiled control, to keep `make bench` short).
	// A backend whose agent falls behind a rate is not run at the higher ones.
	Backends []string `json:"backends,omitempty"`
	// Kubeconfig, when set, names a real cluster to write to instead of the embedded control
	// plane: its namespaces are the run's own (npb-<random>-…, deleted at the end) and its
	// pods name a scheduler nobody runs, so no node acts on them.
	Kubeconfig string `json:"kubeconfig,omitempty"`
}

// DefaultAPIServer is the end-to-end phase of `make bench`: 1,000 and 10,000 pods at 20 and
// 100 events a second for 3 s each, through the eBPF datapath, iptables, ipset and nftables.
func DefaultAPIServer() *APIServerSpec {
	return &APIServerSpec{Pods: []int{1000, 10000}, Seconds: 3, Backends: []string{"ebpf", "iptables", "ipset", "nftables"}}
}

func (a *APIServerSpec) withDefaults(backends []string) {
	if len(a.QPS) == 0 {
		a.QPS = []float64{20, 100}
	}
	if a.Seconds == 0 {
		a.Seconds = 5
	}
	if a.Settle == 0 {
		a.Settle = Duration(5 * time.Second)
	}
	if len(a.Backends) == 0 {
		a.Backends = slices.Clone(backends)
	}
}

func (a *APIServerSpec) validate() []string {
	var errs []string
	if len(a.Pods) == 0 {
		errs = append(errs, "apiServer.pods: at least one scale")
	}
	for _, p := range a.Pods {
		if p < 1 || p > 131070 {
			errs = append(errs, fmt.Sprintf("apiServer.pods: %d out of range 1..131070", p))
		}
	}
	for _, q := range a.QPS {
		if q <= 0 || q > 10000 {
			errs = append(errs, fmt.Sprintf("apiServer.qps: %g out of range (0, 10000]", q))
		}
	}
	if a.Seconds <= 0 || a.Seconds > 600 {
		errs = append(errs, fmt.Sprintf("apiServer.seconds: %g out of range (0, 600]", a.Seconds))
	}
	if time.Duration(a.Settle) <= 0 {
		errs = append(errs, "apiServer.settle: must be positive")
	}
	for _, n := range a.Backends {
		b, err := catalogue.Get(n)
		switch {
		case err != nil:
			errs = append(errs, "apiServer.backends: "+err.Error())
		case !b.CanBench():
			errs = append(errs, fmt.Sprintf("apiServer.backends: %s cannot be benchmarked", n))
		}
	}
	return errs
}

// apiWriters is how many concurrent writers write a cluster and churn, and take it back.
const apiWriters = 16

// apiRequestTimeout bounds each request of the writers; apiStartLimit an agent's start (list,
// compile, the backend's first sync).
const (
	apiRequestTimeout = time.Minute
	apiStartLimit     = 3 * time.Minute
)

// apiProbes is how many events are probed at once: each probe sends a packet a millisecond,
// and the probes should stay a small load beside the agent's on a machine of two cores.
const apiProbes = 4

// apiScale is one scale of the end-to-end phase while it runs: an API server holding the
// scale's generated cluster, and the churn every backend meets there.
type apiScale struct {
	pods  int
	label string
	g     *workloads.Generated
	own   map[string]bool // g's namespaces (ownNamespace)
	// base is the cluster as generated: each backend's prober models the writes from it.
	base *policy.Cluster
	// lists are the runs' events, one list per rate; inverses[i] takes lists[i] back.
	lists    [][]policy.Event
	digests  []string
	inverses [][]policy.Event

	kubeconfig string
	cp         *controlplane.ControlPlane
	// client writes and reads the API server's metrics; agentClient is the agent's.
	client, agentClient kubernetes.Interface
	writer              *driver.Writer
	// dirty is set when the cluster may not be as generated (a write failed); the next backend
	// gets a fresh control plane.
	dirty bool
}

// newAPIScale builds a scale's cluster and churn, without writing anything.
func (r *Runner) newAPIScale(pods int) (*apiScale, error) {
	as := r.Spec.APIServer
	sc, err := r.Source.Scale(pods, 0)
	if err != nil {
		return nil, fmt.Errorf("build workload for %d pods: %w", pods, err)
	}
	if sc.Generated == nil {
		return nil, errors.New("the end-to-end phase writes a generated cluster and its churn; a cluster file has neither")
	}
	s := &apiScale{pods: len(sc.Generated.Pods), g: sc.Generated, base: sc.Cluster.Clone(), kubeconfig: as.Kubeconfig}
	s.label = fmt.Sprintf("pods=%d", s.pods)
	churn, err := workloads.NewChurn(workloads.ChurnSpec{Mix: workloads.DefaultChurn().Mix, Count: 1 << 30, BurstSize: 5}, s.g, r.Spec.Seed^uint64(pods))
	if err != nil {
		return nil, err
	}
	model, err := policy.Compile(s.base.Clone(), policy.Options{})
	if err != nil {
		return nil, fmt.Errorf("compile workload of %d pods: %w", pods, err)
	}
	for _, qps := range as.QPS {
		n := max(1, int(qps*as.Seconds))
		var evs, invs []policy.Event
		for len(evs) < n {
			batch, ok := churn.Next()
			if !ok {
				break
			}
			for _, ev := range batch {
				if noChange(model.Cluster(), ev) {
					// Its write would change no object: no watch event, nothing to time.
					continue
				}
				inv, err := model.Cluster().Inverse(ev)
				if err != nil {
					return nil, fmt.Errorf("churn at %d pods: %w", pods, err)
				}
				if _, err := model.Apply(ev); err != nil {
					return nil, fmt.Errorf("churn at %d pods: %s: %w", pods, ev.Kind, err)
				}
				invs = append(invs, inv)
				evs = append(evs, ev)
			}
		}
		slices.Reverse(invs)
		s.lists = append(s.lists, evs)
		s.inverses = append(s.inverses, invs)
		s.digests = append(s.digests, eventsDigest(evs))
	}
	return s, nil
}

// takeBack is the events that undo the first written lists: the last list's inverses first,
// each list's in reverse order. Lists a backend's run never reached (it fell behind a lower
// rate) are not undone: their events were never written.
func (s *apiScale) takeBack(written int) []policy.Event {
	var back []policy.Event
	for j := written - 1; j >= 0; j-- {
		back = append(back, s.inverses[j]...)
	}
	return back
}

// noChange reports whether ev would leave cl's objects as they are: a relabel to the labels a
// pod or namespace has, an update to the spec a policy has.
func noChange(cl *policy.Cluster, ev policy.Event) bool {
	switch ev.Kind {
	case policy.PodRelabel:
		p, ok := cl.Pods[ev.PodKey]
		return ok && maps.Equal(p.Labels, ev.Labels)
	case policy.PolicyUpdate:
		old, ok := cl.Policies[ev.Policy.Namespace+"/"+ev.Policy.Name]
		return ok && equality.Semantic.DeepEqual(old.Spec, policy.DefaultPolicy(ev.Policy).Spec)
	case policy.NamespaceRelabel:
		ns, ok := cl.Namespaces[ev.Namespace]
		if !ok {
			return false
		}
		want := maps.Clone(ev.Labels)
		if want == nil {
			want = map[string]string{}
		}
		want[policy.NamespaceNameLabel] = ev.Namespace
		return maps.Equal(ns.Labels, want)
	}
	return false
}

// eventsDigest is a SHA-256 over the events (JSON), hex.
func eventsDigest(evs []policy.Event) string {
	h := sha256.New()
	// Events of the suite's own types always encode.
	json.NewEncoder(h).Encode(evs)
	return hex.EncodeToString(h.Sum(nil))
}

// ownNamespace reports whether a namespace is one the scale wrote (a real cluster holds others,
// which the agent enforces too but the prober does not model).
func (s *apiScale) ownNamespace(name string) bool {
	if s.own == nil {
		s.own = map[string]bool{}
		for _, ns := range s.g.Namespaces {
			s.own[ns.Name] = true
		}
	}
	return s.own[name]
}

// open starts the scale's API server (or connects to the user's cluster) and writes the
// cluster; it returns how long the write took.
func (s *apiScale) open(ctx context.Context) (time.Duration, error) {
	var cfg *rest.Config
	if s.kubeconfig != "" {
		c, err := clientcmd.BuildConfigFromFlags("", s.kubeconfig)
		if err != nil {
			return 0, fmt.Errorf("read kubeconfig %s: %w", s.kubeconfig, err)
		}
		cfg = c
	} else {
		cp, err := controlplane.Start(ctx, controlplane.Options{})
		if err != nil {
			return 0, err
		}
		s.cp, cfg = cp, cp.RESTConfig()
	}
	// client-go's default of 5 requests a second would throttle every writer.
	cfg.QPS, cfg.Burst = 5000, 10000
	ac, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return 0, errors.Join(fmt.Errorf("client: %w", err), s.close())
	}
	// The writers' requests are bounded, so an API server that stops answering fails the
	// scale instead of hanging it; the agent's watches are long by design.
	cfg.Timeout = apiRequestTimeout
	c, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return 0, errors.Join(fmt.Errorf("client: %w", err), s.close())
	}
	s.client, s.agentClient = c, ac
	s.writer = &driver.Writer{Client: c}
	if s.kubeconfig != "" {
		s.writer.SchedulerName = unscheduled
	}
	t := time.Now()
	if err := s.writer.WriteCluster(ctx, s.g, apiWriters); err != nil {
		return 0, errors.Join(fmt.Errorf("write the cluster of %d pods: %w", s.pods, err), s.close())
	}
	s.dirty = false
	return time.Since(t), nil
}

// unscheduled is the scheduler the pods written to a real cluster name: none runs under that
// name, so they stay pending on no node and no kubelet acts on them.
const unscheduled = "netpolbench-unscheduled"

// close stops the embedded control plane, or deletes the run's namespaces from the user's
// cluster (its namespace controller deletes what they hold).
func (s *apiScale) close() error {
	if s.cp != nil {
		err := s.cp.Stop()
		s.cp = nil
		return err
	}
	if s.kubeconfig == "" || s.client == nil {
		return nil
	}
	var errs []error
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	for _, ns := range s.g.Namespaces {
		if err := s.client.CoreV1().Namespaces().Delete(ctx, ns.Name, metav1.DeleteOptions{}); err != nil {
			errs = append(errs, fmt.Errorf("delete namespace %s: %w", ns.Name, err))
		}
	}
	s.client, s.agentClient = nil, nil
	return errors.Join(errs...)
}

// NamespacePrefix is a prefix of namespace names no other run has: a run on a real cluster
// writes its own namespaces and deletes them at the end.
func NamespacePrefix() string {
	var b [3]byte
	rand.Read(b[:])
	return "npb-" + hex.EncodeToString(b[:])
}

// Phases of the end-to-end phase, under "apiserver/pods=N/": the cluster written (its timing),
// then one per backend (its agent through every rate's churn, and the churn taken back).
const (
	phaseAPICluster = "cluster"
	phaseAPIBackend = "backend="
)

func apiPhaseID(pods int, what string) string { return fmt.Sprintf("apiserver/pods=%d/%s", pods, what) }

// apiServerSweep runs the end-to-end phase at every scale of Spec.APIServer, each of its parts
// a checkpointed phase. A scale a resumed run finished is skipped; one it stopped within gets a
// fresh API server, the cluster written again, and the backends it had not finished.
func (r *Runner) apiServerSweep(ctx context.Context) error {
	as := r.Spec.APIServer
	if as == nil {
		return nil
	}
	for _, pods := range as.Pods {
		if ctx.Err() != nil {
			return errStopped
		}
		if err := r.apiServerScale(ctx, pods); err != nil {
			return err
		}
	}
	return nil
}

// apiServerScale measures every backend of the phase at one scale, with one API server (a new
// one after a backend left the cluster other than as written).
func (r *Runner) apiServerScale(ctx context.Context, pods int) error {
	as := r.Spec.APIServer
	var todo []string
	for _, name := range as.Backends {
		if !r.run.PhaseDone(apiPhaseID(pods, phaseAPIBackend+name)) {
			todo = append(todo, name)
		} else {
			r.Progress.Step(fmt.Sprintf("pods=%d backend=%s end to end (done before)", pods, name))
		}
	}
	if len(todo) == 0 {
		return nil
	}
	// capAll records that the rest of the scale's backends cannot be measured, and why.
	capAll := func(names []string, format string, a ...any) error {
		for _, name := range names {
			err := r.phase(ctx, apiPhaseID(pods, phaseAPIBackend+name), func() error {
				r.addCap(results.Cap{Backend: name, Pods: pods, Skipped: true, Phase: results.PhaseEndToEnd, Reason: fmt.Sprintf(format, a...)})
				return nil
			})
			if err != nil {
				return err
			}
		}
		return nil
	}
	s, err := r.newAPIScale(pods)
	if err != nil {
		return capAll(todo, "%v", err)
	}
	defer func() {
		if err := s.close(); err != nil && !r.interrupting() {
			r.logf("bench: end to end at %s: %v", s.label, err)
		}
	}()
	opened := false
	for i, name := range todo {
		if ctx.Err() != nil {
			return errStopped
		}
		r.Progress.Step(fmt.Sprintf("%s backend=%s end to end", s.label, name))
		if !opened || s.dirty {
			if err := s.close(); err != nil {
				r.logf("bench: end to end at %s: %v", s.label, err)
			}
			r.Progress.Note(fmt.Sprintf("%s: starting the API server and writing the cluster", s.label))
			took, err := s.open(ctx)
			if ctx.Err() != nil {
				return errStopped
			}
			if err != nil {
				return capAll(todo[i:], "%v", err)
			}
			opened = true
			// The write is timed once per scale: a resumed run writes the cluster again
			// without recording it.
			err = r.phase(ctx, apiPhaseID(pods, phaseAPICluster), func() error {
				r.run.Benchmarks = append(r.run.Benchmarks, results.Benchmark{Name: "BenchmarkAPIWriteCluster/" + s.label, Iters: 1,
					Metrics: []results.Metric{{Unit: "ns/op", Samples: []float64{float64(took)}},
						{Unit: "objects", Exact: true, Samples: []float64{float64(len(s.g.Namespaces) + len(s.g.Pods) + len(s.g.Policies))}}}})
				return nil
			})
			if err != nil {
				return err
			}
		}
		if err := r.phase(ctx, apiPhaseID(pods, phaseAPIBackend+name), func() error { return r.apiServerBackend(ctx, s, name) }); err != nil {
			return err
		}
	}
	return r.freeze()
}

// enforcedBackend is a backend in force in the testbed, as the agent holds it: closing it
// takes the enforcement out of the testbed, checking that nothing of it is left.
type enforcedBackend struct {
	policy.Backend
	e *testbed.Enforcement
}

func (b *enforcedBackend) Close() error { return b.e.Close() }

// apiServerBackend runs one backend's agent through every rate's churn, then takes the churn
// back. Failures are caps; the context's end is errStopped, and the run then stops within
// about stopGrace of it (an agent still starting, as a backend's first sync, is left behind
// with the testbed it syncs into).
func (r *Runner) apiServerBackend(ctx context.Context, s *apiScale, name string) error {
	as := r.Spec.APIServer
	capf := func(skipped bool, format string, a ...any) {
		r.addCap(results.Cap{Backend: name, Pods: s.pods, Skipped: skipped, Phase: results.PhaseEndToEnd, Reason: fmt.Sprintf(format, a...)})
	}
	b, err := catalogue.Get(name)
	if err != nil {
		capf(true, "%v", err)
		return nil
	}
	// The sweep's own admission (pod limits, the per-IP families' planned size), on the
	// cluster as generated.
	frozen, err := policy.Compile(s.base.Clone(), policy.Options{})
	if err != nil {
		return fmt.Errorf("compile workload of %d pods: %w", s.pods, err)
	}
	u := &unit{r: r, s: &scale{pods: s.pods, frozen: frozen.State()}, b: b, name: name, id: apiPhaseID(s.pods, phaseAPIBackend+name)}
	if caps := len(r.run.Caps); !u.admit() {
		if len(r.run.Caps) > caps {
			r.run.Caps[caps].Phase = results.PhaseEndToEnd
		}
		return nil
	}
	// A testbed of its own, so nothing another backend left meets its probes.
	r.closeBed()
	defer r.closeBed()
	env := catalogue.Env{MapHeadroom: r.Spec.MapHeadroom}
	var open func(*policy.State) (policy.Backend, error)
	synced := false
	var bed *testbed.Testbed
	probe := "not measured: the run sends no real packets (--no-packets)"
	switch {
	case !r.Kernel && b.Family.InNode:
		capf(true, "%s keeps its state in the testbed's node namespace, and the run builds no testbed (--no-packets)", name)
		return nil
	case !r.Kernel:
	case !b.CanEnforce():
		probe = fmt.Sprintf("not measured: %s carries no real packets", name)
	default:
		if bed, err = r.openBed(); err != nil {
			capf(true, "%s needs the testbed: %v", name, err)
			return nil
		}
		probe, synced = "real packets in the testbed", true
		open = func(st *policy.State) (policy.Backend, error) {
			env.State = st
			e, _, err := b.Enforce(bed, env)
			if err != nil {
				return nil, err
			}
			return &enforcedBackend{Backend: e.Backend(), e: e}, nil
		}
	}
	if open == nil {
		open = func(st *policy.State) (policy.Backend, error) {
			env.State = st
			return b.Open(env)
		}
	}
	m := driver.NewMatcher()
	actx, cancel := context.WithCancel(ctx)
	a, err := agent.New(s.agentClient, agent.Options{Open: open, OpenSynced: synced, Observe: m.Observe,
		Logf: func(format string, args ...any) { r.logf("bench: %s agent: "+format, append([]any{name}, args...)...) }})
	if err != nil {
		cancel()
		capf(true, "%v", err)
		return nil
	}
	done := make(chan error, 1)
	go func() { done <- a.Run(actx) }()
	// stopAgent stops the agent and takes its backend out; on a stop of the run it waits
	// stopGrace at most, and the cluster is not taken back.
	stopAgent := func() {
		cancel()
		wait := time.After(stopGrace)
		if ctx.Err() == nil {
			wait = nil
		}
		select {
		case err := <-done:
			if err != nil && ctx.Err() == nil {
				r.logf("bench: %s agent: %v", name, err)
			}
		case <-wait:
			s.dirty = true
		}
	}
	r.Progress.Note(fmt.Sprintf("%s backend=%s: agent starting", s.label, name))
	t := time.Now()
	sctx, stopWaiting := context.WithTimeout(ctx, apiStartLimit)
	err = a.Started(sctx)
	stopWaiting()
	if err != nil {
		stopAgent()
		if ctx.Err() != nil {
			return errStopped
		}
		s.dirty = true
		if errors.Is(err, context.DeadlineExceeded) {
			err = fmt.Errorf("not started within %s", apiStartLimit)
		}
		capf(true, "agent: %v", err)
		return nil
	}
	started := time.Since(t)
	var prober *packetProber
	if bed != nil {
		if prober, err = newPacketProber(bed, s.base, r.Spec.Seed^uint64(s.pods), time.Duration(as.Settle)); err != nil {
			r.logf("bench: %s: %v", name, err)
			probe = fmt.Sprintf("not measured: %v", err)
		}
	}
	written := 0 // the lists written whole, which the take-back undoes
	for i, qps := range as.QPS {
		r.Progress.Note(fmt.Sprintf("%s backend=%s: %d events at %g/s", s.label, name, len(s.lists[i]), qps))
		cfg := driver.Config{Client: s.client, Events: s.lists[i], QPS: qps, Writers: apiWriters, Settle: time.Duration(as.Settle), Probes: apiProbes}
		if prober != nil {
			cfg.Prober = prober
		}
		res, err := driver.Run(ctx, cfg, m)
		if err != nil {
			stopAgent()
			if ctx.Err() != nil {
				return errStopped
			}
			s.dirty = true
			capf(false, "at %g events/s: %v", qps, err)
			return nil
		}
		written = i + 1
		if res.Failed > 0 {
			s.dirty = true
		}
		e := results.EndToEnd{Backend: name, Pods: s.pods, QPS: qps, APIServer: results.APIServerEmbedded,
			Events: len(s.lists[i]), EventsDigest: s.digests[i], Probe: probe, AgentStartNS: int64(started)}
		if s.kubeconfig != "" {
			e.APIServer = results.APIServerCluster
		}
		if err := r.recordEndToEnd(e, res, prober != nil); err != nil {
			stopAgent()
			return err
		}
		if last := r.run.EndToEnd[len(r.run.EndToEnd)-1]; !last.KeptUp() && i+1 < len(as.QPS) {
			// A higher rate only lengthens a queue that already grows.
			capf(false, "its agent fell behind %g writes/s (%d of %d writes enforced within the run, %s of work queued when the writes ended): the higher rates are not run",
				qps, last.Samples, last.Writes, time.Duration(last.DrainNS).Round(time.Millisecond))
			break
		}
	}
	// The prober picked its flows on its own model of the writes: once the agent has enforced
	// every write, the two must agree, or the probes may have timed other verdicts.
	if prober != nil && prober.err == nil && !slices.Equal(prober.keys, prober.model.Cluster().PodKeys()) {
		prober.err = errors.New("the prober's pod keys differ from its model's")
	}
	if prober != nil && prober.err == nil && allPaired(r.run.EndToEnd, name, s.pods) {
		var diff string
		if err := a.Inspect(func(st *policy.State, _ policy.Backend) error {
			diff = prober.model.Cluster().Diff(st.Cluster(), s.ownNamespace)
			return nil
		}); err == nil && diff != "" {
			prober.err = fmt.Errorf("the prober's model of the cluster differs from what the agent enforces after the runs: %s", diff)
		}
	}
	if prober != nil && prober.err != nil {
		r.logf("bench: %s at %s: prober: %v", name, s.label, prober.err)
		for i := range r.run.EndToEnd {
			if e := &r.run.EndToEnd[i]; e.Backend == name && e.Pods == s.pods {
				e.ProbeError = prober.err.Error()
			}
		}
	}
	stopAgent()
	if ctx.Err() != nil {
		return errStopped
	}
	// Take the churn back for the next backend. A cluster that may not be as generated is
	// written again into a fresh API server instead.
	if !s.dirty {
		r.Progress.Note(fmt.Sprintf("%s: taking the churn back", s.label))
		if err := s.writer.ApplyAll(ctx, s.takeBack(written), apiWriters); err != nil {
			if ctx.Err() != nil {
				return errStopped
			}
			r.logf("bench: end to end at %s: take the churn back: %v (the next backend gets a fresh API server)", s.label, err)
			s.dirty = true
		}
	}
	return nil
}

// probeSlack is how much earlier than the delta's computation a probe packet may be sent and
// still meet the new state: a packet is handed to the kernel at its send time, and met by the
// enforcement when the kernel gets to it, which on a loaded machine is later.
const probeSlack = time.Millisecond

// allPaired reports whether every run of backend at pods so far paired all its writes.
func allPaired(es []results.EndToEnd, backend string, pods int) bool {
	for _, e := range es {
		if e.Backend == backend && e.Pods == pods && (e.Unmatched > 0 || e.Failed > 0) {
			return false
		}
	}
	return true
}

// recordEndToEnd adds one run: its entry, a histogram per stage (and per ClusterLoader2
// latency), and a benchmark of its medians and 99th percentiles.
func (r *Runner) recordEndToEnd(e results.EndToEnd, res *driver.Result, probed bool) error {
	e.Writes, e.Failed, e.Samples, e.Unmatched = res.Writes, res.Failed, len(res.Samples), res.Unmatched
	e.Probed, e.ProbesFailed, e.ProbesSkipped = res.Probed, res.ProbesFailed, res.ProbesSkipped
	if res.ProbeErr != nil {
		e.ProbeError = res.ProbeErr.Error()
	}
	e.DurationNS, e.LagNS, e.DrainNS = int64(res.Duration), int64(res.Lag), int64(res.Drain)
	e.Requests, e.WatchEvents = res.Load.Requests, res.Load.WatchEvents

	qps := fmt.Sprintf("qps=%g", e.QPS)
	key := func(stage, event string) HistKey {
		x := "stage=" + stage + "/" + qps
		if event != "" {
			x += "/event=" + event
		}
		return HistKey{Kind: results.KindEnforcement, Backend: e.Backend, Pods: e.Pods, Extra: x}
	}
	stages := []struct {
		name  string
		stage driver.Stage
	}{{results.StageAck, driver.StageAck}, {results.StageWatch, driver.StageWatch}, {results.StageDequeue, driver.StageDequeue},
		{results.StageCompute, driver.StageCompute}, {results.StageApply, driver.StageApply}, {results.StageProbe, driver.StageProbe}}
	for _, smp := range res.Samples {
		for _, st := range stages {
			if st.stage == driver.StageProbe && smp.At[st.stage] == 0 {
				continue // not probed
			}
			if err := r.hists.Record(key(st.name, ""), int64(smp.At[st.stage])); err != nil {
				return err
			}
		}
		if err := r.hists.Record(key(results.StageAgent, ""), int64(smp.At[driver.StageApply]-smp.At[driver.StageWatch])); err != nil {
			return err
		}
		if smp.At[driver.StageProbe] == 0 {
			continue
		}
		if smp.At[driver.StageProbe] < smp.At[driver.StageCompute]-probeSlack {
			e.ProbesEarly++
			r.logf("bench: %s at %d pods, %g events/s: the probe of %s %s (%s, %s) saw its new verdict %s after the write started, %s before the agent computed the delta",
				e.Backend, e.Pods, e.QPS, smp.Event, smp.Key, smp.Flow, smp.Want, smp.At[driver.StageProbe], smp.At[driver.StageCompute]-smp.At[driver.StageProbe])
		}
		since := int64(smp.At[driver.StageProbe] - smp.At[driver.StageAck])
		switch smp.Event {
		case policy.PodAdd:
			if err := r.hists.Record(key(results.StageReachability, smp.Event.String()), since); err != nil {
				return err
			}
		case policy.PolicyAdd, policy.PolicyUpdate, policy.PolicyRemove:
			if err := r.hists.Record(key(results.StageEnforcement, "policy"), since); err != nil {
				return err
			}
		}
	}
	r.run.EndToEnd = append(r.run.EndToEnd, e)
	var ms []results.Metric
	pct := func(stage string) {
		h := r.hists.Get(key(stage, ""))
		if h == nil || h.TotalCount() == 0 {
			return
		}
		ms = append(ms, results.Metric{Unit: stage + "-p50-ns", Samples: []float64{float64(h.ValueAtQuantile(50))}},
			results.Metric{Unit: stage + "-p99-ns", Samples: []float64{float64(h.ValueAtQuantile(99))}})
	}
	pct(results.StageAck)
	pct(results.StageAgent)
	pct(results.StageApply)
	if probed {
		pct(results.StageProbe)
	}
	if a := e.Achieved(); a > 0 {
		ms = append(ms, results.Metric{Unit: "events/s", Samples: []float64{a}})
	}
	if len(ms) > 0 {
		r.run.Benchmarks = append(r.run.Benchmarks, results.Benchmark{
			Name: fmt.Sprintf("BenchmarkEndToEnd/backend=%s/pods=%d/%s", e.Backend, e.Pods, qps), Iters: 1, Metrics: ms})
	}
	if e.Unmatched > 0 || e.ProbesFailed > 0 || e.Failed > 0 {
		r.logf("bench: %s at %d pods, %g events/s: %d of %d writes not paired, %d failed; %d probes failed (%s)",
			e.Backend, e.Pods, e.QPS, e.Unmatched, e.Writes, e.Failed, e.ProbesFailed, e.ProbeError)
	}
	return nil
}

// packetProber is the end-to-end phase's driver.Prober: it follows the writes on a model of
// the cluster, picks for each event a pod-to-pod flow whose verdict the event changes, and
// sends that flow through the testbed as new flows until its packets get the new verdict.
type packetProber struct {
	bed *testbed.Testbed
	// model is the cluster as every event prepared so far leaves it; behind is model lag
	// events back: a flow whose verdict one of the last lag events changed is not probed,
	// since until those are enforced its packets could show their verdict instead.
	model, behind *policy.Compiler
	// keys are model's pod keys, sorted, kept as the events change them.
	keys    []string
	pending []policy.Event
	lag     int
	rng     *mrand.Rand
	opts    testbed.UntilOptions
	// err is why the model stopped following the writes (nothing is probed after it).
	err error
}

// proberLag is how many earlier events must not have changed a probed flow's verdict: about
// the writes in flight, and those an agent under load may not have enforced yet.
const proberLag = 32

func newPacketProber(bed *testbed.Testbed, base *policy.Cluster, seed uint64, limit time.Duration) (*packetProber, error) {
	model, err := policy.Compile(base.Clone(), policy.Options{})
	if err != nil {
		return nil, fmt.Errorf("prober model: %w", err)
	}
	behind, err := policy.Compile(base.Clone(), policy.Options{})
	if err != nil {
		return nil, fmt.Errorf("prober model: %w", err)
	}
	return &packetProber{bed: bed, model: model, behind: behind, keys: model.Cluster().PodKeys(), lag: proberLag,
		rng: mrand.New(mrand.NewPCG(seed, 0x70726f6265)), opts: testbed.UntilOptions{Limit: limit}}, nil
}

func (p *packetProber) Prepare(ev policy.Event) (policy.Flow, policy.Verdict, bool) {
	if p.err != nil {
		return policy.Flow{}, 0, false
	}
	st := p.model.State()
	cands := candidatesOf(st.Cluster(), p.keys, []policy.Event{ev}, p.rng)
	before := make([]policy.Verdict, len(cands))
	for i, f := range cands {
		before[i] = st.Verdict(f)
	}
	if _, err := p.model.Apply(ev); err != nil {
		p.err = fmt.Errorf("model: %s: %w", ev.Kind, err)
		return policy.Flow{}, 0, false
	}
	switch ev.Kind {
	case policy.PodAdd:
		if i, found := slices.BinarySearch(p.keys, ev.Pod.Key()); !found {
			p.keys = slices.Insert(p.keys, i, ev.Pod.Key())
		}
	case policy.PodDelete:
		if i, found := slices.BinarySearch(p.keys, ev.PodKey); found {
			p.keys = slices.Delete(p.keys, i, i+1)
		}
	}
	st = p.model.State()
	old := p.behind.State()
	var pick policy.Flow
	var want policy.Verdict
	ok := false
	for i, f := range cands {
		v := st.Verdict(f)
		if v == before[i] || f.Src == f.Dst || old.Verdict(f) != before[i] || testbed.CanSend(f) != nil {
			continue
		}
		pick, want, ok = f, v, true
		break
	}
	p.pending = append(p.pending, ev)
	for len(p.pending) > p.lag {
		if _, err := p.behind.Apply(p.pending[0]); err != nil {
			p.err = fmt.Errorf("model: %s: %w", p.pending[0].Kind, err)
			return policy.Flow{}, 0, false
		}
		p.pending = p.pending[1:]
	}
	return pick, want, ok
}

func (p *packetProber) FirstVerdict(ctx context.Context, f policy.Flow, want policy.Verdict) (time.Time, error) {
	return p.bed.SendUntil(ctx, f, want == policy.Allow, p.opts)
}
