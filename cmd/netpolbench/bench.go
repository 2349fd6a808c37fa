package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
	"golang.org/x/sys/unix"

	"netpolbench/bench"
	"netpolbench/catalogue"
	"netpolbench/reports"
	"netpolbench/results"
	"netpolbench/testbed"
)

func init() {
	var (
		specFile, cluster, out, pods, backends, labelSets, resume string
		apiPods, apiQPS, kubeconfig                               string
		duration                                                  time.Duration
		quick, noKernel, apiOnly, noAPI                           bool
		seed                                                      uint64
		samples                                                   int
		mapHeadroom                                               float64
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
results.json is written after every phase, marked complete only at the end: a run stopped by
SIGINT or SIGTERM records the phase it was in, removes everything it created and exits 130 or
143; a killed run leaves the file of its last phase (netpolbench cleanup then removes its
namespaces). --resume results/<timestamp> continues such a run with the same binary, sweep
and seed, skipping the phases it finished.

Without flags it runs the default sweep: 100, 1,000, 3,000, 10,000 and 100,000 pods, plus 10,
50 and 200 label sets at 1,000 pods; compiled, ebpf, ebpf-cilium, iptables, ipset and
nftables, the iptables family capped where its own plan of rules and set members exceeds the
run's budget, nftables where its plan's set elements do (the cap, its reason and the planned
size are recorded). --quick runs the small sweep CI gates against a committed baseline.

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
			if resume != "" {
				run, err := results.Load(resultsPath(resume))
				if err != nil {
					return usageErr(fmt.Errorf("--resume: %w", err))
				}
				if spec, err = bench.RecordedSpec(run); err != nil {
					return usageErr(fmt.Errorf("--resume %s: %w", resume, err))
				}
			}
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
			spec, err := applyAPIServerFlags(spec, f, apiServerFlags{only: apiOnly, off: noAPI, kubeconfig: kubeconfig,
				cluster: cluster, pods: apiPods, qps: apiQPS})
			if err != nil {
				return usageErr(err)
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
				if a := spec.APIServer; a != nil && a.Kubeconfig != "" {
					ws.NamespacePrefix = bench.NamespacePrefix()
				}
				src = ws
			}
			r := &bench.Runner{Spec: spec, Source: src, Progress: bench.NewProgress(os.Stderr), Log: os.Stderr, Kernel: !noKernel,
				Describe: func(run *results.Run) {
					bench.DescribeHost(run)
					if cluster != "" {
						run.Config.Extra["cluster"] = cluster
					}
					if quick {
						run.Config.Extra["quick"] = "true"
					}
				}}
			if resume != "" {
				dir := resume
				if st, err := os.Stat(dir); err == nil && !st.IsDir() {
					dir = filepath.Dir(dir)
				}
				if err := r.Resume(dir); err != nil {
					return usageErr(err)
				}
			} else {
				r.Dir = bench.RunDir(out, time.Now())
			}
			ctx, stop := interruptible()
			defer stop()
			run, err := r.Run(ctx)
			if err != nil && run != nil && run.Progress != nil {
				fmt.Fprintf(os.Stderr, "\nnetpolbench: wrote %s: a partial run of %d phases; continue it with\n  netpolbench bench --resume %s\n",
					r.Dir, len(run.Progress.Phases), r.Dir)
			}
			if errors.Is(err, bench.ErrInterrupted) {
				return &exitError{code: exitCodeOf(context.Cause(ctx)), err: err}
			}
			if err != nil {
				return err
			}
			dir := r.Dir
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
	f.StringVar(&resume, "resume", "", "continue the partial run in this directory (results/<timestamp>), skipping the phases it finished")
	rootCmd.AddCommand(cmd)
}

// signalled is why a run was stopped: a signal, whose number sets the exit status.
type signalled struct{ sig syscall.Signal }

func (s signalled) Error() string { return "interrupted by " + unix.SignalName(s.sig) }

// exitCodeOf is the status a shell expects of a process stopped by the signal: 128 + its
// number (130 for SIGINT, 143 for SIGTERM).
func exitCodeOf(cause error) int {
	var s signalled
	if errors.As(cause, &s) {
		return 128 + int(s.sig)
	}
	return 130
}

// interruptible returns a context that SIGINT or SIGTERM cancels with the signal as its cause.
// The testbed's own handler is turned off: the runner stops its phases, writes what it
// measured and removes its namespaces itself. A second signal exits at once, leaving whatever
// is left to netpolbench cleanup.
func interruptible() (context.Context, func()) {
	testbed.KeepOnSignal()
	ctx, cancel := context.WithCancelCause(context.Background())
	sigs := make(chan os.Signal, 2)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM)
	go func() {
		first, ok := <-sigs
		if !ok {
			return
		}
		sig := first.(syscall.Signal)
		fmt.Fprintf(os.Stderr, "\nnetpolbench: %s: stopping (again to exit at once)\n", unix.SignalName(sig))
		cancel(signalled{sig})
		second, ok := <-sigs
		if !ok {
			return
		}
		fmt.Fprintf(os.Stderr, "netpolbench: %s again: exiting now; netpolbench cleanup removes what is left\n", unix.SignalName(second.(syscall.Signal)))
		os.Exit(128 + int(second.(syscall.Signal)))
	}()
	return ctx, func() {
		signal.Stop(sigs)
		close(sigs)
		cancel(nil)
	}
}

