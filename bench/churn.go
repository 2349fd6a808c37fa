package bench

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"maps"
	"math/rand/v2"
	"net/netip"
	"slices"
	"time"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"

	"netpolbench/policy"
	"netpolbench/results"
	"netpolbench/testbed"
)

// podRange is where pod addresses come from (the suite's rule); new pods take free ones.
var podRange = netip.MustParsePrefix("198.18.0.0/15")

// churner builds churn events of one kind against the cluster as it is at that moment, so every
// event applies: a deleted pod is never deleted twice, a new pod gets a free address, a relabel
// moves a pod to an existing label set of its namespace. It works on any cluster, generated or
// a user's dump, and draws from its own seeded source so a run is repeatable.
type churner struct {
	r    *rand.Rand
	next int // suffix for generated names
	ip   netip.Addr
	// protected pods are never deleted or relabelled (the pods of a stream under churn).
	protected map[string]bool
}

func (c *churner) protect(key string) {
	if c.protected == nil {
		c.protected = map[string]bool{}
	}
	c.protected[key] = true
}

// unprotected returns keys without the protected pods.
func (c *churner) unprotected(keys []string) []string {
	if len(c.protected) == 0 {
		return keys
	}
	out := make([]string, 0, len(keys))
	for _, k := range keys {
		if !c.protected[k] {
			out = append(out, k)
		}
	}
	return out
}

func newChurner(seed uint64) *churner {
	return &churner{r: rand.New(rand.NewPCG(seed, 0x6e7062)), ip: podRange.Addr()}
}

// freeIP returns the next pod-range address no pod holds (skipping .0 and .255).
func (c *churner) freeIP(cl *policy.Cluster) (netip.Addr, error) {
	for ip := c.ip.Next(); podRange.Contains(ip); ip = ip.Next() {
		b := ip.As4()
		if b[3] == 0 || b[3] == 255 {
			continue
		}
		if _, taken := cl.PodByIP(ip); !taken {
			c.ip = ip
			return ip, nil
		}
	}
	return netip.Addr{}, fmt.Errorf("churn: no free address left in %s", podRange)
}

func (c *churner) pick(keys []string) string { return keys[c.r.IntN(len(keys))] }

// events returns the events of one churn kind (results.Event*): one event, or burst events
// for scale-up and scale-down.
func (c *churner) events(cl *policy.Cluster, kind string, burst int) ([]policy.Event, error) {
	pods := cl.PodKeys()
	switch kind {
	case results.EventPodAdd:
		ev, err := c.podAdd(cl, pods)
		return []policy.Event{ev}, err
	case results.EventScaleUp:
		// One deployment scaling up: copies of one pod, all with its label set.
		tmpl := cl.Pods[c.pick(pods)]
		var evs []policy.Event
		for range burst {
			ev, err := c.podLike(cl, tmpl)
			if err != nil {
				return nil, err
			}
			// freeIP moved its cursor past this address, so the next copy gets another.
			evs = append(evs, ev)
		}
		return evs, nil
	case results.EventPodDelete:
		pods = c.unprotected(pods)
		if len(pods) < 2 {
			return nil, fmt.Errorf("churn: too few pods to delete one")
		}
		return []policy.Event{{Kind: policy.PodDelete, PodKey: c.pick(pods)}}, nil
	case results.EventScaleDown:
		pods = c.unprotected(pods)
		n := max(0, min(burst, len(pods)-1))
		var evs []policy.Event
		for _, i := range c.r.Perm(len(pods))[:n] {
			evs = append(evs, policy.Event{Kind: policy.PodDelete, PodKey: pods[i]})
		}
		return evs, nil
	case results.EventRelabel:
		pods = c.unprotected(pods)
		if len(pods) == 0 {
			return nil, fmt.Errorf("churn: no pod to relabel")
		}
		return c.relabel(cl, pods)
	case results.EventPolicyAdd:
		return c.policyAdd(cl, pods)
	case results.EventPolicyUpdate:
		return c.policyUpdate(cl)
	case results.EventPolicyRemove:
		keys := cl.PolicyKeys()
		if len(keys) == 0 {
			return nil, fmt.Errorf("churn: no policy to remove")
		}
		return []policy.Event{{Kind: policy.PolicyRemove, PolicyKey: c.pick(keys)}}, nil
	}
	return nil, fmt.Errorf("churn: unknown event kind %q", kind)
}

