package agent

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	corelisters "k8s.io/client-go/listers/core/v1"
	netlisters "k8s.io/client-go/listers/networking/v1"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/util/workqueue"

	"netpolbench/policy"
)

// Kind is the kind of object a queued key names.
type Kind uint8

const (
	KindNamespace Kind = iota
	KindPod
	KindNetworkPolicy
)

func (k Kind) String() string {
	return [...]string{"namespace", "pod", "networkpolicy"}[k]
}

// item is what the work queue holds: an object by kind and key ("name" for namespaces,
// "namespace/name" otherwise). The queue folds repeated changes of one object into one item.
type item struct {
	kind Kind
	key  string
}

// Options configure an Agent.
type Options struct {
	// Backend enforces the compiled state: synced once the caches are, then updated with every
	// change's delta. The agent does not close it.
	Backend policy.Backend
	// Open, instead of Backend, opens the backend once the first state is compiled (a backend
	// may size itself by it, as the eBPF datapath sizes its maps). The agent closes it when
	// Run returns.
	Open func(*policy.State) (policy.Backend, error)
	// OpenSynced says Open returns the backend already synced to the state it was given (as
	// putting a backend in force in a testbed does), so the agent does not sync it again.
	OpenSynced bool
	// Compile configures the compiler (identity-relevant labels).
	Compile policy.Options
	// Resync is how often the informers hand every cached object to the agent again, which
	// finds nothing to do unless it missed something; 0 means never.
	Resync time.Duration
	// Observe, when set, is called from the agent's worker after every processed item. It
	// must not block for long: the next change waits for it.
	Observe func(Observation)
	// Logf, when set, receives warnings (objects the suite cannot enforce, backend failures).
	Logf func(format string, args ...any)
}

// Observation is what the agent did with one queued object, with the times of each stage.
type Observation struct {
	Kind Kind
	Key  string
	// ResourceVersion is the object's version the agent acted on, or the last one it saw of a
	// deleted object.
	ResourceVersion string
	// Deleted is set when the object is gone from the informer's cache.
	Deleted bool
	// Received is when the watch event (or relist, or resync) that queued the object arrived,
	// the first since it was last processed; Dequeued when the worker took it; Computed when
	// the compiler had the delta; Applied when the backend had applied it.
	Received, Dequeued, Computed, Applied time.Time
	// Events are the compiler events the change became (none: nothing to enforce changed).
	Events []policy.EventKind
	// Changes counts the delta's entries, members, endpoints and identities.
	Changes int
	// Err is why the change could not be applied (it is retried).
	Err error
}

// Stats are the agent's counts since it started.
type Stats struct {
	// Processed counts queue items; Events compiler events applied, by kind.
	Processed int
	Events    map[policy.EventKind]int
	// Retries counts items put back on the queue (an address still held by a pod whose
	// deletion was not processed yet, a failing backend).
	Retries int
	// Skipped counts objects left out because the suite cannot enforce them.
	Skipped int
	// Tombstones counts deletions the agent learned from a relist rather than a watch event
	// (the deleted object was missed while disconnected).
	Tombstones int
	// BackendErrors counts failed updates and syncs; FullSyncs every Sync after the first.
	BackendErrors, FullSyncs int
}

// Agent keeps a backend enforcing what an API server holds. It reads Namespaces, Pods and
// NetworkPolicies through shared informers and never writes anything to the API server.
type Agent struct {
	client kubernetes.Interface
	opts   Options

	factory  informers.SharedInformerFactory
	nsLister corelisters.NamespaceLister
	pods     corelisters.PodLister
	pols     netlisters.NetworkPolicyLister
	queue    workqueue.TypedRateLimitingInterface[item]

	// pendingMu guards pending: per queued item, when its first unprocessed event came and the
	// last version seen of it.
	pendingMu sync.Mutex
	pending   map[item]pendingItem

	// mu is held while the worker changes the compiler or the backend; Inspect takes it.
	mu        sync.Mutex
	comp      *policy.Compiler
	needSync  bool
	stats     Stats
	owned     bool // the agent opened the backend and closes it
	started   chan struct{}
	startErr  error
	startOnce sync.Once
}

type pendingItem struct {
	received  time.Time
	rv        string
	tombstone bool
}

