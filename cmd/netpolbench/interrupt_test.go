package main

import (
	"bufio"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"netpolbench/catalogue"
	"netpolbench/internal/testenv"
	"netpolbench/results"
	"netpolbench/testbed"
)

// TestMain lets the test binary stand in for netpolbench: with NPB_RUN_MAIN=1 it runs the
// command line, so the interrupt test can signal a real bench process without building one.
func TestMain(m *testing.M) {
	if os.Getenv("NPB_RUN_MAIN") == "1" {
		main()
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// interruptSpec is a sweep small enough to be stopped twenty times and resumed in a minute or
// two, with every kind of phase: the workload, the floor, syncs, test runs, real-packet stamps,
// round trips, churn and churn under load, of an eBPF backend and an iptables one.
const interruptSpec = `pods: [30]
backends: [compiled, ebpf, iptables]
samples: 1
duration: 200ms
packets: 40
churnEvents: 1
scaleBurst: 2
budget: {maxPhase: 5s}
`

var phaseLine = regexp.MustCompile(`\] phase (\S+)$`)

// benchProcess is one netpolbench bench process of the test.
type benchProcess struct {
	cmd    *exec.Cmd
	phases chan string // the phases it starts, as it prints them; closed at its end
	lines  *[]string
	done   chan struct{}
}

func startBench(t *testing.T, args ...string) *benchProcess {
	t.Helper()
	cmd := exec.Command(os.Args[0], append([]string{"bench"}, args...)...)
	cmd.Env = append(os.Environ(), "NPB_RUN_MAIN=1")
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stdout = nil
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	p := &benchProcess{cmd: cmd, phases: make(chan string, 256), lines: &[]string{}, done: make(chan struct{})}
	go func() {
		defer close(p.phases)
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			*p.lines = append(*p.lines, sc.Text())
			if m := phaseLine.FindStringSubmatch(sc.Text()); m != nil {
				p.phases <- m[1]
			}
		}
	}()
	t.Cleanup(func() {
		if cmd.ProcessState == nil {
			cmd.Process.Kill()
			cmd.Wait()
		}
	})
	return p
}

// wait waits for the process and its output, and returns its exit code (-1 when a signal
// ended it) and how long after since it ended.
func (p *benchProcess) wait(t *testing.T, since time.Time) (int, time.Duration) {
	t.Helper()
	for range p.phases {
	}
	err := p.cmd.Wait()
	took := time.Since(since)
	var ee *exec.ExitError
	if err != nil && !errors.As(err, &ee) {
		t.Fatal(err)
	}
	ws := p.cmd.ProcessState.Sys().(syscall.WaitStatus)
	if ws.Signaled() {
		return -1, took
	}
	return ws.ExitStatus(), took
}

func (p *benchProcess) output() string { return strings.Join(*p.lines, "\n") }

// rootState is what of the root namespace a run could leave behind if it broke the rules:
// links and BPF pins with the suite's prefix. It is only read.
func rootState(t *testing.T) []string {
	t.Helper()
	var out []string
	ifs, err := net.Interfaces()
	if err != nil {
		t.Fatal(err)
	}
	for _, i := range ifs {
		if strings.HasPrefix(i.Name, testbed.Prefix) || strings.HasPrefix(i.Name, "npb") {
			out = append(out, "link "+i.Name)
		}
	}
	filepath.WalkDir("/sys/fs/bpf", func(p string, d os.DirEntry, err error) error {
		if err == nil && strings.Contains(d.Name(), "npb") {
			out = append(out, "pin "+p)
		}
		return nil
	})
	return out
}

// namespacesOf lists the suite's namespaces of a run's process.
func namespacesOf(t *testing.T, pid int) []string {
	t.Helper()
	left, err := testbed.Leftovers()
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, l := range left {
		if l.PID == pid {
			out = append(out, l.Name)
		}
	}
	return out
}

// TestInterruptedBenchKeepsItsResultsLeavesNothingAndResumes stops a small bench at seeded
// points across its phases, with SIGINT, SIGTERM and SIGKILL, and resumes it every time: after
// SIGINT or SIGTERM the process exits 130 or 143 with a valid partial results.json that says
// where it stopped and no namespace left; after SIGKILL the file of the last finished phase is
// valid and netpolbench cleanup removes the namespaces; the last --resume completes the run
// with every phase recorded once.
func TestInterruptedBenchKeepsItsResultsLeavesNothingAndResumes(t *testing.T) {
	testenv.Long(t, "interrupting a bench twenty times")
	testenv.NeedKernel(t, catalogue.NeedsOf(false, "ebpf", "iptables")...)
	dir := t.TempDir()
	spec := filepath.Join(dir, "sweep.yaml")
	if err := os.WriteFile(spec, []byte(interruptSpec), 0o644); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(dir, "results")
	before := rootState(t)

	// Three runs, each stopped at ten seeded phases in the order they run, with thirty signals,
	// ten of each kind, in a seeded order; every stop is resumed, and the last resume of a run
	// completes it.
	const runs, perRun = 3, 10
	rng := rand.New(rand.NewPCG(15, 12))
	var sigs []syscall.Signal
	for range runs * perRun / 3 {
		sigs = append(sigs, syscall.SIGINT, syscall.SIGTERM, syscall.SIGKILL)
	}
	rng.Shuffle(len(sigs), func(i, j int) { sigs[i], sigs[j] = sigs[j], sigs[i] })
	order := interruptPhases(false)

	stopped := map[string]int{} // the phase each stop came in, as the process last printed it
	var stops []time.Duration
	var kills, skipped int
	for n := range runs {
		runOut := filepath.Join(out, fmt.Sprint(n))
		var runDir string
		lastPhases := 0
		targets := rng.Perm(len(order))[:perRun]
		slices.Sort(targets)
		for k, ti := range targets {
			i := n*perRun + k
			sig, target := sigs[i], order[ti]
			args := []string{"--spec", spec, "--out", runOut}
			if runDir != "" {
				run, err := results.Load(filepath.Join(runDir, "results.json"))
				if err != nil {
					t.Fatal(err)
				}
				if run.PhaseDone(target) {
					// The last stop came after this phase had finished.
					skipped++
					continue
				}
				args = []string{"--resume", runDir}
			}
			// Stop it at a seeded moment after the target phase starts (a phase shorter than
			// that is passed, and the stop comes in a later one).
			delay := time.Duration(rng.IntN(250)) * time.Millisecond
			p := startBench(t, args...)
			for ph := range p.phases {
				if ph == target {
					break
				}
			}
			time.Sleep(delay)
			sent := time.Now()
			p.cmd.Process.Signal(sig)
			code, took := p.wait(t, sent)
			if runDir == "" {
				ents, _ := os.ReadDir(runOut)
				if len(ents) != 1 {
					t.Fatalf("stop %d: %d run directories in %s, want 1:\n%s", i, len(ents), runOut, p.output())
				}
				runDir = filepath.Join(runOut, ents[0].Name())
			}
			pid := p.cmd.Process.Pid
			run, err := results.Load(filepath.Join(runDir, "results.json"))
			if err != nil {
				t.Fatalf("stop %d (%s in %s): %v\n%s", i, sig, target, err, p.output())
			}
			if err := run.Validate(); err != nil {
				t.Fatalf("stop %d (%s in %s): invalid results: %v", i, sig, target, err)
			}
			if code == 0 && run.Complete {
				t.Logf("stop %d: the run completed before %s arrived", i, sig)
				break
			}
			if len(run.Progress.Phases) < lastPhases {
				t.Fatalf("stop %d: the file lost phases: %d, had %d", i, len(run.Progress.Phases), lastPhases)
			}
			lastPhases = len(run.Progress.Phases)
			in := ""
			for _, l := range slices.Backward(*p.lines) {
				if m := phaseLine.FindStringSubmatch(l); m != nil {
					in = m[1]
					break
				}
			}
			stopped[in]++
			t.Logf("stop %d: %s %s after the start of %s, in %s: exit %d after %s, %d phases on file", i, sig, delay, target, in, code, took.Round(time.Millisecond), lastPhases)
			switch sig {
			case syscall.SIGINT, syscall.SIGTERM:
				stops = append(stops, took)
				if want := 128 + int(sig); code != want {
					t.Fatalf("stop %d: %s: exit %d, want %d\n%s", i, sig, code, want, p.output())
				}
				st := run.Progress.Stopped
				if !run.Partial() || st == nil || st.Reason != "interrupted by "+unix.SignalName(sig) {
					t.Fatalf("stop %d: %s: partial %v, stopped %+v", i, sig, run.Partial(), st)
				}
				if st.Phase != "" && run.PhaseDone(st.Phase) {
					t.Errorf("stop %d: the phase it stopped in (%s) is recorded as done", i, st.Phase)
				}
				for _, l := range *p.lines {
					for _, bad := range []string{"capped", "skipped", "take enforcement out", "close testbed"} {
						if strings.Contains(l, bad) {
							t.Errorf("stop %d: the teardown was reported as a failure: %s", i, l)
						}
					}
				}
				if left := namespacesOf(t, pid); len(left) > 0 {
					t.Fatalf("stop %d: %s left namespaces %v", i, sig, left)
				}
			case syscall.SIGKILL:
				kills++
				if code != -1 {
					t.Fatalf("stop %d: SIGKILL: exit %d", i, code)
				}
				if !run.Partial() || run.Progress.Stopped != nil {
					t.Fatalf("stop %d: after SIGKILL the file should be the last phase's: partial %v, stopped %+v", i, run.Partial(), run.Progress.Stopped)
				}
				c := exec.Command(os.Args[0], "cleanup")
				c.Env = append(os.Environ(), "NPB_RUN_MAIN=1")
				if b, err := c.CombinedOutput(); err != nil {
					t.Fatalf("cleanup after SIGKILL: %v\n%s", err, b)
				}
				if left := namespacesOf(t, pid); len(left) > 0 {
					t.Fatalf("stop %d: cleanup left namespaces %v", i, left)
				}
			}
		}
		if run, err := results.Load(filepath.Join(runDir, "results.json")); err != nil || !run.Complete {
			p := startBench(t, "--resume", runDir)
			if code, _ := p.wait(t, time.Now()); code != 0 {
				t.Fatalf("final resume of run %d: exit %d\n%s", n, code, p.output())
			}
		}
		checkCompleteRun(t, runDir)
	}
	t.Logf("%d stops (%d SIGKILL, %d targets passed before their stop) in %d distinct phases over %d runs: %v",
		len(stops)+kills, kills, skipped, len(stopped), runs, stopped)
	if n := len(stops) + kills; n < 20 {
		t.Errorf("%d stops, want at least 20", n)
	}
	if len(stopped) < len(order)/2 {
		t.Errorf("stopped in %d distinct phases of %d: the points do not spread across phases", len(stopped), len(order))
	}
	if after := rootState(t); !slices.Equal(before, after) {
		t.Errorf("the root namespace changed: before %v, after %v", before, after)
	}
	slices.Sort(stops)
	if len(stops) > 0 {
		t.Logf("SIGINT/SIGTERM to exit: median %s, max %s over %d stops", stops[len(stops)/2].Round(time.Millisecond),
			stops[len(stops)-1].Round(time.Millisecond), len(stops))
		// A hang, not a speed target: the figure above is what the README quotes.
		if stops[len(stops)-1] > 15*time.Second {
			t.Errorf("a stop took %s", stops[len(stops)-1])
		}
	}
}

// interruptPhases are the phases of a run of interruptSpec, in the order they run, or sorted.
func interruptPhases(sorted bool) []string {
	var out []string
	for _, id := range []string{"workload", "backend=compiled/sync", "backend=compiled/churn"} {
		out = append(out, "pods=30/"+id)
	}
	for _, b := range []string{"ebpf", "iptables"} {
		for _, ph := range []string{"sync", "testrun", "packets", "roundtrips", "churn", "churn-under-load"} {
			if b == "iptables" && ph == "testrun" {
				continue // no programs to test-run
			}
			out = append(out, fmt.Sprintf("pods=30/backend=%s/%s", b, ph))
		}
	}
	if sorted {
		sort.Strings(out)
	}
	return out
}

// checkCompleteRun checks that the run in dir is complete, valid, without caps, and recorded
// every phase of interruptSpec once.
func checkCompleteRun(t *testing.T, dir string) {
	t.Helper()
	run, err := results.Load(filepath.Join(dir, "results.json"))
	if err != nil {
		t.Fatal(err)
	}
	if !run.Complete || run.Partial() || run.Validate() != nil {
		t.Fatalf("%s: complete %v, valid %v", dir, run.Complete, run.Validate())
	}
	var ids []string
	for _, ph := range run.Progress.Phases {
		ids = append(ids, ph.ID)
	}
	sort.Strings(ids)
	if want := interruptPhases(true); !slices.Equal(ids, want) {
		t.Errorf("%s: phases\n%v\nwant\n%v", dir, ids, want)
	}
	for _, c := range run.Caps {
		t.Errorf("%s: cap %+v", dir, c)
	}
	if len(run.Claims) != 3 || run.Find("BenchmarkSync/backend=iptables/pods=30") == nil || len(run.Churn) != 2 {
		t.Errorf("%s: %d claims, %d churn timelines", dir, len(run.Claims), len(run.Churn))
	}
}
