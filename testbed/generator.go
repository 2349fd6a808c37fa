package testbed

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"

	"netpolbench/policy"
)

// Generator sends bounded streams of packets for per-packet measurements, at a chosen rate and
// without waiting for any of them: SendNew opens new flows with raw packets (a TCP SYN or a UDP
// datagram per packet, each a 5-tuple of its own), SendEstablished sends data segments on real
// TCP connections. A denied packet costs nothing but its own sending. Open one with
// Testbed.NewGenerator; it is not safe for concurrent use.
type Generator struct {
	tb *Testbed
	// raw holds a raw IPv4 socket (the caller writes the IP header) per source namespace.
	raw map[*nsInfo]int
	// udp holds a receiving socket per destination namespace and port.
	udp    map[rxKey]*net.UDPConn
	rng    *rand.Rand
	wg     sync.WaitGroup
	closed bool
	// received counts UDP datagrams and TCP payload bytes the receivers read.
	datagrams, bytes atomic.Int64
}

type rxKey struct {
	ns   *nsInfo
	port uint16
}

// Source ports of generated new-flow packets. NewGenerator moves the ephemeral port range of
// every end namespace above them (genEphemeral), so a generated packet never shares a 5-tuple
// with a real connection.
const (
	genPortFirst = 10000
	genPortLast  = 60999
	genEphemeral = "61000 65535"
)

// ErrPortsUsedUp is returned (wrapped) when a flow has used every source port of the range in
// one testbed: a further packet would repeat a 5-tuple both conntracks may still hold.
var ErrPortsUsedUp = errors.New("source ports used up")

// sourcePorts hands out the source ports of new-flow packets, one sequence per flow for the
// testbed's life, so no two packets of any generators of one testbed share a 5-tuple: a
// repeated tuple would meet the entry its first packet left in a conntrack and be timed as an
// established packet or a reply.
type sourcePorts struct {
	mu   sync.Mutex
	next map[policy.Flow]uint16
}

// take returns the next source port of f.
func (s *sourcePorts) take(f policy.Flow) (uint16, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.next == nil {
		s.next = map[policy.Flow]uint16{}
	}
	port, ok := s.next[f]
	if !ok {
		port = genPortFirst
	}
	if port > genPortLast || port < genPortFirst {
		return 0, fmt.Errorf("send %s: %w: %d packets of it in this testbed (open a fresh testbed)", f, ErrPortsUsedUp, genPortLast-genPortFirst+1)
	}
	s.next[f] = port + 1
	return port, nil
}

// Lengths of generated new-flow packets (IP total length, bytes). Padding is TCP options
// (NOPs) or UDP payload, so a length can carry a mark (e.g. where a floor measurement's step
// should drop the packet) without changing anything enforcement looks at.
const (
	MinTCPLen = 40 // IP and TCP headers without options
	MinUDPLen = 28
	MaxNewLen = 80 // the longest TCP header (60 bytes) behind the IP header
)

// batchSize is how many packets of one source namespace go out in one sendmmsg call.
const batchSize = 64

// NewGenerator prepares a generator (New has waited until every veth is up): it moves the
// ephemeral port range of the pod and outside namespaces to 61000-65535 and turns TCP
// autocorking off there, so each write of SendEstablished is one segment. Close releases its
// sockets.
func (tb *Testbed) NewGenerator() (*Generator, error) {
	for _, ns := range append(append([]nsInfo(nil), tb.pods...), tb.out) {
		if err := ns.ns.Do(func() error {
			return setSysctls([][2]string{
				{"net.ipv4.ip_local_port_range", genEphemeral},
				{"net.ipv4.tcp_autocorking", "0"},
			})
		}); err != nil {
			return nil, fmt.Errorf("prepare generator in %s: %w", ns.name, err)
		}
	}
	return &Generator{tb: tb, raw: map[*nsInfo]int{}, udp: map[rxKey]*net.UDPConn{},
		rng: rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 0x67656e))}, nil
}

