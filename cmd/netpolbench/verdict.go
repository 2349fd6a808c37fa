package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"sort"
	"strings"
	"syscall"
	"text/tabwriter"

	"github.com/spf13/cobra"
	"sigs.k8s.io/yaml"

	"netpolbench/catalogue"
	"netpolbench/datapath"
	"netpolbench/iptables"
	"netpolbench/policy"
	"netpolbench/testbed"
	"netpolbench/workloads"
)

type verdictFlags struct {
	files        []string
	probes       string
	backends     []string
	output       string
	realPackets  bool
	layout       string
	iptablesMode string
}

func init() {
	var vf verdictFlags
	cmd := &cobra.Command{
		Use:   "verdict -f cluster.yaml --probes probes.yaml",
		Short: "Decide probes with every backend and show where they disagree",
		Long: `verdict reads a cluster (Namespaces, Pods, NetworkPolicies; multi-document YAML or
kubectl List output) and a probes file, and decides every probe with each backend. The
reference evaluator is the truth; a cell where a backend differs from it is marked with *.

Probes file:
  probes:
    - {from: x/a, to: y/b, port: 80, protocol: TCP}
    - {from: 203.0.113.10, to: x/b, port: 81, protocol: UDP}
    - {from: y/a, to: 203.0.113.200, port: 80, protocol: TCP}
from and to are namespace/pod or an IP outside the cluster; protocol is TCP (default), UDP,
SCTP or ICMP (no port).

Backends: ` + "%BACKENDS%" + `
Without --real-packets, kernel backends decide with BPF_PROG_TEST_RUN (ebpf) or by tracing
the generated rules (iptables, ipset). With --real-packets every probe becomes a real packet in
a namespace testbed, once per backend (root); SCTP probes are left out with a warning. These
backends carry real packets too, but decide only with --real-packets:
  ` + "%REAL%" + `

Exit status: 0 when every backend agrees with the reference on every probe, 1 when any
disagrees, 2 on bad input, 3 when a backend could not run (load, sync or testbed failure).`,
		Example: `  netpolbench gen --preset small -o small.yaml --probes probes.yaml
  netpolbench verdict -f small.yaml --probes probes.yaml --backends reference,compiled,ebpf
  netpolbench verdict -f small.yaml --probes probes.yaml --backends reference,ebpf,iptables,ipset --real-packets -o json`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return runVerdict(cmd, vf) },
	}
	f := cmd.Flags()
	f.StringArrayVarP(&vf.files, "file", "f", nil, "cluster file (YAML or JSON; repeatable)")
	f.StringVar(&vf.probes, "probes", "", "probes file (required)")
	f.StringSliceVar(&vf.backends, "backends", []string{"reference", "compiled"}, "backends to compare, comma-separated")
	f.StringVarP(&vf.output, "output", "o", "table", "output format: table or json")
	f.BoolVar(&vf.realPackets, "real-packets", false, "send every probe as a real packet through a namespace testbed (root)")
	f.StringVar(&vf.layout, "layout", "hash", "eBPF ipcache layout: hash (pod /32s in a hash, CIDRs in an LPM trie) or cilium (everything in one LPM trie)")
	f.StringVar(&vf.iptablesMode, "iptables-mode", "nft", "iptables binary flavour: nft or legacy")
	rootCmd.AddCommand(cmd)
	beforeExecute = append(beforeExecute, func() {
		cmd.Long = strings.Replace(cmd.Long, "%BACKENDS%", backendHelp((*catalogue.Backend).CanDecide), 1)
		real := catalogue.Names(func(b *catalogue.Backend) bool { return b.InRealPackets() && !b.CanDecide() })
		cmd.Long = strings.Replace(cmd.Long, "%REAL%", strings.Join(real, ", "), 1)
	})
}

// backendHelp lists the backends keep accepts, one line each with its help.
func backendHelp(keep func(*catalogue.Backend) bool) string {
	names := catalogue.Names(keep)
	width := 0
	for _, n := range names {
		width = max(width, len(n))
	}
	var b strings.Builder
	for _, n := range names {
		fmt.Fprintf(&b, "\n  %-*s %s", width, n, catalogue.MustGet(n).Help)
	}
	return b.String()
}

