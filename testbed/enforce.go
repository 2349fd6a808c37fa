package testbed

import (
	"errors"
	"fmt"
	"os/exec"
	"sort"
	"strings"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
	"golang.org/x/sys/unix"

	"netpolbench/policy"
)

// Enforcement is one backend in force in the testbed. Apply churn through Backend().Update;
// Close takes it out again and checks nothing of it is left.
type Enforcement struct {
	tb      *Testbed
	name    string
	backend policy.Backend
	detach  func() error
	closed  bool
}

// Backend is the backend in force.
func (e *Enforcement) Backend() policy.Backend { return e.backend }

// Name is the backend's name.
func (e *Enforcement) Name() string { return e.name }

// Enforce puts backend name in force in the node namespace: put installs it there (the
// backends themselves are package catalogue's) and returns it with the function that takes it
// out again. Only one backend may be in force at a time: Enforce checks that nothing of
// another is present before it calls put, and flushes the node's conntrack table, so no
// earlier connection decides a probe. Where backends go: eBPF on the node side of every pod
// veth (TCX ingress and egress, clsact filters on kernels before 6.6), iptables and ipset in
// the node's FORWARD path.
func (tb *Testbed) Enforce(name string, put func() (policy.Backend, func() error, error)) (*Enforcement, error) {
	if err := tb.VerifyNoEnforcement(); err != nil {
		return nil, fmt.Errorf("enforce %s: %w", name, err)
	}
	if err := tb.FlushConntrack(); err != nil {
		return nil, fmt.Errorf("enforce %s: %w", name, err)
	}
	b, detach, err := put()
	if err != nil {
		return nil, err
	}
	return &Enforcement{tb: tb, name: name, backend: b, detach: detach}, nil
}

// Close takes the backend out of the testbed (detaches the programs, removes the rules and
// sets) and verifies that nothing of any backend is left.
func (e *Enforcement) Close() error {
	if e.closed {
		return nil
	}
	e.closed = true
	if err := e.detach(); err != nil {
		return fmt.Errorf("remove %s: %w", e.name, err)
	}
	if err := e.tb.tcxGone(); err != nil {
		return fmt.Errorf("remove %s: %w", e.name, err)
	}
	if err := e.tb.VerifyNoEnforcement(); err != nil {
		return fmt.Errorf("remove %s: %w", e.name, err)
	}
	return nil
}

// VerifyNoEnforcement checks the node namespace holds no backend: no TCX program on any
// veth, no iptables rule or chain beyond the empty built-in ones in either binary flavour, no
// ipset.
func (tb *Testbed) VerifyNoEnforcement() error {
	found, err := tb.tcxPrograms()
	if err != nil {
		return fmt.Errorf("verify no enforcement: %w", err)
	}
	for _, save := range []string{"iptables-nft-save", "iptables-legacy-save"} {
		if _, err := exec.LookPath(save); err != nil {
			continue
		}
		out, err := tb.RunInNode(save, nil, nil)
		if err != nil {
			return fmt.Errorf("verify no enforcement: %w", err)
		}
		if rules := iptablesLeftovers(out); len(rules) > 0 {
			found = append(found, fmt.Sprintf("%s: %s", save, strings.Join(rules, "; ")))
		}
	}
	if _, err := exec.LookPath("nft"); err == nil {
		out, err := tb.RunInNode("nft", []string{"list", "ruleset"}, nil)
		if err != nil {
			return fmt.Errorf("verify no enforcement: %w", err)
		}
		if rules := nftLeftovers(out); len(rules) > 0 {
			found = append(found, "nft: "+strings.Join(rules, "; "))
		}
	}
	if _, err := exec.LookPath("ipset"); err == nil {
		out, err := tb.RunInNode("ipset", []string{"list", "-n"}, nil)
		if err != nil {
			return fmt.Errorf("verify no enforcement: %w", err)
		}
		if sets := strings.Fields(string(out)); len(sets) > 0 {
			sort.Strings(sets)
			found = append(found, "ipsets: "+strings.Join(sets, " "))
		}
	}
	if len(found) > 0 {
		return fmt.Errorf("a backend is still in force in %s: %s", tb.NodeNamespace(), strings.Join(found, ", "))
	}
	return nil
}

