package bench

import (
	"netpolbench/catalogue"
	"netpolbench/internal/needs"
	"netpolbench/testbed"
)

// Where the stamps sit: a family's catalogue.Family.Stamp.
const (
	attachTCX       = catalogue.StampTCX
	attachNetfilter = catalogue.StampNetfilter
)

// openBed builds the run's testbed on first use; a failure is remembered, so every backend
// that needs it is capped with the same reason instead of retrying.
func (r *Runner) openBed() (*testbed.Testbed, error) {
	if r.bed != nil || r.bedErr != nil {
		return r.bed, r.bedErr
	}
	if needs.Root.Check() != nil {
		r.bedErr = testbed.ErrNeedRoot
		return nil, r.bedErr
	}
	r.Progress.Note("building the namespace testbed")
	r.bed, r.bedErr = testbed.New(testbed.Options{})
	return r.bed, r.bedErr
}

func (r *Runner) closeBed() {
	if r.bed != nil {
		if err := r.bed.Close(); err != nil {
			r.logf("bench: close testbed: %v", err)
		}
		r.bed = nil
	}
}

// takeOut closes an enforcement, which checks that nothing of the backend is left in the
// testbed; a leftover is logged, and the next backend's Enforce refuses to start over it.
func (r *Runner) takeOut(name string, e *testbed.Enforcement) {
	if err := e.Close(); err != nil {
		r.logf("bench: %s: take enforcement out of the testbed: %v", name, err)
	}
}