// Close closes every socket the generator opened.
func (g *Generator) Close() error {
	if g.closed {
		return nil
	}
	g.closed = true
	var errs []error
	for _, fd := range g.raw {
		errs = append(errs, unix.Close(fd))
	}
	for _, c := range g.udp {
		errs = append(errs, c.Close())
	}
	g.wg.Wait()
	return errors.Join(errs...)
}

// NewPacket is one flow of a SendNew call and the length of its packets.
type NewPacket struct {
	// Flow is TCP or UDP between two addresses the testbed carries (not a pod to itself).
	Flow policy.Flow
	// Len is the IP total length of each packet, bytes: 0 means the minimum (MinTCPLen or
	// MinUDPLen), at most MaxNewLen; a TCP length is a multiple of 4.
	Len int
}

// SendOptions bound one send.
type SendOptions struct {
	// Count is the number of packets (SendNew) or segments (SendEstablished) to send.
	// Required.
	Count int
	// Rate is the target rate, packets per second; 0 sends as fast as the packet path takes
	// them, in batches of 64 per source namespace. With a rate, packets go one at a time, each
	// no earlier than its slot, so the achieved rate never exceeds it.
	Rate float64
	// Timeout bounds the whole call. Required.
	Timeout time.Duration
}

func (o SendOptions) check() error {
	if o.Count <= 0 || o.Timeout <= 0 || o.Rate < 0 {
		return fmt.Errorf("send: count %d, rate %g, timeout %s (count and timeout are required)", o.Count, o.Rate, o.Timeout)
	}
	return nil
}

// SendStats is what one call sent.
type SendStats struct {
	// Packets is the number of packets or segments sent.
	Packets int
	// Elapsed is the time the sending took, ns; with a rate, up to the end of the last
	// packet's slot.
	Elapsed time.Duration
}

// Rate is the achieved rate, packets per second.
func (s SendStats) Rate() float64 {
	if s.Elapsed <= 0 {
		return 0
	}
	return float64(s.Packets) / s.Elapsed.Seconds()
}

// SendNew sends opts.Count new-flow packets, cycling through flows: packet k belongs to
// flows[k % len(flows)] and has the next source port of its flow in the testbed (10000-60999,
// one sequence a flow for every generator of the testbed; past it the call fails with
// ErrPortsUsedUp), so every packet is a new 5-tuple to conntrack. UDP flows get a receiving socket in
// the destination namespace, so nothing answers them; TCP SYNs find no listener and are
// answered by a RST. Nothing waits for delivery: the stamps, not the sender, see the verdict.
func (g *Generator) SendNew(ctx context.Context, flows []NewPacket, opts SendOptions) (SendStats, error) {
	if err := opts.check(); err != nil {
		return SendStats{}, err
	}
	if len(flows) == 0 {
		return SendStats{}, errors.New("send new flows: no flows")
	}
	srcNS := make([]*nsInfo, len(flows))
	for i, p := range flows {
		sns, err := g.checkNew(p)
		if err != nil {
			return SendStats{}, fmt.Errorf("send new flows: %w", err)
		}
		srcNS[i] = sns
		if p.Flow.Proto == policy.ProtoUDP {
			if err := g.receiveUDP(p.Flow); err != nil {
				return SendStats{}, err
			}
		}
		if _, ok := g.raw[sns]; !ok {
			fd, err := socketIn(sns, unix.AF_INET, unix.SOCK_RAW, unix.IPPROTO_RAW)
			if err != nil {
				return SendStats{}, fmt.Errorf("send new flows: %w", err)
			}
			g.raw[sns] = fd
		}
	}
	ctx, cancel := context.WithTimeout(ctx, opts.Timeout)
	defer cancel()
	b := newBatch(batchSize)
	var st SendStats
	start := time.Now()
	if opts.Rate > 0 {
		gap := time.Duration(float64(time.Second) / opts.Rate)
		for k := 0; k < opts.Count; k++ {
			if d := time.Until(start.Add(time.Duration(k) * gap)); d > 0 {
				time.Sleep(d)
			}
			if ctx.Err() != nil {
				return st, fmt.Errorf("send new flows: %d of %d sent: %w", st.Packets, opts.Count, ctx.Err())
			}
			i := k % len(flows)
			b.reset()
			if err := g.add(b, flows[i]); err != nil {
				return st, err
			}
			if err := b.send(g.raw[srcNS[i]]); err != nil {
				return st, fmt.Errorf("send new flows from %s: %w", srcNS[i].name, err)
			}
			st.Packets++
		}
		// The last packet's slot ends a gap after it: the achieved rate never exceeds Rate.
		time.Sleep(time.Until(start.Add(time.Duration(opts.Count) * gap)))
		st.Elapsed = time.Since(start)
		return st, nil
	}
	// Back to back: packets in flow order, grouped into batches of one source namespace.
	queues := map[*nsInfo][]int{}
	var order []*nsInfo
	for k := 0; k < opts.Count; k++ {
		i := k % len(flows)
		ns := srcNS[i]
		if _, ok := queues[ns]; !ok {
			order = append(order, ns)
		}
		queues[ns] = append(queues[ns], i)
	}
	for left := opts.Count; left > 0; {
		for _, ns := range order {
			q := queues[ns]
			if len(q) == 0 {
				continue
			}
			n := min(len(q), batchSize)
			b.reset()
			for _, i := range q[:n] {
				if err := g.add(b, flows[i]); err != nil {
					return st, err
				}
			}
			queues[ns] = q[n:]
			if ctx.Err() != nil {
				return st, fmt.Errorf("send new flows: %d of %d sent: %w", st.Packets, opts.Count, ctx.Err())
			}
			if err := b.send(g.raw[ns]); err != nil {
				return st, fmt.Errorf("send new flows from %s: %w", ns.name, err)
			}
			st.Packets += n
			left -= n
		}
	}
	st.Elapsed = time.Since(start)
	return st, nil
}

