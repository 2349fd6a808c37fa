package testbed

import (
	"bufio"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"netpolbench/internal/netns"
	"netpolbench/internal/owner"
	"netpolbench/internal/testenv"
)

// childEnv makes the test binary act as a run that builds a testbed and waits to be killed.
// Its value is the setup step after which the child reports READY.
const childEnv = "NPB_TESTBED_CHILD_STOP_AFTER"

func TestMain(m *testing.M) {
	if stop := os.Getenv(childEnv); stop != "" {
		os.Exit(runChild(stop))
	}
	os.Exit(m.Run())
}

// runChild builds a testbed and, after step stop, prints "READY <run>" and sleeps (at most
// 30 s, so a lost parent cannot leave it running).
func runChild(stop string) int {
	ready := func(run string) {
		fmt.Printf("READY %s\n", run)
		time.Sleep(30 * time.Second)
	}
	var run string
	tb, err := New(Options{stepHook: func(step string) {
		if run == "" {
			run = strings.TrimSuffix(step, "-node")
		}
		if strings.Contains(step, stop) {
			ready(run)
		}
	}})
	if err != nil {
		fmt.Println("ERROR", err)
		return 1
	}
	if stop == "done" {
		ready(tb.Name())
	}
	tb.Close()
	return 0
}

// startChild runs the child and waits until it has built its testbed up to step stop.
func startChild(t *testing.T, stop string) (*exec.Cmd, string) {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), childEnv+"="+stop)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatalf("child stdout: %v", err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatalf("start child: %v", err)
	}
	t.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
	})
	line := make(chan string, 1)
	go func() {
		s := bufio.NewScanner(out)
		for s.Scan() {
			line <- s.Text()
			return
		}
		close(line)
	}()
	select {
	case l, ok := <-line:
		run, isReady := strings.CutPrefix(l, "READY ")
		if !ok || !isReady {
			t.Fatalf("child did not get ready: %q", l)
		}
		return cmd, run
	case <-time.After(20 * time.Second):
		t.Fatal("child not ready within 20 s")
	}
	return nil, ""
}

func namespacesOf(t *testing.T, run string) []string {
	t.Helper()
	left, err := Leftovers()
	if err != nil {
		t.Fatalf("leftovers: %v", err)
	}
	var out []string
	for _, l := range left {
		if strings.HasPrefix(l.Name, run+"-") {
			out = append(out, l.Name)
		}
	}
	return out
}

func TestCleanupRemovesWhatAKilledRunLeft(t *testing.T) {
	testenv.NeedRoot(t)
	// A live run of our own must survive the cleanup: it removes dead runs only.
	mine := ForTest(t, Options{PodNamespaces: 1})
	// Stop right after the node namespace, amid the pod namespaces, and after the first veth.
	for _, stop := range []string{"-node", "-pod1", "veth"} {
		t.Run("killed after "+strings.TrimPrefix(stop, "-"), func(t *testing.T) {
			child, run := startChild(t, stop)
			if got := namespacesOf(t, run); len(got) == 0 {
				t.Fatalf("child %s made no namespace before the kill", run)
			}
			if err := child.Process.Signal(syscall.SIGKILL); err != nil {
				t.Fatalf("kill child: %v", err)
			}
			child.Wait()
			removed, err := Cleanup(false)
			if err != nil {
				t.Fatalf("cleanup: %v", err)
			}
			if left := namespacesOf(t, run); len(left) > 0 {
				t.Errorf("after cleanup %s still has %v (removed %v)", run, left, removed)
			}
			for _, n := range removed {
				if pid, ok := owner.PID(n, Prefix); !ok || owner.Alive(pid) {
					t.Errorf("cleanup removed %s, which is no dead run's", n)
				}
			}
			for _, n := range mine.Namespaces() {
				if _, err := os.Stat(netns.Dir + "/" + n); err != nil {
					t.Errorf("cleanup removed the live run's %s: %v", n, err)
				}
			}
		})
	}
}

func TestSIGTERMRemovesTheTestbed(t *testing.T) {
	testenv.NeedRoot(t)
	child, run := startChild(t, "done")
	if got := namespacesOf(t, run); len(got) != defaultPodNamespaces+2 {
		t.Fatalf("child %s has %d namespaces, want %d", run, len(got), defaultPodNamespaces+2)
	}
	if err := child.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatalf("signal child: %v", err)
	}
	err := child.Wait()
	ws, _ := child.ProcessState.Sys().(syscall.WaitStatus)
	if err == nil || !ws.Signaled() || ws.Signal() != syscall.SIGTERM {
		t.Errorf("child exit = %v, want death by SIGTERM after its cleanup", err)
	}
	if left := namespacesOf(t, run); len(left) > 0 {
		t.Errorf("SIGTERM left %v", left)
	}
}
