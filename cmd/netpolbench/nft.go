package main

import (
	"errors"
	"fmt"
	"io"
	"net/netip"
	"strings"

	"github.com/spf13/cobra"

	"netpolbench/internal/netns"
	"netpolbench/nftables"
	"netpolbench/policy"
)

// nftTable syncs s into the nftables backend's Fake and returns the table it wrote: what the
// backend would apply, without a kernel.
func nftTable(s *policy.State) (*nftables.Table, error) {
	f := nftables.NewFake()
	b, err := nftables.New(nftables.Config{NFT: f})
	if err != nil {
		return nil, err
	}
	if _, err := b.Sync(s); err != nil {
		return nil, fmt.Errorf("sync the nftables table: %w", err)
	}
	return f.Table(), nil
}

func init() {
	var files []string
	var pod, nsName string
	nftCmd := &cobra.Command{Use: "nft", Short: "Inspect the nftables backend's table"}
	show := &cobra.Command{
		Use:   "show {-f cluster.yaml | --netns NAME} [--pod ns/name|ADDR]",
		Short: "Print the nftables table as nft list prints it",
		Long: `nft show prints the inet table "netpolbench" the nftables backend writes for a cluster,
as ` + "`nft list table`" + ` prints it: the forward chain, the egress and ingress verdict maps
that lead a pod's packets to the chain of its rule set, the rule-set chains and the peer sets
they match. With -f the table is what a sync of the cluster writes (on knftables' Fake, no
kernel); with --netns it is read from the kernel in that network namespace (a testbed's node
namespace while the nftables backend is in force there).

With --pod only what that pod's traffic walks is shown: the forward chain, the pod's
verdict map elements, the chains they lead to and the sets those match (long sets cut short).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if (len(files) > 0) == (nsName != "") {
				return usageErr(errors.New("nft show: give the cluster with -f or a namespace with --netns"))
			}
			var tab *nftables.Table
			var s *policy.State
			if nsName != "" {
				ns, err := netns.OpenIsolated(nsName)
				if err != nil {
					return usageErr(fmt.Errorf("nft show: %w", err))
				}
				defer ns.Close()
				if tab, err = nftables.ReadKernel(ns); err != nil {
					return fmt.Errorf("nft show: %w", err)
				}
			} else {
				comp, err := loadCompiled(cmd, files)
				if err != nil {
					return err
				}
				s = comp.State()
				if tab, err = nftTable(s); err != nil {
					return fmt.Errorf("nft show: %w", err)
				}
			}
			if pod == "" {
				_, err := io.WriteString(cmd.OutOrStdout(), tab.List())
				return err
			}
			ip, err := podAddr(s, pod)
			if err != nil {
				return usageErr(fmt.Errorf("nft show: %w", err))
			}
			_, err = io.WriteString(cmd.OutOrStdout(), tab.ListFor(ip))
			return err
		},
	}
	show.Flags().StringArrayVarP(&files, "file", "f", nil, "cluster file (repeatable)")
	show.Flags().StringVar(&nsName, "netns", "", "read the table from this network namespace instead")
	show.Flags().StringVar(&pod, "pod", "", "only what this pod's traffic walks (namespace/name, or its address)")
	nftCmd.AddCommand(show)
	rootCmd.AddCommand(nftCmd)
}

// podAddr resolves a pod given as namespace/name (needs the state) or as its address.
func podAddr(s *policy.State, pod string) (netip.Addr, error) {
	if ip, err := netip.ParseAddr(pod); err == nil {
		return ip, nil
	}
	if s == nil || !strings.Contains(pod, "/") {
		return netip.Addr{}, fmt.Errorf("--pod %q: give the pod's address (with --netns there is no cluster to look names up in)", pod)
	}
	ep, ok := s.EndpointByPod(pod)
	if !ok {
		return netip.Addr{}, fmt.Errorf("no pod %s", pod)
	}
	return ep.Pod.IP, nil
}
