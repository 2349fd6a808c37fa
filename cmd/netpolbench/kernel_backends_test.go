package main

import (
	"encoding/json"
	"os"
	"strings"
	"testing"

	"netpolbench/catalogue"
	"netpolbench/datapath"
	"netpolbench/internal/testenv"
)

// TestVerdictKernelBackendsAgreeWithReference runs the verdict command with every backend that
// decides without real packets: the eBPF programs through BPF_PROG_TEST_RUN in both layouts,
// and the iptables, ipset and nftables rules through their tracers.
func TestVerdictKernelBackendsAgreeWithReference(t *testing.T) {
	testenv.NeedKernel(t, catalogue.NeedsOf(true, "ebpf", "iptables", "ipset", "nftables")...)
	cluster, probes := modelFiles(t)
	for _, layout := range []string{"hash", "cilium"} {
		out, code := run(t, "verdict", "-f", cluster, "--probes", probes, "--backends", "reference,compiled,ebpf,iptables,ipset,nftables", "--layout", layout, "-o", "json")
		if code != 0 {
			t.Fatalf("layout %s: exit %d:\n%s", layout, code, out)
		}
		var got verdictOutput
		if err := json.Unmarshal([]byte(out), &got); err != nil {
			t.Fatal(err)
		}
		for _, p := range got.Probes {
			if len(p.Verdicts) != 6 {
				t.Fatalf("probe %+v lacks a backend's verdict", p)
			}
		}
	}
}

// TestMonitorPrintsPolicyDrops checks that a denied probe shows up as a decoded drop event.
func TestMonitorPrintsPolicyDrops(t *testing.T) {
	testenv.NeedKernel(t, datapath.Needs...)
	cluster, probes := modelFiles(t)
	out, code := run(t, "monitor", "-f", cluster, "--probes", probes)
	if code != 0 {
		t.Fatalf("exit %d:\n%s", code, out)
	}
	// Two probes are denied at x/a's ingress: y/a and 203.0.113.10 to x/a port 80.
	if n := strings.Count(out, "drop (Policy denied) to endpoint"); n != 2 {
		t.Errorf("%d policy drops printed, want 2:\n%s", n, out)
	}
	if !strings.Contains(out, "198.18.0.17") || !strings.Contains(out, "203.0.113.10") {
		t.Errorf("drops do not name the denied sources:\n%s", out)
	}
}

// TestVerdictRealPacketsSkipsSCTPAndAgrees sends the probes as real packets through the
// testbed, once per kernel backend; the SCTP probe is left out with a warning.
func TestVerdictRealPacketsSkipsSCTPAndAgrees(t *testing.T) {
	testenv.NeedKernel(t, catalogue.NeedsOf(false, "ebpf", "iptables", "ipset", "nftables")...)
	cluster, probes := modelFiles(t)
	b, err := os.ReadFile(probes)
	if err != nil {
		t.Fatal(err)
	}
	withSCTP := probes + ".sctp.yaml"
	if err := os.WriteFile(withSCTP, append(b, []byte("  - {from: x/b, to: x/a, port: 80, protocol: SCTP}\n")...), 0o644); err != nil {
		t.Fatal(err)
	}
	out, code := run(t, "verdict", "-f", cluster, "--probes", withSCTP, "--backends", "reference,ebpf,iptables,ipset,nftables", "--real-packets", "-o", "json")
	if code != 0 {
		t.Fatalf("exit %d:\n%s", code, out)
	}
	var got verdictOutput
	if err := json.Unmarshal([]byte(out), &got); err != nil {
		t.Fatal(err)
	}
	if len(got.Probes) != 4 || !got.Agree {
		t.Fatalf("%d probes (want the 4 non-SCTP ones), agree=%v", len(got.Probes), got.Agree)
	}
}
