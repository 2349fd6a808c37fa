package datapath

import (
	"fmt"

	"netpolbench/policy"
)

// LookupMap names a map operation the programs count (enum lookup_map in
// bpf/headers/datapath.h).
type LookupMap uint8

const (
	LookupFlowCache LookupMap = iota
	LookupCT
	LookupEpoch
	LookupEndpoints // lxc: the local endpoint, a pod peer (hash layout), a named port's owner
	LookupIPCache
	LookupSummary
	LookupPolicy
	LookupNamedPorts
	UpdateCT // conntrack inserts tried
	DeleteCT // conntrack entries removed after a denial
	numLookupMaps
)

var lookupNames = [...]string{"flow_cache", "ct", "epoch", "lxc", "ipcache", "policy_summary", "policy", "named_ports",
	"ct-update", "ct-delete"}

func (m LookupMap) String() string {
	if int(m) < len(lookupNames) {
		return lookupNames[m]
	}
	return fmt.Sprintf("map-%d", uint8(m))
}

// LookupMaps lists every counted operation in counter order.
func LookupMaps() []LookupMap {
	out := make([]LookupMap, numLookupMaps)
	for i := range out {
		out[i] = LookupMap(i)
	}
	return out
}

// Lookups are the map operations of every packet that took one verdict path (a reason and a
// direction), summed over CPUs: exact counts the programs keep themselves. The metrics lookup
// that counts them (one a packet) is not among them.
type Lookups struct {
	Packets uint64
	Ops     [numLookupMaps]uint64
}

// PerPacket is the mean number of operations on m per packet of the path: an integer when
// every packet of the path made the same operations.
func (l Lookups) PerPacket(m LookupMap) float64 {
	if l.Packets == 0 {
		return 0
	}
	return float64(l.Ops[m]) / float64(l.Packets)
}

// Add returns l plus o, packet and operation counts alike.
func (l Lookups) Add(o Lookups) Lookups {
	l.Packets += o.Packets
	for i := range l.Ops {
		l.Ops[i] += o.Ops[i]
	}
	return l
}

// Since returns what the counters gained between before and l, a later reading of the same
// counters (they only grow).
func (l Lookups) Since(before Lookups) Lookups {
	l.Packets -= before.Packets
	for i := range l.Ops {
		l.Ops[i] -= before.Ops[i]
	}
	return l
}

// LookupsSince is the per-path difference between two readings of Datapath.Lookups, later
// minus earlier; paths that gained no packet are left out.
func LookupsSince(later, earlier map[MetricKey]Lookups) map[MetricKey]Lookups {
	out := map[MetricKey]Lookups{}
	for k, l := range later {
		if d := l.Since(earlier[k]); d.Packets > 0 {
			out[k] = d
		}
	}
	return out
}

// Total is the operations of all maps, summed.
func (l Lookups) Total() uint64 {
	var n uint64
	for _, v := range l.Ops {
		n += v
	}
	return n
}

// Lookups reads the per-path operation counters; paths no packet took are left out.
func (d *Datapath) Lookups() (map[MetricKey]Lookups, error) {
	out := map[MetricKey]Lookups{}
	for r := Reason(0); r < numReasons; r++ {
		for _, dir := range []policy.Direction{policy.Ingress, policy.Egress} {
			var per []bpfMetricsValue
			if err := d.objs.Metrics.Lookup(uint32(r)*2+uint32(dir), &per); err != nil {
				return nil, fmt.Errorf("read map metrics: %w", err)
			}
			var l Lookups
			for _, v := range per {
				l.Packets += v.Packets
				for i := range l.Ops {
					l.Ops[i] += v.Lookups[i]
				}
			}
			if l.Packets > 0 {
				out[MetricKey{r, dir}] = l
			}
		}
	}
	return out, nil
}
