package nftables

import (
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
)

// fromJSON reads `nft -j list table` output (libnftables' JSON schema 1) into a ruleset. It
// knows the expressions this package writes, in the forms the kernel gives them back.
func fromJSON(data []byte) (*ruleset, error) {
	var doc struct {
		Nftables []map[string]json.RawMessage `json:"nftables"`
	}
	if err := json.Unmarshal(data, &doc); err != nil {
		return nil, fmt.Errorf("read nft JSON: %w", err)
	}
	r := newRuleset()
	for _, obj := range doc.Nftables {
		for kind, raw := range obj {
			var err error
			switch kind {
			case "metainfo", "table":
			case "chain":
				err = r.jsonChain(raw)
			case "set":
				err = r.jsonSet(raw)
			case "map":
				err = r.jsonMap(raw)
			case "rule":
				err = r.jsonRule(raw)
			default:
				err = fmt.Errorf("unsupported object %q", kind)
			}
			if err != nil {
				return nil, fmt.Errorf("read nft JSON: %w", err)
			}
		}
	}
	return r, r.check()
}

func (r *ruleset) jsonChain(raw json.RawMessage) error {
	var c struct {
		Name   string `json:"name"`
		Hook   string `json:"hook"`
		Prio   int    `json:"prio"`
		Policy string `json:"policy"`
	}
	if err := json.Unmarshal(raw, &c); err != nil {
		return err
	}
	rc := r.chains[c.Name]
	if rc == nil {
		rc = &rsChain{name: c.Name}
		r.chains[c.Name] = rc
	}
	if c.Hook != "" {
		rc.hook, rc.prio, rc.policy = c.Hook, c.Prio, vAccept
		if c.Policy == "drop" {
			rc.policy = vDrop
		}
	}
	return nil
}

// jsonTypes reads a set's "type": one name or a list (a concatenation).
func jsonTypes(raw json.RawMessage) ([]vtype, error) {
	var one string
	if json.Unmarshal(raw, &one) == nil {
		return parseTypes(one)
	}
	var many []string
	if err := json.Unmarshal(raw, &many); err != nil {
		return nil, fmt.Errorf("bad set type %s", raw)
	}
	return parseTypes(strings.Join(many, " . "))
}

func (r *ruleset) jsonSet(raw json.RawMessage) error {
	var s struct {
		Name  string            `json:"name"`
		Type  json.RawMessage   `json:"type"`
		Flags []string          `json:"flags"`
		Elem  []json.RawMessage `json:"elem"`
	}
	if err := json.Unmarshal(raw, &s); err != nil {
		return err
	}
	types, err := jsonTypes(s.Type)
	if err != nil {
		return fmt.Errorf("set %s: %w", s.Name, err)
	}
	rs := &rsSet{name: s.Name, types: types, exact: map[string]struct{}{}}
	for _, f := range s.Flags {
		if f == "interval" {
			rs.interval = true
		}
	}
	for _, e := range s.Elem {
		k, err := jsonKey(types, e)
		if err != nil {
			return fmt.Errorf("set %s: %w", s.Name, err)
		}
		rs.add(k)
	}
	r.sets[s.Name] = rs
	return nil
}

func (r *ruleset) jsonMap(raw json.RawMessage) error {
	var m struct {
		Name string              `json:"name"`
		Type json.RawMessage     `json:"type"`
		Map  string              `json:"map"`
		Elem [][]json.RawMessage `json:"elem"`
	}
	if err := json.Unmarshal(raw, &m); err != nil {
		return err
	}
	if m.Map != "verdict" {
		return fmt.Errorf("map %s: unsupported data type %q", m.Name, m.Map)
	}
	types, err := jsonTypes(m.Type)
	if err != nil {
		return fmt.Errorf("map %s: %w", m.Name, err)
	}
	rm := &rsMap{name: m.Name, types: types, elems: map[string]verdict{}}
	for _, pair := range m.Elem {
		if len(pair) != 2 {
			return fmt.Errorf("map %s: element %v is not a key and a verdict", m.Name, pair)
		}
		k, err := jsonKey(types, pair[0])
		if err != nil {
			return fmt.Errorf("map %s: %w", m.Name, err)
		}
		v, ok, err := jsonVerdict(pair[1])
		if err != nil || !ok {
			return fmt.Errorf("map %s: bad verdict %s", m.Name, pair[1])
		}
		rm.elems[k.pack()] = v
		rm.keys = append(rm.keys, k)
	}
	r.maps[m.Name] = rm
	return nil
}

