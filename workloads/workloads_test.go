package workloads

import (
	"bytes"
	"crypto/sha256"
	"flag"
	"fmt"
	"net/netip"
	"os"
	"reflect"
	"slices"
	"strings"
	"testing"

	networkingv1 "k8s.io/api/networking/v1"
	"k8s.io/apimachinery/pkg/util/validation"
	"sigs.k8s.io/yaml"

	"netpolbench/policy"
)

func mustPreset(t testing.TB, name string) Spec {
	t.Helper()
	s, err := Preset(name)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func mustGenerate(t testing.TB, s Spec) *Generated {
	t.Helper()
	g, err := Generate(s)
	if err != nil {
		t.Fatalf("generate %s: %v", s.Name, err)
	}
	return g
}

func mustYAML(t testing.TB, g *Generated) []byte {
	t.Helper()
	var buf bytes.Buffer
	if err := WriteYAML(&buf, g); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func TestPresetsGenerateWhatTheySpecify(t *testing.T) {
	for _, name := range Presets() {
		t.Run(name, func(t *testing.T) {
			if name == "huge" && testing.Short() {
				t.Skip("huge preset skipped in -short mode")
			}
			s := mustPreset(t, name)
			g := mustGenerate(t, s)
			wantPolicies := 0
			for _, pt := range s.Policies {
				wantPolicies += pt.Count
			}
			if len(g.Pods) != s.Pods || len(g.Cluster.Pods) != s.Pods {
				t.Errorf("pods: %d objects, %d in cluster, want %d", len(g.Pods), len(g.Cluster.Pods), s.Pods)
			}
			if len(g.Namespaces) != s.Namespaces.Count || len(g.Cluster.Namespaces) != s.Namespaces.Count {
				t.Errorf("namespaces: %d objects, %d in cluster, want %d", len(g.Namespaces), len(g.Cluster.Namespaces), s.Namespaces.Count)
			}
			if len(g.Policies) != wantPolicies || len(g.Cluster.Policies) != wantPolicies {
				t.Errorf("policies: %d objects, %d in cluster, want %d", len(g.Policies), len(g.Cluster.Policies), wantPolicies)
			}
			distinct := map[string]bool{}
			for _, p := range g.Cluster.Pods {
				distinct[p.Namespace+"|"+labelString(p.Labels)] = true
			}
			if len(distinct) != s.LabelSets.Count {
				t.Errorf("distinct pod label sets: %d, want %d", len(distinct), s.LabelSets.Count)
			}
		})
	}
}

func labelString(m map[string]string) string {
	var kv []string
	for k, v := range m {
		kv = append(kv, k+"="+v)
	}
	slices.Sort(kv)
	return strings.Join(kv, ",")
}

func TestSameSeedGivesIdenticalYAML(t *testing.T) {
	for _, name := range []string{"small", "default"} {
		s := mustPreset(t, name)
		a, b := mustYAML(t, mustGenerate(t, s)), mustYAML(t, mustGenerate(t, s))
		if !bytes.Equal(a, b) {
			t.Errorf("%s: two generations with seed %d differ", name, s.Seed)
		}
	}
}

func TestDifferentSeedGivesDifferentCluster(t *testing.T) {
	s := mustPreset(t, "default")
	a := mustYAML(t, mustGenerate(t, s))
	s.Seed++
	b := mustYAML(t, mustGenerate(t, s))
	if bytes.Equal(a, b) {
		t.Error("seeds 1 and 2 gave the same YAML")
	}
}

func TestChangingPoliciesDoesNotMovePods(t *testing.T) {
	s := mustPreset(t, "small")
	a := mustGenerate(t, s)
	s.Policies = s.Policies[:1]
	b := mustGenerate(t, s)
	if !reflect.DeepEqual(a.Pods, b.Pods) {
		t.Error("dropping policy templates changed the pods: stages share a random stream")
	}
}

func TestSpecValidationNamesTheField(t *testing.T) {
	ok := func() Spec { return mustPreset(t, "small") }
	half := 1.5
	tests := []struct {
		name   string
		mutate func(*Spec)
		want   string
	}{
		{"no pods", func(s *Spec) { s.Pods = 0 }, "pods: must be 1..131070"},
		{"more pods than the pod range holds", func(s *Spec) { s.Pods = MaxPods + 1; s.LabelSets.Count = 1 }, "pods: must be 1..131070"},
		{"more label sets than pods", func(s *Spec) { s.LabelSets.Count = s.Pods + 1 }, "labelSets.count: 101 label sets need at least as many pods"},
		{"more label sets than identities", func(s *Spec) { s.Pods = 100000; s.LabelSets.Count = 70000 }, "labelSets.count: must be 1..65280"},
		{"unknown distribution", func(s *Spec) { s.LabelSets.Distribution = "pareto" }, `labelSets.distribution: must be "uniform" or "zipf"`},
		{"zipf exponent at most one", func(s *Spec) { s.LabelSets.Exponent = 1 }, "labelSets.exponent: must be > 1"},
		{"invalid label value", func(s *Spec) { s.LabelSets.Labels[0].Values = []string{"has space"} }, "labelSets.labels[0].values"},
		{"reserved label key", func(s *Spec) { s.Namespaces.Labels[0].Key = "app" }, `namespaces.labels[0].key: "app" is set by the generator`},
		{"port out of range", func(s *Spec) { s.Ports[0].Port = 70000 }, "ports[0].port: must be 1..65535"},
		{"duplicate port number", func(s *Spec) { s.Ports[1].Port = 53; s.Ports[2].Port = 53; s.Ports[2].Protocol = "UDP" }, "ports[2].port: UDP/53 declared twice"},
		{"bad port name", func(s *Spec) { s.Ports[0].Name = "HTTP_ALT_TOO_LONG" }, "ports[0].name"},
		{"unknown protocol", func(s *Spec) { s.Ports[0].Protocol = "ICMP" }, "ports[0].protocol: must be TCP, UDP or SCTP"},
		{"probability above one", func(s *Spec) { s.Ports[0].Probability = &half }, "ports[0].probability: must be 0..1"},
		{"unknown policy kind", func(s *Spec) { s.Policies[0].Kind = "deny-all" }, `policies[0].kind: unknown kind "deny-all"`},
		{"bad policy type", func(s *Spec) { s.Policies[0].PolicyTypes = []string{"ingress"} }, "policies[0].policyTypes: must be Ingress or Egress"},
		{"share above one", func(s *Spec) { s.Policies[2].Expressions = 2 }, "policies[2].expressions: must be a share 0..1"},
		{"named ports without names", func(s *Spec) {
			for i := range s.Ports {
				s.Ports[i].Name = ""
			}
		}, "named-port policies need at least one named entry"},
		{"too many external hosts", func(s *Spec) { s.ExternalHosts = 300 }, "externalHosts: must be 0..254"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := ok()
			// Label templates and ports are shared slices of the preset: copy before mutating.
			s.Namespaces.Labels = slices.Clone(s.Namespaces.Labels)
			s.LabelSets.Labels = slices.Clone(s.LabelSets.Labels)
			s.Ports = slices.Clone(s.Ports)
			s.Policies = slices.Clone(s.Policies)
			tc.mutate(&s)
			err := s.Validate()
			if err == nil {
				t.Fatalf("Validate accepted the spec, want error containing %q", tc.want)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %q does not contain %q", err, tc.want)
			}
			if _, gerr := Generate(s); gerr == nil {
				t.Error("Generate accepted the invalid spec")
			}
		})
	}
}

func TestParseSpecRejectsUnknownFields(t *testing.T) {
	_, err := ParseSpec([]byte("pods: 10\nlabelSets: {count: 2}\npod: 3\n"))
	if err == nil || !strings.Contains(err.Error(), `unknown field "pod"`) {
		t.Errorf("got %v, want an unknown field error", err)
	}
}

func TestUnknownPresetListsTheKnownOnes(t *testing.T) {
	_, err := Preset("gigantic")
	if err == nil || !strings.Contains(err.Error(), "small") {
		t.Errorf("got %v, want an error listing the presets", err)
	}
}

// TestZipfConcentratesPodsOnFewLabelSets compares the two distributions' shape: under Zipf
// the most popular label set holds a large share and the top tenth most pods; under uniform
// no label set is far above the mean.
func TestZipfConcentratesPodsOnFewLabelSets(t *testing.T) {
	base := Spec{Seed: 7, Pods: 20000, Namespaces: NamespaceSpec{Count: 5}, LabelSets: LabelSetSpec{Count: 200}}
	shares := func(dist string, exp float64) (top, topTenth float64) {
		s := base
		s.LabelSets.Distribution, s.LabelSets.Exponent = dist, exp
		g := mustGenerate(t, s)
		counts := make([]int, len(g.LabelSets))
		for i, ls := range g.LabelSets {
			counts[i] = ls.Pods
		}
		slices.Sort(counts)
		slices.Reverse(counts)
		sum := 0
		for _, c := range counts[:len(counts)/10] {
			sum += c
		}
		return float64(counts[0]) / float64(s.Pods), float64(sum) / float64(s.Pods)
	}
	uTop, uTenth := shares(Uniform, 0)
	zTop, zTenth := shares(Zipf, 1.2)
	mean := 1.0 / 200
	if uTop > 2*mean {
		t.Errorf("uniform: the biggest label set holds %.3f of the pods, want under 2x the mean %.3f", uTop, mean)
	}
	if uTenth > 0.15 {
		t.Errorf("uniform: the top 10%% of label sets hold %.2f of the pods, want about 0.10", uTenth)
	}
	if zTop < 0.15 {
		t.Errorf("zipf 1.2: the biggest label set holds %.3f of the pods, want > 0.15", zTop)
	}
	if zTenth < 0.6 {
		t.Errorf("zipf 1.2: the top 10%% of label sets hold %.2f of the pods, want > 0.6", zTenth)
	}
	_, steeper := shares(Zipf, 2)
	if steeper <= zTenth {
		t.Errorf("zipf 2 concentrates less (%.2f) than zipf 1.2 (%.2f)", steeper, zTenth)
	}
}

func TestPodAddressesStayInsideThePodRange(t *testing.T) {
	first, last := podAddr(0), podAddr(MaxPods-1)
	if first != netip.MustParseAddr("198.18.0.1") || last != netip.MustParseAddr("198.19.255.254") {
		t.Fatalf("pod range is %s..%s, want 198.18.0.1..198.19.255.254", first, last)
	}
	for _, i := range []int{0, 1, 255, 65535, MaxPods - 1} {
		if off, ok := podOffset(podAddr(i)); !ok || off != i {
			t.Errorf("podOffset(podAddr(%d)) = %d, %v", i, off, ok)
		}
	}
	for _, a := range []string{"198.18.0.0", "198.19.255.255", "198.20.0.1", "10.0.0.1"} {
		if _, ok := podOffset(netip.MustParseAddr(a)); ok {
			t.Errorf("%s counted as a usable pod address", a)
		}
	}
	pods := MaxPods
	if testing.Short() {
		pods = 5000
	}
	g := mustGenerate(t, Spec{Seed: 3, Pods: pods, LabelSets: LabelSetSpec{Count: 50}})
	seen := make(map[netip.Addr]bool, pods)
	for _, p := range g.Cluster.Pods {
		if _, ok := podOffset(p.IP); !ok {
			t.Errorf("pod %s has address %s outside the usable pod range", p.Key(), p.IP)
		}
		if seen[p.IP] {
			t.Errorf("address %s handed out twice", p.IP)
		}
		seen[p.IP] = true
	}
	for _, a := range g.External {
		if !ExternalRange.Contains(a) || a.As4()[3] == 0 || a.As4()[3] == 255 {
			t.Errorf("external host %s outside 203.0.113.1..254", a)
		}
	}
	if pods == MaxPods {
		c, err := NewChurn(ChurnSpec{Mix: ChurnMix{PodAdd: 1}, Count: 10}, g, 1)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := c.NextOf(ChurnPodAdd); err == nil {
			t.Error("a pod add was possible with every pod address in use")
		}
	}
}

// clusterEqual compares what the policy package keeps of a cluster.
func clusterEqual(t *testing.T, got, want *policy.Cluster) {
	t.Helper()
	if !reflect.DeepEqual(got.Namespaces, want.Namespaces) {
		t.Errorf("namespaces differ after the round trip")
	}
	if len(got.Pods) != len(want.Pods) {
		t.Errorf("pods: %d after the round trip, want %d", len(got.Pods), len(want.Pods))
	}
	for k, p := range want.Pods {
		if !reflect.DeepEqual(got.Pods[k], p) {
			t.Errorf("pod %s: got %+v, want %+v", k, got.Pods[k], p)
		}
	}
	if len(got.Policies) != len(want.Policies) {
		t.Errorf("policies: %d after the round trip, want %d", len(got.Policies), len(want.Policies))
	}
	for k, np := range want.Policies {
		if !reflect.DeepEqual(got.Policies[k].Spec, np.Spec) {
			t.Errorf("policy %s differs after the round trip:\ngot  %+v\nwant %+v", k, got.Policies[k].Spec, np.Spec)
		}
	}
}

func TestYAMLRoundTripThroughLoadGivesTheSameCluster(t *testing.T) {
	for _, name := range []string{"small", "default"} {
		t.Run(name, func(t *testing.T) {
			g := mustGenerate(t, mustPreset(t, name))
			got, warnings, err := policy.LoadBytes(mustYAML(t, g), name+".yaml")
			if err != nil {
				t.Fatal(err)
			}
			if len(warnings) > 0 {
				t.Errorf("load warned: %v", warnings)
			}
			clusterEqual(t, got, g.Cluster)
		})
	}
}

// TestYAML11BooleanWordsSurviveTheRoundTrip uses label keys and values that a YAML 1.1 reader
// takes for booleans or null when unquoted.
func TestYAML11BooleanWordsSurviveTheRoundTrip(t *testing.T) {
	words := []string{"y", "n", "yes", "no", "on", "off", "true", "false", "null", "Y", "NO", "1", "0.5"}
	s := Spec{Seed: 1, Pods: 40, LabelSets: LabelSetSpec{Count: 10, Labels: []LabelTemplate{{Key: "y", Values: words}}},
		Namespaces: NamespaceSpec{Count: 2, Labels: []LabelTemplate{{Key: "on", Values: words}}},
		Ports:      []PortSpec{{Name: "http", Port: 80}},
		Policies:   []PolicyTemplate{{Kind: KindAllowFromApp, Count: 5, Expressions: 1}, {Kind: KindAllowFromNamespace, Count: 5}}}
	g := mustGenerate(t, s)
	data := mustYAML(t, g)
	got, _, err := policy.LoadBytes(data, "words.yaml")
	if err != nil {
		t.Fatal(err)
	}
	clusterEqual(t, got, g.Cluster)
	if !bytes.Contains(data, []byte(`"y": `)) {
		t.Error(`the label key y is not quoted in the output`)
	}
}

func TestYAMLStringQuotesWhatYAMLCouldMisread(t *testing.T) {
	tests := []struct {
		in   string
		want string
	}{
		{"app-1", "app-1"},
		{"kubernetes.io/metadata.name", "kubernetes.io/metadata.name"},
		{"y", `"y"`},
		{"Off", `"Off"`},
		{"null", `"null"`},
		{"198.18.0.1", `"198.18.0.1"`},
		{"1e3", `"1e3"`},
		{"", `""`},
		{"a: b", `"a: b"`},
		{"-x", `"-x"`},
		{".inf", `".inf"`},
		{`quo"te`, `"quo\"te"`},
	}
	for _, tc := range tests {
		if got := yamlString(tc.in); got != tc.want {
			t.Errorf("yamlString(%q) = %s, want %s", tc.in, got, tc.want)
		}
		var back string
		if err := yaml.Unmarshal([]byte(tc.want), &back); err != nil || back != tc.in {
			t.Errorf("%s reads back as %q (%v), want %q", tc.want, back, err, tc.in)
		}
	}
}

func TestYAMLIsWhatKubectlExpects(t *testing.T) {
	data := string(mustYAML(t, mustGenerate(t, mustPreset(t, "small"))))
	docs := strings.Split(data, "---\n")[1:]
	if len(docs) == 0 {
		t.Fatal("no documents")
	}
	for i, d := range docs {
		var obj map[string]any
		if err := yaml.Unmarshal([]byte(d), &obj); err != nil {
			t.Fatalf("document %d: %v", i, err)
		}
		if obj["apiVersion"] == nil || obj["kind"] == nil {
			t.Errorf("document %d lacks apiVersion or kind", i)
		}
		if strings.Contains(d, "creationTimestamp") || strings.Contains(d, "null") {
			t.Errorf("document %d carries null fields:\n%s", i, d)
		}
		if obj["kind"] == "Pod" {
			st := obj["status"].(map[string]any)
			if len(st) != 1 || st["podIP"] == nil {
				t.Errorf("document %d: pod status is %v, want only podIP", i, st)
			}
			ctr := obj["spec"].(map[string]any)["containers"].([]any)[0].(map[string]any)
			if ctr["image"] == nil || ctr["name"] == nil {
				t.Errorf("document %d: pod container lacks name or image", i)
			}
		}
	}
}

var update = flag.Bool("update", false, "rewrite testdata/golden.txt from the current generator")

// TestGoldenGeneratedClusters pins what the presets generate: counts per object kind, the
// YAML's size and its SHA-256. A change to the generator that moves any byte shows here, so
// it is seen in review (and the README's figures are re-measured). Run with -update after an
// intended change.
func TestGoldenGeneratedClusters(t *testing.T) {
	var b strings.Builder
	for _, name := range []string{"small", "default", "large"} {
		g := mustGenerate(t, mustPreset(t, name))
		data := mustYAML(t, g)
		kinds := map[string]int{}
		for i := range g.Policies {
			kinds[g.Spec.Policies[g.polTmpl[i]].Kind]++
		}
		fmt.Fprintf(&b, "%s: pods=%d namespaces=%d labelsets=%d policies=%d", name, len(g.Pods), len(g.Namespaces), len(g.LabelSets), len(g.Policies))
		for _, k := range policyKinds {
			fmt.Fprintf(&b, " %s=%d", k, kinds[k])
		}
		fmt.Fprintf(&b, " yaml_bytes=%d sha256=%x\n", len(data), sha256.Sum256(data))
	}
	got := b.String()
	const file = "testdata/golden.txt"
	if *update {
		if err := os.MkdirAll("testdata", 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(file, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(file)
	if err != nil {
		t.Fatalf("%v (run go test -run TestGoldenGeneratedClusters -update)", err)
	}
	if got != string(want) {
		t.Errorf("generated clusters changed (run with -update if that is intended):\ngot:\n%s\nwant:\n%s", got, want)
	}
}

// TestObjectsPassAPIServerNameAndLabelRules checks what the API server would reject before
// kubectl apply gets anywhere: object names, label keys and values, container port names and
// numbers, and ipBlock CIDRs with except inside them.
func TestObjectsPassAPIServerNameAndLabelRules(t *testing.T) {
	g := mustGenerate(t, mustPreset(t, "default"))
	check := func(what string, msgs []string) {
		t.Helper()
		if len(msgs) > 0 {
			t.Errorf("%s: %s", what, strings.Join(msgs, "; "))
		}
	}
	labels := func(obj string, m map[string]string) {
		for k, v := range m {
			check(obj+" label key "+k, validation.IsQualifiedName(k))
			check(obj+" label value "+v, validation.IsValidLabelValue(v))
		}
	}
	for _, ns := range g.Namespaces {
		check("namespace "+ns.Name, validation.IsDNS1123Label(ns.Name))
		labels("namespace "+ns.Name, ns.Labels)
	}
	for _, p := range g.Pods {
		check("pod "+p.Name, validation.IsDNS1123Subdomain(p.Name))
		labels("pod "+p.Name, p.Labels)
		for _, c := range p.Spec.Containers {
			check("container "+c.Name, validation.IsDNS1123Label(c.Name))
			if c.Image == "" {
				t.Errorf("pod %s: container without image", p.Name)
			}
			for _, cp := range c.Ports {
				if cp.Name != "" {
					check("port name "+cp.Name, validation.IsValidPortName(cp.Name))
				}
				check("port number", validation.IsValidPortNum(int(cp.ContainerPort)))
			}
		}
	}
	for _, np := range g.Policies {
		check("policy "+np.Name, validation.IsDNS1123Subdomain(np.Name))
		var peers []networkingv1.NetworkPolicyPeer
		for _, r := range np.Spec.Ingress {
			peers = append(peers, r.From...)
		}
		for _, r := range np.Spec.Egress {
			peers = append(peers, r.To...)
		}
		for _, pe := range peers {
			if pe.IPBlock == nil {
				continue
			}
			cidr, err := netip.ParsePrefix(pe.IPBlock.CIDR)
			if err != nil || cidr != cidr.Masked() {
				t.Errorf("policy %s: cidr %q is not a canonical prefix", np.Name, pe.IPBlock.CIDR)
				continue
			}
			for _, e := range pe.IPBlock.Except {
				ex, err := netip.ParsePrefix(e)
				if err != nil || ex.Bits() <= cidr.Bits() || !cidr.Contains(ex.Addr()) {
					t.Errorf("policy %s: except %q is not strictly inside %s", np.Name, e, cidr)
				}
			}
		}
	}
}
