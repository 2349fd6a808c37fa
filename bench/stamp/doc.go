// Package stamp times a backend's enforcement on real packets, in the kernel, and checks every
// timed packet against the reference. bench.MeasurePackets runs the method; this page is its
// design.
//
// # What is timed
//
// BPF programs stamp a packet (its sk_buff address and bpf_ktime_get_ns) just before an
// enforcement point and again just after it; a packet dropped in between is closed on the
// kfree_skb tracepoint with the kernel's drop reason. Each span has a per-CPU slot of its own
// (the path runs to completion on one CPU in softirq context), so spans nest and a nested
// packet shows as unpaired instead of being guessed. Three spans:
//
//   - tcx: head to tail of the TCX chains of the pod veths, where the eBPF datapath runs.
//     A pod-to-pod packet crosses two: from_container on the source veth's ingress and
//     to_container on the destination veth's egress; the ingress part is carried (an LRU hash
//     keyed by sk_buff) and added to the egress part, so a sample is the packet's whole
//     enforcement, conntrack included (the datapath keeps its own).
//   - nf-filter: FORWARD priority -2 to +2 around the filter table (priority 0): iptables'
//     rules alone.
//   - nf-path: PREROUTING at -500, ahead of defragmentation (-400) and conntrack (-200), to
//     the head of the outgoing veth's TCX egress chain. It holds everything netfilter
//     enforcement needs, nf_conntrack's lookup, entry creation and confirmation included
//     (confirmation runs at POSTROUTING with the last priority a hook can have, so no
//     netfilter hook could close the span after it). This is the span to compare with tcx;
//     nf-filter says how much of it is the rules.
//
// # Paths and their floors
//
// A sample's path is how it went through its span (Sample.Path): for tcx, both enforcement
// points, ingress only (leaving the pods), egress only (coming from outside), dropped at the
// source's point (one stamp pair, closed by kfree_skb), dropped at the destination's (the
// carried pair plus one closed by kfree_skb), or dropped at egress only; for the netfilter
// spans, passed or dropped. Paths differ in stamp pairs and in how they end, so each has its
// own floor: the same stamps around step programs that do nothing but pass, or drop the
// packets marked for that point. A new-flow packet's IP length marks the reference's fate of
// its flow (allowed, denied by the source's egress policy, denied by the destination's
// ingress policy), so in a floor round the steps drop exactly the packets the backend drops,
// where it drops them, and the drops end on kfree_skb as real ones do. The steps read only
// the context's length. The netfilter step sits at priority -1, beside the filter table (the
// kernel refuses a BPF hook at a priority another hook holds). A BPF step rather than an empty
// filter table: the table's traversal is part of what iptables costs (and differs between its
// legacy and nft flavours), creating one leaves state in the namespace that later rounds would
// meet, and a step is the same kind of program call in both families' floors.
//
// # Rounds in a fresh testbed
//
// Each backend at each scale is measured in a testbed no other backend has touched, so
// nothing another backend left in the node's path (an empty filter table, conntrack hooks)
// shifts its floor. bench.MeasurePackets alternates floor and backend rounds, floor first,
// switching only what sits between the stamps (bench.PacketSwitch): for eBPF the datapath's
// TCX links against the steps; for iptables one restore that removes the jump from FORWARD
// and the conntrack rule, the only rule holding nf_conntrack; for nftables one transaction
// that deletes the table's base chain, its only hook. Floor rounds so run without conntrack
// (the round records the node's conntrack count to show it: a floor round adds no entry).
// The two netfilter floors are not alike: iptables' floor keeps the filter table's empty
// built-in chains hooked (iptables cannot remove them), so its floor holds their traversal and
// iptables' figure does not; nftables' floor has no base chain at all, so the traversal of its
// base chain is in nftables' figure. Every round sends the same traffic; the spread of a
// path's per-round floor medians is its drift.
//
// # Traffic
//
// testbed.Generator sends new flows as raw IPv4 packets from the pod (and outside)
// namespaces: a TCP SYN or UDP datagram per packet, each with a source port of its own, so
// every packet is a new 5-tuple to both conntracks; allowed and denied flows interleaved;
// paced at a rate, no faster than asked, or back to back in sendmmsg batches. The sweep paces
// every headline measurement, floor and backend rounds of every backend, at one rate below
// what the slowest backend takes (bench.Spec.PacketRate): cost depends on rate, and back to
// back each path would be measured at the rate its own cost set. No packet waits for an answer: a denied packet costs its own
// sending only. SYNs find no listener and are answered by a reset, the flow's reply; UDP
// finds a socket, so no ICMP error comes back. Established packets are data segments on real
// connections of allowed TCP flows, one segment a write (TCP_NODELAY, no autocorking), which
// both conntracks see as established.
//
// # Every packet checked
//
// The flow list is frozen before the rounds (FlowList: source, destination, protocol, port,
// expected verdict and deny point, with a digest). Each sample is mapped back to its flow by
// its 5-tuple, either way round (FlowList.Match): a flow's own packet is new (a SYN, a
// datagram) or established, a packet the other way is a reply. Check counts every sample whose
// fate disagrees with the reference (dropped although allowed, passed although denied,
// dropped at the other point than the one that denies, a dropped reply, any packet after a
// denied first one) and every sample of no flow; either fails the measurement. Floor rounds
// are checked too, which proves the marks. The stamps must also have seen every new-flow
// packet once per span, and the ring buffer must have lost nothing.
//
// # Subtraction
//
// Per path, one constant is subtracted from every backend sample: the median of all floor
// samples of that path from the same measurement's floor rounds. Percentiles are then taken of
// the differences (an HdrHistogram per path and flow state), so a p99 above the floor is the
// p99 of per-packet costs, not a p99 minus a p99. A difference below 1 ns is recorded as 1 ns
// and counted. A path the floor rounds never took has no floor, and its samples fail the
// subtraction rather than borrow another path's.
//
// # What it does not claim
//
// The floor is the stamps' cost around a step that does nothing: the programs' call overhead
// at an enforcement point is in the floor, not in the backend's figure. iptables' floor holds
// the empty built-in chains of the filter table, nftables' none (see Rounds in a fresh testbed). Samples are bpf_ktime_get_ns differences on
// one CPU, with its resolution and the cost of the stamps themselves (tens of ns, the floor).
package stamp
