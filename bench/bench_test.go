package bench

import (
	"context"
	"encoding/json"
	"fmt"
	hdrhistogram "github.com/HdrHistogram/hdrhistogram-go"
	"math"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"

	"netpolbench/catalogue"
	"netpolbench/internal/needs"
	"netpolbench/iptables"
	"netpolbench/policy"
	"netpolbench/results"
)

// testSource builds small clusters without the workload generator: pods spread over label
// sets app=a<i> in two namespaces, a default deny per namespace, and one policy per label set
// allowing the next label set in on TCP 80.
type testSource struct{ labelSets int }

func (s testSource) Describe() json.RawMessage { return json.RawMessage(`{"test":true}`) }
func (s testSource) Fixed() bool               { return false }

func (s testSource) Scale(pods, labelSets int) (*Scenario, error) {
	if labelSets == 0 {
		labelSets = s.labelSets
	}
	cl, err := testCluster(pods, labelSets)
	if err != nil {
		return nil, err
	}
	return &Scenario{Pods: pods, LabelSets: labelSets, Cluster: cl}, nil
}

// mustTestCompiler compiles a test cluster.
func mustTestCompiler(t *testing.T, pods, labelSets int) *policy.Compiler {
	t.Helper()
	cl, err := testCluster(pods, labelSets)
	if err != nil {
		t.Fatal(err)
	}
	comp, err := policy.Compile(cl, policy.Options{})
	if err != nil {
		t.Fatal(err)
	}
	return comp
}

func testCluster(pods, labelSets int) (*policy.Cluster, error) {
	cl := policy.NewCluster()
	nss := []string{"alpha", "bravo"}
	for _, ns := range nss {
		if err := cl.AddNamespace(&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}); err != nil {
			return nil, err
		}
	}
	ip := netip.MustParseAddr("198.18.0.1")
	for i := 0; i < pods; i++ {
		for b := ip.As4(); b[3] == 0 || b[3] == 255; b = ip.As4() {
			ip = ip.Next()
		}
		ls := i % labelSets
		p := &corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{Namespace: nss[ls%2], Name: fmt.Sprintf("p%d", i), Labels: map[string]string{"app": fmt.Sprintf("a%d", ls)}},
			Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "c", Ports: []corev1.ContainerPort{{Name: "http", ContainerPort: 80, Protocol: corev1.ProtocolTCP}}}}},
			Status:     corev1.PodStatus{PodIP: ip.String()},
		}
		if err := cl.AddPod(p); err != nil {
			return nil, err
		}
		ip = ip.Next()
	}
	tcp := corev1.ProtocolTCP
	port := intstr.FromInt32(80)
	for _, ns := range nss {
		np := &networkingv1.NetworkPolicy{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "deny"},
			Spec: networkingv1.NetworkPolicySpec{PolicyTypes: []networkingv1.PolicyType{networkingv1.PolicyTypeIngress}}}
		if err := cl.AddPolicy(np); err != nil {
			return nil, err
		}
	}
	for ls := 0; ls < labelSets; ls++ {
		from := (ls + 1) % labelSets
		np := &networkingv1.NetworkPolicy{ObjectMeta: metav1.ObjectMeta{Namespace: nss[ls%2], Name: fmt.Sprintf("allow-a%d", ls)},
			Spec: networkingv1.NetworkPolicySpec{
				PodSelector: metav1.LabelSelector{MatchLabels: map[string]string{"app": fmt.Sprintf("a%d", ls)}},
				PolicyTypes: []networkingv1.PolicyType{networkingv1.PolicyTypeIngress},
				Ingress: []networkingv1.NetworkPolicyIngressRule{{
					From: []networkingv1.NetworkPolicyPeer{{
						PodSelector:       &metav1.LabelSelector{MatchLabels: map[string]string{"app": fmt.Sprintf("a%d", from)}},
						NamespaceSelector: &metav1.LabelSelector{},
					}},
					Ports: []networkingv1.NetworkPolicyPort{{Protocol: &tcp, Port: &port}},
				}},
			}}
		if err := cl.AddPolicy(np); err != nil {
			return nil, err
		}
	}
	return cl, nil
}

