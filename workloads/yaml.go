package workloads

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"strings"
)

// WriteYAML writes the generated objects as one multi-document Kubernetes YAML stream that
// `kubectl apply -f` accepts and policy.Load reads back: namespaces, then pods, then policies.
//
// Objects go through their JSON encoding (so field names, omitempty and int-or-string ports are
// exactly the API's) and are re-emitted as block YAML by a small writer that quotes every string
// YAML 1.1 could read as something else: "y", "no", "on", "1.5", "null" and the like come out
// double-quoted. Null fields (creationTimestamp and friends) are dropped. The generic
// sigs.k8s.io/yaml path does the same job over ten times slower (10,000 pods: 7.1 s against
// 0.48 s, measured here), which matters at 100k pods.
func WriteYAML(w io.Writer, g *Generated) error {
	bw := bufio.NewWriterSize(w, 1<<16)
	yw := &yamlWriter{w: bw}
	write := func(obj any) error {
		data, err := json.Marshal(obj)
		if err != nil {
			return err
		}
		return yw.document(data)
	}
	for _, ns := range g.Namespaces {
		if err := write(ns); err != nil {
			return fmt.Errorf("write namespace %s: %w", ns.Name, err)
		}
	}
	for _, p := range g.Pods {
		if err := write(p); err != nil {
			return fmt.Errorf("write pod %s/%s: %w", p.Namespace, p.Name, err)
		}
	}
	for _, np := range g.Policies {
		if err := write(np); err != nil {
			return fmt.Errorf("write networkpolicy %s/%s: %w", np.Namespace, np.Name, err)
		}
	}
	if err := bw.Flush(); err != nil {
		return fmt.Errorf("write yaml: %w", err)
	}
	return nil
}

// node is a JSON value with its object keys in document order.
type node struct {
	kind   byte // '{', '[', or 's' (string), 'l' (other literal: number, bool, null)
	keys   []string
	items  []node
	scalar string
}

// dropWhenEmpty are the fields whose empty object ({}) means nothing: a namespace's spec and
// status, a container's resources. Empty selectors ({}) mean "everything" and stay.
var dropWhenEmpty = map[string]bool{"spec": true, "status": true, "resources": true}

type yamlWriter struct {
	w *bufio.Writer
}

// document writes one JSON document as a YAML document, starting with "---".
func (y *yamlWriter) document(data []byte) error {
	p := jsonParser{data: data}
	n, err := p.value()
	if err != nil {
		return fmt.Errorf("re-read json: %w", err)
	}
	if n.kind != '{' {
		return fmt.Errorf("re-read json: document is not an object")
	}
	y.w.WriteString("---\n")
	y.mapping(n, 0, false)
	return nil
}

// jsonParser reads the compact JSON that encoding/json writes. It is a plain recursive
// descent over bytes: encoding/json's token API costs ten times more, which is most of the
// writer's time at 100k pods.
type jsonParser struct {
	data []byte
	i    int
}

func (p *jsonParser) fail(what string) error {
	return fmt.Errorf("%s at offset %d", what, p.i)
}

func (p *jsonParser) skipSpace() {
	for p.i < len(p.data) {
		switch p.data[p.i] {
		case ' ', '\t', '\n', '\r':
			p.i++
		default:
			return
		}
	}
}

func (p *jsonParser) value() (node, error) {
	p.skipSpace()
	if p.i >= len(p.data) {
		return node{}, p.fail("unexpected end")
	}
	switch c := p.data[p.i]; c {
	case '{':
		p.i++
		n := node{kind: '{'}
		p.skipSpace()
		if p.i < len(p.data) && p.data[p.i] == '}' {
			p.i++
			return n, nil
		}
		for {
			p.skipSpace()
			key, err := p.str()
			if err != nil {
				return node{}, err
			}
			p.skipSpace()
			if p.i >= len(p.data) || p.data[p.i] != ':' {
				return node{}, p.fail("want ':'")
			}
			p.i++
			v, err := p.value()
			if err != nil {
				return node{}, err
			}
			// A null field is an absent field to the API server; some empty objects mean
			// nothing either (see dropWhenEmpty).
			if !(v.kind == 'l' && v.scalar == "null") && !(v.kind == '{' && len(v.keys) == 0 && dropWhenEmpty[key]) {
				n.keys = append(n.keys, key)
				n.items = append(n.items, v)
			}
			p.skipSpace()
			if p.i >= len(p.data) {
				return node{}, p.fail("unterminated object")
			}
			if p.data[p.i] == '}' {
				p.i++
				return n, nil
			}
			if p.data[p.i] != ',' {
				return node{}, p.fail("want ',' or '}'")
			}
			p.i++
		}
	case '[':
		p.i++
		n := node{kind: '['}
		p.skipSpace()
		if p.i < len(p.data) && p.data[p.i] == ']' {
			p.i++
			return n, nil
		}
		for {
			v, err := p.value()
			if err != nil {
				return node{}, err
			}
			n.items = append(n.items, v)
			p.skipSpace()
			if p.i >= len(p.data) {
				return node{}, p.fail("unterminated array")
			}
			if p.data[p.i] == ']' {
				p.i++
				return n, nil
			}
			if p.data[p.i] != ',' {
				return node{}, p.fail("want ',' or ']'")
			}
			p.i++
		}
	case '"':
		s, err := p.str()
		return node{kind: 's', scalar: s}, err
	default:
		// A number, true, false or null: copied through as it is, since JSON's spelling of
		// them is also YAML's.
		start := p.i
		for p.i < len(p.data) && !strings.ContainsRune(",]} \t\r\n", rune(p.data[p.i])) {
			p.i++
		}
		lit := string(p.data[start:p.i])
		if lit == "" {
			return node{}, p.fail("unexpected character")
		}
		return node{kind: 'l', scalar: lit}, nil
	}
}

