package reports

import (
	"encoding/json"
	"fmt"
	"html/template"
	"math"
	"slices"
	"sort"
	"strings"

	"netpolbench/results"
)

// category is one count the verdict compares backends on.
type category struct {
	ID string
	// Name is how a sentence names the category ("per packet"), Head how a table heads it.
	Name, Head string
	// What says what the figure is, in a table's second header line.
	What string
	// Format prints one figure.
	Format func(float64) string
}

var (
	catPacket = category{ID: "packet", Name: "per packet", Head: "Per packet", What: "allowed new flow, p50 above floor", Format: fmtAboveFloor}
	catEvent  = category{ID: "event", Name: "per churn event", Head: "Per churn event", What: "median apply, geomean of kinds", Format: fmtNS}
	catSync   = category{ID: "sync", Name: "per full sync", Head: "Full sync", What: "median apply", Format: fmtNS}
	catState  = category{ID: "state", Name: "in state size", Head: "State size", What: "rules + set members + map entries", Format: fmtCount}
)

// verdictCats are the counts the verdict answers on: what a packet, a churn event and the state
// cost. Full sync is plotted beside them and summarized in the terminal, not ranked here: a
// fourth column group would not fit a 1280 px screen at five scales.
var verdictCats = []category{catPacket, catEvent, catState}

// verdict is the answer a run gives, computed from its figures: which dataplane is cheapest on
// each count at each scale, by how much, and what the run could not measure.
type verdict struct {
	// Cluster describes a user's cluster when the run benchmarked a dump (bench --cluster).
	Cluster string
	// Notices are run-level remarks a reader needs before the figures (a quick sweep).
	Notices []string
	// Lead are the answer's sentences.
	Lead []string
	// Cats are the table's columns, Rows its lines: one per scale.
	Cats []category
	Rows []verdictRow
	// Caps say where a backend was skipped or limited, and why; CapsShort only where, one
	// line for the first screen (the reasons fold under it).
	Caps      []string
	CapsShort string
	// LeftOut says which backends the comparison leaves out (controls).
	LeftOut string
	// Spans says what each backend's per-packet figure was stamped around.
	Spans string
}

// spanWords say what the per-packet figures of an attach point time: the headline span.
var spanWords = map[string]string{
	"tcx":       "the TCX programs of the source's and the destination's veths, their own conntrack included (span tcx)",
	"netfilter": "the whole netfilter path, from PREROUTING before conntrack to after its confirmation (span nf-path)",
}

// spanSentence says, for the backends with a per-packet figure, which span it was stamped
// over, backends of one span together: the spans leave out different work, so a reader
// comparing them must know which is which.
func spanSentence(f *figures) string {
	var order []string
	by := map[string][]string{}
	for _, b := range f.backends {
		a := f.attach[b]
		if a == "" {
			continue
		}
		if _, seen := by[a]; !seen {
			order = append(order, a)
		}
		by[a] = append(by[a], b)
	}
	var parts []string
	for _, a := range order {
		what, ok := spanWords[a]
		if !ok {
			what = "the " + a + " span"
		}
		parts = append(parts, strings.Join(by[a], ", ")+" over "+what)
	}
	if len(parts) == 0 {
		return ""
	}
	return "Per packet: " + strings.Join(parts, "; ") + "."
}

type verdictRow struct {
	Pods int
	// Capped are the backends skipped or limited at this scale.
	Capped []string
	Cells  []verdictCell
}

// verdictCell ranks the backends on one count at one scale, cheapest first.
type verdictCell struct {
	Ranked []ranked
	// Note qualifies the comparison, e.g. which event kinds it covers.
	Note string
}

type ranked struct {
	Backend string
	Value   float64
	// Ratio is Value over the cheapest's value (a same-run ratio); 0 when the cheapest is 0.
	Ratio float64
}

// Best is the cheapest backend, or "" when the cell has no figure.
func (c verdictCell) Best() string {
	if len(c.Ranked) == 0 {
		return ""
	}
	return c.Ranked[0].Backend
}

// compared reports whether the cell compares at least two backends.
func (c verdictCell) compared() bool { return len(c.Ranked) >= 2 }

