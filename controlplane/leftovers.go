package controlplane

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"netpolbench/internal/owner"
)

// Leftover is the run directory of a control plane, found by Leftovers.
type Leftover struct {
	Dir string
	// Maker is the process that started the run.
	owner.Maker
	// Processes are the run's etcd and kube-apiserver processes that still run.
	Processes []int
}

// Leftovers lists the run directories under os.TempDir() whose names start with Prefix.
func Leftovers() ([]Leftover, error) {
	tmp := os.TempDir()
	ents, err := os.ReadDir(tmp)
	if err != nil {
		return nil, fmt.Errorf("list %s: %w", tmp, err)
	}
	var out []Leftover
	for _, e := range ents {
		if !strings.HasPrefix(e.Name(), Prefix) || !e.IsDir() {
			continue
		}
		l := Leftover{Dir: filepath.Join(tmp, e.Name()), Maker: owner.MakerOf(e.Name(), Prefix)}
		l.Processes = runProcesses(l.Dir)
		out = append(out, l)
	}
	return out, nil
}

// runProcesses returns the pids recorded in a run directory whose processes still run and
// still belong to the run: their command line names the directory, so a recycled pid is left
// alone.
func runProcesses(dir string) []int {
	var pids []int
	for _, name := range []string{"kube-apiserver.pid", "etcd.pid"} {
		b, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil {
			continue
		}
		pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
		if err != nil || pid <= 0 {
			continue
		}
		cmdline, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
		if err == nil && bytes.Contains(cmdline, []byte(dir)) {
			pids = append(pids, pid)
		}
	}
	return pids
}

// Cleanup removes what dead runs left: it kills their remaining processes and removes their run
// directories. With all it does the same to the runs of live processes. It returns the
// directories it removed.
func Cleanup(all bool) ([]string, error) {
	left, err := Leftovers()
	if err != nil {
		return nil, err
	}
	return owner.Remove(left, all, func(l Leftover) (string, error) {
		var errs []error
		for _, pid := range l.Processes {
			syscall.Kill(pid, syscall.SIGKILL)
		}
		for _, pid := range l.Processes {
			if !waitGone(pid, 5*time.Second) {
				errs = append(errs, fmt.Errorf("kill pid %d of %s: still running", pid, l.Dir))
			}
		}
		if err := os.RemoveAll(l.Dir); err != nil {
			return "", errors.Join(append(errs, fmt.Errorf("remove %s: %w", l.Dir, err))...)
		}
		return l.Dir, errors.Join(errs...)
	})
}

// waitGone waits for a process to exit (a killed child of a dead run is reaped by init).
func waitGone(pid int, timeout time.Duration) bool {
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		if !owner.Alive(pid) {
			return true
		}
		if st, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid)); err == nil && zombie(st) {
			return true
		}
		time.Sleep(20 * time.Millisecond)
	}
	return false
}

// zombie reports whether /proc/PID/stat says the process has exited and waits to be reaped.
func zombie(stat []byte) bool {
	i := bytes.LastIndexByte(stat, ')')
	return i >= 0 && i+2 < len(stat) && stat[i+2] == 'Z'
}
