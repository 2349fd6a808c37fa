// Package netns is the suite's one way into a Linux network namespace: creating one (named
// under /run/netns, as `ip netns add` does, or anonymous), opening one, running Go code or a
// command inside it, and removing it.
//
// Code runs in a namespace on a throwaway goroutine locked to its OS thread: the goroutine
// enters the namespace, runs the work and moves its thread back. If moving back fails, the
// goroutine ends still locked, so the Go runtime retires the thread instead of handing a
// thread in the wrong namespace to other goroutines. The caller's own thread never moves.
//
// Named namespaces are nsfs bind mounts under Dir. Before it binds the first one, Create makes
// Dir a shared mount point exactly as iproute2 does on first use (bind-mounting Dir onto itself
// when it is not a mount point yet). Done the other way round (nsfs mounts first, then an `ip
// netns add` that turns Dir into a mount point), the later bind mount covers the earlier nsfs
// mounts: they can then be neither unmounted nor removed by name (EBUSY) until Dir itself is
// unmounted. Hidden lists such covered mounts, and Delete names the cause when it meets one.
package netns

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"

	"github.com/vishvananda/netlink"
	vnetns "github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// Dir is where named network namespaces are bound (iproute2's NETNS_RUN_DIR).
const Dir = "/run/netns"

// ErrRootNamespace is returned by OpenIsolated for the namespace the process itself, or PID 1,
// runs in.
var ErrRootNamespace = errors.New("refusing to act on the root network namespace")

// NS is an open handle on a network namespace. The namespace lives at least as long as the
// handle (or its name under Dir).
type NS struct {
	f    *os.File
	path string
}

// New creates an anonymous network namespace: it goes away with its last handle, socket or
// process. Needs CAP_SYS_ADMIN.
func New() (*NS, error) {
	f, err := unshared()
	if err != nil {
		return nil, err
	}
	return &NS{f: f}, nil
}

// Create creates a network namespace bound at Dir/name, as `ip netns add name` does, and
// returns a handle on it. It prepares Dir first (see Prepare). Needs CAP_SYS_ADMIN.
func Create(name string) (*NS, error) { return create(Dir, name) }

func create(dir, name string) (*NS, error) {
	if err := checkName(name); err != nil {
		return nil, err
	}
	if err := prepare(dir); err != nil {
		return nil, err
	}
	p := filepath.Join(dir, name)
	fd, err := unix.Open(p, unix.O_RDONLY|unix.O_CREAT|unix.O_EXCL|unix.O_CLOEXEC, 0o444)
	if err != nil {
		return nil, fmt.Errorf("create netns %s: %w", name, err)
	}
	unix.Close(fd)
	f, err := unshared()
	if err == nil {
		err = bind(f, p)
		if err != nil {
			f.Close()
		}
	}
	if err != nil {
		// A half-made name (a file without its mount) goes, so no cleanup has it to find.
		os.Remove(p)
		return nil, fmt.Errorf("create netns %s: %w (needs root and a writable %s)", name, err, dir)
	}
	return &NS{f: f, path: p}, nil
}

// bind pins the namespace f refers to at p. The mount is made by the calling thread (in its
// mount namespace), through the descriptor's /proc link, not by the thread that created the
// namespace.
func bind(f *os.File, p string) error {
	src := fmt.Sprintf("/proc/self/fd/%d", f.Fd())
	if err := unix.Mount(src, p, "none", unix.MS_BIND, ""); err != nil {
		return fmt.Errorf("bind %s: %w", p, err)
	}
	return nil
}

// Prepare makes Dir a mount point with shared propagation, as iproute2 does before it binds a
// namespace: mount --make-shared, and if Dir is not a mount point yet, first bind-mount it onto
// itself. An exclusive lock on Dir keeps two preparers (this process and an `ip netns add`)
// from stacking bind mounts. Create calls it; it is idempotent.
func Prepare() error { return prepare(Dir) }

func prepare(dir string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("prepare %s: %w", dir, err)
	}
	lock, err := unix.Open(dir, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err == nil {
		defer unix.Close(lock)
		// iproute2 goes on without the lock when it cannot take it; so do we.
		_ = unix.Flock(lock, unix.LOCK_EX)
	}
	bound := false
	for {
		err := unix.Mount("", dir, "none", unix.MS_SHARED|unix.MS_REC, "")
		if err == nil {
			return nil
		}
		if !errors.Is(err, unix.EINVAL) || bound {
			return fmt.Errorf("prepare %s: make it a shared mount: %w", dir, err)
		}
		// EINVAL: not a mount point yet.
		if err := unix.Mount(dir, dir, "none", unix.MS_BIND|unix.MS_REC, ""); err != nil {
			return fmt.Errorf("prepare %s: bind it onto itself: %w", dir, err)
		}
		bound = true
	}
}

