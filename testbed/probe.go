package testbed

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"netpolbench/policy"
)

// ProbeOptions bound a Probe call.
type ProbeOptions struct {
	// Timeout is how long one probe waits for delivery before it counts as dropped; 0 means
	// 250 ms. Delivery inside the testbed takes well under a millisecond, and a TCP SYN is
	// retransmitted only after 1 s, so a probe is one packet (plus its handshake).
	Timeout time.Duration
	// Concurrency is the number of probes in flight; 0 means 128.
	Concurrency int
	// ConfirmTimeout is the timeout of the second round, which sends every probe that was
	// not delivered in the first once more: a drop must be seen twice, so a packet that a
	// loaded machine delivered late is not taken for a policy drop. 0 means
	// max(4 × Timeout, 900 ms), short of the 1 s SYN retransmission; negative turns the
	// second round off.
	ConfirmTimeout time.Duration
}

const (
	defaultProbeTimeout     = 250 * time.Millisecond
	defaultProbeConcurrency = 128
	maxProbeConcurrency     = 512
	maxProbes               = 1 << 20
)

// ErrUnsupported is returned for a flow the testbed cannot send.
var ErrUnsupported = errors.New("flow not supported by the testbed")

// CanSend reports whether the testbed can send f as a real packet, and why not: both
// addresses must be in PodRange or OutsideRange, TCP and UDP need a port, SCTP is not
// implemented.
func CanSend(f policy.Flow) error {
	for _, a := range []struct {
		what string
		ip   netip.Addr
	}{{"source", f.Src}, {"destination", f.Dst}} {
		ip := a.ip.Unmap()
		if !ip.Is4() || !(PodRange.Contains(ip) || OutsideRange.Contains(ip)) {
			return fmt.Errorf("flow %s: %w: %s %s is in neither %s (pods) nor %s (outside)", f, ErrUnsupported, a.what, a.ip, PodRange, OutsideRange)
		}
	}
	switch f.Proto {
	case policy.ProtoTCP, policy.ProtoUDP:
		if f.Port == 0 {
			return fmt.Errorf("flow %s: %w: port 0", f, ErrUnsupported)
		}
	case policy.ProtoICMP:
	case policy.ProtoSCTP:
		return fmt.Errorf("flow %s: %w: SCTP probes are not implemented (Go has no SCTP sockets; %s)", f, ErrUnsupported, sctpKernelNote())
	default:
		return fmt.Errorf("flow %s: %w: protocol %d", f, ErrUnsupported, f.Proto)
	}
	return nil
}

// sctpKernelNote says whether the kernel could carry SCTP at all, asked once.
var sctpKernelNote = sync.OnceValue(func() string {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, unix.IPPROTO_SCTP)
	if err != nil {
		return "and this kernel has no SCTP: " + err.Error()
	}
	unix.Close(fd)
	return "the kernel has SCTP"
})

