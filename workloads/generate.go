package workloads

import (
	"fmt"
	"math/rand/v2"
	"net/netip"
	"strconv"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"netpolbench/policy"
)

// Address plan.
var (
	// PodRange holds every pod IP.
	PodRange = netip.MustParsePrefix("198.18.0.0/15")
	// ExternalRange holds every external host.
	ExternalRange = netip.MustParsePrefix("203.0.113.0/24")
)

// podImage is the container image of generated pods: it must exist so kubectl apply works
// against a real cluster, and it never listens, which is fine for a policy benchmark.
const podImage = "registry.k8s.io/pause:3.10"

// Random stream ids: each stage draws from its own PCG stream so the stages are independent.
const (
	streamNamespaces = iota + 1
	streamLabelSets
	streamPods
	streamPolicies
	streamProbes
	streamChurn
	streamExternal
)

func newRand(seed uint64, stream uint64) *rand.Rand {
	return rand.New(rand.NewPCG(seed, stream*0x9e3779b97f4a7c15+1))
}

// LabelSet is a distinct pod label set: one security identity. Pods of a label set share their
// labels and container ports.
type LabelSet struct {
	Namespace string
	Labels    map[string]string
	Ports     []policy.ContainerPort
	// Pods is how many generated pods carry the label set.
	Pods int
}

// Generated is a generated cluster: the Kubernetes objects and the policy.Cluster built from
// them. The objects are in a fixed order (namespaces, then pods by namespace, then policies)
// and must not be modified; the Cluster belongs to the caller (policy.Compile takes it over).
type Generated struct {
	Spec       Spec
	Namespaces []*corev1.Namespace
	Pods       []*corev1.Pod
	Policies   []*networkingv1.NetworkPolicy
	LabelSets  []LabelSet
	// External are the external hosts probes use, from 203.0.113.0/24.
	External []netip.Addr
	Cluster  *policy.Cluster

	w *world
	// podLS is each pod's label set; pod i has address offset i (genPods hands them out in order).
	podLS []int32
	// polTmpl is each policy's template index in Spec.Policies.
	polTmpl []int
}

// world is what policy templates and churn draw from. Churn works on a copy.
type world struct {
	spec      Spec
	nsNames   []string
	nsLabels  []map[string]string
	labelSets []*labelSet
	// byNS lists the label sets of each namespace.
	byNS [][]int
	// ipUsed is one past the highest pod address offset ever handed out.
	ipUsed int
	// denyOrder is the order default-deny policies pick namespaces in; denyNext the next slot.
	denyOrder []int
	denyNext  int
	// seq numbers policies of each kind for unique names.
	seq map[string]int
}

type labelSet struct {
	ns     int
	app    string
	labels map[string]string
	ports  []policy.ContainerPort
	// next numbers the label set's pods for unique names.
	next int
}

func (w *world) clone() *world {
	c := *w
	c.labelSets = append([]*labelSet(nil), w.labelSets...)
	for i, ls := range c.labelSets {
		cp := *ls
		c.labelSets[i] = &cp
	}
	c.byNS = make([][]int, len(w.byNS))
	for i, l := range w.byNS {
		c.byNS[i] = append([]int(nil), l...)
	}
	c.seq = make(map[string]int, len(w.seq))
	for k, v := range w.seq {
		c.seq[k] = v
	}
	return &c
}

// podAddr returns the pod address at offset i of the pod range: offset 0 is 198.18.0.1, the
// last usable one (MaxPods-1) is 198.19.255.254.
func podAddr(i int) netip.Addr {
	b := PodRange.Addr().As4()
	v := uint32(b[0])<<24 | uint32(b[1])<<16 | uint32(b[2])<<8 | uint32(b[3])
	v += uint32(i) + 1
	return netip.AddrFrom4([4]byte{byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v)})
}

// podOffset is the inverse of podAddr; ok is false outside the usable pod range.
func podOffset(a netip.Addr) (int, bool) {
	if !a.Is4() || !PodRange.Contains(a) {
		return 0, false
	}
	b, base := a.As4(), PodRange.Addr().As4()
	d := int(uint32(b[0])<<24|uint32(b[1])<<16|uint32(b[2])<<8|uint32(b[3])) -
		int(uint32(base[0])<<24|uint32(base[1])<<16|uint32(base[2])<<8|uint32(base[3])) - 1
	return d, d >= 0 && d < MaxPods
}