// Open opens a network namespace: a name under Dir, or an absolute path such as
// /proc/PID/ns/net.
func Open(name string) (*NS, error) {
	p := name
	if !filepath.IsAbs(p) {
		if err := checkName(name); err != nil {
			return nil, err
		}
		p = filepath.Join(Dir, name)
	}
	f, err := os.OpenFile(p, os.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("open netns %s: %w", name, err)
	}
	var st unix.Statfs_t
	if err := unix.Fstatfs(int(f.Fd()), &st); err != nil {
		f.Close()
		return nil, fmt.Errorf("open netns %s: %w", name, err)
	}
	if st.Type != unix.NSFS_MAGIC {
		f.Close()
		return nil, fmt.Errorf("open netns %s: %s is not a namespace (a name whose mount is gone?)", name, p)
	}
	return &NS{f: f, path: p}, nil
}

// OpenIsolated opens a namespace like Open and refuses (ErrRootNamespace) the one the process
// itself runs in and PID 1's, so work meant for a namespace of the suite's own never lands in
// the machine's.
func OpenIsolated(name string) (*NS, error) {
	ns, err := Open(name)
	if err != nil {
		return nil, err
	}
	target, err := inode(ns.f.Name())
	if err == nil {
		for _, own := range []string{"/proc/self/ns/net", "/proc/1/ns/net"} {
			ino, ierr := inode(own)
			if ierr != nil {
				// /proc/1 may be unreadable in a container; /proc/self must not be.
				if own == "/proc/self/ns/net" {
					err = ierr
					break
				}
				continue
			}
			if ino == target {
				err = fmt.Errorf("open netns %s: %w (it is the same as %s)", name, ErrRootNamespace, own)
				break
			}
		}
	}
	if err != nil {
		ns.Close()
		return nil, err
	}
	return ns, nil
}

// Inode is the namespace's inode number, the number in `readlink /proc/PID/ns/net`.
func (ns *NS) Inode() (uint64, error) {
	var st unix.Stat_t
	if err := unix.Fstat(int(ns.f.Fd()), &st); err != nil {
		return 0, fmt.Errorf("stat netns: %w", err)
	}
	return st.Ino, nil
}

func inode(path string) (uint64, error) {
	var st unix.Stat_t
	if err := unix.Stat(path, &st); err != nil {
		return 0, fmt.Errorf("stat %s: %w", path, err)
	}
	return st.Ino, nil
}

// Path is the file the namespace was opened or created at; "" for an anonymous one.
func (ns *NS) Path() string { return ns.path }

// FD is the handle's file descriptor (netlink.NsFd and setns take it). It stays valid until
// Close.
func (ns *NS) FD() int { return int(ns.f.Fd()) }

// Netlink returns a netlink handle whose requests act inside the namespace. Close it before
// the namespace handle.
func (ns *NS) Netlink() (*netlink.Handle, error) {
	h, err := netlink.NewHandleAt(vnetns.NsHandle(ns.FD()))
	if err != nil {
		return nil, fmt.Errorf("open netlink in netns %s: %w", ns.label(), err)
	}
	return h, nil
}

// Close releases the handle; a named namespace stays until Delete.
func (ns *NS) Close() error {
	if ns == nil || ns.f == nil {
		return nil
	}
	err := ns.f.Close()
	ns.f = nil
	return err
}

func (ns *NS) label() string {
	if ns.path != "" {
		return ns.path
	}
	return "(anonymous)"
}

// Do runs fn inside the namespace on a throwaway goroutine locked to its OS thread, and
// returns fn's error. fn may create sockets and links there (they keep their namespace when
// used from other goroutines later), call code that acts on the current thread's namespace
// (TCX attachment, package-level netlink calls) and exec commands (children inherit the
// namespace). Goroutines fn starts run elsewhere, in the process's namespace; a
// runtime.LockOSThread in fn must be paired with an unlock.
func (ns *NS) Do(fn func() error) error {
	if ns == nil || ns.f == nil {
		return errors.New("enter netns: handle closed")
	}
	return onLockedThread(func() (bool, error) {
		if err := unix.Setns(ns.FD(), unix.CLONE_NEWNET); err != nil {
			return false, fmt.Errorf("enter netns %s: %w", ns.label(), err)
		}
		return true, fn()
	})
}

// onLockedThread runs work on a new goroutine locked to its thread. work reports whether it
// moved the thread to another network namespace; if it did, the thread is moved back, and if
// that fails the goroutine ends locked, which retires the thread.
func onLockedThread(work func() (moved bool, err error)) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		orig, err := os.Open("/proc/thread-self/ns/net")
		if err != nil {
			runtime.UnlockOSThread()
			errc <- fmt.Errorf("open the thread's netns: %w", err)
			return
		}
		defer orig.Close()
		moved, werr := work()
		if moved {
			if err := unix.Setns(int(orig.Fd()), unix.CLONE_NEWNET); err != nil {
				// Stay locked: the thread dies with this goroutine.
				errc <- errors.Join(werr, fmt.Errorf("return to the original netns: %w (thread retired)", err))
				return
			}
		}
		runtime.UnlockOSThread()
		errc <- werr
	}()
	return <-errc
}