// Probe sends every flow as one real packet from its source address to its destination and
// reports, per flow, whether it was delivered: a completed TCP handshake, or a UDP datagram or
// ICMP echo request read by a receiver in the destination's namespace. A flow not delivered
// within the timeout is sent once more (see ConfirmTimeout); not delivered twice, it counts as
// dropped. Anything else (a refused connection, an
// unreachable route, a datagram seen with the wrong addresses) is a testbed fault and fails
// the call, so a drop is never confused with a broken testbed.
//
// Receivers are opened for the call only, in the destination namespaces, on the ports the
// flows use. Self traffic (source == destination) stays inside its namespace.
func (tb *Testbed) Probe(ctx context.Context, flows []policy.Flow, opts ProbeOptions) ([]bool, error) {
	if opts.Timeout <= 0 {
		opts.Timeout = defaultProbeTimeout
	}
	if opts.Concurrency <= 0 {
		opts.Concurrency = defaultProbeConcurrency
	}
	opts.Concurrency = min(opts.Concurrency, maxProbeConcurrency)
	if len(flows) > maxProbes {
		return nil, fmt.Errorf("probe: %d flows (at most %d a call)", len(flows), maxProbes)
	}
	for _, f := range flows {
		if err := CanSend(f); err != nil {
			return nil, fmt.Errorf("probe: %w", err)
		}
		for _, a := range []netip.Addr{f.Src, f.Dst} {
			if _, err := tb.nsFor(a); err != nil {
				return nil, fmt.Errorf("probe %s: %w: %w", f, ErrUnsupported, err)
			}
		}
	}
	rx, err := tb.openReceivers(flows)
	if err != nil {
		return nil, err
	}
	defer rx.close()

	out := make([]bool, len(flows))
	all := make([]int, len(flows))
	for i := range all {
		all[i] = i
	}
	if err := tb.probeRound(ctx, rx, flows, all, out, opts.Timeout, opts.Concurrency); err != nil {
		return nil, err
	}
	if opts.ConfirmTimeout >= 0 {
		confirm := opts.ConfirmTimeout
		if confirm == 0 {
			confirm = max(4*opts.Timeout, 900*time.Millisecond)
		}
		var again []int
		for i, ok := range out {
			if !ok {
				again = append(again, i)
			}
		}
		if err := tb.probeRound(ctx, rx, flows, again, out, confirm, opts.Concurrency); err != nil {
			return nil, err
		}
	}
	return out, rx.err()
}

// probeRound sends flows[idx...] concurrently and sets out[i] for each one delivered. Each
// probe has its own sequence number, so a late delivery from an earlier round is ignored.
func (tb *Testbed) probeRound(ctx context.Context, rx *receivers, flows []policy.Flow, idx []int, out []bool, timeout time.Duration, concurrency int) error {
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	sem := make(chan struct{}, concurrency)
	var wg sync.WaitGroup
	for _, i := range idx {
		f := flows[i]
		seq := rx.nextSeq()
		select {
		case sem <- struct{}{}:
		case <-ctx.Done():
		}
		if ctx.Err() != nil {
			break
		}
		wg.Add(1)
		go func() {
			defer func() { <-sem; wg.Done() }()
			ok, err := tb.probeOne(ctx, rx, seq, f, timeout, nil)
			if err != nil {
				cancel(fmt.Errorf("probe %s: %w", f, err))
				return
			}
			if ok {
				out[i] = true
			}
		}()
	}
	wg.Wait()
	return context.Cause(ctx)
}

// probeOne sends one probe of f and waits up to timeout for its delivery. With sent set, it
// records there when the packet was handed to the kernel (after the socket was made).
func (tb *Testbed) probeOne(ctx context.Context, rx *receivers, seq uint64, f policy.Flow, timeout time.Duration, sent *time.Time) (bool, error) {
	src, dst := f.Src.Unmap(), f.Dst.Unmap()
	sns, _ := tb.nsFor(src)
	self := src == dst
	if f.Proto == policy.ProtoTCP {
		return dialTCP(ctx, sns, src, dst, f.Port, self, timeout, sent)
	}
	w := rx.expect(seq)
	defer rx.forget(seq)
	tok := rx.token(seq)
	var err error
	if f.Proto == policy.ProtoUDP {
		err = sendUDP(sns, src, dst, f.Port, self, tok, sent)
	} else {
		err = sendICMP(sns, src, dst, uint16(seq), self, tok, sent)
	}
	if err != nil {
		return false, err
	}
	t := time.NewTimer(timeout)
	defer t.Stop()
	select {
	case <-w.done:
		if w.gotSrc != src || w.gotDst != dst {
			return false, fmt.Errorf("testbed fault: delivered as %s -> %s", w.gotSrc, w.gotDst)
		}
		return true, nil
	case <-t.C:
		return false, nil
	case <-ctx.Done():
		return false, context.Cause(ctx)
	}
}

