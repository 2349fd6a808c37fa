package testbed

import (
	"context"
	"strings"
	"testing"
	"time"

	"netpolbench/internal/needs"
	"netpolbench/internal/testenv"
	"netpolbench/policy"
	"netpolbench/policy/policytest"
)

// realProbeOpts keeps a table's denied probes to about one timeout of wall time.
var realProbeOpts = ProbeOptions{Timeout: 200 * time.Millisecond, ConfirmTimeout: 600 * time.Millisecond, Concurrency: 512}

func smallState(t *testing.T) *policy.State {
	t.Helper()
	cl, err := policytest.Cases[0].Cluster()
	if err != nil {
		t.Fatalf("model cluster: %v", err)
	}
	comp, err := policy.Compile(cl, policy.Options{})
	if err != nil {
		t.Fatalf("compile: %v", err)
	}
	return comp.State()
}

// TestBrokenForwardingIsAFaultNotADeny drops everything in the node (as a broken testbed or a
// backend that drops what it must not would) and expects ProbeVerdicts to fail on its control
// flows instead of reporting denies.
func TestBrokenForwardingIsAFaultNotADeny(t *testing.T) {
	testenv.NeedKernel(t, needs.Tool("nft", "nftables"))
	tb := ForTest(t, Options{})
	s := smallState(t)
	flows := []policy.Flow{flow(policytest.PodIP("x", "a"), policytest.PodIP("y", "b"), policy.ProtoTCP, 80)}
	if _, err := tb.ProbeVerdicts(context.Background(), s, flows, realProbeOpts); err != nil {
		t.Fatalf("probe with forwarding intact: %v", err)
	}
	if _, err := tb.RunInNode("nft", []string{"-f", "-"}, []byte("table inet npbtest {\n chain dropall {\n  type filter hook forward priority 0; policy drop;\n }\n}\n")); err != nil {
		t.Fatal(err)
	}
	_, err := tb.ProbeVerdicts(context.Background(), s, flows, realProbeOpts)
	if err == nil || !strings.Contains(err.Error(), "testbed fault") {
		t.Errorf("probe with forwarding broken: err = %v, want a testbed fault", err)
	}
}
