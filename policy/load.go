package policy

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"os"
	"reflect"
	"runtime"
	"sort"
	"strings"
	"sync"
	"sync/atomic"

	yamlv3 "go.yaml.in/yaml/v3"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	apivalidation "k8s.io/apimachinery/pkg/api/validation"
	"sigs.k8s.io/yaml"
)

// NamespaceNameLabel is the label the API server puts on every namespace.
const NamespaceNameLabel = "kubernetes.io/metadata.name"

// AddNamespace validates a namespace as the API server does and adds it (or replaces its
// labels), with the kubernetes.io/metadata.name label the API server sets.
func (c *Cluster) AddNamespace(ns *corev1.Namespace) error {
	if err := validateMeta("namespace "+ns.Name, &ns.ObjectMeta, false, apivalidation.ValidateNamespaceName); err != nil {
		return err
	}
	lbl := copyLabels(ns.Labels)
	if lbl == nil {
		lbl = map[string]string{}
	}
	lbl[NamespaceNameLabel] = ns.Name
	c.Namespaces[ns.Name] = &Namespace{Name: ns.Name, Labels: lbl}
	return nil
}

func (c *Cluster) ensureNamespace(name string) {
	if _, ok := c.Namespaces[name]; !ok {
		c.Namespaces[name] = &Namespace{Name: name, Labels: map[string]string{NamespaceNameLabel: name}}
	}
}

// ErrNotEndpoint marks a pod that is not a policy endpoint, as a network plugin decides: a pod
// without an IP yet, a pod whose containers have all exited (phase Succeeded or Failed), or a
// hostNetwork pod, whose IP is its node's. Load skips such pods with a warning.
var ErrNotEndpoint = errors.New("not a policy endpoint")

// PodFromK8s validates and converts a Pod object. The metadata is checked as the API server
// does; the IP comes from status.podIP, or the IPv4 entry of status.podIPs on a dual-stack pod
// (the datapath is IPv4-only); named ports from spec.containers[].ports (protocol defaults to
// TCP). A pod that is not an endpoint gives an error wrapping ErrNotEndpoint.
func PodFromK8s(p *corev1.Pod) (*Pod, error) {
	ns := p.Namespace
	if ns == "" {
		ns = "default"
	}
	object := "pod " + ns + "/" + p.Name
	if p.Name == "" {
		object = "pod in namespace " + ns
	}
	if err := validateMeta(object, &p.ObjectMeta, true, apivalidation.NameIsDNSSubdomain); err != nil {
		return nil, err
	}
	ports, err := podPorts(object, &p.Spec)
	if err != nil {
		return nil, err
	}
	ip, hasIP, err := podIPv4(object, &p.Status)
	if err != nil {
		return nil, err
	}
	notEndpoint := func(why string, args ...any) error {
		return fmt.Errorf("%s: %w: %s", object, ErrNotEndpoint, fmt.Sprintf(why, args...))
	}
	phase := p.Status.Phase
	switch {
	case p.Spec.HostNetwork:
		return nil, notEndpoint("spec.hostNetwork: it has its node's IP, and its traffic is the node's, which NetworkPolicy does not govern")
	case phase == corev1.PodSucceeded || phase == corev1.PodFailed:
		return nil, notEndpoint("status.phase %s: finished, and its IP may already be another pod's", phase)
	case !hasIP:
		if phase == "" {
			phase = "not given"
		}
		return nil, notEndpoint("no status.podIP yet (status.phase %s)", phase)
	case !ip.IsValid():
		return nil, &FieldError{Object: object, Field: "status.podIP", Detail: "no IPv4 address (the datapath is IPv4-only)"}
	}
	return &Pod{Namespace: ns, Name: p.Name, Labels: copyLabels(p.Labels), IP: ip, Ports: ports}, nil
}

