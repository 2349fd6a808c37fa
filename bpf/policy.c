//go:build ignore

/* The identity datapath: from_container enforces the egress policy of the source endpoint,
 * to_container the ingress policy of the destination endpoint. Both live in one object
 * because they share every map; Go loads them as one collection.
 *
 * Endpoints are always found by IP, never by ifindex: many virtual pods share one veth.
 *
 * Decisions (see datapath/doc.go for the full reasoning):
 *  - Conntrack: replies of an allowed flow are never policy-checked (as in Cilium).
 *    Forward packets of an established flow are re-checked only when the policy epoch changed
 *    since they were last allowed, so removing a rule cuts live connections (as Cilium's
 *    per-packet check does) while an established packet normally costs one CT lookup.
 *  - Non-first IPv4 fragments carry no L4 header: they are matched with "port unknown", so
 *    only entries that allow every port of the protocol (or every protocol) let them through.
 *    Cilium tracks fragment ids instead; we deny rather than guess.
 *  - IPv6 and non-IP frames are not enforced (pods here are IPv4 only).
 */

#include "headers/datapath.h"

char __license[] SEC("license") = "Dual BSD/GPL";

/* Load-time configuration (rodata, rewritten by the Go loader). */
volatile const __u8 cfg_layout_cilium = 0; /* 1: pod /32s in the LPM ipcache, as Cilium */
volatile const __u8 cfg_ct_mode = 2;       /* 0 off, 1 lookup only (probes), 2 full */
volatile const __u8 cfg_drop_events = 1;   /* emit drop events on the ring buffer */
volatile const __s32 cfg_allow_ret = TC_ACT_OK; /* TCX_NEXT when chained with other programs */
volatile const __u8 cfg_flow_cache = 1;  /* consult the per-CPU flow cache before `ct` */
volatile const __u32 cfg_flow_cache_mask = FLOW_CACHE_SLOTS - 1; /* flow_cache max_entries - 1 */

/* Sizes are placeholders: the loader sets every max_entries from the compiled state. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__type(key, __u32);
	__type(value, struct endpoint);
	__uint(max_entries, 1024);
} lxc SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__type(key, struct ipcache_key);
	__type(value, struct ipcache_value);
	__uint(max_entries, 1024);
	__uint(map_flags, BPF_F_NO_PREALLOC);
} ipcache SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__type(key, struct summary_key);
	__type(value, struct summary);
	__uint(max_entries, 1024);
} policy_summary SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__type(key, struct policy_key);
	__type(value, __u8);
	__uint(max_entries, 1024);
} policy SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__type(key, struct named_port_key);
	__type(value, struct named_port_value);
	__uint(max_entries, 1024);
} named_ports SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__type(key, struct ct_key);
	__type(value, struct ct_value);
	__uint(max_entries, 1024);
} ct SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__type(key, __u32);
	__type(value, struct flow_cache_slot);
	__uint(max_entries, FLOW_CACHE_SLOTS);
} flow_cache SEC(".maps");

/* Index 0: the policy epoch, bumped by Go whenever enforcement changes. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__type(key, __u32);
	__type(value, __u32);
	__uint(max_entries, 1);
} epoch SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__type(key, __u32);
	__type(value, struct metrics_value);
	__uint(max_entries, REASON_MAX * 2);
} metrics SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 256 * 1024);
} events SEC(".maps");

/* Unused by the programs; forces bpf2go to emit the Go type. */
const struct drop_event *unused_drop_event __attribute__((unused));

struct pkt {
	__u32 saddr;
	__u32 daddr;
	__u16 sport; /* network byte order */
	__u16 dport; /* network byte order */
	__u8 proto;
	__u8 pbit;
	__u8 has_ports; /* 0 for ICMP, other protocols and non-first fragments */
	__u8 tcp_flags;
	__u8 icmp_reply; /* an ICMP echo reply: the only ICMP packet that may answer a flow */
	__u32 len;
	__u64 lk; /* map operations so far, LK_BITS a map (datapath.h) */
};

/* A peer as policy sees it: its identity, the CIDR fall-back identity, and its endpoint id
 * when it is a pod (0 when unknown). */
struct peer {
	__u32 identity;
	__u32 cidr_identity;
	__u32 ep_id;
};