// jsonKey reads one element: a value, {"concat": [...]}, or {"elem": {"val": ...}} around
// either (elements with comments).
func jsonKey(types []vtype, raw json.RawMessage) (key, error) {
	var obj map[string]json.RawMessage
	if json.Unmarshal(raw, &obj) == nil {
		if e, ok := obj["elem"]; ok {
			var inner struct {
				Val json.RawMessage `json:"val"`
			}
			if err := json.Unmarshal(e, &inner); err != nil {
				return nil, err
			}
			return jsonKey(types, inner.Val)
		}
		if c, ok := obj["concat"]; ok {
			var parts []json.RawMessage
			if err := json.Unmarshal(c, &parts); err != nil {
				return nil, err
			}
			if len(parts) != len(types) {
				return nil, fmt.Errorf("element %s has %d parts, the type %d", raw, len(parts), len(types))
			}
			k := make(key, len(parts))
			for i, p := range parts {
				s, err := jsonValue(types[i], p)
				if err != nil {
					return nil, err
				}
				k[i] = s
			}
			return k, nil
		}
	}
	if len(types) != 1 {
		return nil, fmt.Errorf("element %s is not a concatenation of %d values", raw, len(types))
	}
	s, err := jsonValue(types[0], raw)
	if err != nil {
		return nil, err
	}
	return key{s}, nil
}

// jsonValue reads a string or number, {"prefix": {"addr", "len"}} or {"range": [lo, hi]}.
func jsonValue(t vtype, raw json.RawMessage) (span, error) {
	var s string
	if json.Unmarshal(raw, &s) == nil {
		return parseValue(t, s)
	}
	var n float64
	if json.Unmarshal(raw, &n) == nil {
		return parseValue(t, strconv.FormatFloat(n, 'f', -1, 64))
	}
	var obj struct {
		Prefix *struct {
			Addr string `json:"addr"`
			Len  int    `json:"len"`
		} `json:"prefix"`
		Range []json.RawMessage `json:"range"`
	}
	if err := json.Unmarshal(raw, &obj); err != nil {
		return span{}, fmt.Errorf("bad value %s", raw)
	}
	switch {
	case obj.Prefix != nil:
		return parseValue(t, fmt.Sprintf("%s/%d", obj.Prefix.Addr, obj.Prefix.Len))
	case len(obj.Range) == 2:
		lo, err := jsonValue(t, obj.Range[0])
		if err != nil {
			return span{}, err
		}
		hi, err := jsonValue(t, obj.Range[1])
		if err != nil {
			return span{}, err
		}
		return span{lo.lo, hi.hi}, nil
	}
	return span{}, fmt.Errorf("unsupported value %s", raw)
}

// jsonVerdict reads a verdict statement; ok is false for something else.
func jsonVerdict(raw json.RawMessage) (verdict, bool, error) {
	var obj map[string]json.RawMessage
	if err := json.Unmarshal(raw, &obj); err != nil || len(obj) != 1 {
		return verdict{}, false, nil
	}
	for k, v := range obj {
		switch k {
		case "accept":
			return verdict{kind: vAccept}, true, nil
		case "drop":
			return verdict{kind: vDrop}, true, nil
		case "return":
			return verdict{kind: vReturn}, true, nil
		case "jump", "goto":
			var t struct {
				Target string `json:"target"`
			}
			if err := json.Unmarshal(v, &t); err != nil {
				return verdict{}, false, err
			}
			kind := vJump
			if k == "goto" {
				kind = vGoto
			}
			return verdict{kind: kind, target: t.Target}, true, nil
		}
	}
	return verdict{}, false, nil
}

// jsonFields reads the left side of a match: a payload, meta or ct expression or a
// concatenation of them. `tcp dport` comes back as th dport after an implied meta l4proto.
func jsonFields(raw json.RawMessage) ([]field, []expr, error) {
	var obj struct {
		Payload *struct {
			Protocol string `json:"protocol"`
			Field    string `json:"field"`
		} `json:"payload"`
		Meta *struct {
			Key string `json:"key"`
		} `json:"meta"`
		CT *struct {
			Key string `json:"key"`
		} `json:"ct"`
		Concat []json.RawMessage `json:"concat"`
	}
	if err := json.Unmarshal(raw, &obj); err != nil {
		return nil, nil, fmt.Errorf("bad expression %s", raw)
	}
	switch {
	case obj.Concat != nil:
		var fields []field
		var implied []expr
		for _, c := range obj.Concat {
			f, im, err := jsonFields(c)
			if err != nil {
				return nil, nil, err
			}
			fields = append(fields, f...)
			implied = append(implied, im...)
		}
		return fields, implied, nil
	case obj.Payload != nil:
		p := obj.Payload
		switch {
		case p.Protocol == "ip" && p.Field == "saddr":
			return []field{fSaddr}, nil, nil
		case p.Protocol == "ip" && p.Field == "daddr":
			return []field{fDaddr}, nil, nil
		case p.Protocol == "th" && p.Field == "dport":
			return []field{fDport}, nil, nil
		case (p.Protocol == "tcp" || p.Protocol == "udp" || p.Protocol == "sctp") && p.Field == "dport":
			proto, _ := parseValue(tProto, p.Protocol)
			return []field{fDport}, []expr{{fields: []field{fL4Proto}, vals: []key{{proto}}}}, nil
		}
	case obj.Meta != nil && obj.Meta.Key == "l4proto":
		return []field{fL4Proto}, nil, nil
	case obj.CT != nil && obj.CT.Key == "state":
		return []field{fCTState}, nil, nil
	}
	return nil, nil, fmt.Errorf("unsupported expression %s", raw)
}