// podPorts reads a pod's container ports, checked as the API server does: a port number,
// TCP, UDP or SCTP (exactly so), and names that are valid and unique within their container.
func podPorts(object string, spec *corev1.PodSpec) ([]ContainerPort, error) {
	var out []ContainerPort
	for i, ctr := range spec.Containers {
		fail := func(j int, field, format string, args ...any) error {
			return &FieldError{Object: object, Field: fmt.Sprintf("spec.containers[%d].ports[%d].%s", i, j, field), Detail: fmt.Sprintf(format, args...)}
		}
		for j, cp := range ctr.Ports {
			var proto Protocol
			switch cp.Protocol {
			case "", corev1.ProtocolTCP:
				proto = ProtoTCP
			case corev1.ProtocolUDP:
				proto = ProtoUDP
			case corev1.ProtocolSCTP:
				proto = ProtoSCTP
			default:
				return nil, fail(j, "protocol", "unsupported value %q (want TCP, UDP or SCTP)", cp.Protocol)
			}
			if cp.ContainerPort < 1 || cp.ContainerPort > 65535 {
				return nil, fail(j, "containerPort", "%d is out of range 1-65535", cp.ContainerPort)
			}
			if cp.Name != "" {
				if errs := validPortName(cp.Name); len(errs) > 0 {
					return nil, fail(j, "name", "invalid port name %q: %s", cp.Name, strings.Join(errs, "; "))
				}
				for _, prev := range ctr.Ports[:j] {
					if prev.Name == cp.Name {
						return nil, fail(j, "name", "%q is declared twice in container %q", cp.Name, ctr.Name)
					}
				}
			}
			out = append(out, ContainerPort{Name: cp.Name, Protocol: proto, Port: uint16(cp.ContainerPort)})
		}
	}
	return out, nil
}

// podIPv4 reads a pod's addresses: hasIP says whether it has any, ip is its IPv4 one (invalid
// when it has none). status.podIPs, when given, must start with status.podIP and hold at most
// one address of each family, as the API server keeps them.
func podIPv4(object string, st *corev1.PodStatus) (ip netip.Addr, hasIP bool, err error) {
	parse := func(field, s string) (netip.Addr, error) {
		a, err := netip.ParseAddr(s)
		switch {
		case err != nil:
			return a, &FieldError{Object: object, Field: field, Detail: fmt.Sprintf("invalid address %q: %s", s, netipReason(err, "want an IPv4 or IPv6 address"))}
		case a.Is4In6() || a.Zone() != "":
			return a, &FieldError{Object: object, Field: field, Detail: fmt.Sprintf("invalid address %q: want a plain IPv4 or IPv6 address", s)}
		}
		return a, nil
	}
	var addrs []netip.Addr
	if st.PodIP != "" {
		a, err := parse("status.podIP", st.PodIP)
		if err != nil {
			return ip, false, err
		}
		addrs = append(addrs, a)
	}
	for i, pip := range st.PodIPs {
		field := fmt.Sprintf("status.podIPs[%d].ip", i)
		a, err := parse(field, pip.IP)
		if err != nil {
			return ip, false, err
		}
		switch {
		case i == 0 && st.PodIP != "" && a != addrs[0]:
			return ip, false, &FieldError{Object: object, Field: field, Detail: fmt.Sprintf("%s differs from status.podIP %s", a, addrs[0])}
		case i == 0 && st.PodIP == "":
			return ip, false, &FieldError{Object: object, Field: "status.podIP", Detail: fmt.Sprintf("empty, but status.podIPs holds %s", a)}
		case i == 1 && a.Is4() == addrs[0].Is4():
			return ip, false, &FieldError{Object: object, Field: field, Detail: "a second address must be of the other IP family"}
		case i > 1:
			return ip, false, &FieldError{Object: object, Field: "status.podIPs", Detail: "more than two addresses (one per IP family)"}
		case i == 1:
			addrs = append(addrs, a)
		}
	}
	for _, a := range addrs {
		if a.Is4() {
			return a, true, nil
		}
	}
	return ip, len(addrs) > 0, nil
}

// AddPod converts and adds a pod. Its namespace is created if missing; its IP must be unique.
func (c *Cluster) AddPod(p *corev1.Pod) error {
	pod, err := PodFromK8s(p)
	if err != nil {
		return err
	}
	return c.addPod(pod)
}

