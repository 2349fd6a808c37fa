package policy

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"hash"
)

// Digest is a stable hash of the compiled state: SHA-256, hex, over the identities (id,
// labels, prefix), the rule sets (id, direction, selecting policies, entries) and the
// endpoints (id, pod, address, identity, rule sets), each in id order. Identity, rule set and
// endpoint ids depend only on the cluster's contents, so the same cluster compiled from
// objects added in any order has the same digest; any change to what enforcement needs
// changes it. Reference counts are left out: they follow from the endpoints.
func (s *State) Digest() string {
	d := digester{h: sha256.New(), buf: make([]byte, 0, 64<<10+1024)}
	for _, id := range s.Identities() {
		d.str("identity")
		d.u32(uint32(id.ID))
		d.strs(id.Labels)
		if id.Prefix.IsValid() {
			d.str(id.Prefix.String())
		}
	}
	for _, rs := range s.RuleSets() {
		d.str("ruleset")
		d.u32(uint32(rs.ID))
		d.u32(uint32(rs.Direction))
		d.strs(rs.Policies)
		for _, e := range rs.Entries {
			d.u32(uint32(e.Peer))
			d.u32(uint32(e.Proto))
			d.u32(uint32(e.Port)<<16 | uint32(e.EndPort))
			d.str(e.NamedPort)
		}
	}
	for _, ep := range s.Endpoints() {
		d.str("endpoint")
		d.u32(ep.ID)
		d.str(ep.Pod.Key())
		d.str(ep.Pod.IP.String())
		d.u32(uint32(ep.Identity))
		d.u32(uint32(ep.Ingress))
		d.u32(uint32(ep.Egress))
	}
	d.flush()
	return hex.EncodeToString(d.h.Sum(nil))
}

// digester writes length-prefixed fields, so no two different field sequences hash alike. It
// hashes in 64 KiB chunks: a million entries written field by field spent most of their time
// in the hash's per-call overhead.
type digester struct {
	h   hash.Hash
	buf []byte
}

func (d *digester) u32(v uint32) {
	d.buf = binary.BigEndian.AppendUint32(d.buf, v)
	if len(d.buf) >= 64<<10 {
		d.flush()
	}
}

func (d *digester) str(s string) {
	d.u32(uint32(len(s)))
	d.buf = append(d.buf, s...)
}

func (d *digester) flush() {
	d.h.Write(d.buf)
	d.buf = d.buf[:0]
}

func (d *digester) strs(ss []string) {
	d.u32(uint32(len(ss)))
	for _, s := range ss {
		d.str(s)
	}
}