func (c *churner) podAdd(cl *policy.Cluster, pods []string) (policy.Event, error) {
	if len(pods) == 0 {
		return policy.Event{}, fmt.Errorf("churn: no pod to copy a label set from")
	}
	return c.podLike(cl, cl.Pods[c.pick(pods)])
}

// podLike is a new pod with tmpl's namespace, labels and ports: a pod of an existing label
// set, which must change no policy entry in an identity-based backend.
func (c *churner) podLike(cl *policy.Cluster, tmpl *policy.Pod) (policy.Event, error) {
	ip, err := c.freeIP(cl)
	if err != nil {
		return policy.Event{}, err
	}
	c.next++
	p := &policy.Pod{
		Namespace: tmpl.Namespace,
		Name:      fmt.Sprintf("npb-churn-%d", c.next),
		Labels:    maps.Clone(tmpl.Labels),
		IP:        ip,
		Ports:     slices.Clone(tmpl.Ports),
	}
	return policy.Event{Kind: policy.PodAdd, Pod: p}, nil
}

// relabel moves a pod to another label set of its namespace (an existing identity when the
// namespace has one), as a rollout that changes a label does.
func (c *churner) relabel(cl *policy.Cluster, pods []string) ([]policy.Event, error) {
	for range 32 {
		p := cl.Pods[c.pick(pods)]
		o := cl.Pods[c.pick(pods)]
		if o.Namespace == p.Namespace && !maps.Equal(o.Labels, p.Labels) {
			return []policy.Event{{Kind: policy.PodRelabel, PodKey: p.Key(), Labels: maps.Clone(o.Labels)}}, nil
		}
	}
	// No second label set nearby: give the pod a new one.
	p := cl.Pods[c.pick(pods)]
	l := maps.Clone(p.Labels)
	if l == nil {
		l = map[string]string{}
	}
	c.next++
	l["npb-churn"] = fmt.Sprint(c.next)
	return []policy.Event{{Kind: policy.PodRelabel, PodKey: p.Key(), Labels: l}}, nil
}

// policyAdd allows one pod's label set to reach another's on a fresh TCP port.
func (c *churner) policyAdd(cl *policy.Cluster, pods []string) ([]policy.Event, error) {
	if len(pods) == 0 {
		return nil, fmt.Errorf("churn: no pods to select")
	}
	dst := cl.Pods[c.pick(pods)]
	src := cl.Pods[c.pick(pods)]
	c.next++
	port := intstr.FromInt32(int32(20000 + c.next%20000))
	tcp := corev1.ProtocolTCP
	np := &networkingv1.NetworkPolicy{
		TypeMeta:   metav1.TypeMeta{APIVersion: "networking.k8s.io/v1", Kind: "NetworkPolicy"},
		ObjectMeta: metav1.ObjectMeta{Namespace: dst.Namespace, Name: fmt.Sprintf("npb-churn-%d", c.next)},
		Spec: networkingv1.NetworkPolicySpec{
			PodSelector: metav1.LabelSelector{MatchLabels: maps.Clone(dst.Labels)},
			PolicyTypes: []networkingv1.PolicyType{networkingv1.PolicyTypeIngress},
			Ingress: []networkingv1.NetworkPolicyIngressRule{{
				From: []networkingv1.NetworkPolicyPeer{{
					PodSelector:       &metav1.LabelSelector{MatchLabels: maps.Clone(src.Labels)},
					NamespaceSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"kubernetes.io/metadata.name": src.Namespace}},
				}},
				Ports: []networkingv1.NetworkPolicyPort{{Protocol: &tcp, Port: &port}},
			}},
		},
	}
	return []policy.Event{{Kind: policy.PolicyAdd, Policy: np}}, nil
}

