package memcg

import (
	"errors"
	"os"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"netpolbench/internal/netns"
	"netpolbench/internal/testenv"
)

func TestFindsTheMemoryControllersCgroupAndMount(t *testing.T) {
	const cg = `9:name=systemd:/
4:memory:/jobs/a b
2:cpu,cpuacct:/
0::/
`
	path, v2, err := memoryPath(strings.NewReader(cg))
	if err != nil || path != "/jobs/a b" || !v2 {
		t.Fatalf("memoryPath = %q, %v, %v", path, v2, err)
	}
	path, v2, err = memoryPath(strings.NewReader("0::/user.slice/session-1.scope\n"))
	if err != nil || path != "" || !v2 {
		t.Fatalf("a v2-only machine: memoryPath = %q, %v, %v", path, v2, err)
	}
	const mi = `31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
34 31 0:31 / /sys/fs/cgroup/cpuset rw,relatime - cgroup cgroup rw,cpuset
35 31 0:32 /jobs /sys/fs/cgroup/mem\040ory rw,relatime shared:9 - cgroup cgroup rw,memory
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
`
	root, mount, err := memoryMount(strings.NewReader(mi))
	if err != nil || root != "/jobs" || mount != "/sys/fs/cgroup/mem ory" {
		t.Fatalf("memoryMount = %q, %q, %v", root, mount, err)
	}
	if _, _, err := memoryMount(strings.NewReader(mi[:strings.Index(mi, "35 ")])); !errors.Is(err, ErrUnavailable) {
		t.Fatalf("no memory mount: %v, want ErrUnavailable", err)
	}
}

// mustGroup creates a group, or skips (fails under CI) where the machine has none.
func mustGroup(t *testing.T) *Group {
	t.Helper()
	testenv.NeedRoot(t)
	g, err := New(t.Name())
	if errors.Is(err, ErrUnavailable) {
		testenv.Missing(t, err.Error())
	}
	if err != nil {
		t.Fatal(err)
	}
	return g
}

// TestGroupChargesWhatItsThreadAllocatesAndIsRemoved: pipe buffers a joined thread fills are
// charged to the group while they live and uncharged when they are freed; the caller's own
// cgroup is left as it was, and Remove leaves nothing.
func TestGroupChargesWhatItsThreadAllocatesAndIsRemoved(t *testing.T) {
	g := mustGroup(t)
	own, err := ownDir()
	if err != nil {
		t.Fatal(err)
	}
	th, err := netns.Pin(nil, g.Join)
	if err != nil {
		g.Remove()
		t.Fatal(err)
	}
	base, err := g.KernelBytes()
	if err != nil {
		t.Fatal(err)
	}
	// 64 pipes of 64 KiB: 4 MiB of pipe buffer pages, which the kernel charges (__GFP_ACCOUNT).
	const pipes, fill = 64, 64 << 10
	var fds [][2]int
	err = th.Do(func() error {
		for range pipes {
			var p [2]int
			if err := unix.Pipe2(p[:], unix.O_NONBLOCK|unix.O_CLOEXEC); err != nil {
				return err
			}
			fds = append(fds, p)
			if _, err := unix.Write(p[1], make([]byte, fill)); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	full, err := g.KernelBytes()
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range fds {
		unix.Close(p[0])
		unix.Close(p[1])
	}
	freed, err := g.KernelBytes()
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("kernel bytes: %d at the start, %d with the pipes full, %d after closing them", base, full, freed)
	if full < base+pipes*fill {
		t.Errorf("filling %d bytes of pipes charged %d bytes", pipes*fill, full-base)
	}
	if freed > full-pipes*fill/2 {
		t.Errorf("closing the pipes left %d of %d bytes charged", freed, full)
	}
	th.Close()
	if err := g.Remove(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(g.Path()); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the group is still there: %v", err)
	}
	if got, _ := ownDir(); got != own {
		t.Errorf("the suite's own cgroup moved from %s to %s", own, got)
	}
	left, err := Leftovers()
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range left {
		if l.Path == g.Path() {
			t.Errorf("Leftovers still lists %s", l.Path)
		}
	}
}
