package driver

import (
	"context"
	"fmt"
	"hash/fnv"
	"strconv"
	"sync"
	"time"

	"k8s.io/client-go/kubernetes"

	"netpolbench/agent"
	"netpolbench/policy"
)

// Stage is one step of an event's way from the API write to enforcement. Every stage is timed
// from the start of the event's first API request, so stages add up and never go negative
// (a watch event may arrive before the write's response does).
type Stage uint8

const (
	// StageAck: the API server acknowledged the write (for a pod add, the status write).
	StageAck Stage = iota
	// StageWatch: the agent's informer delivered the watch event.
	StageWatch
	// StageDequeue: the agent's worker took the object off its queue.
	StageDequeue
	// StageCompute: the compiler had the delta.
	StageCompute
	// StageApply: the backend had applied it; the event is enforced as far as the agent knows.
	StageApply
	// StageProbe: the first probe packet with the event's new verdict was sent (a Prober's
	// stage: 0 for an event no Prober probed).
	StageProbe
	NumStages
)

var stageNames = [...]string{"ack", "watch", "dequeue", "compute", "apply", "probe"}

func (s Stage) String() string { return stageNames[s] }

// Sample is one event's way through the stages.
type Sample struct {
	Event policy.EventKind
	Key   string
	// Seq is the event's index in its run's Config.Events; Start is when its write started.
	Seq   int
	Start time.Time
	// At holds each stage's time since the write started; a stage that did not happen (no
	// probe) is 0.
	At [NumStages]time.Duration
	// Changes is the size of the delta the event became.
	Changes int
	// Flow and Want are what the Prober probed, when it did (StageProbe is set).
	Flow policy.Flow
	Want policy.Verdict
}

// Prober shows when an event is enforced on real packets, the last stage (StageProbe). Run
// calls Prepare for every event, in order, before the event is written, so a Prober can keep
// its own model of the cluster as the writes leave it; and FirstVerdict after the write was
// acknowledged, for the events Prepare found a flow for, concurrently with later writes.
type Prober interface {
	// Prepare picks, before ev is written, a flow whose verdict ev changes and that verdict;
	// false when ev changes none the Prober can send (a pod add with no policy about it, say).
	Prepare(ev policy.Event) (f policy.Flow, want policy.Verdict, ok bool)
	// FirstVerdict sends f until its packets get want, and returns when the first packet with
	// that verdict was sent.
	FirstVerdict(ctx context.Context, f policy.Flow, want policy.Verdict) (time.Time, error)
}

// Matcher pairs the writes a Run makes with what the agent observed, by object key and
// resource version: the first observation of the key that acted on the written version or a
// later one (for a deletion, the first that saw the object gone after the write started)
// completes the write. The agent folds quick successive changes of one object into one, so
// one observation may complete several writes; and it may act on a write before the write's
// response arrives, so observations are kept until a write claims them. One Matcher serves
// one agent, for any number of Runs.
type Matcher struct {
	mu      sync.Mutex
	pending map[string][]Write
	seen    map[string][]agent.Observation
	samples []Sample
}

// NewMatcher returns a matcher; give its Observe to the agent (agent.Options.Observe).
func NewMatcher() *Matcher {
	return &Matcher{pending: map[string][]Write{}, seen: map[string][]agent.Observation{}}
}

func matchKey(kind agent.Kind, key string) string { return kind.String() + "/" + key }

// Observe records what the agent did with one object.
func (m *Matcher) Observe(o agent.Observation) {
	if o.Err != nil {
		return // retried: a later observation completes the write
	}
	k := matchKey(o.Kind, o.Key)
	m.mu.Lock()
	defer m.mu.Unlock()
	m.seen[k] = append(m.seen[k], o)
	ws := m.pending[k]
	n := 0
	for _, w := range ws {
		if !m.complete(w, o) {
			ws[n] = w
			n++
		}
	}
	clear(ws[n:])
	if n == 0 {
		delete(m.pending, k)
	} else {
		m.pending[k] = ws[:n]
	}
}

// add registers a write and completes it at once if the agent has already acted on it.
func (m *Matcher) add(w Write) {
	k := matchKey(w.Kind, w.Key)
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, o := range m.seen[k] {
		if m.complete(w, o) {
			return
		}
	}
	m.pending[k] = append(m.pending[k], w)
}

