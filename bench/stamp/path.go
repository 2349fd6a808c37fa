package stamp

import "fmt"

// Span is a stretch of the packet path the stamps time.
type Span uint8

const (
	// SpanTCX is the pod veths' TCX chains: a sample adds the source veth's ingress part and the
	// destination veth's egress part, where the eBPF datapath enforces.
	SpanTCX Span = 1
	// SpanNetfilterFilter is FORWARD priority -2 to +2: the filter table alone.
	SpanNetfilterFilter Span = 2
	// SpanNetfilterPath is PREROUTING before defrag and conntrack to the head of the outgoing
	// veth's TCX egress chain: everything netfilter enforcement needs, conntrack included.
	SpanNetfilterPath Span = 3
)

func (s Span) String() string {
	switch s {
	case SpanTCX:
		return "tcx"
	case SpanNetfilterFilter:
		return "nf-filter"
	case SpanNetfilterPath:
		return "nf-path"
	}
	return fmt.Sprintf("span-%d", uint8(s))
}

// Path is the way one sample went through its span: which enforcement points it crossed and
// where it ended. Samples of different paths are timed over different stamp pairs and end
// differently (an after-stamp or kfree_skb), so each path has a floor of its own.
type Path uint8

const (
	// PathTCXBoth passed the source veth's ingress and the destination veth's egress: two
	// stamp pairs.
	PathTCXBoth Path = iota + 1
	// PathTCXIngressOnly passed the source veth's ingress on its way out of the pods: one pair.
	PathTCXIngressOnly
	// PathTCXEgressOnly came from outside the pods and passed the destination veth's egress.
	PathTCXEgressOnly
	// PathTCXDropIngress was dropped at the source veth's ingress: one pair, closed on
	// kfree_skb.
	PathTCXDropIngress
	// PathTCXDropEgress passed the source veth's ingress and was dropped at the destination
	// veth's egress: two pairs, the second closed on kfree_skb.
	PathTCXDropEgress
	// PathTCXDropEgressOnly came from outside the pods and was dropped at the destination
	// veth's egress.
	PathTCXDropEgressOnly
	// PathFilterPass and PathFilterDrop crossed the nf-filter span.
	PathFilterPass
	PathFilterDrop
	// PathNetfilterPass and PathNetfilterDrop crossed the nf-path span.
	PathNetfilterPass
	PathNetfilterDrop
	numPaths
)

// Paths lists every path, in a fixed order.
func Paths() []Path {
	out := make([]Path, 0, numPaths-1)
	for p := PathTCXBoth; p < numPaths; p++ {
		out = append(out, p)
	}
	return out
}

var pathNames = [...]string{
	PathTCXBoth:           "both",
	PathTCXIngressOnly:    "ingress-only",
	PathTCXEgressOnly:     "egress-only",
	PathTCXDropIngress:    "drop-ingress",
	PathTCXDropEgress:     "drop-egress",
	PathTCXDropEgressOnly: "drop-egress-only",
	PathFilterPass:        "pass",
	PathFilterDrop:        "drop",
	PathNetfilterPass:     "pass",
	PathNetfilterDrop:     "drop",
}

// String names the path within its span, e.g. "drop-ingress"; Span().String()+"/"+String()
// is unique.
func (p Path) String() string {
	if p > 0 && p < numPaths {
		return pathNames[p]
	}
	return fmt.Sprintf("path-%d", uint8(p))
}

// Span is the span the path belongs to.
func (p Path) Span() Span {
	switch p {
	case PathFilterPass, PathFilterDrop:
		return SpanNetfilterFilter
	case PathNetfilterPass, PathNetfilterDrop:
		return SpanNetfilterPath
	}
	return SpanTCX
}

// Dropped reports whether the path ends in a drop.
func (p Path) Dropped() bool {
	switch p {
	case PathTCXDropIngress, PathTCXDropEgress, PathTCXDropEgressOnly, PathFilterDrop, PathNetfilterDrop:
		return true
	}
	return false
}

// Path classifies the sample by the stamp that closed it, whether it carried a tcx-ingress
// part and whether it was dropped. It returns 0 for a hook it does not know.
func (s Sample) Path() Path {
	switch s.Hook {
	case HookNetfilterForward:
		if s.Dropped {
			return PathFilterDrop
		}
		return PathFilterPass
	case HookNetfilterPath:
		if s.Dropped {
			return PathNetfilterDrop
		}
		return PathNetfilterPass
	case HookTCXIngress:
		if s.Dropped {
			return PathTCXDropIngress
		}
		return PathTCXIngressOnly
	case HookTCXEgress:
		// The carried ingress part is at least 1 ns whenever there was one.
		switch {
		case s.Dropped && s.Carry > 0:
			return PathTCXDropEgress
		case s.Dropped:
			return PathTCXDropEgressOnly
		case s.Carry > 0:
			return PathTCXBoth
		}
		return PathTCXEgressOnly
	}
	return 0
}