func (c *Cluster) addPod(pod *Pod) error {
	if _, dup := c.Pods[pod.Key()]; dup {
		return fmt.Errorf("pod %s: already exists", pod.Key())
	}
	if !pod.IP.Is4() {
		return fmt.Errorf("pod %s: IP %s is not IPv4", pod.Key(), pod.IP)
	}
	if other, dup := c.podsByIP[pod.IP]; dup {
		return fmt.Errorf("pod %s: IP %s is already used by pod %s", pod.Key(), pod.IP, other.Key())
	}
	c.ensureNamespace(pod.Namespace)
	c.Pods[pod.Key()] = pod
	c.podsByIP[pod.IP] = pod
	return nil
}

func (c *Cluster) removePod(key string) (*Pod, error) {
	pod, ok := c.Pods[key]
	if !ok {
		return nil, fmt.Errorf("pod %s: not found", key)
	}
	delete(c.Pods, key)
	delete(c.podsByIP, pod.IP)
	return pod, nil
}

// AddPolicy defaults and validates a NetworkPolicy and adds it. Its namespace is created if
// missing. A policy with the same namespace and name is an error.
func (c *Cluster) AddPolicy(np *networkingv1.NetworkPolicy) error {
	cp, err := compilePolicy(DefaultPolicy(np))
	if err != nil {
		return err
	}
	if _, dup := c.Policies[cp.key]; dup {
		return fmt.Errorf("networkpolicy %s: already exists", cp.key)
	}
	c.putPolicy(cp)
	return nil
}

func (c *Cluster) putPolicy(cp *compiledPolicy) {
	c.ensureNamespace(cp.ns)
	if old, ok := c.compiled[cp.key]; ok {
		delete(c.byNS[old.ns], cp.key)
	}
	c.Policies[cp.key] = cp.np
	c.compiled[cp.key] = cp
	if c.byNS[cp.ns] == nil {
		c.byNS[cp.ns] = map[string]*compiledPolicy{}
	}
	c.byNS[cp.ns][cp.key] = cp
}

func (c *Cluster) removePolicy(key string) (*compiledPolicy, error) {
	cp, ok := c.compiled[key]
	if !ok {
		return nil, fmt.Errorf("networkpolicy %s: not found", key)
	}
	delete(c.Policies, key)
	delete(c.compiled, key)
	delete(c.byNS[cp.ns], key)
	return cp, nil
}

// Load reads Namespace, Pod and NetworkPolicy objects from files (multi-document YAML or JSON,
// or `kubectl get -o yaml` List documents). Other kinds, and pods that are not endpoints (see
// ErrNotEndpoint), are skipped with a one-line warning. Any invalid object, a name defined
// twice, or two live pods with one IP fails the whole load: nothing is returned. Errors and
// warnings name the file, the document and, where known, the line.
func Load(paths ...string) (*Cluster, []string, error) {
	var objs []decoded
	var warnings []string
	for _, p := range paths {
		f, err := os.Open(p)
		if err != nil {
			return nil, nil, fmt.Errorf("load cluster: %w", err)
		}
		o, w, err := decode(f, p)
		f.Close()
		if err != nil {
			return nil, nil, err
		}
		objs = append(objs, o...)
		warnings = append(warnings, w...)
	}
	c, w, err := build(objs)
	if err != nil {
		return nil, nil, err
	}
	return c, append(warnings, w...), nil
}

// LoadBytes builds a cluster from one in-memory YAML stream; name stands for the file in
// messages.
func LoadBytes(b []byte, name string) (*Cluster, []string, error) {
	objs, w, err := decode(bytes.NewReader(b), name)
	if err != nil {
		return nil, nil, err
	}
	c, w2, err := build(objs)
	if err != nil {
		return nil, nil, err
	}
	return c, append(w, w2...), nil
}

// document is one YAML document of a stream.
type document struct {
	data []byte
	// where names it in messages ("cluster.yaml: document 3"); line is the line of the file
	// it starts on (1-based).
	where string
	line  int
}

// decoded is one object read from a stream, with where it came from.
type decoded struct {
	obj any // *corev1.Namespace, *corev1.Pod or *networkingv1.NetworkPolicy
	doc *document
	// item is the object's index in a List document's items, or -1; line is the line of the
	// file the object starts on.
	item int
	line int
}

