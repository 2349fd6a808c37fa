package nftables

import (
	"context"
	"net/netip"
	"strconv"
	"strings"
	"time"

	"sigs.k8s.io/knftables"
)

// elementBatch is the most elements merged into one nft command: at 500,000 elements,
// batches of 1,000 were applied in 1.8 s, one command of all of them in 3.4 s.
const elementBatch = 1000

// textRunner applies nft input text itself (the kernel: `nft -f -`); an interface without it
// (the Fake) is handed the transaction.
type textRunner interface {
	runText(ctx context.Context, payload string) error
}

// run applies a transaction and fills its timings and sizes. Counts count the nft input as
// sent: batched unless Config.PerElement. On the kernel's path the input was written as the
// transaction was planned; for the Fake it is written out here from the transaction, the same
// text (TestKernelInputIsTheFakesTransactionWrittenOut).
func (b *Backend) run(t *txb, start time.Time) error {
	if b.mutate != nil {
		if t.in != nil {
			tx := b.cfg.NFT.NewTransaction()
			b.mutate(tx)
			t.in.text(tx.String())
		} else {
			b.mutate(t.tx)
		}
	}
	t0 := time.Now()
	t.st.Plan = t0.Sub(start)
	var payload string
	lineOf := func(n int) int { return n }
	switch {
	case t.in != nil:
		payload = t.in.String()
	case b.cfg.PerElement:
		payload = t.tx.String()
	default:
		payload, lineOf = batchElements(t.tx.String())
	}
	t.st.Commands, t.st.Bytes = strings.Count(payload, "\n"), len(payload)
	t1 := time.Now()
	t.st.Render = t1.Sub(t0)
	var err error
	if r, ok := b.cfg.NFT.(textRunner); ok {
		err = r.runText(context.Background(), payload)
		lineOf = func(n int) int { return n }
	} else {
		err = b.cfg.NFT.Run(context.Background(), t.tx)
	}
	t.st.Apply = time.Since(t1)
	if err != nil {
		return newTxError(payload, err, lineOf)
	}
	return nil
}

// input is nft input being written: commands as knftables writes them, with runs of element
// commands of one set or map and one verb merged into commands of up to batch elements (nft
// applies them the same way, in the same one transaction). Elements are written straight
// into it, without a knftables object or a line of text of their own.
type input struct {
	b     strings.Builder
	batch int
	// verb and set are those of the element command left open ("" when none), count its
	// elements.
	verb, set string
	count     int
	// lines counts the commands begun.
	lines   int
	scratch [64]byte
}

func newInput(batch int) *input { return &input{batch: batch} }

// open begins an element of set: it joins the open command when that has the same verb and
// set and room, else it closes that and begins a new command. The caller writes the element.
func (w *input) open(verb, set string) {
	if w.verb == verb && w.set == set && w.count < w.batch {
		w.b.WriteString(", ")
		w.count++
		return
	}
	w.close()
	w.lines++
	w.b.WriteString(verb)
	w.b.WriteString(" element ")
	w.b.WriteString(string(Family))
	w.b.WriteByte(' ')
	w.b.WriteString(TableName)
	w.b.WriteByte(' ')
	w.b.WriteString(set)
	w.b.WriteString(" { ")
	w.verb, w.set, w.count = verb, set, 1
}

func (w *input) close() {
	if w.verb != "" {
		w.b.WriteString(" }\n")
		w.verb = ""
	}
}

func (w *input) addr(ip netip.Addr) { w.b.Write(ip.AppendTo(w.scratch[:0])) }

func (w *input) num(n int) { w.b.Write(strconv.AppendInt(w.scratch[:0], int64(n), 10)) }

// command writes one command (a line without its newline), merging an element command into
// the open one where it can.
func (w *input) command(l string) {
	if head, elem, ok := elementCommand(l); ok {
		if f := strings.Fields(head); len(f) == 6 && f[2] == string(Family) && f[3] == TableName {
			w.open(f[0], f[4])
			w.b.WriteString(elem)
			return
		}
	}
	w.close()
	w.lines++
	w.b.WriteString(l)
	w.b.WriteByte('\n')
}

// text writes commands, one a line.
func (w *input) text(s string) {
	for l := range strings.Lines(s) {
		w.command(strings.TrimSuffix(l, "\n"))
	}
}

