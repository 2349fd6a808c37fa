package datapath

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"sort"
	"strings"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/ringbuf"

	"netpolbench/policy"
)

// MapFacts is what the kernel reports about one map.
type MapFacts struct {
	Name       string
	Type       string
	Entries    int // entries the datapath holds (-1 where it does not track them: ct, metrics)
	MaxEntries uint32
	KeyBytes   uint32
	ValueBytes uint32
	// Memlock is the kernel's memlock charge for the map in bytes (fdinfo; 0 if unknown).
	Memlock uint64
}

// ProgramFacts is what the kernel reports about one loaded program.
type ProgramFacts struct {
	Name string
	// Xlated and JITed are the program's size in bytes after the verifier's rewrites and
	// after JIT compilation.
	Xlated int
	JITed  uint32
	// VerifiedInsns is the verifier's "processed N insns" count (bpf_prog_info.verified_insns,
	// Linux 5.16).
	VerifiedInsns uint32
}

// Facts describes one load.
type Facts struct {
	Maps     []MapFacts
	Programs []ProgramFacts
}

// Facts reads the sizes of every map and program from the kernel.
func (d *Datapath) Facts() (Facts, error) {
	var f Facts
	t := d.tabs
	entries := map[string]int{"lxc": len(t.lxc.cur), "ipcache": len(t.ipcache.cur),
		"policy_summary": len(t.summary.cur), "policy": len(t.policy.cur), "named_ports": len(t.named.cur), "epoch": 1}
	maps := map[string]*ebpf.Map{"lxc": d.objs.Lxc, "ipcache": d.objs.Ipcache, "policy_summary": d.objs.PolicySummary,
		"policy": d.objs.Policy, "named_ports": d.objs.NamedPorts, "ct": d.objs.Ct, "epoch": d.objs.Epoch,
		"metrics": d.objs.Metrics, "events": d.objs.Events, "flow_cache": d.objs.FlowCache}
	for name, m := range maps {
		info, err := m.Info()
		if err != nil {
			return f, fmt.Errorf("read info of map %s: %w", name, err)
		}
		n, ok := entries[name]
		if !ok {
			n = -1
		}
		mem, _ := info.Memlock()
		f.Maps = append(f.Maps, MapFacts{Name: name, Type: info.Type.String(), Entries: n, MaxEntries: info.MaxEntries,
			KeyBytes: info.KeySize, ValueBytes: info.ValueSize, Memlock: mem})
	}
	sort.Slice(f.Maps, func(i, j int) bool { return f.Maps[i].Name < f.Maps[j].Name })
	for name, p := range map[string]*ebpf.Program{"to_container": d.objs.ToContainer, "from_container": d.objs.FromContainer} {
		info, err := p.Info()
		if err != nil {
			return f, fmt.Errorf("read info of program %s: %w", name, err)
		}
		pf := ProgramFacts{Name: name}
		if pf.Xlated, err = info.TranslatedSize(); err != nil {
			return f, fmt.Errorf("read xlated size of %s: %w", name, err)
		}
		if pf.JITed, err = info.JitedSize(); err != nil {
			return f, fmt.Errorf("read jited size of %s: %w", name, err)
		}
		pf.VerifiedInsns, _ = info.VerifiedInstructions()
		f.Programs = append(f.Programs, pf)
	}
	sort.Slice(f.Programs, func(i, j int) bool { return f.Programs[i].Name < f.Programs[j].Name })
	return f, nil
}

// Reason is why a program allowed or dropped a packet.
type Reason uint8

const (
	ReasonAllowNew Reason = iota
	ReasonAllowEstablished
	ReasonAllowReply
	ReasonAllowSelf
	ReasonAllowNotEnforced
	ReasonDropPolicy
	ReasonDropMalformed
	numReasons
)

var reasonNames = [...]string{"allow-new", "allow-established", "allow-reply", "allow-self", "allow-not-enforced",
	"Policy denied", "Invalid packet"}

// Reasons lists every reason in counter order.
func Reasons() []Reason {
	out := make([]Reason, numReasons)
	for i := range out {
		out[i] = Reason(i)
	}
	return out
}

func (r Reason) String() string {
	if int(r) < len(reasonNames) {
		return reasonNames[r]
	}
	return fmt.Sprintf("reason-%d", uint8(r))
}

// MetricKey indexes Metrics.
type MetricKey struct {
	Reason Reason
	Dir    policy.Direction
}

// Counter is packets and bytes.
type Counter struct{ Packets, Bytes uint64 }

// Metrics sums the per-CPU counters by reason and direction; zero counters are left out.
func (d *Datapath) Metrics() (map[MetricKey]Counter, error) {
	out := map[MetricKey]Counter{}
	for r := Reason(0); r < numReasons; r++ {
		for _, dir := range []policy.Direction{policy.Ingress, policy.Egress} {
			var per []bpfMetricsValue
			if err := d.objs.Metrics.Lookup(uint32(r)*2+uint32(dir), &per); err != nil {
				return nil, fmt.Errorf("read map metrics: %w", err)
			}
			var c Counter
			for _, v := range per {
				c.Packets += v.Packets
				c.Bytes += v.Bytes
			}
			if c.Packets > 0 {
				out[MetricKey{r, dir}] = c
			}
		}
	}
	return out, nil
}