// policyUpdate changes the ports of an existing policy's first ingress rule (or adds one),
// the common edit of a live policy.
func (c *churner) policyUpdate(cl *policy.Cluster) ([]policy.Event, error) {
	keys := cl.PolicyKeys()
	if len(keys) == 0 {
		return nil, fmt.Errorf("churn: no policy to update")
	}
	np := cl.Policies[c.pick(keys)].DeepCopy()
	c.next++
	port := intstr.FromInt32(int32(20000 + c.next%20000))
	tcp := corev1.ProtocolTCP
	pp := networkingv1.NetworkPolicyPort{Protocol: &tcp, Port: &port}
	if len(np.Spec.Ingress) > 0 {
		np.Spec.Ingress[0].Ports = append(np.Spec.Ingress[0].Ports, pp)
	} else {
		np.Spec.Ingress = append(np.Spec.Ingress, networkingv1.NetworkPolicyIngressRule{Ports: []networkingv1.NetworkPolicyPort{pp}})
		if !slices.Contains(np.Spec.PolicyTypes, networkingv1.PolicyTypeIngress) {
			np.Spec.PolicyTypes = append(np.Spec.PolicyTypes, networkingv1.PolicyTypeIngress)
		}
	}
	return []policy.Event{{Kind: policy.PolicyUpdate, Policy: np}}, nil
}

// churnStep is one step of a scale's churn list: the events of one kind (one event, or a
// burst), the flows whose convergence is probed after them, and each flow's verdict before
// and after the step.
type churnStep struct {
	Kind   string           `json:"kind"`
	Events []policy.Event   `json:"events"`
	Probes []policy.Flow    `json:"-"`
	Before []policy.Verdict `json:"-"`
	After  []policy.Verdict `json:"-"`
}

// churnList is the churn every backend replays at a scale: generated once, against a compiler
// of its own, so every backend applies the identical events in the identical order, whatever
// it did before. Digest identifies it in the results.
type churnList struct {
	steps  []churnStep
	digest string
	// skipped counts events left out while generating (see underLoadList).
	skipped int
}

// eventDigest is a SHA-256 over the steps' kinds and events (JSON), hex.
func eventDigest(steps []churnStep) string {
	h := sha256.New()
	enc := json.NewEncoder(h)
	for _, s := range steps {
		// Events of the suite's own types always encode; an error would only shorten the hash
		// input, and the digest then still differs from a list's that encoded.
		enc.Encode(struct {
			Kind   string         `json:"kind"`
			Events []policy.Event `json:"events"`
		}{s.Kind, s.Events})
	}
	return hex.EncodeToString(h.Sum(nil))
}

// timedChurnList is the scale's churn list: perKind steps of every kind in churnKinds order,
// generated from comp's cluster (which it advances), with the convergence probes of each step.
// A kind whose events cannot be built here (no policy left to remove) ends early; what it
// could not build is logged through logf.
func timedChurnList(comp *policy.Compiler, seed uint64, pods, perKind, burst int, logf func(string, ...any)) *churnList {
	ch := newChurner(seed ^ uint64(pods))
	rng := rand.New(rand.NewPCG(seed, uint64(pods)))
	l := &churnList{}
	for _, kind := range churnKinds {
		for i := 0; i < perKind; i++ {
			evs, err := ch.events(comp.Cluster(), kind, burst)
			if err != nil {
				logf("bench: churn list at %d pods: %s: %v", pods, kind, err)
				break
			}
			st := comp.State()
			step := churnStep{Kind: kind, Events: evs, Probes: convergenceCandidates(st, evs, rng)}
			for _, f := range step.Probes {
				step.Before = append(step.Before, st.Verdict(f))
			}
			if err := applyAll(comp, evs); err != nil {
				logf("bench: churn list at %d pods: %s: %v", pods, kind, err)
				break
			}
			for _, f := range step.Probes {
				step.After = append(step.After, st.Verdict(f))
			}
			l.steps = append(l.steps, step)
		}
	}
	l.digest = eventDigest(l.steps)
	return l
}