// Generate builds the cluster a spec describes. The spec is validated first.
func Generate(spec Spec) (*Generated, error) {
	if err := spec.Validate(); err != nil {
		return nil, err
	}
	s := spec
	if s.Namespaces.Count == 0 {
		s.Namespaces.Count = 1
	}
	if s.Namespaces.Prefix == "" {
		s.Namespaces.Prefix = "ns"
	}
	if s.LabelSets.Distribution == "" {
		s.LabelSets.Distribution = Uniform
	}
	if s.LabelSets.Distribution == Zipf && s.LabelSets.Exponent == 0 {
		s.LabelSets.Exponent = 1.1
	}
	if s.ExternalHosts == 0 {
		s.ExternalHosts = 16
	}
	w := &world{spec: s, seq: map[string]int{}}
	g := &Generated{Spec: s, w: w}

	genNamespaces(g, newRand(s.Seed, streamNamespaces))
	genLabelSets(g, newRand(s.Seed, streamLabelSets))
	counts := spreadPods(s, newRand(s.Seed, streamPods))
	genPods(g, counts)
	g.External = pickExternal(s.ExternalHosts, newRand(s.Seed, streamExternal))

	pr := newRand(s.Seed, streamPolicies)
	w.denyOrder = pr.Perm(len(w.nsNames))
	for ti, t := range s.Policies {
		for range t.Count {
			g.Policies = append(g.Policies, w.policy(pr, t))
			g.polTmpl = append(g.polTmpl, ti)
		}
	}

	c := policy.NewCluster()
	for _, ns := range g.Namespaces {
		if err := c.AddNamespace(ns); err != nil {
			return nil, fmt.Errorf("add namespace %s: %w", ns.Name, err)
		}
	}
	for _, p := range g.Pods {
		if err := c.AddPod(p); err != nil {
			return nil, fmt.Errorf("add pod %s/%s: %w", p.Namespace, p.Name, err)
		}
	}
	for _, np := range g.Policies {
		if err := c.AddPolicy(np); err != nil {
			return nil, fmt.Errorf("add policy %s/%s: %w (a generator bug: please report the spec)", np.Namespace, np.Name, err)
		}
	}
	g.Cluster = c
	return g, nil
}

func genNamespaces(g *Generated, r *rand.Rand) {
	s := &g.Spec
	n := s.Namespaces.Count
	width := len(strconv.Itoa(n))
	w := g.w
	for i := range n {
		name := s.Namespaces.Prefix + "-" + pad(i+1, width)
		labels := map[string]string{"kubernetes.io/metadata.name": name}
		for _, t := range s.Namespaces.Labels {
			labels[t.Key] = t.Values[r.IntN(len(t.Values))]
		}
		w.nsNames = append(w.nsNames, name)
		w.nsLabels = append(w.nsLabels, labels)
		g.Namespaces = append(g.Namespaces, &corev1.Namespace{
			TypeMeta:   metav1.TypeMeta{APIVersion: "v1", Kind: "Namespace"},
			ObjectMeta: metav1.ObjectMeta{Name: name, Labels: copyMap(labels)},
		})
	}
	w.byNS = make([][]int, n)
}

func pad(v, width int) string {
	s := strconv.Itoa(v)
	for len(s) < width {
		s = "0" + s
	}
	return s
}

func genLabelSets(g *Generated, r *rand.Rand) {
	s := &g.Spec
	w := g.w
	for j := range s.LabelSets.Count {
		w.addLabelSet(r, j%len(w.nsNames))
	}
}

// addLabelSet draws a new label set in namespace ns and returns its index.
func (w *world) addLabelSet(r *rand.Rand, ns int) int {
	j := len(w.labelSets)
	ls := &labelSet{ns: ns, app: "app-" + strconv.Itoa(j)}
	ls.labels = map[string]string{"app": ls.app}
	for _, t := range w.spec.LabelSets.Labels {
		ls.labels[t.Key] = t.Values[r.IntN(len(t.Values))]
	}
	for _, p := range w.spec.Ports {
		if p.Probability != nil && r.Float64() >= *p.Probability {
			continue
		}
		num := p.Port
		if len(p.Alternatives) > 0 {
			if k := r.IntN(len(p.Alternatives) + 1); k > 0 {
				num = p.Alternatives[k-1]
			}
		}
		proto, _ := policy.ParseProtocol(defaultProto(p.Protocol))
		ls.ports = append(ls.ports, policy.ContainerPort{Name: p.Name, Protocol: proto, Port: uint16(num)})
	}
	w.labelSets = append(w.labelSets, ls)
	w.byNS[ns] = append(w.byNS[ns], j)
	return j
}

func defaultProto(p string) string {
	if p == "" {
		return "TCP"
	}
	return p
}

