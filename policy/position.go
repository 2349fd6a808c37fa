package policy

import (
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"strconv"
	"strings"

	yamlv3 "go.yaml.in/yaml/v3"
)

// Errors about input name the line of the file they are about. The YAML parsers count lines
// from the start of the text they were given (a document, or a List item re-encoded on its
// own); the functions here turn those into lines of the file, and find the line of a field
// from its path.

// lineRef matches the line numbers the YAML parsers put in their messages.
var lineRef = regexp.MustCompile(`\bline (\d+): `)

// parserLine takes the line a YAML parser's message is about out of it, for text that starts
// on line first of the file: it returns that line of the file and the rest of the message.
// For text that is not the file's (first 0: a List item, re-encoded on its own) the parser's
// lines would mislead: they are dropped, and the line is 0.
func parserLine(msg string, first int) (int, string) {
	msg = strings.TrimPrefix(msg, "error converting YAML to JSON: ")
	msg = strings.ReplaceAll(msg, "yaml: unmarshal errors:\n  ", "yaml: ")
	msg = strings.ReplaceAll(msg, "\n  ", "; ")
	line := 0
	if m := lineRef.FindStringSubmatchIndex(msg); m != nil && first > 0 {
		n, _ := strconv.Atoi(msg[m[2]:m[3]])
		line = first + n - 1
	}
	msg = lineRef.ReplaceAllStringFunc(msg, func(m string) string {
		n, _ := strconv.Atoi(m[len("line ") : len(m)-len(": ")])
		if first == 0 || first+n-1 == line {
			return ""
		}
		return fmt.Sprintf("line %d: ", first+n-1)
	})
	return line, msg
}

// decodeError reports an error of an object's typed decode (sigs.k8s.io/yaml turns the YAML
// into JSON, which encoding/json decodes) as "field: what is wrong", at the line of the field
// when it can be found.
func (d *decoded) decodeError(kind string, err error) error {
	line, msg := d.line, err.Error()
	node := d.doc.objectNode(d.item)
	var te *json.UnmarshalTypeError
	switch {
	case errors.As(err, &te):
		msg = fmt.Sprintf("%s: want %s, got %s", te.Field, te.Type, te.Value)
		if n := findTyped(node, splitPath(te.Field), te.Value); n != nil {
			line = d.doc.line + n.Line - 1
		}
	case strings.Contains(msg, "json: unknown field "):
		_, name, _ := strings.Cut(msg, "json: unknown field ")
		if unq, err := strconv.Unquote(name); err == nil {
			name = unq
		}
		msg = fmt.Sprintf("%s: unknown field", name)
		if n := findKey(node, name); n != nil {
			line = d.doc.line + n.Line - 1
		}
	default:
		first := d.doc.line
		if d.item >= 0 {
			first = 0
		}
		var l int
		if l, msg = parserLine(msg, first); l > 0 {
			line = l
		}
	}
	return fmt.Errorf("%s: line %d: %s: %s", d.where(), line, kind, msg)
}

// fieldLine returns the line of the file where a field of an object of the document is
// written (item is its index in a List, or -1; path as in FieldError.Field), or 0 when it
// cannot be found.
func (doc *document) fieldLine(item int, path string) int {
	n := doc.objectNode(item)
	if n == nil {
		return 0
	}
	return doc.line + findPath(n, splitPath(path)).Line - 1
}

// objectNode parses the document again and returns the node of an object in it (item is its
// index in a List, or -1), or nil. Only errors need it: a load keeps no trees.
func (doc *document) objectNode(item int) *yamlv3.Node {
	var root yamlv3.Node
	if yamlv3.Unmarshal(doc.data, &root) != nil {
		return nil
	}
	n := &root
	if n.Kind == yamlv3.DocumentNode && len(n.Content) > 0 {
		n = n.Content[0]
	}
	if item < 0 {
		return n
	}
	items := listItems(n)
	if item >= len(items) {
		return nil
	}
	return items[item]
}

// pathStep is one step of a field path: a key, or an index when key is "".
type pathStep struct {
	key   string
	index int
}