// underLoadList is the churn applied while a stream flows along f: n steps cycling through
// churnKinds, generated from comp's cluster (which it advances). The stream's pods are never
// deleted or relabelled, and an event that would deny the stream itself is left out (counted
// in skipped): that is policy, not churn cost.
func underLoadList(comp *policy.Compiler, seed uint64, f policy.Flow, n, burst int) *churnList {
	ch := newChurner(seed ^ 0xc4c4)
	for _, ip := range []netip.Addr{f.Src, f.Dst} {
		if p, ok := comp.Cluster().PodByIP(ip); ok {
			ch.protect(p.Key())
		}
	}
	l := &churnList{}
	for i := 0; len(l.steps) < n && i < 4*n; i++ {
		kind := churnKinds[i%len(churnKinds)]
		evs, err := ch.events(comp.Cluster(), kind, burst)
		if err != nil {
			continue
		}
		var kept []policy.Event
		for _, ev := range evs {
			if isPolicyEvent(ev) {
				if v, err := comp.Cluster().EvaluateAfter(ev, f); err != nil || v != policy.Allow {
					l.skipped++
					continue
				}
			}
			inv, ok := inverseEvent(comp.Cluster(), ev)
			if !ok {
				continue
			}
			if _, err := comp.Apply(ev); err != nil {
				continue
			}
			if comp.State().Verdict(f) != policy.Allow {
				// Pod events cannot deny the stream (its pods are protected); this is a net.
				if _, err := comp.Apply(inv); err != nil {
					break
				}
				l.skipped++
				continue
			}
			kept = append(kept, ev)
		}
		if len(kept) > 0 {
			l.steps = append(l.steps, churnStep{Kind: kind, Events: kept})
		}
	}
	l.digest = eventDigest(l.steps)
	return l
}

// applyAll applies events to comp in order.
func applyAll(comp *policy.Compiler, evs []policy.Event) error {
	for _, ev := range evs {
		if _, err := comp.Apply(ev); err != nil {
			return err
		}
	}
	return nil
}

// replay applies every step of l to comp without a backend: how a resumed run brings a fresh
// compiler to the state after a churn phase it finished before it stopped.
func (l *churnList) replay(comp *policy.Compiler) error {
	for _, s := range l.steps {
		if err := applyAll(comp, s.Events); err != nil {
			return err
		}
	}
	return nil
}

// churnList returns the scale's churn list, generating it on first use from a compiler of its
// own over the scale's cluster. With real packets, the churn-under-load list is generated right
// after it from the state the churn list leaves, and that compiler is let go.
func (r *Runner) churnList(s *scale) (*churnList, error) {
	if s.churn != nil {
		return s.churn, nil
	}
	comp, err := policy.Compile(s.base.Clone(), policy.Options{})
	if err != nil {
		return nil, fmt.Errorf("compile workload of %d pods: %w", s.pods, err)
	}
	s.churn = timedChurnList(comp, r.Spec.Seed, s.pods, r.Spec.ChurnEvents, r.Spec.ScaleBurst, r.logf)
	if r.Kernel {
		s.stream, s.streamOK = allowedFlow(comp.State(), r.Spec.Seed+2, policy.ProtoUDP)
		n := max(1, int(time.Duration(r.Spec.Duration)/churnEvery))
		s.underLoad = underLoadList(comp, r.Spec.Seed, s.stream, n, r.Spec.ScaleBurst)
	}
	return s.churn, nil
}

