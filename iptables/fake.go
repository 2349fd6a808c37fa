package iptables

import (
	"bytes"
	"errors"
	"fmt"
	"net/netip"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"

	"netpolbench/policy"
)

// Fake is a stateful stand-in for the kernel's filter table and ipsets, as kube-proxy's
// FakeIPTables and knftables' Fake: it implements Runner for iptables-restore, iptables-save,
// single iptables commands and ipset restore/list/save, of either flavour. It parses what it is
// given, checks references (a jump or goto to a missing chain, a rule naming a missing set, a
// deleted chain or set still in use are errors), reports the failing line as the real tools do,
// and rolls the whole input back on error. Trace walks its rules.
//
// Unlike the kernel, the fake also rolls back a failed ipset restore; the backend never relies
// on that.
type Fake struct {
	mu     sync.Mutex
	filter *fakeTable
	sets   map[string]*fakeSet
	// Calls counts the commands run, by binary.
	Calls map[string]int
}

type fakeTable struct {
	chains map[string]*fakeChain
}

type fakeChain struct {
	builtin bool
	policy  string
	rules   []*Rule
}

var builtinChains = []string{"INPUT", "FORWARD", "OUTPUT"}

// NewFake returns an empty filter table (built-in chains accepting) and no sets.
func NewFake() *Fake {
	f := &Fake{sets: map[string]*fakeSet{}, Calls: map[string]int{}}
	f.filter = emptyTable()
	return f
}

func emptyTable() *fakeTable {
	t := &fakeTable{chains: map[string]*fakeChain{}}
	for _, c := range builtinChains {
		t.chains[c] = &fakeChain{builtin: true, policy: "ACCEPT"}
	}
	return t
}

func (t *fakeTable) clone() *fakeTable {
	n := &fakeTable{chains: make(map[string]*fakeChain, len(t.chains))}
	for k, c := range t.chains {
		cc := *c
		cc.rules = append([]*Rule(nil), c.rules...)
		n.chains[k] = &cc
	}
	return n
}

type exitErr struct{ code int }

func (e exitErr) Error() string { return fmt.Sprintf("exit status %d", e.code) }

// Run implements Runner.
func (f *Fake) Run(name string, args []string, stdin []byte) ([]byte, []byte, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	base := filepath.Base(name)
	f.Calls[base]++
	switch {
	case base == "ipset":
		return f.runIPSet(args, stdin)
	case strings.HasPrefix(base, "iptables") && strings.HasSuffix(base, "-restore"):
		noflush := false
		for _, a := range args {
			if a == "--noflush" || a == "-n" {
				noflush = true
			}
		}
		if err := f.restore(stdin, noflush); err != nil {
			return nil, []byte(fmt.Sprintf("%s: %v\n", base, err)), exitErr{1}
		}
		return nil, nil, nil
	case strings.HasPrefix(base, "iptables") && strings.HasSuffix(base, "-save"):
		return []byte(f.save()), nil, nil
	case strings.HasPrefix(base, "iptables"):
		return f.command(base, args)
	}
	return nil, []byte(name + ": not faked\n"), exitErr{127}
}

// command runs one iptables command line as a one-line restore.
func (f *Fake) command(base string, args []string) ([]byte, []byte, error) {
	var rest []string
	for i := 0; i < len(args); i++ {
		switch args[i] {
		case "-w", "--wait":
			if i+1 < len(args) {
				if _, err := strconv.Atoi(args[i+1]); err == nil {
					i++
				}
			}
		case "-t":
			if i+1 >= len(args) || args[i+1] != "filter" {
				return nil, []byte(base + ": only the filter table is faked\n"), exitErr{2}
			}
			i++
		case "--version", "-V":
			return []byte("iptables v1.8.9 (fake)\n"), nil, nil
		default:
			rest = append(rest, args[i])
		}
	}
	quoted := make([]string, len(rest))
	for i, a := range rest {
		quoted[i] = quoteArg(a)
	}
	payload := "*filter\n" + strings.Join(quoted, " ") + "\nCOMMIT\n"
	if err := f.restore([]byte(payload), true); err != nil {
		msg := err.Error()
		if i := strings.Index(msg, ": "); i >= 0 && strings.HasPrefix(msg, "line ") {
			msg = msg[i+2:]
		}
		code := 1
		return nil, []byte(base + ": " + msg + "\n"), exitErr{code}
	}
	return nil, nil, nil
}

// lineError is a restore error blamed on a line, printed as legacy iptables-restore does.
type lineError struct {
	line int
	err  error
}

