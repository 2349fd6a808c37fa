// Package memcg measures the kernel memory a piece of work leaves allocated, by charging it to a
// memory cgroup of the suite's own and reading the cgroup's kernel counter.
//
// The kernel charges an allocation made with __GFP_ACCOUNT (GFP_KERNEL_ACCOUNT) to the memory
// cgroup of the task that makes it, and uncharges it when it is freed, so a cgroup's kernel
// counter is what its tasks' kernel objects take now. What is charged is the kernel's choice,
// per allocation site: nf_tables accounts its tables, chains, rules, expressions, sets, set
// elements and the pipapo set's lookup tables (since Linux 5.18), but not the bucket arrays of
// its rhashtable-backed hash sets; x_tables its table blob but not the per-CPU counters;
// ipset the hash tables of its sets but not their member buckets, allocated GFP_ATOMIC; BPF
// maps are charged to the cgroup of the task that created them for their whole life, element
// updates by any task included (since 5.11), and programs' instructions, not their JIT
// images. Callers say which of these their figure includes.
//
// A Group is a child of the suite's own memory cgroup, created for one backend and removed
// after it. A thread joins it (Join) and stays: the processes it starts (nft,
// iptables-restore, ipset) are born in the group, and the maps it creates charge the group.
// Moving a thread between cgroups waits for an RCU grace period (15 to 20 ms here), longer
// than an nft partial sync, so the thread that joins is one that runs all of the backend's
// kernel work and is retired with it (netns.Pin), never one moved in and out per call.
//
// Only the cgroup v1 memory controller takes single threads. On cgroup v2 the memory
// controller moves whole processes, and a cgroup that holds processes (the suite's own) cannot
// give its children the controller, so New returns ErrUnavailable there: kernel memory is then
// not measured, never guessed.
package memcg

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"netpolbench/internal/owner"
)

// Prefix starts the name of every group the suite creates, followed by the pid of the
// process that created it (package owner).
const Prefix = "netpolbench-"

// ErrUnavailable marks a machine where the suite cannot charge kernel memory to a cgroup of
// its own: no cgroup v1 memory controller, or no right to create a child of the suite's
// cgroup. The error wrapping it says which.
var ErrUnavailable = errors.New("kernel memory accounting unavailable")

// Group is a memory cgroup created for one piece of work.
type Group struct {
	dir string
}

// New creates a group under the suite's own memory cgroup, named after the process and label
// (a word saying what it measures, e.g. a backend's name). It fails with an error wrapping
// ErrUnavailable where the suite cannot have one.
func New(label string) (*Group, error) {
	parent, err := ownDir()
	if err != nil {
		return nil, err
	}
	name, err := owner.Name(Prefix, sanitize(label))
	if err != nil {
		return nil, err
	}
	dir := filepath.Join(parent, name)
	if err := os.Mkdir(dir, 0o755); err != nil {
		if errors.Is(err, os.ErrPermission) || errors.Is(err, syscall.EROFS) {
			return nil, fmt.Errorf("%w: create memory cgroup %s: %w (needs root and a writable cgroupfs)", ErrUnavailable, dir, err)
		}
		return nil, fmt.Errorf("create memory cgroup %s: %w", dir, err)
	}
	g := &Group{dir: dir}
	if _, err := g.KernelBytes(); err != nil {
		return nil, errors.Join(fmt.Errorf("%w: %w", ErrUnavailable, err), os.Remove(dir))
	}
	return g, nil
}

// Path is the group's directory in the cgroup filesystem.
func (g *Group) Path() string { return g.dir }

// Join moves the calling OS thread into the group for good. The caller must have locked its
// goroutine to the thread (runtime.LockOSThread) and must never unlock it: a thread left in
// the group and handed back to the Go runtime would charge unrelated work to it.
func (g *Group) Join() error {
	tid := strconv.Itoa(unix.Gettid())
	if err := os.WriteFile(filepath.Join(g.dir, "tasks"), []byte(tid), 0); err != nil {
		return fmt.Errorf("move thread %s into memory cgroup %s: %w", tid, g.dir, err)
	}
	return nil
}

// KernelBytes is the kernel memory charged to the group now, in bytes (the v1 controller's
// memory.kmem.usage_in_bytes: slab, vmalloc, per-CPU, page tables and kernel stacks together).
// It counts whole pages handed to the group's allocations, so it is accurate to a few pages
// per CPU.
func (g *Group) KernelBytes() (uint64, error) {
	b, err := os.ReadFile(filepath.Join(g.dir, "memory.kmem.usage_in_bytes"))
	if err != nil {
		return 0, fmt.Errorf("read the kernel memory of cgroup %s: %w", g.dir, err)
	}
	v, err := strconv.ParseUint(strings.TrimSpace(string(b)), 10, 64)
	if err != nil {
		return 0, fmt.Errorf("read the kernel memory of cgroup %s: %w", g.dir, err)
	}
	return v, nil
}

