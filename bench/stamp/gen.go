package stamp

//go:generate go tool bpf2go -cc $BPF_CLANG -cflags $BPF_CFLAGS -target bpfel -go-package stamp stamp ../../bpf/stamp/stamp.c -- -I../../bpf/stamp