func (e *lineError) Error() string { return fmt.Sprintf("line %d failed: %v", e.line, e.err) }

func (f *Fake) restore(payload []byte, noflush bool) error {
	var work *fakeTable
	committed := f.filter
	lines := strings.Split(string(payload), "\n")
	for i, raw := range lines {
		n := i + 1
		line := strings.TrimSpace(raw)
		if line == "" || line[0] == '#' {
			continue
		}
		fail := func(err error) error { return &lineError{n, err} }
		switch {
		case line[0] == '*':
			if work != nil {
				return fail(errors.New("table started before COMMIT"))
			}
			if line[1:] != "filter" {
				return fail(fmt.Errorf("table %q not faked", line[1:]))
			}
			if noflush {
				work = committed.clone()
			} else {
				work = emptyTable()
			}
		case line == "COMMIT":
			if work == nil {
				return fail(errors.New("COMMIT outside a table"))
			}
			committed = work
			work = nil
		case work == nil:
			return fail(errors.New("line outside a table"))
		case line[0] == ':':
			fs := strings.Fields(line[1:])
			if len(fs) < 2 {
				return fail(errors.New("bad chain line"))
			}
			name, pol := fs[0], fs[1]
			if c, ok := work.chains[name]; ok && c.builtin {
				if pol != "-" {
					c.policy = pol
				}
				continue
			}
			if pol != "-" {
				return fail(fmt.Errorf("user chain %s cannot have a policy", name))
			}
			if err := checkChainName(name); err != nil {
				return fail(err)
			}
			if c, ok := work.chains[name]; ok {
				c.rules = nil
			} else {
				work.chains[name] = &fakeChain{}
			}
		default:
			tok, err := tokenize(line)
			if err != nil {
				return fail(err)
			}
			if err := f.exec(work, tok); err != nil {
				return fail(err)
			}
		}
	}
	if work != nil {
		return &lineError{len(lines), errors.New("no COMMIT")}
	}
	f.filter = committed
	return nil
}

func checkChainName(n string) error {
	if len(n) > 28 {
		return fmt.Errorf("chain name %q longer than 28 characters", n)
	}
	if strings.HasPrefix(n, "-") || n == "" {
		return fmt.Errorf("bad chain name %q", n)
	}
	return nil
}

func isVerdict(t string) bool {
	switch t {
	case "ACCEPT", "DROP", "REJECT", "RETURN":
		return true
	}
	return false
}

// exec applies one command (-A, -I, -D, -N, -F, -X, -P) to a table.
func (f *Fake) exec(t *fakeTable, tok []string) error {
	if len(tok) == 0 {
		return errors.New("empty command")
	}
	cmd := tok[0]
	arg := func(i int) string {
		if i < len(tok) {
			return tok[i]
		}
		return ""
	}
	chain := arg(1)
	c := t.chains[chain]
	switch cmd {
	case "-A", "--append", "-I", "--insert", "-D", "--delete":
		if c == nil {
			return fmt.Errorf("chain '%s' does not exist", chain)
		}
		rest := tok[2:]
		pos := -1
		if (cmd == "-I" || cmd == "--insert" || cmd == "-D" || cmd == "--delete") && len(rest) > 0 {
			if n, err := strconv.Atoi(rest[0]); err == nil {
				pos, rest = n, rest[1:]
			}
		}
		if cmd == "-D" || cmd == "--delete" {
			if pos > 0 && len(rest) == 0 {
				if pos > len(c.rules) {
					return fmt.Errorf("index of deletion too big")
				}
				c.rules = append(c.rules[:pos-1], c.rules[pos:]...)
				return nil
			}
			r, err := parseRule(rest)
			if err != nil {
				return err
			}
			want := r.String()
			for i, have := range c.rules {
				if have.String() == want {
					c.rules = append(c.rules[:i], c.rules[i+1:]...)
					return nil
				}
			}
			return errors.New("bad rule (does a matching rule exist in that chain?)")
		}
		r, err := parseRule(rest)
		if err != nil {
			return err
		}
		if err := f.checkRefs(t, r); err != nil {
			return err
		}
		if cmd == "-A" || cmd == "--append" {
			c.rules = append(c.rules, r)
			return nil
		}
		if pos < 0 {
			pos = 1
		}
		if pos < 1 || pos > len(c.rules)+1 {
			return fmt.Errorf("index of insertion too big")
		}
		c.rules = append(c.rules[:pos-1], append([]*Rule{r}, c.rules[pos-1:]...)...)
		return nil
	case "-N", "--new-chain":
		if c != nil {
			return errors.New("chain already exists")
		}
		if err := checkChainName(chain); err != nil {
			return err
		}
		t.chains[chain] = &fakeChain{}
		return nil
	case "-F", "--flush":
		if chain == "" {
			for _, c := range t.chains {
				c.rules = nil
			}
			return nil
		}
		if c == nil {
			return fmt.Errorf("chain '%s' does not exist", chain)
		}
		c.rules = nil
		return nil
	case "-X", "--delete-chain":
		var names []string
		if chain == "" {
			for n, c := range t.chains {
				if !c.builtin {
					names = append(names, n)
				}
			}
		} else {
			if c == nil {
				return fmt.Errorf("chain '%s' does not exist", chain)
			}
			names = []string{chain}
		}
		for _, n := range names {
			c := t.chains[n]
			if c.builtin {
				return fmt.Errorf("cannot delete built-in chain %s", n)
			}
			if len(c.rules) > 0 {
				return fmt.Errorf("chain %s is not empty", n)
			}
			if ref := t.referrer(n); ref != "" {
				return fmt.Errorf("chain %s is still referenced from %s", n, ref)
			}
			delete(t.chains, n)
		}
		return nil
	case "-P", "--policy":
		if c == nil || !c.builtin {
			return fmt.Errorf("policy of %q: not a built-in chain", chain)
		}
		c.policy = arg(2)
		return nil
	}
	return fmt.Errorf("command %q not faked", cmd)
}