// churnPhase replays the scale's churn list through the unit's compiler and the backend's
// Update, timing each step's apply and, with a decider, the convergence to the new verdict.
// A backend that does not apply the whole list within the phase budget is capped in this
// phase (results.PhaseChurn): it measures nothing after it.
func (u *unit) churnPhase(ctx context.Context) error {
	r, s, name := u.r, u.s, u.name
	l, err := r.churnList(s)
	if err != nil {
		u.capChurn("", "churn list: %v", err)
		return nil
	}
	decider, _ := u.be.(policy.Decider)
	if decider == nil && u.inNode != nil && r.Kernel {
		// No program to test-run: converge on real packets through the testbed.
		decider = &packetDecider{ctx: ctx, bed: r.bed}
	}
	pctx, cancel := r.phaseCtx(ctx)
	defer cancel()
	var ups []*results.Update
	byKind := map[string]*results.Update{}
	defer func() {
		for _, up := range ups {
			r.addUpdate(*up, s.label)
			if up.Event != results.EventPodAdd || up.Capped || len(up.ApplyNS) == 0 {
				continue
			}
			// The pod-add series of the fits: this scale's point, from its sync phase.
			for i := len(r.sizes[name]) - 1; i >= 0; i-- {
				if p := &r.sizes[name][i]; p.pods == s.pods && p.labelSets == 0 {
					p.podAddNS = median(up.ApplyNS)
					break
				}
			}
		}
	}()
	for i, step := range l.steps {
		kind := step.Kind
		up := byKind[kind]
		if up == nil {
			up = &results.Update{Backend: name, Pods: s.pods, Path: u.b.Path, Event: kind, OpsUnit: u.b.Family.OpsUnit, EventsDigest: l.digest}
			byKind[kind] = up
			ups = append(ups, up)
		}
		if pctx.Err() != nil {
			if ctx.Err() == nil {
				up.Capped = true
				u.capChurn(fmt.Sprintf("%s per phase", time.Duration(r.Spec.Budget.MaxPhase)),
					"churn stopped at %s event %d (step %d of the list's %d)", kind, len(up.ApplyNS)+1, i+1, len(l.steps))
			}
			return nil
		}
		var sizeBefore uint64
		if kind == results.EventPodAdd {
			sizeBefore = r.policyEntries(u.be)
		}
		var applyNS time.Duration
		var ops, entriesChanged int
		start := time.Now()
		for j, ev := range step.Events {
			if j > 0 && pctx.Err() != nil {
				// A burst of slow events may outlast the budget by itself: stop within it.
				if ctx.Err() == nil {
					up.Capped = true
					u.capChurn(fmt.Sprintf("%s per phase", time.Duration(r.Spec.Budget.MaxPhase)),
						"churn stopped within %s event %d, after %d of its %d pods (step %d of the list's %d)", kind, len(up.ApplyNS)+1, j, len(step.Events), i+1, len(l.steps))
				}
				return nil
			}
			d, err := u.comp.Apply(ev)
			if err != nil {
				up.Capped = true
				u.capChurn("", "%s: compile: %v", kind, err)
				return nil
			}
			entriesChanged += len(d.EntriesAdded) + len(d.EntriesRemoved)
			var st policy.SyncStats
			var uerr error
			var took time.Duration
			if !u.call(ctx, func() {
				t := time.Now()
				st, uerr = u.be.Update(u.comp.State(), d)
				took = time.Since(t)
			}) {
				return nil
			}
			applyNS += took
			if uerr != nil {
				up.Capped = true
				u.capChurn("", "update %s: %v", kind, uerr)
				return nil
			}
			ops += st.Ops
		}
		up.ApplyNS = append(up.ApplyNS, float64(applyNS))
		up.KernelOps = append(up.KernelOps, float64(ops))
		if decider != nil {
			if c, ok := converge(ctx, decider, step, start, time.Duration(r.Spec.Budget.MaxPhase)/10); ok {
				up.ConvergenceNS = append(up.ConvergenceNS, float64(c))
			}
		}
		if kind == results.EventPodAdd {
			chk := r.podAdd[name]
			if chk == nil {
				chk = &podAddCheck{}
				r.podAdd[name] = chk
			}
			chk.events++
			chk.entriesChanged += entriesChanged
			after := r.policyEntries(u.be)
			if sizeBefore != 0 || after != 0 {
				chk.measured = true
				chk.policyEntriesBefore += sizeBefore
				chk.policyEntriesAfter += after
			}
		}
	}
	u.churned = true
	return nil
}

