package policy

import (
	"fmt"
	"net/netip"
)

// Flow is the first packet of a connection as enforcement sees it: source and destination
// address, protocol and destination port (0 for ICMP).
type Flow struct {
	Src   netip.Addr
	Dst   netip.Addr
	Proto Protocol
	Port  uint16
}

func (f Flow) String() string {
	return fmt.Sprintf("%s -> %s %s/%d", f.Src, f.Dst, f.Proto, f.Port)
}

// Verdict is allow or deny.
type Verdict uint8

const (
	Deny  Verdict = 0
	Allow Verdict = 1
)

func (v Verdict) String() string {
	if v == Allow {
		return "allow"
	}
	return "deny"
}
