package faults

import (
	"math"
	"strings"
	"testing"
)

var (
	kindA = Kind{Name: "a"}
	kindB = Kind{Name: "b", Partial: true}
)

// run draws n operations that can suffer kinds and returns which of them failed, by index.
func run(s *Schedule, n int, kinds ...Kind) []Kind {
	out := make([]Kind, n)
	for i := range out {
		out[i], _ = s.Next(kinds...)
	}
	return out
}

func TestScheduleFailsOneOperationInEveryOnAverageAndRepeatsItsSeed(t *testing.T) {
	for _, every := range []int{1, 3, 17} {
		s := NewSchedule(every, 7)
		if got := run(s, 100, kindA); got[0] != (Kind{}) || s.take() != nil {
			t.Fatalf("every=%d: faults before Start", every)
		}
		s.Start()
		const n = 20000
		got := run(s, n, kindA, kindB)
		faults := 0
		for _, k := range got {
			if k != (Kind{}) {
				faults++
			}
		}
		if mean := float64(n) / float64(faults); math.Abs(mean-float64(every)) > 0.05*float64(every) {
			t.Errorf("every=%d: one fault in %.2f operations", every, mean)
		}
		inj := s.Injected()
		if inj[kindA]+inj[kindB] != faults || inj[kindA] == 0 || inj[kindB] == 0 {
			t.Errorf("every=%d: injected %v, counted %d faults", every, inj, faults)
		}
		// Operations drawn while off consume nothing: a twin started at once fails the same.
		twin := NewSchedule(every, 7)
		twin.Start()
		if !equal(run(twin, n, kindA, kindB), got) {
			t.Errorf("every=%d: the same seed gave another schedule", every)
		}
		s.Stop()
		if k := run(s, 1000, kindA); !equal(k, make([]Kind, 1000)) {
			t.Errorf("every=%d: faults after Stop", every)
		}
	}
}

func equal(a, b []Kind) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func TestOperationsThatCannotFailCountButNeverFail(t *testing.T) {
	s := NewSchedule(1, 1)
	s.Start()
	for range 10 {
		if _, ok := s.Next(); ok {
			t.Fatal("an operation with no kinds failed")
		}
	}
	if _, ok := s.Next(kindA); !ok {
		t.Fatal("every=1: an operation that can fail did not")
	}
	if fs := s.take(); len(fs) != 1 || fs[0].Op != 10 || fs[0].Kind != kindA {
		t.Fatalf("faults of the call: %+v, want kind a at operation 10", fs)
	}
	if fs := s.take(); fs != nil {
		t.Fatalf("take did not start a new call: %+v", fs)
	}
}

func TestDiffListsWhatEachSideHasAlone(t *testing.T) {
	d := Diff("a\nb\nb\nc", "b\nc\nd")
	for _, want := range []string{"- a", "- b", "+ d"} {
		if !strings.Contains(d, want) {
			t.Errorf("diff lacks %q:\n%s", want, d)
		}
	}
	if strings.Contains(d, "c") {
		t.Errorf("diff lists a common line:\n%s", d)
	}
}
