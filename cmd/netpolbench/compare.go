package main

import (
	"bytes"
	"errors"
	"fmt"
	"os"

	"github.com/spf13/cobra"

	"netpolbench/gate"
	"netpolbench/reports"
)

func init() {
	opt := gate.DefaultOptions()
	var out string
	cmd := &cobra.Command{
		Use:   "compare base.json new.json -o diff.html",
		Short: "Render an HTML comparison of two runs with the gate's verdict per metric",
		Long: `compare draws old-vs-new overlays of two results.json files and the regression gate's
verdict for every exact figure and same-run ratio. It always exits 0 when the page was written;
use 'netpolbench gate' to fail on a regression.`,
		Args: cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			if out == "" {
				return usageErr(errors.New("compare: -o diff.html is required"))
			}
			base, cur, err := gate.Load(resultsPath(args[0]), resultsPath(args[1]))
			if err != nil {
				return &exitError{code: 2, err: err}
			}
			res := gate.Compare(base, cur, opt)
			var buf bytes.Buffer
			if err := reports.RenderCompare(&buf, base, cur, res); err != nil {
				return err
			}
			if err := os.WriteFile(out, buf.Bytes(), 0o644); err != nil {
				return fmt.Errorf("write comparison: %w", err)
			}
			fmt.Fprintf(cmd.OutOrStdout(), "wrote %s: gate %s (%d regressed, %d improved of %d compared)\n",
				out, res.Verdict, res.Regressed, res.Improved, res.Compared)
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVarP(&out, "output", "o", "", "HTML file to write (required)")
	f.Float64Var(&opt.Alpha, "alpha", opt.Alpha, "significance level of the Mann-Whitney U test")
	f.Float64Var(&opt.MinEffect, "min-effect", opt.MinEffect, "smallest relative change of a ratio's median that counts")
	rootCmd.AddCommand(cmd)
}
