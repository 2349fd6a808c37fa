package iptables

import (
	"fmt"
	"os"
	"sync"
	"sync/atomic"
	"testing"

	"netpolbench/internal/netns"
	"netpolbench/internal/testenv"
)

var netnsSeq atomic.Int64

// needKernel skips (fails under CI) unless the test can create network namespaces and run the
// mode's tools; the kernel tables are skipped in -short mode.
func needKernel(t testing.TB, mode Mode) {
	t.Helper()
	testenv.Long(t, "iptables kernel test")
	testenv.NeedKernel(t, Needs(mode)...)
}

// mustNetns creates a network namespace owned by the test and removes it when the test ends,
// also after a failure. Nothing the test does touches the root namespace.
func mustNetns(t testing.TB) *NetnsRunner {
	t.Helper()
	r, del := newNetns(t)
	t.Cleanup(del)
	return r
}

// newNetns creates a namespace and returns a runner in it and the function that removes both
// (safe to call twice).
func newNetns(t testing.TB) (*NetnsRunner, func()) {
	t.Helper()
	name := fmt.Sprintf("npb-ipt-%d-%d", os.Getpid(), netnsSeq.Add(1))
	ns, err := netns.Create(name)
	if err != nil {
		t.Fatal(err)
	}
	ns.Close()
	del := func() {
		if err := netns.Delete(name); err != nil {
			t.Error(err)
		}
	}
	r, err := NewNetnsRunner(name)
	if err != nil {
		del()
		t.Fatal(err)
	}
	var once sync.Once
	return r, func() { once.Do(func() { r.Close(); del() }) }
}

// target is where a table of cases runs: the fake, or the kernel in a fresh namespace.
type target struct {
	name   string
	mode   Mode
	kernel bool
}

func targets() []target {
	return []target{{"fake", ModeNFT, false}, {"kernel-nft", ModeNFT, true}, {"kernel-legacy", ModeLegacy, true}}
}

// open returns a runner for the target; kernel targets skip without root.
func (tg target) open(t testing.TB) Runner {
	t.Helper()
	if !tg.kernel {
		return NewFake()
	}
	needKernel(t, tg.mode)
	return mustNetns(t)
}

// snapshot reads the filter table and the sets back (iptables-save, ipset save) and loads them
// into a fresh Fake, so kernel state can be compared with the fake's and traced.
func snapshot(t testing.TB, r Runner, mode Mode) *Fake {
	t.Helper()
	rules, stderr, err := r.Run(mode.Binary("save"), []string{"-t", "filter"}, nil)
	if err != nil {
		t.Fatalf("save rules: %v: %s", err, stderr)
	}
	sets, stderr, err := r.Run("ipset", []string{"save"}, nil)
	if err != nil {
		t.Fatalf("save sets: %v: %s", err, stderr)
	}
	f := NewFake()
	if _, stderr, err := f.Run("ipset", []string{"restore"}, sets); err != nil {
		t.Fatalf("load saved sets into the fake: %v: %s", err, stderr)
	}
	if len(rules) == 0 {
		return f
	}
	if _, stderr, err := f.Run("iptables-restore", nil, rules); err != nil {
		t.Fatalf("load saved rules into the fake: %v: %s\n%s", err, stderr, rules)
	}
	return f
}
