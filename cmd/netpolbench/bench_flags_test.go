package main

import (
	"slices"
	"strings"
	"testing"

	"github.com/spf13/pflag"

	"netpolbench/bench"
)

// TestAPIServerFlagsShapeTheEndToEndPhase: the default sweep ends with the end-to-end phase at
// 1k and 10k pods; other --pods keep the scales the sweep has; --apiserver and --kubeconfig run
// it alone; --no-apiserver and --cluster leave it out, and refuse flags that ask for it.
func TestAPIServerFlagsShapeTheEndToEndPhase(t *testing.T) {
	cases := []struct {
		name  string
		base  bench.Spec
		args  []string
		a     apiServerFlags
		pods  []int // the end-to-end scales; nil: no phase
		sweep bool  // the other phases keep their scales
		qps   []float64
		kube  string
		err   string
	}{
		{name: "default", base: bench.DefaultSpec(), pods: []int{1000, 10000}, sweep: true, qps: []float64{20, 100}},
		{name: "other pods", base: bench.DefaultSpec(), args: []string{"--pods", "100,1000"}, pods: []int{1000}, sweep: true},
		{name: "pods without its scales", base: bench.DefaultSpec(), args: []string{"--pods", "100"}, sweep: true},
		{name: "quick", base: bench.QuickSpec(), sweep: true},
		{name: "quick, alone", base: bench.QuickSpec(), a: apiServerFlags{only: true}, pods: []int{1000, 10000}},
		{name: "alone, its own scales and rates", base: bench.DefaultSpec(), args: []string{"--apiserver-pods", "100", "--apiserver-qps", "5,50"},
			a: apiServerFlags{only: true, pods: "100", qps: "5,50"}, pods: []int{100}, qps: []float64{5, 50}},
		{name: "kubeconfig", base: bench.DefaultSpec(), a: apiServerFlags{kubeconfig: "kc"}, pods: []int{1000, 10000}, kube: "kc"},
		{name: "off", base: bench.DefaultSpec(), a: apiServerFlags{off: true}, sweep: true},
		{name: "cluster", base: bench.DefaultSpec(), a: apiServerFlags{cluster: "dump.yaml"}, sweep: true},
		{name: "off and asked", base: bench.DefaultSpec(), a: apiServerFlags{off: true, only: true}, err: "--no-apiserver"},
		{name: "cluster and asked", base: bench.DefaultSpec(), args: []string{"--apiserver-pods", "100"}, a: apiServerFlags{cluster: "d", pods: "100"}, err: "--cluster"},
		{name: "bad rate", base: bench.DefaultSpec(), args: []string{"--apiserver-qps", "5,x"}, a: apiServerFlags{qps: "5,x"}, err: "--apiserver-qps"},
	}
	for _, c := range cases {
		f := pflag.NewFlagSet(c.name, pflag.ContinueOnError)
		for _, n := range []string{"pods", "backends", "apiserver-pods", "apiserver-qps"} {
			f.String(n, "", "")
		}
		if err := f.Parse(c.args); err != nil {
			t.Fatal(err)
		}
		base := c.base
		if f.Changed("pods") {
			base.Pods, _ = parseBenchInts(f.Lookup("pods").Value.String())
		}
		got, err := applyAPIServerFlags(base, f, c.a)
		if c.err != "" {
			if err == nil || !strings.Contains(err.Error(), c.err) {
				t.Errorf("%s: err %v, want one naming %s", c.name, err, c.err)
			}
			continue
		}
		if err != nil {
			t.Errorf("%s: %v", c.name, err)
			continue
		}
		if err := got.Validate(); err != nil {
			t.Errorf("%s: %v", c.name, err)
		}
		switch {
		case c.pods == nil && got.APIServer != nil:
			t.Errorf("%s: end-to-end phase at %v, want none", c.name, got.APIServer.Pods)
		case c.pods != nil && (got.APIServer == nil || !slices.Equal(got.APIServer.Pods, c.pods)):
			t.Errorf("%s: end-to-end phase %+v, want at %v", c.name, got.APIServer, c.pods)
		case c.pods != nil && c.qps != nil && !slices.Equal(got.APIServer.QPS, c.qps):
			t.Errorf("%s: rates %v, want %v", c.name, got.APIServer.QPS, c.qps)
		case c.pods != nil && got.APIServer.Kubeconfig != c.kube:
			t.Errorf("%s: kubeconfig %q, want %q", c.name, got.APIServer.Kubeconfig, c.kube)
		}
		if kept := len(got.Pods) > 0; kept != c.sweep {
			t.Errorf("%s: the other phases' scales %v, want kept: %v", c.name, got.Pods, c.sweep)
		}
	}
	if d := bench.DefaultSpec(); d.APIServer == nil || len(d.APIServer.Backends) == 0 {
		t.Error("the default sweep has no end-to-end phase with backends")
	}
}
