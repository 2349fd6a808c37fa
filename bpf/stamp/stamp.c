//go:build ignore

/* Stamp programs: they time the enforcement step of a backend from the outside, on real
 * packets. A "before" program runs just ahead of the enforcement step and stores the packet's
 * sk_buff address and bpf_ktime_get_ns() in a per-CPU slot; the matching "after" program runs
 * just behind it and emits the difference. A packet the step drops never reaches "after": the
 * kfree_skb tracepoint closes it with the kernel's drop reason.
 *
 * A per-CPU slot (not a hash keyed by packet) keeps the stamps' own cost, the floor, small: the
 * step runs to completion on one CPU in softirq context, so nothing else is stamped on that CPU
 * between the two stamps. A nested packet would overwrite the slot; "after" then finds another
 * sk_buff and counts the sample as unpaired instead of guessing.
 *
 * Every span has a slot of its own, so spans may nest (the netfilter path around the filter
 * table) and one packet may be in several at once:
 *  - tcx-ingress / tcx-egress: head to tail of the TCX chain of a pod veth. Pod-to-pod packets
 *    in the eBPF datapath are enforced twice (the source's from_container on tcx ingress, the
 *    destination's to_container on tcx egress of another veth). The ingress part is carried in
 *    an LRU hash keyed by sk_buff until the egress stamp adds it, so a sample is the packet's
 *    whole enforcement cost, as with iptables' single FORWARD traversal.
 *  - nf-filter: FORWARD priority -2 to +2, the filter table alone.
 *  - nf-path: PREROUTING before defrag and conntrack to the head of the outgoing veth's TCX
 *    egress chain: everything the node does to a forwarded packet, nf_conntrack's lookup, entry
 *    creation and confirmation included (confirmation runs at POSTROUTING with the last
 *    priority a hook can have, so no netfilter hook could follow it).
 *
 * The step programs stand where enforcement stands when the floor is measured: they pass every
 * packet, or drop the ones whose length marks them (the traffic generator encodes in a new-flow
 * packet's length where the reference denies it), so floor drops end on kfree_skb as real drops
 * do. They read nothing but the context's length field. */

#include "stamp.h"

enum hook {
	HOOK_NF_FORWARD = 1, /* nf-filter span */
	HOOK_TCX_INGRESS = 2,
	HOOK_TCX_EGRESS = 3,
	HOOK_NF_PATH = 4, /* nf-path span */
};

enum slot_index {
	SLOT_TCX_INGRESS = 0,
	SLOT_TCX_EGRESS = 1,
	SLOT_NF_FILTER = 2,
	SLOT_NF_PATH = 3,
	SLOT_MAX = 4,
};

enum verdict {
	VERDICT_PASS = 0,
	VERDICT_DROP = 1,
};

struct slot {
	__u64 skb;
	__u64 ts;
	__u32 hook;
	__u32 pad;
};

struct slots {
	struct slot s[SLOT_MAX];
};

struct sample {
	__u64 delta_ns;  /* enforcement time, ns, all parts */
	__u64 carry_ns;  /* of which the tcx-ingress part, ns (0 when none) */
	__be32 saddr;
	__be32 daddr;
	__be16 sport;
	__be16 dport;
	__u8 proto;
	__u8 tcp_flags;
	__u8 hook;       /* enum hook of the last stamp */
	__u8 verdict;    /* enum verdict */
	__u32 reason;    /* enum skb_drop_reason for drops, else 0 */
	__u32 pad;
};

enum counter {
	CNT_STAMPED = 0,
	CNT_PASSED = 1,
	CNT_DROPPED = 2,
	CNT_UNPAIRED = 3,
	CNT_LOST = 4, /* ring buffer full */
	CNT_MAX = 5,
};

/* Set from Go before load: the pod range, so the tcx-ingress stamp knows whether a packet
 * goes on to a pod veth (carry) or leaves the pods (emit). Network byte order. */