// where names the object in messages: the file, the document and the List item.
func (d *decoded) where() string {
	if d.item < 0 {
		return d.doc.where
	}
	return fmt.Sprintf("%s: items[%d]", d.doc.where, d.item)
}

// fail places an error about the object: at the line of the field a FieldError names, else at
// the object's first line.
func (d *decoded) fail(err error) error {
	line := d.line
	var fe *FieldError
	if errors.As(err, &fe) && fe.Field != "" {
		if l := d.doc.fieldLine(d.item, fe.Field); l > 0 {
			line = l
		}
	}
	return fmt.Errorf("%s: line %d: %w", d.where(), line, err)
}

func (d *decoded) warn(format string, args ...any) string {
	return fmt.Sprintf("%s: line %d: %s", d.where(), d.line, fmt.Sprintf(format, args...))
}

// splitDocuments cuts a stream into documents at "---" lines, by the rules of apimachinery's
// YAMLReader (which kubectl uses): a separator line may carry a comment and nothing else, and
// empty documents are dropped; it also remembers the line each document starts on.
func splitDocuments(r io.Reader, name string) ([]*document, error) {
	br := bufio.NewReaderSize(r, 1<<16)
	var docs []*document
	var buf []byte
	start, line := 1, 0
	emit := func() {
		if len(buf) > 0 {
			docs = append(docs, &document{data: buf, where: fmt.Sprintf("%s: document %d", name, len(docs)), line: start})
			buf = nil
		}
	}
	for {
		text, err := br.ReadSlice('\n')
		if len(text) > 0 || err == nil {
			line++
		}
		if err != nil && err != io.EOF && err != bufio.ErrBufferFull {
			return nil, fmt.Errorf("%s: line %d: %w", name, line, err)
		}
		full := append([]byte(nil), text...)
		for err == bufio.ErrBufferFull {
			text, err = br.ReadSlice('\n')
			full = append(full, text...)
			if err != nil && err != io.EOF && err != bufio.ErrBufferFull {
				return nil, fmt.Errorf("%s: line %d: %w", name, line, err)
			}
		}
		if rest, ok := bytes.CutPrefix(full, []byte("---")); ok {
			if t := bytes.TrimSpace(rest); len(t) > 0 && t[0] != '#' {
				return nil, fmt.Errorf("%s: line %d: invalid document separator %q (only a comment may follow ---)", name, line, bytes.TrimSpace(full))
			}
			emit()
			start = line + 1
		} else {
			if len(buf) == 0 {
				start = line
			}
			buf = append(buf, full...)
		}
		if err == io.EOF {
			emit()
			return docs, nil
		}
	}
}

// decodeAll runs decode(0) ... decode(n-1) on every CPU and gathers their objects and
// warnings in order; of the errors, the first in order is returned.
func decodeAll(n int, decode func(i int) ([]decoded, []string, error)) ([]decoded, []string, error) {
	type result struct {
		out      []decoded
		warnings []string
		err      error
	}
	results := make([]result, n)
	var next atomic.Int64
	var wg sync.WaitGroup
	for range min(runtime.GOMAXPROCS(0), n) {
		wg.Go(func() {
			for i := int(next.Add(1) - 1); i < n; i = int(next.Add(1) - 1) {
				r := &results[i]
				r.out, r.warnings, r.err = decode(i)
			}
		})
	}
	wg.Wait()
	var out []decoded
	var warnings []string
	for _, r := range results {
		if r.err != nil {
			return nil, nil, r.err
		}
		out = append(out, r.out...)
		warnings = append(warnings, r.warnings...)
	}
	return out, warnings, nil
}

// decode reads the supported objects of one stream; name is used in messages. Each document
// is decoded straight into its typed object, as kubectl does, so that a plain scalar such as
// y or on stays a string where the field is a string (YAML 1.1 would read a boolean).
//
// Documents, and the items of a List, decode independently, so they are spread over the CPUs
// (YAML parsing is most of a load); objects, warnings and the first error come out in
// document order all the same.
func decode(r io.Reader, name string) ([]decoded, []string, error) {
	docs, err := splitDocuments(r, name)
	if err != nil {
		return nil, nil, err
	}
	return decodeAll(len(docs), func(i int) ([]decoded, []string, error) { return decodeDocument(docs[i]) })
}

