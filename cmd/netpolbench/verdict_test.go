package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"netpolbench/catalogue"
	"netpolbench/policy"
)

func init() {
	// A deliberately wrong backend, to see disagreements reported.
	catalogue.Register(&catalogue.Backend{Name: "test-allow-all", Help: "test only: allows everything", Family: catalogue.InProcess,
		Decide: func(catalogue.Env) (catalogue.Decider, error) { return allowAll{}, nil }})
}

type allowAll struct{}

func (allowAll) Verdict(policy.Flow) (policy.Verdict, error) { return policy.Allow, nil }
func (allowAll) Close() error                                { return nil }

// run executes the CLI in-process and returns stdout and the exit code main would use.
func run(t *testing.T, args ...string) (string, int) {
	t.Helper()
	out, code, _ := runErr(t, args...)
	return out, code
}

// runErr is run that also returns the error main would print.
func runErr(t *testing.T, args ...string) (string, int, error) {
	t.Helper()
	resetFlags(rootCmd)
	var out, errOut bytes.Buffer
	rootCmd.SetOut(&out)
	rootCmd.SetErr(&errOut)
	rootCmd.SetArgs(args)
	err := rootCmd.Execute()
	code := 0
	if err != nil {
		code = 2
		var ee *exitError
		if errors.As(err, &ee) {
			code = ee.code
		}
		t.Logf("error: %v", err)
	}
	return out.String(), code, err
}

func init() {
	catalogue.Register(&catalogue.Backend{Name: "test-broken", Help: "test only: cannot open", Family: catalogue.InProcess,
		Decide: func(catalogue.Env) (catalogue.Decider, error) { return nil, errors.New("no such kernel") }})
}

func TestVerdictBackendThatCannotRunExitsThree(t *testing.T) {
	cluster, probes := modelFiles(t)
	if _, code := run(t, "verdict", "-f", cluster, "--probes", probes, "--backends", "reference,test-broken"); code != 3 {
		t.Fatalf("exit %d, want 3", code)
	}
}

// resetFlags puts every flag back to its default: cobra keeps values between Executes.
func resetFlags(c *cobra.Command) {
	c.Flags().VisitAll(func(f *pflag.Flag) {
		if sv, ok := f.Value.(pflag.SliceValue); ok {
			sv.Replace(nil)
			if f.DefValue != "[]" {
				sv.Replace(strings.Split(strings.Trim(f.DefValue, "[]"), ","))
			}
		} else {
			f.Value.Set(f.DefValue)
		}
		f.Changed = false
	})
	for _, sub := range c.Commands() {
		resetFlags(sub)
	}
}

// modelFiles writes the e2e model with one case's policies, and a probes file.
func modelFiles(t *testing.T) (cluster, probes string) {
	t.Helper()
	dir := t.TempDir()
	var b strings.Builder
	b.WriteString("apiVersion: v1\nkind: Namespace\nmetadata: {name: x, labels: {ns: x}}\n---\n")
	b.WriteString("apiVersion: v1\nkind: Namespace\nmetadata: {name: \"y\", labels: {ns: \"y\"}}\n---\n")
	for _, p := range []struct{ ns, name, ip string }{{"x", "a", "198.18.0.1"}, {"x", "b", "198.18.0.2"}, {"y", "a", "198.18.0.17"}} {
		b.WriteString("apiVersion: v1\nkind: Pod\nmetadata: {namespace: \"" + p.ns + "\", name: " + p.name + ", labels: {pod: " + p.name + "}}\n")
		b.WriteString("spec: {containers: [{name: c, image: i, ports: [{name: http, containerPort: 80}]}]}\nstatus: {podIP: " + p.ip + "}\n---\n")
	}
	b.WriteString("apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {namespace: x, name: from-b}\n")
	b.WriteString("spec: {podSelector: {matchLabels: {pod: a}}, ingress: [{from: [{podSelector: {matchLabels: {pod: b}}}], ports: [{port: http}]}]}\n")
	cluster = filepath.Join(dir, "cluster.yaml")
	probes = filepath.Join(dir, "probes.yaml")
	os.WriteFile(cluster, []byte(b.String()), 0o644)
	os.WriteFile(probes, []byte(`probes:
  - {from: x/b, to: x/a, port: 80, protocol: TCP}
  - {from: y/a, to: x/a, port: 80}
  - {from: 203.0.113.10, to: x/a, port: 80, protocol: UDP}
  - {from: x/a, to: 203.0.113.200, port: 443, protocol: TCP}
`), 0o644)
	return cluster, probes
}