// complete records a sample if observation o completes write w.
func (m *Matcher) complete(w Write, o agent.Observation) bool {
	if o.Received.Before(w.Start) {
		return false
	}
	if w.ResourceVersion == "" {
		if !o.Deleted {
			return false
		}
	} else {
		want, err1 := strconv.ParseUint(w.ResourceVersion, 10, 64)
		got, err2 := strconv.ParseUint(o.ResourceVersion, 10, 64)
		// Resource versions are etcd revisions on every API server the suite talks to; any
		// other form is compared for equality only.
		if o.Deleted || (err1 == nil && err2 == nil && got < want) || ((err1 != nil || err2 != nil) && o.ResourceVersion != w.ResourceVersion) {
			return false
		}
	}
	s := Sample{Event: w.Event, Key: w.Key, Seq: w.Seq, Start: w.Start, Changes: o.Changes}
	s.At[StageAck] = w.Ack.Sub(w.Start)
	s.At[StageWatch] = o.Received.Sub(w.Start)
	s.At[StageDequeue] = o.Dequeued.Sub(w.Start)
	s.At[StageCompute] = o.Computed.Sub(w.Start)
	s.At[StageApply] = o.Applied.Sub(w.Start)
	m.samples = append(m.samples, s)
	return true
}

// waiting returns how many writes no observation has completed yet.
func (m *Matcher) waiting() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	n := 0
	for _, ws := range m.pending {
		n += len(ws)
	}
	return n
}

// Config is a churn run.
type Config struct {
	Client kubernetes.Interface
	// Events are written in order, each object's events by one writer.
	Events []policy.Event
	// QPS is the target in events per second (a pod add is one event of two requests);
	// events are due at i/QPS from the start whether or not earlier ones were acknowledged.
	QPS float64
	// Writers is how many events may be in flight at once (default 8).
	Writers int
	// Settle is how long to wait after the last write for the agent to complete the writes
	// and for the probes to finish (default 30 s). Writes that change nothing (a relabel to the
	// same labels) never complete.
	Settle time.Duration
	// Prober, when set, times the probe stage of the events it finds a flow for.
	Prober Prober
	// Probes is how many FirstVerdict calls may run at once (default 4): an event Prepare
	// found a flow for while that many run is not probed (Result.ProbesSkipped), so the
	// probes' packets stay a small load beside the agent's.
	Probes int
}

// Result is what a run measured.
type Result struct {
	Samples []Sample
	// Writes is how many events were written, Unmatched how many of them no observation
	// completed within Settle, Failed how many writes the API server refused.
	Writes, Unmatched, Failed int
	// Probed counts the events whose probe saw the new verdict; ProbesFailed those whose
	// FirstVerdict failed or timed out (the last error is ProbeErr); ProbesSkipped those
	// Prepare found a flow for while Probes were running. Events Prepare found no flow for
	// are not counted.
	Probed, ProbesFailed, ProbesSkipped int
	ProbeErr                            error
	// Duration is from the first write to the last acknowledgement; Lag the most an event
	// was sent after it was due (the writers could not keep up); Drain from the last
	// acknowledgement to the last paired write's enforcement (the backend's acknowledgement):
	// the agent's queue at the end of the writes, near 0 while it keeps up.
	Duration, Lag, Drain time.Duration
	// Load is what the API server counted during the run.
	Load Load
}

// job is one event for a writer, with the flow to probe after it (when ok).
type job struct {
	seq   int
	ev    policy.Event
	probe bool
	flow  policy.Flow
	want  policy.Verdict
}

