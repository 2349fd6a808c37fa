package bench

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"maps"
	"math/rand/v2"
	"net"
	"net/netip"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"netpolbench/bench/stamp"
	"netpolbench/policy"
	"netpolbench/results"
	"netpolbench/testbed"
)

// allowedFlow finds an allowed pod-to-pod flow of proto between two distinct pods, away from
// the ports the probes and stamps use.
func allowedFlow(st *policy.State, seed uint64, proto policy.Protocol) (policy.Flow, bool) {
	rng := rand.New(rand.NewPCG(seed, 0x7272))
	cl := st.Cluster()
	keys := cl.PodKeys()
	if len(keys) < 2 {
		return policy.Flow{}, false
	}
	for range 5000 {
		src := cl.Pods[keys[rng.IntN(len(keys))]]
		dst := cl.Pods[keys[rng.IntN(len(keys))]]
		if src.IP == dst.IP {
			continue
		}
		ports := []uint16{53, 80, 5353}
		for _, cp := range dst.Ports {
			if cp.Protocol == proto {
				ports = append(ports, cp.Port)
			}
		}
		f := policy.Flow{Src: src.IP, Dst: dst.IP, Proto: proto, Port: ports[rng.IntN(len(ports))]}
		if testbed.CanSend(f) == nil && st.Verdict(f) == policy.Allow {
			return f, true
		}
	}
	return policy.Flow{}, false
}

const rrMessage = 64 // bytes per request and per response

// roundTrips measures TCP request/response latency (TCP_RR-like: one connection, one 64-byte
// request and response at a time) and UDP throughput through the enforcement point.
func (r *Runner) roundTrips(ctx context.Context, bed *testbed.Testbed, name string, pods int, st *policy.State, stateDigest string) {
	f, ok := allowedFlow(st, r.Spec.Seed, policy.ProtoTCP)
	if !ok {
		r.capf(name, pods, false, "", "round trips: no allowed TCP flow between two pods")
	} else if err := r.tcpRR(ctx, bed, name, pods, f, stateDigest); err != nil {
		r.capf(name, pods, false, "", "round trips: %v", err)
	}
	uf, ok := allowedFlow(st, r.Spec.Seed+1, policy.ProtoUDP)
	if !ok {
		r.capf(name, pods, false, "", "throughput: no allowed UDP flow between two pods")
		return
	}
	if err := r.udpThroughput(ctx, bed, name, pods, uf); err != nil {
		r.capf(name, pods, false, "", "throughput: %v", err)
	}
}

func (r *Runner) tcpRR(ctx context.Context, bed *testbed.Testbed, name string, pods int, f policy.Flow, stateDigest string) error {
	var ln net.Listener
	if err := bed.InNamespaceOf(f.Dst, func() error {
		var err error
		ln, err = net.Listen("tcp4", netip.AddrPortFrom(f.Dst, f.Port).String())
		return err
	}); err != nil {
		return fmt.Errorf("listen on %s:%d: %w", f.Dst, f.Port, err)
	}
	defer ln.Close()
	go func() {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		buf := make([]byte, rrMessage)
		for {
			if _, err := io.ReadFull(c, buf); err != nil {
				return
			}
			if _, err := c.Write(buf); err != nil {
				return
			}
		}
	}()
	var conn net.Conn
	if err := bed.InNamespaceOf(f.Src, func() error {
		d := net.Dialer{Timeout: 2 * time.Second, LocalAddr: net.TCPAddrFromAddrPort(netip.AddrPortFrom(f.Src, 0))}
		var err error
		conn, err = d.DialContext(ctx, "tcp4", netip.AddrPortFrom(f.Dst, f.Port).String())
		return err
	}); err != nil {
		return fmt.Errorf("connect %s: %w", f, err)
	}
	defer conn.Close()
	n := r.Spec.Packets
	deadline := time.Now().Add(time.Duration(r.Spec.Duration))
	conn.SetDeadline(deadline.Add(2 * time.Second))
	k := HistKey{Kind: results.KindRoundTrip, Backend: name, Pods: pods, Verdict: results.VerdictAllow, Flow: results.FlowEstablished, Extra: "test=tcp_rr"}
	if err := setFlowDigests(r.hists, k, stateDigest, f); err != nil {
		return err
	}
	buf := make([]byte, rrMessage)
	per := max(1, n/r.Spec.Samples)
	var samples []float64
	var chunk time.Duration
	var done int
	start := time.Now()
	for i := 0; i < n && time.Now().Before(deadline) && ctx.Err() == nil; i++ {
		binary.LittleEndian.PutUint64(buf, uint64(i))
		t := time.Now()
		if _, err := conn.Write(buf); err != nil {
			return fmt.Errorf("request %d: %w", i, err)
		}
		if _, err := io.ReadFull(conn, buf); err != nil {
			return fmt.Errorf("response %d: %w", i, err)
		}
		d := time.Since(t)
		if err := r.hists.Record(k, int64(d)); err != nil {
			return err
		}
		chunk += d
		done++
		if done%per == 0 {
			samples = append(samples, float64(chunk)/float64(per))
			chunk = 0
		}
	}
	if len(samples) == 0 {
		return errors.New("no round trip completed")
	}
	el := time.Since(start)
	r.run.Benchmarks = append(r.run.Benchmarks, results.Benchmark{
		Name: fmt.Sprintf("BenchmarkRoundTrip/backend=%s/pods=%d/test=tcp_rr", name, pods), Iters: per,
		Metrics: []results.Metric{{Unit: "ns/op", Samples: samples}, {Unit: "trans/s", HigherIsBetter: true, Samples: []float64{float64(done) / el.Seconds()}}},
	})
	return nil
}