func computeVerdict(run *results.Run, f *figures) verdict {
	dps := f.dataplanes()
	v := verdict{Cats: verdictCats, Cluster: clusterSentence(run, f)}
	if run.Partial() {
		v.Notices = append(v.Notices, partialSentence(run))
	}
	if run.Config.Extra["quick"] == "true" {
		v.Notices = append(v.Notices, "Quick sweep: few samples per figure, so read the ratios rather than the absolute times.")
	}
	var left []string
	for _, b := range f.backends {
		if why, ok := controls[b]; ok {
			left = append(left, fmt.Sprintf("%s (%s)", b, why))
		}
	}
	if len(left) > 0 {
		v.LeftOut = "Not ranked: " + strings.Join(left, "; ") + "."
	}
	capped := cappedAt(run)
	for _, pods := range f.scales {
		row := verdictRow{Pods: pods, Capped: capped[pods]}
		for _, c := range v.Cats {
			row.Cells = append(row.Cells, rank(f, c, dps, pods))
		}
		v.Rows = append(v.Rows, row)
	}
	v.Lead = leadSentences(v, dps, v.Cluster != "")
	// The end-to-end line leads a run that measured nothing else; beside the default sweep's
	// table it would push the summary plots off the first screen, so there the End to end
	// section's folded line carries it.
	if e := endToEndSentence(run); e != "" && len(v.Rows) == 0 {
		v.Lead = []string{"This run measured the end-to-end phase alone, through a Kubernetes API server, " + e}
	}
	v.Caps = capSentences(run.Caps)
	v.CapsShort = capWhere(run.Caps)
	v.Spans = spanSentence(f)
	return v
}

// partialSentence says that the run did not finish, where it stopped, and how to go on.
func partialSentence(run *results.Run) string {
	p := run.Progress
	done := fmt.Sprintf("%d phases", len(p.Phases))
	if len(p.Phases) == 1 {
		done = "1 phase"
	}
	where := "it was killed"
	if len(p.Phases) > 0 {
		where += " after " + p.Phases[len(p.Phases)-1].ID
	}
	if st := p.Stopped; st != nil {
		where = "it stopped"
		if st.Phase != "" {
			where += " in " + st.Phase
		}
		if st.Reason != "" {
			where += " (" + st.Reason + ")"
		}
	}
	return fmt.Sprintf("Partial run: %s finished, then %s; later phases are missing from every figure below. "+
		"netpolbench bench --resume on its directory continues it.", done, where)
}

// rank orders the dataplanes on one count at one scale.
func rank(f *figures, c category, dps []string, pods int) verdictCell {
	var cell verdictCell
	var kinds []string
	if c.ID == catEvent.ID {
		kinds = f.eventKinds(dps, pods)
		if all := len(results.EventTypes) - 1; len(kinds) > 0 && len(kinds) < all {
			cell.Note = fmt.Sprintf("%d of %d event kinds", len(kinds), all)
		}
	}
	for _, b := range dps {
		k := scaleKey{b, pods}
		var val float64
		ok := false
		switch c.ID {
		case catPacket.ID:
			var p packetCost
			p, ok = f.packet[k]
			val = p.P50
		case catEvent.ID:
			val, ok = f.geomean(b, pods, kinds)
		case catSync.ID:
			var s spread
			s, ok = f.sync[k]
			val = s.Median
		case catState.ID:
			var s stateSize
			s, ok = f.state[k]
			val = float64(s.Entries())
		}
		if ok && !math.IsNaN(val) {
			cell.Ranked = append(cell.Ranked, ranked{Backend: b, Value: val})
		}
	}
	sort.SliceStable(cell.Ranked, func(i, j int) bool { return cell.Ranked[i].Value < cell.Ranked[j].Value })
	if len(cell.Ranked) > 0 && cell.Ranked[0].Value > 0 {
		for i := range cell.Ranked {
			cell.Ranked[i].Ratio = cell.Ranked[i].Value / cell.Ranked[0].Value
		}
	}
	return cell
}

