package iptables

import (
	"bytes"
	"errors"
	"fmt"
	"maps"
	"path/filepath"
	"strings"
	"testing"

	"netpolbench/internal/faults"
	"netpolbench/policy"
	"netpolbench/policy/policytest"
	"netpolbench/workloads"
)

// The faults the command runner injects, each leaving the kernel as the real tool would.
var (
	// iptables-restore commits a table whole or not at all.
	faultRestoreRejected = faults.Kind{Name: "iptables-restore: rejected"}
	// The restore committed, but its exit status was lost (killed after the commit).
	faultRestoreLost = faults.Kind{Name: "iptables-restore: committed, then failed", Partial: true}
	// ipset restore applies line by line and stops at the first error.
	faultIpsetPartial = faults.Kind{Name: "ipset restore: k of n lines applied, then failed", Partial: true}
	// One iptables command of the per-rule path fails; the ones before it stay applied.
	faultCommand = faults.Kind{Name: "iptables command: failed"}
)

// errInjected is the exit status of a command the fault runner failed.
var errInjected = errors.New("exit status 1 (fault injected)")

// faultyRunner runs commands through r, failing where its schedule says. It is not a
// NamespaceDoer, so the per-rule path runs its commands through it too.
type faultyRunner struct {
	r Runner
	s *faults.Schedule
}

func (f *faultyRunner) Run(name string, args []string, stdin []byte) ([]byte, []byte, error) {
	base := filepath.Base(name)
	switch {
	case base == "ipset" && len(args) > 0 && args[0] == "restore":
		if _, ok := f.s.Next(faultIpsetPartial); ok {
			lines := bytes.SplitAfter(bytes.TrimSuffix(stdin, []byte("\n")), []byte("\n"))
			k := f.s.IntN(len(lines))
			if k > 0 {
				if out, stderr, err := f.r.Run(name, args, append(bytes.Join(lines[:k], nil), '\n')); err != nil {
					return out, stderr, err
				}
			}
			return nil, fmt.Appendf(nil, "ipset v7.17: Error in line %d: Kernel error received: Cannot allocate memory\n", k+1), errInjected
		}
	case strings.HasSuffix(base, "-restore"):
		if k, ok := f.s.Next(faultRestoreRejected, faultRestoreLost); ok {
			if k == faultRestoreLost {
				if out, stderr, err := f.r.Run(name, args, stdin); err != nil {
					return out, stderr, err
				}
				return nil, nil, errors.New("signal: killed (fault injected after the commit)")
			}
			n := bytes.Count(stdin, []byte("\n"))
			return nil, fmt.Appendf(nil, "%s: line %d failed: Could not process rule: Cannot allocate memory\n", base, n), errInjected
		}
	case strings.HasPrefix(base, "iptables") && !strings.HasSuffix(base, "-save"):
		if _, ok := f.s.Next(faultCommand); ok {
			return nil, []byte("iptables: Resource temporarily unavailable.\n"), errInjected
		}
	default:
		f.s.Next() // a read: an operation, never a fault
	}
	return f.r.Run(name, args, stdin)
}

// held is what a saved table and set listing hold: NPB- chains with their rule counts, the
// jump from FORWARD, and npb- sets with their member counts.
func held(rules, sets string) (chains map[string]int, jump bool, setMembers map[string]int) {
	chains, setMembers = map[string]int{}, map[string]int{}
	for _, l := range strings.Split(rules, "\n") {
		switch {
		case strings.HasPrefix(l, ":"+chainPrefix):
			name, _, _ := strings.Cut(l[1:], " ")
			chains[name] += 0
		case strings.HasPrefix(l, "-A "+chainPrefix):
			name, _, _ := strings.Cut(l[3:], " ")
			chains[name]++
		case l == "-A FORWARD -j "+chainForward:
			jump = true
		}
	}
	for _, l := range strings.Split(sets, "\n") {
		f := strings.Fields(l)
		if len(f) < 2 || !strings.HasPrefix(f[1], setPrefix) {
			continue
		}
		switch f[0] {
		case "create":
			setMembers[f[1]] += 0
		case "add":
			setMembers[f[1]]++
		}
	}
	return chains, jump, setMembers
}

// faultTarget is where the backend under faults keeps its rules: a Fake, or a namespace.
type faultTarget struct {
	r    Runner
	mode Mode
	// save reads the rules and sets back, through a Fake loaded from them for the kernel.
	save func(t testing.TB) (rules, sets string)
}

func fakeTarget(mode Mode) faultTarget {
	f := NewFake()
	return faultTarget{r: f, mode: mode, save: func(testing.TB) (string, string) {
		sets, _, _ := f.Run("ipset", []string{"save"}, nil)
		return f.Save(), string(sets)
	}}
}