func TestHistogramsClampOutOfRangeValuesAndCountThem(t *testing.T) {
	h := NewHistograms()
	k := HistKey{Kind: results.KindStampDelta, Backend: "ebpf", Pods: 100, Verdict: results.VerdictAllow, Flow: results.FlowNew, Attach: "tcx"}
	for _, v := range []int64{0, -5, 100, 200, histMax * 2} {
		if err := h.Record(k, v); err != nil {
			t.Fatalf("record %d: %v", v, err)
		}
	}
	if got := h.Count(k); got != 5 {
		t.Errorf("count = %d, want 5 (clamped values are kept)", got)
	}
	if got := h.Clamped(); got != 3 {
		t.Errorf("clamped = %d, want 3", got)
	}
	if max := h.Get(k).Max(); !h.Get(k).ValuesAreEquivalent(max, histMax) {
		t.Errorf("max = %d, want ≈ %d", max, int64(histMax))
	}
}

// TestHistogramsTakeAboveFloorFromTheSubtractedDistribution records stamp deltas and links one
// to its floor with the distribution of its values minus the floor's median: its percentiles
// above the floor are that distribution's, not its own percentiles minus the floor's; nothing
// else gets a floor by name or place alone.
func TestHistogramsTakeAboveFloorFromTheSubtractedDistribution(t *testing.T) {
	h := NewHistograms()
	floor := HistKey{Kind: results.KindStampDelta, Backend: results.BackendFloorName, Pods: 1000, Verdict: results.VerdictDeny, Attach: "netfilter", Extra: "for=iptables/span=nf-path/path=drop"}
	ipt := HistKey{Kind: results.KindStampDelta, Backend: "iptables", Pods: 1000, Verdict: results.VerdictDeny, Flow: results.FlowNew, Attach: "netfilter"}
	other := HistKey{Kind: results.KindStampDelta, Backend: "ebpf", Pods: 1000, Verdict: results.VerdictDeny, Flow: results.FlowNew, Attach: "netfilter"}
	tr := HistKey{Kind: results.KindTestRunBatchMeans, Backend: "ebpf", Pods: 1000, Verdict: results.VerdictDeny, Flow: results.FlowNew}
	above := hdrhistogram.New(histMin, histMax, histDigits)
	for i := int64(1); i <= 1000; i++ {
		for _, c := range []struct {
			k HistKey
			v int64
		}{{floor, 100 + i%10}, {ipt, 5000 + i}, {other, 300}, {tr, 150}} {
			if err := h.Record(c.k, c.v); err != nil {
				t.Fatal(err)
			}
		}
		if err := above.RecordValue(5000 + i - 105); err != nil {
			t.Fatal(err)
		}
	}
	h.SetAbove(ipt, floor, above, 7)
	h.SetDigests(ipt, "s", "f")
	dir := t.TempDir()
	out, err := h.Results(dir)
	if err != nil {
		t.Fatal(err)
	}
	byName := map[string]results.Histogram{}
	for _, r := range out {
		byName[r.Name] = r
		if r.HgrmPath == "" {
			t.Errorf("%s: no .hgrm file", r.Name)
			continue
		}
		b, err := os.ReadFile(filepath.Join(dir, r.HgrmPath))
		if err != nil || !strings.Contains(string(b), "Percentile") {
			t.Errorf("%s: .hgrm file %s unreadable or not a percentile table: %v", r.Name, r.HgrmPath, err)
		}
	}
	got := byName[ipt.Name()]
	if got.Floor != floor.Name() || got.AboveFloor == nil || got.AboveFloorClamped != 7 || got.StateDigest != "s" || got.FlowDigest != "f" {
		t.Fatalf("iptables histogram: floor %q above %+v clamped %d digests %q %q", got.Floor, got.AboveFloor, got.AboveFloorClamped, got.StateDigest, got.FlowDigest)
	}
	if want := float64(above.ValueAtQuantile(99)); got.AboveFloor.P99 != want {
		t.Errorf("above-floor p99 = %v, want the subtracted distribution's %v", got.AboveFloor.P99, want)
	}
	if math.Abs(got.Percentiles.P50-5500) > 10 {
		t.Errorf("stamped p50 = %v, want about 5500", got.Percentiles.P50)
	}
	if byName[other.Name()].Floor != "" {
		t.Errorf("a histogram never linked got the floor %q", byName[other.Name()].Floor)
	}
	if r := byName[tr.Name()]; r.Floor != "" || r.Kind != results.KindTestRunBatchMeans {
		t.Errorf("test-run histogram: floor %q kind %q, want no floor and kind batch means", r.Floor, r.Kind)
	}
	if byName[floor.Name()].Floor != "" {
		t.Error("the floor got a floor of its own")
	}
}

