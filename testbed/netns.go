package testbed

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"netpolbench/internal/netns"
	"netpolbench/internal/owner"
)

// Prefix starts the name of every namespace this package creates. Cleanup removes only names
// that start with it.
const Prefix = "npb-"

// newRunName returns a run-unique name prefix "npb-<pid>-<hex>". The pid lets Cleanup tell a
// live run from a dead one.
func newRunName() (string, error) { return owner.Name(Prefix, "") }

// writeSysctl writes a /proc/sys value; called inside a namespace (NS.Do) so net.* keys hit it.
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
	// Maker is the run's process.
	owner.Maker
}

// Leftovers lists the namespaces under /run/netns whose names start with Prefix.
func Leftovers() ([]Leftover, error) {
	ents, err := os.ReadDir(netns.Dir)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("list %s: %w", netns.Dir, err)
	}
	var out []Leftover
	for _, e := range ents {
		if !strings.HasPrefix(e.Name(), Prefix) {
			continue
		}
		l := Leftover{Name: e.Name(), Maker: owner.MakerOf(e.Name(), Prefix)}
		out = append(out, l)
	}
	return out, nil
}

// Cleanup removes the namespaces a dead run left behind: names starting with Prefix whose
// run's process no longer exists. With all it also removes those of live runs (and names
// without a pid). It returns what it removed. Nothing outside /run/netns/npb-* is touched;
// veths, routes, rules and firewall state live inside those namespaces and go with them.
//
// A namespace whose mount is hidden under a later bind mount of /run/netns (see package
// internal/netns) cannot be removed: reaching it means unmounting or moving /run/netns, which
// would take every other run's named namespaces with it on a shared machine. Its error says so
// and what to do when nothing else runs.
func Cleanup(all bool) ([]string, error) {
	left, err := Leftovers()
	if err != nil {
		return nil, err
	}
	return owner.Remove(left, all, func(l Leftover) (string, error) {
		if err := netns.Delete(l.Name); err != nil {
			return "", err
		}
		return l.Name, nil
	})
}
