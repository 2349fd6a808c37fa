package datapath

import (
	"encoding/binary"
	"fmt"

	"github.com/cilium/ebpf"

	"netpolbench/policy"
)

// ProbeSrcPort is the source port of probe packets.
const ProbeSrcPort = 40000

// Return codes of the programs.
const (
	retOK   = 0
	retShot = 2
)

// Packet builds the first packet of f as a real frame: Ethernet, IPv4 (no options, DF) and a
// TCP SYN, UDP, SCTP INIT or ICMP echo request header, with srcPort as source port. Checksums
// are left zero: the programs do not read them.
func Packet(f policy.Flow, srcPort uint16) ([]byte, error) {
	if !f.Src.Is4() || !f.Dst.Is4() {
		return nil, fmt.Errorf("build packet for %s: IPv4 only", f)
	}
	var l4 []byte
	switch f.Proto {
	case policy.ProtoTCP:
		l4 = make([]byte, 20)
		binary.BigEndian.PutUint16(l4[0:], srcPort)
		binary.BigEndian.PutUint16(l4[2:], f.Port)
		l4[12] = 5 << 4
		l4[13] = 0x02 // SYN
		binary.BigEndian.PutUint16(l4[14:], 64240)
	case policy.ProtoUDP:
		l4 = make([]byte, 8)
		binary.BigEndian.PutUint16(l4[0:], srcPort)
		binary.BigEndian.PutUint16(l4[2:], f.Port)
		binary.BigEndian.PutUint16(l4[4:], 8)
	case policy.ProtoSCTP:
		l4 = make([]byte, 12+20)
		binary.BigEndian.PutUint16(l4[0:], srcPort)
		binary.BigEndian.PutUint16(l4[2:], f.Port)
		l4[12] = 1 // INIT chunk
		binary.BigEndian.PutUint16(l4[14:], 20)
	case policy.ProtoICMP:
		l4 = make([]byte, 8)
		l4[0] = 8 // echo request
		binary.BigEndian.PutUint16(l4[4:], srcPort)
	default:
		return nil, fmt.Errorf("build packet for %s: unsupported protocol", f)
	}
	pkt := make([]byte, 14+20+len(l4))
	pkt[0], pkt[6] = 0x02, 0x02 // locally administered MACs
	pkt[5], pkt[11] = 2, 1
	binary.BigEndian.PutUint16(pkt[12:], 0x0800)
	ip := pkt[14:34]
	ip[0] = 0x45
	binary.BigEndian.PutUint16(ip[2:], uint16(20+len(l4)))
	binary.BigEndian.PutUint16(ip[6:], 0x4000) // DF
	ip[8] = 64
	ip[9] = uint8(f.Proto)
	s, dst := f.Src.As4(), f.Dst.As4()
	copy(ip[12:], s[:])
	copy(ip[16:], dst[:])
	copy(pkt[34:], l4)
	return pkt, nil
}

// Run runs one program once on pkt and reports whether it allowed it.
func (d *Datapath) Run(prog *ebpf.Program, pkt []byte) (bool, error) {
	ret, err := prog.Run(&ebpf.RunOptions{Data: pkt, Repeat: 1})
	if err != nil {
		return false, fmt.Errorf("test-run %s: %w", prog, err)
	}
	return d.allowed(ret)
}

func (d *Datapath) allowed(ret uint32) (bool, error) {
	switch int32(ret) {
	case retShot:
		return false, nil
	case retOK, -1:
		return true, nil
	}
	return false, fmt.Errorf("unexpected program return code %d", int32(ret))
}

// Verdict decides f with BPF_PROG_TEST_RUN: its first packet runs through from_container
// (egress of the source, when it is a local pod) and, if allowed, to_container (ingress of the
// destination). Both programs pass packets of addresses that are not local pods, so both always
// run. With CTLookup (the default) probes leave no state behind.
func (d *Datapath) Verdict(f policy.Flow) (policy.Verdict, error) {
	pkt, err := Packet(f, ProbeSrcPort)
	if err != nil {
		return policy.Deny, err
	}
	return d.VerdictPacket(pkt)
}

// VerdictPacket runs a prepared frame through from_container then to_container.
func (d *Datapath) VerdictPacket(pkt []byte) (policy.Verdict, error) {
	for _, prog := range []*ebpf.Program{d.objs.FromContainer, d.objs.ToContainer} {
		ok, err := d.Run(prog, pkt)
		if err != nil || !ok {
			return policy.Deny, err
		}
	}
	return policy.Allow, nil
}