func TestFitsGiveTheExponentOfEachSeries(t *testing.T) {
	r := &Runner{run: results.New(), sizes: map[string][]sizePoint{}, pkt: map[string][]sizePoint{}}
	for _, n := range []int{100, 1000, 10000} {
		x := float64(n)
		r.sizes["iptables"] = append(r.sizes["iptables"], sizePoint{pods: n, identities: n / 10,
			size: results.Size{Iptables: &results.IptablesSize{Rules: uint64(3 * x * x)}}, syncNS: 1e3 * x})
		r.sizes["ebpf"] = append(r.sizes["ebpf"], sizePoint{pods: n, identities: n / 10,
			size: results.Size{Maps: []results.MapSize{{Name: "policy", Entries: uint64(x / 10 * x / 10)}, {Name: "lxc", Entries: uint64(n)}}}})
		r.pkt["ebpf/testrun"] = append(r.pkt["ebpf/testrun"], sizePoint{pods: n, syncNS: 170})
		// Round medians within a few ns of each other: the intervals are narrow.
		for _, p := range claimPaths["ebpf"] {
			r.run.Benchmarks = append(r.run.Benchmarks, pathBench("ebpf", n, p[0], p[1], 40, 39, 41, 40, 42, 38, 40))
		}
		for _, p := range claimPaths["iptables"] {
			r.run.Benchmarks = append(r.run.Benchmarks, pathBench("iptables", n, p[0], p[1], 20*x, 19*x, 21*x, 20*x, 22*x))
		}
		// A variant is not the sweep's curve.
		r.run.Benchmarks = append(r.run.Benchmarks, pathBench("ebpf", n, "tcx", "both", 40*x, 40*x, 40*x))
		r.run.Benchmarks[len(r.run.Benchmarks)-1].Name += "/rate=sparse"
	}
	r.fits()
	for _, c := range []struct {
		backend, metric, x string
		want               float64
	}{
		{"iptables", "rules", "pods", 2},
		{"iptables", "full sync ns", "pods", 1},
		{"ebpf", "policy entries", "identities", 2},
		{"ebpf", "map entries", "pods", 1.9}, // dominated by the quadratic policy map
		{"ebpf", packetPathMetric("tcx", "both"), "pods", 0},
		{"ebpf", packetPathMetric("tcx", "drop-egress"), "pods", 0},
		{"iptables", packetPathMetric("nf-path", "drop"), "pods", 1},
	} {
		f := r.findFit(c.backend, c.metric, c.x)
		if f == nil {
			t.Errorf("no fit for %s %s vs %s", c.backend, c.metric, c.x)
			continue
		}
		if math.Abs(f.Exponent-c.want) > 0.1 {
			t.Errorf("%s %s vs %s: exponent %.3f, want %.1f", c.backend, c.metric, c.x, f.Exponent, c.want)
		}
		if strings.HasPrefix(c.metric, "per-packet") && !(f.ExponentLo < f.Exponent && f.Exponent < f.ExponentHi && f.ExponentHi-f.ExponentLo < 0.1) {
			t.Errorf("%s %s: exponent %.3f in [%.3f, %.3f], want a narrow interval around it", c.backend, c.metric, f.Exponent, f.ExponentLo, f.ExponentHi)
		}
	}
	r.claims()
	status := map[string]string{}
	for _, c := range r.run.Claims {
		status[c.ID] = c.Status
	}
	if status["rules-quadratic"] != results.ClaimConfirmed || status["ebpf-flat"] != results.ClaimConfirmed {
		t.Errorf("claims from quadratic rules and flat eBPF cost: %v", status)
	}
	for _, c := range r.run.Claims {
		_, cited := c.Figures["ebpf_testrun_exponent"]
		if c.ID == "ebpf-flat" && (!strings.Contains(c.Evidence, "BPF_PROG_TEST_RUN") || !cited) {
			t.Errorf("per-packet claim should cite the flat test-run figure beside the stamps: %+v", c)
		}
	}
	if status["pod-add-no-map-change"] != results.ClaimNotMeasured {
		t.Errorf("pod-add claim without pod adds: %s, want not measured", status["pod-add-no-map-change"])
	}
}