// dialTCP connects from src to dst:port. The socket is made inside the source namespace (a
// short setns on a locked thread); the handshake is awaited on the poller, so a thousand
// probes in flight hold no thread each.
func dialTCP(ctx context.Context, sns *nsInfo, src, dst netip.Addr, port uint16, self bool, timeout time.Duration, sent *time.Time) (bool, error) {
	fd, err := socketIn(sns, unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_NONBLOCK, unix.IPPROTO_TCP)
	if err != nil {
		return false, err
	}
	f := os.NewFile(uintptr(fd), "tcp-probe")
	defer f.Close()
	// RST instead of FIN on close: no TIME_WAIT left behind per probe.
	if err := unix.SetsockoptLinger(fd, unix.SOL_SOCKET, unix.SO_LINGER, &unix.Linger{Onoff: 1, Linger: 0}); err != nil {
		return false, fmt.Errorf("set SO_LINGER: %w", err)
	}
	if self {
		if err := unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_MARK, selfMark); err != nil {
			return false, fmt.Errorf("set SO_MARK: %w", err)
		}
	}
	if err := unix.Bind(fd, sockaddr(src, 0)); err != nil {
		return false, fmt.Errorf("bind %s in %s: %w", src, sns.name, err)
	}
	if sent != nil {
		*sent = time.Now()
	}
	if err := unix.Connect(fd, sockaddr(dst, port)); err != nil && !errors.Is(err, unix.EINPROGRESS) {
		return false, fmt.Errorf("testbed fault: connect to %s:%d: %w", dst, port, err)
	}
	deadline := time.Now().Add(timeout)
	if d, ok := ctx.Deadline(); ok && d.Before(deadline) {
		deadline = d
	}
	if err := f.SetWriteDeadline(deadline); err != nil {
		return false, fmt.Errorf("set probe deadline: %w", err)
	}
	rc, err := f.SyscallConn()
	if err != nil {
		return false, fmt.Errorf("probe socket: %w", err)
	}
	connected, soErr, werr := awaitConnect(rc)
	switch {
	case connected:
		return true, nil
	case soErr != nil:
		return false, fmt.Errorf("testbed fault: connect to %s:%d: %w (a drop shows as a timeout, not as an error)", dst, port, soErr)
	case errors.Is(werr, os.ErrDeadlineExceeded):
		if ctx.Err() != nil {
			return false, context.Cause(ctx)
		}
		return false, nil
	}
	return false, fmt.Errorf("wait for connect to %s:%d: %w", dst, port, werr)
}

// awaitConnect waits on the poller until a non-blocking connect of rc's socket finishes or its
// write deadline passes: connected, or the socket's error, or the wait's (a deadline shows as
// os.ErrDeadlineExceeded).
func awaitConnect(rc syscall.RawConn) (connected bool, soErr, werr error) {
	werr = rc.Write(func(fd uintptr) bool {
		v, err := unix.GetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_ERROR)
		switch {
		case err != nil:
			soErr = err
			return true
		case v != 0:
			soErr = unix.Errno(v)
			return true
		}
		if _, err := unix.Getpeername(int(fd)); err == nil {
			connected = true
			return true
		}
		return false // still in progress: wait for writability
	})
	return connected, soErr, werr
}

// socketIn creates a socket inside ns; its namespace is fixed at creation, so it may then be
// used from any thread.
func socketIn(ns *nsInfo, domain, typ, proto int) (int, error) {
	var fd int
	var serr error
	if err := ns.ns.Do(func() error {
		fd, serr = unix.Socket(domain, typ|unix.SOCK_CLOEXEC, proto)
		return nil
	}); err != nil {
		return -1, err
	}
	if serr != nil {
		return -1, fmt.Errorf("socket in %s: %w", ns.name, serr)
	}
	return fd, nil
}

func sockaddr(a netip.Addr, port uint16) *unix.SockaddrInet4 {
	return &unix.SockaddrInet4{Addr: a.As4(), Port: int(port)}
}

