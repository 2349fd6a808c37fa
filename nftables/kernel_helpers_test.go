package nftables

import (
	"fmt"
	"os"
	"os/exec"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"netpolbench/internal/testenv"
	"netpolbench/iptables"
)

var netnsSeq atomic.Int64

// needKernel skips (fails under CI) unless the test can create network namespaces and run nft.
func needKernel(t testing.TB) {
	t.Helper()
	if testing.Short() {
		t.Skip("kernel tests skipped in -short mode")
	}
	if os.Geteuid() != 0 {
		testenv.Missing(t, "needs root (CAP_SYS_ADMIN and CAP_NET_ADMIN) to create a network namespace")
	}
	for _, bin := range []string{"ip", "nft"} {
		if _, err := exec.LookPath(bin); err != nil {
			testenv.Missing(t, "needs "+bin+" on PATH")
		}
	}
}

// newNetns creates a network namespace owned by the test and returns a runner in it and the
// function that removes both (safe to call twice). Nothing the test does touches the root
// namespace.
func newNetns(t testing.TB) (*iptables.NetnsRunner, func()) {
	t.Helper()
	name := fmt.Sprintf("npb-nft-%d-%d", os.Getpid(), netnsSeq.Add(1))
	if out, err := exec.Command("ip", "netns", "add", name).CombinedOutput(); err != nil {
		t.Fatalf("ip netns add %s: %v: %s", name, err, out)
	}
	del := func() {
		if out, err := exec.Command("ip", "netns", "del", name).CombinedOutput(); err != nil {
			t.Errorf("ip netns del %s: %v: %s", name, err, out)
		}
	}
	r, err := iptables.NewNetnsRunner(name)
	if err != nil {
		del()
		t.Fatal(err)
	}
	var once sync.Once
	return r, func() { once.Do(func() { r.Close(); del() }) }
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
		t.Fatalf("%s: the kernel's table differs from the fake's (- fake, + kernel):\n%s", when, diffLines(want, got))
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