// decodeDocument decodes one document of a stream.
func decodeDocument(doc *document) ([]decoded, []string, error) {
	if len(bytes.TrimSpace(doc.data)) == 0 || isOnlyComments(doc.data) {
		return nil, nil, nil
	}
	// One YAML 1.2 parse gives the kind, the List items and the YAML 1.1 warnings; the
	// typed decode in decodeObject is the only other parse.
	var root yamlv3.Node
	if err := yamlv3.Unmarshal(doc.data, &root); err != nil {
		line, msg := parserLine(err.Error(), doc.line)
		if line == 0 {
			line = doc.line
		}
		return nil, nil, fmt.Errorf("%s: line %d: %s", doc.where, line, msg)
	}
	w := yaml11Booleans(&root, doc)
	top := &root
	if top.Kind == yamlv3.DocumentNode && len(top.Content) > 0 {
		top = top.Content[0]
	}
	kind := topField(top, "kind")
	if !strings.HasSuffix(kind, "List") {
		o, w2, err := decodeObject(doc.data, top, decoded{doc: doc, item: -1, line: doc.line + top.Line - 1})
		return o, append(w, w2...), err
	}
	// Items are split as YAML nodes and re-encoded with their scalar styles intact, so each
	// decodes into its typed object like a document of its own. The tree of a big List costs
	// many times the file's size: each item's part is let go once it is re-encoded.
	items := listItems(top)
	if items == nil {
		return nil, nil, fmt.Errorf("%s: line %d: %s: items: want a list of objects", doc.where, doc.line+top.Line-1, kind)
	}
	o, w2, err := decodeAll(len(items), func(i int) ([]decoded, []string, error) {
		n := items[i]
		items[i] = nil
		at := decoded{doc: doc, item: i, line: doc.line + n.Line - 1}
		text, err := yamlv3.Marshal(n)
		if err != nil {
			return nil, nil, fmt.Errorf("%s: line %d: %w", at.where(), at.line, err)
		}
		return decodeObject(text, n, at)
	})
	return o, append(w, w2...), err
}

// listItems returns the items of a List document's mapping node (the node's own slice), nil
// when they are not a list (no items at all is an empty list).
func listItems(top *yamlv3.Node) []*yamlv3.Node {
	for i := 0; i+1 < len(top.Content); i += 2 {
		if top.Content[i].Value != "items" {
			continue
		}
		v := top.Content[i+1]
		switch {
		case v.Kind == yamlv3.SequenceNode:
			return v.Content
		case v.Kind == yamlv3.ScalarNode && v.Tag == "!!null":
			return []*yamlv3.Node{}
		}
		return nil
	}
	return []*yamlv3.Node{}
}

// yaml11Words are plain scalars that YAML 1.1 (and so kubectl) reads as booleans.
var yaml11Words = map[string]bool{"y": true, "Y": true, "yes": true, "Yes": true, "YES": true,
	"n": true, "N": true, "no": true, "No": true, "NO": true, "on": true, "On": true, "ON": true,
	"off": true, "Off": true, "OFF": true}

// yaml11Booleans warns about plain scalars such as y or on: like kubectl, the decoder reads
// them as booleans, so a label value y becomes "true". Quote them to mean the string.
func yaml11Booleans(root *yamlv3.Node, doc *document) []string {
	var out []string
	var walk func(n *yamlv3.Node)
	walk = func(n *yamlv3.Node) {
		if n.Kind == yamlv3.ScalarNode && n.Style == 0 && n.Tag == "!!str" && yaml11Words[n.Value] {
			out = append(out, fmt.Sprintf("%s: line %d: unquoted %s is read as a boolean (YAML 1.1, as kubectl does); quote it to mean the string", doc.where, doc.line+n.Line-1, n.Value))
		}
		for _, c := range n.Content {
			walk(c)
		}
	}
	walk(root)
	return out
}

