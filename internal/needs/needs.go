// Package needs names what a backend, a command or a test needs from the machine (privileges,
// kernel features, tools) and checks whether the machine has it. The backend catalogue
// declares each backend's needs with these values, the benchmark turns a missing one into a
// cap, and internal/testenv turns it into a skip (or, under CI, a failure): one list, read
// the same way everywhere.
package needs

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"

	"github.com/cilium/ebpf/rlimit"
)

// ErrMissing wraps every error Check returns.
var ErrMissing = errors.New("missing")

// Need is one thing the machine must provide.
type Need struct {
	// Name says what is needed ("root", "BPF", "ipset"), for messages.
	Name string
	// Why says what it is for and, for a tool, which Debian package provides it.
	Why string
	// check returns nil when the machine has it.
	check func() error
}

func (n Need) String() string { return n.Name }

// Check returns nil when the machine has n, otherwise an error wrapping ErrMissing that names
// it, says why it is needed and what is wrong.
func (n Need) Check() error {
	if n.check == nil {
		return nil
	}
	if err := n.check(); err != nil {
		return fmt.Errorf("%w: %s (%s): %v", ErrMissing, n.Name, n.Why, err)
	}
	return nil
}

// Check checks every need and returns the missing ones' errors joined (nil when all are
// present). A need listed twice is checked once.
func Check(ns ...Need) error {
	var errs []error
	seen := map[string]bool{}
	for _, n := range ns {
		if seen[n.Name] {
			continue
		}
		seen[n.Name] = true
		errs = append(errs, n.Check())
	}
	return errors.Join(errs...)
}

// Root: the effective user is root. Creating network namespaces, loading BPF programs and
// changing netfilter state inside a namespace all need it (CAP_SYS_ADMIN, CAP_BPF,
// CAP_NET_ADMIN).
var Root = Need{Name: "root", Why: "network namespaces, BPF and netfilter need CAP_SYS_ADMIN, CAP_BPF and CAP_NET_ADMIN",
	check: func() error {
		if uid := os.Geteuid(); uid != 0 {
			return fmt.Errorf("running as uid %d", uid)
		}
		return nil
	}}

// BPF: BPF maps and programs can be created: root, and RLIMIT_MEMLOCK lifted on kernels that
// still charge BPF memory to it (before 5.11; later kernels charge the memory cgroup and the
// check costs nothing).
var BPF = Need{Name: "BPF", Why: "loading BPF programs and maps",
	check: func() error {
		if err := Root.check(); err != nil {
			return err
		}
		if err := rlimit.RemoveMemlock(); err != nil {
			return fmt.Errorf("lift RLIMIT_MEMLOCK: %w", err)
		}
		return nil
	}}

// Tool: the binary name is on PATH; pkg is the Debian package that provides it (`make deps`
// installs it).
func Tool(name, pkg string) Need {
	return Need{Name: name, Why: "Debian package " + pkg,
		check: func() error {
			_, err := exec.LookPath(name)
			return err
		}}
}

// Names lists the names of ns, comma-separated (for help texts).
func Names(ns []Need) string {
	names := make([]string, len(ns))
	for i, n := range ns {
		names[i] = n.Name
	}
	return strings.Join(names, ", ")
}