func (f *Fake) checkRefs(t *fakeTable, r *Rule) error {
	if r.Target != "" && !(isVerdict(r.Target) && !r.Goto) {
		if _, ok := t.chains[r.Target]; !ok {
			return fmt.Errorf("chain '%s' does not exist (jump target)", r.Target)
		}
	}
	for _, m := range r.Matches {
		if m.Name != "set" {
			continue
		}
		s, ok := f.sets[m.Set]
		if !ok {
			return fmt.Errorf("set %s doesn't exist", m.Set)
		}
		if len(m.SetDirs) != s.dims() {
			return fmt.Errorf("set %s has %d dimensions, the rule gives %d", m.Set, s.dims(), len(m.SetDirs))
		}
	}
	return nil
}

// referrer names a chain whose rules jump to name, or "".
func (t *fakeTable) referrer(name string) string {
	for n, c := range t.chains {
		for _, r := range c.rules {
			if r.Target == name {
				return n
			}
		}
	}
	return ""
}

func (f *Fake) setInUse(name string) bool {
	for _, c := range f.filter.chains {
		for _, r := range c.rules {
			for _, m := range r.Matches {
				if m.Name == "set" && m.Set == name {
					return true
				}
			}
		}
	}
	return false
}

func (f *Fake) userChains() []string {
	var names []string
	for n, c := range f.filter.chains {
		if !c.builtin {
			names = append(names, n)
		}
	}
	sort.Strings(names)
	return names
}

// save renders the filter table as iptables-save does.
func (f *Fake) save() string {
	var b strings.Builder
	b.WriteString("*filter\n")
	for _, n := range builtinChains {
		fmt.Fprintf(&b, ":%s %s [0:0]\n", n, f.filter.chains[n].policy)
	}
	users := f.userChains()
	for _, n := range users {
		fmt.Fprintf(&b, ":%s - [0:0]\n", n)
	}
	for _, n := range append(append([]string(nil), builtinChains...), users...) {
		for _, r := range f.filter.chains[n].rules {
			fmt.Fprintf(&b, "-A %s %s\n", n, r.String())
		}
	}
	b.WriteString("COMMIT\n")
	return b.String()
}

// Save returns the filter table in iptables-save form.
func (f *Fake) Save() string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.save()
}

// Counts returns the number of user chains, rules (in every chain) and set members.
func (f *Fake) Counts() (chains, rules, sets, members int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, c := range f.filter.chains {
		if !c.builtin {
			chains++
		}
		rules += len(c.rules)
	}
	for _, s := range f.sets {
		sets++
		members += s.size()
	}
	return
}

// fakeSet is an ipset of type hash:ip, hash:net or hash:ip,port.
type fakeSet struct {
	typ     string
	ips     map[netip.Addr]bool
	nets    map[netip.Prefix]bool // value false: nomatch
	ipPorts map[ipPort]bool
}

type ipPort struct {
	ip    netip.Addr
	proto policy.Protocol
	port  uint16
}