func isOnlyComments(b []byte) bool {
	for _, line := range strings.Split(string(b), "\n") {
		if t := strings.TrimSpace(line); t != "" && !strings.HasPrefix(t, "#") && t != "---" {
			return false
		}
	}
	return true
}

// topField returns a top-level scalar field of a mapping node.
func topField(n *yamlv3.Node, key string) string {
	if n.Kind != yamlv3.MappingNode {
		return ""
	}
	for i := 0; i+1 < len(n.Content); i += 2 {
		if n.Content[i].Value == key && n.Content[i+1].Kind == yamlv3.ScalarNode {
			return n.Content[i+1].Value
		}
	}
	return ""
}

// selectsNamespacesByLabel reports whether a policy selects namespaces by a label other than
// their name.
func selectsNamespacesByLabel(np *networkingv1.NetworkPolicy) bool {
	byLabel := func(peers []networkingv1.NetworkPolicyPeer) bool {
		for _, p := range peers {
			if sel := p.NamespaceSelector; sel != nil {
				for k := range sel.MatchLabels {
					if k != NamespaceNameLabel {
						return true
					}
				}
				for _, e := range sel.MatchExpressions {
					if e.Key != NamespaceNameLabel {
						return true
					}
				}
			}
		}
		return false
	}
	for _, r := range np.Spec.Ingress {
		if byLabel(r.From) {
			return true
		}
	}
	for _, r := range np.Spec.Egress {
		if byLabel(r.To) {
			return true
		}
	}
	return false
}

// networkPolicyDocument is a NetworkPolicy as Kubernetes 1.24 to 1.27 wrote it, with a
// status (an alpha field, removed in 1.28, that every dump of those versions holds, mostly as
// status: {}). The status says nothing about enforcement and is ignored.
type networkPolicyDocument struct {
	networkingv1.NetworkPolicy `json:",inline"`
	Status                     json.RawMessage `json:"status,omitempty"`
}

// decodeObject decodes one object: text is its YAML, node its parse, at where it is.
func decodeObject(text []byte, node *yamlv3.Node, at decoded) ([]decoded, []string, error) {
	kind, apiVersion := topField(node, "kind"), topField(node, "apiVersion")
	var obj any
	var np *networkPolicyDocument
	switch {
	case kind == "Namespace" && apiVersion == "v1":
		obj = &corev1.Namespace{}
	case kind == "Pod" && apiVersion == "v1":
		obj = &corev1.Pod{}
	case kind == "NetworkPolicy" && apiVersion == "networking.k8s.io/v1":
		np = &networkPolicyDocument{}
		obj = np
	case kind == "":
		return nil, nil, fmt.Errorf("%s: line %d: kind: required", at.where(), at.line)
	default:
		return nil, []string{at.warn("skipping %s %s (not a Namespace, Pod or NetworkPolicy)", apiVersion, kind)}, nil
	}
	if e := checkFieldNames(node, reflect.TypeOf(obj), ""); e != nil {
		return nil, nil, fmt.Errorf("%s: line %d: %s: %v", at.where(), at.doc.line+e.key.Line-1, kind, e)
	}
	if err := yaml.UnmarshalStrict(text, obj); err != nil {
		return nil, nil, at.decodeError(kind, err)
	}
	at.obj = obj
	if np != nil {
		at.obj = &np.NetworkPolicy
	}
	return []decoded{at}, nil, nil
}

