// Package datapath is the identity-hash eBPF enforcement backend: two sched_cls programs
// (bpf/policy.c) and the Go side that loads them, fills their maps from a compiled
// policy.State, updates them from a policy.Delta, decides probes with BPF_PROG_TEST_RUN and
// attaches them with TCX (Linux 6.6).
//
// # Programs
//
// from_container enforces the egress policy of the source endpoint (TCX ingress of the
// node-side veth: packets leaving pods), to_container the ingress policy of the destination
// endpoint (TCX egress: packets entering pods). The local endpoint is always found by IP in
// `lxc`, never by ifindex, because many virtual pods share one veth. Addresses that are not
// local pods pass: a flow is allowed when the source's egress (if a pod) and the destination's
// ingress (if a pod) both allow it; src == dst is self traffic and always allowed.
//
// # Maps
//
//   - lxc (hash): pod IPv4 → endpoint id, pod identity, the CIDR fall-back identity of the
//     pod's address (cached, see below), ingress and egress rule-set ids and their fall-back
//     flags.
//   - ipcache (LPM trie): ipBlock prefix → CIDR identity; a miss is world (2). In the Cilium
//     layout (LayoutCilium) it also holds every pod /32 and peers are resolved here, as Cilium
//     does; in the default layout (LayoutHash) pod peers are found in lxc by one hash lookup
//     and the trie holds only the (few) prefixes, so its cost does not grow with pods.
//   - policy_summary (hash): (rule set, peer identity) → any-protocol, all-ports-of-protocol,
//     named-port and exact-port masks and up to 6 inline port spans. One per group that has
//     entries: a miss is "nothing for this peer".
//   - policy (hash): (rule set, peer, protocol, port) for single ports beyond the inline spans,
//     and (rule set, peer, protocol, named-port id) for egress named ports.
//   - named_ports (hash): (destination endpoint id, protocol, port) → the names declared there;
//     consulted only when the summary says the group has named-port entries for the protocol.
//   - ct (LRU hash), flow_cache (per-CPU array), epoch (array), metrics (per-CPU array by
//     reason and direction), events (ring buffer of drop records).
//
// The policy key is the rule set, not the endpoint: endpoints selected by the same policies
// share a rule set, so adding a pod with an existing label set writes one lxc entry and no
// policy entry. Lookup order per direction is Cilium's fall-back order: the peer's own
// identity, then (for a pod) the CIDR identity of its address (ipBlock matches pod IPs too,
// as the reference evaluator and upstream Kubernetes do, unlike Cilium), then the any-peer
// wildcard; within each, the summary decides wildcards and inline ports and only then the
// exact and named keys are looked up. Fall-back flags in the endpoint value skip the lookups a
// rule set has no entries for, so the common deny costs one policy lookup.
//
// # Conntrack
//
// An entry is created for an allowed new flow by the program that decides last
// (to_container, or from_container when the destination is not a local pod); a denied packet
// never creates one. The key is the 5-tuple in canonical order, so one lookup finds both
// directions. Replies are never policy-checked (as in Cilium). Forward packets of an
// established flow are checked again when the policy epoch has changed since they were last
// allowed: every Sync or Update that changes a map bumps the epoch, so removing a rule cuts
// live connections at their next packet (Cilium checks every packet; we check once per
// change, which keeps an established packet at one CT lookup). A TCP SYN without ACK skips the
// lookup and is checked as new. CTLookup mode (probes, benchmarks of new flows) looks up but
// never creates.
//
// In front of ct sits flow_cache, a per-CPU direct-mapped array (16,384 slots, CTFull only):
// a slot holds a copy of a ct entry and the epoch it was cached at, and is used only at that
// epoch, so any policy change invalidates every slot on every CPU at once and ct stays the
// authority. It saves the ~30 ns LRU hash lookup of an established packet (array lookups are
// inlined by the verifier). One imprecision: an entry the LRU evicts may live on in a slot
// until the next policy change; it was allowed at that very epoch, so no verdict the policy
// would change is affected. Options.NoFlowCache turns it off.
//
// # Packets
//
// Ethernet and IPv4 with options (IHL honoured) are parsed; TCP, UDP and SCTP ports are read,
// ICMP and other protocols have no port and match only rules without ports. A non-first
// fragment carries no L4 header: it is matched with its port unknown, so only a rule allowing
// every port of its protocol (or every protocol) lets it through; we deny rather than guess
// (Cilium tracks fragment ids instead). A truncated header is dropped as malformed. IPv6 and
// non-IP frames are not enforced (pods here are IPv4 only).
//
// # Sync
//
// Go keeps a mirror of every map. Sync plans the whole state and Update only the units a delta
// names (endpoints, CIDRs, rule-set groups); both diff the plan against the mirror and apply
// only the difference, with batch map operations unless Options.PerKey. Map sizes come from
// SizesFor (twice the synced state; SizesWithHeadroom for more); a full map is ErrMapFull
// naming the map, its size, the Sizes field and the flag that raise it, and so is a map the
// kernel refuses to create. After a failed call the next one is a full sync, and the error
// wraps policy.ErrNextSyncFull. The mirror follows what the kernel reports written, also when a
// batch stops part way, so that full sync writes exactly what is missing; an epoch whose write
// failed is written by the next flush even if nothing else changed. Planning is pure and lives
// in plan.go (tested without a kernel); sync.go diffs, writes and keeps the mirror, as
// iptables/ splits translate, plan and apply. Every write goes through a mapWriter, where the
// tests inject faults (full maps, batches cut part way, failed deletes and epoch writes).
package datapath
