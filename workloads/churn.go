package workloads

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"strconv"
	"strings"
	"time"

	"netpolbench/policy"
)

// ChurnKind is one kind of churn operation. Bursts are several pod events in one batch.
type ChurnKind uint8

const (
	ChurnPodAdd ChurnKind = iota
	ChurnPodDelete
	ChurnRelabel
	ChurnScaleUp
	ChurnScaleDown
	ChurnPolicyAdd
	ChurnPolicyUpdate
	ChurnPolicyRemove
	numChurnKinds
)

var churnKindNames = [...]string{"pod-add", "pod-delete", "relabel", "scale-up", "scale-down",
	"policy-add", "policy-update", "policy-remove"}

func (k ChurnKind) String() string {
	if k < numChurnKinds {
		return churnKindNames[k]
	}
	return "unknown"
}

// ParseChurnKind reads a kind by its name (pod-add, relabel, ...).
func ParseChurnKind(s string) (ChurnKind, error) {
	for i, n := range churnKindNames {
		if n == s {
			return ChurnKind(i), nil
		}
	}
	return 0, fmt.Errorf("unknown churn kind %q (want one of %s)", s, strings.Join(churnKindNames[:], ", "))
}

// ChurnMix weighs the churn operations; only the ratios matter.
type ChurnMix struct {
	PodAdd       float64 `json:"podAdd,omitempty"`
	PodDelete    float64 `json:"podDelete,omitempty"`
	Relabel      float64 `json:"relabel,omitempty"`
	ScaleUp      float64 `json:"scaleUp,omitempty"`
	ScaleDown    float64 `json:"scaleDown,omitempty"`
	PolicyAdd    float64 `json:"policyAdd,omitempty"`
	PolicyUpdate float64 `json:"policyUpdate,omitempty"`
	PolicyRemove float64 `json:"policyRemove,omitempty"`
}

func (m ChurnMix) weights() [numChurnKinds]float64 {
	return [numChurnKinds]float64{m.PodAdd, m.PodDelete, m.Relabel, m.ScaleUp, m.ScaleDown,
		m.PolicyAdd, m.PolicyUpdate, m.PolicyRemove}
}

// ChurnSpec describes a churn stream.
type ChurnSpec struct {
	Mix ChurnMix `json:"mix"`
	// Count is the number of operations (batches); a burst is one operation of BurstSize events.
	Count int `json:"count"`
	// Rate is the target in events per second that Churn.Due schedules by; 0 means no pacing.
	Rate float64 `json:"rate,omitempty"`
	// BurstSize is the number of pods a scale-up or scale-down burst adds or deletes (default 10).
	BurstSize int `json:"burstSize,omitempty"`
	// NewLabelSet is the share of relabels that move the pod to a brand-new label set (a new
	// identity) rather than another existing one of its namespace, 0..1 (default 0.2).
	NewLabelSet *float64 `json:"newLabelSet,omitempty"`
}

// DefaultChurn is a mixed stream of 1,000 operations at 100 events/s.
func DefaultChurn() ChurnSpec {
	return ChurnSpec{
		Mix: ChurnMix{PodAdd: 3, PodDelete: 3, Relabel: 2, ScaleUp: 0.5, ScaleDown: 0.5,
			PolicyAdd: 1, PolicyUpdate: 1, PolicyRemove: 1},
		Count: 1000, Rate: 100, BurstSize: 10,
	}
}

// Validate checks the spec, naming each bad field.
func (s *ChurnSpec) Validate() error {
	var errs []error
	total := 0.0
	for i, w := range s.Mix.weights() {
		if w < 0 {
			errs = append(errs, fmt.Errorf("mix.%s: weight must be >= 0, got %g", ChurnKind(i), w))
		}
		total += w
	}
	if total <= 0 {
		errs = append(errs, errors.New("mix: needs at least one positive weight"))
	}
	if s.Count < 0 {
		errs = append(errs, fmt.Errorf("count: must be >= 0, got %d", s.Count))
	}
	if s.Rate < 0 {
		errs = append(errs, fmt.Errorf("rate: must be >= 0 events/s, got %g", s.Rate))
	}
	if s.BurstSize < 0 || s.BurstSize > 10000 {
		errs = append(errs, fmt.Errorf("burstSize: must be 0..10000, got %d", s.BurstSize))
	}
	if s.NewLabelSet != nil && (*s.NewLabelSet < 0 || *s.NewLabelSet > 1) {
		errs = append(errs, fmt.Errorf("newLabelSet: must be a share 0..1, got %g", *s.NewLabelSet))
	}
	if len(errs) > 0 {
		return fmt.Errorf("invalid churn spec: %w", errors.Join(errs...))
	}
	return nil
}

// Churn is a deterministic stream of churn batches over a generated cluster. It tracks the
// cluster as the events change it, so every event applies to the cluster as it is then: a
// deleted pod is not deleted again, a new pod gets a free address of the pod range, a relabel
// targets a label set of the pod's namespace. Apply every batch, in order, to a Compiler built
// from the same Generated cluster.
type Churn struct {
	spec   ChurnSpec
	r      *rand.Rand
	w      *world
	newLS  float64
	burst  int
	pods   []*livePod
	byLS   [][]*livePod
	free   []int // recycled pod address offsets, oldest first
	pols   []livePolicy
	tmpls  []PolicyTemplate
	ops    int
	events int
	due    time.Duration
}

