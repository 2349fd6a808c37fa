package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"netpolbench/controlplane"
)

func init() {
	cluster := &cobra.Command{
		Use:   "cluster",
		Short: "Run a throwaway Kubernetes control plane (etcd and kube-apiserver) on loopback",
		Long: `cluster up starts etcd and kube-apiserver ` + controlplane.KubeVersion + ` on free 127.0.0.1 ports, with a
throwaway data directory and certificates, prints the admin kubeconfig's path and runs until
interrupted (Ctrl-C, SIGTERM, or cluster down from another shell); then it stops both and
removes everything. There is no scheduler, controller manager or kubelet: objects stay as
written, and a pod gets an address only when its status.podIP is written, as a kubelet would.
make controlplane builds kube-apiserver into the cache directory and installs etcd-server.`,
	}
	var wait time.Duration
	up := &cobra.Command{
		Use:   "up",
		Short: "Start the control plane and run until interrupted",
		Example: `  netpolbench cluster up &
  export KUBECONFIG=$(netpolbench cluster kubeconfig)
  kubectl apply -f small.yaml`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			cp, err := controlplane.Start(ctx, controlplane.Options{})
			if err != nil {
				return runtimeErr(fmt.Errorf("cluster up: %w", err))
			}
			// Marks the run as cluster up's: down and kubeconfig leave other runs (tests,
			// benchmarks) alone.
			if err := os.WriteFile(filepath.Join(cp.Dir, upMarker), nil, 0o644); err != nil {
				cp.Stop()
				return runtimeErr(fmt.Errorf("cluster up: %w", err))
			}
			out := cmd.OutOrStdout()
			fmt.Fprintf(out, "control plane ready: etcd in %s, kube-apiserver in %s\n",
				cp.EtcdReady.Round(time.Millisecond), cp.APIServerReady.Round(time.Millisecond))
			fmt.Fprintf(out, "API server %s\nexport KUBECONFIG=%s\n", cp.URL, cp.Kubeconfig)
			<-ctx.Done()
			fmt.Fprintln(out, "stopping the control plane")
			if err := cp.Stop(); err != nil {
				return runtimeErr(fmt.Errorf("cluster up: stop: %w", err))
			}
			return nil
		},
	}
	down := &cobra.Command{
		Use:   "down",
		Short: "Stop the control planes cluster up runs (not those of tests or benchmarks), and wait until they are gone",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			left, err := controlplane.Leftovers()
			if err != nil {
				return runtimeErr(err)
			}
			var live []controlplane.Leftover
			for _, l := range left {
				if l.Live && l.PID != os.Getpid() && exists(filepath.Join(l.Dir, upMarker)) {
					live = append(live, l)
				}
			}
			if len(live) == 0 {
				fmt.Fprintln(cmd.OutOrStdout(), "no control plane is running (netpolbench cleanup removes what dead runs left)")
				return nil
			}
			var errs []error
			for _, l := range live {
				if err := syscall.Kill(l.PID, syscall.SIGTERM); err != nil {
					errs = append(errs, fmt.Errorf("cluster down: signal run %d: %w", l.PID, err))
					continue
				}
				if !gone(l.Dir, wait) {
					errs = append(errs, fmt.Errorf("cluster down: run %d still has %s after %s", l.PID, l.Dir, wait))
					continue
				}
				fmt.Fprintln(cmd.OutOrStdout(), "stopped", l.Dir)
			}
			if err := errors.Join(errs...); err != nil {
				return runtimeErr(err)
			}
			return nil
		},
	}
	down.Flags().DurationVar(&wait, "wait", 30*time.Second, "how long to wait for each control plane to stop")
	kubeconfig := &cobra.Command{
		Use:   "kubeconfig",
		Short: "Print the admin kubeconfig path of the running control plane",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			// cluster up may still be starting: give it the time a start takes.
			deadline := time.Now().Add(wait)
			for {
				left, err := controlplane.Leftovers()
				if err != nil {
					return runtimeErr(err)
				}
				for _, l := range left {
					if p := filepath.Join(l.Dir, "kubeconfig"); l.Live && exists(p) && exists(filepath.Join(l.Dir, upMarker)) {
						fmt.Fprintln(cmd.OutOrStdout(), p)
						return nil
					}
				}
				if time.Now().After(deadline) {
					return runtimeErr(errors.New("cluster kubeconfig: no control plane is running (start one with netpolbench cluster up)"))
				}
				time.Sleep(200 * time.Millisecond)
			}
		},
	}
	kubeconfig.Flags().DurationVar(&wait, "wait", 30*time.Second, "how long to wait for a starting control plane")
	cluster.AddCommand(up, down, kubeconfig)
	rootCmd.AddCommand(cluster)
}

// upMarker is the file cluster up leaves in its run directory.
const upMarker = "cluster-up"

// gone waits until a path no longer exists.
func gone(path string, timeout time.Duration) bool {
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		if !exists(path) {
			return true
		}
		time.Sleep(100 * time.Millisecond)
	}
	return !exists(path)
}

func exists(path string) bool {
	_, err := os.Stat(path)
	return err == nil
}
