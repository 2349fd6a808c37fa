package policy

import (
	"encoding/json"
	"fmt"
	"reflect"
	"strings"
	"sync"

	yamlv3 "go.yaml.in/yaml/v3"
)

// The typed decode (sigs.k8s.io/yaml, then encoding/json) matches field names regardless of
// case, so `podselector:` would be read as podSelector, and of `podSelector:` and
// `PodSelector:` in one object the last would win without a word. The API server matches
// names exactly and refuses the others; so does the loader, before the typed decode, with
// the field's path and line.

// fieldNameError is a key that names no field of the object, with its path.
type fieldNameError struct {
	path string
	key  *yamlv3.Node
	want string // the field's exact name when only its case differs
}

func (e *fieldNameError) Error() string {
	if e.want != "" {
		return fmt.Sprintf("%s: unknown field (field names are case-sensitive: did you mean %s?)", e.path, e.want)
	}
	return e.path + ": unknown field"
}

var unmarshalerType = reflect.TypeFor[json.Unmarshaler]()

// jsonFieldCache maps a struct type to its JSON field names and their types.
var jsonFieldCache sync.Map // reflect.Type -> map[string]reflect.Type

// jsonFields returns the JSON names of a struct's fields, those of inline members included,
// with the field types, as encoding/json names them.
func jsonFields(t reflect.Type) map[string]reflect.Type {
	if m, ok := jsonFieldCache.Load(t); ok {
		return m.(map[string]reflect.Type)
	}
	m := map[string]reflect.Type{}
	for i := range t.NumField() {
		f := t.Field(i)
		name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
		switch {
		case name == "-" || !f.IsExported() && !f.Anonymous:
			continue
		case name == "" && f.Anonymous:
			ft := f.Type
			if ft.Kind() == reflect.Pointer {
				ft = ft.Elem()
			}
			if ft.Kind() == reflect.Struct {
				for k, v := range jsonFields(ft) {
					m[k] = v
				}
				continue
			}
		}
		if name == "" {
			name = f.Name
		}
		m[name] = f.Type
	}
	jsonFieldCache.Store(t, m)
	return m
}

// checkFieldNames checks that every key of n that the decode of type t takes as a field name
// names a field exactly. Values of the wrong kind are left to the decode, which says so.
func checkFieldNames(n *yamlv3.Node, t reflect.Type, path string) *fieldNameError {
	for n.Kind == yamlv3.AliasNode && n.Alias != nil {
		n = n.Alias
	}
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if reflect.PointerTo(t).Implements(unmarshalerType) {
		return nil // decoded by its own rules (int-or-string, times, quantities)
	}
	join := func(k string) string {
		if path == "" {
			return k
		}
		return path + "." + k
	}
	switch {
	case t.Kind() == reflect.Struct && n.Kind == yamlv3.MappingNode:
		fields := jsonFields(t)
		for i := 0; i+1 < len(n.Content); i += 2 {
			k := n.Content[i]
			if k.Tag == "!!merge" {
				continue
			}
			ft, ok := fields[k.Value]
			if !ok {
				e := &fieldNameError{path: join(k.Value), key: k}
				for name := range fields {
					if strings.EqualFold(name, k.Value) {
						e.want = name
					}
				}
				return e
			}
			if e := checkFieldNames(n.Content[i+1], ft, join(k.Value)); e != nil {
				return e
			}
		}
	case (t.Kind() == reflect.Slice || t.Kind() == reflect.Array) && n.Kind == yamlv3.SequenceNode:
		for i, c := range n.Content {
			if e := checkFieldNames(c, t.Elem(), fmt.Sprintf("%s[%d]", path, i)); e != nil {
				return e
			}
		}
	case t.Kind() == reflect.Map && n.Kind == yamlv3.MappingNode:
		for i := 0; i+1 < len(n.Content); i += 2 {
			if e := checkFieldNames(n.Content[i+1], t.Elem(), join(n.Content[i].Value)); e != nil {
				return e
			}
		}
	}
	return nil
}