// leadSentences say which dataplane is cheapest on each count, merging counts (and scales) with
// the same answer, so a clear result reads as one sentence.
func leadSentences(v verdict, dps []string, cluster bool) []string {
	if len(v.Rows) == 0 {
		return []string{"This run has no headline figures yet (no per-packet stamps, update times or sizes): the sections below say what it measured."}
	}
	where := "at every measured scale (" + podsList(rowPods(v.Rows)) + ")"
	if len(v.Rows) == 1 {
		where = "at " + fmtCount(float64(v.Rows[0].Pods)) + " pods"
	}
	if cluster {
		where = "on your cluster"
	}
	// winners[i] is category i's cheapest backend per scale ("" where fewer than two compared).
	type answer struct {
		pattern string // the winners joined, to group categories with the same answer
		cats    []string
		idx     []int // the categories' indexes in v.Cats
		winners []string
	}
	var answers []*answer
	byPattern := map[string]*answer{}
	var single []string
	for i, c := range v.Cats {
		var ws []string
		any := false
		for _, r := range v.Rows {
			w := ""
			if r.Cells[i].compared() {
				w, any = r.Cells[i].Best(), true
			}
			ws = append(ws, w)
		}
		if !any {
			single = append(single, c.Name)
			continue
		}
		p := strings.Join(ws, "\x00")
		a := byPattern[p]
		if a == nil {
			a = &answer{pattern: p, winners: ws}
			byPattern[p] = a
			answers = append(answers, a)
		}
		a.cats = append(a.cats, c.Name)
		a.idx = append(a.idx, i)
	}
	var out []string
	for _, a := range answers {
		// The scales where a backend won; a scale without a comparison is left out.
		wins := map[string][]int{}
		var order []string
		for i, w := range a.winners {
			if w == "" {
				continue
			}
			if _, ok := wins[w]; !ok {
				order = append(order, w)
			}
			wins[w] = append(wins[w], v.Rows[i].Pods)
		}
		if len(order) == 1 && len(wins[order[0]]) == len(v.Rows) {
			out = append(out, fmt.Sprintf("%s is the cheapest dataplane %s %s%s.", order[0], joinAnd(a.cats), where, othersCost(v, a.idx)))
			continue
		}
		var parts []string
		for _, w := range order {
			parts = append(parts, fmt.Sprintf("%s at %s", w, podsList(wins[w])))
		}
		out = append(out, fmt.Sprintf("Cheapest %s: %s.", joinAnd(a.cats), strings.Join(parts, "; ")))
	}
	if len(single) > 0 && len(answers) > 0 {
		out = append(out, fmt.Sprintf("Not compared %s: fewer than two dataplanes measured it.", joinAnd(single)))
	}
	if len(answers) == 0 {
		names := strings.Join(dps, ", ")
		if names == "" {
			names = "no dataplane"
		}
		out = append(out, fmt.Sprintf("This run measured %s alone: its figures are below, with nothing to compare them to.", names))
	}
	return out
}

// othersCost says by how much the other dataplanes lose on the given counts, as the range of
// their same-run ratios over every scale: ": the others cost 1.8–5.7× as much per packet and
// 59–627× per full sync".
func othersCost(v verdict, cats []int) string {
	var parts []string
	others := map[string]bool{}
	for _, ci := range cats {
		lo, hi := math.Inf(1), 0.0
		for _, r := range v.Rows {
			for _, e := range r.Cells[ci].Ranked[1:] {
				if e.Ratio > 0 {
					lo, hi = math.Min(lo, e.Ratio), math.Max(hi, e.Ratio)
					others[e.Backend] = true
				}
			}
		}
		if hi == 0 {
			continue
		}
		rng := ratioText(lo)
		if ratioText(lo) != ratioText(hi) {
			rng = strings.TrimSuffix(ratioText(lo), "×") + "–" + ratioText(hi)
		}
		if len(parts) == 0 {
			rng += " as much"
		}
		parts = append(parts, rng+" "+v.Cats[ci].Name)
	}
	if len(parts) == 0 {
		return ""
	}
	who := "the others cost"
	if len(others) == 1 {
		for b := range others {
			who = b + " costs"
		}
	}
	return ": " + who + " " + joinAnd(parts)
}

func rowPods(rows []verdictRow) []int {
	var out []int
	for _, r := range rows {
		out = append(out, r.Pods)
	}
	return out
}

// podsList is "100 pods", "100 and 1k pods" or "100, 1k and 10k pods".
func podsList(pods []int) string {
	var ps []string
	for _, p := range pods {
		ps = append(ps, fmtCount(float64(p)))
	}
	return joinAnd(ps) + " pods"
}

func joinAnd(xs []string) string {
	switch len(xs) {
	case 0:
		return ""
	case 1:
		return xs[0]
	}
	return strings.Join(xs[:len(xs)-1], ", ") + " and " + xs[len(xs)-1]
}

// cappedAt lists, per scale, the backends the run skipped or limited there.
func cappedAt(run *results.Run) map[int][]string {
	out := map[int][]string{}
	for _, c := range run.Caps {
		if c.Pods > 0 && !slices.Contains(out[c.Pods], c.Backend) {
			out[c.Pods] = append(out[c.Pods], c.Backend)
		}
	}
	return out
}

