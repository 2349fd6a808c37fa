// Package owner names what a run leaves on the machine (network namespaces, run directories)
// after the process that made it, so that a cleanup can tell a dead run's leftovers from a
// live run's without any record kept elsewhere: a name carries its maker's pid.
package owner

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// Name returns prefix + "<pid>-" + what (when not "") + "<6 hex digits>": unique per call,
// and owned by this process as far as PID reads it.
func Name(prefix, what string) (string, error) {
	var b [3]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", fmt.Errorf("make run name: %w", err)
	}
	if what != "" {
		what += "-"
	}
	return fmt.Sprintf("%s%d-%s%s", prefix, os.Getpid(), what, hex.EncodeToString(b[:])), nil
}

// Pattern is prefix + "<pid>-", for os.MkdirTemp and the like, which add the unique part.
func Pattern(prefix string) string { return fmt.Sprintf("%s%d-", prefix, os.Getpid()) }

// PID returns the pid in a name made by Name or Pattern: the first dash-separated field after
// prefix that is a number (test names may put a word before it: "npb-<what>-<pid>-...").
func PID(name, prefix string) (int, bool) {
	rest, ok := strings.CutPrefix(name, prefix)
	if !ok {
		return 0, false
	}
	for _, f := range strings.Split(rest, "-") {
		if pid, err := strconv.Atoi(f); err == nil && pid > 0 {
			return pid, true
		}
	}
	return 0, false
}

// Alive reports whether pid names a running process (signal 0 probes without delivering
// anything; EPERM means it exists under another user).
func Alive(pid int) bool {
	err := unix.Kill(pid, 0)
	return err == nil || errors.Is(err, unix.EPERM)
}

// Maker is what a leftover's name says of the process that made it.
type Maker struct {
	// PID is the maker's pid, 0 when the name carries none.
	PID int
	// Live reports whether that process still runs.
	Live bool
}

// MakerOf reads the maker of a name made by Name or Pattern.
func MakerOf(name, prefix string) Maker {
	pid, ok := PID(name, prefix)
	if !ok {
		return Maker{}
	}
	return Maker{PID: pid, Live: Alive(pid)}
}

// Stale reports whether a cleanup removes the leftover: its maker is known and gone, or all
// asks for every leftover, a live run's and an unnamed maker's too.
func (m Maker) Stale(all bool) bool { return all || (m.PID != 0 && !m.Live) }

// Remove runs remove on each stale leftover (Stale(all)) and returns the names remove gives
// back for what it removed ("" for nothing), with every failure joined: one leftover that
// cannot go does not keep the others.
func Remove[L interface{ Stale(all bool) bool }](left []L, all bool, remove func(L) (string, error)) ([]string, error) {
	var removed []string
	var errs []error
	for _, l := range left {
		if !l.Stale(all) {
			continue
		}
		name, err := remove(l)
		if name != "" {
			removed = append(removed, name)
		}
		if err != nil {
			errs = append(errs, err)
		}
	}
	return removed, errors.Join(errs...)
}
