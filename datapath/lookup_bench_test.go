package datapath

import (
	"fmt"
	"testing"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"

	"netpolbench/policy"
)

// BenchmarkPolicyLookup measures the alternative planGroup rejected: a Cilium ≥ 1.14-style
// LPM trie policy key (prefix length, rule set, peer, protocol, port) against our hash key,
// one lookup of an existing exact-port entry, at several entry counts. Each group holds three
// ports, as a typical rule does. The program is built in place: it stores the key on the stack
// and calls bpf_map_lookup_elem once.
func BenchmarkPolicyLookup(b *testing.B) {
	needBPF(b)
	for _, n := range []int{1000, 10000, 100000} {
		for _, kind := range []string{"hash", "lpm"} {
			b.Run(fmt.Sprintf("map=%s/entries=%d", kind, n), func(b *testing.B) {
				groups := n / 3
				spec := &ebpf.MapSpec{Type: ebpf.Hash, KeySize: 12, ValueSize: 1, MaxEntries: uint32(n)}
				if kind == "lpm" {
					spec = &ebpf.MapSpec{Type: ebpf.LPMTrie, KeySize: 16, ValueSize: 1, MaxEntries: uint32(n), Flags: 1 /* BPF_F_NO_PREALLOC */}
				}
				m, err := ebpf.NewMap(spec)
				if err != nil {
					b.Fatal(err)
				}
				b.Cleanup(func() { m.Close() })
				key := func(rs, peer uint32, port uint16) []byte {
					k := make([]byte, 0, 16)
					if kind == "lpm" {
						k = append(k, 96, 0, 0, 0) // every bit of the 12-byte key
					}
					k = append(k, byte(rs), byte(rs>>8), byte(rs>>16), byte(rs>>24), byte(peer), byte(peer>>8), byte(peer>>16), byte(peer>>24),
						byte(policy.ProtoTCP), 0, byte(port), byte(port>>8))
					return k
				}
				var probe []byte
				for g := range groups {
					for p := range 3 {
						k := key(uint32(g+1), uint32(256+g%5000), uint16(8080+p))
						if err := m.Put(k, uint8(1)); err != nil {
							b.Fatal(err)
						}
						if g == groups/2 && p == 1 {
							probe = k
						}
					}
				}
				insns := asm.Instructions{}
				off := int16(-16)
				for i := 0; i < len(probe); i += 4 {
					v := int32(uint32(probe[i]) | uint32(probe[i+1])<<8 | uint32(probe[i+2])<<16 | uint32(probe[i+3])<<24)
					insns = append(insns, asm.StoreImm(asm.R10, off+int16(i), int64(v), asm.Word))
				}
				insns = append(insns,
					asm.LoadMapPtr(asm.R1, m.FD()),
					asm.Mov.Reg(asm.R2, asm.R10),
					asm.Add.Imm(asm.R2, int32(off)),
					asm.FnMapLookupElem.Call(),
					asm.JEq.Imm(asm.R0, 0, "miss"),
					asm.Mov.Imm(asm.R0, 0),
					asm.Return(),
					asm.Mov.Imm(asm.R0, 2).WithSymbol("miss"),
					asm.Return(),
				)
				prog, err := ebpf.NewProgram(&ebpf.ProgramSpec{Type: ebpf.SchedCLS, Instructions: insns, License: "GPL"})
				if err != nil {
					b.Fatal(err)
				}
				b.Cleanup(func() { prog.Close() })
				pkt, _ := Packet(policy.Flow{Src: scaleIP(0), Dst: scaleIP(1), Proto: policy.ProtoTCP, Port: 8080}, ProbeSrcPort)
				benchProg(b, prog, [][]byte{pkt}, 0)
			})
		}
	}
}