// capChurn records that the backend did not apply the whole churn list.
func (u *unit) capChurn(limit, format string, a ...any) {
	u.r.addCap(results.Cap{Backend: u.name, Pods: u.s.pods, Phase: results.PhaseChurn, Limit: limit, Reason: fmt.Sprintf(format, a...)})
}

// replayChurn brings a resumed unit to the state after the churn phase it finished before the
// run stopped: the list replayed into its compiler and, for a backend that is its own
// enforcement, synced (untimed) into the backend.
func (u *unit) replayChurn(ctx context.Context) {
	r := u.r
	if r.run.ChurnCapped(u.name, u.s.pods) || r.run.PhaseDone(u.phaseID(phaseUnderLoad)) {
		return
	}
	l, err := r.churnList(u.s)
	if err != nil {
		r.logf("bench: %s: replay churn: %v", u.id, err)
		return
	}
	if err := l.replay(u.comp); err != nil {
		r.logf("bench: %s: replay churn: %v", u.id, err)
		return
	}
	if u.inNode != nil {
		var serr error
		if !u.call(ctx, func() { _, serr = u.be.Sync(u.comp.State()) }) || serr != nil {
			r.logf("bench: %s: sync after replaying churn: %v", u.id, serr)
			return
		}
	}
	u.churned = true
}

// underLoadPhase streams packets between two pods that stay allowed while the scale's
// churn-under-load list is applied to the backend in force, which holds the state after the
// churn list.
func (u *unit) underLoadPhase(ctx context.Context) error {
	r, s, name := u.r, u.s, u.name
	if !u.churned {
		r.addCap(results.Cap{Backend: name, Pods: s.pods, Skipped: true, Phase: phaseUnderLoad,
			Reason: "left out: the backend did not apply the whole churn list, so its state is not the other backends'"})
		return nil
	}
	if _, err := r.churnList(s); err != nil {
		r.capf(name, s.pods, true, "", "churn under load: %v", err)
		return nil
	}
	if !s.streamOK {
		r.capf(name, s.pods, true, "", "churn under load: no allowed UDP flow between two pods")
		return nil
	}
	l, f := s.underLoad, s.stream
	e, ok := u.enforcement(ctx, u.comp.State())
	if !ok {
		return nil
	}
	if err := r.streamWithChurn(ctx, u, e.Backend(), l, f); err != nil {
		r.capf(name, s.pods, false, "", "churn under load: %v", err)
	}
	return nil
}

// converge polls the decider on the first probe whose verdict the step changed, until it gives
// the new verdict, and returns the time from start (the step) to that probe.
func converge(ctx context.Context, p policy.Decider, step churnStep, start time.Time, limit time.Duration) (time.Duration, bool) {
	_, real := p.(*packetDecider)
	for i, f := range step.Probes {
		want := step.After[i]
		if want == step.Before[i] {
			continue
		}
		if real && (want != policy.Allow || testbed.CanSend(f) != nil) {
			// A real probe proves a deny only by timing out; converge on newly allowed flows.
			continue
		}
		deadline := start.Add(limit)
		for ctx.Err() == nil {
			v, err := p.Verdict(f)
			if err == nil && v == want {
				return time.Since(start), true
			}
			if time.Now().After(deadline) {
				return 0, false
			}
			time.Sleep(100 * time.Microsecond)
		}
		return 0, false
	}
	return 0, false
}