volatile const __be32 pod_net = 0;
volatile const __be32 pod_mask = 0;

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct slots);
} slots SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 65536);
	__type(key, __u64);
	__type(value, __u64);
} carry SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, CNT_MAX);
	__type(key, __u32);
	__type(value, __u64);
} counters SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 1 << 24);
} samples SEC(".maps");

static __always_inline void count(__u32 which)
{
	__u64 *c = bpf_map_lookup_elem(&counters, &which);
	if (c)
		*c += 1;
}

static __always_inline void stamp(struct sk_buff *skb, __u32 idx, __u32 hook)
{
	__u32 zero = 0;
	struct slots *ss = bpf_map_lookup_elem(&slots, &zero);
	if (!ss)
		return;
	struct slot *s = &ss->s[idx & (SLOT_MAX - 1)];
	s->skb = (__u64)skb;
	s->hook = hook;
	s->ts = bpf_ktime_get_ns();
	count(CNT_STAMPED);
}

/* Reads the 5-tuple and TCP flags after the delta is taken, so parsing is not in the sample. */
static __always_inline void parse(struct sk_buff *skb, struct sample *out)
{
	struct {
		__u8 ver_ihl;
		__u8 tos;
		__be16 tot_len;
		__be16 id;
		__be16 frag;
		__u8 ttl;
		__u8 proto;
		__be16 csum;
		__be32 saddr;
		__be32 daddr;
	} ip;
	unsigned char *head = skb->head;
	__u16 nh = skb->network_header;
	if (bpf_probe_read_kernel(&ip, sizeof(ip), head + nh))
		return;
	out->saddr = ip.saddr;
	out->daddr = ip.daddr;
	out->proto = ip.proto;
	if (ip.frag & 0xff1f) /* non-first fragment: no ports */
		return;
	__u32 l4 = nh + (ip.ver_ihl & 0xf) * 4;
	__u8 hdr[14];
	if (ip.proto != 6 && ip.proto != 17 && ip.proto != 132)
		return;
	if (bpf_probe_read_kernel(hdr, sizeof(hdr), head + l4))
		return;
	out->sport = (__u16)hdr[0] | (__u16)hdr[1] << 8;
	out->dport = (__u16)hdr[2] | (__u16)hdr[3] << 8;
	if (ip.proto == 6)
		out->tcp_flags = hdr[13];
}

static __always_inline void emit(struct sk_buff *skb, struct sample *smp)
{
	parse(skb, smp);
	if (bpf_ringbuf_output(&samples, smp, sizeof(*smp), 0))
		count(CNT_LOST);
}

/* finish closes slot idx of skb at hook and returns the delta, or 0 when the slot holds
 * another packet. */
static __always_inline __u64 finish(struct sk_buff *skb, __u32 idx, __u32 hook, __u64 now)
{
	__u32 zero = 0;
	struct slots *ss = bpf_map_lookup_elem(&slots, &zero);
	if (!ss)
		return 0;
	struct slot *s = &ss->s[idx & (SLOT_MAX - 1)];
	if (s->skb != (__u64)skb || s->hook != hook || s->ts == 0 || now < s->ts) {
		count(CNT_UNPAIRED);
		return 0;
	}
	__u64 d = now - s->ts;
	s->skb = 0;
	s->ts = 0;
	return d ? d : 1;
}

SEC("netfilter")
int nf_before(struct bpf_nf_ctx *ctx)
{
	stamp(ctx->skb, SLOT_NF_FILTER, HOOK_NF_FORWARD);
	return NF_ACCEPT;
}

SEC("netfilter")
int nf_after(struct bpf_nf_ctx *ctx)
{
	__u64 now = bpf_ktime_get_ns();
	struct sk_buff *skb = ctx->skb;
	__u64 d = finish(skb, SLOT_NF_FILTER, HOOK_NF_FORWARD, now);
	if (!d)
		return NF_ACCEPT;
	struct sample smp = {.delta_ns = d, .hook = HOOK_NF_FORWARD, .verdict = VERDICT_PASS};
	count(CNT_PASSED);
	emit(skb, &smp);
	return NF_ACCEPT;
}

