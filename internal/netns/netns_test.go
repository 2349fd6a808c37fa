package netns

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"netpolbench/internal/needs"
	"netpolbench/internal/testenv"
)

// TestHiddenMountsAreThoseNotOnTheTopmostDirMount reads a mountinfo where /run/netns was bound
// onto itself after npb-a was mounted: npb-a's original mount sits on the root mount, under
// the bind; its copy and npb-b sit on the bind and are visible.
func TestHiddenMountsAreThoseNotOnTheTopmostDirMount(t *testing.T) {
	const info = `27 1 254:0 / / rw,relatime - ext4 /dev/vda rw
46 27 0:4 net:[4026532174] /run/netns/npb-a rw - nsfs nsfs rw
50 27 254:0 /run/netns /run/netns rw,relatime shared:1 - ext4 /dev/vda rw
51 50 0:4 net:[4026532174] /run/netns/npb-a rw shared:2 - nsfs nsfs rw
52 50 0:4 net:[4026532200] /run/netns/npb-b rw shared:3 - nsfs nsfs rw
`
	got, err := hiddenMounts(strings.NewReader(info), "/run/netns")
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 1 || got[0] != "npb-a" {
		t.Errorf("hidden = %v, want [npb-a]", got)
	}
	// Once /run/netns was a mount point before the first namespace, nothing is hidden.
	prepared := "27 1 254:0 / / rw - ext4 /dev/vda rw\n50 27 254:0 /run/netns /run/netns rw shared:1 - ext4 /dev/vda rw\n51 50 0:4 net:[1] /run/netns/npb-a rw - nsfs nsfs rw\n"
	if got, _ := hiddenMounts(strings.NewReader(prepared), "/run/netns"); len(got) != 0 {
		t.Errorf("prepared dir: hidden = %v, want none", got)
	}
	// Nor when /run/netns is no mount point at all.
	plain := "27 1 254:0 / / rw - ext4 /dev/vda rw\n46 27 0:4 net:[1] /run/netns/npb-a rw - nsfs nsfs rw\n"
	if got, _ := hiddenMounts(strings.NewReader(plain), "/run/netns"); len(got) != 0 {
		t.Errorf("plain dir: hidden = %v, want none", got)
	}
}

func threadNetns(t *testing.T) uint64 {
	t.Helper()
	ino, err := inode("/proc/thread-self/ns/net")
	if err != nil {
		t.Fatal(err)
	}
	return ino
}

// TestDoRunsInTheNamespaceAndTheCallerStaysWhereItWas: Go code and commands run in the
// target; the calling thread never moves, so its namespace is the same before and after.
func TestDoRunsInTheNamespaceAndTheCallerStaysWhereItWas(t *testing.T) {
	testenv.NeedKernel(t, needs.Tool("readlink", "coreutils"))
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	before := threadNetns(t)
	ns, err := New()
	if err != nil {
		t.Fatal(err)
	}
	defer ns.Close()
	target, err := ns.Inode()
	if err != nil {
		t.Fatal(err)
	}
	if target == before {
		t.Fatal("New returned the caller's namespace")
	}
	for range 3 {
		var inside uint64
		if err := ns.Do(func() error {
			var err error
			inside, err = inode("/proc/thread-self/ns/net")
			return err
		}); err != nil {
			t.Fatal(err)
		}
		if inside != target {
			t.Fatalf("Do ran in namespace %d, want %d", inside, target)
		}
	}
	out, _, err := ns.Run("readlink", []string{"/proc/self/ns/net"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if want := "net:[" + strconv.FormatUint(target, 10) + "]\n"; string(out) != want {
		t.Errorf("command ran in %q, want %q", out, want)
	}
	wantErr := errors.New("fn failed")
	if err := ns.Do(func() error { return wantErr }); !errors.Is(err, wantErr) {
		t.Errorf("Do returned %v, want fn's error", err)
	}
	if after := threadNetns(t); after != before {
		t.Errorf("the caller's thread moved from namespace %d to %d", before, after)
	}
}

// TestCreateOpenDelete: a named namespace can be opened by name until it is deleted; the
// process's own namespace is refused by OpenIsolated.
func TestCreateOpenDelete(t *testing.T) {
	testenv.NeedRoot(t)
	name := fmt.Sprintf("npb-nstest-%d-named", os.Getpid())
	ns, err := Create(name)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ns.Close(); Delete(name) })
	if _, err := Create(name); err == nil {
		t.Error("Create of an existing name succeeded")
	}
	again, err := OpenIsolated(name)
	if err != nil {
		t.Fatal(err)
	}
	a, _ := ns.Inode()
	b, _ := again.Inode()
	again.Close()
	if a != b || a == 0 {
		t.Errorf("Open(%s) inode %d, Create gave %d", name, b, a)
	}
	for _, own := range []string{"/proc/self/ns/net", "/proc/thread-self/ns/net"} {
		if o, err := OpenIsolated(own); !errors.Is(err, ErrRootNamespace) {
			o.Close()
			t.Errorf("OpenIsolated(%s): %v, want ErrRootNamespace", own, err)
		}
	}
	if err := Delete(name); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(Dir + "/" + name); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("after Delete: stat %v, want not exist", err)
	}
	if err := Delete(name); err != nil {
		t.Errorf("Delete of a missing name: %v", err)
	}
}