// pathBench is the benchmark a headline pass records for one path of new flows: its p50 above
// the floor and its backend rounds' medians (the floor rounds' at 0: a floor that held still).
func pathBench(backend string, pods int, span, path string, p50 float64, rounds ...float64) results.Benchmark {
	return results.Benchmark{Name: fmt.Sprintf("BenchmarkPacketPath/backend=%s/pods=%d/attach=x/span=%s/path=%s/flow=new", backend, pods, span, path),
		Metrics: []results.Metric{{Unit: "above-floor-ns", Samples: []float64{p50}}, {Unit: "round-above-floor-ns", Samples: rounds},
			{Unit: "round-floor-ns", Samples: make([]float64, len(rounds))}}}
}

func TestPerPacketClaimFollowsTheExponentsIntervals(t *testing.T) {
	for _, c := range []struct {
		name string
		// rounds of eBPF's allowed path at 100, 1k and 10k pods
		rounds [3][]float64
		want   string
	}{
		{"flat and tight", [3][]float64{{100, 101, 99, 100}, {102, 101, 103, 102}, {104, 103, 105, 104}}, results.ClaimConfirmed},
		// Up from 100 to 150 ns: pods^0.09, well above the flat band.
		{"growing", [3][]float64{{100, 101, 99, 100}, {122, 121, 123, 122}, {150, 149, 151, 150}}, results.ClaimRefuted},
		// Flat at the centre, but one round in each scale strays by a factor of two.
		{"flat but noisy", [3][]float64{{100, 50, 150, 100}, {100, 200, 60, 100}, {105, 40, 160, 105}}, results.ClaimInconclusive},
	} {
		t.Run(c.name, func(t *testing.T) {
			r := &Runner{run: results.New(), sizes: map[string][]sizePoint{}, pkt: map[string][]sizePoint{}}
			for i, n := range []int{100, 1000, 10000} {
				x := float64(n)
				for _, p := range claimPaths["ebpf"] {
					r.run.Benchmarks = append(r.run.Benchmarks, pathBench("ebpf", n, p[0], p[1], median(c.rounds[i]), c.rounds[i]...))
				}
				for _, p := range claimPaths["iptables"] {
					r.run.Benchmarks = append(r.run.Benchmarks, pathBench("iptables", n, p[0], p[1], 20*x, 19*x, 21*x, 20*x, 22*x))
				}
				// nftables, growing as steeply as iptables, is evidence beside the claim and
				// must not move its status.
				for _, p := range claimPaths["nftables"] {
					r.run.Benchmarks = append(r.run.Benchmarks, pathBench("nftables", n, p[0], p[1], 20*x, 19*x, 21*x, 20*x, 22*x))
				}
			}
			r.fits()
			claim := r.claimPerPacket()
			if !strings.Contains(claim.Evidence, "for comparison, nftables new flows") {
				t.Errorf("evidence %q: want nftables' exponents beside the claim", claim.Evidence)
			}
			if claim.Status != c.want {
				t.Errorf("status %s, want %s: %s %v", claim.Status, c.want, claim.Evidence, claim.Figures)
			}
			if !strings.Contains(claim.Evidence, "denied at the destination ∝ pods^") || claim.Figures["ebpf_both_exponent_hi"] <= claim.Figures["ebpf_both_exponent_lo"] {
				t.Errorf("evidence %q, figures %v: want every path with its interval", claim.Evidence, claim.Figures)
			}
		})
	}
}

