package stamp

import (
	"cmp"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strings"

	"netpolbench/policy"
)

// ExpectedFlow is one flow of a frozen flow list with the reference's verdict on it.
type ExpectedFlow struct {
	policy.Flow
	Verdict policy.Verdict
	// DeniedAt is where a denied flow is denied first: policy.Egress when the source pod's
	// egress policy denies it (the source's enforcement point runs first), else policy.Ingress.
	// Ignored for allowed flows.
	DeniedAt policy.Direction
}

func (f ExpectedFlow) String() string {
	if f.Verdict == policy.Deny {
		return fmt.Sprintf("%s (deny at %s)", f.Flow, f.DeniedAt)
	}
	return fmt.Sprintf("%s (allow)", f.Flow)
}

// FlowList is a frozen list of flows and their expected verdicts: every stamped packet is
// mapped back to its flow and checked against it.
type FlowList struct {
	flows []ExpectedFlow
	index map[flowKey]int
}

type flowKey struct {
	src, dst netip.Addr
	proto    policy.Protocol
	port     uint16
}

// NewFlowList freezes flows. A flow may appear once; addresses must be IPv4 and every flow
// must have a port (packets are matched by their destination port).
func NewFlowList(flows []ExpectedFlow) (*FlowList, error) {
	l := &FlowList{flows: slices.Clone(flows), index: make(map[flowKey]int, len(flows))}
	for i, f := range l.flows {
		f.Src, f.Dst = f.Src.Unmap(), f.Dst.Unmap()
		l.flows[i] = f
		if !f.Src.Is4() || !f.Dst.Is4() {
			return nil, fmt.Errorf("freeze flows: flow %d (%s) is not IPv4", i, f.Flow)
		}
		if f.Port == 0 {
			return nil, fmt.Errorf("freeze flows: flow %d (%s) has no port", i, f.Flow)
		}
		k := flowKey{f.Src, f.Dst, f.Proto, f.Port}
		if j, dup := l.index[k]; dup {
			return nil, fmt.Errorf("freeze flows: flow %d (%s) repeats flow %d", i, f.Flow, j)
		}
		l.index[k] = i
	}
	return l, nil
}

// Flows returns the list; callers must not modify it.
func (l *FlowList) Flows() []ExpectedFlow { return l.flows }

// Len is the number of flows.
func (l *FlowList) Len() int { return len(l.flows) }

// Digest is a stable hash of the list: SHA-256, hex, over the flows in canonical order
// (source, destination, protocol, port) with their verdicts and deny points, so two lists of
// the same flows and expectations have the same digest whatever their order.
func (l *FlowList) Digest() string {
	fs := slices.Clone(l.flows)
	slices.SortFunc(fs, func(a, b ExpectedFlow) int {
		return cmp.Or(a.Src.Compare(b.Src), a.Dst.Compare(b.Dst), cmp.Compare(a.Proto, b.Proto), cmp.Compare(a.Port, b.Port))
	})
	h := sha256.New()
	var b [14]byte
	for _, f := range fs {
		s, d := f.Src.As4(), f.Dst.As4()
		copy(b[0:], s[:])
		copy(b[4:], d[:])
		b[8] = byte(f.Proto)
		binary.BigEndian.PutUint16(b[9:], f.Port)
		b[11] = byte(f.Verdict)
		b[12] = 0
		if f.Verdict == policy.Deny {
			b[12] = byte(f.DeniedAt) + 1
		}
		b[13] = '\n'
		h.Write(b[:])
	}
	return hex.EncodeToString(h.Sum(nil))
}

// State is a sample's place in its flow.
type State uint8

const (
	// StateNew is a flow's first packet: a TCP SYN without ACK, or a UDP datagram (the
	// traffic generator sends one per 5-tuple).
	StateNew State = iota + 1
	// StateEstablished is a later packet of the flow from its source: TCP without SYN.
	StateEstablished
	// StateReply is a packet from the flow's destination back to its source.
	StateReply
)

func (s State) String() string {
	switch s {
	case StateNew:
		return "new"
	case StateEstablished:
		return "established"
	case StateReply:
		return "reply"
	}
	return fmt.Sprintf("state-%d", uint8(s))
}

// Match is a sample mapped to its flow.
type Match struct {
	// Flow indexes FlowList.Flows.
	Flow  int
	State State
}

