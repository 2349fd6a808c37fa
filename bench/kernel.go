package bench

import (
	"context"
	"fmt"

	"netpolbench/catalogue"
	"netpolbench/internal/needs"
	"netpolbench/policy"
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

// kernelPhases enforces with the backend in the testbed and measures real packets after churn:
// round trips, throughput and churn under load. inNode is the enforcement a backend of a family
// InNode already is (its sync put it in force); other backends are put in force here and taken
// out afterwards.
func (r *Runner) kernelPhases(ctx context.Context, b *catalogue.Backend, pods int, st *policy.State, comp *policy.Compiler, inNode *testbed.Enforcement) {
	name := b.Name
	bed, err := r.openBed()
	if err != nil {
		r.capf(name, pods, true, "", "real-packet phases: %v", err)
		return
	}
	e := inNode
	if e == nil {
		if e, _, err = b.Enforce(bed, catalogue.Env{State: st, Stamped: true, MapHeadroom: r.Spec.MapHeadroom}); err != nil {
			r.capf(name, pods, true, "", "enforce in the testbed: %v", err)
			return
		}
		defer r.takeOut(name, e)
	}
	r.Progress.Note(fmt.Sprintf("pods=%d backend=%s round trips", pods, name))
	r.roundTrips(ctx, bed, name, pods, st)
	r.Progress.Note(fmt.Sprintf("pods=%d backend=%s churn under load", pods, name))
	r.churnUnderLoad(ctx, bed, name, pods, comp, e.Backend())
}

// takeOut closes an enforcement, which checks that nothing of the backend is left in the
// testbed; a leftover is logged, and the next backend's Enforce refuses to start over it.
func (r *Runner) takeOut(name string, e *testbed.Enforcement) {
	if err := e.Close(); err != nil {
		r.logf("bench: %s: take enforcement out of the testbed: %v", name, err)
	}
}