// New returns an agent reading through client. Run starts it.
func New(client kubernetes.Interface, opts Options) (*Agent, error) {
	if (opts.Backend == nil) == (opts.Open == nil) {
		return nil, errors.New("agent: give Backend or Open, one of them")
	}
	a := &Agent{
		client:  client,
		opts:    opts,
		pending: map[item]pendingItem{},
		started: make(chan struct{}),
		stats:   Stats{Events: map[policy.EventKind]int{}},
	}
	a.factory = informers.NewSharedInformerFactoryWithOptions(client, opts.Resync, informers.WithTransform(slimPod))
	a.queue = workqueue.NewTypedRateLimitingQueueWithConfig(
		workqueue.NewTypedItemExponentialFailureRateLimiter[item](5*time.Millisecond, 2*time.Second),
		workqueue.TypedRateLimitingQueueConfig[item]{Name: "netpolbench-agent"})
	nsInf := a.factory.Core().V1().Namespaces()
	podInf := a.factory.Core().V1().Pods()
	polInf := a.factory.Networking().V1().NetworkPolicies()
	a.nsLister, a.pods, a.pols = nsInf.Lister(), podInf.Lister(), polInf.Lister()
	for kind, inf := range map[Kind]cache.SharedIndexInformer{
		KindNamespace: nsInf.Informer(), KindPod: podInf.Informer(), KindNetworkPolicy: polInf.Informer(),
	} {
		if _, err := inf.AddEventHandler(a.handler(kind)); err != nil {
			return nil, fmt.Errorf("agent: watch %ss: %w", kind, err)
		}
	}
	return a, nil
}

// handler queues every added, changed or deleted object of a kind.
func (a *Agent) handler(kind Kind) cache.ResourceEventHandler {
	enqueue := func(obj any) {
		key, err := cache.DeletionHandlingMetaNamespaceKeyFunc(obj)
		if err != nil {
			a.logf("agent: %s without a key: %v", kind, err)
			return
		}
		rv, tombstone := "", false
		if t, ok := obj.(cache.DeletedFinalStateUnknown); ok {
			obj, tombstone = t.Obj, true
		}
		if m, ok := obj.(interface{ GetResourceVersion() string }); ok {
			rv = m.GetResourceVersion()
		}
		it := item{kind, key}
		now := time.Now()
		a.pendingMu.Lock()
		p, queued := a.pending[it]
		if !queued {
			p.received = now
		}
		p.rv, p.tombstone = rv, p.tombstone || tombstone
		a.pending[it] = p
		a.pendingMu.Unlock()
		a.queue.Add(it)
	}
	return cache.ResourceEventHandlerFuncs{
		AddFunc:    enqueue,
		UpdateFunc: func(_, obj any) { enqueue(obj) },
		DeleteFunc: enqueue,
	}
}

// Run starts the informers, waits for their caches, compiles everything they hold and syncs
// the backend, then applies changes one at a time until ctx ends. It returns nil when ctx
// ends, or why it could not start.
func (a *Agent) Run(ctx context.Context) error {
	defer a.queue.ShutDown()
	a.factory.Start(ctx.Done())
	defer a.factory.Shutdown()
	defer func() {
		a.mu.Lock()
		defer a.mu.Unlock()
		if a.owned {
			a.opts.Backend.Close()
		}
	}()
	err := a.start(ctx)
	a.startOnce.Do(func() { a.startErr = err; close(a.started) })
	if err != nil {
		return err
	}
	go func() {
		<-ctx.Done()
		a.queue.ShutDown()
	}()
	for a.processNext(ctx) {
	}
	return nil
}

