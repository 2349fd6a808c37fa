package datapath

// The include path names Debian's multiarch directory for <asm/types.h>; the object is
// stripped of DWARF (bpf2go's default), which keeps it byte-for-byte reproducible.
//go:generate go tool bpf2go -cc ${BPF_CLANG} -cflags "${BPF_CFLAGS} -I/usr/include/x86_64-linux-gnu" -target bpfel -type endpoint -type ipcache_key -type ipcache_value -type policy_key -type summary_key -type summary -type named_port_key -type named_port_value -type ct_key -type ct_value -type flow_cache_slot -type metrics_value -type drop_event bpf ../bpf/policy.c
