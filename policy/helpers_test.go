package policy

import (
	"fmt"
	"net/netip"
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

// canonical is State.Canonical, short for the tests that compare states.
func canonical(s *State) string { return s.Canonical() }

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

func mustAddr(s string) netip.Addr { return netip.MustParseAddr(s) }
