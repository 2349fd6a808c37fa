package iptables

import (
	"bytes"
	"fmt"
	"strings"
)

// Mode is the iptables binary flavour.
type Mode string

const (
	ModeNFT    Mode = "nft"
	ModeLegacy Mode = "legacy"
)

// ParseMode reads --iptables-mode.
func ParseMode(s string) (Mode, error) {
	switch Mode(s) {
	case ModeNFT, ModeLegacy:
		return Mode(s), nil
	case "":
		return ModeNFT, nil
	}
	return "", fmt.Errorf("unknown iptables mode %q (want nft or legacy)", s)
}

// Binary returns the binary of a tool ("restore", "save" or "" for iptables itself).
func (m Mode) Binary(tool string) string {
	b := "iptables-" + string(m)
	if tool != "" {
		b += "-" + tool
	}
	return b
}

type opKind uint8

const (
	opAppend opKind = iota
	opDelete        // delete by rule spec
	opInsert        // insert at position 1
)

// op is one rule-level change of a plan.
type op struct {
	kind  opKind
	chain string
	args  []string
}

// plan is one sync's change to the filter table and the sets, in the order it must be applied:
// sets are filled before the rules that match them and destroyed after the rules that used
// them are gone.
type plan struct {
	full bool
	// setLines are ipset restore lines applied before the rules.
	setLines []string
	// declare lists chains to create or flush, in order.
	declare []string
	ops     []op
	// remove lists chains to delete after the rules (each also in declare, so it is flushed).
	remove []string
	// destroySets are sets to destroy after the rules.
	destroySets []string
	// postLines are ipset restore lines applied after the rules committed: swaps of
	// temporary sets into place and member edits.
	postLines []string
	// tmpSets and newSets (sets created under their own name) are destroyed when the rules
	// fail, so nothing of the sync remains.
	tmpSets, newSets []string
	// setMembers counts members written.
	setMembers int
	// setCounts are the member counts of refilled sets; setDelta member edits.
	setCounts []setCount
	setDelta  []setCount
	// after updates the backend's view of the kernel once the sync succeeded.
	after func()
	// appends counts appended rules; past maxRules (if > 0) the plan only counts and
	// overflow is set.
	appends, maxRules int
	overflow          bool
	// countOnly plans to count, not to apply: no rule is held and shared sets keep only
	// their member counts (Plan).
	countOnly bool
}

type setCount struct {
	name string
	n    int
}

func (p *plan) rule(chain string, args ...string) {
	p.appends++
	if p.countOnly {
		return
	}
	if p.maxRules > 0 && p.appends > p.maxRules {
		// Over the cap: keep counting, stop holding rules (at 10,000 pods the per-IP variant
		// would hold gigabytes).
		p.overflow = true
		p.ops = nil
		return
	}
	p.ops = append(p.ops, op{kind: opAppend, chain: chain, args: args})
}

// restorePayload renders the filter-table part for iptables-restore --noflush.
func (p *plan) restorePayload() []byte {
	// Size the buffer first: at 10,000 pods a payload runs to gigabytes, and growing by
	// doubling would copy it several times.
	size := len("*filter\nCOMMIT\n")
	for _, c := range p.declare {
		size += len(c) + 9
	}
	for _, o := range p.ops {
		size += len(o.chain) + 6
		for _, a := range o.args {
			size += len(a) + 3
		}
	}
	for _, c := range p.remove {
		size += len(c) + 4
	}
	var b bytes.Buffer
	b.Grow(size)
	b.WriteString("*filter\n")
	for _, c := range p.declare {
		fmt.Fprintf(&b, ":%s - [0:0]\n", c)
	}
	for _, o := range p.ops {
		switch o.kind {
		case opAppend:
			b.WriteString("-A ")
		case opDelete:
			b.WriteString("-D ")
		case opInsert:
			b.WriteString("-I ")
		}
		b.WriteString(o.chain)
		if o.kind == opInsert {
			b.WriteString(" 1")
		}
		for _, a := range o.args {
			b.WriteByte(' ')
			b.WriteString(quoteArg(a))
		}
		b.WriteByte('\n')
	}
	for _, c := range p.remove {
		fmt.Fprintf(&b, "-X %s\n", c)
	}
	b.WriteString("COMMIT\n")
	return b.Bytes()
}

func (p *plan) setPayload(lines []string) []byte {
	if len(lines) == 0 {
		return nil
	}
	var b bytes.Buffer
	for _, l := range lines {
		b.WriteString(l)
		b.WriteByte('\n')
	}
	return b.Bytes()
}

func (p *plan) destroyLines() []string {
	out := make([]string, 0, len(p.destroySets))
	for _, s := range p.destroySets {
		out = append(out, "destroy "+s)
	}
	return out
}

// quoteArg quotes an argument for iptables-restore when it holds characters its tokenizer
// splits on.
func quoteArg(a string) string {
	if a == "" || strings.ContainsAny(a, " \t\"'") {
		return `"` + strings.ReplaceAll(a, `"`, `\"`) + `"`
	}
	return a
}
