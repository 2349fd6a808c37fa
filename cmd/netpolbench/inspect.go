package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"netpolbench/policy"
)

// loadCompiled loads cluster files and compiles them; warnings go to stderr.
func loadCompiled(cmd *cobra.Command, files []string) (*policy.Compiler, error) {
	if len(files) == 0 {
		return nil, usageErr(errors.New("give the cluster with -f FILE"))
	}
	cluster, warnings, err := policy.Load(files...)
	if err != nil {
		return nil, usageErr(err)
	}
	for _, w := range warnings {
		fmt.Fprintln(cmd.ErrOrStderr(), "warning:", w)
	}
	comp, err := policy.Compile(cluster, policy.Options{})
	if err != nil {
		return nil, usageErr(err)
	}
	return comp, nil
}

func init() {
	var files []string
	var pod, output string
	var endpoint uint32
	var withNft bool
	policyCmd := &cobra.Command{Use: "policy", Short: "Inspect the compiled policy"}
	get := &cobra.Command{
		Use:   "get -f cluster.yaml [--pod ns/name | --endpoint ID]",
		Short: "Show each endpoint's enforced policy with selectors resolved to identities",
		Long: `policy get prints, per endpoint and direction, the rule set in force: whether the
direction is isolated, the policies that select the endpoint, and every allow entry with the
peer's identity and labels, protocol and ports, as the datapath's maps hold them (in the spirit
of cilium policy get). Endpoints with the same selecting policies share one rule set.

With --nftables each endpoint also shows the part of the nftables backend's table its traffic
walks, as ` + "`nft list table`" + ` prints it (what a sync of the cluster writes; see nft show).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if output != "table" && output != "json" {
				return usageErr(fmt.Errorf("policy get: -o must be table or json, got %q", output))
			}
			comp, err := loadCompiled(cmd, files)
			if err != nil {
				return err
			}
			s := comp.State()
			eps := s.Endpoints()
			switch {
			case pod != "":
				ep, ok := s.EndpointByPod(pod)
				if !ok {
					return usageErr(fmt.Errorf("policy get: no pod %s", pod))
				}
				eps = []*policy.Endpoint{ep}
			case endpoint != 0:
				ep, ok := s.Endpoint(endpoint)
				if !ok {
					return usageErr(fmt.Errorf("policy get: no endpoint %d", endpoint))
				}
				eps = []*policy.Endpoint{ep}
			}
			views := endpointViews(s, eps)
			if withNft {
				tab, err := nftTable(s)
				if err != nil {
					return fmt.Errorf("policy get: %w", err)
				}
				for i, ep := range eps {
					views[i].Nftables = tab.ListFor(ep.Pod.IP)
				}
			}
			if output == "json" {
				return writeJSON(cmd.OutOrStdout(), views)
			}
			writeEndpointPolicies(cmd.OutOrStdout(), views)
			return nil
		},
	}
	get.Flags().StringArrayVarP(&files, "file", "f", nil, "cluster file (repeatable)")
	get.Flags().StringVar(&pod, "pod", "", "only this pod (namespace/name)")
	get.Flags().Uint32Var(&endpoint, "endpoint", 0, "only this endpoint id")
	get.Flags().StringVarP(&output, "output", "o", "table", "output format: table or json")
	get.Flags().BoolVar(&withNft, "nftables", false, "also show the nftables table each endpoint's traffic walks")
	policyCmd.AddCommand(get)
	rootCmd.AddCommand(policyCmd)

	var idFiles []string
	var idOutput string
	identityCmd := &cobra.Command{Use: "identity", Short: "Inspect security identities"}
	list := &cobra.Command{
		Use:   "list -f cluster.yaml",
		Short: "List the security identities allocated for a cluster",
		Long: `identity list prints every allocated identity: pod identities (256-65535) with their
identity-relevant labels and the number of pods holding them, and CIDR identities (scope bit
1<<24) with their ipBlock prefix and the number of policies using it. Reserved identities:
1 host, 2 world (outside the cluster and under no ipBlock prefix).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if idOutput != "table" && idOutput != "json" {
				return usageErr(fmt.Errorf("identity list: -o must be table or json, got %q", idOutput))
			}
			comp, err := loadCompiled(cmd, idFiles)
			if err != nil {
				return err
			}
			ids := comp.State().Identities()
			if idOutput == "json" {
				return writeJSON(cmd.OutOrStdout(), ids)
			}
			tw := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 0, 2, ' ', 0)
			fmt.Fprintln(tw, "ID\tREFS\tLABELS")
			for _, id := range ids {
				fmt.Fprintf(tw, "%d\t%d\t%s\n", id.ID, id.Refs, strings.Join(id.Labels, " "))
			}
			return tw.Flush()
		},
	}
	list.Flags().StringArrayVarP(&idFiles, "file", "f", nil, "cluster file (repeatable)")
	list.Flags().StringVarP(&idOutput, "output", "o", "table", "output format: table or json")
	identityCmd.AddCommand(list)
	rootCmd.AddCommand(identityCmd)
}

func writeJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

type entryView struct {
	Peer       policy.Identity `json:"peer"`
	PeerLabels []string        `json:"peerLabels,omitempty"`
	Protocol   string          `json:"protocol"`
	Port       string          `json:"port"`
}

type directionView struct {
	RuleSet  policy.RuleSetID `json:"ruleSet"`
	Isolated bool             `json:"isolated"`
	Policies []string         `json:"policies,omitempty"`
	Entries  []entryView      `json:"entries,omitempty"`
}

type endpointView struct {
	ID       uint32          `json:"id"`
	Pod      string          `json:"pod"`
	IP       string          `json:"ip"`
	Identity policy.Identity `json:"identity"`
	Ingress  directionView   `json:"ingress"`
	Egress   directionView   `json:"egress"`
	// Nftables is the part of the nftables table the endpoint's traffic walks (--nftables).
	Nftables string `json:"nftables,omitempty"`
}

func endpointViews(s *policy.State, eps []*policy.Endpoint) []endpointView {
	dir := func(id policy.RuleSetID) directionView {
		rs, ok := s.RuleSet(id)
		if !ok {
			return directionView{RuleSet: id}
		}
		v := directionView{RuleSet: id, Isolated: true, Policies: rs.Policies}
		for _, e := range rs.Entries {
			ev := entryView{Peer: e.Peer, Protocol: e.Proto.String(), Port: portString(e)}
			if info, ok := s.Identity(e.Peer); ok {
				ev.PeerLabels = info.Labels
			}
			v.Entries = append(v.Entries, ev)
		}
		return v
	}
	out := make([]endpointView, 0, len(eps))
	for _, ep := range eps {
		out = append(out, endpointView{ID: ep.ID, Pod: ep.Pod.Key(), IP: ep.Pod.IP.String(),
			Identity: ep.Identity, Ingress: dir(ep.Ingress), Egress: dir(ep.Egress)})
	}
	return out
}

func portString(e policy.Entry) string {
	switch {
	case e.NamedPort != "":
		return e.NamedPort + " (at the destination)"
	case e.Proto == policy.ProtoAny || e.Port == 0:
		return "ANY"
	case e.EndPort != e.Port:
		return fmt.Sprintf("%d-%d", e.Port, e.EndPort)
	}
	return fmt.Sprint(e.Port)
}

func writeEndpointPolicies(w io.Writer, views []endpointView) {
	for _, v := range views {
		fmt.Fprintf(w, "Endpoint %d  %s  %s  identity %d\n", v.ID, v.Pod, v.IP, v.Identity)
		for _, d := range []struct {
			name string
			v    directionView
		}{{"Ingress", v.Ingress}, {"Egress", v.Egress}} {
			if !d.v.Isolated {
				fmt.Fprintf(w, "  %s: not isolated (allow all)\n", d.name)
				continue
			}
			fmt.Fprintf(w, "  %s: rule set %d, isolated by %s, %d entries\n", d.name, d.v.RuleSet, strings.Join(d.v.Policies, ", "), len(d.v.Entries))
			tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
			fmt.Fprintln(tw, "    PEER\tPROTO\tPORT\tPEER LABELS")
			for _, e := range d.v.Entries {
				fmt.Fprintf(tw, "    %s\t%s\t%s\t%s\n", e.Peer, e.Protocol, e.Port, strings.Join(e.PeerLabels, " "))
			}
			tw.Flush()
		}
		if v.Nftables != "" {
			fmt.Fprintln(w, "  nftables (what its traffic walks):")
			for _, l := range strings.Split(strings.TrimSuffix(v.Nftables, "\n"), "\n") {
				fmt.Fprintln(w, "    "+l)
			}
		}
		fmt.Fprintln(w)
	}
}
