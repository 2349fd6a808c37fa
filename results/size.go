package results

import (
	"fmt"
	"sort"
)

// Size is the state one backend installed at one scale. Every figure is exact (deterministic for a
// given workload and seed).
type Size struct {
	Backend string `json:"backend"`
	Pods    int    `json:"pods"`
	// Identities is the number of distinct security identities (pod label sets + CIDR identities).
	Identities int `json:"identities,omitempty"`
	// Maps are the eBPF maps, one row per map.
	Maps []MapSize `json:"maps,omitempty"`
	// Programs are the loaded eBPF programs.
	Programs []ProgramSize `json:"programs,omitempty"`
	// Iptables is set for iptables-family backends.
	Iptables *IptablesSize `json:"iptables,omitempty"`
	// Nftables is set for the nftables backend.
	Nftables *NftablesSize `json:"nftables,omitempty"`
	// KernelBytes is the kernel memory the backend's state takes, in bytes: what its kernel
	// objects charge to a memory cgroup the suite creates for the backend, read after the full
	// sync (see KernelNote for what is and is not charged). Not exact: it depends on the kernel
	// and its allocators, and the gate leaves it out. null where it could not be read (no
	// memory cgroup here, or a backend with no kernel state); never 0 for "unknown". Runs
	// written before it existed load with null.
	KernelBytes *uint64 `json:"kernel_bytes"`
	// KernelNote says what KernelBytes counts and leaves out, or why it is null.
	KernelNote string `json:"kernel_note,omitempty"`
	// PeakRSSBytes is the suite's peak resident memory when this scale finished, in bytes (not exact
	// across machines; excluded from the gate).
	PeakRSSBytes uint64 `json:"peak_rss_bytes,omitempty"`
}

// MapSize describes one eBPF map.
type MapSize struct {
	Name string `json:"name"`
	// Type is the map type, e.g. "Hash", "LPMTrie".
	Type string `json:"type,omitempty"`
	// Entries is the number of entries in use.
	Entries uint64 `json:"entries"`
	// MaxEntries is the map's capacity.
	MaxEntries uint64 `json:"max_entries,omitempty"`
	// KeyBytes and ValueBytes are the sizes of one key and one value, in bytes.
	KeyBytes   uint32 `json:"key_bytes"`
	ValueBytes uint32 `json:"value_bytes"`
	// MemlockBytes is the kernel's memlock accounting for the map (fdinfo "memlock"), in bytes.
	MemlockBytes uint64 `json:"memlock_bytes,omitempty"`
}

// ProgramSize describes one loaded eBPF program.
type ProgramSize struct {
	Name string `json:"name"`
	// Insns is the number of verified (xlated) instructions.
	Insns uint64 `json:"insns"`
	// JitedBytes is the size of the JIT image, in bytes.
	JitedBytes uint64 `json:"jited_bytes,omitempty"`
	// VerifierInsns is the verifier's processed-instruction count (complexity), when known.
	VerifierInsns uint64 `json:"verifier_insns,omitempty"`
}

// IptablesSize describes iptables/ipset state.
type IptablesSize struct {
	// Rules is the number of rules in the tables the backend owns.
	Rules uint64 `json:"rules"`
	// Chains is the number of chains the backend created.
	Chains uint64 `json:"chains"`
	// RestoreBytes is the size of the full iptables-restore input, in bytes.
	RestoreBytes uint64 `json:"restore_bytes"`
	// RestoreLines is the number of lines of that input.
	RestoreLines uint64 `json:"restore_lines,omitempty"`
	// IpsetSets and IpsetMembers count ipsets and their members (0 without ipset).
	IpsetSets    uint64 `json:"ipset_sets,omitempty"`
	IpsetMembers uint64 `json:"ipset_members,omitempty"`
}

