package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"sync"
	"syscall"
	"time"

	hdrhistogram "github.com/HdrHistogram/hdrhistogram-go"
	"github.com/spf13/cobra"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"

	"netpolbench/agent"
	"netpolbench/catalogue"
	"netpolbench/internal/netns"
	"netpolbench/internal/owner"
	"netpolbench/policy"
	"netpolbench/testbed"
)

func init() {
	var (
		kubeconfig, backend string
		resync, every       time.Duration
		mapHeadroom         float64
	)
	cmd := &cobra.Command{
		Use:   "agent",
		Short: "Enforce what a Kubernetes API server holds with one backend, read-only (shadow mode)",
		Long: `agent watches the Namespaces, Pods and NetworkPolicies of a cluster (client-go shared
informers, a work queue, periodic resync), compiles them incrementally and keeps one backend
enforcing the result: every change becomes a delta the backend applies. It never writes to the
cluster: the read-only RBAC of deploy/rbac.yaml is all it needs, and deploy/daemonset.yaml runs
it on every node of a real cluster in shadow mode, replaying that cluster's real churn against
a backend whose state lives in the agent's own network namespace (eBPF maps are loaded but
attached to nothing; iptables, ipset and nftables rules go to a namespace the agent creates).

It reports every --report interval what it applied and how long changes took from the watch
event to the backend. Without --kubeconfig it uses the pod's service account inside a cluster,
else $KUBECONFIG or ~/.kube/config (netpolbench cluster up prints one for a local control plane).

Backends: ` + strings.Join(catalogue.Names((*catalogue.Backend).CanBench), ", ") + `.`,
		Example: `  netpolbench cluster up &
  netpolbench agent --kubeconfig $(netpolbench cluster kubeconfig) --backend ebpf`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			b, err := catalogue.Get(backend)
			if err != nil {
				return usageErr(fmt.Errorf("agent: %w", err))
			}
			if !b.CanBench() {
				return usageErr(fmt.Errorf("agent: %s cannot apply updates (have %s)", backend,
					strings.Join(catalogue.Names((*catalogue.Backend).CanBench), ", ")))
			}
			if mapHeadroom != 0 && mapHeadroom < 1 {
				return usageErr(fmt.Errorf("agent: --map-headroom %g: want at least 1", mapHeadroom))
			}
			cfg, err := agentRESTConfig(kubeconfig)
			if err != nil {
				return usageErr(fmt.Errorf("agent: %w", err))
			}
			client, err := kubernetes.NewForConfig(cfg)
			if err != nil {
				return usageErr(fmt.Errorf("agent: %w", err))
			}
			ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			var nsName string
			if b.Family.InNode {
				if nsName, err = ownNetns(); err != nil {
					return runtimeErr(fmt.Errorf("agent: %w", err))
				}
				defer netns.Delete(nsName)
			}
			rep := newAgentReport(cmd.OutOrStdout(), backend)
			a, err := agent.New(client, agent.Options{
				Open: func(s *policy.State) (policy.Backend, error) {
					return b.Open(catalogue.Env{State: s, Node: nsName, MapHeadroom: mapHeadroom})
				},
				Resync:  resync,
				Observe: rep.observe,
				Logf:    func(format string, args ...any) { fmt.Fprintf(cmd.ErrOrStderr(), format+"\n", args...) },
			})
			if err != nil {
				return runtimeErr(err)
			}
			go func() {
				if err := a.Started(ctx); err != nil {
					return
				}
				rep.started(a)
				t := time.NewTicker(every)
				defer t.Stop()
				for {
					select {
					case <-ctx.Done():
						return
					case <-t.C:
						rep.print(a)
					}
				}
			}()
			if err := a.Run(ctx); err != nil {
				return runtimeErr(err)
			}
			rep.print(a)
			return nil
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&kubeconfig, "kubeconfig", "", "kubeconfig file (default: in-cluster, else $KUBECONFIG or ~/.kube/config)")
	fl.StringVar(&backend, "backend", "ebpf", "the backend to enforce with")
	fl.DurationVar(&resync, "resync", 10*time.Minute, "how often every cached object is checked again (0: never)")
	fl.DurationVar(&every, "report", 30*time.Second, "how often to print what was applied")
	fl.Float64Var(&mapHeadroom, "map-headroom", 0, "size eBPF maps at this many times the first synced state's entries, for a cluster that grows (default 2)")
	rootCmd.AddCommand(cmd)
}