func newFakeSet(typ string) (*fakeSet, error) {
	switch typ {
	case "hash:ip", "hash:net", "hash:ip,port":
	default:
		return nil, fmt.Errorf("set type %s not faked", typ)
	}
	return &fakeSet{typ: typ, ips: map[netip.Addr]bool{}, nets: map[netip.Prefix]bool{}, ipPorts: map[ipPort]bool{}}, nil
}

func (s *fakeSet) dims() int {
	if s.typ == "hash:ip,port" {
		return 2
	}
	return 1
}

func (s *fakeSet) size() int { return len(s.ips) + len(s.nets) + len(s.ipPorts) }

func (s *fakeSet) clone() *fakeSet {
	n, _ := newFakeSet(s.typ)
	for k, v := range s.ips {
		n.ips[k] = v
	}
	for k, v := range s.nets {
		n.nets[k] = v
	}
	for k, v := range s.ipPorts {
		n.ipPorts[k] = v
	}
	return n
}

// member parses an element of the set's type; nomatch is only valid for hash:net.
func (s *fakeSet) member(fields []string) (any, bool, error) {
	if len(fields) == 0 {
		return nil, false, errors.New("missing element")
	}
	nomatch := false
	for _, o := range fields[1:] {
		if o == "nomatch" && s.typ == "hash:net" {
			nomatch = true
			continue
		}
		return nil, false, fmt.Errorf("option %q not faked", o)
	}
	v := fields[0]
	switch s.typ {
	case "hash:ip":
		a, err := netip.ParseAddr(v)
		if err != nil || !a.Is4() {
			return nil, false, fmt.Errorf("bad IPv4 address %q", v)
		}
		return a, false, nil
	case "hash:net":
		if !strings.Contains(v, "/") {
			v += "/32"
		}
		p, err := netip.ParsePrefix(v)
		if err != nil || !p.Addr().Is4() {
			return nil, false, fmt.Errorf("bad IPv4 prefix %q", v)
		}
		if p.Bits() == 0 {
			return nil, false, errors.New("the value of the CIDR parameter of the IP address is invalid")
		}
		return p.Masked(), nomatch, nil
	default:
		ipS, portS, ok := strings.Cut(v, ",")
		if !ok {
			return nil, false, fmt.Errorf("bad ip,port element %q", v)
		}
		a, err := netip.ParseAddr(ipS)
		if err != nil || !a.Is4() {
			return nil, false, fmt.Errorf("bad IPv4 address %q", ipS)
		}
		protoS, pn, hasProto := strings.Cut(portS, ":")
		if !hasProto {
			protoS, pn = "tcp", portS
		}
		proto, err := parseProto(protoS)
		if err != nil {
			return nil, false, err
		}
		n, err := strconv.ParseUint(pn, 10, 16)
		if err != nil {
			return nil, false, fmt.Errorf("bad port %q", pn)
		}
		return ipPort{a, proto, uint16(n)}, false, nil
	}
}

func (s *fakeSet) add(m any, nomatch bool) {
	switch v := m.(type) {
	case netip.Addr:
		s.ips[v] = true
	case netip.Prefix:
		s.nets[v] = !nomatch
	case ipPort:
		s.ipPorts[v] = true
	}
}

func (s *fakeSet) del(m any) bool {
	var ok bool
	switch v := m.(type) {
	case netip.Addr:
		_, ok = s.ips[v]
		delete(s.ips, v)
	case netip.Prefix:
		_, ok = s.nets[v]
		delete(s.nets, v)
	case ipPort:
		_, ok = s.ipPorts[v]
		delete(s.ipPorts, v)
	}
	return ok
}

// containsAddr is the kernel's hash:net lookup: the most specific member holding a decides, and
// a nomatch member means no match.
func (s *fakeSet) containsAddr(a netip.Addr) bool {
	if s.typ == "hash:ip" {
		return s.ips[a]
	}
	for bits := 32; bits >= 1; bits-- {
		p, _ := a.Prefix(bits)
		if v, ok := s.nets[p]; ok {
			return v
		}
	}
	return false
}

func (s *fakeSet) lines(name string) []string {
	out := []string{fmt.Sprintf("create %s %s family inet hashsize 1024 maxelem %d", name, s.typ, setMaxElem)}
	var ms []string
	for a := range s.ips {
		ms = append(ms, a.String())
	}
	for p, ok := range s.nets {
		if ok {
			ms = append(ms, p.String())
		} else {
			ms = append(ms, p.String()+" nomatch")
		}
	}
	for k := range s.ipPorts {
		ms = append(ms, fmt.Sprintf("%s,%s:%d", k.ip, protoName(k.proto), k.port))
	}
	sort.Strings(ms)
	for _, m := range ms {
		out = append(out, "add "+name+" "+m)
	}
	return out
}