// probeResult is one probe in the JSON output.
type probeResult struct {
	From        string            `json:"from"`
	To          string            `json:"to"`
	Port        int               `json:"port"`
	Protocol    string            `json:"protocol"`
	Verdicts    map[string]string `json:"verdicts"`
	Explanation string            `json:"explanation"`
	want        policy.Verdict
}

type verdictOutput struct {
	Probes []probeResult `json:"probes"`
	Agree  bool          `json:"agree"`
}

// readProbes parses a probes file; a missing protocol means TCP.
func readProbes(path string) ([]workloads.Probe, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read probes: %w", err)
	}
	var pf workloads.ProbesFile
	if err := yaml.UnmarshalStrict(b, &pf); err != nil {
		return nil, fmt.Errorf("read probes %s: %w", path, err)
	}
	if len(pf.Probes) == 0 {
		return nil, fmt.Errorf("read probes %s: no probes (want a top-level probes: list)", path)
	}
	for i := range pf.Probes {
		if pf.Probes[i].Protocol == "" {
			pf.Probes[i].Protocol = "TCP"
		}
	}
	return pf.Probes, nil
}

func runVerdict(cmd *cobra.Command, vf verdictFlags) error {
	if len(vf.files) == 0 {
		return usageErr(errors.New("verdict: give the cluster with -f FILE"))
	}
	if vf.probes == "" {
		return usageErr(errors.New("verdict: give the probes with --probes FILE"))
	}
	if vf.output != "table" && vf.output != "json" {
		return usageErr(fmt.Errorf("verdict: -o must be table or json, got %q", vf.output))
	}
	var backends []*catalogue.Backend
	for _, n := range vf.backends {
		b, err := catalogue.Get(n)
		if err != nil {
			return usageErr(fmt.Errorf("verdict: %w", err))
		}
		if vf.realPackets && !b.InRealPackets() {
			return usageErr(fmt.Errorf("verdict: backend %s cannot carry real packets", n))
		}
		if !vf.realPackets && !b.CanDecide() {
			return usageErr(fmt.Errorf("verdict: backend %s decides only with --real-packets", n))
		}
		backends = append(backends, b)
	}
	layout, err := datapath.ParseLayout(vf.layout)
	if err != nil {
		return usageErr(fmt.Errorf("verdict: --layout: %w", err))
	}
	mode, err := iptables.ParseMode(vf.iptablesMode)
	if err != nil {
		return usageErr(fmt.Errorf("verdict: --iptables-mode: %w", err))
	}
	cluster, warnings, err := policy.Load(vf.files...)
	if err != nil {
		return usageErr(err)
	}
	for _, w := range warnings {
		fmt.Fprintln(cmd.ErrOrStderr(), "warning:", w)
	}
	probes, err := readProbes(vf.probes)
	if err != nil {
		return usageErr(err)
	}
	flows := make([]policy.Flow, len(probes))
	for i, p := range probes {
		if flows[i], err = p.Flow(cluster); err != nil {
			return usageErr(fmt.Errorf("%s: probes[%d]: %w", vf.probes, i, err))
		}
	}
	// The reference sees the cluster as loaded; the compiler takes its own copy.
	reference := cluster.Clone()
	comp, err := policy.Compile(cluster, policy.Options{})
	if err != nil {
		return usageErr(err)
	}
	env := catalogue.Env{State: comp.State(), Layout: layout, IptablesMode: mode}

	verdicts := map[string][]policy.Verdict{}
	if vf.realPackets {
		// The testbed cannot send SCTP (Go has no SCTP sockets, and this suite's kernels may
		// lack the module): leave those probes out, say so, and decide the rest.
		keptProbes, keptFlows := probes[:0:0], flows[:0:0]
		for i, f := range flows {
			if f.Proto != policy.ProtoSCTP {
				keptProbes, keptFlows = append(keptProbes, probes[i]), append(keptFlows, f)
			}
		}
		if skipped := len(flows) - len(keptFlows); skipped > 0 {
			fmt.Fprintf(cmd.ErrOrStderr(), "warning: --real-packets: skipping %d SCTP probes (the testbed sends TCP, UDP and ICMP only)\n", skipped)
		}
		probes, flows = keptProbes, keptFlows
		if len(flows) == 0 {
			return usageErr(errors.New("verdict: --real-packets: no probe left to send"))
		}
		for _, f := range flows {
			if err := testbed.CanSend(f); err != nil {
				return usageErr(err)
			}
		}
		ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
		defer stop()
		verdicts, err = catalogue.RealPackets(ctx, comp.State(), vf.backends, flows, catalogue.RealOptions{Env: env})
		if errors.Is(err, testbed.ErrNeedRoot) {
			return usageErr(err)
		}
		if err != nil {
			return runtimeErr(err)
		}
	} else {
		for _, b := range backends {
			d, err := b.Decider(env)
			if err != nil {
				return runtimeErr(fmt.Errorf("open backend %s: %w", b.Name, err))
			}
			vs, err := catalogue.DecideAll(d, flows)
			if err != nil {
				return runtimeErr(fmt.Errorf("backend %s: %w", b.Name, err))
			}
			verdicts[b.Name] = vs
		}
	}

	out := verdictOutput{Agree: true}
	for i, p := range probes {
		want, ex := reference.Evaluate(flows[i])
		r := probeResult{From: p.From, To: p.To, Port: p.Port, Protocol: strings.ToUpper(p.Protocol),
			Verdicts: map[string]string{}, Explanation: ex.String(), want: want}
		for _, b := range vf.backends {
			v := verdicts[b][i]
			r.Verdicts[b] = v.String()
			if v != want {
				out.Agree = false
			}
		}
		out.Probes = append(out.Probes, r)
	}
	w := cmd.OutOrStdout()
	if vf.output == "json" {
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		if err := enc.Encode(out); err != nil {
			return err
		}
	} else {
		writeVerdictTable(w, out, vf.backends)
	}
	if !out.Agree {
		return &exitError{code: 1, err: errors.New("verdict: backends disagree with the reference (cells marked *)")}
	}
	return nil
}