// tcpSYN and tcpACK are TCP flag bits.
const (
	tcpSYN = 0x02
	tcpACK = 0x10
)

// Match maps a sample back to its flow: by its 5-tuple's source, destination, protocol and
// destination port (the flow's own packets) or the same read backwards (its replies). When both
// readings name a flow, a TCP SYN without ACK and a UDP datagram are the flow's own packets
// and any other TCP packet a reply.
func (l *FlowList) Match(s Sample) (Match, bool) {
	p := policy.Protocol(s.Proto)
	fwd, okF := l.index[flowKey{s.Src, s.Dst, p, s.DstPort}]
	rev, okR := l.index[flowKey{s.Dst, s.Src, p, s.SrcPort}]
	opening := p != policy.ProtoTCP || s.TCPFlags&(tcpSYN|tcpACK) == tcpSYN
	switch {
	case okF && (!okR || opening):
		st := StateEstablished
		if opening {
			st = StateNew
		}
		return Match{Flow: fwd, State: st}, true
	case okR:
		return Match{Flow: rev, State: StateReply}, true
	}
	return Match{}, false
}

// Check tallies samples against a flow list. The zero value is ready for Add.
type Check struct {
	// Samples counts every sample added.
	Samples int
	// Unmatched counts samples whose 5-tuple names no flow of the list either way.
	Unmatched int
	// Mismatched counts samples whose fate disagrees with the expected verdict: a flow's own
	// packet dropped although allowed or passed although denied, dropped at the other
	// enforcement point than the one that denies it, an established packet or a reply of a
	// denied flow, or a dropped reply.
	Mismatched int
	// Examples describes the first few unmatched and mismatched samples.
	Examples []string
}

const maxExamples = 8

// Add checks one sample and returns its match (ok false when it matched no flow).
func (c *Check) Add(l *FlowList, s Sample) (Match, bool) {
	c.Samples++
	m, ok := l.Match(s)
	if !ok {
		c.Unmatched++
		c.example("no flow: %s", describe(s))
		return m, false
	}
	if why := l.disagree(m, s); why != "" {
		c.Mismatched++
		c.example("%s: %s (flow %s)", why, describe(s), l.flows[m.Flow])
	}
	return m, true
}

func (c *Check) example(format string, a ...any) {
	if len(c.Examples) < maxExamples {
		c.Examples = append(c.Examples, fmt.Sprintf(format, a...))
	}
}

// ErrVerdictMismatch is returned (wrapped) by Check.Err when a stamped packet's fate disagrees
// with the reference, or a sample belongs to no flow of the list.
var ErrVerdictMismatch = errors.New("stamped packets disagree with the reference")

// Err is nil when every sample matched its flow and agreed with its verdict.
func (c *Check) Err() error {
	if c.Unmatched == 0 && c.Mismatched == 0 {
		return nil
	}
	return fmt.Errorf("%w: %d of %d samples against the verdict, %d of no flow: %s", ErrVerdictMismatch,
		c.Mismatched, c.Samples, c.Unmatched, strings.Join(c.Examples, "; "))
}

// disagree says why a matched sample contradicts its flow's expected verdict ("" when not).
func (l *FlowList) disagree(m Match, s Sample) string {
	f := l.flows[m.Flow]
	path := s.Path()
	switch {
	case m.State == StateReply && s.Dropped:
		return "reply dropped"
	case m.State != StateNew && f.Verdict == policy.Deny:
		return fmt.Sprintf("%s packet of a denied flow", m.State)
	case m.State != StateNew:
		return ""
	case s.Dropped != (f.Verdict == policy.Deny):
		if s.Dropped {
			return "allowed flow dropped"
		}
		return "denied flow passed"
	case path == PathTCXDropIngress && f.DeniedAt != policy.Egress:
		return "dropped at the source's point, denied at the destination's"
	case (path == PathTCXDropEgress || path == PathTCXDropEgressOnly) && f.DeniedAt != policy.Ingress:
		return "dropped at the destination's point, denied at the source's"
	}
	return ""
}

func describe(s Sample) string {
	fate := "passed"
	if s.Dropped {
		fate = "dropped"
	}
	return fmt.Sprintf("%s:%d -> %s:%d proto %d flags %#x %s at %s", s.Src, s.SrcPort, s.Dst, s.DstPort, s.Proto, s.TCPFlags, fate, s.Hook)
}
