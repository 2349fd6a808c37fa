package policy

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"os"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"

	yamlv3 "go.yaml.in/yaml/v3"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/validation"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"sigs.k8s.io/yaml"
)

// NamespaceNameLabel is the label the API server puts on every namespace.
const NamespaceNameLabel = "kubernetes.io/metadata.name"

// AddNamespace adds a namespace (or replaces its labels), with the kubernetes.io/metadata.name
// label the API server sets.
func (c *Cluster) AddNamespace(ns *corev1.Namespace) error {
	if ns.Name == "" {
		return errors.New("namespace: metadata.name: required")
	}
	if errs := validation.IsDNS1123Label(ns.Name); len(errs) > 0 {
		return fmt.Errorf("namespace %s: metadata.name: %s", ns.Name, strings.Join(errs, "; "))
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

// errNoPodIP marks a pod without status.podIP: it cannot be enforced on and is skipped.
var errNoPodIP = errors.New("status.podIP is empty (pod not running?)")

// PodFromK8s converts a Pod object. The IP comes from status.podIP and must be IPv4; named ports
// from spec.containers[].ports (protocol defaults to TCP).
func PodFromK8s(p *corev1.Pod) (*Pod, error) {
	key := p.Namespace + "/" + p.Name
	if p.Name == "" {
		return nil, fmt.Errorf("pod in namespace %s: metadata.name: required", p.Namespace)
	}
	if errs := validation.IsDNS1123Subdomain(p.Name); len(errs) > 0 {
		return nil, fmt.Errorf("pod %s: metadata.name: %s", key, strings.Join(errs, "; "))
	}
	if errs := validation.IsDNS1123Label(p.Namespace); p.Namespace != "" && len(errs) > 0 {
		return nil, fmt.Errorf("pod %s: metadata.namespace: %s", key, strings.Join(errs, "; "))
	}
	if p.Status.PodIP == "" {
		return nil, fmt.Errorf("pod %s: %w", key, errNoPodIP)
	}
	ip, err := netip.ParseAddr(p.Status.PodIP)
	if err != nil {
		return nil, fmt.Errorf("pod %s: status.podIP: invalid address %q", key, p.Status.PodIP)
	}
	if !ip.Is4() {
		return nil, fmt.Errorf("pod %s: status.podIP: %s is not IPv4 (the datapath is IPv4-only)", key, ip)
	}
	out := &Pod{Namespace: p.Namespace, Name: p.Name, Labels: copyLabels(p.Labels), IP: ip}
	if out.Namespace == "" {
		out.Namespace = "default"
	}
	for i, ctr := range p.Spec.Containers {
		for j, cp := range ctr.Ports {
			proto := ProtoTCP
			if cp.Protocol != "" {
				if proto, err = ParseProtocol(string(cp.Protocol)); err != nil || proto == ProtoICMP {
					return nil, fmt.Errorf("pod %s: spec.containers[%d].ports[%d].protocol: unsupported %q", key, i, j, cp.Protocol)
				}
			}
			if cp.ContainerPort < 1 || cp.ContainerPort > 65535 {
				return nil, fmt.Errorf("pod %s: spec.containers[%d].ports[%d].containerPort: %d out of range", key, i, j, cp.ContainerPort)
			}
			out.Ports = append(out.Ports, ContainerPort{Name: cp.Name, Protocol: proto, Port: uint16(cp.ContainerPort)})
		}
	}
	return out, nil
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
// or `kubectl get -o yaml` List documents). Other kinds, and pods without an IP, are skipped
// with a one-line warning. Any malformed object fails the whole load: nothing is returned.
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
	return c, append(warnings, w...), err
}

// decoded is one object read from a file, with where it came from.
type decoded struct {
	obj   any // *corev1.Namespace, *corev1.Pod or *networkingv1.NetworkPolicy
	where string
}

// decode reads the supported objects of one stream; name is used in messages. Each document
// is decoded straight into its typed object, as kubectl does, so that a plain scalar such as
// y or on stays a string where the field is a string (YAML 1.1 would read a boolean).
//
// Documents decode independently, so they are spread over the CPUs (YAML parsing is most of a
// load); objects, warnings and the first error come out in document order all the same.
func decode(r io.Reader, name string) ([]decoded, []string, error) {
	rd := utilyaml.NewYAMLReader(bufio.NewReader(r))
	var docs [][]byte
	var readErr error
	for {
		raw, err := rd.Read()
		if err == io.EOF {
			break
		}
		if err != nil {
			readErr = fmt.Errorf("%s: document %d: %w", name, len(docs), err)
			break
		}
		docs = append(docs, raw)
	}
	type result struct {
		out      []decoded
		warnings []string
		err      error
	}
	results := make([]result, len(docs))
	var next atomic.Int64
	var wg sync.WaitGroup
	for range min(runtime.GOMAXPROCS(0), len(docs)) {
		wg.Go(func() {
			for i := int(next.Add(1) - 1); i < len(docs); i = int(next.Add(1) - 1) {
				r := &results[i]
				r.out, r.warnings, r.err = decodeDocument(docs[i], fmt.Sprintf("%s: document %d", name, i))
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
	if readErr != nil {
		return nil, nil, readErr
	}
	return out, warnings, nil
}

// decodeDocument decodes one document of a stream; where names it in messages.
func decodeDocument(raw []byte, where string) ([]decoded, []string, error) {
	if len(bytes.TrimSpace(raw)) == 0 || isOnlyComments(raw) {
		return nil, nil, nil
	}
	// One YAML 1.2 parse gives the kind, the List items and the YAML 1.1 warnings; the
	// typed decode in decodeObject is the only other parse.
	var root yamlv3.Node
	if err := yamlv3.Unmarshal(raw, &root); err != nil {
		return nil, nil, fmt.Errorf("%s: %w", where, err)
	}
	o, w, err := decodeObject(raw, &root, where)
	if err != nil {
		return nil, nil, err
	}
	return o, append(w, yaml11Booleans(&root, where)...), nil
}

// yaml11Words are plain scalars that YAML 1.1 (and so kubectl) reads as booleans.
var yaml11Words = map[string]bool{"y": true, "Y": true, "yes": true, "Yes": true, "YES": true,
	"n": true, "N": true, "no": true, "No": true, "NO": true, "on": true, "On": true, "ON": true,
	"off": true, "Off": true, "OFF": true}

// yaml11Booleans warns about plain scalars such as y or on: like kubectl, the decoder reads
// them as booleans, so a label value y becomes "true". Quote them to mean the string.
func yaml11Booleans(root *yamlv3.Node, where string) []string {
	var out []string
	var walk func(n *yamlv3.Node)
	walk = func(n *yamlv3.Node) {
		if n.Kind == yamlv3.ScalarNode && n.Style == 0 && n.Tag == "!!str" && yaml11Words[n.Value] {
			out = append(out, fmt.Sprintf("%s: line %d: unquoted %s is read as a boolean (YAML 1.1, as kubectl does); quote it to mean the string", where, n.Line, n.Value))
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

// topField returns a top-level scalar field of a YAML document node.
func topField(n *yamlv3.Node, key string) string {
	if n.Kind == yamlv3.DocumentNode && len(n.Content) > 0 {
		n = n.Content[0]
	}
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

// decodeObject decodes one document (or List item): doc is its text and node its parse.
func decodeObject(doc []byte, node *yamlv3.Node, where string) ([]decoded, []string, error) {
	tm := metav1.TypeMeta{Kind: topField(node, "kind"), APIVersion: topField(node, "apiVersion")}
	strict := func(into any) error {
		if err := yaml.UnmarshalStrict(doc, into); err != nil {
			return fmt.Errorf("%s (%s): %w", where, tm.Kind, err)
		}
		return nil
	}
	switch {
	case tm.Kind == "Namespace" && tm.APIVersion == "v1":
		var ns corev1.Namespace
		if err := strict(&ns); err != nil {
			return nil, nil, err
		}
		return []decoded{{&ns, where}}, nil, nil
	case tm.Kind == "Pod" && tm.APIVersion == "v1":
		var p corev1.Pod
		if err := strict(&p); err != nil {
			return nil, nil, err
		}
		return []decoded{{&p, where}}, nil, nil
	case tm.Kind == "NetworkPolicy" && tm.APIVersion == "networking.k8s.io/v1":
		var np networkingv1.NetworkPolicy
		if err := strict(&np); err != nil {
			return nil, nil, err
		}
		return []decoded{{&np, where}}, nil, nil
	case strings.HasSuffix(tm.Kind, "List"):
		// Items are split as YAML nodes and re-encoded with their scalar styles intact, so
		// each decodes into its typed object like a document of its own.
		var list struct {
			Items []yamlv3.Node `yaml:"items"`
		}
		if err := node.Decode(&list); err != nil {
			return nil, nil, fmt.Errorf("%s (%s): %w", where, tm.Kind, err)
		}
		var out []decoded
		var warnings []string
		for i := range list.Items {
			item, err := yamlv3.Marshal(&list.Items[i])
			if err != nil {
				return nil, nil, fmt.Errorf("%s: items[%d]: %w", where, i, err)
			}
			o, w, err := decodeObject(item, &list.Items[i], fmt.Sprintf("%s: items[%d] (line %d)", where, i, list.Items[i].Line))
			if err != nil {
				return nil, nil, err
			}
			out = append(out, o...)
			warnings = append(warnings, w...)
		}
		return out, warnings, nil
	case tm.Kind == "":
		return nil, nil, fmt.Errorf("%s: kind: required", where)
	}
	return nil, []string{fmt.Sprintf("%s: skipping %s %s (not a Namespace, Pod or NetworkPolicy)", where, tm.APIVersion, tm.Kind)}, nil
}

// build adds decoded objects to a new cluster: namespaces first, then pods, then policies.
func build(objs []decoded) (*Cluster, []string, error) {
	c := NewCluster()
	var warnings []string
	for pass := 0; pass < 3; pass++ {
		for _, d := range objs {
			var err error
			switch o := d.obj.(type) {
			case *corev1.Namespace:
				if pass == 0 {
					err = c.AddNamespace(o)
				}
			case *corev1.Pod:
				if pass == 1 {
					if o.Spec.HostNetwork {
						warnings = append(warnings, fmt.Sprintf("%s: skipping pod %s/%s (hostNetwork)", d.where, o.Namespace, o.Name))
						continue
					}
					err = c.AddPod(o)
					if errors.Is(err, errNoPodIP) {
						warnings = append(warnings, fmt.Sprintf("%s: skipping %v", d.where, err))
						err = nil
					}
				}
			case *networkingv1.NetworkPolicy:
				if pass == 2 {
					err = c.AddPolicy(o)
				}
			}
			if err != nil {
				return nil, nil, fmt.Errorf("%s: %w", d.where, err)
			}
		}
	}
	return c, warnings, nil
}

// decodeBytes is Decode on a byte slice.
func decodeBytes(b []byte, name string) ([]decoded, []string, error) {
	return decode(bytes.NewReader(b), name)
}

// LoadBytes builds a cluster from one in-memory YAML stream.
func LoadBytes(b []byte, name string) (*Cluster, []string, error) {
	objs, w, err := decodeBytes(b, name)
	if err != nil {
		return nil, nil, err
	}
	c, w2, err := build(objs)
	return c, append(w, w2...), err
}
