package netns

import (
	"errors"
	"strconv"
	"testing"

	"golang.org/x/sys/unix"

	"netpolbench/internal/needs"
	"netpolbench/internal/testenv"
)

// TestPinnedRunsEveryCallOnOneThreadInTheNamespace: every call, and every command, runs on
// the one thread set up in the target namespace; a failing setup retires the thread and says
// why; after Close nothing runs.
func TestPinnedRunsEveryCallOnOneThreadInTheNamespace(t *testing.T) {
	testenv.NeedKernel(t, needs.Tool("readlink", "coreutils"))
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
	setupTID := 0
	p, err := Pin(ns, func() error { setupTID = unix.Gettid(); return nil })
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	for range 3 {
		var tid int
		var inside uint64
		if err := p.Do(func() error {
			tid = unix.Gettid()
			var err error
			inside, err = inode("/proc/thread-self/ns/net")
			return err
		}); err != nil {
			t.Fatal(err)
		}
		if tid != setupTID || inside != target {
			t.Fatalf("call ran on thread %d in namespace %d, want thread %d in %d", tid, inside, setupTID, target)
		}
	}
	out, _, err := p.Run("readlink", []string{"/proc/self/ns/net"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if want := "net:[" + strconv.FormatUint(target, 10) + "]\n"; string(out) != want {
		t.Errorf("command ran in %q, want %q", out, want)
	}
	if after := threadNetns(t); after != before {
		t.Errorf("the caller's thread moved from namespace %d to %d", before, after)
	}
	wantErr := errors.New("setup failed")
	if _, err := Pin(ns, func() error { return wantErr }); !errors.Is(err, wantErr) {
		t.Errorf("Pin with a failing setup returned %v", err)
	}
	if err := p.Close(); err != nil {
		t.Fatal(err)
	}
	if err := p.Do(func() error { return nil }); !errors.Is(err, ErrPinnedClosed) {
		t.Errorf("Do after Close returned %v, want ErrPinnedClosed", err)
	}
}

// TestPinnedNeverTakesTheMainThread: the runtime cannot retire the main thread, so a pinned
// thread is never it, wherever the scheduler first put the goroutine that asked.
func TestPinnedNeverTakesTheMainThread(t *testing.T) {
	for range 50 {
		p, err := Pin(nil)
		if err != nil {
			t.Fatal(err)
		}
		var tid int
		if err := p.Do(func() error { tid = unix.Gettid(); return nil }); err != nil {
			t.Fatal(err)
		}
		p.Close()
		if tid == unix.Getpid() {
			t.Fatalf("a pinned thread is the main thread (%d)", tid)
		}
	}
}