static __always_inline void count(__u32 reason, __u32 dir, struct pkt *p)
{
	__u32 idx = reason * 2 + dir;
	struct metrics_value *m = bpf_map_lookup_elem(&metrics, &idx);
	if (m) {
		m->packets++;
		m->bytes += p->len;
#pragma unroll
		for (int i = 0; i < LK_MAX; i++)
			m->lookups[i] += (p->lk >> (LK_BITS * i)) & ((1 << LK_BITS) - 1);
	}
}

static __always_inline int allow(__u32 reason, __u32 dir, struct pkt *p)
{
	count(reason, dir, p);
	return cfg_allow_ret;
}

static __always_inline int drop(__u32 reason, __u32 dir, struct pkt *p, __u32 ep_id,
				__u32 src_id, __u32 dst_id)
{
	count(reason, dir, p);
	if (cfg_drop_events) {
		struct drop_event *e = bpf_ringbuf_reserve(&events, sizeof(*e), 0);
		if (e) {
			e->reason = reason;
			e->dir = dir;
			e->proto = p->proto;
			e->tcp_flags = p->tcp_flags;
			e->ep_id = ep_id;
			e->src_identity = src_id;
			e->dst_identity = dst_id;
			e->saddr = p->saddr;
			e->daddr = p->daddr;
			e->sport = p->sport;
			e->dport = p->dport;
			e->len = p->len;
			bpf_ringbuf_submit(e, 0);
		}
	}
	return TC_ACT_SHOT;
}

/* parse fills p; returns 0 on success, 1 for a frame that is not IPv4, -1 for a malformed one. */
static __always_inline int parse(struct __sk_buff *skb, struct pkt *p)
{
	void *data = (void *)(long)skb->data;
	void *end = (void *)(long)skb->data_end;
	struct ethhdr *eth = data;
	struct iphdr *ip;
	void *l4;
	__u32 ihl;

	p->len = skb->len;
	if ((void *)(eth + 1) > end)
		return 1;
	if (eth->h_proto != bpf_htons(ETH_P_IP))
		return 1;
	ip = (void *)(eth + 1);
	if ((void *)(ip + 1) > end)
		return -1;
	ihl = ip->ihl * 4;
	if (ihl < sizeof(*ip))
		return -1;
	p->saddr = ip->saddr;
	p->daddr = ip->daddr;
	p->proto = ip->protocol;
	p->sport = 0;
	p->dport = 0;
	p->tcp_flags = 0;
	p->has_ports = 0;
	switch (p->proto) {
	case PROTO_TCP:
		p->pbit = PBIT_TCP;
		break;
	case PROTO_UDP:
		p->pbit = PBIT_UDP;
		break;
	case PROTO_SCTP:
		p->pbit = PBIT_SCTP;
		break;
	case PROTO_ICMP: {
		/* ICMP has no port for policy. For conntrack only, an echo request carries its
		 * identifier as the source port and a reply as the destination port, so a reply
		 * finds its request's entry while a request with the same identifier from the other
		 * side is a flow of its own; and only a reply may take the reply path. */
		__u8 *icmp = (void *)ip + ihl;
		p->pbit = PBIT_ICMP;
		if (!(ip->frag_off & bpf_htons(0x1fff)) && (void *)(icmp + 8) <= end) {
			if (icmp[0] == 8) {
				p->sport = *(__u16 *)(icmp + 4);
			} else if (icmp[0] == 0) {
				p->dport = *(__u16 *)(icmp + 4);
				p->icmp_reply = 1;
			}
		}
		return 0;
	}
	default:
		p->pbit = PBIT_OTHER;
		return 0;
	}
	/* A non-first fragment has no L4 header: leave the ports unknown. */
	if (ip->frag_off & bpf_htons(0x1fff))
		return 0;
	l4 = (void *)ip + ihl;
	/* TCP, UDP and SCTP's common header all start with the two ports; 8 bytes is UDP's
	 * whole header and the least any of them has. */
	if (l4 + 8 > end)
		return -1;
	p->sport = *(__u16 *)l4;
	p->dport = *(__u16 *)(l4 + 2);
	if (p->proto == PROTO_TCP) {
		__u8 *flags = l4 + 13;
		if ((void *)(flags + 1) > end)
			return -1;
		p->tcp_flags = *flags;
	}
	p->has_ports = 1;
	return 0;
}