func TestVerdictAgreesAndExitsZero(t *testing.T) {
	cluster, probes := modelFiles(t)
	out, code := run(t, "verdict", "-f", cluster, "--probes", probes, "--backends", "reference,compiled", "-o", "json")
	if code != 0 {
		t.Fatalf("exit %d, want 0:\n%s", code, out)
	}
	var got verdictOutput
	if err := json.Unmarshal([]byte(out), &got); err != nil {
		t.Fatal(err)
	}
	want := []string{"allow", "deny", "deny", "allow"}
	if !got.Agree || len(got.Probes) != len(want) {
		t.Fatalf("output %+v", got)
	}
	for i, p := range got.Probes {
		if p.Verdicts["reference"] != want[i] || p.Verdicts["compiled"] != want[i] || p.Explanation == "" {
			t.Errorf("probe %d: %+v, want %s", i, p, want[i])
		}
	}
	if got.Probes[1].Protocol != "TCP" {
		t.Errorf("protocol did not default to TCP: %q", got.Probes[1].Protocol)
	}
}

func TestVerdictMarksDisagreementAndExitsOne(t *testing.T) {
	cluster, probes := modelFiles(t)
	out, code := run(t, "verdict", "-f", cluster, "--probes", probes, "--backends", "reference,test-allow-all", "-o", "table")
	if code != 1 {
		t.Fatalf("exit %d, want 1", code)
	}
	if strings.Count(out, "allow *") != 2 || !strings.Contains(out, "2 probes with a disagreement") ||
		!strings.Contains(out, "TCP   agree 2, disagree 1") || !strings.Contains(out, "UDP   agree 0, disagree 1") {
		t.Errorf("table does not mark the two wrong cells:\n%s", out)
	}
}

func TestVerdictBadInputExitsTwo(t *testing.T) {
	cluster, probes := modelFiles(t)
	bad := filepath.Join(t.TempDir(), "bad.yaml")
	os.WriteFile(bad, []byte("probes:\n  - {from: x/nope, to: x/a, port: 80}\n"), 0o644)
	for name, args := range map[string][]string{
		"missing cluster":  {"verdict", "--probes", probes},
		"unknown backend":  {"verdict", "-f", cluster, "--probes", probes, "--backends", "reference,nosuch"},
		"unknown pod":      {"verdict", "-f", cluster, "--probes", bad},
		"bad output":       {"verdict", "-f", cluster, "--probes", probes, "-o", "xml"},
		"unreadable probe": {"verdict", "-f", cluster, "--probes", filepath.Join(t.TempDir(), "none")},
	} {
		t.Run(name, func(t *testing.T) {
			if _, code := run(t, append(args, "-o", "table")[:len(args)]...); code != 2 {
				t.Errorf("exit %d, want 2", code)
			}
		})
	}
}

func TestPolicyGetResolvesSelectorsToIdentities(t *testing.T) {
	cluster, _ := modelFiles(t)
	out, code := run(t, "policy", "get", "-f", cluster, "--pod", "x/a", "-o", "json")
	if code != 0 {
		t.Fatalf("exit %d", code)
	}
	var views []endpointView
	if err := json.Unmarshal([]byte(out), &views); err != nil {
		t.Fatal(err)
	}
	if len(views) != 1 || !views[0].Ingress.Isolated || views[0].Egress.Isolated {
		t.Fatalf("views %+v", views)
	}
	es := views[0].Ingress.Entries
	if len(es) != 1 || es[0].Port != "80" || !strings.Contains(strings.Join(es[0].PeerLabels, " "), "k8s:pod=b") {
		t.Errorf("ingress entries %+v, want one entry for pod=b on the resolved named port 80", es)
	}
}

func TestIdentityListCountsPods(t *testing.T) {
	cluster, _ := modelFiles(t)
	out, code := run(t, "identity", "list", "-f", cluster, "-o", "json")
	if code != 0 {
		t.Fatalf("exit %d", code)
	}
	var ids []policy.IdentityInfo
	if err := json.Unmarshal([]byte(out), &ids); err != nil {
		t.Fatal(err)
	}
	if len(ids) != 3 {
		t.Fatalf("%d identities, want 3 (three distinct label sets)", len(ids))
	}
}