// build adds decoded objects to a new cluster: namespaces first, then pods, then policies,
// each in document order. A name defined twice is an error; so are two live pods with one IP,
// except that a terminating pod gives way to a pod that is not: its network is already gone.
func build(objs []decoded) (*Cluster, []string, error) {
	c := NewCluster()
	var warnings []string
	first := map[string]*decoded{}
	defined := func(d *decoded, key string) error {
		if prev, dup := first[key]; dup {
			return d.fail(fmt.Errorf("%s: already defined at %s: line %d", key, prev.where(), prev.line))
		}
		first[key] = d
		return nil
	}
	for i := range objs {
		d := &objs[i]
		if ns, ok := d.obj.(*corev1.Namespace); ok {
			if err := c.AddNamespace(ns); err != nil {
				return nil, nil, d.fail(err)
			}
			if err := defined(d, "namespace "+ns.Name); err != nil {
				return nil, nil, err
			}
		}
	}
	type endpoint struct {
		pod         *Pod
		d           *decoded
		terminating bool
		skipped     bool
	}
	var eps []endpoint
	byIP := map[netip.Addr]int{}
	for i := range objs {
		d := &objs[i]
		p, ok := d.obj.(*corev1.Pod)
		if !ok {
			continue
		}
		pod, err := PodFromK8s(p)
		if errors.Is(err, ErrNotEndpoint) {
			warnings = append(warnings, d.warn("skipping %v", err))
			continue
		}
		if err != nil {
			return nil, nil, d.fail(err)
		}
		if err := defined(d, "pod "+pod.Key()); err != nil {
			return nil, nil, err
		}
		ep := endpoint{pod: pod, d: d, terminating: p.DeletionTimestamp != nil}
		j, dup := byIP[pod.IP]
		if !dup {
			byIP[pod.IP] = len(eps)
			eps = append(eps, ep)
			continue
		}
		other := &eps[j]
		switch {
		case other.terminating && !ep.terminating:
			other.skipped = true
			warnings = append(warnings, other.d.warn("skipping pod %s: terminating, and its IP %s is held by pod %s (%s: line %d), which is not", other.pod.Key(), pod.IP, pod.Key(), d.where(), d.line))
			byIP[pod.IP] = len(eps)
			eps = append(eps, ep)
		case ep.terminating && !other.terminating:
			warnings = append(warnings, d.warn("skipping pod %s: terminating, and its IP %s is held by pod %s (%s: line %d), which is not", pod.Key(), pod.IP, other.pod.Key(), other.d.where(), other.d.line))
		default:
			return nil, nil, d.fail(&FieldError{Object: "pod " + pod.Key(), Field: "status.podIP",
				Detail: fmt.Sprintf("%s is also the IP of pod %s (%s: line %d); two running pods cannot share an IP", pod.IP, other.pod.Key(), other.d.where(), other.d.line)})
		}
	}
	for _, ep := range eps {
		if !ep.skipped {
			if err := c.addPod(ep.pod); err != nil {
				return nil, nil, ep.d.fail(err)
			}
		}
	}
	var byLabel *decoded
	var byLabelKey string
	for i := range objs {
		d := &objs[i]
		np, ok := d.obj.(*networkingv1.NetworkPolicy)
		if !ok {
			continue
		}
		cp, err := compilePolicy(DefaultPolicy(np))
		if err != nil {
			return nil, nil, d.fail(err)
		}
		if err := defined(d, "networkpolicy "+cp.key); err != nil {
			return nil, nil, err
		}
		for _, w := range cidrWarnings(cp.np) {
			warnings = append(warnings, d.warn("networkpolicy %s: %s", cp.key, w))
		}
		if byLabel == nil && selectsNamespacesByLabel(cp.np) {
			byLabel, byLabelKey = d, cp.key
		}
		c.putPolicy(cp)
	}
	// A dump of pods and policies alone (kubectl get pods,netpol) lacks the namespaces'
	// labels: a namespaceSelector on them would silently match nothing.
	var unlisted []string
	for name := range c.Namespaces {
		if first["namespace "+name] == nil {
			unlisted = append(unlisted, name)
		}
	}
	if byLabel != nil && len(unlisted) > 0 {
		sort.Strings(unlisted)
		which := "namespace " + unlisted[0] + " has"
		if n := len(unlisted); n > 1 {
			which = "namespaces " + strings.Join(unlisted[:min(n, 3)], ", ")
			if n > 3 {
				which += fmt.Sprintf(" and %d more", n-3)
			}
			which += " have"
		}
		warnings = append(warnings, byLabel.warn("networkpolicy %s selects namespaces by label, but %s no Namespace object here: only the %s label is known",
			byLabelKey, which, NamespaceNameLabel))
	}
	return c, warnings, nil
}
