package iptables

import (
	"errors"
	"fmt"
	"strings"
	"time"

	"netpolbench/policy"
)

// apply runs a plan: sets first, then the rules (one restore, or one command per rule), then
// swaps, member edits and set removals. It keeps the backend's view of the kernel in step and
// counts everything it sent.
func (b *Backend) apply(p *plan) (policy.SyncStats, error) {
	st := policy.SyncStats{Detail: map[string]int64{}}
	det := st.Detail
	if p.full {
		det["full"] = 1
	} else {
		det["full"] = 0
	}
	rules, deletes := p.appends, 0
	for _, o := range p.ops {
		switch o.kind {
		case opDelete:
			deletes++
		case opInsert:
			rules++
		}
	}
	det["chains"] = int64(len(p.declare))
	det["rules"] = int64(rules)
	det["deletes"] = int64(deletes)
	det["chains_removed"] = int64(len(p.remove))
	det["set_members"] = int64(p.setMembers)
	if p.overflow {
		det["capped"] = 1
		return b.finish(st), fmt.Errorf("%w: %d rules, over the limit of %d; nothing applied", ErrCapped, rules, p.maxRules)
	}

	if len(p.setLines) > 0 {
		t0 := time.Now()
		err := b.ipsetRestore(p.setLines, det)
		det["ipset_us"] += time.Since(t0).Microseconds()
		if err != nil {
			return b.finish(st), err
		}
	}
	if len(p.declare)+len(p.ops)+len(p.remove) > 0 {
		t0 := time.Now()
		var err error
		if b.exec != nil {
			var execs int
			execs, err = b.exec.run(p, func(c string) bool { _, ok := b.chains[c]; return ok }, b.cfg.TimeLimit)
			det["execs"] += int64(execs)
			if errors.Is(err, ErrCapped) {
				det["capped"] = 1
				det["cap_ms"] = b.cfg.TimeLimit.Milliseconds()
			}
			det["lines"] = int64(len(p.declare) + len(p.ops) + len(p.remove))
		} else {
			payload := p.restorePayload()
			if b.mutate != nil {
				payload = b.mutate(payload)
			}
			det["lines"] = int64(countLines(payload))
			det["bytes"] = int64(len(payload))
			det["execs"]++
			tool := b.cfg.Mode.Binary("restore")
			_, stderr, rerr := b.cfg.Runner.Run(tool, []string{"--noflush", "-w", "5"}, payload)
			if rerr != nil {
				err = newRestoreError(tool, payload, stderr, rerr)
			}
		}
		det["rules_us"] = time.Since(t0).Microseconds()
		if err != nil {
			if len(p.tmpSets) > 0 {
				lines := make([]string, 0, len(p.tmpSets))
				for _, t := range p.tmpSets {
					lines = append(lines, "destroy "+t)
				}
				if derr := b.ipsetRestore(lines, det); derr != nil {
					err = fmt.Errorf("%w (and removing temporary sets: %v)", err, derr)
				}
			}
			if b.exec != nil {
				// Per-rule commands before the failing one stay applied: forget what we knew.
				b.discovered = false
				b.reset()
			}
			return b.finish(st), err
		}
		for _, c := range p.declare {
			b.chains[c] = 0
		}
		for _, o := range p.ops {
			if o.chain == "FORWARD" {
				b.jump = o.kind != opDelete
				continue
			}
			if o.kind == opDelete {
				b.chains[o.chain]--
			} else {
				b.chains[o.chain]++
			}
		}
		for _, c := range p.remove {
			delete(b.chains, c)
		}
	}
	post := append(append([]string(nil), p.postLines...), p.destroyLines()...)
	if len(post) > 0 {
		t0 := time.Now()
		err := b.ipsetRestore(post, det)
		det["ipset_us"] += time.Since(t0).Microseconds()
		if err != nil {
			return b.finish(st), err
		}
	}
	for _, c := range p.setCounts {
		b.sets[c.name] = c.n
	}
	for _, c := range p.setDelta {
		if b.sets[c.name] >= 0 {
			b.sets[c.name] += c.n
		}
	}
	for _, s := range p.destroySets {
		delete(b.sets, s)
	}
	if p.after != nil {
		p.after()
	}
	return b.finish(st), nil
}

// finish fills the totals: what the kernel holds after the sync.
func (b *Backend) finish(st policy.SyncStats) policy.SyncStats {
	det := st.Detail
	det["total_rules"] = int64(b.Rules())
	det["total_chains"] = int64(len(b.chains))
	det["total_sets"] = int64(len(b.sets))
	members := 0
	for _, n := range b.sets {
		if n > 0 {
			members += n
		}
	}
	det["total_set_members"] = int64(members)
	det["dispatch_rules"] = int64(b.chains[chainIngress] + b.chains[chainEgress])
	// The longest rule-set chain bounds, with the dispatch chains, how many rules the first
	// packet of a denied flow walks.
	longest := 0
	for c, n := range b.chains {
		if strings.HasPrefix(c, "NPB-R-") && n > longest {
			longest = n
		}
	}
	det["max_ruleset_rules"] = int64(longest)
	st.Bytes = int(det["bytes"] + det["set_bytes"])
	if b.exec != nil {
		st.Ops = int(det["execs"])
	} else {
		st.Ops = int(det["lines"] + det["set_lines"])
	}
	return st
}

func (b *Backend) ipsetRestore(lines []string, det map[string]int64) error {
	payload := (&plan{}).setPayload(lines)
	det["set_lines"] += int64(len(lines))
	det["set_bytes"] += int64(len(payload))
	det["execs"]++
	_, stderr, err := b.cfg.Runner.Run("ipset", []string{"restore", "-exist"}, payload)
	if err != nil {
		return newRestoreError("ipset restore", payload, stderr, err)
	}
	return nil
}

func countLines(b []byte) int {
	n := 0
	for _, c := range b {
		if c == '\n' {
			n++
		}
	}
	return n
}
