package datapath

import (
	"errors"
	"fmt"
	"sort"
	"strings"

	"github.com/cilium/ebpf"
)

// Dump renders what the datapath's kernel maps hold, read back from the kernel, one sorted
// line per entry, with named-port ids replaced by names so two datapaths compare whatever
// order they numbered names in: two datapaths enforce the same state exactly when their dumps
// are equal. Traffic state (conntrack, metrics) is left out.
func (d *Datapath) Dump() (string, error) {
	var errs []error
	c := contents{
		lxc:     readMap[uint32, bpfEndpoint](d.objs.Lxc, &errs),
		ipcache: readMap[bpfIpcacheKey, bpfIpcacheValue](d.objs.Ipcache, &errs),
		summary: readMap[bpfSummaryKey, bpfSummary](d.objs.PolicySummary, &errs),
		policy:  readMap[bpfPolicyKey, uint8](d.objs.Policy, &errs),
		named:   readMap[bpfNamedPortKey, bpfNamedPortValue](d.objs.NamedPorts, &errs),
	}
	if err := errors.Join(errs...); err != nil {
		return "", fmt.Errorf("dump maps: %w", err)
	}
	return d.render(c), nil
}

// contents is what the policy maps of a datapath hold: read back from the kernel, or the Go
// mirror of it, or a plan (the tests compare all three).
type contents struct {
	lxc     map[uint32]bpfEndpoint
	ipcache map[bpfIpcacheKey]bpfIpcacheValue
	summary map[bpfSummaryKey]bpfSummary
	policy  map[bpfPolicyKey]uint8
	named   map[bpfNamedPortKey]bpfNamedPortValue
}

// readMap reads a kernel map into a Go map, appending an iteration error to errs.
func readMap[K comparable, V any](m *ebpf.Map, errs *[]error) map[K]V {
	out := map[K]V{}
	var k K
	var v V
	it := m.Iterate()
	for it.Next(&k, &v) {
		out[k] = v
	}
	if err := it.Err(); err != nil {
		*errs = append(*errs, fmt.Errorf("map %s: %w", m, err))
	}
	return out
}

// render renders contents as Dump does.
func (d *Datapath) render(c contents) string {
	var lines []string
	for ip, ep := range c.lxc {
		lines = append(lines, fmt.Sprintf("lxc %s %+v", ipOfKey(ip), ep))
	}
	for ik, iv := range c.ipcache {
		lines = append(lines, fmt.Sprintf("ipcache %s/%d %+v", ipOfKey(ik.Addr), ik.Prefixlen, iv))
	}
	for sk, sv := range c.summary {
		lines = append(lines, fmt.Sprintf("summary %+v %+v", sk, sv))
	}
	for pk := range c.policy {
		port := fmt.Sprint(pk.Port)
		if pk.Kind == 1 {
			port = d.names.name(pk.Port)
		}
		lines = append(lines, fmt.Sprintf("policy rs=%d peer=%d proto=%d kind=%d port=%s", pk.Rs, pk.Peer, pk.Proto, pk.Kind, port))
	}
	for nk, nv := range c.named {
		var names []string
		for _, id := range nv.Names {
			if id != 0 {
				names = append(names, d.names.name(id))
			}
		}
		sort.Strings(names)
		lines = append(lines, fmt.Sprintf("named %+v %v", nk, names))
	}
	sort.Strings(lines)
	return strings.Join(lines, "\n")
}