// inPrivateMounts runs fn on a thread in a mount namespace of its own, where /run is an empty
// tmpfs: /run/netns is then a plain new directory, as on a freshly booted machine, and nothing
// mounted there is seen outside. The thread is retired afterwards (its goroutine ends locked).
func inPrivateMounts(t *testing.T, fn func() error) {
	t.Helper()
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		if err := unix.Unshare(unix.CLONE_NEWNS); err != nil {
			errc <- fmt.Errorf("unshare mount namespace: %w", err)
			return
		}
		// Private first, so no mount or unmount below propagates to the machine's namespace.
		if err := unix.Mount("", "/", "", unix.MS_REC|unix.MS_PRIVATE, ""); err != nil {
			errc <- fmt.Errorf("make mounts private: %w", err)
			return
		}
		if err := unix.Mount("npb-nstest", "/run", "tmpfs", 0, "size=1m,mode=755"); err != nil {
			errc <- fmt.Errorf("mount tmpfs on /run: %w", err)
			return
		}
		errc <- fn()
	}()
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
}

func ipNetns(args ...string) error {
	if out, err := exec.Command("ip", append([]string{"netns"}, args...)...).CombinedOutput(); err != nil {
		return fmt.Errorf("ip netns %s: %w: %s", strings.Join(args, " "), err, out)
	}
	return nil
}

// TestNamespacesCreatedBeforeIPNetnsAddStayRemovable covers the ordering that left namespaces
// behind on a fresh machine: this package binds a namespace under /run/netns, then `ip netns
// add` (from another process) makes /run/netns a mount point. Because Create prepared
// /run/netns as iproute2 does, the later `ip netns add` covers nothing and Delete works. The
// control repeats the order without the preparation and must meet the hidden mount.
func TestNamespacesCreatedBeforeIPNetnsAddStayRemovable(t *testing.T) {
	testenv.NeedKernel(t, needs.Tool("ip", "iproute2"))
	pid := os.Getpid()
	inPrivateMounts(t, func() error {
		name := fmt.Sprintf("npb-nstest-%d-first", pid)
		ns, err := Create(name)
		if err != nil {
			return err
		}
		ns.Close()
		if err := ipNetns("add", fmt.Sprintf("npb-nstest-%d-ip", pid)); err != nil {
			return err
		}
		// (Copies of the machine's own namespaces, taken when this mount namespace was made,
		// lie covered under the tmpfs: only this test's names count.)
		if hidden, err := Hidden(); err != nil || slices.Contains(hidden, name) {
			return fmt.Errorf("after ip netns add: hidden %v, %v; want %s visible", hidden, err, name)
		}
		if err := Delete(name); err != nil {
			return fmt.Errorf("prepared: %w", err)
		}
		return ipNetns("del", fmt.Sprintf("npb-nstest-%d-ip", pid))
	})
	inPrivateMounts(t, func() error {
		name := fmt.Sprintf("npb-nstest-%d-unprepared", pid)
		// What the suite did before: the nsfs mount on a plain directory.
		if err := os.MkdirAll(Dir, 0o755); err != nil {
			return err
		}
		p := Dir + "/" + name
		if err := os.WriteFile(p, nil, 0o444); err != nil {
			return err
		}
		f, err := unshared()
		if err != nil {
			return err
		}
		defer f.Close()
		if err := bind(f, p); err != nil {
			return err
		}
		if err := ipNetns("add", fmt.Sprintf("npb-nstest-%d-ip", pid)); err != nil {
			return err
		}
		if hidden, err := Hidden(); err != nil || !slices.Contains(hidden, name) {
			return fmt.Errorf("unprepared: hidden %v, %v; want %s among them", hidden, err, name)
		}
		err = Delete(name)
		if !errors.Is(err, unix.EBUSY) || !strings.Contains(err.Error(), "umount "+Dir) {
			return fmt.Errorf("unprepared: Delete = %v, want EBUSY with the umount hint", err)
		}
		return nil
	})
}