// jsonRight reads the right side of a match into e: "@set", {"set": [...]}, a list (conntrack
// states), or one value.
func jsonRight(raw json.RawMessage, e *expr) error {
	types := make([]vtype, len(e.fields))
	for i, f := range e.fields {
		types[i] = f.vtype()
	}
	var s string
	if json.Unmarshal(raw, &s) == nil && strings.HasPrefix(s, "@") {
		e.set = s[1:]
		return nil
	}
	if types[0] == tState {
		var list []string
		if json.Unmarshal(raw, &list) != nil {
			if err := json.Unmarshal(raw, &s); err != nil {
				return fmt.Errorf("bad conntrack states %s", raw)
			}
			list = []string{s}
		}
		v, err := parseValue(tState, strings.Join(list, ","))
		if err != nil {
			return err
		}
		e.vals = []key{{v}}
		return nil
	}
	var obj struct {
		Set []json.RawMessage `json:"set"`
	}
	if json.Unmarshal(raw, &obj) == nil && obj.Set != nil {
		for _, el := range obj.Set {
			k, err := jsonKey(types, el)
			if err != nil {
				return err
			}
			e.vals = append(e.vals, k)
		}
		return nil
	}
	k, err := jsonKey(types, raw)
	if err != nil {
		return err
	}
	e.vals = []key{k}
	return nil
}

func (r *ruleset) jsonRule(raw json.RawMessage) error {
	var j struct {
		Chain   string            `json:"chain"`
		Comment string            `json:"comment"`
		Expr    []json.RawMessage `json:"expr"`
	}
	if err := json.Unmarshal(raw, &j); err != nil {
		return err
	}
	rule := &rsRule{comment: j.Comment}
	for _, x := range j.Expr {
		if v, ok, err := jsonVerdict(x); err != nil {
			return err
		} else if ok {
			rule.verdict = v
			continue
		}
		var obj struct {
			Match *struct {
				Op    string          `json:"op"`
				Left  json.RawMessage `json:"left"`
				Right json.RawMessage `json:"right"`
			} `json:"match"`
			Vmap *struct {
				Key  json.RawMessage `json:"key"`
				Data string          `json:"data"`
			} `json:"vmap"`
		}
		if err := json.Unmarshal(x, &obj); err != nil {
			return fmt.Errorf("chain %s: bad expression %s", j.Chain, x)
		}
		switch {
		case obj.Match != nil:
			fields, implied, err := jsonFields(obj.Match.Left)
			if err != nil {
				return fmt.Errorf("chain %s: %w", j.Chain, err)
			}
			e := expr{fields: fields}
			switch obj.Match.Op {
			case "==", "in":
			case "!=":
				e.neg = true
			default:
				return fmt.Errorf("chain %s: unsupported operator %q", j.Chain, obj.Match.Op)
			}
			if err := jsonRight(obj.Match.Right, &e); err != nil {
				return fmt.Errorf("chain %s: %w", j.Chain, err)
			}
			rule.exprs = append(rule.exprs, implied...)
			rule.exprs = append(rule.exprs, e)
		case obj.Vmap != nil && strings.HasPrefix(obj.Vmap.Data, "@"):
			fields, implied, err := jsonFields(obj.Vmap.Key)
			if err != nil || len(implied) > 0 {
				return fmt.Errorf("chain %s: unsupported vmap key %s", j.Chain, obj.Vmap.Key)
			}
			rule.vmapFields, rule.vmap = fields, obj.Vmap.Data[1:]
		default:
			return fmt.Errorf("chain %s: unsupported expression %s", j.Chain, x)
		}
	}
	c := r.chains[j.Chain]
	if c == nil {
		c = &rsChain{name: j.Chain}
		r.chains[j.Chain] = c
	}
	c.rules = append(c.rules, rule)
	return nil
}