// agentRESTConfig is the in-cluster configuration inside a pod without --kubeconfig, else
// the kubeconfig's. The agent only lists and watches: a modest rate limit suffices.
func agentRESTConfig(kubeconfig string) (*rest.Config, error) {
	var cfg *rest.Config
	var err error
	if kubeconfig == "" && os.Getenv("KUBERNETES_SERVICE_HOST") != "" {
		cfg, err = rest.InClusterConfig()
	} else {
		rules := clientcmd.NewDefaultClientConfigLoadingRules()
		rules.ExplicitPath = kubeconfig
		cfg, err = clientcmd.NewNonInteractiveDeferredLoadingClientConfig(rules, nil).ClientConfig()
	}
	if err != nil {
		return nil, fmt.Errorf("client configuration: %w", err)
	}
	cfg.QPS, cfg.Burst = 50, 100
	cfg.UserAgent = "netpolbench-agent"
	return cfg, nil
}

// ownNetns creates the network namespace a kernel backend of the agent keeps its rules in,
// named like the testbed's (npb-<pid>-...) so netpolbench cleanup removes it after a kill.
func ownNetns() (string, error) {
	name, err := owner.Name(testbed.Prefix, "agent")
	if err != nil {
		return "", err
	}
	ns, err := netns.Create(name)
	if err != nil {
		return "", err
	}
	return name, ns.Close()
}

// agentReport summarises the agent's work per interval: changes applied, and the time from
// the watch event to the backend's acknowledgement.
type agentReport struct {
	out     io.Writer
	backend string
	mu      sync.Mutex
	h       *hdrhistogram.Histogram
	items   int
	changed int
	retried int
}

func newAgentReport(out io.Writer, backend string) *agentReport {
	return &agentReport{out: out, backend: backend, h: hdrhistogram.New(1, 60_000_000_000, 3)}
}

func (r *agentReport) observe(o agent.Observation) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.items++
	if o.Err != nil {
		r.retried++
		return
	}
	if len(o.Events) > 0 {
		r.changed++
		v := min(max(o.Applied.Sub(o.Received).Nanoseconds(), 1), r.h.HighestTrackableValue())
		if err := r.h.RecordValue(v); err != nil {
			fmt.Fprintln(r.out, "agent: record latency:", err)
		}
	}
}

func (r *agentReport) started(a *agent.Agent) {
	var n int
	a.Inspect(func(s *policy.State, _ policy.Backend) error { n = s.NumEndpoints(); return nil })
	fmt.Fprintf(r.out, "agent: %s backend synced with %d endpoints\n", r.backend, n)
}

func (r *agentReport) print(a *agent.Agent) {
	r.mu.Lock()
	items, changed, retried := r.items, r.changed, r.retried
	p50, p99, mx := r.h.ValueAtQuantile(50), r.h.ValueAtQuantile(99), r.h.Max()
	r.items, r.changed, r.retried = 0, 0, 0
	r.h.Reset()
	r.mu.Unlock()
	st := a.Stats()
	ms := func(ns int64) string { return fmt.Sprintf("%.2fms", float64(ns)/1e6) }
	fmt.Fprintf(r.out, "agent: %d objects, %d changed enforcement (watch event to applied: p50 %s, p99 %s, max %s), %d retried; totals: events %v, %d backend errors, %d full syncs\n",
		items, changed, ms(p50), ms(p99), ms(mx), retried, st.Events, st.BackendErrors, st.FullSyncs)
}
