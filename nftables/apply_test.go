package nftables

import (
	"fmt"
	"strings"
	"testing"
)

// TestBatchElementsMergesRunsOfOneSetAndMapsLines checks the batching of element commands:
// consecutive adds (or deletes) to one set or map merge, up to elementBatch a command; any
// other command, another set, another verb or an element with a comment ends a run; every
// input line maps to the output line that holds it.
func TestBatchElementsMergesRunsOfOneSetAndMapsLines(t *testing.T) {
	var in []string
	in = append(in, "add table inet netpolbench")
	for i := range elementBatch + 2 {
		in = append(in, fmt.Sprintf("add element inet netpolbench p-1 { 198.18.%d.%d }", i/256, i%256))
	}
	in = append(in,
		"add element inet netpolbench p-2 { 198.18.9.1 }",
		"delete element inet netpolbench p-2 { 198.18.9.2 }",
		"delete element inet netpolbench p-2 { 198.18.9.3 }",
		`add element inet netpolbench p-2 { 198.18.9.4 comment "kept apart" }`,
		"add element inet netpolbench ingress { 198.18.0.1 : goto rs-1 }",
		"add element inet netpolbench ingress { 198.18.0.2 : goto rs-2 }",
		"add rule inet netpolbench rs-1 drop",
		"add element inet netpolbench ingress { 198.18.0.3 : goto rs-1 }",
	)
	out, lineOf := batchElements(strings.Join(in, "\n") + "\n")
	got := strings.Split(strings.TrimSuffix(out, "\n"), "\n")
	wantHeads := []string{
		"add table inet netpolbench",
		"add element inet netpolbench p-1 { 198.18.0.0, ",
		"add element inet netpolbench p-1 { 198.18.3.232, 198.18.3.233 }",
		"add element inet netpolbench p-2 { 198.18.9.1 }",
		"delete element inet netpolbench p-2 { 198.18.9.2, 198.18.9.3 }",
		`add element inet netpolbench p-2 { 198.18.9.4 comment "kept apart" }`,
		"add element inet netpolbench ingress { 198.18.0.1 : goto rs-1, 198.18.0.2 : goto rs-2 }",
		"add rule inet netpolbench rs-1 drop",
		"add element inet netpolbench ingress { 198.18.0.3 : goto rs-1 }",
	}
	if len(got) != len(wantHeads) {
		t.Fatalf("%d lines out, want %d:\n%s", len(got), len(wantHeads), out)
	}
	for i, w := range wantHeads {
		if !strings.HasPrefix(got[i], w) {
			t.Errorf("line %d reads %.120q, want it to start %q", i+1, got[i], w)
		}
	}
	if n := strings.Count(got[1], ", ") + 1; n != elementBatch {
		t.Errorf("the first batch holds %d elements, want %d", n, elementBatch)
	}
	for i, l := range in {
		o := lineOf(i + 1)
		if o < 1 || o > len(got) {
			t.Fatalf("input line %d maps to output line %d of %d", i+1, o, len(got))
		}
		_, elem, ok := elementCommand(l)
		if !ok {
			elem = l
		}
		if !strings.Contains(got[o-1], elem) {
			t.Errorf("input line %d (%s) maps to output line %d, which does not hold it", i+1, l, o)
		}
	}
}