// DropEvent is a decoded drop notification.
type DropEvent struct {
	Reason      Reason
	Dir         policy.Direction
	Proto       policy.Protocol
	TCPFlags    uint8
	Endpoint    uint32
	SrcIdentity policy.Identity
	DstIdentity policy.Identity
	Src, Dst    netip.Addr
	SrcPort     uint16
	DstPort     uint16
	Len         uint32
}

// String prints the event as `cilium monitor -t drop` does, e.g.
// "drop (Policy denied) to endpoint 412, identity 1208->1207: 198.18.0.44:40000 -> 198.18.0.42:8080 tcp SYN".
func (e DropEvent) String() string {
	way := "to"
	if e.Dir == policy.Egress {
		way = "from"
	}
	s := fmt.Sprintf("drop (%s) %s endpoint %d, identity %s->%s: ", e.Reason, way, e.Endpoint, e.SrcIdentity, e.DstIdentity)
	switch e.Proto {
	case policy.ProtoTCP, policy.ProtoUDP, policy.ProtoSCTP:
		s += fmt.Sprintf("%s:%d -> %s:%d %s", e.Src, e.SrcPort, e.Dst, e.DstPort, strings.ToLower(e.Proto.String()))
	default:
		s += fmt.Sprintf("%s -> %s %s", e.Src, e.Dst, strings.ToLower(e.Proto.String()))
	}
	if e.Proto == policy.ProtoTCP {
		s += tcpFlags(e.TCPFlags)
	}
	return s
}

func tcpFlags(f uint8) string {
	var out []string
	for i, n := range []string{"FIN", "SYN", "RST", "PSH", "ACK", "URG"} {
		if f&(1<<i) != 0 {
			out = append(out, n)
		}
	}
	if len(out) == 0 {
		return ""
	}
	return " " + strings.Join(out, " ")
}

func ntohs(v uint16) uint16 { return v<<8 | v>>8 }

func decodeDrop(raw []byte) (DropEvent, error) {
	var e bpfDropEvent
	if _, err := binary.Decode(raw, binary.NativeEndian, &e); err != nil {
		return DropEvent{}, fmt.Errorf("decode drop event of %d bytes: %w", len(raw), err)
	}
	return DropEvent{
		Reason: Reason(e.Reason), Dir: policy.Direction(e.Dir), Proto: policy.Protocol(e.Proto), TCPFlags: e.TcpFlags,
		Endpoint: e.EpId, SrcIdentity: policy.Identity(e.SrcIdentity), DstIdentity: policy.Identity(e.DstIdentity),
		Src: ipOfKey(e.Saddr), Dst: ipOfKey(e.Daddr), SrcPort: ntohs(e.Sport), DstPort: ntohs(e.Dport), Len: e.Len,
	}, nil
}

// DrainDrops returns the drop events waiting in the ring buffer, waiting at most wait for the
// first one.
func (d *Datapath) DrainDrops(wait time.Duration) ([]DropEvent, error) {
	if d.events == nil {
		r, err := ringbuf.NewReader(d.objs.Events)
		if err != nil {
			return nil, fmt.Errorf("open ring buffer events: %w", err)
		}
		d.events = r
	}
	var out []DropEvent
	deadline := time.Now().Add(wait)
	for {
		d.events.SetDeadline(deadline)
		rec, err := d.events.Read()
		if errors.Is(err, os.ErrDeadlineExceeded) {
			return out, nil
		}
		if err != nil {
			return out, fmt.Errorf("read ring buffer events: %w", err)
		}
		e, err := decodeDrop(rec.RawSample)
		if err != nil {
			return out, err
		}
		out = append(out, e)
		deadline = time.Now() // drain what is there, do not wait again
	}
}

// stateCounts are the entries a state needs per map.
type stateCounts struct {
	endpoints, ipcache, summaries, policy, named int
}

func countState(s *policy.State, layout Layout, inline int) stateCounts {
	var c stateCounts
	eps := s.Endpoints()
	c.endpoints = len(eps)
	c.ipcache = len(s.CIDRs())
	if layout == LayoutCilium {
		c.ipcache += len(eps)
	}
	for _, ep := range eps {
		for _, cp := range ep.Pod.Ports {
			if cp.Name != "" {
				c.named++
			}
		}
	}
	names := newNameTable()
	for _, rs := range s.RuleSets() {
		for _, es := range groupEntries(rs) {
			c.summaries++
			if _, keys, err := planGroup(es, inline, names.id); err == nil {
				c.policy += len(keys)
			}
		}
	}
	return c
}
