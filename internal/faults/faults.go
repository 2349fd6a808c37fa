// Package faults injects faults into a backend through its own seams (the iptables command
// runner, the BPF map writer, the knftables interface) and drives the backend through a churn
// stream while they happen, checking the policy.Backend contract after every event: a call a
// fault hit fails, says its next call is a full sync (policy.ErrNextSyncFull), and leaves the
// backend's view of the kernel true; a call that succeeds leaves the kernel holding what a
// fresh sync of the desired state holds; and once the faults stop the backend converges.
//
// A Schedule decides which operations at a seam fail; each backend's tests wrap their seam
// with it and describe the backend as a Subject; Drive runs the stream and returns a Tally of
// what was tried, which the tests log and the README's reliability section quotes.
package faults

import (
	"fmt"
	"math/rand/v2"
	"sort"
	"strings"
	"sync"
)

// Kind is one way an operation at a seam fails.
type Kind struct {
	// Name says what failed and how, e.g. "batch update: k of n, then map full".
	Name string
	// Partial is set when the operation applied part of its input before it failed, as the
	// kernel leaves a batch map update or an ipset restore; unset when it applied nothing.
	Partial bool
}

// Fault is one fault a Schedule injected.
type Fault struct {
	Kind Kind
	// Op is how many operations of the same call ran at the seam before this one.
	Op int
}

// Schedule decides which operations at a seam fail: on average one in every Every, at
// seeded places, each of a kind drawn (seeded) from those the operation can suffer. It is safe
// for concurrent use (a full eBPF sync writes maps from several goroutines).
type Schedule struct {
	every int
	mu    sync.Mutex
	rng   *rand.Rand
	gap   int // operations left before the next fault
	off   bool
	ops   int     // operations in the current call
	call  []Fault // faults of the current call
	all   map[Kind]int
}

// NewSchedule returns a schedule of one fault every every operations on average (every ≥ 1),
// switched off until Start.
func NewSchedule(every int, seed uint64) *Schedule {
	if every < 1 {
		panic(fmt.Sprintf("faults: a fault every %d operations", every))
	}
	s := &Schedule{every: every, rng: rand.New(rand.NewPCG(seed, uint64(every))), off: true, all: map[Kind]int{}}
	s.gap = s.nextGap()
	return s
}

// nextGap draws the operations before the next fault: uniform in 1..2·every−1, mean every,
// so faults fall on every kind of operation rather than in step with a call's pattern.
func (s *Schedule) nextGap() int { return 1 + s.rng.IntN(2*s.every-1) }

// Every is the mean number of operations between faults.
func (s *Schedule) Every() int { return s.every }

// Start switches faults on; Stop switches them off.
func (s *Schedule) Start() { s.mu.Lock(); s.off = false; s.mu.Unlock() }

// Stop switches faults off.
func (s *Schedule) Stop() { s.mu.Lock(); s.off = true; s.mu.Unlock() }

// Next is called by a seam before each operation with the kinds of fault the operation can
// suffer; it returns the fault to inject, if any. An operation that can suffer none still
// counts as an operation.
func (s *Schedule) Next(kinds ...Kind) (Kind, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	op := s.ops
	s.ops++
	if s.off || len(kinds) == 0 {
		return Kind{}, false
	}
	if s.gap--; s.gap > 0 {
		return Kind{}, false
	}
	s.gap = s.nextGap()
	k := kinds[s.rng.IntN(len(kinds))]
	s.call = append(s.call, Fault{Kind: k, Op: op})
	s.all[k]++
	return k, true
}

// IntN draws from the schedule's seeded source (a seam choosing how much of a batch it
// applies before it fails).
func (s *Schedule) IntN(n int) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.rng.IntN(n)
}

// take returns the faults injected since the last take and starts a new call.
func (s *Schedule) take() []Fault {
	s.mu.Lock()
	defer s.mu.Unlock()
	fs := s.call
	s.call, s.ops = nil, 0
	return fs
}

// Injected returns how many faults of each kind the schedule injected.
func (s *Schedule) Injected() map[Kind]int {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make(map[Kind]int, len(s.all))
	for k, n := range s.all {
		out[k] = n
	}
	return out
}

// Tally is what one Drive tried and checked.
type Tally struct {
	// Faults counts the faults injected, by kind name.
	Faults map[string]int
	// Events is the churn events applied, one Update each; Failed the calls that failed
	// (each with at least one injected fault); Fallbacks the full syncs that followed them.
	Events, Failed, Fallbacks int
	// Kept counts failed calls after which the kernel was checked to hold the previous state
	// exactly; Mirrored the checks of the backend's view of the kernel against the kernel.
	Kept, Mirrored int
	// Converged counts the checks that the kernel held what a fresh sync of the desired state
	// holds: after every call that succeeded, and once more after the faults stopped.
	Converged int
}

// Add sums o into t.
func (t *Tally) Add(o Tally) {
	if t.Faults == nil {
		t.Faults = map[string]int{}
	}
	for k, n := range o.Faults {
		t.Faults[k] += n
	}
	t.Events += o.Events
	t.Failed += o.Failed
	t.Fallbacks += o.Fallbacks
	t.Kept += o.Kept
	t.Mirrored += o.Mirrored
	t.Converged += o.Converged
}

// Total is the number of faults injected.
func (t Tally) Total() int {
	n := 0
	for _, v := range t.Faults {
		n += v
	}
	return n
}

// String is one line for a test log: totals, then the faults by kind.
func (t Tally) String() string {
	names := make([]string, 0, len(t.Faults))
	for k := range t.Faults {
		names = append(names, k)
	}
	sort.Strings(names)
	kinds := make([]string, len(names))
	for i, k := range names {
		kinds[i] = fmt.Sprintf("%s %d", k, t.Faults[k])
	}
	return fmt.Sprintf("%d faults, %d events, %d failed calls, %d fallbacks, %d kept, %d mirror checks, %d convergence checks [%s]",
		t.Total(), t.Events, t.Failed, t.Fallbacks, t.Kept, t.Mirrored, t.Converged, strings.Join(kinds, "; "))
}