static __always_inline void ct_key_of(struct pkt *p, struct ct_key *k, __u8 *src_is_a)
{
	__u64 s = ((__u64)bpf_ntohl(p->saddr) << 16) | bpf_ntohs(p->sport);
	__u64 d = ((__u64)bpf_ntohl(p->daddr) << 16) | bpf_ntohs(p->dport);

	__builtin_memset(k, 0, sizeof(*k));
	k->proto = p->proto;
	if (s <= d) {
		k->addr_a = p->saddr;
		k->port_a = p->sport;
		k->addr_b = p->daddr;
		k->port_b = p->dport;
		*src_is_a = 1;
	} else {
		k->addr_a = p->daddr;
		k->port_a = p->dport;
		k->addr_b = p->saddr;
		k->port_b = p->sport;
		*src_is_a = 0;
	}
}

static __always_inline __u32 flow_slot(struct ct_key *k)
{
	__u32 h = k->addr_a * 0x9e3779b1u;

	h ^= k->addr_b * 0x85ebca77u;
	h ^= (((__u32)k->port_a << 16) | k->port_b) * 0xc2b2ae3du;
	h ^= k->proto;
	h ^= h >> 15;
	return h & cfg_flow_cache_mask;
}

static __always_inline int same_key(struct ct_key *a, struct ct_key *b)
{
	__u32 *x = (__u32 *)a, *y = (__u32 *)b;

	return x[0] == y[0] && x[1] == y[1] && x[2] == y[2] && x[3] == y[3];
}

/* cache_fill remembers a ct entry on this CPU for the current epoch. */
static __always_inline void cache_fill(struct flow_cache_slot *fc, struct ct_key *k,
				       struct ct_value *v, __u32 epoch)
{
	if (!fc)
		return;
	fc->key = *k;
	fc->val = *v;
	fc->epoch = epoch;
	fc->valid = 1;
}

static __always_inline __u32 current_epoch(struct pkt *p)
{
	__u32 zero = 0;
	__u32 *e = bpf_map_lookup_elem(&epoch, &zero);
	LK_COUNT(&p->lk, LK_EPOCH);
	return e ? *e : 0;
}

/* remote_peer resolves the identity of the address at the other end of the flow. */
static __always_inline void remote_peer(__u32 addr, struct peer *r, struct pkt *p)
{
	struct ipcache_key k = { .prefixlen = 32, .addr = addr };
	struct ipcache_value *v;

	r->ep_id = 0;
	if (!cfg_layout_cilium) {
		struct endpoint *ep = bpf_map_lookup_elem(&lxc, &addr);
		LK_COUNT(&p->lk, LK_LXC);
		if (ep) {
			r->identity = ep->identity;
			r->cidr_identity = ep->cidr_identity;
			r->ep_id = ep->ep_id;
			return;
		}
	}
	v = bpf_map_lookup_elem(&ipcache, &k);
	LK_COUNT(&p->lk, LK_IPCACHE);
	if (v) {
		r->identity = v->identity;
		r->cidr_identity = v->cidr_identity;
	} else {
		r->identity = 2; /* world */
		r->cidr_identity = 2;
	}
}

static __always_inline int is_pod_identity(__u32 id)
{
	return id >= 256 && id <= 65535;
}

/* check_peer reports whether rule set rs allows the packet from/to one peer identity. */
static __always_inline int check_peer(__u32 rs, __u32 id, struct pkt *p, int egress,
				      __u32 remote_addr, struct peer *r)
{
	struct summary_key sk = { .rs = rs, .peer = id };
	struct summary *s = bpf_map_lookup_elem(&policy_summary, &sk);
	__u16 port;

	LK_COUNT(&p->lk, LK_SUMMARY);
	if (!s)
		return 0;
	if (s->any_proto)
		return 1;
	if (s->all_ports & p->pbit)
		return 1;
	if (!p->has_ports)
		return 0;
	port = bpf_ntohs(p->dport);
#pragma unroll
	for (int i = 0; i < SUMMARY_RANGES; i++) {
		if (i < s->nranges && s->ranges[i].proto == p->proto && port >= s->ranges[i].lo &&
		    port <= s->ranges[i].hi)
			return 1;
	}
	if (s->exact & p->pbit) {
		struct policy_key k = { .rs = rs, .peer = id, .proto = p->proto,
					.kind = POLICY_KIND_PORT, .port = port };
		LK_COUNT(&p->lk, LK_POLICY);
		if (bpf_map_lookup_elem(&policy, &k))
			return 1;
	}
	if (egress && (s->named & p->pbit)) {
		struct named_port_key nk = { .proto = p->proto, .port = port };
		struct named_port_value *nv;

		if (!r->ep_id) {
			/* Cilium layout: the remote pod's endpoint id is only needed here. */
			struct endpoint *ep = bpf_map_lookup_elem(&lxc, &remote_addr);
			LK_COUNT(&p->lk, LK_LXC);
			if (!ep)
				return 0;
			r->ep_id = ep->ep_id;
		}
		nk.ep_id = r->ep_id;
		nv = bpf_map_lookup_elem(&named_ports, &nk);
		LK_COUNT(&p->lk, LK_NAMED_PORTS);
		if (!nv)
			return 0;
#pragma unroll
		for (int i = 0; i < NAMES_PER_PORT; i++) {
			struct policy_key k = { .rs = rs, .peer = id, .proto = p->proto,
						.kind = POLICY_KIND_NAMED, .port = nv->names[i] };
			if (!nv->names[i])
				break;
			LK_COUNT(&p->lk, LK_POLICY);
			if (bpf_map_lookup_elem(&policy, &k))
				return 1;
		}
	}
	return 0;
}

