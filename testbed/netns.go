package testbed

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"

	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// Prefix starts the name of every namespace this package creates. Cleanup removes only names
// that start with it.
const Prefix = "npb-"

// netnsDir is where iproute2 (and vishvananda/netns) keep named namespaces.
const netnsDir = "/run/netns"

// newRunName returns a run-unique name prefix "npb-<pid>-<hex>". The pid lets Cleanup tell a
// live run from a dead one.
func newRunName() (string, error) {
	var b [3]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", fmt.Errorf("make run name: %w", err)
	}
	return fmt.Sprintf("%s%d-%s", Prefix, os.Getpid(), hex.EncodeToString(b[:])), nil
}

// runPID returns the pid in a namespace name: the first dash-separated field after Prefix that
// is a number. That covers this package's "npb-<pid>-<hex>-..." and the other packages' test
// namespaces, "npb-<what>-<pid>-...".
func runPID(name string) (int, bool) {
	rest, ok := strings.CutPrefix(name, Prefix)
	if !ok {
		return 0, false
	}
	for _, f := range strings.Split(rest, "-") {
		if pid, err := strconv.Atoi(f); err == nil && pid > 0 {
			return pid, true
		}
	}
	return 0, false
}

// processAlive reports whether pid names a running process (signal 0 probes without
// delivering anything).
func processAlive(pid int) bool {
	err := unix.Kill(pid, 0)
	return err == nil || errors.Is(err, unix.EPERM)
}

// inNS runs fn on a locked OS thread that has joined ns, then moves the thread back. If the
// thread cannot be moved back it stays locked, so the runtime retires it with the goroutine
// instead of reusing a thread in the wrong namespace.
func inNS(ns netns.NsHandle, fn func() error) error {
	runtime.LockOSThread()
	orig, err := netns.Get()
	if err != nil {
		runtime.UnlockOSThread()
		return fmt.Errorf("get current netns: %w", err)
	}
	defer orig.Close()
	if err := netns.Set(ns); err != nil {
		runtime.UnlockOSThread()
		return fmt.Errorf("enter netns: %w", err)
	}
	ferr := fn()
	if err := netns.Set(orig); err != nil {
		return errors.Join(ferr, fmt.Errorf("return to original netns: %w", err))
	}
	runtime.UnlockOSThread()
	return ferr
}

// createNamed creates a network namespace bound at /run/netns/name without moving the calling
// goroutine's thread for longer than the creation itself.
func createNamed(name string) (netns.NsHandle, error) {
	runtime.LockOSThread()
	orig, err := netns.Get()
	if err != nil {
		runtime.UnlockOSThread()
		return netns.None(), fmt.Errorf("get current netns: %w", err)
	}
	defer orig.Close()
	ns, nerr := netns.NewNamed(name)
	// NewNamed leaves the thread in the new namespace, also when the bind mount failed.
	if err := netns.Set(orig); err != nil {
		if ns.IsOpen() {
			ns.Close()
		}
		return netns.None(), fmt.Errorf("return to original netns after creating %s: %w", name, err)
	}
	runtime.UnlockOSThread()
	if nerr != nil {
		// A half-made name (file without mount) is removed so Cleanup has nothing to find.
		os.Remove(filepath.Join(netnsDir, name))
		return netns.None(), fmt.Errorf("create netns %s: %w (needs root and a writable %s)", name, nerr, netnsDir)
	}
	return ns, nil
}

// deleteNamed unbinds and removes a named namespace; the namespace itself goes away when the
// last socket or handle on it closes. A name that is a plain file (a run killed between
// creating the file and mounting it) is removed too.
func deleteNamed(name string) error {
	p := filepath.Join(netnsDir, name)
	if err := unix.Unmount(p, unix.MNT_DETACH); err != nil && !errors.Is(err, unix.EINVAL) && !errors.Is(err, unix.ENOENT) {
		return fmt.Errorf("unmount netns %s: %w", name, err)
	}
	if err := os.Remove(p); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("remove netns %s: %w", name, err)
	}
	return nil
}

// writeSysctl writes a /proc/sys value; called inside inNS so net.* keys hit that namespace.
func writeSysctl(key, value string) error {
	p := filepath.Join("/proc/sys", strings.ReplaceAll(key, ".", "/"))
	if err := os.WriteFile(p, []byte(value), 0o644); err != nil {
		return fmt.Errorf("set sysctl %s=%s: %w", key, value, err)
	}
	return nil
}

func readSysctl(key string) (string, error) {
	p := filepath.Join("/proc/sys", strings.ReplaceAll(key, ".", "/"))
	b, err := os.ReadFile(p)
	if err != nil {
		return "", fmt.Errorf("read sysctl %s: %w", key, err)
	}
	return strings.TrimSpace(string(b)), nil
}

// Leftover is a namespace found by Cleanup.
type Leftover struct {
	Name string
	// PID is the run's process id, 0 when the name carries none.
	PID int
	// Live reports whether that process still runs.
	Live bool
}

// Leftovers lists the namespaces under /run/netns whose names start with Prefix.
func Leftovers() ([]Leftover, error) {
	ents, err := os.ReadDir(netnsDir)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("list %s: %w", netnsDir, err)
	}
	var out []Leftover
	for _, e := range ents {
		if !strings.HasPrefix(e.Name(), Prefix) {
			continue
		}
		l := Leftover{Name: e.Name()}
		if pid, ok := runPID(e.Name()); ok {
			l.PID = pid
			l.Live = processAlive(pid)
		}
		out = append(out, l)
	}
	return out, nil
}

// Cleanup removes the namespaces a dead run left behind: names starting with Prefix whose
// run's process no longer exists. With all it also removes those of live runs (and names
// without a pid). It returns what it removed. Nothing outside /run/netns/npb-* is touched;
// veths, routes, rules and firewall state live inside those namespaces and go with them.
func Cleanup(all bool) ([]string, error) {
	left, err := Leftovers()
	if err != nil {
		return nil, err
	}
	var removed []string
	var errs []error
	for _, l := range left {
		if !all && (l.Live || l.PID == 0) {
			continue
		}
		if err := deleteNamed(l.Name); err != nil {
			errs = append(errs, err)
			continue
		}
		removed = append(removed, l.Name)
	}
	return removed, errors.Join(errs...)
}