// spreadPods returns how many pods each label set gets: one each, the rest by the
// distribution. Under Zipf the popularity ranks are a random permutation of the label sets, so
// the popular ones do not all sit in the first namespaces.
func spreadPods(s Spec, r *rand.Rand) []int {
	n := s.LabelSets.Count
	counts := make([]int, n)
	for j := range counts {
		counts[j] = 1
	}
	rest := s.Pods - n
	switch s.LabelSets.Distribution {
	case Zipf:
		rank := r.Perm(n)
		z := rand.NewZipf(r, s.LabelSets.Exponent, 1, uint64(n-1))
		for range rest {
			counts[rank[z.Uint64()]]++
		}
	default:
		for range rest {
			counts[r.IntN(n)]++
		}
	}
	return counts
}

// genPods emits the pods namespace by namespace, so each namespace holds a contiguous address
// block and ipBlock prefixes over pod IPs cover whole namespaces or parts of them.
//
// At 100k pods generation is bound by allocation, so pods, containers, ports, names and
// addresses are carved out of a few slabs instead of 600k small allocations.
func genPods(g *Generated, counts []int) {
	w := g.w
	total, nports := 0, 0
	for j, n := range counts {
		total += n
		nports += n * len(w.labelSets[j].ports)
	}
	pods := make([]corev1.Pod, total)
	ctrs := make([]corev1.Container, total)
	cps := make([]corev1.ContainerPort, 0, nports)
	// Names and addresses go into one buffer each, made strings once and sliced.
	var nameBuf, ipBuf []byte
	nameEnd, ipEnd := make([]int, total), make([]int, total)
	g.Pods = make([]*corev1.Pod, total)
	g.podLS = make([]int32, total)
	g.LabelSets = make([]LabelSet, len(w.labelSets))
	i := 0
	for ns := range w.nsNames {
		for _, j := range w.byNS[ns] {
			ls := w.labelSets[j]
			g.LabelSets[j] = LabelSet{Namespace: w.nsNames[ns], Labels: copyMap(ls.labels), Ports: ls.ports, Pods: counts[j]}
			for range counts[j] {
				nameBuf = append(append(nameBuf, ls.app...), '-')
				nameBuf = strconv.AppendInt(nameBuf, int64(ls.next), 10)
				nameEnd[i] = len(nameBuf)
				ls.next++
				ipBuf = podAddr(w.ipUsed).AppendTo(ipBuf)
				ipEnd[i] = len(ipBuf)
				w.ipUsed++
				first := len(cps)
				for _, p := range ls.ports {
					cps = append(cps, corev1.ContainerPort{Name: p.Name, ContainerPort: int32(p.Port), Protocol: k8sProto(p.Protocol)})
				}
				ctrs[i] = corev1.Container{Name: "app", Image: podImage, Ports: cps[first:len(cps):len(cps)]}
				pods[i] = corev1.Pod{
					TypeMeta:   metav1.TypeMeta{APIVersion: "v1", Kind: "Pod"},
					ObjectMeta: metav1.ObjectMeta{Namespace: w.nsNames[ns], Labels: copyMap(ls.labels)},
					Spec:       corev1.PodSpec{Containers: ctrs[i : i+1 : i+1]},
				}
				g.Pods[i] = &pods[i]
				g.podLS[i] = int32(j)
				i++
			}
		}
	}
	names, ips := string(nameBuf), string(ipBuf)
	prevName, prevIP := 0, 0
	for i := range pods {
		pods[i].Name = names[prevName:nameEnd[i]]
		pods[i].Status.PodIP = ips[prevIP:ipEnd[i]]
		prevName, prevIP = nameEnd[i], ipEnd[i]
	}
}

func k8sProto(p policy.Protocol) corev1.Protocol {
	switch p {
	case policy.ProtoUDP:
		return corev1.ProtocolUDP
	case policy.ProtoSCTP:
		return corev1.ProtocolSCTP
	}
	return corev1.ProtocolTCP
}

// pickExternal draws n distinct hosts of 203.0.113.0/24, sorted.
func pickExternal(n int, r *rand.Rand) []netip.Addr {
	perm := r.Perm(254)
	picked := make([]bool, 255)
	for _, v := range perm[:n] {
		picked[v+1] = true
	}
	b := ExternalRange.Addr().As4()
	var out []netip.Addr
	for i, ok := range picked {
		if ok {
			b[3] = byte(i)
			out = append(out, netip.AddrFrom4(b))
		}
	}
	return out
}

func copyMap(m map[string]string) map[string]string {
	out := make(map[string]string, len(m))
	for k, v := range m {
		out[k] = v
	}
	return out
}