func TestClaimsRefutedWhenRulesGrowLinearly(t *testing.T) {
	r := &Runner{run: results.New(), sizes: map[string][]sizePoint{}, pkt: map[string][]sizePoint{}}
	for _, n := range []int{100, 1000} {
		r.sizes["iptables"] = append(r.sizes["iptables"], sizePoint{pods: n, size: results.Size{Iptables: &results.IptablesSize{Rules: uint64(5 * n)}}})
		r.sizes["ebpf"] = append(r.sizes["ebpf"], sizePoint{pods: n, identities: n / 10, size: results.Size{Maps: []results.MapSize{{Name: "policy", Entries: uint64(n)}}}})
	}
	r.fits()
	r.claims()
	if c := r.run.Claims[0]; c.ID != "rules-quadratic" || c.Status != results.ClaimRefuted || c.Evidence == "" {
		t.Errorf("linear rules: claim %+v, want refuted with evidence", c)
	}
}

func TestChurnEventsApplyToTheClusterAsItIsThen(t *testing.T) {
	comp := mustTestCompiler(t, 300, 12)
	ch := newChurner(7)
	for round := 0; round < 4; round++ {
		for _, kind := range churnKinds {
			evs, err := ch.events(comp.Cluster(), kind, 5)
			if err != nil {
				t.Fatalf("round %d %s: %v", round, kind, err)
			}
			for _, ev := range evs {
				d, err := comp.Apply(ev)
				if err != nil {
					t.Fatalf("round %d %s: apply %v: %v", round, kind, ev.Kind, err)
				}
				if kind == "pod-add" && (len(d.EntriesAdded) != 0 || len(d.EntriesRemoved) != 0) {
					t.Errorf("pod add with an existing label set changed rule entries: +%d -%d", len(d.EntriesAdded), len(d.EntriesRemoved))
				}
			}
		}
	}
	// The compiled state after churn must still match the reference evaluator.
	st := comp.State()
	keys := comp.Cluster().PodKeys()
	for i := 0; i < 500; i++ {
		src := comp.Cluster().Pods[keys[(i*7)%len(keys)]]
		dst := comp.Cluster().Pods[keys[(i*13+5)%len(keys)]]
		f := policy.Flow{Src: src.IP, Dst: dst.IP, Proto: policy.ProtoTCP, Port: 80}
		if want, _ := comp.Cluster().Evaluate(f); st.Verdict(f) != want {
			t.Fatalf("after churn %s: state %v, reference %v", f, st.Verdict(f), want)
		}
	}
}