// sendOne sends one datagram from a fresh socket bound to src in the source namespace.
func sendOne(sns *nsInfo, typ, proto int, src, dst netip.Addr, port uint16, self bool, payload []byte, sent *time.Time) error {
	fd, err := socketIn(sns, unix.AF_INET, typ, proto)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	if self {
		if err := unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_MARK, selfMark); err != nil {
			return fmt.Errorf("set SO_MARK: %w", err)
		}
	}
	if err := unix.Bind(fd, sockaddr(src, 0)); err != nil {
		return fmt.Errorf("bind %s in %s: %w", src, sns.name, err)
	}
	if sent != nil {
		*sent = time.Now()
	}
	if err := unix.Sendto(fd, payload, 0, sockaddr(dst, port)); err != nil {
		return fmt.Errorf("testbed fault: send to %s: %w", dst, err)
	}
	return nil
}

func sendUDP(sns *nsInfo, src, dst netip.Addr, port uint16, self bool, tok []byte, sent *time.Time) error {
	return sendOne(sns, unix.SOCK_DGRAM, unix.IPPROTO_UDP, src, dst, port, self, tok, sent)
}

// sendICMP sends one echo request carrying tok through a raw socket (the kernel adds the IP
// header with src as source).
func sendICMP(sns *nsInfo, src, dst netip.Addr, id uint16, self bool, tok []byte, sent *time.Time) error {
	msg := make([]byte, 8+len(tok))
	msg[0] = 8 // echo request
	binary.BigEndian.PutUint16(msg[4:], id)
	binary.BigEndian.PutUint16(msg[6:], 1)
	copy(msg[8:], tok)
	binary.BigEndian.PutUint16(msg[2:], inetChecksum(msg))
	return sendOne(sns, unix.SOCK_RAW, unix.IPPROTO_ICMP, src, dst, 0, self, msg, sent)
}

func inetChecksum(b []byte) uint16 {
	var s uint32
	for i := 0; i+1 < len(b); i += 2 {
		s += uint32(b[i])<<8 | uint32(b[i+1])
	}
	if len(b)%2 == 1 {
		s += uint32(b[len(b)-1]) << 8
	}
	for s>>16 != 0 {
		s = s&0xffff + s>>16
	}
	return ^uint16(s)
}

// receivers are the per-call listening sockets and the probes waiting on them.
type receivers struct {
	nonce [4]byte
	mu    sync.Mutex
	wait  map[uint64]*waiter
	fault error
	close func()
}

type waiter struct {
	once           sync.Once
	done           chan struct{}
	gotSrc, gotDst netip.Addr
}

const tokenLen = 16

var tokenMagic = [4]byte{'n', 'p', 'b', '1'}

// probeSeq numbers probes for the life of the process. The low 16 bits are the ICMP echo
// identifier, which conntrack (the kernel's and the eBPF datapath's) uses as the flow's port:
// reusing one across calls could make a new echo request look like the reply to an old one.
var probeSeq atomic.Uint64

func (rx *receivers) nextSeq() uint64 { return probeSeq.Add(1) }

func (rx *receivers) token(seq uint64) []byte {
	b := make([]byte, tokenLen)
	copy(b, tokenMagic[:])
	copy(b[4:], rx.nonce[:])
	binary.BigEndian.PutUint64(b[8:], seq)
	return b
}

func (rx *receivers) expect(seq uint64) *waiter {
	w := &waiter{done: make(chan struct{})}
	rx.mu.Lock()
	rx.wait[seq] = w
	rx.mu.Unlock()
	return w
}

func (rx *receivers) forget(seq uint64) {
	rx.mu.Lock()
	delete(rx.wait, seq)
	rx.mu.Unlock()
}

// deliver records a received token; tokens of other runs or of finished probes are ignored.
func (rx *receivers) deliver(payload []byte, src, dst netip.Addr) {
	if len(payload) < tokenLen || [4]byte(payload[:4]) != tokenMagic || [4]byte(payload[4:8]) != rx.nonce {
		return
	}
	seq := binary.BigEndian.Uint64(payload[8:16])
	rx.mu.Lock()
	w := rx.wait[seq]
	rx.mu.Unlock()
	if w == nil {
		return
	}
	w.once.Do(func() {
		w.gotSrc, w.gotDst = src.Unmap(), dst.Unmap()
		close(w.done)
	})
}