type livePod struct {
	key        string
	ns, ls     int
	ip         int
	gpos, lpos int
}

type livePolicy struct {
	key  string
	ns   int
	tmpl PolicyTemplate
}

// NewChurn starts a churn stream from the generated cluster as Generate built it (whatever
// has happened to g.Cluster since). The same spec, cluster and seed give the same stream.
func NewChurn(spec ChurnSpec, g *Generated, seed uint64) (*Churn, error) {
	if err := spec.Validate(); err != nil {
		return nil, err
	}
	c := &Churn{spec: spec, r: newRand(seed, streamChurn), w: g.w.clone(), newLS: 0.2, burst: spec.BurstSize}
	if spec.NewLabelSet != nil {
		c.newLS = *spec.NewLabelSet
	}
	if c.burst == 0 {
		c.burst = 10
	}
	c.byLS = make([][]*livePod, len(c.w.labelSets))
	for i, p := range g.Pods {
		c.addLive(p.Namespace+"/"+p.Name, int(g.podLS[i]), i)
	}
	for i, np := range g.Policies {
		c.pols = append(c.pols, livePolicy{key: np.Namespace + "/" + np.Name, ns: c.w.nsByName(np.Namespace), tmpl: g.Spec.Policies[g.polTmpl[i]]})
	}
	for _, t := range g.Spec.Policies {
		if t.Count > 0 {
			c.tmpls = append(c.tmpls, t)
		}
	}
	if len(c.tmpls) == 0 {
		c.tmpls = []PolicyTemplate{{Kind: KindAllowFromApp, Count: 1, Peers: 2}}
	}
	return c, nil
}

func (c *Churn) addLive(key string, ls, ip int) *livePod {
	p := &livePod{key: key, ns: c.w.labelSets[ls].ns, ls: ls, ip: ip, gpos: len(c.pods), lpos: len(c.byLS[ls])}
	c.pods = append(c.pods, p)
	c.byLS[ls] = append(c.byLS[ls], p)
	return p
}

func (c *Churn) removeLive(p *livePod) {
	last := c.pods[len(c.pods)-1]
	c.pods[p.gpos], last.gpos = last, p.gpos
	c.pods = c.pods[:len(c.pods)-1]
	c.unlinkLS(p)
	c.free = append(c.free, p.ip)
}

func (c *Churn) unlinkLS(p *livePod) {
	l := c.byLS[p.ls]
	last := l[len(l)-1]
	l[p.lpos], last.lpos = last, p.lpos
	c.byLS[p.ls] = l[:len(l)-1]
}

// Pods is the number of live pods after the batches returned so far.
func (c *Churn) Pods() int { return len(c.pods) }

// Policies is the number of live policies after the batches returned so far.
func (c *Churn) Policies() int { return len(c.pols) }

// Events is the number of events returned so far.
func (c *Churn) Events() int { return c.events }

// Due is when the batch last returned by Next should be applied, from the start of the stream,
// at the spec's rate (0 when the spec sets no rate).
func (c *Churn) Due() time.Duration { return c.due }

// Next returns the next batch, or false once Count operations have been returned.
func (c *Churn) Next() ([]policy.Event, bool) {
	if c.ops >= c.spec.Count {
		return nil, false
	}
	c.ops++
	weights := c.spec.Mix.weights()
	total := 0.0
	for k := range weights {
		if !c.feasible(ChurnKind(k)) {
			weights[k] = 0
		}
		total += weights[k]
	}
	if total == 0 {
		return nil, false // nothing can happen: e.g. only deletes and no pods left
	}
	x := c.r.Float64() * total
	kind := ChurnKind(0)
	for k, wt := range weights {
		if x < wt {
			kind = ChurnKind(k)
			break
		}
		x -= wt
		if wt > 0 {
			kind = ChurnKind(k) // float rounding lands on the last feasible kind
		}
	}
	evs, _ := c.NextOf(kind)
	return evs, true
}

// popularLS draws a label set by pod, so big deployments grow more often; any label set when
// no pod is left.
func (c *Churn) popularLS() int {
	if len(c.pods) == 0 {
		return c.r.IntN(len(c.w.labelSets))
	}
	return c.pods[c.r.IntN(len(c.pods))].ls
}

func (c *Churn) feasible(k ChurnKind) bool {
	switch k {
	case ChurnPodAdd, ChurnScaleUp:
		return len(c.free) > 0 || c.w.ipUsed < MaxPods
	case ChurnPodDelete, ChurnScaleDown:
		return len(c.pods) > 0
	case ChurnRelabel:
		return len(c.pods) > 0
	case ChurnPolicyUpdate, ChurnPolicyRemove:
		return len(c.pols) > 0
	}
	return true
}