// Remove removes the group once its threads are gone (a retired thread leaves it a moment
// after its goroutine ends; Remove waits up to two seconds for that). Memory still charged
// to it, of objects that outlive their creator, moves to the parent cgroup.
func (g *Group) Remove() error {
	deadline := time.Now().Add(2 * time.Second)
	for {
		err := os.Remove(g.dir)
		if err == nil || errors.Is(err, os.ErrNotExist) {
			return nil
		}
		if !errors.Is(err, syscall.EBUSY) || time.Now().After(deadline) {
			return fmt.Errorf("remove memory cgroup %s: %w (tasks left: %s)", g.dir, err, g.tasks())
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func (g *Group) tasks() string {
	b, err := os.ReadFile(filepath.Join(g.dir, "tasks"))
	if err != nil {
		return err.Error()
	}
	if s := strings.Join(strings.Fields(string(b)), " "); s != "" {
		return s
	}
	return "none"
}

// Leftover is a group a run left under the suite's memory cgroup.
type Leftover struct {
	Path string
	// Maker is the process that created it.
	owner.Maker
}

// Leftovers lists the groups under the suite's own memory cgroup. None where there is no
// memory cgroup to look in.
func Leftovers() ([]Leftover, error) {
	parent, err := ownDir()
	if errors.Is(err, ErrUnavailable) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	ents, err := os.ReadDir(parent)
	if err != nil {
		return nil, fmt.Errorf("list memory cgroups in %s: %w", parent, err)
	}
	var out []Leftover
	for _, e := range ents {
		if !e.IsDir() || !strings.HasPrefix(e.Name(), Prefix) {
			continue
		}
		l := Leftover{Path: filepath.Join(parent, e.Name()), Maker: owner.MakerOf(e.Name(), Prefix)}
		out = append(out, l)
	}
	return out, nil
}

// Cleanup removes the groups of runs whose process is gone (with all, of live runs too) and
// returns their paths. A group still holding a task stays, with an error.
func Cleanup(all bool) ([]string, error) {
	left, err := Leftovers()
	if err != nil {
		return nil, err
	}
	return owner.Remove(left, all, func(l Leftover) (string, error) {
		if err := os.Remove(l.Path); err != nil && !errors.Is(err, os.ErrNotExist) {
			return "", fmt.Errorf("remove memory cgroup %s: %w", l.Path, err)
		}
		return l.Path, nil
	})
}

// ownDir is the directory of the calling process's memory cgroup on the v1 controller.
func ownDir() (string, error) {
	cg, err := os.Open("/proc/self/cgroup")
	if err != nil {
		return "", fmt.Errorf("%w: %w", ErrUnavailable, err)
	}
	defer cg.Close()
	path, v2, err := memoryPath(cg)
	if err != nil {
		return "", err
	}
	if path == "" {
		why := "no memory controller"
		if v2 {
			why = "the memory controller is on cgroup v2, which moves whole processes, not one thread"
		}
		return "", fmt.Errorf("%w: %s", ErrUnavailable, why)
	}
	mi, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return "", fmt.Errorf("%w: %w", ErrUnavailable, err)
	}
	defer mi.Close()
	root, mount, err := memoryMount(mi)
	if err != nil {
		return "", err
	}
	rel, ok := strings.CutPrefix(path, root)
	if !ok {
		return "", fmt.Errorf("%w: the memory cgroup %s is outside the mounted hierarchy %s", ErrUnavailable, path, root)
	}
	return filepath.Join(mount, rel), nil
}

// memoryPath reads a /proc/PID/cgroup file: the path of the v1 memory controller's cgroup
// ("" without one), and whether the unified (v2) hierarchy is there.
func memoryPath(r io.Reader) (path string, v2 bool, err error) {
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		id, rest, ok := strings.Cut(sc.Text(), ":")
		if !ok {
			continue
		}
		ctrls, p, ok := strings.Cut(rest, ":")
		if !ok {
			continue
		}
		if id == "0" && ctrls == "" {
			v2 = true
			continue
		}
		for _, c := range strings.Split(ctrls, ",") {
			if c == "memory" {
				path = p
			}
		}
	}
	if err := sc.Err(); err != nil {
		return "", false, fmt.Errorf("read /proc/self/cgroup: %w", err)
	}
	return path, v2, nil
}

// memoryMount finds the v1 memory controller's mount in a /proc/PID/mountinfo file: the
// hierarchy's root it shows and where it is mounted.
func memoryMount(r io.Reader) (root, mount string, err error) {
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		// id parent major:minor root mountpoint options [optional...] - fstype source superoptions
		pre, post, ok := strings.Cut(sc.Text(), " - ")
		if !ok {
			continue
		}
		f, g := strings.Fields(pre), strings.Fields(post)
		if len(f) < 5 || len(g) < 3 || g[0] != "cgroup" {
			continue
		}
		for _, o := range strings.Split(g[2], ",") {
			if o == "memory" {
				return f[3], unescape(f[4]), nil
			}
		}
	}
	if err := sc.Err(); err != nil {
		return "", "", fmt.Errorf("read /proc/self/mountinfo: %w", err)
	}
	return "", "", fmt.Errorf("%w: the memory controller is not mounted", ErrUnavailable)
}

// unescape undoes mountinfo's octal escapes (\040 for a space).
func unescape(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) {
			if n, err := strconv.ParseUint(s[i+1:i+4], 8, 8); err == nil {
				b.WriteByte(byte(n))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// sanitize keeps a label to the characters a cgroup name can safely hold.
func sanitize(s string) string {
	return strings.Map(func(r rune) rune {
		if r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_' {
			return r
		}
		return '_'
	}, s)
}
