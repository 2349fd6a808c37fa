// Package stamp loads the stamp programs of bpf/stamp: BPF programs that time a backend's
// enforcement step on real packets from just before to just after it.
package stamp

//go:generate go tool bpf2go -cc $BPF_CLANG -cflags $BPF_CFLAGS -target bpfel -go-package stamp stamp ../../bpf/stamp/stamp.c -- -I../../bpf/stamp
