package nftables

import (
	"fmt"
	"os"
	"os/exec"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"netpolbench/internal/faults"
	"netpolbench/internal/netns"
	"netpolbench/internal/testenv"
)

var netnsSeq atomic.Int64

// needKernel skips (fails under CI) unless the test can create network namespaces and run
// nft; kernel tests are skipped in -short mode.
func needKernel(t testing.TB) {
	t.Helper()
	testenv.Long(t, "nftables kernel test")
	testenv.NeedKernel(t, Needs...)
}

// newNetns creates a network namespace owned by the test and returns a handle on it and the
// function that removes it (safe to call twice). Nothing the test does touches the root
// namespace.
func newNetns(t testing.TB) (*netns.NS, func()) {
	t.Helper()
	name := fmt.Sprintf("npb-nft-%d-%d", os.Getpid(), netnsSeq.Add(1))
	ns, err := netns.Create(name)
	if err != nil {
		t.Fatal(err)
	}
	var once sync.Once
	return ns, func() {
		once.Do(func() {
			ns.Close()
			if err := netns.Delete(name); err != nil {
				t.Error(err)
			}
		})
	}
}

// mustKernel opens the table in a fresh namespace the test owns, removed when it ends.
func mustKernel(t testing.TB, opts KernelOptions) (Namespace, *Backend) {
	t.Helper()
	needKernel(t)
	ns, del := newNetns(t)
	t.Cleanup(del)
	nft, err := NewKernel(ns, opts)
	if err != nil {
		t.Fatal(err)
	}
	return ns, mustBackend(t, Config{NFT: nft})
}

// mustKernelRuleset reads the kernel's table back.
func mustKernelRuleset(t testing.TB, ns Namespace) *ruleset {
	t.Helper()
	rs, err := kernelRuleset(ns)
	if err != nil {
		t.Fatalf("read the kernel's table: %v", err)
	}
	return rs
}

// sameAsFake fails when the kernel's table differs from the fake's.
func sameAsFake(t *testing.T, when string, ns Namespace, f *Fake) *ruleset {
	t.Helper()
	k := mustKernelRuleset(t, ns)
	if got, want := k.canonical(), f.canonical(); got != want {
		t.Fatalf("%s: the kernel's table differs from the fake's (- fake, + kernel):\n%s", when, faults.Diff(want, got))
	}
	return k
}

// runNft applies nft input in the calling thread's namespace.
func runNft(input string) error {
	cmd := exec.Command("nft", "-f", "-")
	cmd.Stdin = strings.NewReader(input)
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("%w: %s", err, out)
	}
	return nil
}
