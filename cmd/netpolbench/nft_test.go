package main

import (
	"encoding/json"
	"fmt"
	"os"
	"strings"
	"testing"

	"netpolbench/internal/netns"
	"netpolbench/internal/testenv"
	"netpolbench/nftables"
	"netpolbench/policy"
)

// TestNftShowListsTheTableAndWhatAPodWalks: the whole table, and for an isolated pod its
// verdict map element and rule-set chain; a pod no policy isolates walks no rule-set chain.
func TestNftShowListsTheTableAndWhatAPodWalks(t *testing.T) {
	cluster, _ := modelFiles(t)
	out, code := run(t, "nft", "show", "-f", cluster)
	if code != 0 {
		t.Fatalf("exit %d", code)
	}
	for _, want := range []string{"table inet netpolbench {", "map ingress {", "198.18.0.1 : goto rs-", "chain forward {", "drop comment \"x/from-b\""} {
		if !strings.Contains(out, want) {
			t.Errorf("nft show lacks %q:\n%s", want, out)
		}
	}
	isolated, code := run(t, "nft", "show", "-f", cluster, "--pod", "x/a")
	if code != 0 || !strings.Contains(isolated, "chain rs-") || !strings.Contains(isolated, "198.18.0.1 : goto rs-") {
		t.Errorf("exit %d; the listing for x/a lacks its chain or map element:\n%s", code, isolated)
	}
	open, code := run(t, "nft", "show", "-f", cluster, "--pod", "198.18.0.17")
	if code != 0 || strings.Contains(open, "chain rs-") {
		t.Errorf("exit %d; y/a is isolated by nothing, yet its listing holds a rule-set chain:\n%s", code, open)
	}
	for name, args := range map[string][]string{
		"no source":   {"nft", "show"},
		"two sources": {"nft", "show", "-f", cluster, "--netns", "npb-none"},
		"unknown pod": {"nft", "show", "-f", cluster, "--pod", "x/none"},
	} {
		if _, code := run(t, args...); code != 2 {
			t.Errorf("%s: exit %d, want 2", name, code)
		}
	}
}

func TestPolicyGetShowsTheNftablesTableItsTrafficWalks(t *testing.T) {
	cluster, _ := modelFiles(t)
	out, code := run(t, "policy", "get", "-f", cluster, "--pod", "x/a", "--nftables", "-o", "json")
	if code != 0 {
		t.Fatalf("exit %d", code)
	}
	var views []endpointView
	if err := json.Unmarshal([]byte(out), &views); err != nil {
		t.Fatal(err)
	}
	if len(views) != 1 || !strings.Contains(views[0].Nftables, "198.18.0.1 : goto rs-") || !strings.Contains(views[0].Nftables, "ip saddr @p-") {
		t.Fatalf("views %+v, want x/a's table with its map element and its peer set", views)
	}
	text, code := run(t, "policy", "get", "-f", cluster, "--pod", "x/a", "--nftables")
	if code != 0 || !strings.Contains(text, "nftables (what its traffic walks):") {
		t.Errorf("exit %d; table output lacks the nftables section:\n%s", code, text)
	}
}

// TestNftShowReadsTheKernelsTable syncs the model into a namespace's kernel and lists it with
// --netns: the same listing as the table the cluster's sync writes on the fake.
func TestNftShowReadsTheKernelsTable(t *testing.T) {
	testenv.Long(t, "nftables kernel test")
	testenv.NeedKernel(t, nftables.Needs...)
	cluster, _ := modelFiles(t)
	comp, err := loadCompiled(rootCmd, []string{cluster})
	if err != nil {
		t.Fatal(err)
	}
	name := fmt.Sprintf("npb-nftcli-%d", os.Getpid())
	ns, err := netns.Create(name)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ns.Close()
		if err := netns.Delete(name); err != nil {
			t.Error(err)
		}
	})
	nft, err := nftables.NewKernel(ns, nftables.KernelOptions{})
	if err != nil {
		t.Fatal(err)
	}
	b, err := nftables.New(nftables.Config{NFT: nft})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Close() })
	if _, err := b.Sync(comp.State()); err != nil {
		t.Fatal(err)
	}
	got, code := run(t, "nft", "show", "--netns", name)
	if code != 0 {
		t.Fatalf("exit %d", code)
	}
	want := mustNftTable(t, comp.State()).List()
	if got != want {
		t.Errorf("the kernel's listing differs from the fake's:\n--- kernel\n%s--- fake\n%s", got, want)
	}
}

func mustNftTable(t *testing.T, s *policy.State) *nftables.Table {
	t.Helper()
	tab, err := nftTable(s)
	if err != nil {
		t.Fatal(err)
	}
	return tab
}