func (g *Generator) checkNew(p NewPacket) (*nsInfo, error) {
	f := p.Flow
	if err := CanSend(f); err != nil {
		return nil, err
	}
	min := MinTCPLen
	switch f.Proto {
	case policy.ProtoTCP:
	case policy.ProtoUDP:
		min = MinUDPLen
	default:
		return nil, fmt.Errorf("flow %s: %w: new-flow packets are TCP or UDP", f, ErrUnsupported)
	}
	if p.Len != 0 && (p.Len < min || p.Len > MaxNewLen || f.Proto == policy.ProtoTCP && p.Len%4 != 0) {
		return nil, fmt.Errorf("flow %s: length %d (want %d..%d, TCP a multiple of 4)", f, p.Len, min, MaxNewLen)
	}
	if f.Src.Unmap() == f.Dst.Unmap() {
		return nil, fmt.Errorf("flow %s: %w: a pod to itself never leaves its namespace", f, ErrUnsupported)
	}
	sns, err := g.tb.nsFor(f.Src)
	if err != nil {
		return nil, fmt.Errorf("flow %s: %w: %w", f, ErrUnsupported, err)
	}
	if _, err := g.tb.nsFor(f.Dst); err != nil {
		return nil, fmt.Errorf("flow %s: %w: %w", f, ErrUnsupported, err)
	}
	return sns, nil
}

// receiveUDP opens (once) a socket on the flow's port in its destination namespace and drains
// it, so no ICMP port-unreachable comes back.
func (g *Generator) receiveUDP(f policy.Flow) error {
	dns, _ := g.tb.nsFor(f.Dst)
	k := rxKey{dns, f.Port}
	if _, ok := g.udp[k]; ok {
		return nil
	}
	c, err := listenUDP(dns, f.Port)
	if err != nil {
		return fmt.Errorf("send new flows: %w", err)
	}
	// A burst outruns the reader; the default buffer holds about 270 datagrams.
	if err := setRcvbuf(c, rxBuffer); err != nil {
		c.Close()
		return fmt.Errorf("send new flows: %w", err)
	}
	g.udp[k] = c
	g.wg.Add(1)
	go func() {
		defer g.wg.Done()
		buf := make([]byte, 2048)
		for {
			if _, _, err := c.ReadFromUDPAddrPort(buf); err != nil {
				return
			}
			g.datagrams.Add(1)
		}
	}()
	return nil
}

