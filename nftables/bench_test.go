package nftables

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"sigs.k8s.io/knftables"

	"netpolbench/policy"
	"netpolbench/policy/policytest"
	"netpolbench/workloads"
)

var unitsOnce sync.Once

// declareUnits tells benchstat which figures are deterministic.
func declareUnits() {
	unitsOnce.Do(func() {
		for _, u := range []string{"rules", "chains", "sets", "elements", "dispatch_elements", "pod_elements",
			"max_ruleset_rules", "commands/op", "payload_bytes/op", "elements_written/op", "elements_deleted/op",
			"rules_written/op", "chains_written/op"} {
			fmt.Printf("Unit %s assume=exact\n", u)
		}
	})
}

// generated are the benchmarks' workloads: a count an embedded preset was drawn for (1,000
// default, 10,000 large, 100,000 huge) uses that preset, as the sweep does; others scale the
// default workload.
var generated = policytest.Workloads{Spec: func(pods int) workloads.Spec {
	for _, name := range workloads.Presets() {
		if p, err := workloads.Preset(name); err == nil && p.Pods == pods {
			return p
		}
	}
	return workloads.Default().WithPods(pods)
}}

// syncedKernel compiles the workload and syncs it into a fresh namespace's kernel.
func syncedKernel(b *testing.B, g *workloads.Generated) (*policy.Compiler, Namespace, *Backend) {
	comp := policytest.MustCompile(b, g.Cluster.Clone())
	ns, be := mustKernel(b, KernelOptions{})
	if _, err := be.Sync(comp.State()); err != nil {
		b.Fatal(err)
	}
	return comp, ns, be
}

func reportSize(b *testing.B, z Size) {
	b.ReportMetric(float64(z.Rules), "rules")
	b.ReportMetric(float64(z.Chains), "chains")
	b.ReportMetric(float64(z.Sets), "sets")
	b.ReportMetric(float64(z.Elements), "elements")
	b.ReportMetric(float64(z.DispatchElements), "dispatch_elements")
	b.ReportMetric(float64(z.PodElements), "pod_elements")
	b.ReportMetric(float64(z.MaxRuleSetRules), "max_ruleset_rules")
}

// BenchmarkFullSync measures a full sync into an empty node namespace: building the
// transaction, writing it out, and nft applying it in one transaction, with element commands
// batched (the default) and one command an element (knftables' own output). Namespace setup
// and teardown are outside the timer. One command an element is left out above 10,000 pods:
// nft held over 10 GB parsing the 100,000-pod table that way.
func BenchmarkFullSync(b *testing.B) {
	declareUnits()
	for _, pods := range policytest.BenchPods() {
		for _, perElement := range []bool{false, true} {
			commands := "batched"
			if perElement {
				commands = "per-element"
			}
			b.Run(fmt.Sprintf("pods=%d/commands=%s", pods, commands), func(b *testing.B) {
				needKernel(b)
				if perElement && pods > 10000 {
					b.Skip("one nft command an element needs more memory than this machine has at this scale")
				}
				g := generated.Get(b, pods)
				comp := policytest.MustCompile(b, g.Cluster.Clone())
				var last Counts
				b.ResetTimer()
				for i := 0; i < b.N; i++ {
					b.StopTimer()
					ns, del := newNetns(b)
					b.Cleanup(del)
					nft, err := NewKernel(ns, KernelOptions{})
					if err != nil {
						b.Fatal(err)
					}
					be, err := New(Config{NFT: nft, PerElement: perElement})
					if err != nil {
						b.Fatal(err)
					}
					b.StartTimer()
					if _, err := be.Sync(comp.State()); err != nil {
						b.Fatal(err)
					}
					b.StopTimer()
					last = be.Last()
					// Removing the namespace drops the table with it.
					del()
				}
				reportSize(b, last.Table)
				b.ReportMetric(float64(last.Commands), "commands/op")
				b.ReportMetric(float64(last.Bytes), "payload_bytes/op")
				b.ReportMetric(float64(last.ElementsAdded), "elements_written/op")
				b.ReportMetric(float64(last.Plan.Microseconds())/1000, "plan_ms")
				b.ReportMetric(float64(last.Render.Microseconds())/1000, "render_ms")
				b.ReportMetric(float64(last.Apply.Microseconds())/1000, "apply_ms")
			})
		}
	}
}

