package main

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"netpolbench/workloads"
)

func init() {
	var (
		specFile, preset, out, probesFile string
		pods, probeCount                  int
		seed                              uint64
	)
	cmd := &cobra.Command{
		Use:   "gen",
		Short: "Generate a synthetic cluster as Kubernetes YAML",
		Long: `gen writes a deterministic synthetic cluster (Namespaces, Pods with status.podIP and
container ports, NetworkPolicies) as one multi-document YAML stream that kubectl apply -f
accepts and netpolbench reads back to the same state. The same spec and seed give the same
bytes. Pod IPs come from 198.18.0.0/15, external hosts from 203.0.113.0/24.

Presets: ` + strings.Join(workloads.Presets(), ", ") + `.`,
		Example: `  netpolbench gen --preset small -o small.yaml --probes probes.yaml
  netpolbench gen --preset huge --pods 50000 --seed 7 > cluster.yaml
  netpolbench gen --spec myspec.yaml -o cluster.yaml`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			f := cmd.Flags()
			if f.Changed("spec") && f.Changed("preset") {
				return usageErr(errors.New("gen: give --spec or --preset, not both"))
			}
			var spec workloads.Spec
			var err error
			if specFile != "" {
				spec, err = workloads.LoadSpec(specFile)
			} else {
				spec, err = workloads.Preset(preset)
			}
			if err != nil {
				return usageErr(err)
			}
			if f.Changed("pods") {
				if pods < 1 || pods > workloads.MaxPods {
					return usageErr(fmt.Errorf("gen: --pods must be 1..%d (pod IPs come from 198.18.0.0/15), got %d", workloads.MaxPods, pods))
				}
				spec = spec.WithPods(pods)
			}
			if f.Changed("seed") {
				spec.Seed = seed
			}
			if probeCount < 0 {
				return usageErr(fmt.Errorf("gen: --probe-count must be >= 0, got %d", probeCount))
			}
			start := time.Now()
			g, err := workloads.Generate(spec)
			if err != nil {
				return usageErr(err)
			}
			genTime := time.Since(start)
			stderr := cmd.ErrOrStderr()
			fmt.Fprintf(stderr, "gen: %d pods, %d namespaces, %d label sets, %d policies (seed %d) generated in %v\n",
				len(g.Pods), len(g.Namespaces), len(g.LabelSets), len(g.Policies), g.Spec.Seed, genTime.Round(10*time.Microsecond))

			n, err := genWriteFile(out, cmd.OutOrStdout(), func(w io.Writer) error { return workloads.WriteYAML(w, g) })
			if err != nil {
				return err
			}
			fmt.Fprintf(stderr, "gen: wrote %s (%d bytes) in %v\n", genOutName(out), n, time.Since(start).Round(10*time.Microsecond))
			if probesFile != "" {
				probes := workloads.Probes(g, probeCount, g.Spec.Seed)
				if _, err := genWriteFile(probesFile, nil, func(w io.Writer) error { return workloads.WriteProbes(w, probes) }); err != nil {
					return err
				}
				fmt.Fprintf(stderr, "gen: wrote %d probes to %s\n", len(probes), probesFile)
			}
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&specFile, "spec", "", "workload spec file (YAML); see workloads.Spec")
	f.StringVar(&preset, "preset", "default", "embedded spec: "+strings.Join(workloads.Presets(), ", "))
	f.IntVar(&pods, "pods", 0, "scale the spec to this many pods (label sets and policies scale along)")
	f.Uint64Var(&seed, "seed", 0, "random seed (default: the spec's)")
	f.StringVarP(&out, "output", "o", "", "file to write the cluster YAML to (default stdout)")
	f.StringVar(&probesFile, "probes", "", "also write a probes `file` for netpolbench verdict --probes")
	f.IntVar(&probeCount, "probe-count", 200, "number of probes to write with --probes")
	rootCmd.AddCommand(cmd)
}

func genOutName(path string) string {
	if path == "" || path == "-" {
		return "stdout"
	}
	return path
}

// genWriteFile writes to path through a temporary file renamed into place, so a failed run
// leaves no half-written file; an empty path or "-" writes to stdout.
func genWriteFile(path string, stdout io.Writer, write func(io.Writer) error) (int64, error) {
	if path == "" || path == "-" {
		cw := &genCounter{w: stdout}
		err := write(cw)
		return cw.n, err
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*")
	if err != nil {
		return 0, fmt.Errorf("write %s: %w", path, err)
	}
	defer os.Remove(tmp.Name()) // a no-op after the rename
	cw := &genCounter{w: tmp}
	if err := write(cw); err != nil {
		tmp.Close()
		return 0, fmt.Errorf("write %s: %w", path, err)
	}
	if err := tmp.Close(); err != nil {
		return 0, fmt.Errorf("write %s: %w", path, err)
	}
	if err := os.Chmod(tmp.Name(), 0o644); err != nil {
		return 0, fmt.Errorf("write %s: %w", path, err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return 0, fmt.Errorf("write %s: %w", path, err)
	}
	return cw.n, nil
}

type genCounter struct {
	w io.Writer
	n int64
}

func (c *genCounter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += int64(n)
	return n, err
}
