// Package nftables enforces the compiled policy.State the way nftables users do today
// (kube-proxy's nftables mode, Calico's nftables dataplane): in one inet table of its own,
// "netpolbench", in the forward hook of the node namespace, with verdict maps to find an
// endpoint's rules and named sets to match its peers, all written through
// sigs.k8s.io/knftables.
//
// Packet path (the first packet of a flow; conntrack passes the rest):
//
//	chain forward (filter hook forward, priority filter, policy accept):
//	  ct state established,related accept
//	  ct state invalid drop
//	  ip saddr . ip daddr @self accept      a pod reaching its own address (one element a pod)
//	  ip saddr vmap @egress                 pod address : jump rs-<egress rule set>
//	  ip daddr vmap @ingress                pod address : goto rs-<ingress rule set>
//	chain rs-<id> (one per rule set, shared by its endpoints):
//	  <allow rules>                         egress allows return (the destination's ingress
//	                                        decides next), ingress allows accept
//	  drop comment "<the rule set's policies>"
//
// Finding an endpoint's rules is one hash lookup in a verdict map, whatever the number of
// pods; a direction no policy isolates has no element and passes. A rule-set chain groups its
// entries by the (protocol, port range) they allow; the peers allowed on one range form an
// identity list, and ranges allowed to the same list share one rule:
//
//	ip saddr @p-<hash> meta l4proto . th dport { tcp . 80, tcp . 8080-8081, udp . 53 } accept
//	ip saddr @n-<hash> meta l4proto tcp accept
//	meta l4proto udp th dport 53 accept               (peer: anyone)
//	ip daddr . meta l4proto . th dport @np-<id> return (egress named ports)
//
// so the first packet passes a handful of rules per rule set, each one or two lookups. The
// sets:
//   - p-<hash>: the member addresses of a list of pod identities (ipv4_addr). The name hashes
//     the list, so every rule set allowing the same identities uses the same set; elements
//     grow with the distinct lists times their members, not with rule sets times pods.
//   - n-<hash>: the addresses whose longest ipBlock prefix is one of a list of CIDR identities
//     (IdentityWorld: no prefix), as disjoint ranges of an interval set. An ipBlock's except
//     prefixes, and any longer prefix another policy names, are cut out of it; ipBlocks match
//     pod addresses too, as the suite reads the spec.
//   - np-<id>: (destination pod, protocol, port) for each egress named port a rule set
//     allows, resolved against the destination pods' container ports (a name declared with
//     another protocol resolves to nothing); ingress named ports arrive resolved.
//   - self: (pod, pod) for every pod.
//
// A rule without ports matches every protocol, ICMP included; a protocol without a port every
// port of it; endPort is a range. IPv6 packets pass (every address here is IPv4).
//
// A full sync is one transaction: the table, its base chain, maps and sets are added if
// missing and flushed, every set and rule-set chain refilled, and chains and sets no longer
// wanted (also those a previous run left, read at the first sync) flushed and deleted. nft
// applies a transaction whole or not at all, so a rejected one leaves the previous ruleset in
// force. A partial sync (Update) is decided at the start and is one transaction too: verdict
// map and self elements of the endpoints that changed, member elements of the pod sets whose
// identities gained or lost pods, named-port elements of the pods that changed, nets sets
// refilled when ipBlock prefixes changed, and only the chains of rule sets whose entries or
// policies changed flushed and rewritten; new sets are created and filled, sets no chain uses
// any more deleted. The backend diffs against a mirror of what it wrote (as kube-proxy does).
// After any failure the error wraps policy.ErrNextSyncFull and the backend drops its mirror: a
// transaction reported failed may have committed (an nft killed after the commit), so the next
// call is a full sync that lists the table first, as it does a table a previous run left.
// Counts say what each sync wrote (commands,
// bytes, chains, rules, elements added and deleted) and what the table holds; Plan counts the
// table a full sync would write without building it, for a caller's budget.
//
// Transactions are knftables objects, which knftables writes one nft command per set element;
// runs of element commands of one set are merged into commands of up to 1,000 elements
// (Config.PerElement turns that off): nft holds every command until it commits, and at
// 500,000 elements one command each took it 8.4 s and 840 MB, batches 1.8 s and 190 MB. On
// the kernel's path the elements skip the objects: they are written straight into the batched
// nft input as the sync is planned, the rest through knftables as before, and a test holds
// the result byte for byte to the Fake's transaction written out and batched. At 100,000 pods
// (5.8 million elements) that took the Go side of a full sync from 7.7 s and 5.3 GB allocated
// to 0.6 s and 160 MB.
// Each sync starts one nft process (about 1.5 ms for a no-op); a partial sync that deletes
// elements or rewrites a chain costs several ms more, as nft reads the table's sets and
// chains first.
//
// Everything reaches the table through a knftables.Interface: NewKernel runs nft (knftables'
// exec path; its netlink option lists objects, what the first sync reads, but cannot apply)
// inside a network namespace the caller owns; Fake wraps knftables' Fake with the kernel's
// checks that it leaves out, and Trace walks its table to decide flows without a kernel. The
// kernel's table, read back with `nft -j list table`, parses into the same form, so tests
// compare the two after every sync and trace both; Table lists either as `nft list table`
// prints it, whole or as far as one pod's traffic walks it.
package nftables
