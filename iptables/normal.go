package iptables

import (
	"sort"
	"strings"
)

// NormalSave is a table in iptables-save form with the rules of the dispatch and rule-set
// chains sorted, and comment and counter lines dropped. Their order carries no meaning (a
// dispatch rule matches one address; every rule-set rule but the final DROP allows), and
// partial syncs append dispatch rules and insert member rules where a full sync writes them in
// order: two tables enforce the same rules when their NormalSave is equal.
func NormalSave(save string) string {
	var head, out []string
	unordered := map[string][]string{}
	var names []string
	for _, l := range strings.Split(save, "\n") {
		switch {
		case l == "" || strings.HasPrefix(l, "#"):
		case strings.HasPrefix(l, ":"):
			head = append(head, l)
		case strings.HasPrefix(l, "-A "+chainIngress+" "), strings.HasPrefix(l, "-A "+chainEgress+" "), strings.HasPrefix(l, "-A NPB-R-"):
			c := strings.Fields(l)[1]
			if unordered[c] == nil {
				names = append(names, c)
			}
			unordered[c] = append(unordered[c], l)
		default:
			out = append(out, l)
		}
	}
	sort.Strings(head)
	sort.Strings(names)
	for _, c := range names {
		sort.Strings(unordered[c])
		out = append(out, unordered[c]...)
	}
	return strings.Join(append(head, out...), "\n")
}
