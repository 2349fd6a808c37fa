package owner

import (
	"fmt"
	"os"
	"os/exec"
	"slices"
	"strings"
	"testing"
)

func TestANameCarriesItsMakersPID(t *testing.T) {
	for _, what := range []string{"", "agent"} {
		a, err := Name("npb-", what)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := Name("npb-", what)
		if a == b || !strings.HasPrefix(a, Pattern("npb-")) {
			t.Errorf("Name(%q) = %q and %q: want two names starting %q", what, a, b, Pattern("npb-"))
		}
		if pid, ok := PID(a, "npb-"); !ok || pid != os.Getpid() {
			t.Errorf("PID(%q) = %d, %v; want %d", a, pid, ok, os.Getpid())
		}
	}
}

func TestPIDFromNames(t *testing.T) {
	for _, c := range []struct {
		name string
		pid  int
		ok   bool
	}{
		{"npb-1234-a1b2c3-node", 1234, true},
		{"npb-ipt-3904-12", 3904, true},
		{"npb-stamptest-77-ff00", 77, true},
		{"npb-node", 0, false},
		{"npb--x", 0, false},
		{"other-1234-node", 0, false},
		{"npb-0-x", 0, false},
	} {
		pid, ok := PID(c.name, "npb-")
		if pid != c.pid || ok != c.ok {
			t.Errorf("PID(%q) = %d, %v; want %d, %v", c.name, pid, ok, c.pid, c.ok)
		}
	}
}

func TestAliveTellsARunningProcessFromAnEndedOne(t *testing.T) {
	if !Alive(os.Getpid()) {
		t.Fatal("this process is not alive")
	}
	cmd := exec.Command("true")
	if err := cmd.Run(); err != nil {
		t.Skipf("cannot run true: %v", err)
	}
	if Alive(cmd.Process.Pid) {
		t.Errorf("pid %d of an ended, reaped child is alive", cmd.Process.Pid)
	}
}

func TestStaleOnlyWhenTheMakerIsKnownAndGone(t *testing.T) {
	gone := exec.Command("true")
	if err := gone.Run(); err != nil {
		t.Fatal(err)
	}
	live := MakerOf(Pattern("npb-")+"x", "npb-")
	dead := MakerOf(fmt.Sprintf("npb-%d-x", gone.Process.Pid), "npb-")
	unnamed := MakerOf("npb-node", "npb-")
	if !live.Live || live.PID != os.Getpid() || dead.Live || unnamed != (Maker{}) {
		t.Fatalf("makers: live %+v dead %+v unnamed %+v", live, dead, unnamed)
	}
	for _, c := range []struct {
		m         Maker
		all, want bool
	}{
		{live, false, false}, {live, true, true},
		{dead, false, true}, {dead, true, true},
		{unnamed, false, false}, {unnamed, true, true},
	} {
		if got := c.m.Stale(c.all); got != c.want {
			t.Errorf("%+v.Stale(%v) = %v, want %v", c.m, c.all, got, c.want)
		}
	}
}

type fakeLeftover struct {
	name string
	Maker
}

func TestRemoveTakesOnlyStaleLeftoversAndKeepsGoingAfterAFailure(t *testing.T) {
	left := []fakeLeftover{
		{"live", Maker{PID: os.Getpid(), Live: true}},
		{"dead", Maker{PID: 1 << 30}},
		{"stuck", Maker{PID: 1<<30 + 1}},
		{"dead2", Maker{PID: 1<<30 + 2}},
		{"unnamed", Maker{}},
	}
	var tried []string
	removed, err := Remove(left, false, func(l fakeLeftover) (string, error) {
		tried = append(tried, l.name)
		if l.name == "stuck" {
			return "", fmt.Errorf("remove %s: busy", l.name)
		}
		return l.name, nil
	})
	if want := []string{"dead", "stuck", "dead2"}; !slices.Equal(tried, want) {
		t.Errorf("tried %v, want %v", tried, want)
	}
	if want := []string{"dead", "dead2"}; !slices.Equal(removed, want) {
		t.Errorf("removed %v, want %v", removed, want)
	}
	if err == nil || !strings.Contains(err.Error(), "stuck") {
		t.Errorf("error %v, want the stuck leftover's", err)
	}
	all, err := Remove(left, true, func(l fakeLeftover) (string, error) { return l.name, nil })
	if err != nil || len(all) != len(left) {
		t.Errorf("with all: removed %v, %v; want every leftover", all, err)
	}
}