func (rx *receivers) setFault(err error) {
	rx.mu.Lock()
	if rx.fault == nil {
		rx.fault = err
	}
	rx.mu.Unlock()
}

func (rx *receivers) err() error {
	rx.mu.Lock()
	defer rx.mu.Unlock()
	return rx.fault
}

// receiverKey is one receiving socket: a destination namespace, a protocol and a port (0 for
// ICMP).
type receiverKey struct {
	ns    *nsInfo
	proto policy.Protocol
	port  uint16
}

func (tb *Testbed) receiverKeyOf(f policy.Flow) receiverKey {
	dns, _ := tb.nsFor(f.Dst)
	k := receiverKey{dns, f.Proto, f.Port}
	if f.Proto == policy.ProtoICMP {
		k.port = 0
	}
	return k
}

func newReceivers() (*receivers, error) {
	rx := &receivers{wait: map[uint64]*waiter{}}
	if _, err := rand.Read(rx.nonce[:]); err != nil {
		return nil, fmt.Errorf("make probe nonce: %w", err)
	}
	return rx, nil
}

// openReceivers opens, in each destination namespace, a TCP listener and a UDP socket on every
// port the flows use there, and a raw ICMP socket where ICMP flows arrive. All are bound to
// the wildcard address: the AnyIP routes make every address of the namespace's blocks local.
func (tb *Testbed) openReceivers(flows []policy.Flow) (*receivers, error) {
	rx, err := newReceivers()
	if err != nil {
		return nil, err
	}
	seen := map[receiverKey]bool{}
	var closers []func()
	rx.close = func() {
		for _, c := range closers {
			c()
		}
	}
	for _, f := range flows {
		k := tb.receiverKeyOf(f)
		if seen[k] {
			continue
		}
		seen[k] = true
		c, err := rx.open(k)
		if err != nil {
			rx.close()
			return nil, fmt.Errorf("open receivers: %w", err)
		}
		closers = append(closers, c)
	}
	return rx, nil
}

// open opens one receiving socket delivering to rx, and returns what closes it (and waits for
// its reader).
func (rx *receivers) open(k receiverKey) (func(), error) {
	var closer func() error
	var read func()
	switch k.proto {
	case policy.ProtoTCP:
		ln, err := listenTCP(k.ns, k.port)
		if err != nil {
			return nil, err
		}
		closer, read = ln.Close, func() { acceptLoop(ln) }
	case policy.ProtoUDP:
		pc, err := listenUDP(k.ns, k.port)
		if err != nil {
			return nil, err
		}
		closer, read = pc.Close, func() { rx.readUDP(pc) }
	case policy.ProtoICMP:
		ic, err := listenICMP(k.ns)
		if err != nil {
			return nil, err
		}
		closer, read = ic.Close, func() { rx.readICMP(ic) }
	default:
		return nil, fmt.Errorf("no receiver for protocol %s", k.proto)
	}
	done := make(chan struct{})
	go func() { defer close(done); read() }()
	return func() { closer(); <-done }, nil
}

func fileFD(fd int, name string) *os.File { return os.NewFile(uintptr(fd), name) }

func listenTCP(ns *nsInfo, port uint16) (net.Listener, error) {
	fd, err := socketIn(ns, unix.AF_INET, unix.SOCK_STREAM, unix.IPPROTO_TCP)
	if err != nil {
		return nil, err
	}
	f := fileFD(fd, "tcp-listener")
	defer f.Close()
	if err := unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_REUSEADDR, 1); err != nil {
		return nil, fmt.Errorf("set SO_REUSEADDR: %w", err)
	}
	if err := unix.Bind(fd, &unix.SockaddrInet4{Port: int(port)}); err != nil {
		return nil, fmt.Errorf("bind tcp/%d in %s: %w", port, ns.name, err)
	}
	if err := unix.Listen(fd, 4096); err != nil {
		return nil, fmt.Errorf("listen tcp/%d in %s: %w", port, ns.name, err)
	}
	return net.FileListener(f)
}

