package testbed

import (
	"context"
	"fmt"
	"net/netip"
	"sync"
	"time"

	"netpolbench/policy"
)

// UntilOptions bound a SendUntil call.
type UntilOptions struct {
	// Interval is the time between the first packets of the flow; 0 means 1 ms. It grows to a
	// fiftieth of the time waited so far, so a change that takes seconds costs few packets and
	// is still timed to 2%.
	Interval time.Duration
	// Timeout is how long one packet waits for delivery before it counts as dropped; 0 means
	// 50 ms (delivery inside the testbed takes well under a millisecond).
	Timeout time.Duration
	// Confirm is how long, by send time, packets must keep being dropped before a drop is
	// taken as the new verdict (a packet delivered late, or a verdict that flickers, resets
	// it); 0 means Timeout.
	Confirm time.Duration
	// Limit bounds the whole call; 0 means 10 s.
	Limit time.Duration
}

// sharedReceivers are the receiving sockets of SendUntil calls, shared by calls to the same
// destination namespace, protocol and port (two sockets could not bind one port), and closed
// when the last call using one returns. Tokens carry each packet's own sequence number, so a
// call sees its own packets only.
type sharedReceivers struct {
	mu    sync.Mutex
	rx    *receivers
	socks map[receiverKey]*sharedSocket
}

type sharedSocket struct {
	close func()
	refs  int
}

func (s *sharedReceivers) acquire(k receiverKey) (*receivers, func(), error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.rx == nil {
		rx, err := newReceivers()
		if err != nil {
			return nil, nil, err
		}
		s.rx, s.socks = rx, map[receiverKey]*sharedSocket{}
	}
	sock := s.socks[k]
	if sock == nil {
		c, err := s.rx.open(k)
		if err != nil {
			return nil, nil, fmt.Errorf("open receiver: %w", err)
		}
		sock = &sharedSocket{close: c}
		s.socks[k] = sock
	}
	sock.refs++
	return s.rx, func() {
		s.mu.Lock()
		defer s.mu.Unlock()
		if sock.refs--; sock.refs == 0 {
			sock.close()
			delete(s.socks, k)
		}
	}, nil
}

// attempt is one packet of a SendUntil call.
type attempt struct {
	// sent is when the attempt started, and once it is done when its packet was handed to
	// the kernel.
	sent      time.Time
	done      bool
	delivered bool
}

// SendUntil sends f as a new flow every Interval, or less often as it waits longer (a TCP SYN, UDP datagram or ICMP echo request
// from a socket of its own, so no packet rides on another's conntrack entry) until its packets
// get the fate asked for, and returns when the first packet with that fate was sent: with
// delivered, the earliest-sent packet that was delivered; without, the earliest-sent packet
// from which every packet sent during Confirm was dropped. Earlier packets of the other fate
// show the old verdict still in force.
//
// A drop shows only as a timeout, so a call that waits for one returns Timeout + Confirm after
// the verdict changed at the earliest. It fails after Limit, on a testbed fault, or when ctx
// ends.
func (tb *Testbed) SendUntil(ctx context.Context, f policy.Flow, delivered bool, opts UntilOptions) (time.Time, error) {
	if opts.Interval <= 0 {
		opts.Interval = time.Millisecond
	}
	if opts.Timeout <= 0 {
		opts.Timeout = 50 * time.Millisecond
	}
	if opts.Confirm <= 0 {
		opts.Confirm = opts.Timeout
	}
	if opts.Limit <= 0 {
		opts.Limit = 10 * time.Second
	}
	if err := CanSend(f); err != nil {
		return time.Time{}, fmt.Errorf("send until: %w", err)
	}
	for _, a := range []netip.Addr{f.Src, f.Dst} {
		if _, err := tb.nsFor(a); err != nil {
			return time.Time{}, fmt.Errorf("send %s until: %w: %w", f, ErrUnsupported, err)
		}
	}
	rx, release, err := tb.until.acquire(tb.receiverKeyOf(f))
	if err != nil {
		return time.Time{}, err
	}
	defer release()
	ctx, cancel := context.WithTimeout(ctx, opts.Limit)
	defer cancel()

	type outcome struct {
		i         int
		delivered bool
		sent      time.Time
		err       error
	}
	results := make(chan outcome, 64)
	var attempts []attempt
	inFlight := 0
	defer func() {
		// Outstanding packets end at their timeout or with ctx; wait for them, so no goroutine
		// outlives the receivers.
		cancel()
		for ; inFlight > 0; inFlight-- {
			<-results
		}
	}()
	send := func() {
		i := len(attempts)
		seq := rx.nextSeq()
		attempts = append(attempts, attempt{sent: time.Now()})
		inFlight++
		go func() {
			var sent time.Time
			ok, err := tb.probeOne(ctx, rx, seq, f, opts.Timeout, &sent)
			results <- outcome{i, ok, sent, err}
		}()
	}
	start := time.Now()
	tick := time.NewTimer(opts.Interval)
	defer tick.Stop()
	send()
	// from is the first attempt that could still be the answer: every earlier one was resolved
	// with the old fate, or is followed by one of the old fate.
	from := 0
	for {
		select {
		case <-tick.C:
			send()
			tick.Reset(max(opts.Interval, time.Since(start)/50))
		case o := <-results:
			inFlight--
			if o.err != nil {
				if ctx.Err() != nil {
					break
				}
				return time.Time{}, fmt.Errorf("send %s until: %w", f, o.err)
			}
			attempts[o.i].done, attempts[o.i].delivered = true, o.delivered
			if !o.sent.IsZero() {
				// When the packet went to the kernel: the socket is made after the attempt
				// starts, which takes a while on a loaded machine.
				attempts[o.i].sent = o.sent
			}
			if at, ok := settled(attempts, &from, delivered, opts.Confirm); ok {
				return at, nil
			}
		case <-ctx.Done():
		}
		if ctx.Err() != nil {
			if err := rx.err(); err != nil {
				return time.Time{}, err
			}
			want := "delivered"
			if !delivered {
				want = "dropped"
			}
			return time.Time{}, fmt.Errorf("send %s until %s: %d packets, none %s within %s: %w", f, want, len(attempts), want, opts.Limit, ctx.Err())
		}
	}
}

// settled decides a SendUntil call from its attempts so far: the send time of the first
// attempt with the wanted fate once nothing earlier is unresolved (and, for a drop, once every
// attempt sent within confirm after it was dropped too). from advances past attempts that can
// no longer be the answer.
func settled(as []attempt, from *int, delivered bool, confirm time.Duration) (time.Time, bool) {
	if delivered {
		for i := *from; i < len(as); i++ {
			if !as[i].done {
				return time.Time{}, false
			}
			if as[i].delivered {
				return as[i].sent, true
			}
			*from = i + 1
		}
		return time.Time{}, false
	}
	for i := *from; i < len(as); i++ {
		if !as[i].done {
			return time.Time{}, false
		}
		if as[i].delivered {
			*from = i + 1
			continue
		}
		if as[i].sent.Sub(as[*from].sent) >= confirm {
			return as[*from].sent, true
		}
	}
	return time.Time{}, false
}
