/* Minimal declarations for the stamp programs: just the helpers, kernel types and map macros
 * they use, so the build needs no libbpf headers. Kernel struct fields are read through CO-RE
 * (preserve_access_index), so only the fields named here must exist in the running kernel. */
#pragma once

typedef unsigned char __u8;
typedef unsigned short __u16;
typedef unsigned int __u32;
typedef unsigned long long __u64;
typedef int __s32;
typedef __u16 __be16;
typedef __u32 __be32;

#define SEC(name) __attribute__((section(name), used))
#define __always_inline inline __attribute__((always_inline))
#define __uint(name, val) int(*name)[val]
#define __type(name, val) typeof(val) *name
#define __ksym __attribute__((section(".ksyms")))

enum {
	BPF_MAP_TYPE_HASH = 1,
	BPF_MAP_TYPE_PERCPU_ARRAY = 6,
	BPF_MAP_TYPE_LRU_HASH = 9,
	BPF_MAP_TYPE_RINGBUF = 27,
};

static void *(*bpf_map_lookup_elem)(void *map, const void *key) = (void *)1;
static long (*bpf_map_update_elem)(void *map, const void *key, const void *value, __u64 flags) = (void *)2;
static long (*bpf_map_delete_elem)(void *map, const void *key) = (void *)3;
static __u64 (*bpf_ktime_get_ns)(void) = (void *)5;
static long (*bpf_probe_read_kernel)(void *dst, __u32 size, const void *unsafe_ptr) = (void *)113;
static long (*bpf_ringbuf_output)(void *ringbuf, void *data, __u64 size, __u64 flags) = (void *)130;

/* bpf_cast_to_kern_ctx (kernel >= 6.3) turns a tc program's __sk_buff into the kernel's
 * sk_buff, so TCX and netfilter stamps and the kfree_skb tracepoint key packets alike. */
extern void *bpf_cast_to_kern_ctx(void *obj) __ksym;

struct __sk_buff {
	__u32 len;
	__u32 pkt_type;
	__u32 mark;
	__u32 queue_mapping;
	__u32 protocol;
};

struct sk_buff {
	unsigned int len;
	unsigned char *head;
	__u16 network_header;
} __attribute__((preserve_access_index));

struct bpf_nf_ctx {
	const void *state;
	struct sk_buff *skb;
} __attribute__((preserve_access_index));

#define TCX_NEXT -1
#define TCX_DROP 2
#define NF_DROP 0
#define NF_ACCEPT 1
#define ETH_P_IP_BE 0x0008 /* htons(0x0800) on little-endian targets */
