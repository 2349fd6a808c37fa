package iptables

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"syscall"

	"golang.org/x/sys/unix"
)

// Runner runs a command (iptables-restore, iptables-save, ipset, ...) where the rules live.
type Runner interface {
	// Run runs binary name with args and stdin and returns its output. A non-zero exit is an
	// error; stderr is returned with it.
	Run(name string, args []string, stdin []byte) (stdout, stderr []byte, err error)
}

// NamespaceDoer is a Runner that can also run Go code inside its network namespace. The
// per-rule path needs it: go-iptables execs the binary itself, so the calling thread must be in
// the namespace when it does.
type NamespaceDoer interface {
	Runner
	Do(fn func() error) error
}

// ErrRootNamespace is returned when a Runner would act on the root network namespace.
var ErrRootNamespace = errors.New("refusing to act on the root network namespace")

// NetnsRunner runs commands inside a named network namespace by entering it on a locked OS
// thread (setns), so children inherit it. It never runs anything in the namespace of the
// calling process.
type NetnsRunner struct {
	path string
	fd   int
}

// NewNetnsRunner opens the network namespace name (an `ip netns` name under /var/run/netns, or
// an absolute path such as /proc/PID/ns/net). It refuses the namespace the process itself is in
// and the one of PID 1.
func NewNetnsRunner(name string) (*NetnsRunner, error) {
	path := name
	if !filepath.IsAbs(path) {
		path = filepath.Join("/var/run/netns", name)
	}
	target, err := nsInode(path)
	if err != nil {
		return nil, fmt.Errorf("open network namespace %s: %w (create it with `ip netns add`)", name, err)
	}
	for _, own := range []string{"/proc/self/ns/net", "/proc/1/ns/net"} {
		ino, err := nsInode(own)
		if err != nil {
			// /proc/1 may be unreadable in a container; /proc/self must not be.
			if own == "/proc/self/ns/net" {
				return nil, fmt.Errorf("stat %s: %w", own, err)
			}
			continue
		}
		if ino == target {
			return nil, fmt.Errorf("open network namespace %s: %w (it is the same as %s)", name, ErrRootNamespace, own)
		}
	}
	fd, err := unix.Open(path, unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("open network namespace %s: %w", name, err)
	}
	return &NetnsRunner{path: path, fd: fd}, nil
}

func nsInode(path string) (uint64, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return 0, err
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return 0, fmt.Errorf("stat %s: no inode", path)
	}
	return st.Ino, nil
}

// Path is the namespace file the runner enters.
func (r *NetnsRunner) Path() string { return r.path }

// Close releases the namespace handle.
func (r *NetnsRunner) Close() error {
	if r.fd < 0 {
		return nil
	}
	err := unix.Close(r.fd)
	r.fd = -1
	return err
}

// Do runs fn on an OS thread that has entered the namespace. The thread returns to its old
// namespace afterwards; if it cannot, it is left locked so the runtime retires it with the
// goroutine instead of reusing a thread in the wrong namespace.
func (r *NetnsRunner) Do(fn func() error) error {
	if r.fd < 0 {
		return errors.New("netns runner: closed")
	}
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		old, err := unix.Open("/proc/thread-self/ns/net", unix.O_RDONLY|unix.O_CLOEXEC, 0)
		if err != nil {
			runtime.UnlockOSThread()
			errc <- fmt.Errorf("open current network namespace: %w", err)
			return
		}
		defer unix.Close(old)
		if err := unix.Setns(r.fd, unix.CLONE_NEWNET); err != nil {
			runtime.UnlockOSThread()
			errc <- fmt.Errorf("enter network namespace %s: %w", r.path, err)
			return
		}
		ferr := fn()
		if err := unix.Setns(old, unix.CLONE_NEWNET); err != nil {
			// Stay locked: the goroutine exits and takes the thread with it.
			errc <- errors.Join(ferr, fmt.Errorf("leave network namespace %s: %w", r.path, err))
			return
		}
		runtime.UnlockOSThread()
		errc <- ferr
	}()
	return <-errc
}

// Run runs the command inside the namespace.
func (r *NetnsRunner) Run(name string, args []string, stdin []byte) ([]byte, []byte, error) {
	var stdout, stderr bytes.Buffer
	err := r.Do(func() error {
		cmd := exec.Command(name, args...)
		if stdin != nil {
			cmd.Stdin = bytes.NewReader(stdin)
		}
		cmd.Stdout = &stdout
		cmd.Stderr = &stderr
		return cmd.Run()
	})
	if err != nil {
		return stdout.Bytes(), stderr.Bytes(), fmt.Errorf("run %s: %w", name, err)
	}
	return stdout.Bytes(), stderr.Bytes(), nil
}