// udpPair opens a UDP socket on the flow's destination port in the namespace of its
// destination and one on its source address in the namespace of its source.
func udpPair(bed *testbed.Testbed, f policy.Flow) (srv, cli *net.UDPConn, err error) {
	if err := bed.InNamespaceOf(f.Dst, func() error {
		var err error
		srv, err = net.ListenUDP("udp4", net.UDPAddrFromAddrPort(netip.AddrPortFrom(f.Dst, f.Port)))
		return err
	}); err != nil {
		return nil, nil, fmt.Errorf("listen on %s:%d/udp: %w", f.Dst, f.Port, err)
	}
	if err := bed.InNamespaceOf(f.Src, func() error {
		var err error
		cli, err = net.ListenUDP("udp4", net.UDPAddrFromAddrPort(netip.AddrPortFrom(f.Src, 0)))
		return err
	}); err != nil {
		srv.Close()
		return nil, nil, err
	}
	return srv, cli, nil
}

// udpThroughput sends 64-byte datagrams as fast as one socket can for a bounded time and
// count, and counts what arrives.
func (r *Runner) udpThroughput(ctx context.Context, bed *testbed.Testbed, name string, pods int, f policy.Flow) error {
	srv, cli, err := udpPair(bed, f)
	if err != nil {
		return err
	}
	defer srv.Close()
	defer cli.Close()
	srv.SetReadBuffer(8 << 20)
	var got atomic.Int64
	done := make(chan struct{})
	go func() {
		defer close(done)
		buf := make([]byte, 2048)
		for {
			if _, err := srv.Read(buf); err != nil {
				return
			}
			got.Add(1)
		}
	}()
	dur := min(time.Duration(r.Spec.Duration), 3*time.Second)
	const maxPackets = 5_000_000
	dst := netip.AddrPortFrom(f.Dst, f.Port)
	msg := make([]byte, rrMessage)
	var sent int64
	start := time.Now()
	for sent < maxPackets && time.Since(start) < dur && ctx.Err() == nil {
		if _, err := cli.WriteToUDPAddrPort(msg, dst); err != nil {
			// ENOBUFS and the like: the sender outran the stack; count it as not sent.
			continue
		}
		sent++
	}
	el := time.Since(start)
	time.Sleep(100 * time.Millisecond)
	srv.SetReadDeadline(time.Now())
	<-done
	rx := got.Load()
	r.run.Benchmarks = append(r.run.Benchmarks, results.Benchmark{
		Name: fmt.Sprintf("BenchmarkThroughput/backend=%s/pods=%d/proto=udp", name, pods), Iters: 1,
		Metrics: []results.Metric{
			{Unit: "pps", HigherIsBetter: true, Samples: []float64{float64(rx) / el.Seconds()}},
			{Unit: "lost-pct", Samples: []float64{100 * float64(sent-rx) / float64(max(sent, 1))}},
		},
	})
	return nil
}

const (
	streamRate     = 2000 // packets per second
	streamInterval = 100 * time.Millisecond
	churnEvery     = 100 * time.Millisecond
	lossWait       = time.Second
)