// Run writes the events at cfg.QPS and pairs each with the agent's observation of it through
// m. The agent must be running, with m.Observe as its observer.
func Run(ctx context.Context, cfg Config, m *Matcher) (*Result, error) {
	if cfg.QPS <= 0 {
		return nil, fmt.Errorf("driver: QPS must be > 0, got %g", cfg.QPS)
	}
	if cfg.Writers <= 0 {
		cfg.Writers = 8
	}
	if cfg.Settle <= 0 {
		cfg.Settle = 30 * time.Second
	}
	if cfg.Probes <= 0 {
		cfg.Probes = 4
	}
	before, err := ReadLoad(ctx, cfg.Client)
	if err != nil {
		return nil, err
	}
	w := &Writer{Client: cfg.Client}
	res := &Result{}
	// What earlier runs left can complete nothing of this one: it all happened before.
	m.mu.Lock()
	first := len(m.samples)
	clear(m.pending)
	clear(m.seen)
	m.mu.Unlock()
	var mu sync.Mutex
	var last time.Time
	// Probes outlive the writes by up to Settle; they stop with the run.
	probeCtx, stopProbes := context.WithCancel(ctx)
	defer stopProbes()
	probeSlots := make(chan struct{}, cfg.Probes)
	type probed struct {
		at   time.Duration
		flow policy.Flow
		want policy.Verdict
	}
	probeAt := map[int]probed{}
	var probes sync.WaitGroup
	queues := make([]chan job, cfg.Writers)
	var wg sync.WaitGroup
	for i := range queues {
		queues[i] = make(chan job, 64)
		wg.Add(1)
		go func(q chan job) {
			defer wg.Done()
			for j := range q {
				wr, err := w.Apply(ctx, j.ev)
				wr.Seq = j.seq
				mu.Lock()
				if err != nil {
					res.Failed++
				} else {
					res.Writes++
					m.add(wr)
				}
				if wr.Ack.After(last) {
					last = wr.Ack
				}
				mu.Unlock()
				if !j.probe {
					continue
				}
				if err != nil {
					<-probeSlots
					continue
				}
				probes.Add(1)
				go func() {
					defer probes.Done()
					defer func() { <-probeSlots }()
					at, err := cfg.Prober.FirstVerdict(probeCtx, j.flow, j.want)
					mu.Lock()
					defer mu.Unlock()
					if err != nil {
						if ctx.Err() == nil {
							if probeCtx.Err() != nil {
								err = fmt.Errorf("no packet with the new verdict within the settle time (%s)", cfg.Settle)
							}
							res.ProbesFailed++
							res.ProbeErr = fmt.Errorf("probe %s after %s %s: %w", j.flow, j.ev.Kind, wr.Key, err)
						}
						return
					}
					res.Probed++
					probeAt[j.seq] = probed{at.Sub(wr.Start), j.flow, j.want}
				}()
			}
		}(queues[i])
	}
	start := time.Now()
	for i, ev := range cfg.Events {
		j := job{seq: i, ev: ev}
		if cfg.Prober != nil {
			// Every event goes through Prepare, in order, probed or not: the Prober's model of
			// the cluster must follow the writes.
			if f, want, ok := cfg.Prober.Prepare(ev); ok {
				select {
				case probeSlots <- struct{}{}:
					j.probe, j.flow, j.want = true, f, want
				default:
					mu.Lock()
					res.ProbesSkipped++
					mu.Unlock()
				}
			}
		}
		due := start.Add(time.Duration(float64(i) / cfg.QPS * float64(time.Second)))
		if d := time.Until(due); d > 0 {
			select {
			case <-time.After(d):
			case <-ctx.Done():
			}
		} else if -d > res.Lag {
			res.Lag = -d
		}
		if ctx.Err() != nil {
			if j.probe {
				<-probeSlots
			}
			break
		}
		queues[writerOf(ev, cfg.Writers)] <- j
	}
	for _, q := range queues {
		close(q)
	}
	wg.Wait()
	res.Duration = last.Sub(start)
	deadline := time.Now().Add(cfg.Settle)
	for {
		waiting := m.waiting()
		if waiting == 0 || time.Now().After(deadline) || ctx.Err() != nil {
			res.Unmatched = waiting
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	probesDone := make(chan struct{})
	go func() { probes.Wait(); close(probesDone) }()
	select {
	case <-probesDone:
	case <-time.After(time.Until(deadline)):
		stopProbes()
		<-probesDone
	}
	after, err := ReadLoad(ctx, cfg.Client)
	if err != nil {
		return nil, err
	}
	res.Load = after.Sub(before)
	m.mu.Lock()
	res.Samples = append([]Sample(nil), m.samples[first:]...)
	m.mu.Unlock()
	var lastApplied time.Time
	for _, smp := range res.Samples {
		if t := smp.Start.Add(smp.At[StageApply]); t.After(lastApplied) {
			lastApplied = t
		}
	}
	if lastApplied.After(last) {
		res.Drain = lastApplied.Sub(last)
	}
	mu.Lock()
	for i := range res.Samples {
		if p, ok := probeAt[res.Samples[i].Seq]; ok {
			res.Samples[i].At[StageProbe], res.Samples[i].Flow, res.Samples[i].Want = p.at, p.flow, p.want
		}
	}
	mu.Unlock()
	return res, ctx.Err()
}

// writerOf picks the writer of an event by its object, so one object's events stay in order.
func writerOf(ev policy.Event, n int) int {
	key := ev.PodKey + ev.PolicyKey + ev.Namespace
	switch {
	case ev.Pod != nil:
		key = ev.Pod.Key()
	case ev.Policy != nil:
		key = ev.Policy.Namespace + "/" + ev.Policy.Name
	}
	h := fnv.New32a()
	h.Write([]byte(key))
	return int(h.Sum32() % uint32(n))
}