func (tb *Testbed) tcxPrograms() ([]string, error) {
	var found []string
	veths := append(tb.PodVeths(), tb.OutsideVeth())
	err := tb.InNode(func() error {
		for _, v := range veths {
			for _, at := range []ebpf.AttachType{ebpf.AttachTCXIngress, ebpf.AttachTCXEgress} {
				res, err := link.QueryPrograms(link.QueryOptions{Target: v.Index, Attach: at})
				if errors.Is(err, ebpf.ErrNotSupported) || errors.Is(err, unix.EINVAL) {
					break // no TCX in this kernel: nothing can be attached there
				}
				if err != nil {
					return fmt.Errorf("query tcx programs on %s: %w", v.Name, err)
				}
				if n := len(res.Programs); n > 0 {
					found = append(found, fmt.Sprintf("%d tcx program(s) on %s %s", n, v.Name, at))
				}
			}
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	for _, v := range veths {
		l, err := tb.node.h.LinkByIndex(v.Index)
		if err != nil {
			return nil, fmt.Errorf("find %s: %w", v.Name, err)
		}
		qs, err := tb.node.h.QdiscList(l)
		if err != nil {
			return nil, fmt.Errorf("list qdiscs of %s: %w", v.Name, err)
		}
		for _, q := range qs {
			if q.Type() == "clsact" {
				found = append(found, "clsact qdisc (tc filters) on "+v.Name)
			}
		}
	}
	return found, nil
}

// tcxGone waits until no TCX program is attached in the node namespace. Closing a link's last
// file descriptor releases it from a kernel work queue, so the detach lands a moment after
// Close returns; the wait is bounded (5 s).
func (tb *Testbed) tcxGone() error {
	deadline := time.Now().Add(5 * time.Second)
	for {
		found, err := tb.tcxPrograms()
		if err != nil || len(found) == 0 {
			return err
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("programs still attached 5 s after detach: %s", strings.Join(found, ", "))
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// iptablesLeftovers returns the rules and non-built-in chains in iptables-save output. Built-in
// chains with policy ACCEPT are the empty state; so is a table with nothing else.
func iptablesLeftovers(save []byte) []string {
	var out []string
	for _, line := range strings.Split(string(save), "\n") {
		line = strings.TrimSpace(line)
		switch {
		case line == "", line[0] == '#', line[0] == '*', line == "COMMIT":
		case line[0] == ':':
			f := strings.Fields(line[1:])
			if len(f) >= 2 && isBuiltinChain(f[0]) && f[1] == "ACCEPT" {
				continue
			}
			out = append(out, line)
		default:
			out = append(out, line)
		}
	}
	return out
}

// nftLeftovers returns the rules and dropping chain policies in `nft list ruleset` output.
// Tables and chains that iptables-nft leaves behind, empty and accepting, are the empty state.
func nftLeftovers(list []byte) []string {
	var out []string
	for _, line := range strings.Split(string(list), "\n") {
		line = strings.TrimSpace(line)
		switch {
		case line == "", line == "}", line[0] == '#',
			strings.HasPrefix(line, "table "), strings.HasPrefix(line, "chain "):
		case strings.HasPrefix(line, "type "):
			if !strings.Contains(line, "policy accept") {
				out = append(out, line)
			}
		default:
			out = append(out, line)
		}
	}
	return out
}

func isBuiltinChain(c string) bool {
	switch c {
	case "INPUT", "FORWARD", "OUTPUT", "PREROUTING", "POSTROUTING":
		return true
	}
	return false
}