func kernelTarget(t testing.TB, mode Mode) faultTarget {
	needKernel(t, mode)
	r := mustNetns(t)
	return faultTarget{r: r, mode: mode, save: func(t testing.TB) (string, string) {
		k := snapshot(t, r, mode)
		sets, _, _ := k.Run("ipset", []string{"save"}, nil)
		return k.Save(), string(sets)
	}}
}

// faultSubject describes an iptables backend under faults for faults.Drive. A rejected
// iptables-restore keeps the previous rules and sets exactly; any other fault leaves the
// backend distrusting its view of the kernel until the next full sync reads it back; after a
// call that succeeds its view of chains, rules and sets is the kernel's.
func faultSubject(b *Backend, tg faultTarget, s *faults.Schedule) faults.Subject {
	render := func(rules, sets string) string { return normalSave(rules) + "\n--- sets\n" + sets }
	return faults.Subject{
		Backend:  b,
		Schedule: s,
		Dump:     func(t testing.TB) string { return render(tg.save(t)) },
		Fresh: func(t testing.TB, st *policy.State) string {
			f := NewFake()
			fb, err := New(Config{Variant: b.cfg.Variant, Mode: tg.mode, Runner: f})
			if err != nil {
				t.Fatal(err)
			}
			if _, err := fb.Sync(st); err != nil {
				t.Fatalf("fresh sync: %v", err)
			}
			sets, _, _ := f.Run("ipset", []string{"save"}, nil)
			return render(f.Save(), string(sets))
		},
		Fallback: func(st policy.SyncStats) bool { return CountsOf(st).Fallback },
		Mirror: func(t testing.TB, failed bool) bool {
			t.Helper()
			if failed {
				if b.discovered {
					t.Fatal("after a failed call the backend still trusts its view of the kernel")
				}
				return true
			}
			chains, jump, sets := held(tg.save(t))
			want := maps.Clone(b.sets)
			for n, c := range want {
				if c < 0 { // content unknown, rewritten by the next full sync
					want[n] = sets[n]
				}
			}
			if !maps.Equal(chains, b.chains) || jump != b.jump || !maps.Equal(sets, want) {
				t.Fatalf("the backend's view differs from the kernel:\nchains %v, jump %v, sets %v\nkernel: chains %v, jump %v, sets %v",
					b.chains, b.jump, b.sets, chains, jump, sets)
			}
			return true
		},
		Keeps: func(fs []faults.Fault) bool { return len(fs) == 1 && fs[0].Kind == faultRestoreRejected },
	}
}

// faultCases are the iptables-family backends of the catalogue: both variants and binary
// flavours, the full-restore and per-rule paths.
//
// every is the mean number of runner operations between faults. The per-rule path runs one
// command per rule and rewrites every chain in a full sync, so its faults are spaced for a
// full sync of its smaller workload to get through now and then.
var faultCases = []struct {
	name  string
	cfg   Config
	pods  int
	every []int
}{
	{"iptables", Config{Variant: VariantIPTables}, 100, []int{3, 5, 11}},
	{"ipset", Config{Variant: VariantIPSet}, 100, []int{3, 5, 11}},
	{"iptables-legacy", Config{Variant: VariantIPTables, Mode: ModeLegacy}, 100, []int{3, 5, 11}},
	{"ipset-legacy", Config{Variant: VariantIPSet, Mode: ModeLegacy}, 100, []int{3, 5, 11}},
	{"iptables-fullsync", Config{Variant: VariantIPTables, NoPartial: true}, 100, []int{3, 5, 11}},
	{"iptables-perrule", Config{Variant: VariantIPTables, Apply: ApplyPerRule}, 20, []int{120, 250, 500}},
}

// driveFaults runs the default churn stream over the small workload with a fault every every
// runner operations on average and checks the contract after every event (faults.Drive), then
// that the backend's Close leaves nothing behind.
func driveFaults(t *testing.T, cfg Config, tg faultTarget, pods, ops, every int, seed uint64) faults.Tally {
	g, comp := policytest.Generate(t, "small", pods)
	spec := workloads.DefaultChurn()
	spec.Count, spec.Rate = ops, 0
	ch, err := workloads.NewChurn(spec, g, seed)
	if err != nil {
		t.Fatal(err)
	}
	sched := faults.NewSchedule(every, seed)
	cfg.Mode = tg.mode
	cfg.Runner = &faultyRunner{r: tg.r, s: sched}
	b, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	tally := faults.Drive(t, faultSubject(b, tg, sched), comp, ch)
	if err := b.Close(); err != nil {
		t.Fatalf("close: %v", err)
	}
	if chains, jump, sets := held(tg.save(t)); len(chains)+len(sets) > 0 || jump {
		t.Fatalf("close left chains %v, jump %v, sets %v", chains, jump, sets)
	}
	return tally
}

