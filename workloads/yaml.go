package workloads

import (
	"bufio"
	"bytes"
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
// sigs.k8s.io/yaml path does the same job about ten times slower, which matters at 100k pods.
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
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	n, err := parseNode(dec)
	if err != nil {
		return fmt.Errorf("re-read json: %w", err)
	}
	y.w.WriteString("---\n")
	if n.kind != '{' {
		return fmt.Errorf("document is not an object")
	}
	y.mapping(n, 0, false)
	return nil
}

func parseNode(dec *json.Decoder) (node, error) {
	tok, err := dec.Token()
	if err != nil {
		return node{}, err
	}
	switch t := tok.(type) {
	case json.Delim:
		switch t {
		case '{':
			n := node{kind: '{'}
			for dec.More() {
				kt, err := dec.Token()
				if err != nil {
					return node{}, err
				}
				v, err := parseNode(dec)
				if err != nil {
					return node{}, err
				}
				if v.kind == 'l' && v.scalar == "null" {
					continue // a null field is an absent field to the API server
				}
				if v.kind == '{' && len(v.keys) == 0 && dropWhenEmpty[kt.(string)] {
					continue
				}
				n.keys = append(n.keys, kt.(string))
				n.items = append(n.items, v)
			}
			_, err := dec.Token()
			return n, err
		case '[':
			n := node{kind: '['}
			for dec.More() {
				v, err := parseNode(dec)
				if err != nil {
					return node{}, err
				}
				n.items = append(n.items, v)
			}
			_, err := dec.Token()
			return n, err
		}
		return node{}, fmt.Errorf("unexpected %v", t)
	case string:
		return node{kind: 's', scalar: t}, nil
	case json.Number:
		return node{kind: 'l', scalar: t.String()}, nil
	case bool:
		if t {
			return node{kind: 'l', scalar: "true"}, nil
		}
		return node{kind: 'l', scalar: "false"}, nil
	case nil:
		return node{kind: 'l', scalar: "null"}, nil
	}
	return node{}, fmt.Errorf("unexpected token %v", tok)
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
