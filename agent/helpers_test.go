package agent_test

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"

	"netpolbench/agent"
	"netpolbench/controlplane"
	"netpolbench/policy"
)

// mustApplyManifest creates every object of a YAML manifest of the repository (Namespaces,
// ServiceAccounts, ClusterRoles, ClusterRoleBindings).
func mustApplyManifest(t *testing.T, c kubernetes.Interface, path string) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	r := utilyaml.NewYAMLReader(bufio.NewReader(bytes.NewReader(b)))
	for {
		doc, err := r.Read()
		if errors.Is(err, io.EOF) {
			return
		}
		if err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		if len(bytes.TrimSpace(doc)) == 0 {
			continue
		}
		obj, _, err := scheme.Codecs.UniversalDeserializer().Decode(doc, nil, nil)
		if err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		switch o := obj.(type) {
		case *corev1.Namespace:
			_, err = c.CoreV1().Namespaces().Create(ctx, o, metav1.CreateOptions{})
		case *corev1.ServiceAccount:
			_, err = c.CoreV1().ServiceAccounts(o.Namespace).Create(ctx, o, metav1.CreateOptions{})
		case *rbacv1.ClusterRole:
			_, err = c.RbacV1().ClusterRoles().Create(ctx, o, metav1.CreateOptions{})
		case *rbacv1.ClusterRoleBinding:
			_, err = c.RbacV1().ClusterRoleBindings().Create(ctx, o, metav1.CreateOptions{})
		default:
			t.Fatalf("%s: unexpected %T", path, obj)
		}
		// A shared control plane keeps the manifest's objects from an earlier test.
		if err != nil && !apierrors.IsAlreadyExists(err) {
			t.Fatalf("%s: create %T: %v", path, obj, err)
		}
	}
}

// mustDeleteAtEnd deletes, when the test ends, every pod and network policy of the namespaces,
// so that a later test on the shared control plane meets none of their addresses. The
// namespaces stay: without a namespace controller a deleted namespace never goes.
func mustDeleteAtEnd(t *testing.T, c kubernetes.Interface, nss []*corev1.Namespace) {
	t.Helper()
	t.Cleanup(func() {
		ctx := context.Background()
		for _, ns := range nss {
			now := metav1.DeleteOptions{GracePeriodSeconds: new(int64)}
			if err := c.CoreV1().Pods(ns.Name).DeleteCollection(ctx, now, metav1.ListOptions{}); err != nil {
				t.Errorf("delete pods of %s: %v", ns.Name, err)
			}
			if err := c.NetworkingV1().NetworkPolicies(ns.Name).DeleteCollection(ctx, metav1.DeleteOptions{}, metav1.ListOptions{}); err != nil {
				t.Errorf("delete networkpolicies of %s: %v", ns.Name, err)
			}
		}
	})
}

// mustCreatePolicies creates the cluster's network policies through the API server and
// returns their keys.
func mustCreatePolicies(t *testing.T, c kubernetes.Interface, cl *policy.Cluster) []string {
	t.Helper()
	keys := cl.PolicyKeys()
	for _, k := range keys {
		np := cl.Policies[k].DeepCopy()
		np.ResourceVersion = ""
		if _, err := c.NetworkingV1().NetworkPolicies(np.Namespace).Create(context.Background(), np, metav1.CreateOptions{}); err != nil {
			t.Fatalf("create networkpolicy %s: %v", k, err)
		}
	}
	return keys
}

// freshCanonical compiles what the API server holds now, from scratch, and renders it.
func freshCanonical(ctx context.Context, c kubernetes.Interface) (string, error) {
	nss, err := c.CoreV1().Namespaces().List(ctx, metav1.ListOptions{})
	if err != nil {
		return "", err
	}
	pods, err := c.CoreV1().Pods("").List(ctx, metav1.ListOptions{})
	if err != nil {
		return "", err
	}
	pols, err := c.NetworkingV1().NetworkPolicies("").List(ctx, metav1.ListOptions{})
	if err != nil {
		return "", err
	}
	cl, _ := agent.Snapshot(ptrs(nss.Items), ptrs(pods.Items), ptrs(pols.Items), policy.Options{})
	comp, err := policy.Compile(cl, policy.Options{})
	if err != nil {
		return "", err
	}
	return comp.State().Canonical(), nil
}

func ptrs[T any](items []T) []*T {
	out := make([]*T, len(items))
	for i := range items {
		out[i] = &items[i]
	}
	return out
}

// cutProxy forwards loopback TCP connections to the API server and can cut them: Cut closes
// every open connection and turns new ones away until Restore, as a network partition between
// an agent and its API server would, while other clients keep writing.
type cutProxy struct {
	l      net.Listener
	target string
	mu     sync.Mutex
	cut    bool
	conns  map[net.Conn]struct{}
}

func mustProxy(t *testing.T, target string) *cutProxy {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &cutProxy{l: l, target: target, conns: map[net.Conn]struct{}{}}
	go p.serve()
	t.Cleanup(func() { l.Close(); p.Cut() })
	return p
}

func (p *cutProxy) URL() string { return "https://" + p.l.Addr().String() }

func (p *cutProxy) serve() {
	for {
		c, err := p.l.Accept()
		if err != nil {
			return
		}
		p.mu.Lock()
		if p.cut {
			p.mu.Unlock()
			c.Close()
			continue
		}
		up, err := net.DialTimeout("tcp", p.target, 5*time.Second)
		if err != nil {
			p.mu.Unlock()
			c.Close()
			continue
		}
		p.conns[c], p.conns[up] = struct{}{}, struct{}{}
		p.mu.Unlock()
		go p.pipe(c, up)
		go p.pipe(up, c)
	}
}

func (p *cutProxy) pipe(dst, src net.Conn) {
	io.Copy(dst, src)
	dst.Close()
	src.Close()
	p.mu.Lock()
	delete(p.conns, dst)
	delete(p.conns, src)
	p.mu.Unlock()
}

func (p *cutProxy) Cut() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.cut = true
	for c := range p.conns {
		c.Close()
	}
}

func (p *cutProxy) Restore() {
	p.mu.Lock()
	p.cut = false
	p.mu.Unlock()
}

// agentConfig is the agent's client: through the proxy, as the agent's service account of
// deploy/rbac.yaml (impersonated by the admin), so it has exactly the manifest's rights.
func agentConfig(cp *controlplane.ControlPlane, proxy *cutProxy) *rest.Config {
	cfg := cp.RESTConfig()
	cfg.Host = proxy.URL()
	cfg.Impersonate = rest.ImpersonationConfig{UserName: "system:serviceaccount:netpolbench:netpolbench-agent"}
	return cfg
}

// waitFor polls cond until it returns nil or the timeout passes, and returns its last error.
func waitFor(timeout time.Duration, cond func() error) error {
	deadline := time.Now().Add(timeout)
	for {
		err := cond()
		if err == nil || time.Now().After(deadline) {
			return err
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// firstDiff shows the first line where two renderings differ.
func firstDiff(got, want string) string {
	g, w := strings.Split(got, "\n"), strings.Split(want, "\n")
	for i := range max(len(g), len(w)) {
		var gl, wl string
		if i < len(g) {
			gl = g[i]
		}
		if i < len(w) {
			wl = w[i]
		}
		if gl != wl {
			return fmt.Sprintf("line %d:\n  agent: %s\n  fresh: %s", i+1, gl, wl)
		}
	}
	return "(equal)"
}