// TestFaultsAtTheRunnerKeepOrResyncAndConvergeOnTheFake runs every iptables-family backend on
// the Fake under the default churn stream with a fault every N runner operations on average
// (three N, seeded): rejected and committed-then-failed restores, ipset restores cut part way,
// failed per-rule commands. See faults.Drive for what is checked after every event.
func TestFaultsAtTheRunnerKeepOrResyncAndConvergeOnTheFake(t *testing.T) {
	var all faults.Tally
	for c, fc := range faultCases {
		for i, every := range fc.every {
			t.Run(fmt.Sprintf("%s/every=%d", fc.name, every), func(t *testing.T) {
				mode := fc.cfg.Mode
				if mode == "" {
					mode = ModeNFT
				}
				all.Add(driveFaults(t, fc.cfg, fakeTarget(mode), fc.pods, 40, every, uint64(20+10*c+i)))
			})
		}
	}
	if !t.Failed() {
		faults.RequireKinds(t, all, faultRestoreRejected, faultRestoreLost, faultIpsetPartial, faultCommand)
	}
	t.Logf("iptables family on the Fake: %s", all)
}

// TestFaultsAtTheRunnerKeepOrResyncAndConvergeInTheKernel is the same in a namespace of its
// own, with the real tools: one N per backend, a shorter stream, at most 40 pods.
func TestFaultsAtTheRunnerKeepOrResyncAndConvergeInTheKernel(t *testing.T) {
	var all faults.Tally
	for i, fc := range faultCases {
		t.Run(fc.name, func(t *testing.T) {
			mode := fc.cfg.Mode
			if mode == "" {
				mode = ModeNFT
			}
			every, ops := fc.every[0], 25
			if fc.cfg.Apply == ApplyPerRule { // a process per rule: keep it short
				every, ops = fc.every[1], 10
			}
			all.Add(driveFaults(t, fc.cfg, kernelTarget(t, mode), min(fc.pods, 40), ops, every, uint64(40+i)))
		})
	}
	t.Logf("iptables family in the kernel: %s", all)
}

// TestSyncOverLeftoversOfAKilledSyncWritesFreshSets: a backend opened where a killed sync left
// its sets, a temporary one among them holding stale members, reads them back, fills its sets
// under temporary names that are free, and ends with the rules and sets of a fresh sync.
func TestSyncOverLeftoversOfAKilledSyncWritesFreshSets(t *testing.T) {
	for _, tg := range targets() {
		t.Run(tg.name, func(t *testing.T) {
			r := tg.open(t)
			_, comp := policytest.Generate(t, "small", 40)
			s := comp.State()
			first, err := New(Config{Variant: VariantIPSet, Mode: tg.mode, Runner: r}) // killed: never closed
			if err != nil {
				t.Fatal(err)
			}
			if _, err := first.Sync(s); err != nil {
				t.Fatal(err)
			}
			var hashIP string
			for n := range first.setIDs { // a shared hash:ip set
				hashIP = n
				break
			}
			if hashIP == "" {
				t.Fatal("the state has no shared hash:ip set")
			}
			// What a sync killed between filling a temporary set and swapping it in leaves.
			leftover := "create npb-t-1 hash:ip family inet hashsize 1024 maxelem 1024\nadd npb-t-1 203.0.113.99\n"
			if _, stderr, err := r.Run("ipset", []string{"restore"}, []byte(leftover)); err != nil {
				t.Fatalf("leave a temporary set: %v: %s", err, stderr)
			}
			second := mustBackend(t, Config{Variant: VariantIPSet, Mode: tg.mode, Runner: r})
			if _, err := second.Sync(s); err != nil {
				t.Fatalf("sync over the leftovers: %v", err)
			}
			k := snapshot(t, r, tg.mode)
			got, _, _ := k.Run("ipset", []string{"save"}, nil)
			fresh := NewFake()
			if _, err := mustBackend(t, Config{Variant: VariantIPSet, Mode: tg.mode, Runner: fresh}).Sync(s); err != nil {
				t.Fatal(err)
			}
			want, _, _ := fresh.Run("ipset", []string{"save"}, nil)
			if string(got) != string(want) {
				t.Fatalf("sets after a sync over leftovers differ from a fresh sync's (- fresh, + synced):\n%s", faults.Diff(string(want), string(got)))
			}
		})
	}
}