/* policy_allows applies Cilium's fall-back order: the peer's own identity, then (for a pod)
 * the CIDR identity of its address, then the any-peer wildcard. flags (RS_HAS_*) skip the
 * fall-backs the rule set has no entries for. */
static __always_inline int policy_allows(__u32 rs, __u8 flags, struct pkt *p, int egress,
					 __u32 remote_addr, struct peer *r)
{
	if (check_peer(rs, r->identity, p, egress, remote_addr, r))
		return 1;
	if ((flags & (r->cidr_identity == 2 ? RS_HAS_WORLD : RS_HAS_CIDR)) &&
	    r->cidr_identity != r->identity &&
	    check_peer(rs, r->cidr_identity, p, egress, remote_addr, r))
		return 1;
	return (flags & RS_HAS_ANY) && check_peer(rs, 0, p, egress, remote_addr, r);
}

/* may_answer says whether a packet can be the reply of a tracked flow: any packet of TCP, UDP
 * or SCTP, but of ICMP only an echo reply (an echo request answers nothing). */
static __always_inline int may_answer(const struct pkt *p)
{
	return p->proto != PROTO_ICMP || p->icmp_reply;
}

/* enforce is the whole verdict for one direction at one local endpoint. */
static __always_inline int enforce(struct __sk_buff *skb, int egress)
{
	__u32 dir = egress ? DIR_EGRESS : DIR_INGRESS;
	struct pkt p = {};
	struct endpoint *ep;
	struct peer r;
	struct ct_key ck;
	struct ct_value *cv = 0;
	struct flow_cache_slot *fc = 0;
	__u8 src_is_a = 0, flags;
	__u32 local_addr, remote_addr, rs, ep_now = 0;
	int ret, use_ct;

	ret = parse(skb, &p);
	if (ret > 0)
		return allow(REASON_ALLOW_NOT_ENFORCED, dir, &p);
	if (ret < 0)
		return drop(REASON_DROP_MALFORMED, dir, &p, 0, 0, 0);

	/* Conntrack first: an established packet needs nothing else. A TCP SYN without ACK
	 * always opens a flow, so it skips the lookup and is policy-checked as new (a
	 * retransmitted SYN is checked again, which changes no verdict). */
	use_ct = cfg_ct_mode != 0 && (p.has_ports || p.proto == PROTO_ICMP);
	if (use_ct) {
		ct_key_of(&p, &ck, &src_is_a);
		ep_now = current_epoch(&p);
		if (!(p.proto == PROTO_TCP && (p.tcp_flags & 0x12) == 0x02)) {
			__u32 slot = flow_slot(&ck);

			/* The per-CPU cache answers most established packets without the ~30 ns
			 * hash lookup of `ct`; a stale or foreign slot falls through to `ct`. */
			if (cfg_flow_cache) {
				fc = bpf_map_lookup_elem(&flow_cache, &slot);
				LK_COUNT(&p.lk, LK_FLOW_CACHE);
			}
			if (fc && fc->valid && fc->epoch == ep_now && same_key(&fc->key, &ck)) {
				if (fc->val.origin_a != src_is_a) {
					if (may_answer(&p))
						return allow(REASON_ALLOW_REPLY, dir, &p);
				} else if ((egress ? fc->val.egress_epoch : fc->val.ingress_epoch) == ep_now) {
					return allow(REASON_ALLOW_ESTABLISHED, dir, &p);
				}
			}
			cv = bpf_map_lookup_elem(&ct, &ck);
			LK_COUNT(&p.lk, LK_CT);
		}
		if (cv) {
			if (cv->origin_a != src_is_a) {
				if (may_answer(&p)) {
					cache_fill(fc, &ck, cv, ep_now);
					return allow(REASON_ALLOW_REPLY, dir, &p);
				}
				/* From the other side but no answer (an ICMP request): a flow of its
				 * own, policy-checked as new; the entry belongs to the first flow. */
				cv = 0;
			} else if ((egress ? cv->egress_epoch : cv->ingress_epoch) == ep_now) {
				cache_fill(fc, &ck, cv, ep_now);
				return allow(REASON_ALLOW_ESTABLISHED, dir, &p);
			}
		}
	}

	local_addr = egress ? p.saddr : p.daddr;
	remote_addr = egress ? p.daddr : p.saddr;
	ep = bpf_map_lookup_elem(&lxc, &local_addr);
	LK_COUNT(&p.lk, LK_LXC);
	if (!ep)
		return allow(REASON_ALLOW_NOT_ENFORCED, dir, &p);
	if (p.saddr == p.daddr)
		return allow(REASON_ALLOW_SELF, dir, &p);

	rs = egress ? ep->egress_rs : ep->ingress_rs;
	flags = egress ? ep->egress_flags : ep->ingress_flags;
	if (rs == 0 && !cv && cfg_ct_mode != 2)
		return allow(REASON_ALLOW_NOT_ENFORCED, dir, &p);
	remote_peer(remote_addr, &r, &p);
	if (rs != 0 && !policy_allows(rs, flags, &p, egress, remote_addr, &r)) {
		if (cv) {
			bpf_map_delete_elem(&ct, &ck);
			LK_COUNT(&p.lk, LK_CT_DELETE);
			if (fc && same_key(&fc->key, &ck))
				fc->valid = 0;
		}
		if (egress)
			return drop(REASON_DROP_POLICY, dir, &p, ep->ep_id, ep->identity, r.identity);
		return drop(REASON_DROP_POLICY, dir, &p, ep->ep_id, r.identity, ep->identity);
	}

	if (cv) {
		/* A forward packet of a flow allowed again at the current epoch. */
		if (egress)
			cv->egress_epoch = ep_now;
		else
			cv->ingress_epoch = ep_now;
		cache_fill(fc, &ck, cv, ep_now);
		return allow(REASON_ALLOW_ESTABLISHED, dir, &p);
	}
	/* The program that decides last creates the entry: to_container always, from_container
	 * when the destination is not a local pod (to_container runs after it otherwise). A
	 * packet reaching to_container from a pod has passed that pod's from_container, so both
	 * epochs are current. */
	if (use_ct && cfg_ct_mode == 2 && (!egress || !is_pod_identity(r.identity))) {
		struct ct_value nv = { .origin_a = src_is_a };
		nv.egress_epoch = nv.ingress_epoch = ep_now;
		LK_COUNT(&p.lk, LK_CT_UPDATE);
		if (bpf_map_update_elem(&ct, &ck, &nv, BPF_NOEXIST) == 0) {
			/* A SYN skipped the cache lookup: find its slot now. */
			if (!fc && cfg_flow_cache) {
				__u32 slot = flow_slot(&ck);
				fc = bpf_map_lookup_elem(&flow_cache, &slot);
				LK_COUNT(&p.lk, LK_FLOW_CACHE);
			}
			cache_fill(fc, &ck, &nv, ep_now);
		}
	}
	return allow(rs == 0 ? REASON_ALLOW_NOT_ENFORCED : REASON_ALLOW_NEW, dir, &p);
}

SEC("tc")
int to_container(struct __sk_buff *skb)
{
	return enforce(skb, 0);
}

SEC("tc")
int from_container(struct __sk_buff *skb)
{
	return enforce(skb, 1);
}

/* The floor of BenchmarkFloor: the same program type and run path, doing nothing. */
SEC("tc")
int empty(struct __sk_buff *skb)
{
	return TC_ACT_OK;
}