func (f *Fake) runIPSet(args []string, stdin []byte) ([]byte, []byte, error) {
	exist := false
	var cmd []string
	for _, a := range args {
		if a == "-exist" || a == "-!" {
			exist = true
			continue
		}
		cmd = append(cmd, a)
	}
	if len(cmd) == 0 {
		return nil, []byte("ipset: no command\n"), exitErr{1}
	}
	switch cmd[0] {
	case "restore":
		sets := make(map[string]*fakeSet, len(f.sets))
		for k, v := range f.sets {
			sets[k] = v.clone()
		}
		for i, line := range strings.Split(string(stdin), "\n") {
			fs := strings.Fields(line)
			if len(fs) == 0 || strings.HasPrefix(fs[0], "#") {
				continue
			}
			if err := f.ipsetCmd(sets, fs, exist); err != nil {
				return nil, []byte(fmt.Sprintf("ipset v7.17: Error in line %d: %v\n", i+1, err)), exitErr{1}
			}
		}
		f.sets = sets
		return nil, nil, nil
	case "list":
		if len(cmd) == 2 && cmd[1] == "-n" {
			var names []string
			for n := range f.sets {
				names = append(names, n)
			}
			sort.Strings(names)
			var b bytes.Buffer
			for _, n := range names {
				b.WriteString(n + "\n")
			}
			return b.Bytes(), nil, nil
		}
	case "save":
		var names []string
		for n := range f.sets {
			names = append(names, n)
		}
		sort.Strings(names)
		var b bytes.Buffer
		for _, n := range names {
			for _, l := range f.sets[n].lines(n) {
				b.WriteString(l + "\n")
			}
		}
		return b.Bytes(), nil, nil
	default:
		if err := f.ipsetCmd(f.sets, cmd, exist); err != nil {
			return nil, []byte("ipset v7.17: " + err.Error() + "\n"), exitErr{1}
		}
		return nil, nil, nil
	}
	return nil, []byte("ipset: command not faked\n"), exitErr{1}
}

func (f *Fake) ipsetCmd(sets map[string]*fakeSet, fs []string, exist bool) error {
	need := func(n int) error {
		if len(fs) < n {
			return fmt.Errorf("%s: missing arguments", fs[0])
		}
		return nil
	}
	if err := need(2); err != nil {
		return err
	}
	name := fs[1]
	s := sets[name]
	switch fs[0] {
	case "create", "-N":
		if err := need(3); err != nil {
			return err
		}
		if len(name) > 31 {
			return fmt.Errorf("set name %q longer than 31 characters", name)
		}
		if s != nil {
			if exist && s.typ == fs[2] {
				return nil
			}
			return errors.New("set cannot be created: set with the same name already exists")
		}
		ns, err := newFakeSet(fs[2])
		if err != nil {
			return err
		}
		sets[name] = ns
		return nil
	case "add", "-A", "del", "-D":
		if s == nil {
			return errors.New("the set with the given name does not exist")
		}
		m, nomatch, err := s.member(fs[2:])
		if err != nil {
			return err
		}
		if fs[0] == "add" || fs[0] == "-A" {
			if !exist && s.has(m) {
				return errors.New("element is already added to the set")
			}
			s.add(m, nomatch)
			return nil
		}
		if !s.del(m) && !exist {
			return errors.New("element is missing from the set")
		}
		return nil
	case "flush", "-F":
		if s == nil {
			return errors.New("the set with the given name does not exist")
		}
		n, _ := newFakeSet(s.typ)
		sets[name] = n
		return nil
	case "destroy", "-X":
		if s == nil {
			return errors.New("the set with the given name does not exist")
		}
		if f.setInUse(name) {
			return errors.New("set cannot be destroyed: it is in use by a kernel component")
		}
		delete(sets, name)
		return nil
	case "swap", "-W":
		if err := need(3); err != nil {
			return err
		}
		o := sets[fs[2]]
		if s == nil || o == nil {
			return errors.New("the set with the given name does not exist")
		}
		if s.typ != o.typ {
			return errors.New("the sets cannot be swapped: their type does not match")
		}
		sets[name], sets[fs[2]] = o, s
		return nil
	}
	return fmt.Errorf("command %q not faked", fs[0])
}

func (s *fakeSet) has(m any) bool {
	switch v := m.(type) {
	case netip.Addr:
		return s.ips[v]
	case netip.Prefix:
		_, ok := s.nets[v]
		return ok
	case ipPort:
		return s.ipPorts[v]
	}
	return false
}
