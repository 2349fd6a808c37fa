package agent_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"netpolbench/agent"
	"netpolbench/catalogue"
	"netpolbench/controlplane/controlplanetest"
	"netpolbench/driver"
	"netpolbench/internal/testenv"
	"netpolbench/policy"
	"netpolbench/policy/policytest"
	"netpolbench/workloads"
)

// TestPolicyCasesThroughTheAPIServerDecideAsFromFiles writes the e2e model (namespaces x, y, z;
// pods a, b, c) through a real API server, then every policytest case's policies, one case
// after another (each case's policies deleted before the next are written). One agent per
// backend of the catalogue that decides flows keeps that backend, as a decider, current from
// the API server by incremental updates. After each case every backend decides the whole grid
// of the model, and must agree cell for cell with the reference evaluator on the case read from
// its YAML, the way `netpolbench verdict -f` reads it. The reference itself decides on the
// cluster the agents built from the API server.
func TestPolicyCasesThroughTheAPIServerDecideAsFromFiles(t *testing.T) {
	testenv.Long(t, "conformance through the API server")
	cp := controlplanetest.Shared(t)
	admin := controlplanetest.AdminClient(cp)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()

	nss, pods := policytest.ModelObjects()
	for _, ns := range nss {
		// A namespace outlives a run on the shared control plane (no namespace controller).
		if _, err := admin.CoreV1().Namespaces().Create(ctx, ns, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
			t.Fatal(err)
		}
	}
	mustDeleteAtEnd(t, admin, nss)
	if err := (&driver.Writer{Client: admin}).WriteCluster(ctx, &workloads.Generated{Pods: pods}, 4); err != nil {
		t.Fatal(err)
	}

	type run struct {
		name string
		a    *agent.Agent
	}
	var agents []run
	var wg sync.WaitGroup
	defer wg.Wait()
	defer cancel()
	for _, name := range catalogue.Names((*catalogue.Backend).CanDecide) {
		if name == "reference" {
			continue // it decides on the agents' cluster below
		}
		cb := catalogue.MustGet(name)
		a, err := agent.New(admin, agent.Options{
			Open: func(s *policy.State) (policy.Backend, error) {
				d, err := cb.Decider(catalogue.Env{State: s})
				if err != nil {
					return nil, err
				}
				b, ok := d.(policy.Backend)
				if !ok {
					d.Close()
					return nil, fmt.Errorf("%s: its decider (%T) is no policy.Backend, so no update could keep it current", name, d)
				}
				return b, nil
			},
			Logf: func(format string, args ...any) { t.Logf(name+": "+format, args...) },
		})
		if err != nil {
			t.Fatal(err)
		}
		done := make(chan error, 1)
		wg.Add(1)
		go func() {
			defer wg.Done()
			done <- a.Run(ctx)
		}()
		if err := a.Started(ctx); err != nil {
			if errors.Is(err, catalogue.ErrUnavailable) && os.Getenv("CI") == "" {
				t.Logf("%s is left out: %v", name, err)
				continue
			}
			t.Fatalf("%s agent: %v", name, err)
		}
		agents = append(agents, run{name, a})
	}

	grid := policytest.Grid()
	for _, tc := range policytest.Cases {
		file, err := tc.Cluster()
		if err != nil {
			t.Fatal(err)
		}
		created := mustCreatePolicies(t, admin, file)
		want, err := freshCanonical(ctx, admin)
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range agents {
			err := waitFor(10*time.Second, func() error {
				return r.a.Inspect(func(s *policy.State, _ policy.Backend) error {
					if got := s.Canonical(); got != want {
						return fmt.Errorf("differs from a fresh compile of the API server's objects at %s", firstDiff(got, want))
					}
					return nil
				})
			})
			if err != nil {
				t.Fatalf("%s: %s agent did not converge: %v", tc.Name, r.name, err)
			}
			err = r.a.Inspect(func(s *policy.State, b policy.Backend) error {
				deciders := map[string]func(policy.Flow) (policy.Verdict, error){r.name: b.(policy.Decider).Verdict}
				if r.name == agents[0].name {
					deciders["reference"] = func(f policy.Flow) (policy.Verdict, error) {
						v, _ := s.Cluster().Evaluate(f)
						return v, nil
					}
				}
				for name, decide := range deciders {
					table, err := policytest.NewTable(name+" through the API server", file, grid, decide)
					if err != nil {
						return err
					}
					if len(table.Mismatches) > 0 {
						t.Errorf("%s: %s through the API server disagrees with the case read from its YAML:\n%s", tc.Name, name, table.Report())
					}
				}
				return nil
			})
			if err != nil {
				t.Fatalf("%s: %s: %v", tc.Name, r.name, err)
			}
		}
		for _, key := range created {
			ns, name, _ := strings.Cut(key, "/")
			if err := admin.NetworkingV1().NetworkPolicies(ns).Delete(ctx, name, metav1.DeleteOptions{}); err != nil {
				t.Fatal(err)
			}
		}
	}
	if len(agents) == 0 {
		t.Fatal("no backend could decide")
	}
	for _, r := range agents {
		st := r.a.Stats()
		if st.BackendErrors > 0 || st.Skipped > 0 {
			t.Errorf("%s agent: %d backend errors, %d objects skipped", r.name, st.BackendErrors, st.Skipped)
		}
	}
	t.Logf("%d cases, %d flows each, decided by %d backends through the API server and the reference", len(policytest.Cases), len(grid), len(agents))
}