// NftablesSize describes an nftables table: what a full sync wrote into it.
type NftablesSize struct {
	// Rules counts every rule, of the base chain too; Chains every chain.
	Rules  uint64 `json:"rules"`
	Chains uint64 `json:"chains"`
	// Sets counts named sets and verdict maps; Elements the elements of all of them.
	Sets     uint64 `json:"sets"`
	Elements uint64 `json:"elements"`
	// The elements by kind: verdict map elements (one per isolated endpoint and direction),
	// the member addresses of peer pod sets, ipBlock ranges, named-port targets, and the one
	// self element per pod.
	DispatchElements uint64 `json:"dispatch_elements,omitempty"`
	PodElements      uint64 `json:"pod_elements,omitempty"`
	NetElements      uint64 `json:"net_elements,omitempty"`
	NamedElements    uint64 `json:"named_elements,omitempty"`
	SelfElements     uint64 `json:"self_elements,omitempty"`
	// MaxChainRules is the longest rule-set chain, which bounds the rules the first packet of
	// a flow passes (with the base chain's few).
	MaxChainRules uint64 `json:"max_chain_rules,omitempty"`
	// Commands and Bytes are the nft commands (lines) and bytes of the full sync's input; 0
	// for a plan, which writes none.
	Commands uint64 `json:"commands,omitempty"`
	Bytes    uint64 `json:"bytes,omitempty"`
}

// TotalEntries sums map entries over all maps.
func (s *Size) TotalEntries() uint64 {
	var n uint64
	for _, m := range s.Maps {
		n += m.Entries
	}
	return n
}

// TotalMapBytes sums entries × (key + value) over all maps, in bytes.
func (s *Size) TotalMapBytes() uint64 {
	var n uint64
	for _, m := range s.Maps {
		n += m.Entries * uint64(m.KeyBytes+m.ValueBytes)
	}
	return n
}

func sizeBenchmarks(sizes []Size) []Benchmark {
	var out []Benchmark
	exact := func(unit string, v uint64) Metric {
		return Metric{Unit: unit, Exact: true, Samples: []float64{float64(v)}}
	}
	for _, s := range sizes {
		base := fmt.Sprintf("BenchmarkSize/backend=%s/pods=%d", s.Backend, s.Pods)
		if len(s.Maps) > 0 {
			out = append(out, Benchmark{Name: base, Iters: 1, Metrics: []Metric{
				exact("entries", s.TotalEntries()), exact("map-bytes", s.TotalMapBytes()),
			}})
			maps := append([]MapSize(nil), s.Maps...)
			sort.Slice(maps, func(i, j int) bool { return maps[i].Name < maps[j].Name })
			for _, m := range maps {
				ms := []Metric{exact("entries", m.Entries), exact("map-bytes", m.Entries*uint64(m.KeyBytes+m.ValueBytes))}
				if m.MemlockBytes > 0 {
					ms = append(ms, exact("memlock-bytes", m.MemlockBytes))
				}
				out = append(out, Benchmark{Name: base + "/map=" + m.Name, Iters: 1, Metrics: ms})
			}
		}
		for _, p := range s.Programs {
			out = append(out, Benchmark{Name: base + "/prog=" + p.Name, Iters: 1, Metrics: []Metric{exact("insns", p.Insns)}})
		}
		if ipt := s.Iptables; ipt != nil {
			ms := []Metric{exact("rules", ipt.Rules), exact("chains", ipt.Chains), exact("restore-bytes", ipt.RestoreBytes)}
			if ipt.IpsetMembers > 0 || ipt.IpsetSets > 0 {
				ms = append(ms, exact("ipset-members", ipt.IpsetMembers))
			}
			out = append(out, Benchmark{Name: base, Iters: 1, Metrics: ms})
		}
		if nft := s.Nftables; nft != nil {
			ms := []Metric{exact("rules", nft.Rules), exact("chains", nft.Chains), exact("sets", nft.Sets), exact("set-elements", nft.Elements)}
			if nft.Bytes > 0 {
				ms = append(ms, exact("nft-bytes", nft.Bytes))
			}
			out = append(out, Benchmark{Name: base, Iters: 1, Metrics: ms})
		}
	}
	// A backend with both maps and iptables state would give two benchmarks of the same name; merge.
	merged := []Benchmark{}
	idx := map[string]int{}
	for _, b := range out {
		if i, ok := idx[b.Name]; ok {
			merged[i].Metrics = append(merged[i].Metrics, b.Metrics...)
			continue
		}
		idx[b.Name] = len(merged)
		merged = append(merged, b)
	}
	return merged
}