// capWhere says where each backend was skipped or limited, without why, in the order the
// caps name the backends: "iptables at 3k, 10k and 100k pods; ipset at 100k pods".
func capWhere(caps []results.Cap) string {
	var order []string
	pods := map[string][]int{}
	every := map[string]bool{}
	for _, c := range caps {
		if _, ok := pods[c.Backend]; !ok {
			order = append(order, c.Backend)
			pods[c.Backend] = nil
		}
		if c.Pods == 0 {
			every[c.Backend] = true
		} else if !slices.Contains(pods[c.Backend], c.Pods) {
			pods[c.Backend] = append(pods[c.Backend], c.Pods)
		}
	}
	var out []string
	for _, b := range order {
		ps := pods[b]
		sort.Ints(ps)
		scope := "at every scale"
		if !every[b] && len(ps) > 0 {
			scope = "at " + podsList(ps)
		}
		out = append(out, b+" "+scope)
	}
	return strings.Join(out, "; ")
}

// capSentences say where each backend was skipped or limited and why, one sentence per distinct
// reason: "iptables, ipset skipped at 10k and 100k pods: … (max 1000 pods)."
func capSentences(caps []results.Cap) []string {
	type group struct {
		skipped       bool
		reason, limit string
		backends      []string
		pods          []int
		everyScale    bool
	}
	var groups []*group
	byKey := map[string]*group{}
	for _, c := range caps {
		key := fmt.Sprint(c.Skipped, "\x00", c.Reason, "\x00", c.Limit)
		g := byKey[key]
		if g == nil {
			g = &group{skipped: c.Skipped, reason: strings.TrimSuffix(c.Reason, "."), limit: c.Limit}
			byKey[key] = g
			groups = append(groups, g)
		}
		if !slices.Contains(g.backends, c.Backend) {
			g.backends = append(g.backends, c.Backend)
		}
		if c.Pods == 0 {
			g.everyScale = true
		} else if !slices.Contains(g.pods, c.Pods) {
			g.pods = append(g.pods, c.Pods)
		}
	}
	var out []string
	for _, g := range groups {
		verb := "limited"
		if g.skipped {
			verb = "skipped"
		}
		sort.Ints(g.pods)
		scope := "at every scale"
		if !g.everyScale && len(g.pods) > 0 {
			scope = "at " + podsList(g.pods)
		}
		limit := ""
		if g.limit != "" {
			limit = " (" + g.limit + ")"
		}
		out = append(out, fmt.Sprintf("%s %s %s: %s%s.", strings.Join(g.backends, ", "), verb, scope, g.reason, limit))
	}
	return out
}

// clusterSentence describes the user's cluster of a `bench --cluster` run, or is "" for a
// generated sweep. results.json records the dump's path and pod count (config extra "cluster",
// workload {"cluster", "pods"}); identities come from the sizes or the compile benchmark, and
// policies and namespaces from the workload when the run recorded them.
func clusterSentence(run *results.Run, f *figures) string {
	var w struct {
		Cluster    string `json:"cluster"`
		Pods       int    `json:"pods"`
		Policies   *int   `json:"policies"`
		Namespaces *int   `json:"namespaces"`
	}
	_ = json.Unmarshal(run.Workload, &w) // a generated workload's spec has other fields
	path := run.Config.Extra["cluster"]
	if path == "" {
		path = w.Cluster
	}
	if path == "" {
		return ""
	}
	pods := w.Pods
	if pods == 0 && len(f.scales) > 0 {
		pods = f.scales[len(f.scales)-1]
	}
	parts := []string{fmt.Sprintf("%s pods", fmtInt(pods))}
	if w.Namespaces != nil {
		parts = append(parts, fmt.Sprintf("%s namespaces", fmtInt(*w.Namespaces)))
	}
	if ids := identitiesAt(run, pods); ids > 0 {
		parts = append(parts, fmt.Sprintf("%s identities", fmtInt(ids)))
	}
	if w.Policies == nil {
		return fmt.Sprintf("Your cluster, %s: %s (the run did not record its policy count).", path, joinAnd(parts))
	}
	parts = append(parts, fmt.Sprintf("%s NetworkPolicies", fmtInt(*w.Policies)))
	return fmt.Sprintf("Your cluster, %s: %s.", path, joinAnd(parts))
}

// identitiesAt is the number of security identities at a scale: from the sizes, else from the
// compile benchmark's exact "identities" metric; 0 when neither has it.
func identitiesAt(run *results.Run, pods int) int {
	for _, s := range run.Sizes {
		if s.Pods == pods && s.Identities > 0 {
			return s.Identities
		}
	}
	if b := run.Find(fmt.Sprintf("BenchmarkCompile/pods=%d", pods)); b != nil {
		if m := b.Metric("identities"); m != nil && len(m.Samples) > 0 {
			return int(m.Samples[0])
		}
	}
	return 0
}

// fmtAboveFloor prints a cost above the stamping floor; 0 means the floor's resolution hid it.
func fmtAboveFloor(ns float64) string {
	if ns <= 0 {
		return "≈ floor"
	}
	return fmtNS(ns)
}

