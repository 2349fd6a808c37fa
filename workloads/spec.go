package workloads

import (
	"embed"
	"errors"
	"fmt"
	"os"
	"path"
	"sort"
	"strings"

	"k8s.io/apimachinery/pkg/util/validation"
	"sigs.k8s.io/yaml"

	"netpolbench/policy"
)

// MaxPods is how many pod addresses 198.18.0.0/15 holds once its network and broadcast
// addresses are skipped: the most pods a cluster can have live at once.
const MaxPods = 1<<17 - 2

// maxLabelSets is the size of the cluster identity range: every label set is one identity.
const maxLabelSets = int(policy.IdentityClusterMax-policy.IdentityClusterMin) + 1

// Spec describes a synthetic cluster. Every field has a usable default except Pods and
// LabelSets.Count; see Default for a complete example.
type Spec struct {
	// Name is informational (the preset's name).
	Name string `json:"name,omitempty"`
	// Seed fixes every random choice. The same Spec and Seed give the same cluster, byte for byte.
	Seed uint64 `json:"seed"`
	// Namespaces are spread over the label sets: label set j lives in namespace j mod Count.
	Namespaces NamespaceSpec `json:"namespaces"`
	// Pods is the number of pods, 1..131,070 (required).
	Pods int `json:"pods"`
	// LabelSets are the distinct pod label sets; each becomes one security identity.
	LabelSets LabelSetSpec `json:"labelSets"`
	// Ports are the container ports of every label set's pods.
	Ports []PortSpec `json:"ports,omitempty"`
	// ExternalHosts is how many hosts of 203.0.113.0/24 the probes use, 0..254 (default 16).
	ExternalHosts int `json:"externalHosts,omitempty"`
	// Policies are the NetworkPolicy templates, generated in this order.
	Policies []PolicyTemplate `json:"policies,omitempty"`
}

// NamespaceSpec describes the namespaces.
type NamespaceSpec struct {
	// Count is the number of namespaces, 1..10,000 (default 1).
	Count int `json:"count"`
	// Prefix names the namespaces Prefix-01, Prefix-02, ... (default "ns").
	Prefix string `json:"prefix,omitempty"`
	// Labels are label templates: each namespace draws one value per key.
	// kubernetes.io/metadata.name is always set, as the API server does.
	Labels []LabelTemplate `json:"labels,omitempty"`
}

// LabelTemplate is a label key and the values it draws from, uniformly.
type LabelTemplate struct {
	Key    string   `json:"key"`
	Values []string `json:"values"`
}

// Distribution names how pods spread over label sets.
const (
	Uniform = "uniform"
	Zipf    = "zipf"
)

// LabelSetSpec describes the distinct pod label sets.
type LabelSetSpec struct {
	// Count is the number of distinct label sets, 1..min(pods, 65,280) (required). Every label
	// set gets at least one pod.
	Count int `json:"count"`
	// Distribution is "uniform" (default) or "zipf".
	Distribution string `json:"distribution,omitempty"`
	// Exponent is Zipf's s, > 1 (default 1.1); the k-th most popular label set gets pods in
	// proportion to 1/k^s.
	Exponent float64 `json:"exponent,omitempty"`
	// Labels are extra label templates; every label set also has a unique app=app-N label.
	Labels []LabelTemplate `json:"labels,omitempty"`
}

// PortSpec is a container port that label sets declare.
type PortSpec struct {
	// Name is optional; named ports are what policies' named-port rules resolve.
	Name string `json:"name,omitempty"`
	// Protocol is TCP (default), UDP or SCTP.
	Protocol string `json:"protocol,omitempty"`
	// Port is the container port, 1..65535.
	Port int32 `json:"port"`
	// Alternatives are other numbers a label set may use for the same port, so one named
	// port resolves to different numbers in different label sets.
	Alternatives []int32 `json:"alternatives,omitempty"`
	// Probability is the share of label sets that declare the port, 0..1 (default 1).
	Probability *float64 `json:"probability,omitempty"`
}

// Policy template kinds.
const (
	KindDefaultDeny        = "default-deny"
	KindAllowFromApp       = "allow-from-app"
	KindAllowFromNamespace = "allow-from-namespace"
	KindPortRange          = "port-range"
	KindNamedPort          = "named-port"
	KindIPBlock            = "ipblock"
	KindEgressCIDR         = "egress-cidr"
	KindAllowAll           = "allow-all"
)

var policyKinds = []string{KindDefaultDeny, KindAllowFromApp, KindAllowFromNamespace, KindPortRange,
	KindNamedPort, KindIPBlock, KindEgressCIDR, KindAllowAll}