// String closes the open command and returns the input.
func (w *input) String() string {
	w.close()
	return w.b.String()
}

// batchElements merges consecutive element commands of one set or map, with one verb, into
// commands of up to elementBatch elements. lineOf maps a line of the input (1-based) to the
// line of the output holding it.
func batchElements(in string) (string, func(int) int) {
	w := newInput(elementBatch)
	w.b.Grow(len(in))
	out := []int{0}
	for l := range strings.Lines(in) {
		w.command(strings.TrimSuffix(l, "\n"))
		out = append(out, w.lines)
	}
	return w.String(), func(line int) int {
		if line < 1 || line >= len(out) {
			return 0
		}
		return out[line]
	}
}

// elementCommand splits "add element inet netpolbench s { 1.2.3.4 }" into its head
// ("add element inet netpolbench s { ") and its element; ok is false for other commands
// and for elements with a comment.
func elementCommand(l string) (head, elem string, ok bool) {
	if !strings.HasPrefix(l, "add element ") && !strings.HasPrefix(l, "delete element ") {
		return "", "", false
	}
	i := strings.Index(l, " { ")
	if i < 0 || !strings.HasSuffix(l, " }") || strings.Contains(l, `"`) {
		return "", "", false
	}
	return l[:i+3], l[i+3 : len(l)-2], true
}

// Verbs of a transaction's commands.
const (
	verbAdd    = "add"
	verbDelete = "delete"
	verbFlush  = "flush"
)

// object adds, flushes or deletes an object: into the transaction for the Fake, as a command
// of the input on the kernel's path.
func (t *txb) object(verb string, obj knftables.Object) {
	tx := t.tx
	if t.in != nil {
		tx = t.nft.NewTransaction()
	}
	switch verb {
	case verbAdd:
		tx.Add(obj)
	case verbFlush:
		tx.Flush(obj)
	default:
		tx.Delete(obj)
	}
	if t.in != nil {
		t.in.text(tx.String())
	}
}

// addrElem adds or deletes the element ip of set.
func (t *txb) addrElem(verb, set string, ip netip.Addr) {
	if t.in == nil {
		t.object(verb, &knftables.Element{Set: set, Key: []string{ip.String()}})
		return
	}
	t.in.open(verb, set)
	t.in.addr(ip)
}

// selfElem adds or deletes ip's element of the self set.
func (t *txb) selfElem(verb string, ip netip.Addr) {
	if t.in == nil {
		t.object(verb, &knftables.Element{Set: setSelf, Key: []string{ip.String(), ip.String()}})
		return
	}
	t.in.open(verb, setSelf)
	t.in.addr(ip)
	t.in.b.WriteString(" . ")
	t.in.addr(ip)
}

// targetElem adds or deletes a named-port target of set.
func (t *txb) targetElem(verb, set string, tg target) {
	if t.in == nil {
		t.object(verb, &knftables.Element{Set: set, Key: []string{tg.ip.String(), protoName(tg.proto), strconv.Itoa(int(tg.port))}})
		return
	}
	t.in.open(verb, set)
	t.in.addr(tg.ip)
	t.in.b.WriteString(" . ")
	t.in.b.WriteString(protoName(tg.proto))
	t.in.b.WriteString(" . ")
	t.in.num(int(tg.port))
}

// rangeElem adds or deletes an address range "lo-hi" of an interval set.
func (t *txb) rangeElem(verb, set, r string) {
	if t.in == nil {
		t.object(verb, &knftables.Element{Set: set, Key: []string{r}})
		return
	}
	t.in.open(verb, set)
	t.in.b.WriteString(r)
}

// verdictElem adds ip : v to a verdict map, or deletes ip's element.
func (t *txb) verdictElem(verb, m string, ip netip.Addr, v string) {
	if t.in == nil {
		e := &knftables.Element{Map: m, Key: []string{ip.String()}}
		if verb == verbAdd {
			e.Value = []string{v}
		}
		t.object(verb, e)
		return
	}
	t.in.open(verb, m)
	t.in.addr(ip)
	if verb == verbAdd {
		t.in.b.WriteString(" : ")
		t.in.b.WriteString(v)
	}
}