func TestRunnerSweepsTheCompiledBackend(t *testing.T) {
	spec := Spec{Pods: []int{60, 240}, LabelSets: []int{4, 16}, LabelSetPods: 120, Backends: []string{"compiled"}, Samples: 3, ChurnEvents: 2, ScaleBurst: 4}.withDefaults()
	r := &Runner{Spec: spec, Source: testSource{labelSets: 8}}
	run, err := r.Run(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	if err := r.Write(dir); err != nil {
		t.Fatal(err)
	}
	loaded, err := results.Load(filepath.Join(dir, ResultsFile))
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{
		"BenchmarkSync/backend=compiled/pods=60", "BenchmarkSync/backend=compiled/pods=240",
		"BenchmarkUpdate/backend=compiled/pods=240/event=pod-add", "BenchmarkUpdate/backend=compiled/pods=240/event=policy-remove",
		"BenchmarkUpdate/backend=compiled/pods=240/event=scale-up", "BenchmarkSize/backend=compiled/pods=120/labelsets=16",
	} {
		if loaded.Find(name) == nil {
			t.Errorf("results.json has no %s", name)
		}
	}
	if len(loaded.Sizes) != 2 {
		t.Errorf("sizes: %d, want one per pods scale (2)", len(loaded.Sizes))
	}
	var conv int
	for _, u := range run.Updates {
		conv += len(u.ConvergenceNS)
		if u.Event != results.EventFullSync && len(u.ApplyNS) != spec.ChurnEvents {
			t.Errorf("%s at %d pods: %d samples, want %d", u.Event, u.Pods, len(u.ApplyNS), spec.ChurnEvents)
		}
	}
	if conv == 0 {
		t.Error("no churn event measured a convergence time through the compiled decider")
	}
	if f := r.findFit("compiled", "policy entries (label-set sweep)", "identities"); f == nil {
		t.Error("no fit of policy entries over the label-set sweep")
	}
	var claim results.Claim
	for _, c := range run.Claims {
		if c.ID == "pod-add-no-map-change" {
			claim = c
		}
	}
	if claim.Status != results.ClaimConfirmed {
		t.Errorf("pod-add claim on the compiled backend: %+v", claim)
	}
	bt, err := os.ReadFile(filepath.Join(dir, BenchfmtFile))
	if err != nil {
		t.Fatal(err)
	}
	back, err := results.ReadBenchfmt(strings.NewReader(string(bt)), BenchfmtFile)
	if err != nil || len(back) == 0 {
		t.Fatalf("bench.txt does not read back: %v (%d benchmarks)", err, len(back))
	}
}

func TestRunnerRecordsAMissingBackendAsACap(t *testing.T) {
	defer catalogue.Register(&catalogue.Backend{Name: "test-unavailable", Help: "test only: needs a tool no machine has",
		Family: catalogue.InProcess, Needs: []needs.Need{needs.Tool("npb-no-such-tool", "none")},
		New: func(catalogue.Env) (policy.Backend, error) { panic("opened without its needs") }})()
	spec := Spec{Pods: []int{50}, Backends: []string{"test-unavailable", "compiled"}, Samples: 1, ChurnEvents: 1}.withDefaults()
	r := &Runner{Spec: spec, Source: testSource{labelSets: 5}}
	run, err := r.Run(context.Background())
	if err != nil {
		t.Fatalf("a missing backend failed the run: %v", err)
	}
	if len(run.Caps) != 1 || run.Caps[0].Backend != "test-unavailable" || !run.Caps[0].Skipped || run.Caps[0].Reason == "" {
		t.Errorf("caps = %+v, want one skipped cap with a reason", run.Caps)
	}
	if run.Find("BenchmarkSync/backend=compiled/pods=50") == nil {
		t.Error("the available backend was not measured")
	}
}

func TestLoadSpecRejectsUnknownFieldsAndBadValues(t *testing.T) {
	dir := t.TempDir()
	for _, c := range []struct{ name, yaml, want string }{
		{"unknown field", "pods: [100]\npodz: 3\n", "podz"},
		{"bad backend", "pods: [100]\nbackends: [nosuch]\n", "unknown backend"},
		{"pods out of range", "pods: [0, 200000]\n", "out of range"},
		{"bad duration", "pods: [100]\nduration: soon\n", "duration"},
		{"map headroom below 1", "pods: [100]\nmapHeadroom: 0.5\n", "mapHeadroom"},
	} {
		t.Run(c.name, func(t *testing.T) {
			p := filepath.Join(dir, strings.ReplaceAll(c.name, " ", "_")+".yaml")
			if err := os.WriteFile(p, []byte(c.yaml), 0o644); err != nil {
				t.Fatal(err)
			}
			_, err := LoadSpec(p)
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Errorf("LoadSpec: error %v, want one mentioning %q", err, c.want)
			}
		})
	}
	p := filepath.Join(dir, "ok.yaml")
	os.WriteFile(p, []byte("pods: [100, 1000]\nbackends: [compiled]\nduration: 3s\n"), 0o644)
	s, err := LoadSpec(p)
	if err != nil {
		t.Fatal(err)
	}
	if len(s.Pods) != 2 || s.Samples != 5 || s.Duration.String() != "3s" {
		t.Errorf("loaded spec %+v", s)
	}
}

