package bench

import (
	"fmt"
	"io"
	"os"
	"strings"
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

// Progress prints sweep progress: an in-place bar on a terminal, plain lines otherwise (CI
// logs). A nil *Progress prints nothing.
type Progress struct {
	mu    sync.Mutex
	w     io.Writer
	tty   bool
	total int
	done  int
	start time.Time
	width int
}

// NewProgress writes to w; the bar is drawn in place only when w is a terminal.
func NewProgress(w io.Writer) *Progress {
	p := &Progress{w: w, start: time.Now()}
	if f, ok := w.(*os.File); ok {
		if _, err := unix.IoctlGetTermios(int(f.Fd()), unix.TCGETS); err == nil {
			p.tty = true
		}
	}
	return p
}

// Total sets the number of steps.
func (p *Progress) Total(n int) {
	if p == nil {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	p.total = n
}

// Step starts the next step, named what.
func (p *Progress) Step(what string) {
	if p == nil {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	p.done++
	p.draw(what)
}

// Note prints a sub-step of the current step (a phase) without advancing.
func (p *Progress) Note(what string) {
	if p == nil {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	p.draw(what)
}

func (p *Progress) draw(what string) {
	el := time.Since(p.start).Truncate(time.Second)
	if !p.tty {
		fmt.Fprintf(p.w, "bench: [%d/%d %s] %s\n", p.done, p.total, el, what)
		return
	}
	const bar = 24
	filled := 0
	if p.total > 0 {
		filled = min(bar, bar*p.done/p.total)
	}
	line := fmt.Sprintf("[%s%s] %d/%d %s %s", strings.Repeat("#", filled), strings.Repeat(".", bar-filled), p.done, p.total, el, what)
	pad := max(0, p.width-len(line))
	p.width = len(line)
	fmt.Fprintf(p.w, "\r%s%s", line, strings.Repeat(" ", pad))
}

// Done ends the bar.
func (p *Progress) Done() {
	if p == nil {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.tty {
		fmt.Fprintln(p.w)
	}
	fmt.Fprintf(p.w, "bench: done in %s\n", time.Since(p.start).Truncate(time.Second))
}