/* nf_path_before opens the nf-path span at PREROUTING, ahead of defrag and conntrack. */
SEC("netfilter")
int nf_path_before(struct bpf_nf_ctx *ctx)
{
	stamp(ctx->skb, SLOT_NF_PATH, HOOK_NF_PATH);
	return NF_ACCEPT;
}

/* nf_path_after closes the nf-path span at the head of the outgoing device's TCX egress chain. */
SEC("tcx/egress")
int nf_path_after(struct __sk_buff *ctx)
{
	__u64 now = bpf_ktime_get_ns();
	if (ctx->protocol != ETH_P_IP_BE)
		return TCX_NEXT;
	struct sk_buff *skb = bpf_cast_to_kern_ctx(ctx);
	__u64 d = finish(skb, SLOT_NF_PATH, HOOK_NF_PATH, now);
	if (!d)
		return TCX_NEXT;
	struct sample smp = {.delta_ns = d, .hook = HOOK_NF_PATH, .verdict = VERDICT_PASS};
	count(CNT_PASSED);
	emit(skb, &smp);
	return TCX_NEXT;
}

static __always_inline int tcx_before(struct __sk_buff *ctx, __u32 idx, __u32 hook)
{
	if (ctx->protocol != ETH_P_IP_BE)
		return TCX_NEXT;
	stamp(bpf_cast_to_kern_ctx(ctx), idx, hook);
	return TCX_NEXT;
}

SEC("tcx/ingress")
int tcx_ingress_before(struct __sk_buff *ctx)
{
	return tcx_before(ctx, SLOT_TCX_INGRESS, HOOK_TCX_INGRESS);
}

SEC("tcx/egress")
int tcx_egress_before(struct __sk_buff *ctx)
{
	return tcx_before(ctx, SLOT_TCX_EGRESS, HOOK_TCX_EGRESS);
}

SEC("tcx/ingress")
int tcx_ingress_after(struct __sk_buff *ctx)
{
	__u64 now = bpf_ktime_get_ns();
	if (ctx->protocol != ETH_P_IP_BE)
		return TCX_NEXT;
	struct sk_buff *skb = bpf_cast_to_kern_ctx(ctx);
	__u64 d = finish(skb, SLOT_TCX_INGRESS, HOOK_TCX_INGRESS, now);
	if (!d)
		return TCX_NEXT;
	struct sample smp = {.delta_ns = d, .carry_ns = d, .hook = HOOK_TCX_INGRESS};
	parse(skb, &smp);
	if ((smp.daddr & pod_mask) == pod_net) {
		/* A pod-bound packet meets the destination's program next: carry the part. */
		__u64 key = (__u64)skb;
		bpf_map_update_elem(&carry, &key, &d, 0);
		return TCX_NEXT;
	}
	count(CNT_PASSED);
	if (bpf_ringbuf_output(&samples, &smp, sizeof(smp), 0))
		count(CNT_LOST);
	return TCX_NEXT;
}

static __always_inline __u64 take_carry(struct sk_buff *skb)
{
	__u64 key = (__u64)skb;
	__u64 *c = bpf_map_lookup_elem(&carry, &key);
	if (!c)
		return 0;
	__u64 v = *c;
	bpf_map_delete_elem(&carry, &key);
	return v;
}

SEC("tcx/egress")
int tcx_egress_after(struct __sk_buff *ctx)
{
	__u64 now = bpf_ktime_get_ns();
	if (ctx->protocol != ETH_P_IP_BE)
		return TCX_NEXT;
	struct sk_buff *skb = bpf_cast_to_kern_ctx(ctx);
	__u64 d = finish(skb, SLOT_TCX_EGRESS, HOOK_TCX_EGRESS, now);
	if (!d)
		return TCX_NEXT;
	__u64 c = take_carry(skb);
	struct sample smp = {.delta_ns = d + c, .carry_ns = c, .hook = HOOK_TCX_EGRESS};
	count(CNT_PASSED);
	emit(skb, &smp);
	return TCX_NEXT;
}

