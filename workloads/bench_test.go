package workloads

import (
	"bytes"
	"io"
	"slices"
	"strconv"
	"syscall"
	"testing"
	"time"

	"netpolbench/policy"
)

var benchSizes = []int{1000, 10000, 100000}

// benchSpec is the preset closest in shape to n pods, scaled to exactly n.
func benchSpec(b *testing.B, n int) Spec {
	name := map[int]string{1000: "default", 10000: "large", 100000: "huge"}[n]
	return mustPreset(b, name).WithPods(n)
}

func BenchmarkGenerate(b *testing.B) {
	for _, n := range benchSizes {
		b.Run("pods="+strconv.Itoa(n), func(b *testing.B) {
			s := benchSpec(b, n)
			var g *Generated
			cpu := cpuTime()
			for b.Loop() {
				g = mustGenerate(b, s)
			}
			b.ReportMetric(float64(cpuTime()-cpu)/float64(b.N), "cpu-ns/op")
			b.ReportMetric(float64(len(g.Policies)), "policies")
			b.ReportMetric(float64(len(g.LabelSets)), "labelsets")
		})
	}
}

func BenchmarkWriteYAML(b *testing.B) {
	for _, n := range benchSizes {
		b.Run("pods="+strconv.Itoa(n), func(b *testing.B) {
			g := mustGenerate(b, benchSpec(b, n))
			cw := &countWriter{}
			for b.Loop() {
				if err := WriteYAML(cw, g); err != nil {
					b.Fatal(err)
				}
			}
			b.SetBytes(cw.n / int64(b.N))
		})
	}
}

