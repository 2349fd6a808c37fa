package policy

import (
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"testing"
)

func mustCompile(t *testing.T, c *Cluster) *Compiler {
	t.Helper()
	comp, err := Compile(c, Options{})
	if err != nil {
		t.Fatal(err)
	}
	return comp
}

// canonical renders what enforcement depends on, independent of id numbering: per endpoint,
// its identity labels and the entries of both directions with peers as labels.
func canonical(s *State) string {
	name := func(id Identity) string {
		if info, ok := s.Identity(id); ok {
			return shortLabels(info.Labels)
		}
		return id.String()
	}
	var b strings.Builder
	eps := s.Endpoints()
	slices.SortFunc(eps, func(a, b *Endpoint) int { return strings.Compare(a.Pod.Key(), b.Pod.Key()) })
	for _, ep := range eps {
		info, _ := s.Identity(ep.Identity)
		fmt.Fprintf(&b, "%s %s\n", ep.Pod.Key(), shortLabels(info.Labels))
		for _, set := range []RuleSetID{ep.Ingress, ep.Egress} {
			if set == RuleSetAllowAll {
				b.WriteString("  allow-all\n")
				continue
			}
			rs, ok := s.RuleSet(set)
			if !ok {
				fmt.Fprintf(&b, "  MISSING SET %d\n", set)
				continue
			}
			var lines []string
			for _, e := range rs.Entries {
				e2 := e
				e2.Peer = 0
				lines = append(lines, name(e.Peer)+" "+e2.String())
			}
			slices.Sort(lines)
			fmt.Fprintf(&b, "  %s %s\n", rs.Direction, strings.Join(lines, "; "))
		}
	}
	return b.String()
}

// firstDiff shows the first differing line of two renderings, and its neighbours.
func firstDiff(got, want string) string {
	g, w := strings.Split(got, "\n"), strings.Split(want, "\n")
	for i := 0; i < max(len(g), len(w)); i++ {
		var gl, wl string
		if i < len(g) {
			gl = g[i]
		}
		if i < len(w) {
			wl = w[i]
		}
		if gl != wl {
			lo := max(0, i-2)
			return fmt.Sprintf("line %d:\n got: %s\nwant: %s\ncontext (got):\n%s", i, gl, wl, strings.Join(g[lo:min(len(g), i+1)], "\n"))
		}
	}
	return "(no difference)"
}

func shortLabels(l []string) string {
	var out []string
	for _, s := range l {
		if strings.HasPrefix(s, "k8s:io.cilium.k8s.namespace.labels.") {
			continue
		}
		s = strings.TrimPrefix(s, "k8s:")
		s = strings.TrimPrefix(s, "io.kubernetes.pod.namespace=")
		out = append(out, s)
	}
	return "{" + strings.Join(out, ",") + "}"
}

func mustAddr(s string) netip.Addr { return netip.MustParseAddr(s) }
