package bench

import (
	"context"
	"fmt"
	"strings"
	"testing"

	"netpolbench/bench/stamp"
	"netpolbench/datapath"
)

// BenchmarkPackets runs the per-packet method once per iteration (run it with -benchtime=1x):
// a fresh testbed, the backend synced to the default workload at that scale, three floor and
// three backend rounds of 4,000 new-flow packets (dense: back to back; sparse: 1,000 a second)
// and 1,000 established segments each. It reports, per path, the floor's median and drift
// and, per point, the p50 and p99 above the floor, in ns; the achieved new-flow rate; and for
// eBPF the map operations per packet of each verdict path, from the datapath's own counters.
func BenchmarkPackets(b *testing.B) {
	needPacketKernel(b)
	for _, backend := range []string{"ebpf", "ebpf-cilium", "iptables", "ipset"} {
		for _, pods := range []int{100, 1000, 10000} {
			for _, rate := range []string{"dense", "sparse"} {
				b.Run(fmt.Sprintf("backend=%s/pods=%d/rate=%s", backend, pods, rate), func(b *testing.B) {
					benchPackets(b, backend, pods, rate)
				})
			}
		}
	}
}

func benchPackets(b *testing.B, backend string, pods int, rate string) {
	if backend == "iptables" && pods > 3000 {
		b.Skip("per-IP iptables rules grow as pods²: about 9.6M rules at 10,000 pods")
	}
	comp, fl := mustPacketWorld(b, "default", pods, 512)
	plan := PacketPlan{Flows: fl, Rounds: 3, New: 4000, Established: 1000}
	if rate == "sparse" {
		plan.Rate, plan.New, plan.Established = 1000, 2000, 0
	}
	var res *PacketResult
	var lk packetLookups
	for b.Loop() {
		bed := mustFreshBed(b)
		var sw PacketSwitch
		sw, lk = mustEnforce(b, bed, backend, comp.State())
		var err error
		res, err = MeasurePackets(context.Background(), bed, sw, plan)
		if err != nil {
			b.Fatal(err)
		}
	}
	floors := res.Floors()
	for _, p := range stamp.Paths() {
		if f, ok := floors[p]; ok {
			b.ReportMetric(f.Median, fmt.Sprintf("floor-%s-%s-ns", p.Span(), p))
			b.ReportMetric(f.Drift(), fmt.Sprintf("drift-%s-%s-ns", p.Span(), p))
		}
	}
	pts, err := res.AboveFloor()
	if err != nil {
		b.Fatal(err)
	}
	for _, p := range pts {
		if p.Above.TotalCount() < 100 {
			continue
		}
		name := strings.NewReplacer("span=", "", "path=", "", "state=", "", "/", "-").Replace(p.PacketPoint.String())
		b.ReportMetric(float64(p.Above.ValueAtQuantile(50)), name+"-p50-ns")
		b.ReportMetric(float64(p.Above.ValueAtQuantile(99)), name+"-p99-ns")
		b.ReportMetric(float64(p.Above.TotalCount()), name+"-samples")
	}
	var rates []float64
	for _, rd := range res.Rounds {
		rates = append(rates, rd.New.Rate())
	}
	b.ReportMetric(median(rates), "new-packets/s")
	b.ReportMetric(float64(res.Check.Samples)/res.Elapsed.Seconds(), "samples/s")
	if lk != nil {
		ls, err := lk.Lookups()
		if err != nil {
			b.Fatal(err)
		}
		for k, l := range ls {
			if k.Reason != datapath.ReasonAllowNew && k.Reason != datapath.ReasonDropPolicy && k.Reason != datapath.ReasonAllowEstablished {
				continue
			}
			var parts []string
			for _, m := range datapath.LookupMaps() {
				if v := l.PerPacket(m); v != 0 {
					parts = append(parts, fmt.Sprintf("%s=%.3g", m, v))
				}
			}
			b.Logf("lookups %s %s (%d packets): %s", k.Reason, k.Dir, l.Packets, strings.Join(parts, " "))
			b.ReportMetric(float64(l.Total())/float64(l.Packets), fmt.Sprintf("lookups-%s-%s/op", strings.ReplaceAll(k.Reason.String(), " ", "-"), k.Dir))
		}
	}
}