// str reads a JSON string; only strings with escapes go through encoding/json.
func (p *jsonParser) str() (string, error) {
	if p.i >= len(p.data) || p.data[p.i] != '"' {
		return "", p.fail("want a string")
	}
	start := p.i
	p.i++
	escaped := false
	for p.i < len(p.data) {
		switch p.data[p.i] {
		case '\\':
			escaped = true
			p.i += 2
			continue
		case '"':
			p.i++
			if !escaped {
				return string(p.data[start+1 : p.i-1]), nil
			}
			var s string
			if err := json.Unmarshal(p.data[start:p.i], &s); err != nil {
				return "", err
			}
			return s, nil
		}
		p.i++
	}
	return "", p.fail("unterminated string")
}

func (y *yamlWriter) indent(n int) {
	for range n {
		y.w.WriteByte(' ')
	}
}

// mapping writes a non-empty object at indent; first tells that the first key goes on the
// current line (after a list dash).
func (y *yamlWriter) mapping(n node, indent int, first bool) {
	for i, k := range n.keys {
		if i > 0 || !first {
			y.indent(indent)
		}
		y.w.WriteString(yamlString(k))
		y.w.WriteByte(':')
		y.value(n.items[i], indent)
	}
}

// value writes what follows "key:" for a value of a mapping at indent.
func (y *yamlWriter) value(v node, indent int) {
	switch {
	case v.kind == '{' && len(v.keys) > 0:
		y.w.WriteByte('\n')
		y.mapping(v, indent+2, false)
	case v.kind == '[' && len(v.items) > 0:
		y.w.WriteByte('\n')
		y.sequence(v, indent)
	default:
		y.w.WriteByte(' ')
		y.scalar(v)
		y.w.WriteByte('\n')
	}
}

// sequence writes a non-empty list whose dashes sit at indent.
func (y *yamlWriter) sequence(v node, indent int) {
	for _, it := range v.items {
		y.indent(indent)
		y.w.WriteString("- ")
		switch {
		case it.kind == '{' && len(it.keys) > 0:
			y.mapping(it, indent+2, true)
		case it.kind == '[' && len(it.items) > 0:
			y.w.WriteByte('\n')
			y.sequence(it, indent+2)
		default:
			y.scalar(it)
			y.w.WriteByte('\n')
		}
	}
}

func (y *yamlWriter) scalar(v node) {
	switch v.kind {
	case '{':
		y.w.WriteString("{}")
	case '[':
		y.w.WriteString("[]")
	case 's':
		y.w.WriteString(yamlString(v.scalar))
	default:
		y.w.WriteString(v.scalar)
	}
}

// yamlString returns s as a plain YAML scalar when no YAML 1.1 or 1.2 reader can take it for
// anything but that string, and double-quoted (JSON escapes, which YAML shares) otherwise.
func yamlString(s string) string {
	if plainSafe(s) {
		return s
	}
	b, _ := json.Marshal(s)
	return string(b)
}

// yaml11Words are the plain scalars YAML 1.1 reads as booleans or null (case-insensitively,
// to be safe).
var yaml11Words = map[string]bool{
	"y": true, "n": true, "yes": true, "no": true, "true": true, "false": true,
	"on": true, "off": true, "null": true,
}

// plainSafe accepts a conservative subset: a letter first, then letters, digits and . _ / -,
// and none of the boolean or null words. A leading letter rules out numbers, timestamps,
// sexagesimals and .inf.
func plainSafe(s string) bool {
	if s == "" || len(s) > 256 {
		return false
	}
	c := s[0]
	if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z') {
		return false
	}
	for i := 1; i < len(s); i++ {
		c := s[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '.' || c == '_' || c == '/' || c == '-') {
			return false
		}
	}
	return len(s) > 5 || !yaml11Words[strings.ToLower(s)]
}