// PolicyTemplate generates Count NetworkPolicies of one kind:
//
//   - default-deny: podSelector {} in a namespace (each namespace at most once until all have
//     one), policyTypes as given (default Ingress).
//   - allow-from-app: ingress to one label set (by app, sometimes by a shared label) from
//     Peers podSelector peers of the same namespace; a share Expressions of them use
//     matchExpressions (In, NotIn, Exists).
//   - allow-from-namespace: ingress from Peers namespaceSelector peers; a share
//     WithPodSelector of them also carry a podSelector (both must match).
//   - port-range: ingress on a port..endPort range around a container port.
//   - named-port: ingress on a named container port; a share Egress are egress policies to a
//     named port of the peer pods instead.
//   - ipblock: ingress from an ipBlock with except, external (203.0.113.0/24) or covering pod
//     IPs (198.18.0.0/15).
//   - egress-cidr: egress to ipBlocks (external or pod ranges) plus DNS.
//   - allow-all: an empty rule (everything) for ingress, and egress if policyTypes has it.
//
// Ports is the number of port entries per rule (0: no ports, every port and protocol);
// the default is 1 for allow-from-app and allow-from-namespace and 0 for ipblock.
type PolicyTemplate struct {
	Kind            string   `json:"kind"`
	Count           int      `json:"count"`
	PolicyTypes     []string `json:"policyTypes,omitempty"`
	Peers           int      `json:"peers,omitempty"`
	Ports           *int     `json:"ports,omitempty"`
	Expressions     float64  `json:"expressions,omitempty"`
	WithPodSelector float64  `json:"withPodSelector,omitempty"`
	Egress          float64  `json:"egress,omitempty"`
}

//go:embed specs/*.yaml
var specFS embed.FS

// Presets returns the names of the embedded specs, sorted.
func Presets() []string {
	ents, err := specFS.ReadDir("specs")
	if err != nil {
		panic(err) // the embedded directory is fixed at build time
	}
	var names []string
	for _, e := range ents {
		names = append(names, strings.TrimSuffix(e.Name(), ".yaml"))
	}
	sort.Strings(names)
	return names
}

// Preset returns an embedded spec by name (see Presets): small (~100 pods), default (~1,000),
// large (10,000) and huge (100,000).
func Preset(name string) (Spec, error) {
	data, err := specFS.ReadFile(path.Join("specs", name+".yaml"))
	if err != nil {
		return Spec{}, fmt.Errorf("load preset %q: no such preset (have %s)", name, strings.Join(Presets(), ", "))
	}
	s, err := ParseSpec(data)
	if err != nil {
		return Spec{}, fmt.Errorf("load preset %q: %w", name, err)
	}
	return s, nil
}

// Default returns the embedded default spec: about 1,000 pods in 10 namespaces.
func Default() Spec {
	s, err := Preset("default")
	if err != nil {
		panic(err) // covered by tests: the embedded preset is valid
	}
	return s
}

// ParseSpec reads a spec from YAML (or JSON), rejecting unknown fields, and validates it.
func ParseSpec(data []byte) (Spec, error) {
	var s Spec
	if err := yaml.UnmarshalStrict(data, &s); err != nil {
		return Spec{}, fmt.Errorf("parse spec: %w", err)
	}
	if err := s.Validate(); err != nil {
		return Spec{}, err
	}
	return s, nil
}

// LoadSpec reads and validates a spec file.
func LoadSpec(file string) (Spec, error) {
	data, err := os.ReadFile(file)
	if err != nil {
		return Spec{}, fmt.Errorf("load spec: %w", err)
	}
	s, err := ParseSpec(data)
	if err != nil {
		return Spec{}, fmt.Errorf("%s: %w", file, err)
	}
	return s, nil
}

// WithPods returns the spec scaled to n pods: label sets and policy counts scale in proportion
// (at least 1 label set, namespaces unchanged), so a preset keeps its shape at another size.
func (s Spec) WithPods(n int) Spec {
	if s.Pods <= 0 || n <= 0 {
		s.Pods = n
		return s
	}
	f := float64(n) / float64(s.Pods)
	s.LabelSets.Count = max(1, min(n, int(float64(s.LabelSets.Count)*f+0.5)))
	pols := make([]PolicyTemplate, len(s.Policies))
	for i, t := range s.Policies {
		if t.Kind != KindDefaultDeny && t.Count > 0 {
			t.Count = max(1, int(float64(t.Count)*f+0.5))
		}
		pols[i] = t
	}
	s.Policies = pols
	s.Pods = n
	return s
}