// BenchmarkPartialSync measures Update for one churn event (pod add or delete, relabel,
// policy add, update or remove; no bursts) on top of a full sync, each event's compile outside
// the timer: one nft transaction of the elements, rules and chains the event changed.
func BenchmarkPartialSync(b *testing.B) {
	declareUnits()
	for _, pods := range policytest.BenchPods() {
		b.Run(fmt.Sprintf("pods=%d", pods), func(b *testing.B) {
			g := generated.Get(b, pods)
			comp, _, be := syncedKernel(b, g)
			spec := workloads.DefaultChurn()
			spec.Mix.ScaleUp, spec.Mix.ScaleDown = 0, 0
			spec.Count = 1 << 30
			ch, err := workloads.NewChurn(spec, g, 42)
			if err != nil {
				b.Fatal(err)
			}
			var commands, bytes, added, deleted, rules, chains, fulls int
			var plan, render, apply, worst time.Duration
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				b.StopTimer()
				batch, ok := ch.Next()
				if !ok || len(batch) != 1 {
					b.Fatalf("churn gave %d events, want one", len(batch))
				}
				d, err := comp.Apply(batch[0])
				if err != nil {
					b.Fatal(err)
				}
				b.StartTimer()
				st, err := be.Update(comp.State(), d)
				b.StopTimer()
				if err != nil {
					b.Fatalf("%s: %v", batch[0].Kind, err)
				}
				l := be.Last()
				worst = max(worst, st.Duration)
				commands += l.Commands
				bytes += l.Bytes
				added += l.ElementsAdded
				deleted += l.ElementsDeleted
				rules += l.RulesWritten
				chains += l.ChainsWritten
				fulls += boolCount(l.Full)
				plan += l.Plan
				render += l.Render
				apply += l.Apply
			}
			n := float64(b.N)
			reportSize(b, be.Size())
			b.ReportMetric(float64(commands)/n, "commands/op")
			b.ReportMetric(float64(bytes)/n, "payload_bytes/op")
			b.ReportMetric(float64(added)/n, "elements_written/op")
			b.ReportMetric(float64(deleted)/n, "elements_deleted/op")
			b.ReportMetric(float64(rules)/n, "rules_written/op")
			b.ReportMetric(float64(chains)/n, "chains_written/op")
			b.ReportMetric(float64(fulls)/n, "full_syncs/op")
			b.ReportMetric(float64(worst.Microseconds())/1000, "max_ms")
			b.ReportMetric(float64(plan.Microseconds())/1000/n, "plan_ms")
			b.ReportMetric(float64(render.Microseconds())/1000/n, "render_ms")
			b.ReportMetric(float64(apply.Microseconds())/1000/n, "apply_ms")
		})
	}
}

func boolCount(v bool) int {
	if v {
		return 1
	}
	return 0
}

// BenchmarkListTable measures what a backend's first sync reads of a table a previous run
// left (its chains, sets and maps), with `nft -j list` and with knftables' netlink lister.
func BenchmarkListTable(b *testing.B) {
	for _, pods := range policytest.BenchPods() {
		for _, nl := range []bool{false, true} {
			b.Run(fmt.Sprintf("pods=%d/netlink=%v", pods, nl), func(b *testing.B) {
				_, ns, _ := syncedKernel(b, generated.Get(b, pods))
				nft, err := NewKernel(ns, KernelOptions{ExecList: !nl})
				if err != nil {
					b.Fatal(err)
				}
				b.ResetTimer()
				for i := 0; i < b.N; i++ {
					for _, kind := range []string{"chains", "sets", "maps"} {
						if _, err := nft.List(context.Background(), kind); err != nil {
							b.Fatal(err)
						}
					}
				}
			})
		}
	}
}

// BenchmarkNftFloor measures the least a transaction costs through the kernel path: one
// no-op command (`add table`) by nft, on the table a full sync of each scale wrote. Every
// partial sync pays at least this: nft starts and reads the table's chains and sets before it
// applies anything.
func BenchmarkNftFloor(b *testing.B) {
	for _, pods := range policytest.BenchPods() {
		b.Run(fmt.Sprintf("pods=%d", pods), func(b *testing.B) {
			_, _, be := syncedKernel(b, generated.Get(b, pods))
			r := be.cfg.NFT.(textRunner)
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				if err := r.runText(context.Background(), "add table inet netpolbench\n"); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// discardNFT takes the kernel's path (the transaction written out as nft input) and drops the
// input instead of running nft: what a sync costs on the Go side.
type discardNFT struct{ knftables.Interface }

func (discardNFT) runText(context.Context, string) error { return nil }

// BenchmarkFullSyncGoSide measures the Go side of a full sync into an empty table: planning
// the transaction and writing it out as nft input, without nft. Its B/op is what the suite
// allocates for one sync.
func BenchmarkFullSyncGoSide(b *testing.B) {
	declareUnits()
	for _, pods := range policytest.BenchPods() {
		b.Run(fmt.Sprintf("pods=%d", pods), func(b *testing.B) {
			comp := policytest.MustCompile(b, generated.Get(b, pods).Cluster.Clone())
			b.ReportAllocs()
			var last Counts
			for b.Loop() {
				be, err := New(Config{NFT: discardNFT{NewFake()}})
				if err != nil {
					b.Fatal(err)
				}
				if _, err := be.Sync(comp.State()); err != nil {
					b.Fatal(err)
				}
				last = be.Last()
			}
			b.ReportMetric(float64(last.Table.Elements), "elements")
			b.ReportMetric(float64(last.Bytes), "payload_bytes/op")
			b.ReportMetric(float64(last.Plan.Microseconds())/1000, "plan_ms")
			b.ReportMetric(float64(last.Render.Microseconds())/1000, "render_ms")
		})
	}
}