// rxBuffer is the receive buffer of the generator's UDP sockets, bytes.
const rxBuffer = 16 << 20

// setRcvbuf sets a socket's receive buffer past net.core.rmem_max (SO_RCVBUFFORCE, root).
func setRcvbuf(c syscall.Conn, bytes int) error {
	rc, err := c.SyscallConn()
	if err != nil {
		return err
	}
	var serr error
	if err := rc.Control(func(fd uintptr) {
		serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, bytes)
	}); err != nil {
		return err
	}
	if serr != nil {
		return fmt.Errorf("set SO_RCVBUFFORCE: %w", serr)
	}
	return nil
}

// add appends one packet of p with the flow's next source port in the testbed.
func (g *Generator) add(b *batch, p NewPacket) error {
	port, err := g.tb.ports.take(p.Flow)
	if err != nil {
		return err
	}
	b.add(p.Flow, port, p.Len, g.rng.Uint32())
	return nil
}

// batch holds packets and the mmsghdr array of one sendmmsg call.
type batch struct {
	pkts  [][MaxNewLen]byte
	lens  []int
	addrs []unix.RawSockaddrInet4
	iovs  []unix.Iovec
	msgs  []mmsghdr
}

// mmsghdr is struct mmsghdr of <sys/socket.h> (x/sys/unix has no sendmmsg).
type mmsghdr struct {
	hdr unix.Msghdr
	len uint32
	_   [4]byte
}

func newBatch(n int) *batch {
	return &batch{pkts: make([][MaxNewLen]byte, n), lens: make([]int, 0, n), addrs: make([]unix.RawSockaddrInet4, n),
		iovs: make([]unix.Iovec, n), msgs: make([]mmsghdr, n)}
}

func (b *batch) reset() { b.lens = b.lens[:0] }

func (b *batch) add(f policy.Flow, sport uint16, length int, seq uint32) {
	i := len(b.lens)
	n := buildPacket(b.pkts[i][:], f, sport, length, seq)
	b.lens = append(b.lens, n)
	b.addrs[i] = unix.RawSockaddrInet4{Family: unix.AF_INET, Addr: f.Dst.Unmap().As4()}
}

// send writes the batch with sendmmsg, resuming after partial sends.
func (b *batch) send(fd int) error {
	n := len(b.lens)
	for i := range n {
		b.iovs[i] = unix.Iovec{Base: &b.pkts[i][0]}
		b.iovs[i].SetLen(b.lens[i])
		b.msgs[i] = mmsghdr{hdr: unix.Msghdr{Name: (*byte)(unsafe.Pointer(&b.addrs[i])), Namelen: unix.SizeofSockaddrInet4,
			Iov: &b.iovs[i], Iovlen: 1}}
	}
	for done := 0; done < n; {
		r, _, errno := unix.Syscall6(unix.SYS_SENDMMSG, uintptr(fd), uintptr(unsafe.Pointer(&b.msgs[done])), uintptr(n-done), 0, 0, 0)
		if errno == unix.EINTR {
			continue
		}
		if errno != 0 {
			return fmt.Errorf("sendmmsg: %w", errno)
		}
		done += int(r)
	}
	return nil
}

