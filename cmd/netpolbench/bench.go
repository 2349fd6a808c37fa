package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"netpolbench/bench"
	"netpolbench/catalogue"
	"netpolbench/reports"
	"netpolbench/results"
)

func init() {
	var (
		specFile, cluster, out, pods, backends, labelSets string
		apiPods, apiQPS, kubeconfig                       string
		duration                                          time.Duration
		quick, noKernel, apiOnly, noAPI                   bool
		seed                                              uint64
		samples                                           int
		mapHeadroom                                       float64
	)
	cmd := &cobra.Command{
		Use:   "bench",
		Short: "Run the benchmark sweep and write results/<timestamp>/",
		Long: `bench measures every backend over a sweep of cluster sizes: full-sync and churn apply
times with the kernel operations each needed, convergence, map and rule sizes with growth
exponents, BPF_PROG_TEST_RUN distributions, and, in a namespace testbed, the per-packet
enforcement cost stamped in the kernel, round trips, throughput and churn under load.

It writes results/<timestamp>/results.json (the results schema), one .hgrm percentile file per
latency distribution, bench.txt in Go benchmark format (benchstat reads it) and report.html.

Without flags it runs the default sweep: 100, 1,000, 3,000, 10,000 and 100,000 pods, plus 10,
50 and 200 label sets at 1,000 pods; compiled, ebpf, ebpf-cilium, iptables and ipset, the
iptables family capped where its per-IP rules exceed the run's budget (the cap and its reason
are recorded). --quick runs the small sweep CI gates against a committed baseline.

The default sweep ends with the end-to-end phase: at 1,000 and 10,000 pods a generated cluster
is written through an embedded etcd and kube-apiserver (make controlplane builds them), and
for each backend the agent enforces it in the testbed while churn is written at 20 and 100
events a second; every event is timed from its API write to the first packet sent with its
new verdict, stage by stage. --apiserver runs that phase alone; --kubeconfig runs it alone
against a real cluster, in namespaces of its own that it deletes at the end, with pods no
scheduler places (the credentials need to create namespaces, pods, pods/status and
networkpolicies, and get on /metrics).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			spec := bench.DefaultSpec()
			if quick {
				spec = bench.QuickSpec()
			}
			if specFile != "" {
				s, err := bench.LoadSpec(specFile)
				if err != nil {
					return usageErr(err)
				}
				spec = s
			}
			f := cmd.Flags()
			if f.Changed("pods") {
				v, err := parseBenchInts(pods)
				if err != nil {
					return usageErr(fmt.Errorf("--pods: %w", err))
				}
				spec.Pods = v
			}
			if f.Changed("label-sets") {
				v, err := parseBenchInts(labelSets)
				if err != nil {
					return usageErr(fmt.Errorf("--label-sets: %w", err))
				}
				spec.LabelSets = v
			}
			if f.Changed("backends") {
				spec.Backends = splitBenchList(backends)
			}
			if f.Changed("duration") {
				spec.Duration = bench.Duration(duration)
			}
			if f.Changed("seed") {
				spec.Seed = seed
			}
			if f.Changed("samples") {
				spec.Samples = samples
			}
			if f.Changed("map-headroom") {
				spec.MapHeadroom = mapHeadroom
			}
			if kubeconfig != "" {
				apiOnly = true
			}
			switch {
			case noAPI && (apiOnly || f.Changed("apiserver-pods") || f.Changed("apiserver-qps")):
				return usageErr(errors.New("--no-apiserver leaves out what --apiserver, --kubeconfig, --apiserver-pods and --apiserver-qps ask for"))
			case noAPI:
				spec.APIServer = nil
			case apiOnly || f.Changed("apiserver-pods") || f.Changed("apiserver-qps"):
				if spec.APIServer == nil {
					spec.APIServer = bench.DefaultAPIServer()
				}
			}
			if apiOnly {
				// The end-to-end phase alone: no scale of the other phases.
				spec.Pods, spec.LabelSets, spec.SparsePods = nil, nil, nil
			}
			if a := spec.APIServer; a != nil {
				if f.Changed("apiserver-pods") {
					v, err := parseBenchInts(apiPods)
					if err != nil {
						return usageErr(fmt.Errorf("--apiserver-pods: %w", err))
					}
					a.Pods = v
				}
				if f.Changed("apiserver-qps") {
					var qs []float64
					for _, p := range splitBenchList(apiQPS) {
						q, err := strconv.ParseFloat(p, 64)
						if err != nil {
							return usageErr(fmt.Errorf("--apiserver-qps: %q is not a number", p))
						}
						qs = append(qs, q)
					}
					a.QPS = qs
				}
				a.Kubeconfig = kubeconfig
				if f.Changed("backends") {
					a.Backends = spec.Backends
				}
				spec = spec.WithDefaults()
			}
			if err := spec.Validate(); err != nil {
				return usageErr(err)
			}
			var src bench.Source
			if cluster != "" {
				cs, err := bench.NewClusterFileSource(cluster)
				if err != nil {
					return usageErr(err)
				}
				for _, w := range cs.Warnings {
					fmt.Fprintln(os.Stderr, "netpolbench: warning:", w)
				}
				spec.Pods = []int{cs.Pods()}
				spec.LabelSets = nil
				src = cs
			} else {
				ws, err := bench.NewWorkloadSource(spec)
				if err != nil {
					return usageErr(err)
				}
				if kubeconfig != "" {
					ws.NamespacePrefix = bench.NamespacePrefix()
				}
				src = ws
			}
			ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			r := &bench.Runner{Spec: spec, Source: src, Progress: bench.NewProgress(os.Stderr), Log: os.Stderr, Kernel: !noKernel}
			run, err := r.Run(ctx)
			if err != nil {
				return err
			}
			bench.DescribeHost(run)
			if cluster != "" {
				run.Config.Extra["cluster"] = cluster
			}
			if quick {
				run.Config.Extra["quick"] = "true"
			}
			dir := bench.RunDir(out, run.Start)
			if err := r.Write(dir); err != nil {
				return err
			}
			if err := writeBenchReport(filepath.Join(dir, bench.ReportFile)); err != nil {
				return err
			}
			fmt.Fprintf(os.Stderr, "netpolbench: wrote %s\n\n", dir)
			return reports.WriteSummary(cmd.OutOrStdout(), run, filepath.Join(dir, bench.ReportFile))
		},
	}
	f := cmd.Flags()
	f.StringVar(&specFile, "spec", "", "sweep file (YAML): pods, labelSets, backends, samples, duration, packets, budget, mapHeadroom, workload")
	f.StringVar(&pods, "pods", "", "pod-count sweep, comma-separated (e.g. 100,1000,10000)")
	f.StringVar(&labelSets, "label-sets", "", "distinct label-set sweep at a fixed pod count, comma-separated")
	f.StringVar(&backends, "backends", "", "backends, comma-separated (have "+strings.Join(catalogue.Names((*catalogue.Backend).CanBench), ", ")+")")
	f.DurationVar(&duration, "duration", 0, "bound of each real-packet phase (e.g. 5s)")
	f.StringVar(&cluster, "cluster", "", "benchmark a cluster dump (kubectl get ns,pods,netpol -A -o yaml) instead of generated workloads")
	f.StringVar(&out, "out", "results", "directory the run's <timestamp>/ directory is created in")
	f.BoolVar(&quick, "quick", false, "the small CI sweep (100 and 1,000 pods, under two minutes)")
	f.BoolVar(&noKernel, "no-packets", false, "skip the phases that send real packets through the testbed")
	f.Uint64Var(&seed, "seed", 0, "seed of the workload and every random choice (default: the spec's, 1)")
	f.IntVar(&samples, "samples", 0, "repetitions of each timing (default 5)")
	f.Float64Var(&mapHeadroom, "map-headroom", 0, "size eBPF maps at this many times the synced state's entries, for churn that grows it (default 2)")
	f.BoolVar(&apiOnly, "apiserver", false, "run the end-to-end phase alone: churn through an embedded kube-apiserver, enforced by the agent")
	f.BoolVar(&noAPI, "no-apiserver", false, "leave the end-to-end phase out of the sweep")
	f.StringVar(&kubeconfig, "kubeconfig", "", "run the end-to-end phase alone against the cluster of this kubeconfig")
	f.StringVar(&apiPods, "apiserver-pods", "", "scales of the end-to-end phase, comma-separated (default 1000,10000)")
	f.StringVar(&apiQPS, "apiserver-qps", "", "write rates of the end-to-end phase, events per second, comma-separated (default 20,100)")
	rootCmd.AddCommand(cmd)
}

// writeBenchReport renders report.html from the results.json written beside it.
func writeBenchReport(path string) error {
	run, err := results.Load(filepath.Join(filepath.Dir(path), bench.ResultsFile))
	if err != nil {
		return err
	}
	f, err := os.Create(path)
	if err != nil {
		return fmt.Errorf("write report: %w", err)
	}
	if err := reports.Render(f, run); err != nil {
		f.Close()
		return fmt.Errorf("write report: %w", err)
	}
	return f.Close()
}

func parseBenchInts(s string) ([]int, error) {
	var out []int
	for _, p := range splitBenchList(s) {
		v, err := strconv.Atoi(p)
		if err != nil {
			return nil, fmt.Errorf("%q is not a number", p)
		}
		out = append(out, v)
	}
	if len(out) == 0 {
		return nil, errors.New("empty list")
	}
	return out, nil
}

func splitBenchList(s string) []string {
	var out []string
	for _, p := range strings.Split(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}
