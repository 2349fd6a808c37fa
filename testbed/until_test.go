package testbed

import (
	"context"
	"sync"
	"testing"
	"time"

	"netpolbench/internal/needs"
	"netpolbench/internal/testenv"
	"netpolbench/policy"
)

// TestSettledAnswersWithTheFirstPacketOfTheNewFate decides SendUntil calls from made-up
// attempts: an unresolved earlier packet holds the answer back, a delivered packet after drops
// restarts a drop's confirmation.
func TestSettledAnswersWithTheFirstPacketOfTheNewFate(t *testing.T) {
	t0 := time.Unix(1000, 0)
	at := func(ms int) time.Time { return t0.Add(time.Duration(ms) * time.Millisecond) }
	cases := []struct {
		name      string
		as        []attempt
		delivered bool
		want      int // index of the answer, -1: not settled
	}{
		{"first delivered", []attempt{{at(0), true, false}, {at(1), true, false}, {at(2), true, true}, {at(3), false, false}}, true, 2},
		{"earlier still pending", []attempt{{at(0), true, false}, {at(1), false, false}, {at(2), true, true}}, true, -1},
		{"none delivered yet", []attempt{{at(0), true, false}, {at(1), true, false}}, true, -1},
		{"drop confirmed", []attempt{{at(0), true, true}, {at(1), true, false}, {at(2), true, false}, {at(12), true, false}}, false, 1},
		{"drop not confirmed long enough", []attempt{{at(0), true, true}, {at(1), true, false}, {at(5), true, false}}, false, -1},
		{"late delivery restarts the drop", []attempt{{at(0), true, false}, {at(3), true, true}, {at(4), true, false}, {at(14), true, false}}, false, 2},
		{"drop waits for a pending packet", []attempt{{at(0), true, false}, {at(5), false, false}, {at(20), true, false}}, false, -1},
	}
	for _, c := range cases {
		from := 0
		got, ok := settled(c.as, &from, c.delivered, 10*time.Millisecond)
		switch {
		case c.want < 0 && ok:
			t.Errorf("%s: settled at %s, want not settled", c.name, got.Sub(t0))
		case c.want >= 0 && !ok:
			t.Errorf("%s: not settled, want packet %d", c.name, c.want)
		case c.want >= 0 && !got.Equal(c.as[c.want].sent):
			t.Errorf("%s: settled at %s, want %s", c.name, got.Sub(t0), c.as[c.want].sent.Sub(t0))
		}
	}
}

// TestSendUntilSeesTheVerdictChange drops a flow in the node namespace, lifts the drop while
// SendUntil waits for delivery, then puts it back while SendUntil waits for a drop: each
// answer is the send time of a packet sent within a few milliseconds of the change (the
// packets are a millisecond apart), never one sent well before it.
func TestSendUntilSeesTheVerdictChange(t *testing.T) {
	testenv.NeedKernel(t, needs.Tool("nft", "nftables"))
	tb := ForTest(t, Options{})
	drop := []byte("table inet npbuntil {\n chain drops {\n  type filter hook forward priority 0; policy accept;\n  ip daddr " + podB.String() + " drop\n }\n}\n")
	nft := func(script []byte) {
		t.Helper()
		if _, err := tb.RunInNode("nft", []string{"-f", "-"}, script); err != nil {
			t.Fatal(err)
		}
	}
	for _, f := range []policy.Flow{flow(podA, podB, policy.ProtoTCP, 80), flow(podA, podB, policy.ProtoUDP, 53)} {
		nft(drop)
		change := make(chan [2]time.Time, 1)
		go func() {
			time.Sleep(150 * time.Millisecond)
			before := time.Now()
			nft([]byte("delete table inet npbuntil\n"))
			change <- [2]time.Time{before, time.Now()}
		}()
		got, err := tb.SendUntil(context.Background(), f, true, UntilOptions{Limit: 5 * time.Second})
		if err != nil {
			t.Fatalf("%s: until delivered: %v", f, err)
		}
		checkNear(t, f, "delivered", got, <-change)

		go func() {
			time.Sleep(150 * time.Millisecond)
			before := time.Now()
			nft(drop)
			change <- [2]time.Time{before, time.Now()}
		}()
		got, err = tb.SendUntil(context.Background(), f, false, UntilOptions{Limit: 5 * time.Second})
		if err != nil {
			t.Fatalf("%s: until dropped: %v", f, err)
		}
		checkNear(t, f, "dropped", got, <-change)
		nft([]byte("delete table inet npbuntil\n"))
	}
	if _, err := tb.SendUntil(context.Background(), flow(podA, podB, policy.ProtoTCP, 80), false, UntilOptions{Limit: 300 * time.Millisecond}); err == nil {
		t.Error("until dropped with nothing dropping: no error")
	}
	// Concurrent calls to one destination port share its receiver, and each sees its own
	// packets.
	var wg sync.WaitGroup
	for i := range 8 {
		f := flow(podA, podB, policy.ProtoUDP, 53)
		if i%2 == 1 {
			f.Proto, f.Port = policy.ProtoTCP, 80
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			if _, err := tb.SendUntil(context.Background(), f, true, UntilOptions{Limit: 2 * time.Second}); err != nil {
				t.Errorf("concurrent %s: %v", f, err)
			}
		}()
	}
	wg.Wait()
}

// checkNear fails unless the first packet with the new fate was sent while nft made the
// change (between the command's start and its return) or shortly after it, never well before.
func checkNear(t *testing.T, f policy.Flow, fate string, got time.Time, change [2]time.Time) {
	t.Helper()
	t.Logf("%s: first %s packet sent %s after nft started, nft took %s", f, fate, got.Sub(change[0]), change[1].Sub(change[0]))
	if got.Before(change[0].Add(-2*time.Millisecond)) || got.After(change[1].Add(200*time.Millisecond)) {
		t.Errorf("%s: first %s packet sent %s after nft started (it took %s), want during it or within 200ms after", f, fate, got.Sub(change[0]), change[1].Sub(change[0]))
	}
}
