/* Shared definitions of the identity datapath: map layouts and records that the Go side
 * (datapath/) mirrors through bpf2go's generated types. Changing a struct here changes the
 * generated Go types; run `make generate`. */
#ifndef NETPOLBENCH_DATAPATH_H
#define NETPOLBENCH_DATAPATH_H

#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/ip.h>
#include <linux/in.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

#define TC_ACT_OK 0
#define TC_ACT_SHOT 2
/* With TCX, TCX_PASS (0) ends the chain; TCX_NEXT (-1) hands the packet to the next program. */
#define TCX_NEXT -1

#define PROTO_ICMP 1
#define PROTO_TCP 6
#define PROTO_UDP 17
#define PROTO_SCTP 132

/* Protocol bits of struct summary's masks. PBIT_OTHER covers protocols no entry can
 * name: only any-protocol entries match them. */
#define PBIT_TCP 0x01
#define PBIT_UDP 0x02
#define PBIT_SCTP 0x04
#define PBIT_ICMP 0x08
#define PBIT_OTHER 0x10

#define DIR_INGRESS 0
#define DIR_EGRESS 1

/* Reasons, used both as metrics index and in drop events. */
enum reason {
	REASON_ALLOW_NEW = 0,     /* policy allowed a packet without a current CT entry */
	REASON_ALLOW_ESTABLISHED, /* forward packet of a CT entry checked at the current epoch */
	REASON_ALLOW_REPLY,       /* reply of a CT entry: never policy-checked, as in Cilium */
	REASON_ALLOW_SELF,        /* src == dst pod IP */
	REASON_ALLOW_NOT_ENFORCED, /* direction not isolated, or not a local pod, or not IPv4 */
	REASON_DROP_POLICY,       /* Cilium's DROP_POLICY (-133, "Policy denied") */
	REASON_DROP_MALFORMED,    /* truncated IPv4 or L4 header */
	REASON_MAX,
};

/* Value of `lxc` (key: pod IPv4, network byte order). */
struct endpoint {
	__u32 ep_id;
	__u32 identity;
	/* Identity of the longest ipBlock prefix holding the pod IP (world when none): the CIDR
	 * fall-back, cached here so a pod peer never needs the LPM trie. */
	__u32 cidr_identity;
	__u32 ingress_rs;
	__u32 egress_rs;
	__u32 ifindex;
	/* RS_HAS_* of the ingress and egress rule sets: which fall-back lookups can match at all,
	 * so the common deny costs one policy lookup. */
	__u8 ingress_flags;
	__u8 egress_flags;
	__u8 pad[2];
};

#define RS_HAS_ANY 0x01   /* entries for every peer (identity 0) */
#define RS_HAS_CIDR 0x02  /* entries for CIDR identities */
#define RS_HAS_WORLD 0x04 /* entries for world or another reserved identity */

/* Key of `ipcache` (LPM trie). prefixlen counts bits of addr. */
struct ipcache_key {
	__u32 prefixlen;
	__u32 addr;
};

/* Value of `ipcache`: a CIDR identity, or in the Cilium layout also pod /32s with their pod
 * identity and cached CIDR fall-back identity. */
struct ipcache_value {
	__u32 identity;
	__u32 cidr_identity;
};

/* Key of `policy`, the exact entries. kind POLICY_KIND_PORT: port is a destination port
 * (host byte order); POLICY_KIND_NAMED: port is a named-port id (egress only). */
#define POLICY_KIND_PORT 0
#define POLICY_KIND_NAMED 1
struct policy_key {
	__u32 rs;
	__u32 peer;
	__u8 proto;
	__u8 kind;
	__u16 port;
};

/* Key of `policy_summary`: one per (rule set, peer identity) that has any entry. */
struct summary_key {
	__u32 rs;
	__u32 peer;
};

#define SUMMARY_RANGES 6
struct port_range {
	__u8 proto;
	__u8 pad;
	__u16 lo;
	__u16 hi;
};

/* Value of `policy_summary`. A miss means the peer has nothing in the rule set; wildcard
 * entries and up to SUMMARY_RANGES port ranges (single ports included) are decided here, so a
 * peer with a few ports costs one hash lookup; further ports live in `policy`. */
struct summary {
	__u8 any_proto;   /* an entry without ports: every protocol and port */
	__u8 all_ports;   /* PBIT_* with a Port 0 entry: every port of that protocol */
	__u8 exact;       /* PBIT_* with single-port keys in `policy` */
	__u8 named;       /* PBIT_* with named-port keys in `policy` */
	__u8 nranges;
	__u8 pad[3];
	struct port_range ranges[SUMMARY_RANGES];
};

/* Key of `named_ports`: a destination endpoint's container port. */
struct named_port_key {
	__u32 ep_id;
	__u8 proto;
	__u8 pad;
	__u16 port;
};

#define NAMES_PER_PORT 4
struct named_port_value {
	/* Name ids declared on that port (0 = unused slot). */
	__u16 names[NAMES_PER_PORT];
};

/* Key of `ct`: the 5-tuple in canonical order (the lower (addr, port) pair first), so one
 * lookup finds a flow in both directions. Ports in network byte order. */
struct ct_key {
	__u32 addr_a;
	__u32 addr_b;
	__u16 port_a;
	__u16 port_b;
	__u8 proto;
	__u8 pad[3];
};

struct ct_value {
	/* 1 when the flow's initiator is the (addr_a, port_a) side. */
	__u8 origin_a;
	__u8 pad[3];
	/* Policy epoch at which the forward direction was last allowed, per enforcement
	 * direction; a forward packet seen at another epoch is checked again. */
	__u32 egress_epoch;
	__u32 ingress_epoch;
	__u32 pad2;
};

/* Slot of `flow_cache`, a per-CPU direct-mapped cache in front of `ct`. A slot is used only
 * when its epoch is the current policy epoch, so every policy change invalidates all slots on
 * all CPUs at once, and `ct` stays the authority. */
#define FLOW_CACHE_SLOTS 16384
struct flow_cache_slot {
	struct ct_key key;
	struct ct_value val;
	__u32 epoch;
	__u32 valid;
};

/* Maps whose operations the programs count per verdict path, for the question which lookups
 * a verdict costs. While a packet is decided its operations accumulate in a register, six
 * bits a map (LK_COUNT); its metrics slot adds them up at the end, so counting costs no map
 * access of its own. The metrics lookup itself (one a packet) is not counted. */
enum lookup_map {
	LK_FLOW_CACHE = 0,
	LK_CT,
	LK_EPOCH,
	LK_LXC,
	LK_IPCACHE,
	LK_SUMMARY,
	LK_POLICY,
	LK_NAMED_PORTS,
	LK_CT_UPDATE, /* conntrack inserts tried */
	LK_CT_DELETE, /* conntrack entries removed after a denial */
	LK_MAX,
};
#define LK_BITS 6
#define LK_COUNT(lk, m) (*(lk) += 1ULL << (LK_BITS * (m)))

struct metrics_value {
	__u64 packets;
	__u64 bytes;
	__u64 lookups[LK_MAX]; /* operations by enum lookup_map */
};

/* Record on the `events` ring buffer for every dropped packet. */
struct drop_event {
	__u8 reason;
	__u8 dir;
	__u8 proto;
	__u8 tcp_flags;
	__u32 ep_id;
	__u32 src_identity;
	__u32 dst_identity;
	__u32 saddr;
	__u32 daddr;
	__u16 sport;
	__u16 dport;
	__u32 len;
};

#endif
