package datapath

import (
	"flag"
	"fmt"
	"net/netip"
	"os"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"netpolbench/policy"
	"netpolbench/policy/policytest"
	"netpolbench/workloads"
)

// TestMain declares the deterministic benchmark units exact for benchstat.
func TestMain(m *testing.M) {
	flag.Parse()
	if f := flag.Lookup("test.bench"); f != nil && f.Value.String() != "" {
		for _, u := range []string{"verified-insns", "xlated-bytes", "jited-bytes", "map-bytes", "map-entries", "ops/op"} {
			fmt.Printf("Unit %s assume=exact\n", u)
		}
	}
	os.Exit(m.Run())
}

// Scale clusters: scaleApps label sets (Cilium's 1000-node report had 250 identities for
// 50,000 pods) over 10 namespaces. Policy app-k accepts app-(k+1) on TCP 8080 and
// 203.0.113.0/24 on TCP 443, so rule sets and entries scale with identities, not pods.
const scaleApps = 250

func scaleIP(i int) netip.Addr {
	n := uint32(i + 1)
	return netip.AddrFrom4([4]byte{198, 18 + byte(n>>16), byte(n >> 8), byte(n)})
}

func scaleApp(i int) int { return i % scaleApps }

func scaleNS(app int) string { return fmt.Sprintf("ns-%d", app%10) }

func scalePod(i int) *policy.Pod {
	app := scaleApp(i)
	return &policy.Pod{Namespace: scaleNS(app), Name: fmt.Sprintf("pod-%d", i),
		Labels: map[string]string{"app": fmt.Sprintf("app-%d", app)}, IP: scaleIP(i),
		Ports: []policy.ContainerPort{{Name: "http", Protocol: policy.ProtoTCP, Port: 8080}}}
}

type scaleWorld struct {
	comp *policy.Compiler
	pods int
}

var scaleCache = map[int]*scaleWorld{}
var scaleMu sync.Mutex

// scaleState compiles (once per size) a cluster of n pods.
func scaleState(tb testing.TB, n int) *scaleWorld {
	tb.Helper()
	scaleMu.Lock()
	defer scaleMu.Unlock()
	if w, ok := scaleCache[n]; ok {
		return w
	}
	c := policy.NewCluster()
	for i := range n {
		p := scalePod(i)
		kp := k8sPod(podSpec{ns: p.Namespace, name: p.Name, ip: p.IP.String(), labels: p.Labels,
			ports: []corev1.ContainerPort{{Name: "http", ContainerPort: 8080}}})
		if err := c.AddPod(kp); err != nil {
			tb.Fatal(err)
		}
	}
	for app := range scaleApps {
		from := fmt.Sprintf("app-%d", (app+1)%scaleApps)
		np := netpol(scaleNS(app), fmt.Sprintf("app-%d", app), map[string]string{"app": fmt.Sprintf("app-%d", app)}, ingressOnly,
			[]networkingv1.NetworkPolicyIngressRule{
				{From: []networkingv1.NetworkPolicyPeer{{PodSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": from}},
					NamespaceSelector: &metav1.LabelSelector{}}}, Ports: []networkingv1.NetworkPolicyPort{port(tcp, 8080)}},
				{From: []networkingv1.NetworkPolicyPeer{cidrPeer("203.0.113.0/24")}, Ports: []networkingv1.NetworkPolicyPort{port(tcp, 443)}},
			}, nil)
		if err := c.AddPolicy(np); err != nil {
			tb.Fatal(err)
		}
	}
	comp, err := policy.Compile(c, policy.Options{})
	if err != nil {
		tb.Fatal(err)
	}
	w := &scaleWorld{comp: comp, pods: n}
	scaleCache[n] = w
	return w
}

// benchPackets returns packets to distinct destination pods spread over the cluster: allowed
// ones from the accepted app, denied ones from another app.
func benchPackets(tb testing.TB, w *scaleWorld, allow bool, count int) [][]byte {
	tb.Helper()
	out := make([][]byte, 0, count)
	step := max(1, w.pods/count)
	for k := 0; len(out) < count; k++ {
		dst := (k * step * 7919) % w.pods
		srcApp := (scaleApp(dst) + 1) % scaleApps
		if !allow {
			srcApp = (scaleApp(dst) + 2) % scaleApps
		}
		src := (dst/scaleApps)*scaleApps + srcApp
		if src >= w.pods {
			src = srcApp
		}
		pkt, err := Packet(policy.Flow{Src: scaleIP(src), Dst: scaleIP(dst), Proto: policy.ProtoTCP, Port: 8080}, ProbeSrcPort)
		if err != nil {
			tb.Fatal(err)
		}
		out = append(out, pkt)
	}
	return out
}

// runRepeat is the number of BPF_PROG_TEST_RUN repetitions per call: the kernel returns their
// mean, so bpf_ns/op is a mean over runs of one packet with warm caches.
const runRepeat = 512