/* close_dropped closes slot idx when it holds skb and emits the drop sample. */
static __always_inline void close_dropped(struct slots *ss, __u32 idx, struct sk_buff *skb,
					  __u32 reason, __u64 now)
{
	struct slot *s = &ss->s[idx & (SLOT_MAX - 1)];
	if (s->skb != (__u64)skb || s->ts == 0 || now < s->ts)
		return;
	__u32 hook = s->hook;
	__u64 d = now - s->ts;
	s->skb = 0;
	s->ts = 0;
	__u64 c = hook == HOOK_TCX_EGRESS ? take_carry(skb) : 0;
	struct sample smp = {
		.delta_ns = d + c,
		.carry_ns = c,
		.hook = hook,
		.verdict = VERDICT_DROP,
		.reason = reason,
	};
	count(CNT_DROPPED);
	emit(skb, &smp);
}

/* tp_btf/kfree_skb: (struct sk_buff *skb, void *location, enum skb_drop_reason reason,
 * struct sock *rx_sk) on 6.18; the first three arguments have been stable since 5.19. A packet
 * dropped inside nested spans (the filter table inside the netfilter path) closes each. */
SEC("tp_btf/kfree_skb")
int drop(__u64 *ctx)
{
	__u64 now = bpf_ktime_get_ns();
	struct sk_buff *skb = (struct sk_buff *)ctx[0];
	__u32 reason = (__u32)ctx[2];
	__u32 zero = 0;
	struct slots *ss = bpf_map_lookup_elem(&slots, &zero);
	if (!ss)
		return 0;
	close_dropped(ss, SLOT_TCX_INGRESS, skb, reason, now);
	close_dropped(ss, SLOT_TCX_EGRESS, skb, reason, now);
	close_dropped(ss, SLOT_NF_FILTER, skb, reason, now);
	close_dropped(ss, SLOT_NF_PATH, skb, reason, now);
	return 0;
}

/* The step programs: trivial enforcement steps for the floor and for tests. They drop packets
 * whose length is the configured marker of their position (0 drops nothing) and pass the rest
 * on; the TCX ingress step can also drop IPv4 TCP and UDP to step_drop_port (tests). A TCX
 * context's len includes the Ethernet header, a netfilter sk_buff's starts at the IP header:
 * the loader sets each in its own terms. */
volatile const __u16 step_drop_port = 0;     /* host byte order; 0 drops nothing */
volatile const __u32 step_drop_len_in = 0;   /* tcx ingress (the source's enforcement point) */
volatile const __u32 step_drop_len_out = 0;  /* tcx egress (the destination's) */
volatile const __u32 step_drop_len_nf_a = 0; /* netfilter step: either length drops */
volatile const __u32 step_drop_len_nf_b = 0;

static __always_inline int drops_port(struct __sk_buff *ctx)
{
	if (step_drop_port == 0 || ctx->protocol != ETH_P_IP_BE)
		return 0;
	struct sample smp = {};
	parse(bpf_cast_to_kern_ctx(ctx), &smp);
	return (smp.proto == 6 || smp.proto == 17) &&
	       smp.dport == (__u16)((step_drop_port >> 8) | (step_drop_port << 8));
}

SEC("tcx/ingress")
int step(struct __sk_buff *ctx)
{
	if (step_drop_len_in && ctx->len == step_drop_len_in)
		return TCX_DROP;
	if (drops_port(ctx))
		return TCX_DROP;
	return TCX_NEXT;
}

SEC("tcx/egress")
int step_out(struct __sk_buff *ctx)
{
	if (step_drop_len_out && ctx->len == step_drop_len_out)
		return TCX_DROP;
	return TCX_NEXT;
}

SEC("netfilter")
int nf_step(struct bpf_nf_ctx *ctx)
{
	__u32 len = ctx->skb->len;
	if ((step_drop_len_nf_a && len == step_drop_len_nf_a) ||
	    (step_drop_len_nf_b && len == step_drop_len_nf_b))
		return NF_DROP;
	return NF_ACCEPT;
}

char __license[] SEC("license") = "GPL";
