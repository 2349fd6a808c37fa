package nftables

import (
	"fmt"
	"regexp"
	"strconv"
	"strings"
)

// TxError is a transaction nft (or the Fake) rejected. The table keeps its previous content:
// nft applies a transaction whole or not at all.
type TxError struct {
	// Line is the 1-based line of the transaction that failed, 0 when unknown. nft names it
	// ("/dev/stdin:12:1-40: Error: ..."); for the Fake it is the first line naming the object
	// the error quotes.
	Line int
	// Context holds the failing line and up to two lines either side, numbered.
	Context []string
	// Message is the first line of what nft or the Fake said.
	Message string
	Err     error
}

func (e *TxError) Error() string {
	var b strings.Builder
	b.WriteString("nft: ")
	if e.Line > 0 {
		fmt.Fprintf(&b, "line %d failed: ", e.Line)
	}
	b.WriteString(e.Message)
	for _, c := range e.Context {
		b.WriteString("\n  ")
		b.WriteString(c)
	}
	return b.String()
}

func (e *TxError) Unwrap() error { return e.Err }

// stdinLineRe finds where nft blames its input.
var stdinLineRe = regexp.MustCompile(`/dev/stdin:(\d+):`)

// quotedRe finds the object a Fake error names: no such chain "rs-9".
var quotedRe = regexp.MustCompile(`"([^"\s]+)"`)

// newTxError explains a failed transaction with the lines of payload around the failing one;
// lineOf maps a line number the error names to a line of payload.
func newTxError(payload string, err error, lineOf func(int) int) *TxError {
	msg := strings.TrimSpace(err.Error())
	e := &TxError{Err: err}
	lines := strings.Split(strings.TrimSuffix(payload, "\n"), "\n")
	if m := stdinLineRe.FindStringSubmatch(msg); m != nil {
		n, _ := strconv.Atoi(m[1])
		e.Line = lineOf(n)
		// nft's message follows the location on the same line; the input line and carets
		// it prints after it are in Context already.
		if i := strings.Index(msg, "Error: "); i >= 0 {
			msg = msg[i:]
		}
	} else if q := quotedRe.FindStringSubmatch(msg); q != nil {
		// A delete of the object is what fails when it is still in use; otherwise the first
		// line that uses it (not one that declares it).
		for i, l := range lines {
			if strings.HasPrefix(l, "delete ") && containsToken(l, q[1]) {
				e.Line = i + 1
				break
			}
		}
		for i, l := range lines {
			if e.Line == 0 && containsToken(l, q[1]) && !strings.HasPrefix(l, "add chain ") && !strings.HasPrefix(l, "add set ") {
				e.Line = i + 1
			}
		}
	}
	if i := strings.IndexByte(msg, '\n'); i >= 0 {
		msg = msg[:i]
	}
	e.Message = msg
	if e.Line > len(lines) {
		e.Line = 0
	}
	for i := e.Line - 2; e.Line > 0 && i <= e.Line+2; i++ {
		if i < 1 || i > len(lines) {
			continue
		}
		mark := " "
		if i == e.Line {
			mark = ">"
		}
		e.Context = append(e.Context, fmt.Sprintf("%s %5d | %s", mark, i, lines[i-1]))
	}
	return e
}

// containsToken reports whether a line holds tok as a word of its own (or as @tok).
func containsToken(line, tok string) bool {
	for _, f := range strings.Fields(line) {
		if f == tok || f == "@"+tok {
			return true
		}
	}
	return false
}
