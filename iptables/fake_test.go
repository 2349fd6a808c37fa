package iptables

import (
	"net/netip"
	"strings"
	"testing"

	"netpolbench/policy"
)

// step is one command a case sends: an iptables-restore --noflush payload, or ipset restore
// lines when sets is set.
type step struct {
	sets    bool
	payload string
}

// TestRestoreSemanticsAgreeBetweenFakeAndKernel runs the same payloads against the fake and,
// as root, against both kernel flavours: which are rejected, and what the table holds after.
func TestRestoreSemanticsAgreeBetweenFakeAndKernel(t *testing.T) {
	base := step{payload: "*filter\n:NPB-A - [0:0]\n:NPB-B - [0:0]\n-A FORWARD -j NPB-A\n-A NPB-A -s 198.18.0.1 -j NPB-B\n-A NPB-B -j ACCEPT\nCOMMIT\n"}
	cases := []struct {
		name    string
		setup   []step
		apply   step
		wantErr bool
		// want are the rules of NPB- chains and FORWARD after apply, in save form.
		want []string
	}{
		{
			name:  "NoflushKeepsUndeclaredChainsAndDeclarationFlushes",
			setup: []step{base},
			apply: step{payload: "*filter\n:NPB-B - [0:0]\n-A NPB-B -j DROP\nCOMMIT\n"},
			want:  []string{"-A FORWARD -j NPB-A", "-A NPB-A -s 198.18.0.1/32 -j NPB-B", "-A NPB-B -j DROP"},
		},
		{
			name:    "JumpToMissingChainIsRejectedAndNothingChanges",
			setup:   []step{base},
			apply:   step{payload: "*filter\n:NPB-B - [0:0]\n-A NPB-B -j NPB-MISSING\nCOMMIT\n"},
			wantErr: true,
			want:    []string{"-A FORWARD -j NPB-A", "-A NPB-A -s 198.18.0.1/32 -j NPB-B", "-A NPB-B -j ACCEPT"},
		},
		{
			name:    "DeletingAReferencedChainIsRejected",
			setup:   []step{base},
			apply:   step{payload: "*filter\n:NPB-B - [0:0]\n-X NPB-B\nCOMMIT\n"},
			wantErr: true,
			want:    []string{"-A FORWARD -j NPB-A", "-A NPB-A -s 198.18.0.1/32 -j NPB-B", "-A NPB-B -j ACCEPT"},
		},
		{
			name:  "DeleteByRuleSpecRemovesThatRule",
			setup: []step{base},
			apply: step{payload: "*filter\n-D NPB-A -s 198.18.0.1/32 -j NPB-B\n-I NPB-A 1 -p tcp -m tcp --dport 80:81 -m comment --comment \"x/y\" -j RETURN\nCOMMIT\n"},
			want:  []string{"-A FORWARD -j NPB-A", "-A NPB-A -p tcp -m tcp --dport 80:81 -m comment --comment \"x/y\" -j RETURN", "-A NPB-B -j ACCEPT"},
		},
		{
			name:    "RuleNamingMissingSetIsRejected",
			setup:   []step{base},
			apply:   step{payload: "*filter\n-A NPB-B -m set --match-set npb-none src -j ACCEPT\nCOMMIT\n"},
			wantErr: true,
			want:    []string{"-A FORWARD -j NPB-A", "-A NPB-A -s 198.18.0.1/32 -j NPB-B", "-A NPB-B -j ACCEPT"},
		},
		{
			name:    "DestroyingASetInUseIsRejected",
			setup:   []step{{sets: true, payload: "create npb-s hash:ip family inet\nadd npb-s 198.18.0.2\n"}, {payload: "*filter\n:NPB-A - [0:0]\n-A NPB-A -m set --match-set npb-s src -j ACCEPT\nCOMMIT\n"}},
			apply:   step{sets: true, payload: "destroy npb-s\n"},
			wantErr: true,
			want:    []string{"-A NPB-A -m set --match-set npb-s src -j ACCEPT"},
		},
	}
	for _, tg := range targets() {
		for _, tc := range cases {
			t.Run(tg.name+"/"+tc.name, func(t *testing.T) {
				r := tg.open(t)
				run := func(s step) error {
					var err error
					if s.sets {
						_, _, err = r.Run("ipset", []string{"restore"}, []byte(s.payload))
					} else {
						_, _, err = r.Run(tg.mode.Binary("restore"), []string{"--noflush"}, []byte(s.payload))
					}
					return err
				}
				for _, s := range tc.setup {
					if err := run(s); err != nil {
						t.Fatalf("setup: %v", err)
					}
				}
				err := run(tc.apply)
				if (err != nil) != tc.wantErr {
					t.Fatalf("apply: error %v, want error %v", err, tc.wantErr)
				}
				var got []string
				for _, l := range strings.Split(snapshot(t, r, tg.mode).Save(), "\n") {
					if strings.HasPrefix(l, "-A NPB-") || strings.HasPrefix(l, "-A FORWARD") {
						got = append(got, l)
					}
				}
				if strings.Join(got, "\n") != strings.Join(tc.want, "\n") {
					t.Errorf("table holds\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(tc.want, "\n"))
				}
				if tg.kernel {
					// The namespace goes away with its sets; flush rules first so sets are free.
					r.Run(tg.mode.Binary("restore"), nil, []byte("*filter\nCOMMIT\n"))
				}
			})
		}
	}
}

// TestTraceFollowsJumpGotoAndReturn checks the tracer's chain walk on a small table: RETURN from
// a chain entered by goto resumes after the jump that led there.
func TestTraceFollowsJumpGotoAndReturn(t *testing.T) {
	f := NewFake()
	payload := `*filter
:A - [0:0]
:B - [0:0]
:C - [0:0]
-A FORWARD -j A
-A FORWARD -j DROP
-A A -p tcp -g B
-A A -j ACCEPT
-A B -s 198.18.0.1 -j C
-A B -j RETURN
-A C -p tcp -m tcp --dport 80 -j RETURN
-A C -j DROP
COMMIT
`
	if _, stderr, err := f.Run("iptables-restore", nil, []byte(payload)); err != nil {
		t.Fatalf("%v: %s", err, stderr)
	}
	a := func(s string) netip.Addr { return netip.MustParseAddr(s) }
	cases := []struct {
		name string
		flow policy.Flow
		want policy.Verdict
	}{
		{"UDPAcceptedInA", policy.Flow{Src: a("198.18.0.1"), Dst: a("198.18.0.2"), Proto: policy.ProtoUDP, Port: 80}, policy.Allow},
		{"TCPReturnFromGotoSkipsRestOfA", policy.Flow{Src: a("198.18.0.9"), Dst: a("198.18.0.2"), Proto: policy.ProtoTCP, Port: 80}, policy.Deny},
		{"ReturnFromJumpedChainContinuesB", policy.Flow{Src: a("198.18.0.1"), Dst: a("198.18.0.2"), Proto: policy.ProtoTCP, Port: 80}, policy.Deny},
		{"DropInNestedChain", policy.Flow{Src: a("198.18.0.1"), Dst: a("198.18.0.2"), Proto: policy.ProtoTCP, Port: 81}, policy.Deny},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got, path, err := f.Trace(tc.flow)
			if err != nil {
				t.Fatal(err)
			}
			if got != tc.want {
				t.Errorf("%s: %s via %v, want %s", tc.flow, got, path, tc.want)
			}
		})
	}
}

// TestHashNetMostSpecificMemberDecides checks the hash:net lookup the ipset variant relies on
// for ipBlock except: the longest member holding the address decides, nomatch means no.
func TestHashNetMostSpecificMemberDecides(t *testing.T) {
	f := NewFake()
	sets := "create npb-n hash:net family inet\nadd npb-n 10.0.0.0/8\nadd npb-n 10.1.0.0/16 nomatch\nadd npb-n 10.1.2.0/24\n"
	if _, stderr, err := f.Run("ipset", []string{"restore"}, []byte(sets)); err != nil {
		t.Fatalf("%v: %s", err, stderr)
	}
	s := f.sets["npb-n"]
	for addr, want := range map[string]bool{"10.9.9.9": true, "10.1.9.9": false, "10.1.2.3": true, "11.0.0.1": false} {
		if got := s.containsAddr(netip.MustParseAddr(addr)); got != want {
			t.Errorf("%s: match %v, want %v", addr, got, want)
		}
	}
}
