package netns

import (
	"errors"
	"fmt"
	"runtime"
	"sync"

	"golang.org/x/sys/unix"
)

// Pinned is an OS thread of its own that runs every function and command handed to it, set up
// once: moved into a network namespace, and by its setup functions into whatever else the work
// must run in (a memory cgroup that charges what it allocates, say). Children it starts
// inherit all of it. The thread is never handed back to the Go runtime: Close retires it, so
// nothing it was moved into reaches other goroutines, and nothing is moved back per call.
// Calls are run one at a time, in the order they arrive.
type Pinned struct {
	work  chan func()
	label string
	mu    sync.Mutex
	done  bool
}

// ErrPinnedClosed is returned by the calls of a Pinned thread after Close.
var ErrPinnedClosed = errors.New("pinned thread closed")

// Pin starts a pinned thread in ns (nil: the process's own namespace, left as it is), runs
// setup on it in order and returns it; if a step fails the thread is retired and the error
// returned.
func Pin(ns *NS, setup ...func() error) (*Pinned, error) {
	label := "own netns"
	if ns != nil {
		if ns.f == nil {
			return nil, errors.New("enter netns: handle closed")
		}
		label = "netns " + ns.label()
	}
	p := &Pinned{work: make(chan func()), label: label}
	ready := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		if unix.Gettid() != unix.Getpid() {
			p.serve(ns, setup, ready)
			return
		}
		// The main thread is never retired (the runtime parks it instead, still in the
		// namespace and cgroups it was moved into): serve from another thread, which the
		// scheduler must pick while this goroutine holds the main one.
		locked := make(chan struct{})
		go func() {
			runtime.LockOSThread()
			close(locked)
			p.serve(ns, setup, ready)
		}()
		<-locked
		runtime.UnlockOSThread()
	}()
	if err := <-ready; err != nil {
		return nil, fmt.Errorf("pin a thread in %s: %w", label, err)
	}
	return p, nil
}

// serve sets up the calling thread, locked to its goroutine and never unlocked (the thread
// ends with it), and runs the calls handed to it until Close.
func (p *Pinned) serve(ns *NS, setup []func() error, ready chan<- error) {
	if ns != nil {
		if err := unix.Setns(ns.FD(), unix.CLONE_NEWNET); err != nil {
			ready <- fmt.Errorf("enter %s: %w", p.label, err)
			return
		}
	}
	for _, s := range setup {
		if err := s(); err != nil {
			ready <- err
			return
		}
	}
	ready <- nil
	for fn := range p.work {
		fn()
	}
}

// Do runs fn on the thread and returns its error. fn must not call Do of the same thread: the
// thread runs one call at a time.
func (p *Pinned) Do(fn func() error) error {
	p.mu.Lock()
	if p.done {
		p.mu.Unlock()
		return ErrPinnedClosed
	}
	errc := make(chan error, 1)
	p.work <- func() { errc <- fn() }
	p.mu.Unlock()
	return <-errc
}

// Run runs a command from the thread, as NS.Run does.
func (p *Pinned) Run(name string, args []string, stdin []byte) (stdout, stderr []byte, err error) {
	return run(p.Do, p.label, name, args, stdin)
}

// Close retires the thread once the call it runs, if any, returns. Safe to call twice.
func (p *Pinned) Close() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if !p.done {
		p.done = true
		close(p.work)
	}
	return nil
}
