package policy

// The tests of package policy_test draw their clusters from policytest's random world;
// policytest imports this package, so they cannot live inside it. These hooks give them what
// they check from inside.

var (
	MustCompile      = mustCompile
	Canonical        = canonical
	FirstDiff        = firstDiff
	CheckBookkeeping = checkBookkeeping
	// SegmentSlots is segSlots, which tests lower to make count tables split early.
	SegmentSlots = &segSlots
)

// Mirror is what a backend holds if it starts from a full sync and then applies only deltas
// (see mirror).
type Mirror struct{ m *mirror }

func NewMirror(s *State) Mirror       { return Mirror{newMirror(s)} }
func (m Mirror) Apply(d *Delta) error { return m.m.apply(d) }
func (m Mirror) Equal(s *State) error { return m.m.equal(s) }

// Hooks for the loader tests, which may use what imports this package (workloads).
var (
	CheckCluster = checkCluster
	PodToK8s     = podToK8s
)
