package datapath

import (
	"errors"
	"fmt"
	"sort"
	"strings"
)

// Dump renders what the datapath's kernel maps hold, read back from the kernel, one sorted
// line per entry, with named-port ids replaced by names so two datapaths compare whatever
// order they numbered names in: two datapaths enforce the same state exactly when their dumps
// are equal. Traffic state (conntrack, metrics) is left out.
func (d *Datapath) Dump() (string, error) {
	var lines []string
	var ip uint32
	var ep bpfEndpoint
	it := d.objs.Lxc.Iterate()
	for it.Next(&ip, &ep) {
		lines = append(lines, fmt.Sprintf("lxc %s %+v", ipOfKey(ip), ep))
	}
	var ik bpfIpcacheKey
	var iv bpfIpcacheValue
	it2 := d.objs.Ipcache.Iterate()
	for it2.Next(&ik, &iv) {
		lines = append(lines, fmt.Sprintf("ipcache %s/%d %+v", ipOfKey(ik.Addr), ik.Prefixlen, iv))
	}
	var sk bpfSummaryKey
	var sv bpfSummary
	it3 := d.objs.PolicySummary.Iterate()
	for it3.Next(&sk, &sv) {
		lines = append(lines, fmt.Sprintf("summary %+v %+v", sk, sv))
	}
	var pk bpfPolicyKey
	var pv uint8
	it4 := d.objs.Policy.Iterate()
	for it4.Next(&pk, &pv) {
		port := fmt.Sprint(pk.Port)
		if pk.Kind == 1 {
			port = d.names.name(pk.Port)
		}
		lines = append(lines, fmt.Sprintf("policy rs=%d peer=%d proto=%d kind=%d port=%s", pk.Rs, pk.Peer, pk.Proto, pk.Kind, port))
	}
	var nk bpfNamedPortKey
	var nv bpfNamedPortValue
	it5 := d.objs.NamedPorts.Iterate()
	for it5.Next(&nk, &nv) {
		var names []string
		for _, id := range nv.Names {
			if id != 0 {
				names = append(names, d.names.name(id))
			}
		}
		sort.Strings(names)
		lines = append(lines, fmt.Sprintf("named %+v %v", nk, names))
	}
	if err := errors.Join(it.Err(), it2.Err(), it3.Err(), it4.Err(), it5.Err()); err != nil {
		return "", fmt.Errorf("dump maps: %w", err)
	}
	sort.Strings(lines)
	return strings.Join(lines, "\n"), nil
}
