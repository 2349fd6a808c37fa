package main

import (
	"errors"
	"fmt"

	"github.com/spf13/cobra"

	"netpolbench/gate"
	"netpolbench/results"
)

func init() {
	opt := gate.DefaultOptions()
	var basePath, curPath, output, writeBaseline string
	var verbose bool
	cmd := &cobra.Command{
		Use:   "gate --baseline base.json --current new.json",
		Short: "Fail when a run regressed against a baseline (exit 0 clean, 1 regressed, 2 no usable baseline)",
		Long: `gate compares two results.json files. Exact figures (rules, map entries, bytes, verified
instructions) must not grow. Timings are compared only as the same-run ratios the runs declare
(a timing over its floor, or backend over backend), with a Mann-Whitney U test at --alpha (a
Wilcoxon signed-rank test, event by event, for ratios declared paired: churn apply times) and a
--min-effect relative change, and only between runs of the same CPU model and core count. Raw
timings are never gated: machines differ.

To update the baseline on purpose, rerun the same small bench and write its results as the new
baseline (--write-baseline drops the bulky histogram encodings):

  netpolbench gate --current results/<run>/results.json --write-baseline testdata/baseline/ci.json

and commit it with the change that moved the figures, saying why in the commit message.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if writeBaseline != "" {
				if curPath == "" {
					return usageErr(errors.New("gate: --write-baseline needs --current"))
				}
				cur, err := results.Load(resultsPath(curPath))
				if err != nil {
					return usageErr(err)
				}
				if err := results.Save(writeBaseline, gate.Baseline(cur)); err != nil {
					return err
				}
				fmt.Fprintf(cmd.OutOrStdout(), "wrote baseline %s from %s\n", writeBaseline, curPath)
				return nil
			}
			if basePath == "" || curPath == "" {
				return usageErr(errors.New("gate: --baseline and --current are required"))
			}
			if output != "table" && output != "json" {
				return usageErr(fmt.Errorf("gate: -o %q: want table or json", output))
			}
			if opt.Alpha <= 0 || opt.Alpha >= 1 || opt.MinEffect < 0 {
				return usageErr(fmt.Errorf("gate: --alpha must be in (0,1) and --min-effect ≥ 0"))
			}
			base, cur, err := gate.Load(resultsPath(basePath), resultsPath(curPath))
			if err != nil {
				return &exitError{code: 2, err: err}
			}
			res := gate.Compare(base, cur, opt)
			w := cmd.OutOrStdout()
			if output == "json" {
				err = gate.WriteJSON(w, res)
			} else {
				err = gate.WriteTable(w, res, verbose)
			}
			if err != nil {
				return err
			}
			switch res.ExitCode() {
			case 1:
				return &exitError{code: 1, err: fmt.Errorf("gate: %d figure(s) regressed against %s", res.Regressed, basePath)}
			case 2:
				return &exitError{code: 2, err: fmt.Errorf("gate: %s: nothing in %s is comparable with %s", gate.VerdictUnusable, basePath, curPath)}
			}
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&basePath, "baseline", "", "baseline results.json (required)")
	f.StringVar(&curPath, "current", "", "current results.json (required)")
	f.Float64Var(&opt.Alpha, "alpha", opt.Alpha, "significance level of the Mann-Whitney U test (signed-rank for paired ratios)")
	f.Float64Var(&opt.MinEffect, "min-effect", opt.MinEffect, "smallest relative change of a ratio's median that counts (0.05 = 5%)")
	f.StringVarP(&output, "output", "o", "table", "output format: table or json")
	f.StringVar(&writeBaseline, "write-baseline", "", "write --current, trimmed, as a new baseline file instead of gating")
	f.BoolVarP(&verbose, "verbose", "v", false, "list unchanged figures too")
	cmd.AddCommand(gateSpreadCmd())
	rootCmd.AddCommand(cmd)
}

func gateSpreadCmd() *cobra.Command {
	var minEffect float64
	var writeBaseline string
	cmd := &cobra.Command{
		Use:   "spread RUN RUN [RUN...]",
		Short: "How far each same-run ratio moves between runs of one binary, and which are stable enough to gate",
		Long: `spread reads results.json files of repeated runs of the same binary, spec and seed on one
machine kind (five at least, ten is better), and prints, per ratio the first run declares, its
median in each run, its spread ((largest − smallest median) / their median) and its largest
distance from the first run's median. A ratio whose spread is under --min-effect and whose
distance is under half of it can be gated without failing on noise; with --write-baseline the
first run is written as a baseline that gates exactly those ratios (and every exact figure), so
give first the run nearest the others.

Exact figures that differ between the runs are listed: they are not deterministic, which is a bug.

  netpolbench gate spread r1/results.json r2/results.json r3/results.json r4/results.json r5/results.json \
    --min-effect 0.5 --write-baseline testdata/baseline/ci.json`,
		Args: cobra.MinimumNArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			var runs []*results.Run
			for _, a := range args {
				run, err := results.Load(resultsPath(a))
				if err != nil {
					return usageErr(err)
				}
				if run.Partial() {
					return usageErr(fmt.Errorf("gate spread: %s is a partial run", a))
				}
				runs = append(runs, run)
			}
			rows, unequal, err := gate.Spread(runs, minEffect)
			if err != nil {
				return usageErr(err)
			}
			w := cmd.OutOrStdout()
			if err := gate.WriteSpreadTable(w, rows, minEffect); err != nil {
				return err
			}
			for _, u := range unequal {
				fmt.Fprintf(w, "exact figure differs between runs: %s\n", u)
			}
			if writeBaseline != "" {
				if err := results.Save(writeBaseline, gate.StableBaseline(runs[0], rows)); err != nil {
					return err
				}
				n := 0
				for _, r := range rows {
					if r.Stable {
						n++
					}
				}
				fmt.Fprintf(w, "wrote baseline %s from %s: %d of %d ratios gated\n", writeBaseline, args[0], n, len(rows))
			}
			if len(unequal) > 0 {
				return &exitError{code: 1, err: fmt.Errorf("gate spread: %d exact figure(s) differ between runs of one binary", len(unequal))}
			}
			return nil
		},
	}
	cmd.Flags().Float64Var(&minEffect, "min-effect", 0.5, "the gate's minimum effect: a ratio whose spread is under it and whose distance from the first run is under half of it can be gated (0.5 = 50%, as .ci/run)")
	cmd.Flags().StringVar(&writeBaseline, "write-baseline", "", "write the first run as a baseline gating only the stable ratios")
	return cmd
}
