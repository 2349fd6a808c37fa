package testbed

import (
	"context"
	"encoding/binary"
	"errors"
	"net/netip"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"netpolbench/policy"
)

func mustGenerator(t *testing.T) (*Testbed, *Generator) {
	t.Helper()
	tb := ForTest(t, Options{})
	g, err := tb.NewGenerator()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := g.Close(); err != nil {
			t.Errorf("close generator: %v", err)
		}
	})
	return tb, g
}

// rstCounter counts, in one namespace, the TCP resets that come back to it: a raw TCP socket
// gets a copy of every TCP packet the namespace receives.
type rstCounter struct {
	mu    sync.Mutex
	ports map[uint16]int // destination port of each reset (the SYN's source port)
	done  chan struct{}
}

func countResets(t *testing.T, tb *Testbed, in netip.Addr) *rstCounter {
	t.Helper()
	ns, err := tb.nsFor(in)
	if err != nil {
		t.Fatal(err)
	}
	fd, err := socketIn(ns, unix.AF_INET, unix.SOCK_RAW, unix.IPPROTO_TCP)
	if err != nil {
		t.Fatal(err)
	}
	if err := unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &unix.Timeval{Usec: 100_000}); err != nil {
		t.Fatal(err)
	}
	if err := unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, rxBuffer); err != nil {
		t.Fatal(err)
	}
	c := &rstCounter{ports: map[uint16]int{}, done: make(chan struct{})}
	stop := make(chan struct{})
	go func() {
		defer close(c.done)
		buf := make([]byte, 2048)
		for {
			select {
			case <-stop:
				return
			default:
			}
			n, _, err := unix.Recvfrom(fd, buf, 0)
			if err != nil || n < 40 {
				continue
			}
			ihl := int(buf[0]&0xf) * 4
			if n < ihl+20 || buf[ihl+13]&0x04 == 0 {
				continue
			}
			c.mu.Lock()
			c.ports[binary.BigEndian.Uint16(buf[ihl+2:])]++
			c.mu.Unlock()
		}
	}()
	t.Cleanup(func() { close(stop); <-c.done; unix.Close(fd) })
	return c
}

func (c *rstCounter) counts() (resets, distinct int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, n := range c.ports {
		resets += n
	}
	return resets, len(c.ports)
}

