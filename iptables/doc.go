// Package iptables enforces the compiled policy.State the way traditional iptables CNIs do
// (kube-router, Calico's iptables mode): peers are matched by IP address in the filter table's
// FORWARD path of the node namespace, with one chain per endpoint and direction and one chain
// per rule set.
//
// Two variants share one generator:
//   - VariantIPTables expands every identity into its member pod IPs: one rule per (peer IP or
//     CIDR, protocol, port range), so the rule count grows with rule sets × pods, O(pods²) when
//     policies scale with the cluster.
//   - VariantIPSet puts the peers of each (rule set, protocol, port range) group into hash:ip and
//     hash:net sets (hash:ip,port for named egress ports) and matches them with -m set.
//
// Packet path (every chain prefixed NPB-):
//
//	FORWARD -j NPB-FORWARD
//	NPB-FORWARD: ctstate RELATED,ESTABLISHED ACCEPT; -j NPB-EGRESS; -j NPB-INGRESS; ACCEPT
//	NPB-EGRESS:  -s podIP -g NPB-E-<ep>  (one rule per egress-isolated endpoint, linear)
//	NPB-INGRESS: -d podIP -g NPB-I-<ep>  (one rule per ingress-isolated endpoint, linear)
//	NPB-E-<ep>:  -d podIP ACCEPT (self); -g NPB-R-<ruleset>
//	NPB-I-<ep>:  -s podIP ACCEPT (self); -g NPB-R-<ruleset>
//	NPB-R-<rs>:  allow rules; DROP
//	NPB-ALLOW-E: -j NPB-INGRESS; ACCEPT   (egress allowed: the destination's ingress decides)
//
// An ingress allow is ACCEPT; an egress allow is -g NPB-ALLOW-E. A CIDR identity allows an address
// only when its prefix is the address's longest ipBlock prefix: a CIDR peer with more specific
// prefixes under it jumps to a shared chain NPB-XI-<n> / NPB-XE-<n> that RETURNs for those prefixes
// and allows otherwise; the ipset variant expresses the same with hash:net nomatch entries.
// The dispatch chains are linear: the first packet of a flow walks past one rule per isolated
// endpoint before it reaches its own, as in the CNIs this backend models.
//
// A full sync is one iptables-restore --noflush payload built in a buffer (plus one ipset
// restore before it and one after it for swaps and removals). A partial sync, decided at the
// start of Update, rewrites only the chains of rule sets whose entries changed (or, on an
// ipBlock change, every rule set with a CIDR or world peer), edits the per-IP rules or set
// members of peers that gained or lost pods in place, and adds or deletes the dispatch rules and
// chains of changed endpoints. The per-rule path sends the same changes as one go-iptables
// command each.
//
// A rejected iptables-restore leaves the rules as they were (a table commits whole), and the
// sets the sync created are destroyed again, so the kernel is as before. Any other failure (an
// ipset restore applies the lines before the one that fails; a command may fail after its
// commit; per-rule commands stay applied) leaves the backend unsure of the kernel: it forgets
// its view, its error wraps policy.ErrNextSyncFull, and the next call is a full sync that reads
// the chains and sets back first. Temporary sets never reuse a name the kernel holds.
//
// Everything is applied through a Runner inside a network namespace the caller owns; the Fake
// Runner parses the same payloads, and Trace walks its rules to decide flows without a kernel.
package iptables