func benchProg(b *testing.B, prog *ebpf.Program, pkts [][]byte, want int32) {
	b.Helper()
	var total time.Duration
	runs := 0
	b.ResetTimer()
	for i := 0; b.Loop(); i++ {
		ret, d, err := prog.Benchmark(pkts[i%len(pkts)], runRepeat, nil)
		if err != nil {
			b.Fatal(err)
		}
		if int32(ret) != want {
			b.Fatalf("program returned %d, want %d", int32(ret), want)
		}
		total += d
		runs++
	}
	b.ReportMetric(float64(total.Nanoseconds())/float64(runs), "bpf_ns/op")
}

// BenchmarkFloor is the empty sched_cls program through the same test-run path.
func BenchmarkFloor(b *testing.B) {
	d := mustOpen(b, Options{})
	pkt, _ := Packet(policy.Flow{Src: scaleIP(0), Dst: scaleIP(1), Proto: policy.ProtoTCP, Port: 8080}, ProbeSrcPort)
	benchProg(b, d.EmptyProgram(), [][]byte{pkt}, 0)
}

var benchSizes = []int{1000, 10000, 100000}

// BenchmarkVerdict measures to_container on new allowed, new denied and established flows.
// New-flow paths send TCP SYNs with CTLookup: a SYN is checked as new (it skips the CT lookup)
// and no entry is created, so every repetition is a new flow. established is a forward ACK of
// a flow its SYN created, answered by the per-CPU flow cache; established-nocache the same
// with the cache off (the `ct` LRU hash lookup).
func BenchmarkVerdict(b *testing.B) {
	needBPF(b)
	for _, path := range []string{"new-allow", "new-deny", "established", "established-nocache"} {
		for _, n := range benchSizes {
			for _, layout := range []Layout{LayoutHash, LayoutCilium} {
				name := fmt.Sprintf("prog=to_container/path=%s/pods=%d/layout=%s", path, n, layout)
				b.Run(name, func(b *testing.B) {
					if testing.Short() && n > 10000 {
						b.Skip("100k-pod cluster skipped in -short")
					}
					w := scaleState(b, n)
					s := w.comp.State()
					established := strings.HasPrefix(path, "established")
					ct := CTLookup
					if established {
						ct = CTFull
					}
					d := mustSynced(b, s, Options{Layout: layout, CT: ct, NoFlowCache: path == "established-nocache"})
					to, _ := d.Programs()
					pkts := benchPackets(b, w, path != "new-deny", 64)
					if established {
						// The first packet creates the entry; the rest are its forward packets.
						for _, p := range pkts {
							if _, err := d.Run(to, p); err != nil {
								b.Fatal(err)
							}
							p[14+20+13] = 0x10 // ACK
						}
					}
					want := int32(0)
					if path == "new-deny" {
						want = 2
					}
					benchProg(b, to, pkts, want)
				})
			}
		}
	}
}

// BenchmarkRange compares a wide port range checked inline in the summary with the same range
// expanded into single-port keys.
func BenchmarkRange(b *testing.B) {
	needBPF(b)
	ns, pods := semanticPods()
	c := buildCluster(b, ns, pods, []*networkingv1.NetworkPolicy{
		netpol("x", "range", nil, ingressOnly, []networkingv1.NetworkPolicyIngressRule{{
			Ports: []networkingv1.NetworkPolicyPort{portRange(tcp, 1000, 2000)}}}, nil)})
	s := policytest.MustCompile(b, c).State()
	pkt := mustPacket(b, ipB, ipA, policy.ProtoTCP, 40000, 1500, 2)
	for _, tc := range []struct {
		name   string
		expand int
	}{{"inline", 0}, {"expanded", -1}} {
		b.Run("ranges="+tc.name, func(b *testing.B) {
			d := mustSynced(b, s, Options{InlinePorts: tc.expand, CT: CTLookup})
			to, _ := d.Programs()
			b.ReportMetric(float64(len(d.tabs.policy.cur)), "map-entries")
			benchProg(b, to, [][]byte{pkt}, 0)
		})
	}
}

// BenchmarkFacts reports the deterministic figures of a load: verified instructions and sizes
// per program, map bytes (kernel memlock) and entries.
func BenchmarkFacts(b *testing.B) {
	needBPF(b)
	for _, n := range benchSizes {
		for _, layout := range []Layout{LayoutHash, LayoutCilium} {
			b.Run(fmt.Sprintf("pods=%d/layout=%s", n, layout), func(b *testing.B) {
				if testing.Short() && n > 10000 {
					b.Skip("100k-pod cluster skipped in -short")
				}
				s := scaleState(b, n).comp.State()
				d := mustSynced(b, s, Options{Layout: layout})
				var f Facts
				for b.Loop() {
					var err error
					if f, err = d.Facts(); err != nil {
						b.Fatal(err)
					}
				}
				var mem uint64
				entries := 0
				for _, m := range f.Maps {
					mem += m.Memlock
					if m.Entries > 0 {
						entries += m.Entries
					}
				}
				for _, p := range f.Programs {
					if p.Name == "to_container" {
						b.ReportMetric(float64(p.VerifiedInsns), "verified-insns")
						b.ReportMetric(float64(p.Xlated), "xlated-bytes")
						b.ReportMetric(float64(p.JITed), "jited-bytes")
					}
				}
				b.ReportMetric(float64(mem), "map-bytes")
				b.ReportMetric(float64(entries), "map-entries")
			})
		}
	}
}