func acceptLoop(ln net.Listener) {
	for {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		c.Close()
	}
}

func listenUDP(ns *nsInfo, port uint16) (*net.UDPConn, error) {
	fd, err := socketIn(ns, unix.AF_INET, unix.SOCK_DGRAM, unix.IPPROTO_UDP)
	if err != nil {
		return nil, err
	}
	f := fileFD(fd, "udp-receiver")
	defer f.Close()
	if err := unix.SetsockoptInt(fd, unix.IPPROTO_IP, unix.IP_PKTINFO, 1); err != nil {
		return nil, fmt.Errorf("set IP_PKTINFO: %w", err)
	}
	if err := unix.Bind(fd, &unix.SockaddrInet4{Port: int(port)}); err != nil {
		return nil, fmt.Errorf("bind udp/%d in %s: %w", port, ns.name, err)
	}
	pc, err := net.FilePacketConn(f)
	if err != nil {
		return nil, fmt.Errorf("wrap udp/%d receiver: %w", port, err)
	}
	return pc.(*net.UDPConn), nil
}

func listenICMP(ns *nsInfo) (*net.IPConn, error) {
	fd, err := socketIn(ns, unix.AF_INET, unix.SOCK_RAW, unix.IPPROTO_ICMP)
	if err != nil {
		return nil, err
	}
	f := fileFD(fd, "icmp-receiver")
	defer f.Close()
	if err := unix.SetsockoptInt(fd, unix.IPPROTO_IP, unix.IP_PKTINFO, 1); err != nil {
		return nil, fmt.Errorf("set IP_PKTINFO: %w", err)
	}
	pc, err := net.FilePacketConn(f)
	if err != nil {
		return nil, fmt.Errorf("wrap icmp receiver: %w", err)
	}
	return pc.(*net.IPConn), nil
}

// pktinfoDst returns the destination address from an IP_PKTINFO control message.
func pktinfoDst(oob []byte) (netip.Addr, bool) {
	msgs, err := unix.ParseSocketControlMessage(oob)
	if err != nil {
		return netip.Addr{}, false
	}
	for _, m := range msgs {
		if m.Header.Level == unix.IPPROTO_IP && m.Header.Type == unix.IP_PKTINFO && len(m.Data) >= unix.SizeofInet4Pktinfo {
			// struct in_pktinfo: ifindex (4), spec_dst (4), addr (4); addr is the header's
			// destination.
			return netip.AddrFrom4([4]byte(m.Data[8:12])), true
		}
	}
	return netip.Addr{}, false
}

func (rx *receivers) readUDP(pc *net.UDPConn) {
	buf := make([]byte, 2048)
	oob := make([]byte, 256)
	for {
		n, oobn, _, from, err := pc.ReadMsgUDPAddrPort(buf, oob)
		if err != nil {
			return
		}
		dst, ok := pktinfoDst(oob[:oobn])
		if !ok {
			rx.setFault(errors.New("testbed fault: udp receiver got no IP_PKTINFO"))
			continue
		}
		rx.deliver(buf[:n], from.Addr(), dst)
	}
}

func (rx *receivers) readICMP(ic *net.IPConn) {
	buf := make([]byte, 2048)
	oob := make([]byte, 256)
	for {
		n, oobn, _, from, err := ic.ReadMsgIP(buf, oob)
		if err != nil {
			return
		}
		b := buf[:n]
		// A raw IPv4 socket may hand over the IP header; an ICMP message never starts with
		// 0x4X (no ICMP type 64..79 is in use).
		if len(b) > 20 && b[0]>>4 == 4 {
			b = b[int(b[0]&0x0f)*4:]
		}
		if len(b) < 8 || b[0] != 8 {
			continue // only echo requests are probes
		}
		dst, ok := pktinfoDst(oob[:oobn])
		if !ok {
			rx.setFault(errors.New("testbed fault: icmp receiver got no IP_PKTINFO"))
			continue
		}
		src, _ := netip.AddrFromSlice(from.IP.To4())
		rx.deliver(b[8:], src, dst)
	}
}