// Validate checks the spec and reports every problem at once, each naming its field.
func (s *Spec) Validate() error {
	var errs []error
	bad := func(field, format string, a ...any) {
		errs = append(errs, fmt.Errorf("%s: %s", field, fmt.Sprintf(format, a...)))
	}
	if s.Pods < 1 || s.Pods > MaxPods {
		bad("pods", "must be 1..%d (pod IPs come from 198.18.0.0/15), got %d", MaxPods, s.Pods)
	}
	if s.Namespaces.Count < 0 || s.Namespaces.Count > 10000 {
		bad("namespaces.count", "must be 1..10000, got %d", s.Namespaces.Count)
	}
	if p := s.Namespaces.Prefix; p != "" {
		if msgs := validation.IsDNS1123Label(p + "-1"); len(msgs) > 0 {
			bad("namespaces.prefix", "%q does not make a valid namespace name: %s", p, strings.Join(msgs, "; "))
		}
	}
	validateLabels("namespaces.labels", s.Namespaces.Labels, bad)
	ls := &s.LabelSets
	if ls.Count < 1 || ls.Count > maxLabelSets {
		bad("labelSets.count", "must be 1..%d (one identity each), got %d", maxLabelSets, ls.Count)
	} else if s.Pods >= 1 && ls.Count > s.Pods {
		bad("labelSets.count", "%d label sets need at least as many pods, got %d", ls.Count, s.Pods)
	}
	switch ls.Distribution {
	case "", Uniform:
	case Zipf:
		if ls.Exponent != 0 && ls.Exponent <= 1 {
			bad("labelSets.exponent", "must be > 1 for zipf, got %g", ls.Exponent)
		}
	default:
		bad("labelSets.distribution", "must be %q or %q, got %q", Uniform, Zipf, ls.Distribution)
	}
	validateLabels("labelSets.labels", ls.Labels, bad)
	names := map[string]bool{}
	numbers := map[string]bool{}
	for i, p := range s.Ports {
		f := fmt.Sprintf("ports[%d]", i)
		if p.Name != "" {
			if msgs := validation.IsValidPortName(p.Name); len(msgs) > 0 {
				bad(f+".name", "%q: %s", p.Name, strings.Join(msgs, "; "))
			}
			if names[p.Name] {
				bad(f+".name", "%q declared twice", p.Name)
			}
			names[p.Name] = true
		}
		proto := p.Protocol
		if proto == "" {
			proto = "TCP"
		}
		if proto != "TCP" && proto != "UDP" && proto != "SCTP" {
			bad(f+".protocol", "must be TCP, UDP or SCTP, got %q", p.Protocol)
		}
		for _, n := range append([]int32{p.Port}, p.Alternatives...) {
			if n < 1 || n > 65535 {
				bad(f+".port", "must be 1..65535, got %d", n)
				continue
			}
			k := fmt.Sprintf("%s/%d", proto, n)
			if numbers[k] {
				bad(f+".port", "%s declared twice", k)
			}
			numbers[k] = true
		}
		if p.Probability != nil && (*p.Probability < 0 || *p.Probability > 1) {
			bad(f+".probability", "must be 0..1, got %g", *p.Probability)
		}
	}
	if s.ExternalHosts < 0 || s.ExternalHosts > 254 {
		bad("externalHosts", "must be 0..254 (hosts of 203.0.113.0/24), got %d", s.ExternalHosts)
	}
	for i, t := range s.Policies {
		f := fmt.Sprintf("policies[%d]", i)
		known := false
		for _, k := range policyKinds {
			known = known || k == t.Kind
		}
		if !known {
			bad(f+".kind", "unknown kind %q (want one of %s)", t.Kind, strings.Join(policyKinds, ", "))
		}
		if t.Count < 0 {
			bad(f+".count", "must be >= 0, got %d", t.Count)
		}
		for _, pt := range t.PolicyTypes {
			if pt != "Ingress" && pt != "Egress" {
				bad(f+".policyTypes", "must be Ingress or Egress, got %q", pt)
			}
		}
		if t.Peers < 0 || t.Peers > 16 {
			bad(f+".peers", "must be 0..16, got %d", t.Peers)
		}
		if t.Ports != nil && (*t.Ports < 0 || *t.Ports > 8) {
			bad(f+".ports", "must be 0..8, got %d", *t.Ports)
		}
		for _, fr := range []struct {
			name string
			v    float64
		}{{"expressions", t.Expressions}, {"withPodSelector", t.WithPodSelector}, {"egress", t.Egress}} {
			if fr.v < 0 || fr.v > 1 {
				bad(f+"."+fr.name, "must be a share 0..1, got %g", fr.v)
			}
		}
		if t.Kind == KindNamedPort && t.Count > 0 && len(names) == 0 {
			bad(f+".kind", "named-port policies need at least one named entry in ports")
		}
	}
	if len(errs) > 0 {
		return fmt.Errorf("invalid spec: %w", errors.Join(errs...))
	}
	return nil
}

func validateLabels(field string, ts []LabelTemplate, bad func(field, format string, a ...any)) {
	seen := map[string]bool{}
	for i, t := range ts {
		f := fmt.Sprintf("%s[%d]", field, i)
		if msgs := validation.IsQualifiedName(t.Key); len(msgs) > 0 {
			bad(f+".key", "%q: %s", t.Key, strings.Join(msgs, "; "))
		}
		if t.Key == "app" || t.Key == "kubernetes.io/metadata.name" {
			bad(f+".key", "%q is set by the generator", t.Key)
		}
		if seen[t.Key] {
			bad(f+".key", "%q declared twice", t.Key)
		}
		seen[t.Key] = true
		if len(t.Values) == 0 {
			bad(f+".values", "need at least one value for %q", t.Key)
		}
		for _, v := range t.Values {
			if msgs := validation.IsValidLabelValue(v); len(msgs) > 0 {
				bad(f+".values", "%q: %s", v, strings.Join(msgs, "; "))
			}
		}
	}
}
