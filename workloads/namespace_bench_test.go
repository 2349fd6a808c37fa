package workloads

import (
	"strconv"
	"testing"
	"time"

	"netpolbench/policy"
)

// BenchmarkNamespaceRelabel times relabelling the cluster's biggest namespace (its labels
// swapped with another namespace's, back and forth): every endpoint of the namespace moves to
// a new identity, and the peers that select namespaces by label gain or lose its pods. This
// is the agent's incremental path; without NamespaceRelabel it would recompile the cluster
// and resync the backend (full-compile-ns/op, timed in the same run).
func BenchmarkNamespaceRelabel(b *testing.B) {
	for _, n := range benchSizes[:2] {
		b.Run("pods="+strconv.Itoa(n), func(b *testing.B) {
			g := mustGenerate(b, benchSpec(b, n))
			perNS := map[string]int{}
			for _, p := range g.Pods {
				perNS[p.Namespace]++
			}
			big, other := g.Namespaces[0], g.Namespaces[1]
			for _, ns := range g.Namespaces {
				if perNS[ns.Name] > perNS[big.Name] {
					big = ns
				}
			}
			if other == big {
				other = g.Namespaces[0]
			}
			start := time.Now()
			comp, err := policy.Compile(mustGenerate(b, benchSpec(b, n)).Cluster, policy.Options{})
			if err != nil {
				b.Fatal(err)
			}
			compile := time.Since(start)
			labels := []map[string]string{other.Labels, big.Labels}
			changes, moved := 0, 0
			i := 0
			for b.Loop() {
				d, err := comp.Apply(policy.Event{Kind: policy.NamespaceRelabel, Namespace: big.Name, Labels: labels[i%2]})
				if err != nil {
					b.Fatal(err)
				}
				i++
				moved += len(d.EndpointsChanged)
				changes += len(d.EntriesAdded) + len(d.EntriesRemoved) + len(d.MembersAdded) + len(d.MembersRemoved) + len(d.EndpointsChanged)
			}
			b.ReportMetric(float64(perNS[big.Name]), "pods-in-ns")
			b.ReportMetric(float64(moved)/float64(b.N), "endpoints/op")
			b.ReportMetric(float64(changes)/float64(b.N), "changes/op")
			b.ReportMetric(float64(compile.Nanoseconds()), "full-compile-ns/op")
		})
	}
}
