package workloads

import (
	"bufio"
	"fmt"
	"io"
	"net/netip"
	"strconv"
	"strings"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/intstr"

	"netpolbench/policy"
)

// Probe is one flow to decide, in the verdict command's probes-file form: From and To are
// "namespace/pod" or an IP outside the cluster; Protocol is TCP, UDP or SCTP.
type Probe struct {
	From     string `json:"from"`
	To       string `json:"to"`
	Port     int    `json:"port"`
	Protocol string `json:"protocol"`
}

// ProbesFile is the probes file's top level.
type ProbesFile struct {
	Probes []Probe `json:"probes"`
}

// Flow resolves the probe against a cluster: pod names to their IPs.
func (p Probe) Flow(c *policy.Cluster) (policy.Flow, error) {
	ep := func(s string) (netip.Addr, error) {
		if strings.Contains(s, "/") {
			pod, ok := c.Pods[s]
			if !ok {
				return netip.Addr{}, fmt.Errorf("probe: no pod %s", s)
			}
			return pod.IP, nil
		}
		a, err := netip.ParseAddr(s)
		if err != nil {
			return netip.Addr{}, fmt.Errorf("probe: %q is neither namespace/pod nor an IP", s)
		}
		return a, nil
	}
	src, err := ep(p.From)
	if err != nil {
		return policy.Flow{}, err
	}
	dst, err := ep(p.To)
	if err != nil {
		return policy.Flow{}, err
	}
	proto, err := policy.ParseProtocol(p.Protocol)
	if err != nil {
		return policy.Flow{}, fmt.Errorf("probe: %w", err)
	}
	if p.Port < 0 || p.Port > 65535 {
		return policy.Flow{}, fmt.Errorf("probe: port %d out of range", p.Port)
	}
	return policy.Flow{Src: src, Dst: dst, Proto: proto, Port: uint16(p.Port)}, nil
}

// portChoice is a port worth probing.
type portChoice struct {
	proto string
	port  int
}

// Probes draws n probes from the generated cluster: 60% pod to pod, 20% external to pod, 20%
// pod to external. Destination ports are, in about equal shares, the destination pod's own
// container ports (so named ports resolve), the ports and range edges (port-1, port, endPort,
// endPort+1) that the policies name, and random ports, over TCP, UDP and SCTP; so both verdicts
// occur in any cluster with policies. The same cluster, n and seed give the same probes.
func Probes(g *Generated, n int, seed uint64) []Probe {
	r := newRand(seed, streamProbes)
	policyPorts := policyPortChoices(g)
	egressPorts := []portChoice{{"TCP", 443}, {"TCP", 80}, {"UDP", 53}, {"TCP", 8443}, {"SCTP", 3868}}
	external := g.External
	if len(external) == 0 {
		external = []netip.Addr{netip.MustParseAddr("203.0.113.1")}
	}
	if len(g.Pods) == 0 {
		return nil
	}
	podName := func(p *corev1.Pod) string { return p.Namespace + "/" + p.Name }
	portFor := func(dst *corev1.Pod) portChoice {
		switch k := r.IntN(10); {
		case k < 4 && len(dst.Spec.Containers) > 0 && len(dst.Spec.Containers[0].Ports) > 0:
			ps := dst.Spec.Containers[0].Ports
			cp := ps[r.IntN(len(ps))]
			return portChoice{string(cp.Protocol), int(cp.ContainerPort)}
		case k < 8 && len(policyPorts) > 0:
			return policyPorts[r.IntN(len(policyPorts))]
		default:
			return portChoice{[]string{"TCP", "UDP", "SCTP"}[r.IntN(3)], 1 + r.IntN(65535)}
		}
	}
	out := make([]Probe, 0, n)
	for range n {
		var p Probe
		var pc portChoice
		switch k := r.IntN(10); {
		case k < 6:
			src, dst := g.Pods[r.IntN(len(g.Pods))], g.Pods[r.IntN(len(g.Pods))]
			p.From, p.To, pc = podName(src), podName(dst), portFor(dst)
		case k < 8:
			dst := g.Pods[r.IntN(len(g.Pods))]
			p.From, p.To, pc = external[r.IntN(len(external))].String(), podName(dst), portFor(dst)
		default:
			src := g.Pods[r.IntN(len(g.Pods))]
			to := external[r.IntN(len(external))].String()
			if r.IntN(4) == 0 {
				// Any host of the range, so ipBlock except prefixes get probed too.
				to = addOffset(ExternalRange.Addr(), 1+r.IntN(254)).String()
			}
			p.From, p.To = podName(src), to
			if r.IntN(2) == 0 {
				pc = egressPorts[r.IntN(len(egressPorts))]
			} else {
				pc = portFor(src)
			}
		}
		p.Port, p.Protocol = pc.port, pc.proto
		out = append(out, p)
	}
	return out
}

// policyPortChoices lists every numeric port the policies name, and the edges of each range,
// in policy order, without duplicates.
func policyPortChoices(g *Generated) []portChoice {
	seen := map[portChoice]bool{}
	var out []portChoice
	add := func(proto string, port int) {
		pc := portChoice{proto, port}
		if port < 1 || port > 65535 || seen[pc] {
			return
		}
		seen[pc] = true
		out = append(out, pc)
	}
	for _, np := range g.Policies {
		for _, rule := range np.Spec.Ingress {
			for _, pp := range rule.Ports {
				addPolicyPort(add, pp.Protocol, pp.Port, pp.EndPort)
			}
		}
		for _, rule := range np.Spec.Egress {
			for _, pp := range rule.Ports {
				addPolicyPort(add, pp.Protocol, pp.Port, pp.EndPort)
			}
		}
	}
	return out
}

// addPolicyPort adds a numeric policy port, or for a range its edges and the ports just outside.
func addPolicyPort(add func(string, int), proto *corev1.Protocol, port *intstr.IntOrString, end *int32) {
	if port == nil || port.Type != intstr.Int {
		return // named ports are probed through the pods' own container ports
	}
	pr := "TCP"
	if proto != nil {
		pr = string(*proto)
	}
	lo := int(port.IntVal)
	add(pr, lo)
	if end != nil {
		add(pr, lo-1)
		add(pr, int(*end))
		add(pr, int(*end)+1)
	}
}

// WriteProbes writes probes in the verdict command's probes-file format, one flow mapping a
// line. Values that YAML could misread (IPs, "y") are quoted.
func WriteProbes(w io.Writer, probes []Probe) error {
	bw := bufio.NewWriter(w)
	bw.WriteString("probes:\n")
	for _, p := range probes {
		bw.WriteString("  - {from: ")
		bw.WriteString(yamlString(p.From))
		bw.WriteString(", to: ")
		bw.WriteString(yamlString(p.To))
		bw.WriteString(", port: ")
		bw.WriteString(strconv.Itoa(p.Port))
		bw.WriteString(", protocol: ")
		bw.WriteString(yamlString(p.Protocol))
		bw.WriteString("}\n")
	}
	if err := bw.Flush(); err != nil {
		return fmt.Errorf("write probes: %w", err)
	}
	return nil
}