// apiServerFlags are the flags that shape the end-to-end phase, besides --pods and --backends.
type apiServerFlags struct {
	// only: --apiserver; off: --no-apiserver.
	only, off bool
	// kubeconfig and cluster are --kubeconfig and --cluster; pods and qps the lists of
	// --apiserver-pods and --apiserver-qps.
	kubeconfig, cluster, pods, qps string
}

// applyAPIServerFlags shapes spec's end-to-end phase from the flags: --apiserver and
// --kubeconfig run it alone (at its default scales unless --apiserver-pods), --no-apiserver
// and --cluster leave it out, and a sweep given other --pods runs it at those of its scales the
// sweep has (none: not at all). --backends applies to it too.
func applyAPIServerFlags(spec bench.Spec, f *pflag.FlagSet, a apiServerFlags) (bench.Spec, error) {
	only := a.only || a.kubeconfig != ""
	asked := only || f.Changed("apiserver-pods") || f.Changed("apiserver-qps")
	switch {
	case asked && (a.off || a.cluster != ""):
		return spec, errors.New("--apiserver, --kubeconfig, --apiserver-pods and --apiserver-qps ask for the end-to-end phase, which --no-apiserver leaves out and --cluster cannot run (it writes a generated cluster)")
	case a.off || a.cluster != "":
		spec.APIServer = nil
	case asked:
		if spec.APIServer == nil {
			spec.APIServer = bench.DefaultAPIServer()
		}
	case f.Changed("pods") && spec.APIServer != nil:
		var keep []int
		for _, p := range spec.APIServer.Pods {
			if slices.Contains(spec.Pods, p) {
				keep = append(keep, p)
			}
		}
		if len(keep) == 0 {
			spec.APIServer = nil
		} else {
			as := *spec.APIServer
			as.Pods = keep
			spec.APIServer = &as
		}
	}
	if only {
		// The end-to-end phase alone: no scale of the other phases.
		spec.Pods, spec.LabelSets, spec.SparsePods = nil, nil, nil
	}
	if spec.APIServer == nil {
		return spec, nil
	}
	as := *spec.APIServer
	if f.Changed("apiserver-pods") {
		v, err := parseBenchInts(a.pods)
		if err != nil {
			return spec, fmt.Errorf("--apiserver-pods: %w", err)
		}
		as.Pods = v
	}
	if f.Changed("apiserver-qps") {
		as.QPS = nil
		for _, p := range splitBenchList(a.qps) {
			q, err := strconv.ParseFloat(p, 64)
			if err != nil {
				return spec, fmt.Errorf("--apiserver-qps: %q is not a number", p)
			}
			as.QPS = append(as.QPS, q)
		}
	}
	if a.kubeconfig != "" {
		as.Kubeconfig = a.kubeconfig
	}
	if f.Changed("backends") {
		as.Backends = spec.Backends
	}
	spec.APIServer = &as
	return spec.WithDefaults(), nil
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