// splitPath reads a field path such as spec.ingress[0].from[1].ipBlock.cidr.
func splitPath(path string) []pathStep {
	var out []pathStep
	for _, part := range strings.Split(path, ".") {
		key, rest, _ := strings.Cut(part, "[")
		if key != "" {
			out = append(out, pathStep{key: key})
		}
		for rest != "" {
			var idx string
			idx, rest, _ = strings.Cut(rest, "]")
			rest = strings.TrimPrefix(rest, "[")
			if i, err := strconv.Atoi(idx); err == nil {
				out = append(out, pathStep{index: i})
			} else if idx != "" {
				out = append(out, pathStep{key: idx})
			}
		}
	}
	return out
}

// entry returns the key and value nodes of a mapping's key.
func entry(n *yamlv3.Node, key string) (k, v *yamlv3.Node) {
	if n.Kind == yamlv3.AliasNode && n.Alias != nil {
		n = n.Alias
	}
	if n.Kind != yamlv3.MappingNode {
		return nil, nil
	}
	for i := 0; i+1 < len(n.Content); i += 2 {
		if n.Content[i].Value == key {
			return n.Content[i], n.Content[i+1]
		}
	}
	return nil, nil
}

// findPath follows a path from n as far as it leads and returns the last node reached (the
// key's node for a key, so that the line is the field's).
func findPath(n *yamlv3.Node, path []pathStep) *yamlv3.Node {
	at := n
	for _, s := range path {
		if n.Kind == yamlv3.AliasNode && n.Alias != nil {
			n = n.Alias
		}
		if s.key == "" {
			if n.Kind != yamlv3.SequenceNode || s.index < 0 || s.index >= len(n.Content) {
				break
			}
			n = n.Content[s.index]
			at = n
			continue
		}
		k, v := entry(n, s.key)
		if k == nil {
			break
		}
		at, n = k, v
	}
	return at
}

// findTyped finds the value at a path without indices (as encoding/json names fields: every
// element of a list is searched) that has the JSON type a decode error names ("string",
// "number 1.5", "bool", "array", "object"); nil when there is none.
func findTyped(n *yamlv3.Node, path []pathStep, jsonType string) *yamlv3.Node {
	if n == nil {
		return nil
	}
	if n.Kind == yamlv3.AliasNode && n.Alias != nil {
		n = n.Alias
	}
	if n.Kind == yamlv3.SequenceNode {
		for _, c := range n.Content {
			if f := findTyped(c, path, jsonType); f != nil {
				return f
			}
		}
		return nil
	}
	if len(path) == 0 {
		if hasJSONType(n, jsonType) {
			return n
		}
		return nil
	}
	if _, v := entry(n, path[0].key); v != nil {
		return findTyped(v, path[1:], jsonType)
	}
	return nil
}

func hasJSONType(n *yamlv3.Node, jsonType string) bool {
	kind, _, _ := strings.Cut(jsonType, " ")
	switch kind {
	case "array":
		return n.Kind == yamlv3.SequenceNode
	case "object":
		return n.Kind == yamlv3.MappingNode
	case "number":
		return n.Kind == yamlv3.ScalarNode && (n.Tag == "!!int" || n.Tag == "!!float")
	case "bool":
		return n.Kind == yamlv3.ScalarNode && n.Tag == "!!bool"
	case "string":
		return n.Kind == yamlv3.ScalarNode && (n.Tag == "!!str" || n.Tag == "!!timestamp")
	}
	return false
}

// findKey returns the first mapping key named name under n, depth first.
func findKey(n *yamlv3.Node, name string) *yamlv3.Node {
	if n == nil {
		return nil
	}
	if n.Kind == yamlv3.MappingNode {
		for i := 0; i+1 < len(n.Content); i += 2 {
			if n.Content[i].Value == name {
				return n.Content[i]
			}
		}
	}
	for _, c := range n.Content {
		if f := findKey(c, name); f != nil {
			return f
		}
	}
	return nil
}