// buildPacket writes an IPv4 packet of f from sport into buf (a TCP SYN or a UDP datagram),
// padded to length (0: the minimum), with valid checksums, and returns its length.
func buildPacket(buf []byte, f policy.Flow, sport uint16, length int, seq uint32) int {
	src, dst := f.Src.Unmap().As4(), f.Dst.Unmap().As4()
	l4min := 20
	if f.Proto == policy.ProtoUDP {
		l4min = 8
	}
	if length == 0 {
		length = 20 + l4min
	}
	clear(buf[:length])
	ip := buf[:20]
	ip[0] = 0x45
	binary.BigEndian.PutUint16(ip[2:], uint16(length))
	binary.BigEndian.PutUint16(ip[6:], 0x4000) // DF, as the kernel's own TCP and UDP
	ip[8] = 64
	ip[9] = byte(f.Proto)
	copy(ip[12:], src[:])
	copy(ip[16:], dst[:])
	binary.BigEndian.PutUint16(ip[10:], inetChecksum(ip))
	l4 := buf[20:length]
	binary.BigEndian.PutUint16(l4[0:], sport)
	binary.BigEndian.PutUint16(l4[2:], f.Port)
	if f.Proto == policy.ProtoTCP {
		binary.BigEndian.PutUint32(l4[4:], seq)
		l4[12] = byte(len(l4)/4) << 4 // data offset: options fill the header
		l4[13] = 0x02                 // SYN
		binary.BigEndian.PutUint16(l4[14:], 64240)
		for i := 20; i < len(l4); i++ {
			l4[i] = 1 // NOP
		}
		binary.BigEndian.PutUint16(l4[16:], l4Checksum(src, dst, f.Proto, l4))
	} else {
		binary.BigEndian.PutUint16(l4[4:], uint16(len(l4)))
		c := l4Checksum(src, dst, f.Proto, l4)
		if c == 0 {
			c = 0xffff // 0 means "no checksum" in UDP
		}
		binary.BigEndian.PutUint16(l4[6:], c)
	}
	return length
}

// l4Checksum is the TCP or UDP checksum over the IPv4 pseudo-header and seg (whose checksum
// field is zero).
func l4Checksum(src, dst [4]byte, proto policy.Protocol, seg []byte) uint16 {
	var buf [12 + MaxNewLen]byte
	copy(buf[0:], src[:])
	copy(buf[4:], dst[:])
	buf[9] = byte(proto)
	binary.BigEndian.PutUint16(buf[10:], uint16(len(seg)))
	n := copy(buf[12:], seg)
	return inetChecksum(buf[:12+n])
}

// segmentLen is the payload of one established-flow segment, bytes: its packet (IP, TCP with
// timestamps, payload: 116 bytes) is longer than any new-flow packet, so no length mark of
// SendNew can match it.
const segmentLen = 64

// SendEstablished opens one real TCP connection per flow (through whatever enforces), then
// writes opts.Count segments of segmentLen bytes over them in turn, each write one segment
// (TCP_NODELAY, autocorking off), waits until the receivers have read them all and resets the
// connections. The flows must be allowed: a connection that does not come up within a second
// fails the call. Listeners live in the destination namespaces for the call only.
func (g *Generator) SendEstablished(ctx context.Context, flows []policy.Flow, opts SendOptions) (SendStats, error) {
	if err := opts.check(); err != nil {
		return SendStats{}, err
	}
	if len(flows) == 0 {
		return SendStats{}, errors.New("send established: no flows")
	}
	ctx, cancel := context.WithTimeout(ctx, opts.Timeout)
	defer cancel()
	var (
		closers []io.Closer
		wg      sync.WaitGroup
		mu      sync.Mutex
	)
	defer func() {
		for _, c := range closers {
			c.Close()
		}
		wg.Wait()
	}()
	listening := map[rxKey]bool{}
	for _, f := range flows {
		if f.Proto != policy.ProtoTCP {
			return SendStats{}, fmt.Errorf("send established: flow %s: %w: established segments are TCP", f, ErrUnsupported)
		}
		if _, err := g.checkNew(NewPacket{Flow: f}); err != nil {
			return SendStats{}, fmt.Errorf("send established: %w", err)
		}
		dns, _ := g.tb.nsFor(f.Dst)
		k := rxKey{dns, f.Port}
		if listening[k] {
			continue
		}
		listening[k] = true
		ln, err := listenTCP(dns, f.Port)
		if err != nil {
			return SendStats{}, fmt.Errorf("send established: %w", err)
		}
		closers = append(closers, ln)
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				c, err := ln.Accept()
				if err != nil {
					return
				}
				mu.Lock()
				closers = append(closers, c)
				mu.Unlock()
				wg.Add(1)
				go func() {
					defer wg.Done()
					buf := make([]byte, 4096)
					for {
						n, err := c.Read(buf)
						g.bytes.Add(int64(n))
						if err != nil {
							return
						}
					}
				}()
			}
		}()
	}
	conns := make([]net.Conn, len(flows))
	errc := make(chan error, len(flows))
	for i, f := range flows {
		go func() {
			c, err := g.connect(ctx, f)
			conns[i] = c
			errc <- err
		}()
	}
	var errs []error
	for range flows {
		errs = append(errs, <-errc)
	}
	for _, c := range conns {
		if c != nil {
			mu.Lock()
			closers = append(closers, c)
			mu.Unlock()
		}
	}
	if err := errors.Join(errs...); err != nil {
		return SendStats{}, fmt.Errorf("send established: %w", err)
	}
	var payload [segmentLen]byte
	var st SendStats
	base := g.bytes.Load()
	start := time.Now()
	var gap time.Duration
	if opts.Rate > 0 {
		gap = time.Duration(float64(time.Second) / opts.Rate)
	}
	for k := 0; k < opts.Count; k++ {
		if gap > 0 {
			if d := time.Until(start.Add(time.Duration(k) * gap)); d > 0 {
				time.Sleep(d)
			}
		}
		if ctx.Err() != nil {
			return st, fmt.Errorf("send established: %d of %d segments sent: %w", st.Packets, opts.Count, ctx.Err())
		}
		c := conns[k%len(conns)]
		if _, err := c.Write(payload[:]); err != nil {
			return st, fmt.Errorf("send established: write on %s: %w", flows[k%len(conns)], err)
		}
		st.Packets++
	}
	if gap > 0 {
		time.Sleep(time.Until(start.Add(time.Duration(opts.Count) * gap)))
	}
	st.Elapsed = time.Since(start)
	// Reset the connections only when every segment has arrived, so none is lost to the reset.
	want := base + int64(opts.Count*segmentLen)
	for g.bytes.Load() < want {
		if ctx.Err() != nil {
			return st, fmt.Errorf("send established: %d of %d bytes arrived: %w", g.bytes.Load()-base, want-base, ctx.Err())
		}
		time.Sleep(time.Millisecond)
	}
	return st, nil
}