// fmtInt prints an integer with thousands separators: 12,345.
func fmtInt(n int) string {
	s := fmt.Sprint(n)
	neg := strings.HasPrefix(s, "-")
	s = strings.TrimPrefix(s, "-")
	for i := len(s) - 3; i > 0; i -= 3 {
		s = s[:i] + "," + s[i:]
	}
	if neg {
		s = "-" + s
	}
	return s
}

// ratioText prints a same-run ratio with the precision its size deserves: 1.3×, 14×, 1,500×.
func ratioText(r float64) string {
	switch {
	case r >= 100:
		return fmtInt(int(math.Round(r))) + "×"
	case r >= 10:
		return trim(r, 0) + "×"
	}
	return trim(r, 1) + "×"
}

// answerView is a report's first screen, as the template draws it.
type answerView struct {
	Verdict verdictHTML
	Plots   []Figure
}

// verdictHTML draws the verdict as a matrix: a row per dataplane, a column per count and
// scale. The cheapest at a scale shows its figure, the others their ratio to it, so a reader
// finds their backend's row and reads its multiples across.
type verdictHTML struct {
	Cluster             string
	Notices, Lead, Caps []string
	CapsShort           string
	LeftOut             string
	Heads               []verdictHead
	Scales              []verdictScale
	Rows                []verdictLine
	Footnotes           []string
}

type verdictHead struct {
	Head, What string
	Span       int
}

type verdictScale struct {
	Pods string
	// Mark points at a footnote, e.g. "*".
	Mark string
}

type verdictLine struct {
	Backend string
	Colour  template.CSS
	Cells   []verdictMark
}

type verdictMark struct {
	Text, Title string
	// Class is "best", "capped" or "" (a ratio) or "none".
	Class string
}

func verdictView(v verdict, backends []string) verdictHTML {
	out := verdictHTML{Cluster: v.Cluster, Notices: v.Notices, Lead: v.Lead, Caps: v.Caps, CapsShort: v.CapsShort, LeftOut: v.LeftOut}
	if len(v.Rows) == 0 {
		return out
	}
	// Columns: categories in order, scales within; a category nobody measured is left out.
	type col struct{ cat, row int }
	var cols []col
	notes := map[string]string{}
	for ci, c := range v.Cats {
		n := 0
		for ri, r := range v.Rows {
			if len(r.Cells[ci].Ranked) > 0 {
				cols = append(cols, col{ci, ri})
				n++
			}
		}
		if n == 0 {
			continue
		}
		out.Heads = append(out.Heads, verdictHead{Head: c.Head, What: c.What, Span: n})
	}
	for _, c := range cols {
		sc := verdictScale{Pods: fmtCount(float64(v.Rows[c.row].Pods))}
		if note := v.Rows[c.row].Cells[c.cat].Note; note != "" {
			mark, ok := notes[note]
			if !ok {
				mark = strings.Repeat("*", len(notes)+1)
				notes[note] = mark
				out.Footnotes = append(out.Footnotes, fmt.Sprintf("%s %s at %s pods: over %s, those every dataplane finished.",
					mark, strings.ToLower(v.Cats[c.cat].Head), sc.Pods, note))
			}
			sc.Mark = mark
		}
		out.Scales = append(out.Scales, sc)
	}
	for _, b := range backends {
		line := verdictLine{Backend: b, Colour: cssColour(backendColour(b))}
		any := false
		for _, c := range cols {
			r := v.Rows[c.row]
			cell := r.Cells[c.cat]
			m := verdictMark{Text: "–", Class: "none", Title: b + ": not measured"}
			for j, e := range cell.Ranked {
				if e.Backend != b {
					continue
				}
				any = true
				fig := v.Cats[c.cat].Format(e.Value)
				m = verdictMark{Text: ratioText(e.Ratio), Title: fmt.Sprintf("%s: %s", b, fig)}
				switch {
				case j == 0:
					m.Text, m.Class = fig, "best"
					m.Title += ", the cheapest"
				case e.Ratio == 0:
					m.Text = fig // the cheapest is 0: a ratio to it means nothing
				default:
					m.Title += " (" + ratioText(e.Ratio) + " the cheapest)"
				}
			}
			if m.Class == "none" && slices.Contains(r.Capped, b) {
				m = verdictMark{Text: "capped", Class: "capped", Title: b + " was capped at this scale: see below"}
			}
			line.Cells = append(line.Cells, m)
		}
		if any {
			out.Rows = append(out.Rows, line)
		}
	}
	if v.Spans != "" {
		out.Footnotes = append(out.Footnotes, v.Spans)
	}
	return out
}
