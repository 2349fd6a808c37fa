package faults

import (
	"errors"
	"fmt"
	"sort"
	"strings"
	"testing"

	"netpolbench/policy"
	"netpolbench/workloads"
)

// Subject is a backend under faults, its seam already wrapped with Schedule.
type Subject struct {
	Backend  policy.Backend
	Schedule *Schedule
	// Dump reads back what the backend holds in the kernel (or its fake), normalised so that
	// two backends holding the same state dump the same text. Required.
	Dump func(t testing.TB) string
	// Fresh is the dump of a fresh backend after one full sync of s. Required.
	Fresh func(t testing.TB, s *policy.State) string
	// Fallback reports whether a call's stats show a full sync that replaced a failed call.
	// Required.
	Fallback func(policy.SyncStats) bool
	// Mirror checks the backend's own view of the kernel against the kernel after a call that
	// failed (failed) or succeeded, and reports whether it checked anything; nil when the
	// backend keeps no view worth checking.
	Mirror func(t testing.TB, failed bool) bool
	// Keeps reports whether the backend promises to hold the previous state exactly after a
	// call that failed with fs; nil when it never does (it only falls back to a full sync).
	Keeps func(fs []Fault) bool
}

// Drive syncs the subject to comp's state with faults off, then applies ch event by event,
// each through one Update, with the schedule's faults on, and checks after every call:
//
//   - a call that a fault hit fails (no fault is swallowed), with an error wrapping
//     policy.ErrNextSyncFull; a call that fails was hit by a fault;
//   - after a failure the kernel holds the previous state where Keeps promises it, and the
//     next call that succeeds is a full sync (Fallback);
//   - after a call that succeeds the kernel holds what a fresh sync of the state holds (no
//     update lost to an earlier failure);
//   - the backend's view of the kernel is the kernel's (Mirror).
//
// Then it stops the faults and checks that one more call converges. It returns what it
// tried, and logs it; the test fails at the first broken promise, and when fewer than three
// calls failed or fewer than three converged.
func Drive(t *testing.T, sub Subject, comp *policy.Compiler, ch *workloads.Churn) Tally {
	t.Helper()
	tally := Tally{Faults: map[string]int{}}
	s := comp.State()
	sub.Schedule.Stop()
	if _, err := sub.Backend.Sync(s); err != nil {
		t.Fatalf("first sync, faults off: %v", err)
	}
	prev := sub.Dump(t)
	if want := sub.Fresh(t, s); prev != want {
		t.Fatalf("first sync differs from a fresh one:\n%s", Diff(want, prev))
	}
	if sub.Mirror != nil && sub.Mirror(t, false) {
		tally.Mirrored++
	}
	sub.Schedule.take()
	sub.Schedule.Start()
	failed := false
	check := func(what string, st policy.SyncStats, err error) {
		t.Helper()
		fs := sub.Schedule.take()
		for _, f := range fs {
			tally.Faults[f.Kind.Name]++
		}
		now := sub.Dump(t)
		if err == nil {
			if len(fs) > 0 {
				t.Fatalf("%s: the call succeeded although %s: a fault was swallowed", what, describe(fs))
			}
			if failed {
				if !sub.Fallback(st) {
					t.Fatalf("%s: the call after a failure was not a full sync", what)
				}
				tally.Fallbacks++
			}
			if want := sub.Fresh(t, s); now != want {
				t.Fatalf("%s: the kernel differs from a fresh sync of the state (- fresh, + kernel):\n%s", what, Diff(want, now))
			}
			tally.Converged++
		} else {
			if len(fs) == 0 {
				t.Fatalf("%s: failed without an injected fault: %v", what, err)
			}
			if !errors.Is(err, policy.ErrNextSyncFull) {
				t.Fatalf("%s: the error (after %s) does not say the next call is a full sync: %v", what, describe(fs), err)
			}
			tally.Failed++
			if sub.Keeps != nil && sub.Keeps(fs) {
				if now != prev {
					t.Fatalf("%s: %s changed the kernel's state (- before, + after):\n%v\n%s", what, describe(fs), err, Diff(prev, now))
				}
				tally.Kept++
			}
		}
		if sub.Mirror != nil && sub.Mirror(t, err != nil) {
			tally.Mirrored++
		}
		failed = err != nil
		prev = now
	}
	for {
		batch, ok := ch.Next()
		if !ok {
			break
		}
		for _, ev := range batch {
			d, err := comp.Apply(ev)
			if err != nil {
				t.Fatalf("apply %s: %v", ev.Kind, err)
			}
			tally.Events++
			st, err := sub.Backend.Update(s, d)
			check(fmt.Sprintf("event %d (%s)", tally.Events, ev.Kind), st, err)
		}
	}
	sub.Schedule.Stop()
	st, err := sub.Backend.Update(s, &policy.Delta{})
	if err != nil {
		t.Fatalf("first call after the faults stopped: %v", err)
	}
	check("after the faults stopped", st, nil)
	// A schedule that never let a call fail, or never let one through, proved little.
	if tally.Failed < 3 || tally.Converged < 3 {
		t.Fatalf("the schedule tested too little (want 3 failed and 3 converged calls): %s", tally)
	}
	t.Logf("%s", tally)
	return tally
}

// RequireKinds fails the test unless tally injected every one of kinds: a seam that never
// failed one way tested nothing of it.
func RequireKinds(t testing.TB, tally Tally, kinds ...Kind) {
	t.Helper()
	for _, k := range kinds {
		if tally.Faults[k.Name] == 0 {
			t.Errorf("no %q fault was injected: %s", k.Name, tally)
		}
	}
}

func describe(fs []Fault) string {
	parts := make([]string, len(fs))
	for i, f := range fs {
		parts[i] = fmt.Sprintf("%q at operation %d", f.Kind.Name, f.Op)
	}
	return "faults " + strings.Join(parts, ", ") + " were injected"
}

// Diff lists the lines only want has (-) and only got has (+), sorted, at most 40.
func Diff(want, got string) string {
	count := func(s string) map[string]int {
		m := map[string]int{}
		for _, l := range strings.Split(s, "\n") {
			m[l]++
		}
		return m
	}
	w, g := count(want), count(got)
	var out []string
	for l, n := range w {
		if g[l] < n {
			out = append(out, "- "+l)
		}
	}
	for l, n := range g {
		if w[l] < n {
			out = append(out, "+ "+l)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i][2:] < out[j][2:] || out[i][2:] == out[j][2:] && out[i] < out[j] })
	if len(out) > 40 {
		out = append(out[:40], fmt.Sprintf("... %d more", len(out)-40))
	}
	return strings.Join(out, "\n")
}
