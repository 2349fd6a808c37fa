package iptables

import (
	"bytes"
	"fmt"
	"regexp"
	"strconv"
	"strings"
)

// RestoreError is a rejected restore payload. The kernel keeps the previous ruleset: an
// iptables-restore table is committed whole or not at all.
type RestoreError struct {
	// Tool is the binary that rejected the payload.
	Tool string
	// Line is the 1-based payload line that failed, 0 when unknown. iptables-nft-restore
	// validates jumps when it commits and blames the COMMIT line; then Line is the first line
	// naming the object its message quotes, and ToolLine the line the tool blamed.
	Line     int
	ToolLine int
	// Context holds the blamed line and up to two lines either side, numbered.
	Context []string
	// Stderr is what the tool printed, trimmed.
	Stderr string
	Err    error
}

func (e *RestoreError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s: ", e.Tool)
	if e.Line > 0 {
		fmt.Fprintf(&b, "line %d failed: ", e.Line)
	}
	if e.ToolLine != e.Line {
		fmt.Fprintf(&b, "(the tool blamed line %d, COMMIT) ", e.ToolLine)
	}
	msg := e.Stderr
	if msg == "" && e.Err != nil {
		msg = e.Err.Error()
	}
	b.WriteString(firstLine(msg))
	for _, c := range e.Context {
		b.WriteString("\n  ")
		b.WriteString(c)
	}
	return b.String()
}

func (e *RestoreError) Unwrap() error { return e.Err }

func firstLine(s string) string {
	s = strings.TrimSpace(s)
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		return s[:i]
	}
	return s
}

// lineRe matches how the tools name the failing line: legacy iptables-restore "line 3 failed",
// iptables-nft-restore "Error occurred at line: 5", ipset "Error in line 3:".
var lineRe = regexp.MustCompile(`line:? (\d+)`)

// quotedRe finds the object a message names: 'NPB-X' (nft) or `NPB-X' (legacy).
var quotedRe = regexp.MustCompile("['`]([^'`\\s]+)'")

func newRestoreError(tool string, payload, stderr []byte, err error) *RestoreError {
	e := &RestoreError{Tool: tool, Stderr: strings.TrimSpace(string(stderr)), Err: err}
	m := lineRe.FindSubmatch(stderr)
	if m == nil {
		return e
	}
	n, _ := strconv.Atoi(string(m[1]))
	e.Line, e.ToolLine = n, n
	lines := bytes.Split(payload, []byte("\n"))
	if n >= 1 && n <= len(lines) && string(bytes.TrimSpace(lines[n-1])) == "COMMIT" {
		if q := quotedRe.FindSubmatch(stderr); q != nil {
			for i, l := range lines {
				if containsToken(string(l), string(q[1])) && !bytes.HasPrefix(l, []byte(":")) {
					n = i + 1
					e.Line = n
					break
				}
			}
		}
	}
	for i := n - 2; i <= n+2; i++ {
		if i < 1 || i > len(lines) || (i == len(lines) && len(lines[i-1]) == 0) {
			continue
		}
		mark := " "
		if i == n {
			mark = ">"
		}
		e.Context = append(e.Context, fmt.Sprintf("%s %5d | %s", mark, i, lines[i-1]))
	}
	return e
}

func containsToken(line, tok string) bool {
	for _, f := range strings.Fields(line) {
		if f == tok {
			return true
		}
	}
	return false
}
