package agent_test

import (
	"context"
	"fmt"
	"net/netip"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes/fake"

	"netpolbench/agent"
	"netpolbench/policy"
)

func fakePod(ns, name, ip string, mutate ...func(*corev1.Pod)) *corev1.Pod {
	p := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, Labels: map[string]string{"app": name}},
		Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "c", Image: "none"}}},
		Status:     corev1.PodStatus{Phase: corev1.PodRunning, PodIP: ip},
	}
	for _, m := range mutate {
		m(p)
	}
	return p
}

// mustRunAgent runs an agent with the compiled-state backend on a fake clientset.
func mustRunAgent(t *testing.T, cs *fake.Clientset) *agent.Agent {
	t.Helper()
	a, err := agent.New(cs, agent.Options{Backend: &stateBackend{}})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Error(err)
		}
	})
	if err := a.Started(ctx); err != nil {
		t.Fatal(err)
	}
	return a
}

// enforcedAt returns the pod the agent enforces at an address ("" for none).
func enforcedAt(a *agent.Agent, ip string) string {
	var key string
	a.Inspect(func(s *policy.State, _ policy.Backend) error {
		if ep, ok := s.EndpointByIP(netip.MustParseAddr(ip)); ok {
			key = ep.Pod.Key()
		}
		return nil
	})
	return key
}

// TestAddressOfAPodStillEnforcedWaitsForItsDeletion: a new pod that got the address of a pod
// the agent still enforces (its deletion not seen yet) is retried, not rejected, and takes the
// address once the old pod is gone.
func TestAddressOfAPodStillEnforcedWaitsForItsDeletion(t *testing.T) {
	ctx := context.Background()
	cs := fake.NewClientset(fakePod("x", "old", "198.18.0.1"))
	a := mustRunAgent(t, cs)
	if err := waitFor(5*time.Second, func() error {
		if k := enforcedAt(a, "198.18.0.1"); k != "x/old" {
			return fmt.Errorf("198.18.0.1 enforced for %q", k)
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if _, err := cs.CoreV1().Pods("x").Create(ctx, fakePod("x", "new", "198.18.0.1"), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := waitFor(5*time.Second, func() error {
		if a.Stats().Retries == 0 {
			return fmt.Errorf("no retry yet")
		}
		return nil
	}); err != nil {
		t.Fatalf("the new pod was not retried while the old one held its address: %v", err)
	}
	if k := enforcedAt(a, "198.18.0.1"); k != "x/old" {
		t.Fatalf("while both exist, 198.18.0.1 is enforced for %q, want x/old", k)
	}
	if err := cs.CoreV1().Pods("x").Delete(ctx, "old", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := waitFor(10*time.Second, func() error {
		if k := enforcedAt(a, "198.18.0.1"); k != "x/new" {
			return fmt.Errorf("198.18.0.1 enforced for %q", k)
		}
		return nil
	}); err != nil {
		t.Fatalf("after the old pod's deletion: %v", err)
	}
}

// TestSnapshotLeavesOutWhatHasNothingToEnforce: pods without an address, on the host's
// network or finished are left out; a dual-stack pod is enforced on its IPv4 address; a second
// pod on a taken address and a policy the compiler refuses are left out with a warning.
func TestSnapshotLeavesOutWhatHasNothingToEnforce(t *testing.T) {
	pods := []*corev1.Pod{
		fakePod("x", "running", "198.18.0.1"),
		fakePod("x", "pending", ""),
		fakePod("x", "host", "10.0.0.1", func(p *corev1.Pod) { p.Spec.HostNetwork = true }),
		fakePod("x", "done", "198.18.0.2", func(p *corev1.Pod) { p.Status.Phase = corev1.PodSucceeded }),
		fakePod("x", "dual", "fd00::5", func(p *corev1.Pod) {
			p.Status.PodIPs = []corev1.PodIP{{IP: "fd00::5"}, {IP: "198.18.0.3"}}
		}),
		fakePod("x", "z-duplicate", "198.18.0.1"),
	}
	// Identities leave pod-template-hash out, so they cannot enforce a policy that selects on it.
	bad := &networkingv1.NetworkPolicy{
		ObjectMeta: metav1.ObjectMeta{Namespace: "x", Name: "by-hash"},
		Spec:       networkingv1.NetworkPolicySpec{PodSelector: metav1.LabelSelector{MatchLabels: map[string]string{"pod-template-hash": "abc"}}},
	}
	c, warnings := agent.Snapshot(nil, pods, []*networkingv1.NetworkPolicy{bad}, policy.Options{})
	if len(c.Pods) != 2 || c.Pods["x/running"] == nil || c.Pods["x/dual"] == nil {
		t.Fatalf("pods %v: want x/running and x/dual", c.PodKeys())
	}
	if got := c.Pods["x/dual"].IP.String(); got != "198.18.0.3" {
		t.Errorf("dual-stack pod enforced on %s, want its IPv4 address", got)
	}
	if len(c.Policies) != 0 || len(warnings) != 2 {
		t.Errorf("policies %v, warnings %q: want the duplicate pod and the policy left out with a warning each", c.PolicyKeys(), warnings)
	}
}

// countingBackend counts full syncs.
type countingBackend struct {
	stateBackend
	syncs int
}

func (b *countingBackend) Sync(s *policy.State) (policy.SyncStats, error) {
	b.syncs++
	return b.stateBackend.Sync(s)
}

// TestOpenSyncedBackendIsNotSyncedAgain: a backend Open returns synced is used as it is; one
// Open returns unsynced gets the agent's first sync.
func TestOpenSyncedBackendIsNotSyncedAgain(t *testing.T) {
	for _, synced := range []bool{false, true} {
		b := &countingBackend{}
		a, err := agent.New(fake.NewClientset(fakePod("x", "a", "198.18.0.1")), agent.Options{OpenSynced: synced,
			Open: func(s *policy.State) (policy.Backend, error) {
				if synced {
					b.Sync(s)
				}
				return b, nil
			}})
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- a.Run(ctx) }()
		if err := a.Started(ctx); err != nil {
			t.Fatal(err)
		}
		cancel()
		if err := <-done; err != nil {
			t.Fatal(err)
		}
		if b.syncs != 1 || b.s == nil || b.s.NumEndpoints() != 1 {
			t.Errorf("OpenSynced %v: %d full syncs, want 1 (the agent's or Open's), to the state of one pod", synced, b.syncs)
		}
	}
}