// BenchmarkSync is a full sync of a cluster's state into fresh maps, batch against per-key,
// and of the huge workloads preset.
func BenchmarkSync(b *testing.B) {
	needBPF(b)
	for _, n := range benchSizes {
		for _, mode := range []string{"batch", "per-key"} {
			for _, layout := range []Layout{LayoutHash, LayoutCilium} {
				b.Run(fmt.Sprintf("pods=%d/mode=%s/layout=%s", n, mode, layout), func(b *testing.B) {
					if testing.Short() && n > 10000 {
						b.Skip("100k-pod cluster skipped in -short")
					}
					benchSyncFresh(b, scaleState(b, n).comp.State(), Options{Layout: layout, PerKey: mode == "per-key"})
				})
			}
		}
	}
	// The suite's own huge preset: 100,000 pods with about 2,000 identities, so far more rule
	// sets and entries than the few-identity scale clusters above.
	for _, layout := range []Layout{LayoutHash, LayoutCilium} {
		b.Run(fmt.Sprintf("preset=huge/mode=batch/layout=%s", layout), func(b *testing.B) {
			if testing.Short() {
				b.Skip("huge preset skipped in -short")
			}
			benchSyncFresh(b, presetState(b, "huge"), Options{Layout: layout})
		})
	}
}

// benchSyncFresh times full syncs of s, each into a freshly opened datapath (opening and
// closing are outside the timer), and reports the kernel operations of one sync.
func benchSyncFresh(b *testing.B, s *policy.State, opts Options) {
	b.Helper()
	opts.Sizes = SizesFor(s, opts.Layout)
	ops := 0
	for b.Loop() {
		b.StopTimer()
		d, err := Open(opts)
		if err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
		st, err := d.Sync(s)
		b.StopTimer()
		if err != nil {
			b.Fatal(err)
		}
		ops = st.Ops
		if err := d.Close(); err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
	}
	b.ReportMetric(float64(ops), "ops/op")
}

var (
	presetMu    sync.Mutex
	presetCache = map[string]*policy.State{}
)

// presetState generates and compiles (once per name) an embedded workloads preset.
func presetState(tb testing.TB, name string) *policy.State {
	tb.Helper()
	presetMu.Lock()
	defer presetMu.Unlock()
	if s, ok := presetCache[name]; ok {
		return s
	}
	spec, err := workloads.Preset(name)
	if err != nil {
		tb.Fatal(err)
	}
	g, err := workloads.Generate(spec)
	if err != nil {
		tb.Fatalf("generate preset %s: %v", name, err)
	}
	s := policytest.MustCompile(tb, g.Cluster).State()
	presetCache[name] = s
	return s
}

// BenchmarkUpdate applies one pod's churn delta (a pod of an existing label set added, then
// deleted) and reports the median as well as the mean.
func BenchmarkUpdate(b *testing.B) {
	needBPF(b)
	for _, n := range benchSizes {
		for _, layout := range []Layout{LayoutHash, LayoutCilium} {
			b.Run(fmt.Sprintf("event=pod-churn/pods=%d/layout=%s", n, layout), func(b *testing.B) {
				if testing.Short() && n > 10000 {
					b.Skip("100k-pod cluster skipped in -short")
				}
				w := scaleState(b, n)
				s := w.comp.State()
				d := mustSynced(b, s, Options{Layout: layout})
				extra := scalePod(n + 7) // a fresh address, an existing label set
				var durs []time.Duration
				ops := 0
				for i := 0; b.Loop(); i++ {
					b.StopTimer()
					ev := policy.Event{Kind: policy.PodAdd, Pod: extra}
					if i%2 == 1 {
						ev = policy.Event{Kind: policy.PodDelete, PodKey: extra.Key()}
					}
					delta, err := w.comp.Apply(ev)
					if err != nil {
						b.Fatal(err)
					}
					b.StartTimer()
					start := time.Now()
					st, err := d.Update(s, delta)
					durs = append(durs, time.Since(start))
					if err != nil {
						b.Fatal(err)
					}
					if i%2 == 0 {
						// ops/op is exact: always the add's count, whatever b.N's parity.
						ops = st.Ops
					}
				}
				b.StopTimer()
				if len(durs)%2 == 1 {
					// Leave the shared cluster as it was.
					if _, err := w.comp.Apply(policy.Event{Kind: policy.PodDelete, PodKey: extra.Key()}); err != nil {
						b.Fatal(err)
					}
				}
				sort.Slice(durs, func(i, j int) bool { return durs[i] < durs[j] })
				b.ReportMetric(float64(durs[len(durs)/2].Nanoseconds()), "p50-ns/op")
				b.ReportMetric(float64(ops), "ops/op")
			})
		}
	}
}
