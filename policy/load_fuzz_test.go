package policy_test

import (
	"bytes"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"netpolbench/policy"
	"netpolbench/workloads"
)

// FuzzLoadCluster gives the loader any bytes. It must not panic, and must either refuse them
// with an error that names the file and returns nothing, or return a cluster that holds only
// objects its Add methods accept, and that reads back the same from the generator's YAML.
// The seeds are the streams of the load tests and the files of testdata/load.
func FuzzLoadCluster(f *testing.F) {
	for _, tc := range loadErrorCases {
		f.Add([]byte(tc.doc))
	}
	for _, tc := range endpointCases {
		f.Add([]byte(strings.Join(tc.pods, "---\n")))
	}
	files, err := filepath.Glob("testdata/load/*")
	if err != nil || len(files) == 0 {
		f.Fatalf("no seed files in testdata/load (%v)", err)
	}
	for _, name := range files {
		data, err := os.ReadFile(name)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(data)
	}
	f.Add([]byte(multiDoc))
	f.Add(manyPolicies(3, 1))
	f.Fuzz(func(t *testing.T, data []byte) {
		c, warnings, err := policy.LoadBytes(data, "fuzz.yaml")
		if err != nil {
			if c != nil || warnings != nil {
				t.Fatalf("a failed load returned a cluster or warnings: %v", err)
			}
			if !strings.HasPrefix(err.Error(), "fuzz.yaml") {
				t.Fatalf("error %q does not name the file", err)
			}
			return
		}
		for _, w := range warnings {
			if !strings.HasPrefix(w, "fuzz.yaml: document ") {
				t.Fatalf("warning %q does not name the file and the document", w)
			}
		}
		if err := policy.CheckCluster(c); err != nil {
			t.Fatalf("loaded a cluster that does not hold: %v", err)
		}
		var buf bytes.Buffer
		if err := workloads.WriteYAML(&buf, asGenerated(c)); err != nil {
			t.Fatalf("write the loaded cluster: %v", err)
		}
		back, _, err := policy.LoadBytes(buf.Bytes(), "written.yaml")
		if err != nil {
			t.Fatalf("the loaded cluster, written as YAML, does not load: %v\n%s", err, buf.Bytes())
		}
		if diff := clusterDiff(c, back); diff != "" {
			t.Fatalf("the loaded cluster reads back otherwise from its YAML: %s\n%s", diff, buf.Bytes())
		}
	})
}

// asGenerated puts a cluster's objects where the generator's YAML writer takes them.
func asGenerated(c *policy.Cluster) *workloads.Generated {
	g := &workloads.Generated{}
	for _, name := range c.NamespaceNames() {
		g.Namespaces = append(g.Namespaces, &corev1.Namespace{TypeMeta: metav1.TypeMeta{APIVersion: "v1", Kind: "Namespace"},
			ObjectMeta: metav1.ObjectMeta{Name: name, Labels: c.Namespaces[name].Labels}})
	}
	for _, k := range c.PodKeys() {
		g.Pods = append(g.Pods, policy.PodToK8s(c.Pods[k]))
	}
	for _, k := range c.PolicyKeys() {
		np := c.Policies[k].DeepCopy()
		np.TypeMeta = metav1.TypeMeta{APIVersion: "networking.k8s.io/v1", Kind: "NetworkPolicy"}
		g.Policies = append(g.Policies, np)
	}
	return g
}

// clusterDiff names the first difference between two clusters that enforcement could see:
// namespaces and their labels, pods, and policies' labels, annotations and specs (not the
// metadata the API server keeps, such as timestamps, which JSON rounds). An empty list or map
// is no different from none, as the API server sees them.
func clusterDiff(a, b *policy.Cluster) string {
	eq := equality.Semantic.DeepEqual
	if !reflect.DeepEqual(a.NamespaceNames(), b.NamespaceNames()) || !reflect.DeepEqual(a.PodKeys(), b.PodKeys()) ||
		!reflect.DeepEqual(a.PolicyKeys(), b.PolicyKeys()) {
		return "the namespaces, pods or policies differ"
	}
	for name, ns := range a.Namespaces {
		if !eq(ns, b.Namespaces[name]) {
			return "namespace " + name
		}
	}
	for k, p := range a.Pods {
		if o := b.Pods[k]; p.IP != o.IP || !eq(p.Labels, o.Labels) || !eq(p.Ports, o.Ports) {
			return "pod " + k
		}
	}
	for k, np := range a.Policies {
		o := b.Policies[k]
		if !eq(np.Labels, o.Labels) || !eq(np.Annotations, o.Annotations) || !eq(np.Spec, o.Spec) {
			return "networkpolicy " + k
		}
	}
	return ""
}
