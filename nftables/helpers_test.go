package nftables

import (
	"strings"
	"testing"

	"netpolbench/policy"
)

// mustBackend opens a backend and registers its Close.
func mustBackend(t testing.TB, cfg Config) *Backend {
	t.Helper()
	b, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := b.Close(); err != nil {
			t.Errorf("close backend: %v", err)
		}
	})
	return b
}

// mustSynced returns a fake holding a full sync of s, and its backend.
func mustSynced(t testing.TB, s *policy.State) (*Fake, *Backend) {
	t.Helper()
	f := NewFake()
	b := mustBackend(t, Config{NFT: f})
	if _, err := b.Sync(s); err != nil {
		t.Fatalf("sync: %v", err)
	}
	return f, b
}

// checkTraced compares the traced verdict of every flow with the reference evaluator's and
// reports the first disagreements with the rules that decided.
func checkTraced(t *testing.T, label string, tr func(policy.Flow) (policy.Verdict, []string, error), cl *policy.Cluster, flows []policy.Flow) {
	t.Helper()
	bad := 0
	for _, fl := range flows {
		got, path, err := tr(fl)
		if err != nil {
			t.Fatalf("%s: %v", label, err)
		}
		if want, ex := cl.Evaluate(fl); got != want {
			bad++
			if bad <= 10 {
				t.Errorf("%s: %s: traced %s, reference %s (%s); rules %s", label, fl, got, want, ex, strings.Join(path, " → "))
			}
		}
	}
	if bad > 0 {
		t.Fatalf("%s: %d of %d flows disagree with the reference", label, bad, len(flows))
	}
}