// connect opens a TCP connection for f from its source address, resetting (not closing) it on
// Close, so no TIME_WAIT is left behind.
func (g *Generator) connect(ctx context.Context, f policy.Flow) (net.Conn, error) {
	sns, _ := g.tb.nsFor(f.Src)
	fd, err := socketIn(sns, unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_NONBLOCK, unix.IPPROTO_TCP)
	if err != nil {
		return nil, err
	}
	file := os.NewFile(uintptr(fd), "tcp-segments")
	defer file.Close()
	if err := unix.SetsockoptLinger(fd, unix.SOL_SOCKET, unix.SO_LINGER, &unix.Linger{Onoff: 1, Linger: 0}); err != nil {
		return nil, fmt.Errorf("set SO_LINGER: %w", err)
	}
	if err := unix.Bind(fd, sockaddr(f.Src.Unmap(), 0)); err != nil {
		return nil, fmt.Errorf("bind %s in %s: %w", f.Src, sns.name, err)
	}
	if err := unix.Connect(fd, sockaddr(f.Dst.Unmap(), f.Port)); err != nil && !errors.Is(err, unix.EINPROGRESS) {
		return nil, fmt.Errorf("connect %s: %w", f, err)
	}
	c, err := net.FileConn(file)
	if err != nil {
		return nil, fmt.Errorf("connect %s: %w", f, err)
	}
	tc := c.(*net.TCPConn)
	if err := tc.SetNoDelay(true); err != nil {
		c.Close()
		return nil, fmt.Errorf("set TCP_NODELAY: %w", err)
	}
	// The connection is up when the socket turns writable without an error.
	deadline := time.Now().Add(time.Second)
	if d, ok := ctx.Deadline(); ok && d.Before(deadline) {
		deadline = d
	}
	rc, err := tc.SyscallConn()
	if err != nil {
		c.Close()
		return nil, err
	}
	tc.SetWriteDeadline(deadline)
	connected, soErr, werr := awaitConnect(rc)
	tc.SetWriteDeadline(time.Time{})
	if !connected {
		c.Close()
		return nil, fmt.Errorf("connect %s: not established within a second: %w (an allowed flow must connect)", f, errors.Join(soErr, werr))
	}
	return c, nil
}