// unshared creates a network namespace on a throwaway thread and returns a handle on it.
func unshared() (*os.File, error) {
	var f *os.File
	err := onLockedThread(func() (bool, error) {
		if err := unix.Unshare(unix.CLONE_NEWNET); err != nil {
			return false, fmt.Errorf("create netns: %w (needs CAP_SYS_ADMIN)", err)
		}
		var err error
		f, err = os.Open("/proc/thread-self/ns/net")
		if err != nil {
			err = fmt.Errorf("open the new netns: %w", err)
		}
		return true, err
	})
	if err != nil {
		if f != nil {
			f.Close()
		}
		return nil, err
	}
	return f, nil
}

// Run runs a command inside the namespace with stdin (nil for none) and returns its stdout and
// stderr. A non-zero exit is an error; stderr is returned beside it, not quoted in it.
func (ns *NS) Run(name string, args []string, stdin []byte) (stdout, stderr []byte, err error) {
	return run(ns.Do, "netns "+ns.label(), name, args, stdin)
}

// run starts a command from the thread do runs its function on, which the child inherits
// the namespace (and cgroups) of.
func run(do func(func() error) error, where, name string, args []string, stdin []byte) (stdout, stderr []byte, err error) {
	var out, serr bytes.Buffer
	err = do(func() error {
		cmd := exec.Command(name, args...)
		if stdin != nil {
			cmd.Stdin = bytes.NewReader(stdin)
		}
		cmd.Stdout, cmd.Stderr = &out, &serr
		return cmd.Run()
	})
	if err != nil {
		return out.Bytes(), serr.Bytes(), fmt.Errorf("run %s in %s: %w", name, where, err)
	}
	return out.Bytes(), serr.Bytes(), nil
}

// Delete removes the namespace bound at Dir/name: it detaches the mount and removes the file,
// as `ip netns del` does. The namespace itself goes when its last handle, socket or process
// does. A name that is a plain file (a creation cut short) is removed too; a missing name is
// no error.
func Delete(name string) error { return remove(Dir, name) }

func remove(dir, name string) error {
	if err := checkName(name); err != nil {
		return err
	}
	p := filepath.Join(dir, name)
	if err := unix.Unmount(p, unix.MNT_DETACH); err != nil && !errors.Is(err, unix.EINVAL) && !errors.Is(err, unix.ENOENT) {
		return fmt.Errorf("delete netns %s: unmount: %w", name, err)
	}
	err := os.Remove(p)
	if err == nil || errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if errors.Is(err, unix.EBUSY) {
		if hidden, herr := hiddenIn(dir); herr == nil && slices.Contains(hidden, name) {
			return fmt.Errorf("delete netns %s: %w (%s)", name, err, HiddenHint)
		}
	}
	return fmt.Errorf("delete netns %s: %w", name, err)
}

// HiddenHint explains a namespace mount that Hidden reports and how to get rid of it.
const HiddenHint = "its nsfs mount is covered by a later bind mount of " + Dir +
	" (made by `ip netns add` when " + Dir + " was not yet a mount point), so neither the mount nor the name can be removed; " +
	"run `umount " + Dir + "` once no other run uses named namespaces (it drops theirs too), then remove it again"

// Hidden lists the names under Dir whose nsfs mounts are covered by a later mount of Dir
// itself (see the package doc): they cannot be removed while that mount stands.
func Hidden() ([]string, error) { return hiddenIn(Dir) }

func hiddenIn(dir string) ([]string, error) {
	f, err := os.Open("/proc/thread-self/mountinfo")
	if err != nil {
		return nil, fmt.Errorf("read mounts: %w", err)
	}
	defer f.Close()
	return hiddenMounts(f, dir)
}

// hiddenMounts reads mountinfo and returns the names of mounts at dir/<name> whose parent is
// not the topmost mount at dir.
func hiddenMounts(r io.Reader, dir string) ([]string, error) {
	type mount struct{ id, parent int }
	var atDir []mount
	children := map[string][]mount{}
	var order []string
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) < 5 {
			continue
		}
		id, err1 := strconv.Atoi(f[0])
		parent, err2 := strconv.Atoi(f[1])
		if err1 != nil || err2 != nil {
			return nil, fmt.Errorf("read mounts: bad line %q", sc.Text())
		}
		m := mount{id, parent}
		switch point := f[4]; {
		case point == dir:
			atDir = append(atDir, m)
		case filepath.Dir(point) == dir:
			name := filepath.Base(point)
			if _, seen := children[name]; !seen {
				order = append(order, name)
			}
			children[name] = append(children[name], m)
		}
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("read mounts: %w", err)
	}
	if len(atDir) == 0 {
		return nil, nil // dir is no mount point: nothing can cover its entries
	}
	// The topmost mount at dir is the one no other mount at dir sits on.
	under := map[int]bool{}
	for _, m := range atDir {
		under[m.parent] = true
	}
	top := -1
	for _, m := range atDir {
		if !under[m.id] {
			top = m.id
		}
	}
	var out []string
	for _, name := range order {
		for _, m := range children[name] {
			if m.parent != top {
				out = append(out, name)
				break
			}
		}
	}
	return out, nil
}

func checkName(name string) error {
	if name == "" || name == "." || name == ".." || strings.ContainsRune(name, '/') {
		return fmt.Errorf("netns name %q: want a plain file name", name)
	}
	return nil
}