func TestSendNewDeliversEveryPacketAsAFlowOfItsOwn(t *testing.T) {
	tb, g := mustGenerator(t)
	flows := []NewPacket{
		{Flow: flow(podA, podB, policy.ProtoTCP, 8080)},
		{Flow: flow(podA, podB, policy.ProtoUDP, 5353), Len: 68},
		{Flow: flow(podB, ext, policy.ProtoUDP, 53)},
		{Flow: flow(ext, podC, policy.ProtoTCP, 80), Len: 72},
	}
	fromA, fromExt := countResets(t, tb, podA), countResets(t, tb, ext)
	const count = 400 // 100 of each flow
	st, err := g.SendNew(context.Background(), flows, SendOptions{Count: count, Timeout: 10 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	if st.Packets != count {
		t.Fatalf("sent %d of %d packets", st.Packets, count)
	}
	// Nothing is lost between the namespaces: every datagram arrives, every SYN is answered
	// by a reset to a source port of its own.
	deadline := time.Now().Add(3 * time.Second)
	for time.Now().Before(deadline) {
		a, _ := fromA.counts()
		e, _ := fromExt.counts()
		if g.datagrams.Load() == count/2 && a == count/4 && e == count/4 {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if got := g.datagrams.Load(); got != count/2 {
		t.Errorf("%d datagrams received, want %d", got, count/2)
	}
	for name, c := range map[string]*rstCounter{"pod": fromA, "outside": fromExt} {
		if n, distinct := c.counts(); n != count/4 || distinct != count/4 {
			t.Errorf("%s source: %d resets to %d distinct ports, want %d to %d", name, n, distinct, count/4, count/4)
		}
	}
	t.Logf("%d packets back to back at %.0f packets/s", st.Packets, st.Rate())

	// A second call, and a second generator of the same testbed (the next measurement in it),
	// go on with new source ports.
	if _, err := g.SendNew(context.Background(), flows[:1], SendOptions{Count: 10, Timeout: time.Second}); err != nil {
		t.Fatal(err)
	}
	g2, err := tb.NewGenerator()
	if err != nil {
		t.Fatal(err)
	}
	defer g2.Close()
	if _, err := g2.SendNew(context.Background(), flows[:1], SendOptions{Count: 10, Rate: 1000, Timeout: time.Second}); err != nil {
		t.Fatal(err)
	}
	time.Sleep(100 * time.Millisecond)
	if n, distinct := fromA.counts(); n != count/4+20 || distinct != n {
		t.Errorf("after a second call and a second generator: %d resets to %d distinct ports, want %d to as many", n, distinct, count/4+20)
	}
}

func TestSourcePortsNeverRepeatATupleInOneTestbed(t *testing.T) {
	var s sourcePorts
	f := flow(podA, podB, policy.ProtoUDP, 53)
	other := flow(podA, podB, policy.ProtoTCP, 53)
	seen := map[uint16]bool{}
	for i := 0; i <= genPortLast-genPortFirst; i++ {
		p, err := s.take(f)
		if err != nil {
			t.Fatalf("packet %d: %v", i, err)
		}
		if seen[p] || p < genPortFirst || p > genPortLast {
			t.Fatalf("packet %d: port %d repeats or is out of range", i, p)
		}
		seen[p] = true
	}
	if _, err := s.take(f); !errors.Is(err, ErrPortsUsedUp) {
		t.Fatalf("after every port: %v, want ErrPortsUsedUp", err)
	}
	// Another flow has a sequence of its own.
	if p, err := s.take(other); err != nil || p != genPortFirst {
		t.Fatalf("another flow: port %d, %v", p, err)
	}
}

func TestSendNewKeepsToItsRate(t *testing.T) {
	_, g := mustGenerator(t)
	const rate, count = 1000.0, 50
	st, err := g.SendNew(context.Background(), []NewPacket{{Flow: flow(podA, podB, policy.ProtoUDP, 5353)}},
		SendOptions{Count: count, Rate: rate, Timeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	if st.Packets != count || st.Rate() > rate {
		t.Fatalf("%d packets at %.0f packets/s, want %d at most %.0f/s", st.Packets, st.Rate(), count, rate)
	}
}

func TestSendNewRejectsWhatItCannotMark(t *testing.T) {
	_, g := mustGenerator(t)
	for _, p := range []NewPacket{
		{Flow: flow(podA, podB, policy.ProtoTCP, 80), Len: 66},     // not a multiple of 4
		{Flow: flow(podA, podB, policy.ProtoUDP, 80), Len: 20},     // shorter than the headers
		{Flow: flow(podA, podB, policy.ProtoTCP, 80), Len: 84},     // longer than any TCP header
		{Flow: flow(podA, podB, policy.ProtoICMP, 0)},              // not TCP or UDP
		{Flow: flow(podA, podA, policy.ProtoTCP, 80)},              // never leaves its namespace
		{Flow: flow(podA, netip.MustParseAddr("10.0.0.1"), 6, 80)}, // not carried
	} {
		if _, err := g.SendNew(context.Background(), []NewPacket{p}, SendOptions{Count: 1, Timeout: time.Second}); err == nil {
			t.Errorf("%s length %d: no error", p.Flow, p.Len)
		}
	}
}

func TestSendEstablishedWritesEverySegment(t *testing.T) {
	_, g := mustGenerator(t)
	flows := []policy.Flow{flow(podA, podB, policy.ProtoTCP, 8080), flow(podC, podB, policy.ProtoTCP, 8080), flow(ext, podA, policy.ProtoTCP, 9000)}
	const count = 300
	st, err := g.SendEstablished(context.Background(), flows, SendOptions{Count: count, Timeout: 10 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	// SendEstablished returns after the receivers read everything: the connections are reset
	// only then.
	if st.Packets != count || g.bytes.Load() != count*segmentLen {
		t.Fatalf("%d segments sent, %d bytes received, want %d and %d", st.Packets, g.bytes.Load(), count, count*segmentLen)
	}
}
