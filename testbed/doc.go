// Package testbed builds a small, disposable network out of Linux network namespaces and sends
// real packets through it, so every enforcement backend can be judged on delivered traffic
// rather than on its own account of what it would do.
//
// Layout (all of it inside namespaces this package creates; the root namespace is never
// touched):
//
//	<run>-node      forwarding on, rp_filter and redirects off; one veth per other namespace.
//	                Enforcement sits here: eBPF on the node side of each pod veth (TCX),
//	                iptables and ipset in the FORWARD path.
//	<run>-pod<i>    a real pod namespace carrying many virtual pods: every address of the
//	                aligned blocks of 198.18.0.0/15 dealt to it is local (AnyIP route), so any
//	                pod address there can send and receive without per-pod setup.
//	<run>-out       203.0.113.0/24 hosts (AnyIP) for ipBlock and world flows.
//
// <run> is "npb-<pid>-<random>". Close removes the namespaces, and so does SIGINT or SIGTERM
// (unless the program handles those itself and said so with KeepOnSignal); Cleanup (the
// `netpolbench cleanup` command) removes those of runs that were killed.
//
// Pod addresses map to namespaces by block: block = (ip - 198.18.0.0) >> (32 - BlockBits),
// namespace = block mod PodNamespaces. Traffic between two pods always crosses the node, even
// inside one block: a policy-routing rule sends locally generated packets for the pod range to
// the veth before the local table is consulted. Self traffic (a pod to its own address) carries
// the mark selfMark, which a higher rule sends to the local table, so it stays in the
// namespace as it does in Kubernetes; fwmark_reflect and tcp_fwmark_accept keep its replies
// local too.
//
// Neighbours are static: each side of each veth knows the other's MAC for a link-local
// gateway address, so no ARP is needed and the neighbour table does not grow with pod count.
//
// Probe turns flows into packets: a TCP handshake, a UDP datagram or an ICMP echo request from
// the source address, with receivers in the destination namespaces. A flow not delivered
// within the timeout is sent once more before it counts as dropped, and ProbeVerdicts sends
// control flows alongside (no pod at either end, so every backend must pass them) to tell a
// drop from a broken testbed. SendUntil sends one flow as new flows a millisecond apart until
// its packets get a verdict, and says when the first packet with that verdict was sent: how
// long a change took to be in force on real packets. Enforce puts one backend in force
// through a function that installs it (the backends come from package catalogue, which
// imports this one; the testbed knows none of them), Enforcement.Close takes it out and checks
// nothing of any backend is left, and catalogue.RealPackets runs a set of flows through each
// backend in turn.
//
// Generator sends traffic for per-packet measurements without waiting for any of it: new
// flows as raw packets (a TCP SYN or UDP datagram each, a length that can carry a mark), back
// to back or at a rate, and data segments on real connections. Source ports come from one
// sequence per flow for the testbed's life, shared by all its generators, so no two new-flow
// packets in one testbed share a 5-tuple, however many measurements it carries.
// New returns only once every veth is up (WaitLinksUp): a new veth drops what it is given until
// the kernel's link watcher has put its queueing discipline in place, up to a second later on
// a loaded machine, and neither probes nor the generator may lose packets to that. NodeRxPackets and NodeConntrackEntries read the node's counters.
//
// Namespaces are created, entered and removed through internal/netns.
package testbed