func writeVerdictTable(w io.Writer, out verdictOutput, backends []string) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprint(tw, "FROM\tTO\tPORT")
	for _, b := range backends {
		fmt.Fprintf(tw, "\t%s", strings.ToUpper(b))
	}
	fmt.Fprintln(tw, "\tWHY (reference)")
	disagree := 0
	type tally struct{ agree, disagree int }
	perProto := map[string]*tally{}
	var protos []string
	for _, p := range out.Probes {
		port := fmt.Sprintf("%d/%s", p.Port, p.Protocol)
		if p.Protocol == "ICMP" {
			port = "ICMP"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s", p.From, p.To, port)
		want := p.want.String()
		bad := false
		for _, b := range backends {
			v := p.Verdicts[b]
			if v != want {
				v += " *"
				bad = true
			}
			fmt.Fprintf(tw, "\t%s", v)
		}
		t := perProto[p.Protocol]
		if t == nil {
			t = &tally{}
			perProto[p.Protocol] = t
			protos = append(protos, p.Protocol)
		}
		if bad {
			disagree++
			t.disagree++
		} else {
			t.agree++
		}
		fmt.Fprintf(tw, "\t%s\n", p.Explanation)
	}
	tw.Flush()
	fmt.Fprintf(w, "\n%d probes, %d backends: ", len(out.Probes), len(backends))
	if disagree == 0 {
		fmt.Fprintln(w, "every backend agrees with the reference")
	} else {
		fmt.Fprintf(w, "%d probes with a disagreement (marked *)\n", disagree)
		sort.Strings(protos)
		for _, p := range protos {
			fmt.Fprintf(w, "  %-5s agree %d, disagree %d\n", p, perProto[p].agree, perProto[p].disagree)
		}
	}
}