// streamWithChurn runs a steady UDP echo stream along f while the steps of l are applied to be
// (the backend in force, holding u's state), one step every churnEvery at most, and records
// loss and latency per interval. The stream lasts the spec's Duration and, for a backend slower
// than that, until its last step is applied, within the phase budget; a backend that does not
// apply every step within the budget is capped and its timeline marked.
func (r *Runner) streamWithChurn(ctx context.Context, u *unit, be policy.Backend, l *churnList, f policy.Flow) error {
	name, pods, comp := u.name, u.s.pods, u.comp
	startDigest := comp.State().Digest()
	srv, cli, err := udpPair(r.bed, f)
	if err != nil {
		return err
	}
	defer srv.Close()
	defer cli.Close()
	// Echo server.
	go func() {
		buf := make([]byte, 64)
		for {
			n, from, err := srv.ReadFromUDPAddrPort(buf)
			if err != nil {
				return
			}
			srv.WriteToUDPAddrPort(buf[:n], from)
		}
	}()
	minDur := time.Duration(r.Spec.Duration)
	maxDur := max(minDur, time.Duration(r.Spec.Budget.MaxPhase))
	total := int(maxDur.Seconds() * streamRate)
	sent := make([]time.Duration, total)
	rtt := make([]time.Duration, total)
	var mu sync.Mutex
	start := time.Now()
	recvDone := make(chan struct{})
	go func() {
		defer close(recvDone)
		buf := make([]byte, 64)
		for {
			n, err := cli.Read(buf)
			if err != nil {
				return
			}
			if n < 8 {
				continue
			}
			now := time.Since(start)
			seq := binary.LittleEndian.Uint64(buf)
			if seq < uint64(total) {
				mu.Lock()
				if rtt[seq] == 0 {
					rtt[seq] = now - sent[seq]
				}
				mu.Unlock()
			}
		}
	}()
	// Churn, in its own goroutine, on the backend in force.
	var marks []results.ChurnMark
	var applied atomic.Int64
	churnDone := make(chan struct{})
	stop := make(chan struct{})
	go func() {
		defer close(churnDone)
		next := start
		for _, step := range l.steps {
			next = next.Add(churnEvery)
			select {
			case <-stop:
				return
			case <-time.After(time.Until(next)):
			}
			at := time.Since(start)
			var took time.Duration
			for _, ev := range step.Events {
				d, err := comp.Apply(ev)
				if err != nil {
					r.logf("bench: %s churn under load: %s: %v", name, step.Kind, err)
					return
				}
				t := time.Now()
				_, uerr := be.Update(comp.State(), d)
				took += time.Since(t)
				if uerr != nil {
					r.logf("bench: %s churn under load: %s: %v", name, step.Kind, uerr)
					return
				}
			}
			marks = append(marks, results.ChurnMark{TMS: ms(at), Event: step.Kind, DurationMS: ms(took), Detail: fmt.Sprintf("%d event(s)", len(step.Events))})
			applied.Add(1)
			if now := time.Now(); next.Before(now) {
				next = now
			}
		}
	}()
	dst := netip.AddrPortFrom(f.Dst, f.Port)
	msg := make([]byte, 64)
	gap := time.Second / streamRate
	nSent := 0
	for i := 0; i < total && ctx.Err() == nil; i++ {
		if el := time.Since(start); el >= minDur && applied.Load() == int64(len(l.steps)) {
			break
		}
		if w := time.Duration(i)*gap - time.Since(start); w > 0 {
			time.Sleep(w)
		}
		binary.LittleEndian.PutUint64(msg, uint64(i))
		mu.Lock()
		sent[i] = time.Since(start)
		mu.Unlock()
		cli.WriteToUDPAddrPort(msg, dst)
		nSent++
	}
	elapsed := time.Since(start)
	close(stop)
	// A step under way finishes first; one that outlives a stop of the run is abandoned with
	// the backend.
	select {
	case <-churnDone:
	case <-ctx.Done():
		select {
		case <-churnDone:
		case <-time.After(stopGrace):
			u.abandoned.Store(true)
			return ctx.Err()
		}
	}
	select {
	case <-time.After(lossWait):
	case <-ctx.Done():
		return ctx.Err()
	}
	cli.SetReadDeadline(time.Now())
	<-recvDone

	mu.Lock()
	defer mu.Unlock()
	done := int(applied.Load())
	tl := results.ChurnTimeline{Backend: name, Pods: pods, IntervalMS: ms(streamInterval), RatePPS: streamRate, Events: marks,
		EventsDigest: l.digest, Capped: done < len(l.steps)}
	n := int(elapsed/streamInterval) + 1
	buckets := make([][]time.Duration, n)
	lost := make([]int64, n)
	sentN := make([]int64, n)
	k := HistKey{Kind: results.KindRoundTrip, Backend: name, Pods: pods, Verdict: results.VerdictAllow, Flow: results.FlowEstablished, Extra: "test=udp_stream_under_churn"}
	// The state the stream started on: the one after the churn list, every backend's that
	// applied it.
	if err := setFlowDigests(r.hists, k, startDigest, f); err != nil {
		return err
	}
	var totalLost int64
	for i := range nSent {
		b := min(int(sent[i]/streamInterval), n-1)
		sentN[b]++
		if rtt[i] == 0 {
			lost[b]++
			totalLost++
			continue
		}
		buckets[b] = append(buckets[b], rtt[i])
		if err := r.hists.Record(k, int64(rtt[i])); err != nil {
			return err
		}
	}
	var worst time.Duration
	for b := range n {
		if sentN[b] == 0 {
			continue
		}
		pt := results.ChurnPoint{TMS: ms(time.Duration(b) * streamInterval), Sent: sentN[b], Lost: lost[b]}
		if v := buckets[b]; len(v) > 0 {
			sort.Slice(v, func(i, j int) bool { return v[i] < v[j] })
			pt.P50US = us(v[len(v)/2])
			pt.P99US = us(v[min(len(v)-1, len(v)*99/100)])
			pt.MaxUS = us(v[len(v)-1])
			worst = max(worst, v[len(v)-1])
		}
		tl.Points = append(tl.Points, pt)
	}
	r.run.Churn = append(r.run.Churn, tl)
	if tl.Capped {
		r.addCap(results.Cap{Backend: name, Pods: pods, Phase: phaseUnderLoad, Limit: fmt.Sprintf("%s per phase", maxDur),
			Reason: fmt.Sprintf("applied %d of the %d churn steps under load before the phase budget ran out", done, len(l.steps))})
	}
	if l.skipped > 0 {
		r.run.Notes = append(r.run.Notes, fmt.Sprintf("churn under load, %s at %d pods: %d events left out of the list because they would have denied the stream itself", name, pods, l.skipped))
	}
	r.run.Benchmarks = append(r.run.Benchmarks, results.Benchmark{
		Name: fmt.Sprintf("BenchmarkChurnUnderLoad/backend=%s/pods=%d", name, pods), Iters: 1,
		Metrics: []results.Metric{
			{Unit: "lost-packets", Samples: []float64{float64(totalLost)}},
			{Unit: "max-rtt-ns", Samples: []float64{float64(worst)}},
			{Unit: "churn-events", Samples: []float64{float64(len(marks))}},
		},
	})
	return nil
}