// NextOf returns a batch of the given kind, or an error when the cluster does not allow it
// now (no pods to delete, no free addresses, no policies). It does not count towards Count;
// benchmarks use it to time one kind of event.
func (c *Churn) NextOf(kind ChurnKind) ([]policy.Event, error) {
	if !c.feasible(kind) {
		return nil, fmt.Errorf("churn %s: not possible with %d pods and %d policies", kind, len(c.pods), len(c.pols))
	}
	var evs []policy.Event
	switch kind {
	case ChurnPodAdd:
		evs = append(evs, c.podAdd(c.popularLS()))
	case ChurnPodDelete:
		evs = append(evs, c.podDelete(c.pods[c.r.IntN(len(c.pods))]))
	case ChurnRelabel:
		evs = append(evs, c.relabel(c.pods[c.r.IntN(len(c.pods))]))
	case ChurnScaleUp:
		ls := c.popularLS()
		for range c.burst {
			if !c.feasible(ChurnPodAdd) {
				break
			}
			evs = append(evs, c.podAdd(ls))
		}
	case ChurnScaleDown:
		ls := c.pods[c.r.IntN(len(c.pods))].ls
		for range c.burst {
			l := c.byLS[ls]
			if len(l) == 0 {
				break
			}
			evs = append(evs, c.podDelete(l[c.r.IntN(len(l))]))
		}
	case ChurnPolicyAdd:
		t := c.tmpls[c.r.IntN(len(c.tmpls))]
		np := c.w.policy(c.r, t)
		c.pols = append(c.pols, livePolicy{key: np.Namespace + "/" + np.Name, ns: c.w.nsByName(np.Namespace), tmpl: t})
		evs = append(evs, policy.Event{Kind: policy.PolicyAdd, Policy: np})
	case ChurnPolicyUpdate:
		lp := c.pols[c.r.IntN(len(c.pols))]
		t := lp.tmpl
		if t.Kind == KindDefaultDeny || t.Kind == KindAllowAll {
			// Their only freedom is the direction, so an update changes it.
			t.PolicyTypes = [][]string{{"Ingress"}, {"Egress"}, {"Ingress", "Egress"}}[c.r.IntN(3)]
		}
		name := lp.key[strings.IndexByte(lp.key, '/')+1:]
		np := c.w.policyNamed(c.r, t, name, lp.ns)
		evs = append(evs, policy.Event{Kind: policy.PolicyUpdate, Policy: np})
	case ChurnPolicyRemove:
		i := c.r.IntN(len(c.pols))
		key := c.pols[i].key
		c.pols[i] = c.pols[len(c.pols)-1]
		c.pols = c.pols[:len(c.pols)-1]
		evs = append(evs, policy.Event{Kind: policy.PolicyRemove, PolicyKey: key})
	default:
		return nil, fmt.Errorf("churn: unknown kind %d", kind)
	}
	if c.spec.Rate > 0 {
		c.due = time.Duration(float64(c.events) / c.spec.Rate * float64(time.Second))
	}
	c.events += len(evs)
	return evs, nil
}

// podAdd adds a pod of label set ls at the oldest free address (recycled addresses first, as
// an IPAM that hands back released addresses would).
func (c *Churn) podAdd(ls int) policy.Event {
	var ip int
	if len(c.free) > 0 {
		ip = c.free[0]
		c.free = c.free[1:]
	} else {
		ip = c.w.ipUsed
		c.w.ipUsed++
	}
	set := c.w.labelSets[ls] // the churn's own copy (world.clone)
	name := set.app + "-" + strconv.Itoa(set.next)
	set.next++
	ns := c.w.nsNames[set.ns]
	p := c.addLive(ns+"/"+name, ls, ip)
	return policy.Event{Kind: policy.PodAdd, Pod: &policy.Pod{
		Namespace: ns, Name: name, Labels: copyMap(set.labels), IP: podAddr(p.ip),
		Ports: append([]policy.ContainerPort(nil), set.ports...),
	}}
}

func (c *Churn) podDelete(p *livePod) policy.Event {
	c.removeLive(p)
	return policy.Event{Kind: policy.PodDelete, PodKey: p.key}
}

// relabel moves the pod to another label set of its namespace, or to a new one.
func (c *Churn) relabel(p *livePod) policy.Event {
	others := len(c.w.byNS[p.ns]) - 1
	room := len(c.w.labelSets) < maxLabelSets
	var to int
	if others == 0 && !room {
		to = p.ls // the identity space is full: a no-op relabel
	} else if others == 0 || (room && c.r.Float64() < c.newLS) {
		to = c.w.addLabelSet(c.r, p.ns)
		c.byLS = append(c.byLS, nil)
	} else {
		l := c.w.byNS[p.ns]
		for to = p.ls; to == p.ls; {
			to = l[c.r.IntN(len(l))]
		}
	}
	c.unlinkLS(p)
	p.ls, p.lpos = to, len(c.byLS[to])
	c.byLS[to] = append(c.byLS[to], p)
	return policy.Event{Kind: policy.PodRelabel, PodKey: p.key, Labels: copyMap(c.w.labelSets[to].labels)}
}

func (w *world) nsByName(name string) int {
	for i, n := range w.nsNames {
		if n == name {
			return i
		}
	}
	return -1
}
