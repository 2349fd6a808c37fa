package iptables

import (
	"errors"
	"fmt"
	"strings"
	"time"

	goipt "github.com/coreos/go-iptables/iptables"
)

// ruleExec applies a plan one command per rule, the way a controller written against
// go-iptables does: every command is its own process, and each one makes the kernel copy the
// whole table (legacy) or revalidate it (nft), so a sync of n rules costs O(n²).
type ruleExec interface {
	// run applies p and returns how many processes it started.
	// A limit > 0 stops it after that long with ErrCapped.
	run(p *plan, exists func(chain string) bool, limit time.Duration) (int, error)
}

func newRuleExec(r Runner, m Mode) (ruleExec, error) {
	if d, ok := r.(NamespaceDoer); ok {
		return &goIPTablesExec{doer: d, mode: m}, nil
	}
	return &runnerExec{r: r, mode: m}, nil
}

// goIPTablesExec runs coreos/go-iptables on a thread inside the namespace.
type goIPTablesExec struct {
	doer NamespaceDoer
	mode Mode
}

func (x *goIPTablesExec) run(p *plan, exists func(string) bool, limit time.Duration) (int, error) {
	execs := 0
	start := time.Now()
	over := func() error {
		if limit > 0 && time.Since(start) > limit {
			return fmt.Errorf("%w: per-rule path stopped after %s and %d commands", ErrCapped, limit, execs)
		}
		return nil
	}
	err := x.doer.Do(func() error {
		ipt, err := goipt.New(goipt.Path(x.mode.Binary("")))
		execs++ // New runs --version
		if err != nil {
			return fmt.Errorf("start go-iptables: %w", err)
		}
		for _, c := range p.declare {
			if err := over(); err != nil {
				return err
			}
			if exists(c) {
				execs++ // ClearChain tries -N first, then flushes
			}
			execs++
			if err := ipt.ClearChain("filter", c); err != nil {
				return fmt.Errorf("create or flush chain %s: %w", c, err)
			}
		}
		for _, o := range p.ops {
			if err := over(); err != nil {
				return err
			}
			execs++
			var err error
			switch o.kind {
			case opAppend:
				err = ipt.Append("filter", o.chain, o.args...)
			case opInsert:
				err = ipt.Insert("filter", o.chain, 1, o.args...)
			case opDelete:
				err = ipt.Delete("filter", o.chain, o.args...)
			}
			if err != nil {
				return fmt.Errorf("rule %q: %w", o.chain+" "+strings.Join(o.args, " "), err)
			}
		}
		for _, c := range p.remove {
			execs++
			if err := ipt.DeleteChain("filter", c); err != nil {
				return fmt.Errorf("delete chain %s: %w", c, err)
			}
		}
		return nil
	})
	return execs, err
}

// runnerExec runs one iptables command per rule through a Runner (a Fake in unit tests).
type runnerExec struct {
	r    Runner
	mode Mode
}

func (x *runnerExec) run(p *plan, exists func(string) bool, limit time.Duration) (int, error) {
	execs := 0
	start := time.Now()
	do := func(args ...string) error {
		if limit > 0 && time.Since(start) > limit {
			return fmt.Errorf("%w: per-rule path stopped after %s and %d commands", ErrCapped, limit, execs)
		}
		execs++
		_, stderr, err := x.r.Run(x.mode.Binary(""), append([]string{"-w", "-t", "filter"}, args...), nil)
		if err != nil {
			return fmt.Errorf("%s %s: %w: %s", x.mode.Binary(""), strings.Join(args, " "), err, firstLine(string(stderr)))
		}
		return nil
	}
	for _, c := range p.declare {
		flag := "-N"
		if exists(c) {
			flag = "-F"
		}
		if err := do(flag, c); err != nil {
			return execs, err
		}
	}
	for _, o := range p.ops {
		var err error
		switch o.kind {
		case opAppend:
			err = do(append([]string{"-A", o.chain}, o.args...)...)
		case opInsert:
			err = do(append([]string{"-I", o.chain, "1"}, o.args...)...)
		case opDelete:
			err = do(append([]string{"-D", o.chain}, o.args...)...)
		default:
			err = errors.New("unknown op")
		}
		if err != nil {
			return execs, err
		}
	}
	for _, c := range p.remove {
		if err := do("-X", c); err != nil {
			return execs, err
		}
	}
	return execs, nil
}