// setFlowDigests labels k with the state it was measured on and the one allowed flow it sent.
func setFlowDigests(h *Histograms, k HistKey, stateDigest string, f policy.Flow) error {
	l, err := stamp.NewFlowList([]stamp.ExpectedFlow{{Flow: f, Verdict: policy.Allow}})
	if err != nil {
		return err
	}
	h.SetDigests(k, stateDigest, l.Digest())
	return nil
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
func us(d time.Duration) float64 { return float64(d) / float64(time.Microsecond) }

// inverseEvent returns the event that undoes ev on cl as it is before ev.
func isPolicyEvent(ev policy.Event) bool {
	return ev.Kind == policy.PolicyAdd || ev.Kind == policy.PolicyUpdate || ev.Kind == policy.PolicyRemove
}

func inverseEvent(cl *policy.Cluster, ev policy.Event) (policy.Event, bool) {
	switch ev.Kind {
	case policy.PodAdd:
		return policy.Event{Kind: policy.PodDelete, PodKey: ev.Pod.Key()}, true
	case policy.PodDelete:
		p, ok := cl.Pods[ev.PodKey]
		if !ok {
			return policy.Event{}, false
		}
		cp := *p
		return policy.Event{Kind: policy.PodAdd, Pod: &cp}, true
	case policy.PodRelabel:
		p, ok := cl.Pods[ev.PodKey]
		if !ok {
			return policy.Event{}, false
		}
		return policy.Event{Kind: policy.PodRelabel, PodKey: ev.PodKey, Labels: maps.Clone(p.Labels)}, true
	case policy.PolicyAdd:
		return policy.Event{Kind: policy.PolicyRemove, PolicyKey: ev.Policy.Namespace + "/" + ev.Policy.Name}, true
	case policy.PolicyUpdate:
		old, ok := cl.Policies[ev.Policy.Namespace+"/"+ev.Policy.Name]
		if !ok {
			return policy.Event{}, false
		}
		return policy.Event{Kind: policy.PolicyUpdate, Policy: old}, true
	case policy.PolicyRemove:
		old, ok := cl.Policies[ev.PolicyKey]
		if !ok {
			return policy.Event{}, false
		}
		return policy.Event{Kind: policy.PolicyAdd, Policy: old}, true
	}
	return policy.Event{}, false
}
