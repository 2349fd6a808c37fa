package catalogue

import "github.com/cilium/ebpf/link"

// hookSwitch is the Switch of a netfilter backend whose Unhook takes its rules (and with them
// nf_conntrack) out of the packet path and whose Hook puts them back: iptables and nftables.
type hookSwitch struct {
	hook, unhook func() error
	// out is set while the rules are out of the path.
	out bool
}

// Out unhooks the rules once.
func (s *hookSwitch) Out() error {
	if s.out {
		return nil
	}
	if err := s.unhook(); err != nil {
		return err
	}
	s.out = true
	return nil
}

// In hooks them again; the anchors are for TCX programs and do not apply.
func (s *hookSwitch) In(link.Anchor, link.Anchor) error {
	if !s.out {
		return nil
	}
	if err := s.hook(); err != nil {
		return err
	}
	s.out = false
	return nil
}

// synced notes a full sync, which puts the rules back in the path by itself.
func (s *hookSwitch) synced() { s.out = false }
