package iptables

import (
	"errors"
	"strconv"
	"testing"
)

// TestNetnsRunnerRefusesTheRootNamespace checks the guard: the namespace the process runs in
// (and PID 1's) is never a target.
func TestNetnsRunnerRefusesTheRootNamespace(t *testing.T) {
	for _, path := range []string{"/proc/self/ns/net", "/proc/thread-self/ns/net"} {
		t.Run(path, func(t *testing.T) {
			r, err := NewNetnsRunner(path)
			if err == nil {
				r.Close()
				t.Fatal("runner opened the process's own namespace")
			}
			if !errors.Is(err, ErrRootNamespace) {
				t.Fatalf("error %v, want ErrRootNamespace", err)
			}
		})
	}
}

// TestNetnsRunnerEntersTheTargetAndComesBack checks that commands and Go code run in the target
// namespace, and that the caller's namespace is the same afterwards.
func TestNetnsRunnerEntersTheTargetAndComesBack(t *testing.T) {
	needKernel(t, ModeNFT)
	before, err := nsInode("/proc/self/ns/net")
	if err != nil {
		t.Fatal(err)
	}
	r := mustNetns(t)
	target, err := nsInode(r.Path())
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 3; i++ {
		var inside uint64
		if err := r.Do(func() error {
			var err error
			inside, err = nsInode("/proc/thread-self/ns/net")
			return err
		}); err != nil {
			t.Fatal(err)
		}
		if inside != target {
			t.Fatalf("Do ran in namespace %d, want %d", inside, target)
		}
	}
	out, _, err := r.Run("readlink", []string{"/proc/self/ns/net"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if want := "net:[" + strconv.FormatUint(target, 10) + "]\n"; string(out) != want {
		t.Errorf("command ran in %q, want %q", out, want)
	}
	after, err := nsInode("/proc/self/ns/net")
	if err != nil {
		t.Fatal(err)
	}
	if after != before {
		t.Errorf("the process's namespace changed from %d to %d", before, after)
	}
}
