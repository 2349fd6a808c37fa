package iptables

import (
	"errors"
	"fmt"
	"strings"
	"time"

	"netpolbench/policy"
)

// Counts are the exact counts of one iptables sync, carried in policy.SyncStats.Detail (read
// them with CountsOf). Written counts describe what the sync sent; Total ones what the kernel
// holds after it, as far as the backend knows.
type Counts struct {
	// Full is set for a full sync, unset for a partial one; Fallback for a full sync that
	// replaced a partial one after a failure.
	Full, Fallback bool
	// Capped is set when the sync exceeded Config.MaxRules or Config.TimeLimit.
	Capped bool
	// CapAfter is the per-rule path's time limit when it was hit.
	CapAfter time.Duration

	// Chains declared, rules written (appended or inserted) and deleted, chains removed.
	Chains, Rules, Deletes, ChainsRemoved int
	// SetMembers is the number of set members written.
	SetMembers int
	// Lines and Bytes of the iptables-restore payload (Lines counts commands on the per-rule
	// path, which sends no payload); SetLines and SetBytes of the ipset restore payloads.
	Lines, Bytes, SetLines, SetBytes int
	// Execs is the number of binaries run.
	Execs int
	// PlanTime builds the plan, IpsetTime runs ipset, RulesTime applies the rules.
	PlanTime, IpsetTime, RulesTime time.Duration

	// What the kernel holds after the sync: rules (with the jump from FORWARD), chains, sets
	// and their members; the dispatch rules; and the rules of the longest rule-set chain,
	// which with the dispatch chains bounds how many rules the first packet of a denied flow
	// walks.
	TotalRules, TotalChains, TotalSets, TotalSetMembers int
	DispatchRules, MaxRuleSetRules                      int
}

// CountsOf returns the counts a sync of this package reported; zero counts when st carries
// none (a sync that failed before it planned anything).
func CountsOf(st policy.SyncStats) Counts {
	if c, ok := st.Detail.(*Counts); ok && c != nil {
		return *c
	}
	return Counts{}
}

// apply runs a plan: sets first, then the rules (one restore, or one command per rule), then
// swaps, member edits and set removals. It keeps the backend's view of the kernel in step and
// counts everything it sent.
func (b *Backend) apply(p *plan) (policy.SyncStats, error) {
	det := &Counts{Full: p.full}
	st := policy.SyncStats{Detail: det}
	rules, deletes := p.appends, 0
	for _, o := range p.ops {
		switch o.kind {
		case opDelete:
			deletes++
		case opInsert:
			rules++
		}
	}
	det.Chains = len(p.declare)
	det.Rules = rules
	det.Deletes = deletes
	det.ChainsRemoved = len(p.remove)
	det.SetMembers = p.setMembers
	if p.overflow {
		det.Capped = true
		return b.finish(st), fmt.Errorf("%w: %d rules, over the limit of %d; nothing applied", ErrCapped, rules, p.maxRules)
	}
	// After a failure the backend cannot know what the kernel holds (an ipset restore applies
	// the lines before the one that failed; a command may fail after its commit): it forgets
	// its view, and the next full sync reads the kernel back before it plans.
	fail := func(err error) (policy.SyncStats, error) {
		st := b.finish(st)
		b.forget()
		return st, err
	}

	if len(p.setLines) > 0 {
		t0 := time.Now()
		err := b.ipsetRestore(p.setLines, det)
		det.IpsetTime += time.Since(t0)
		if err != nil {
			return fail(err)
		}
	}
	if len(p.declare)+len(p.ops)+len(p.remove) > 0 {
		t0 := time.Now()
		var err error
		if b.exec != nil {
			var execs int
			execs, err = b.exec.run(p, func(c string) bool { _, ok := b.chains[c]; return ok }, b.cfg.TimeLimit)
			det.Execs += execs
			if errors.Is(err, ErrCapped) {
				det.Capped = true
				det.CapAfter = b.cfg.TimeLimit
			}
			det.Lines = len(p.declare) + len(p.ops) + len(p.remove)
		} else {
			payload := p.restorePayload()
			if b.mutate != nil {
				payload = b.mutate(payload)
			}
			det.Lines = countLines(payload)
			det.Bytes = len(payload)
			det.Execs++
			tool := b.cfg.Mode.Binary("restore")
			_, stderr, rerr := b.cfg.Runner.Run(tool, []string{"--noflush", "-w", "5"}, payload)
			if rerr != nil {
				err = newRestoreError(tool, payload, stderr, rerr)
			}
		}
		det.RulesTime = time.Since(t0)
		if err != nil {
			// No committed rule uses the sets this sync created: remove them, so a rejected
			// restore leaves the kernel as it was.
			if created := append(append([]string(nil), p.tmpSets...), p.newSets...); len(created) > 0 {
				lines := make([]string, 0, len(created))
				for _, t := range created {
					lines = append(lines, "destroy "+t)
				}
				if derr := b.ipsetRestore(lines, det); derr != nil {
					err = fmt.Errorf("%w (and removing the sets it created: %v)", err, derr)
				}
			}
			return fail(err)
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
		det.IpsetTime += time.Since(t0)
		if err != nil {
			return fail(err)
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
	det := st.Detail.(*Counts)
	det.TotalRules = b.Rules()
	det.TotalChains = len(b.chains)
	det.TotalSets = len(b.sets)
	members := 0
	for _, n := range b.sets {
		if n > 0 {
			members += n
		}
	}
	det.TotalSetMembers = members
	det.DispatchRules = b.chains[chainIngress] + b.chains[chainEgress]
	longest := 0
	for c, n := range b.chains {
		if strings.HasPrefix(c, "NPB-R-") && n > longest {
			longest = n
		}
	}
	det.MaxRuleSetRules = longest
	st.Bytes = det.Bytes + det.SetBytes
	if b.exec != nil {
		st.Ops = det.Execs
	} else {
		st.Ops = det.Lines + det.SetLines
	}
	return st
}

func (b *Backend) ipsetRestore(lines []string, det *Counts) error {
	payload := (&plan{}).setPayload(lines)
	det.SetLines += len(lines)
	det.SetBytes += len(payload)
	det.Execs++
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