func TestInverseEventsUndoEveryChurnKind(t *testing.T) {
	comp := mustTestCompiler(t, 120, 6)
	ch := newChurner(3)
	for _, kind := range churnKinds {
		entries := comp.State().NumEntries()
		eps := comp.State().NumEndpoints()
		pols := len(comp.Cluster().Policies)
		evs, err := ch.events(comp.Cluster(), kind, 3)
		if err != nil {
			t.Fatal(err)
		}
		var undo []policy.Event
		for _, ev := range evs {
			inv, ok := inverseEvent(comp.Cluster(), ev)
			if !ok {
				t.Fatalf("%s: no inverse for %v", kind, ev.Kind)
			}
			if _, err := comp.Apply(ev); err != nil {
				t.Fatal(err)
			}
			undo = append(undo, inv)
		}
		for i := len(undo) - 1; i >= 0; i-- {
			if _, err := comp.Apply(undo[i]); err != nil {
				t.Fatalf("%s: undo: %v", kind, err)
			}
		}
		if got := comp.State().NumEntries(); got != entries || comp.State().NumEndpoints() != eps || len(comp.Cluster().Policies) != pols {
			t.Errorf("%s undone: %d entries %d endpoints %d policies, want %d %d %d", kind, got, comp.State().NumEndpoints(), len(comp.Cluster().Policies), entries, eps, pols)
		}
	}
}

// TestIptablesSizeFromSyncCountsKeepsTheSets: when a backend cannot report its own size, the
// runner takes the iptables figures from its last full sync's counts. The ipset sets and
// members must come through as the backend counted them (they were once read under names the
// backend never wrote, and became 0).
func TestIptablesSizeFromSyncCountsKeepsTheSets(t *testing.T) {
	comp := mustTestCompiler(t, 240, 24)
	fake := iptables.NewFake()
	b, err := iptables.New(iptables.Config{Variant: iptables.VariantIPSet, Runner: fake})
	if err != nil {
		t.Fatal(err)
	}
	st, err := b.Sync(comp.State())
	if err != nil {
		t.Fatal(err)
	}
	chains, _, sets, members := fake.Counts()
	if sets == 0 || members == 0 {
		t.Fatalf("the workload made %d sets with %d members: nothing to check", sets, members)
	}
	// The bare backend reports no size of its own.
	r := &Runner{}
	got := r.size(catalogue.MustGet("ipset"), b, st, comp.State().NumEndpoints(), len(comp.State().Identities())).Iptables
	if got == nil {
		t.Fatal("no iptables size from the sync counts")
	}
	if got.IpsetSets != uint64(sets) || got.IpsetMembers != uint64(members) || got.Chains != uint64(chains) {
		t.Errorf("size from sync counts: %d sets, %d members, %d chains; the fake holds %d, %d, %d",
			got.IpsetSets, got.IpsetMembers, got.Chains, sets, members, chains)
	}
}