// Started waits until the agent has synced its backend for the first time, or failed to.
func (a *Agent) Started(ctx context.Context) error {
	select {
	case <-a.started:
		return a.startErr
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (a *Agent) start(ctx context.Context) error {
	for typ, ok := range a.factory.WaitForCacheSync(ctx.Done()) {
		if !ok {
			return fmt.Errorf("agent: sync %v cache: %w", typ, stopped(ctx))
		}
	}
	nss, err := a.nsLister.List(labels.Everything())
	if err != nil {
		return fmt.Errorf("agent: list namespaces: %w", err)
	}
	pods, err := a.pods.List(labels.Everything())
	if err != nil {
		return fmt.Errorf("agent: list pods: %w", err)
	}
	pols, err := a.pols.List(labels.Everything())
	if err != nil {
		return fmt.Errorf("agent: list networkpolicies: %w", err)
	}
	cl, warnings := Snapshot(nss, pods, pols, a.opts.Compile)
	for _, w := range warnings {
		a.logf("agent: %s", w)
	}
	comp, err := policy.Compile(cl, a.opts.Compile)
	if err != nil {
		return fmt.Errorf("agent: compile: %w", err)
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	synced := false
	if a.opts.Backend == nil {
		b, err := a.opts.Open(comp.State())
		if err != nil {
			return fmt.Errorf("agent: open backend: %w", err)
		}
		a.opts.Backend, a.owned, synced = b, true, a.opts.OpenSynced
	}
	a.comp = comp
	a.stats.Skipped += len(warnings)
	if synced {
		return nil
	}
	if _, err := a.opts.Backend.Sync(comp.State()); err != nil {
		return fmt.Errorf("agent: sync %s: %w", a.opts.Backend.Name(), err)
	}
	return nil
}

func stopped(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	return errors.New("informer stopped")
}

// processNext handles one queued item; false once the queue is shut down.
func (a *Agent) processNext(ctx context.Context) bool {
	it, shutdown := a.queue.Get()
	if shutdown {
		return false
	}
	defer a.queue.Done(it)
	a.pendingMu.Lock()
	p := a.pending[it]
	delete(a.pending, it)
	a.pendingMu.Unlock()
	obs := Observation{Kind: it.kind, Key: it.key, ResourceVersion: p.rv, Received: p.received, Dequeued: time.Now()}
	if obs.Received.IsZero() {
		obs.Received = obs.Dequeued // a retry
	}
	a.mu.Lock()
	err := a.reconcile(it, &obs, p.tombstone)
	a.stats.Processed++
	if err != nil {
		a.stats.Retries++
	}
	a.mu.Unlock()
	obs.Err = err
	if err != nil {
		if ctx.Err() == nil {
			a.queue.AddRateLimited(it)
		}
	} else {
		a.queue.Forget(it)
	}
	if a.opts.Observe != nil {
		a.opts.Observe(obs)
	}
	return true
}

// errRetry marks a change that must wait for another (an address not yet released).
var errRetry = errors.New("waiting for another change")

// reconcile brings the compiled state of one object to what the informer's cache holds: the
// cache is the truth, the compiler's cluster what is enforced, and only their difference is
// applied. A change seen twice, or a relist's worth of unchanged objects, therefore applies
// nothing a second time.
func (a *Agent) reconcile(it item, obs *Observation, tombstone bool) error {
	if a.needSync {
		if err := a.resync(); err != nil {
			return err
		}
	}
	var evs []policy.Event
	var err error
	switch it.kind {
	case KindNamespace:
		evs, err = a.namespaceEvents(it.key, obs)
	case KindPod:
		evs, err = a.podEvents(it.key, obs)
	case KindNetworkPolicy:
		evs, err = a.policyEvents(it.key, obs)
	}
	if err != nil {
		return err
	}
	if obs.Deleted && tombstone && len(evs) > 0 {
		a.stats.Tombstones++
	}
	return a.apply(evs, obs)
}

func (a *Agent) namespaceEvents(name string, obs *Observation) ([]policy.Event, error) {
	cl := a.comp.Cluster()
	ns, err := a.nsLister.Get(name)
	switch {
	case apierrors.IsNotFound(err):
		obs.Deleted = true
		// Its pods are gone or going; until they are, they keep the labels a namespace
		// without an object has.
		ns = &corev1.Namespace{}
		ns.Name = name
	case err != nil:
		return nil, err
	default:
		obs.ResourceVersion = ns.ResourceVersion
	}
	cur := cl.Namespaces[name]
	if cur == nil && obs.Deleted {
		return nil, nil
	}
	want := maps.Clone(ns.Labels)
	if want == nil {
		want = map[string]string{}
	}
	want[policy.NamespaceNameLabel] = name
	if cur != nil && maps.Equal(cur.Labels, want) {
		return nil, nil
	}
	return []policy.Event{{Kind: policy.NamespaceRelabel, Namespace: name, Labels: want}}, nil
}

func (a *Agent) podEvents(key string, obs *Observation) ([]policy.Event, error) {
	cl := a.comp.Cluster()
	ns, name, _ := cache.SplitMetaNamespaceKey(key)
	var want *policy.Pod
	obj, err := a.pods.Pods(ns).Get(name)
	switch {
	case apierrors.IsNotFound(err):
		obs.Deleted = true
	case err != nil:
		return nil, err
	default:
		obs.ResourceVersion = obj.ResourceVersion
		want, err = policy.PodFromK8s(obj)
		if err != nil {
			if !errors.Is(err, policy.ErrNotEndpoint) {
				a.stats.Skipped++
				a.logf("agent: skip %v", err)
			}
			want = nil
		}
	}
	cur := cl.Pods[key]
	switch {
	case want == nil && cur == nil:
		return nil, nil
	case want == nil:
		return []policy.Event{{Kind: policy.PodDelete, PodKey: key}}, nil
	case cur != nil && cur.IP == want.IP && slices.Equal(cur.Ports, want.Ports):
		if maps.Equal(cur.Labels, want.Labels) {
			return nil, nil
		}
		return []policy.Event{{Kind: policy.PodRelabel, PodKey: key, Labels: want.Labels}}, nil
	}
	// A new pod, or one whose address or ports changed: (re)added whole.
	if other, taken := cl.PodByIP(want.IP); taken && other.Key() != key {
		// The other pod's deletion (or move) is queued or on its way: let it go first.
		a.queue.Add(item{KindPod, other.Key()})
		return nil, fmt.Errorf("pod %s: IP %s still held by pod %s: %w", key, want.IP, other.Key(), errRetry)
	}
	var evs []policy.Event
	if cur != nil {
		evs = append(evs, policy.Event{Kind: policy.PodDelete, PodKey: key})
	}
	return append(evs, policy.Event{Kind: policy.PodAdd, Pod: want}), nil
}

func (a *Agent) policyEvents(key string, obs *Observation) ([]policy.Event, error) {
	cl := a.comp.Cluster()
	ns, name, _ := cache.SplitMetaNamespaceKey(key)
	obj, err := a.pols.NetworkPolicies(ns).Get(name)
	switch {
	case apierrors.IsNotFound(err):
		obs.Deleted = true
		obj = nil
	case err != nil:
		return nil, err
	default:
		obs.ResourceVersion = obj.ResourceVersion
		if err := policy.CheckPolicy(obj, a.opts.Compile); err != nil {
			a.stats.Skipped++
			a.logf("agent: skip %v", err)
			obj = nil
		}
	}
	cur, had := cl.Policies[key]
	switch {
	case obj == nil && !had:
		return nil, nil
	case obj == nil:
		return []policy.Event{{Kind: policy.PolicyRemove, PolicyKey: key}}, nil
	case !had:
		return []policy.Event{{Kind: policy.PolicyAdd, Policy: obj}}, nil
	case equality.Semantic.DeepEqual(policy.DefaultPolicy(obj).Spec, cur.Spec):
		return nil, nil
	}
	return []policy.Event{{Kind: policy.PolicyUpdate, Policy: obj}}, nil
}

// apply compiles the events and applies their deltas. A backend that fails is synced in full,
// now or, if that fails too, before the next change.
func (a *Agent) apply(evs []policy.Event, obs *Observation) error {
	var deltas []*policy.Delta
	for _, ev := range evs {
		d, err := a.comp.Apply(ev)
		if err != nil {
			// The checks above make this a bug, not an input problem: say so and move on.
			a.logf("agent: %s rejected: %v", ev.Kind, err)
			continue
		}
		a.stats.Events[ev.Kind]++
		obs.Events = append(obs.Events, ev.Kind)
		obs.Changes += changes(d)
		if !d.Empty() {
			deltas = append(deltas, d)
		}
	}
	obs.Computed = time.Now()
	s := a.comp.State()
	for _, d := range deltas {
		if _, err := a.opts.Backend.Update(s, d); err != nil {
			a.stats.BackendErrors++
			a.logf("agent: %s update: %v; syncing in full", a.opts.Backend.Name(), err)
			if err := a.resync(); err != nil {
				return err
			}
			break
		}
	}
	obs.Applied = time.Now()
	return nil
}

// resync syncs the backend with the whole state.
func (a *Agent) resync() error {
	a.stats.FullSyncs++
	if _, err := a.opts.Backend.Sync(a.comp.State()); err != nil {
		a.stats.BackendErrors++
		a.needSync = true
		return fmt.Errorf("sync %s: %w", a.opts.Backend.Name(), err)
	}
	a.needSync = false
	return nil
}

func changes(d *policy.Delta) int {
	return len(d.IdentitiesAllocated) + len(d.IdentitiesReleased) + len(d.MembersAdded) + len(d.MembersRemoved) +
		len(d.CIDRsAdded) + len(d.CIDRsRemoved) + len(d.EntriesAdded) + len(d.EntriesRemoved) +
		len(d.EndpointsAdded) + len(d.EndpointsRemoved) + len(d.EndpointsChanged)
}

// Inspect runs fn with the compiled state and the backend while no change is being applied.
// Before the agent has started, it returns an error.
func (a *Agent) Inspect(fn func(s *policy.State, b policy.Backend) error) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.comp == nil {
		return errors.New("agent: not started")
	}
	return fn(a.comp.State(), a.opts.Backend)
}

// Stats returns the counts so far.
func (a *Agent) Stats() Stats {
	a.mu.Lock()
	defer a.mu.Unlock()
	s := a.stats
	s.Events = maps.Clone(a.stats.Events)
	return s
}

func (a *Agent) logf(format string, args ...any) {
	if a.opts.Logf != nil {
		a.opts.Logf(format, args...)
	}
}