// BenchmarkLoadYAML reads a generated cluster back from its YAML (policy.LoadBytes), as
// netpolbench verdict -f does.
func BenchmarkLoadYAML(b *testing.B) {
	for _, n := range benchSizes {
		b.Run("pods="+strconv.Itoa(n), func(b *testing.B) {
			g := mustGenerate(b, benchSpec(b, n))
			var buf bytes.Buffer
			if err := WriteYAML(&buf, g); err != nil {
				b.Fatal(err)
			}
			b.SetBytes(int64(buf.Len()))
			for b.Loop() {
				if _, _, err := policy.LoadBytes(buf.Bytes(), "cluster.yaml"); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// cpuTime is the process's user+system CPU time. On a shared 2-vCPU machine wall time per op
// swings with the neighbours' load; CPU time (every thread, the GC's included) swings much less.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

type countWriter struct{ n int64 }

func (c *countWriter) Write(p []byte) (int, error) { c.n += int64(len(p)); return len(p), nil }

var _ io.Writer = (*countWriter)(nil)

func BenchmarkCompile(b *testing.B) {
	for _, n := range benchSizes {
		b.Run("pods="+strconv.Itoa(n), func(b *testing.B) {
			s := benchSpec(b, n)
			var comp *policy.Compiler
			var cpu time.Duration
			for i := 0; i < b.N; i++ {
				b.StopTimer()
				g := mustGenerate(b, s) // Compile takes the cluster over: a fresh one each time
				c0 := cpuTime()
				b.StartTimer()
				comp = mustCompile(b, g.Cluster)
				b.StopTimer()
				cpu += cpuTime() - c0
				b.StartTimer()
			}
			b.StopTimer()
			b.ReportMetric(float64(cpu)/float64(b.N), "cpu-ns/op")
			b.ReportMetric(float64(len(comp.State().Identities())), "identities")
			b.ReportMetric(float64(len(comp.State().RuleSets())), "rulesets")
		})
	}
}

// BenchmarkChurnDelta times one Compiler.Apply of one event kind. The inverse event (a delete
// after an add, an add after a delete or a remove) runs outside the timer so the cluster keeps
// its size however many iterations run.
//
// changes/op counts what a delta asks a backend to do: entries and identity members added or
// removed, and endpoints whose identity or rule sets changed. ns/change is the events' total
// time over their total changes, the cost of an event per thing it changes.
func BenchmarkChurnDelta(b *testing.B) {
	type op struct {
		name    string
		kind    ChurnKind
		inverse ChurnKind
	}
	ops := []op{
		{"pod-add", ChurnPodAdd, ChurnPodDelete},
		{"pod-delete", ChurnPodDelete, ChurnPodAdd},
		{"relabel", ChurnRelabel, ChurnRelabel},
		// relabel-new moves the pod to a brand-new label set: a new identity every time.
		{"relabel-new", ChurnRelabel, ChurnRelabel},
		{"policy-add", ChurnPolicyAdd, ChurnPolicyRemove},
		{"policy-update", ChurnPolicyUpdate, ChurnPolicyUpdate},
		{"policy-remove", ChurnPolicyRemove, ChurnPolicyAdd},
	}
	// One compiled cluster per size, shared by every event kind and every run of a
	// sub-benchmark: building a 100k-pod one takes seconds, and the inverse events keep its
	// size steady.
	type fixture struct {
		ch   *Churn
		comp *policy.Compiler
	}
	fixtures := map[int]*fixture{}
	for _, o := range ops {
		for _, n := range benchSizes {
			b.Run("event="+o.name+"/pods="+strconv.Itoa(n), func(b *testing.B) {
				f := fixtures[n]
				if f == nil {
					g := mustGenerate(b, benchSpec(b, n))
					never := 0.0
					f = &fixture{ch: mustChurn(b, ChurnSpec{Mix: ChurnMix{PodAdd: 1}, NewLabelSet: &never}, g, 1), comp: mustCompile(b, g.Cluster)}
					fixtures[n] = f
				}
				next := func(k ChurnKind) []policy.Event {
					evs, err := f.ch.NextOf(k)
					if err != nil {
						b.Fatal(err)
					}
					return evs
				}
				apply := func(evs []policy.Event) int {
					changes := 0
					for _, ev := range evs {
						d, err := f.comp.Apply(ev)
						if err != nil {
							b.Fatalf("%s: %v", ev.Kind, err)
						}
						changes += len(d.EntriesAdded) + len(d.EntriesRemoved) + len(d.MembersAdded) + len(d.MembersRemoved) +
							len(d.EndpointsChanged)
					}
					return changes
				}
				if o.name == "relabel-new" {
					f.ch.newLS = 1
					defer func() { f.ch.newLS = 0 }()
				}
				changes := 0
				// Event sizes vary a lot (a policy may select one pod or a whole namespace):
				// report the median and the tail as well as the mean.
				took := make([]time.Duration, 0, b.N)
				b.ResetTimer()
				for i := 0; i < b.N; i++ {
					b.StopTimer()
					evs := next(o.kind)
					b.StartTimer()
					start := time.Now()
					changes += apply(evs)
					took = append(took, time.Since(start))
					if o.inverse != o.kind {
						b.StopTimer()
						apply(next(o.inverse))
						b.StartTimer()
					}
				}
				b.StopTimer()
				b.ReportMetric(float64(changes)/float64(b.N), "changes/op")
				var total time.Duration
				for _, d := range took {
					total += d
				}
				if changes > 0 {
					b.ReportMetric(float64(total.Nanoseconds())/float64(changes), "ns/change")
				}
				slices.Sort(took)
				b.ReportMetric(float64(took[len(took)/2].Nanoseconds()), "p50-ns")
				b.ReportMetric(float64(took[len(took)*99/100].Nanoseconds()), "p99-ns")
			})
		}
	}
}

// BenchmarkChurnStream applies the default churn mix (DefaultChurn: pod adds and deletes,
// relabels, scale bursts, policy adds, updates and removes) one event at a time and reports
// the distribution of per-event times: what a stream of real-looking churn costs, where
// BenchmarkChurnDelta isolates each kind. An op is one operation of the stream (a scale burst
// is ten events).
func BenchmarkChurnStream(b *testing.B) {
	for _, n := range benchSizes {
		b.Run("pods="+strconv.Itoa(n), func(b *testing.B) {
			g := mustGenerate(b, benchSpec(b, n))
			spec := DefaultChurn()
			spec.Count = 1 << 30
			spec.Rate = 0
			ch := mustChurn(b, spec, g, 1)
			comp := mustCompile(b, g.Cluster)
			var took []time.Duration
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				b.StopTimer()
				evs, ok := ch.Next()
				if !ok {
					b.Fatal("churn stream ended")
				}
				b.StartTimer()
				for _, ev := range evs {
					start := time.Now()
					if _, err := comp.Apply(ev); err != nil {
						b.Fatalf("%s: %v", ev.Kind, err)
					}
					took = append(took, time.Since(start))
				}
			}
			b.StopTimer()
			slices.Sort(took)
			under := len(took) - len(slices.DeleteFunc(slices.Clone(took), func(d time.Duration) bool { return d < time.Millisecond }))
			b.ReportMetric(float64(len(took))/float64(b.N), "events/op")
			b.ReportMetric(float64(took[len(took)/2].Nanoseconds()), "p50-ns")
			b.ReportMetric(float64(took[len(took)*99/100].Nanoseconds()), "p99-ns")
			b.ReportMetric(float64(took[len(took)-1].Nanoseconds()), "max-ns")
			b.ReportMetric(100*float64(under)/float64(len(took)), "%under-1ms")
		})
	}
}

// BenchmarkPolicyAddByKind times one Compiler.Apply of a PolicyAdd per template kind (the
// matching PolicyRemove runs outside the timer), to show which kinds make policy churn costly.
func BenchmarkPolicyAddByKind(b *testing.B) {
	for _, n := range benchSizes {
		var comp *policy.Compiler
		var g *Generated
		for _, kind := range policyKinds {
			b.Run("kind="+kind+"/pods="+strconv.Itoa(n), func(b *testing.B) {
				if comp == nil {
					g = mustGenerate(b, benchSpec(b, n))
					comp = mustCompile(b, g.Cluster)
				}
				t := PolicyTemplate{Kind: kind, Peers: 2, Expressions: 0.3, WithPodSelector: 0.5, Egress: 0.3}
				for _, st := range g.Spec.Policies {
					if st.Kind == kind {
						t = st
						break
					}
				}
				r := newRand(uint64(n), streamChurn)
				changes := 0
				b.ResetTimer()
				for i := 0; i < b.N; i++ {
					b.StopTimer()
					np := g.w.policy(r, t)
					b.StartTimer()
					d, err := comp.Apply(policy.Event{Kind: policy.PolicyAdd, Policy: np})
					if err != nil {
						b.Fatal(err)
					}
					changes += len(d.EntriesAdded) + len(d.MembersAdded)
					b.StopTimer()
					if _, err := comp.Apply(policy.Event{Kind: policy.PolicyRemove, PolicyKey: np.Namespace + "/" + np.Name}); err != nil {
						b.Fatal(err)
					}
					b.StartTimer()
				}
				b.StopTimer()
				b.ReportMetric(float64(changes)/float64(b.N), "changes/op")
			})
		}
	}
}
