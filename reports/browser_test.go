package reports_test

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/cdproto/runtime"
	"github.com/chromedp/chromedp"

	"netpolbench/gate"
	"netpolbench/internal/testenv"
	"netpolbench/reports"
	"netpolbench/results"
	"netpolbench/results/resultstest"
)

// The first screen a report must answer on, in CSS px.
const screenW, screenH = 1280, 800

// minTextPx is the smallest plot text a reader should have to read, in CSS px as rendered.
const minTextPx = 11

// chromiumPath finds Debian's chromium; the test installs nothing itself.
func chromiumPath(t *testing.T) string {
	t.Helper()
	for _, name := range []string{"chromium", "chromium-browser"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	testenv.Missing(t, "headless browser check needs chromium (Debian package chromium; make test-deps installs it)")
	return ""
}

// artifactDir is $NPB_ARTIFACTS/reports when set (kept after the test, for CI to collect), else a
// temporary directory.
func artifactDir(t *testing.T) string {
	t.Helper()
	if d := os.Getenv("NPB_ARTIFACTS"); d != "" {
		dir := filepath.Join(d, "reports")
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		return dir
	}
	return t.TempDir()
}

// tab is one page loaded in a headless Chromium at the first screen's size, with what it asked
// of the network and what it logged.
type tab struct {
	ctx  context.Context
	url  string
	mu   sync.Mutex
	reqs []string // every request but the page's own document
	logs []string // console messages and uncaught exceptions
}

// mustOpen starts a fresh headless Chromium (own profile, no network services) and loads path.
// The browser is stopped when the test ends.
func mustOpen(t *testing.T, path string) *tab {
	t.Helper()
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(chromiumPath(t)),
		chromedp.NoSandbox,
		chromedp.DisableGPU,
		chromedp.UserDataDir(t.TempDir()),
		chromedp.WindowSize(screenW, screenH),
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
	)
	tb := &tab{url: "file://" + path}
	// The listener is given with the context, so it hears every event from the tab's start.
	listen := chromedp.WithListener(func(ev any) {
		tb.mu.Lock()
		defer tb.mu.Unlock()
		switch ev := ev.(type) {
		case *network.EventRequestWillBeSent:
			if ev.Request.URL != tb.url {
				tb.reqs = append(tb.reqs, ev.Request.URL)
			}
		case *runtime.EventConsoleAPICalled:
			var args []string
			for _, a := range ev.Args {
				args = append(args, string(a.Value)+a.Description)
			}
			tb.logs = append(tb.logs, fmt.Sprintf("console.%s %s", ev.Type, strings.Join(args, " ")))
		case *runtime.EventExceptionThrown:
			d := ev.ExceptionDetails
			what := d.Text
			if d.Exception != nil {
				what += " " + d.Exception.Description
			}
			tb.logs = append(tb.logs, fmt.Sprintf("exception at %d:%d: %s", d.LineNumber, d.ColumnNumber, what))
		}
	})
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancelTab := chromedp.NewContext(actx, listen)
	t.Cleanup(func() { cancelTab(); cancelAlloc() })
	tb.ctx = ctx
	// A bound on each step, not on the context the browser lives in (that would stop it).
	step, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	if err := chromedp.Do(ctx); err != nil { // starts the browser under the long-lived context
		t.Fatalf("start chromium: %v", err)
	}
	if err := chromedp.Do(step,
		chromedp.EmulateViewport(screenW, screenH),
		chromedp.Navigate(tb.url),
		chromedp.WaitReady("body"),
	); err != nil {
		t.Fatalf("load %s in chromium: %v", path, err)
	}
	return tb
}

func (tb *tab) requests() []string {
	tb.mu.Lock()
	defer tb.mu.Unlock()
	return append([]string(nil), tb.reqs...)
}

func (tb *tab) messages() []string {
	tb.mu.Lock()
	defer tb.mu.Unlock()
	return append([]string(nil), tb.logs...)
}

// eval runs a script in the page and decodes its result.
func eval[T any](t *testing.T, tb *tab, script string) T {
	t.Helper()
	ctx, cancel := context.WithTimeout(tb.ctx, 30*time.Second)
	defer cancel()
	v, err := chromedp.Run(ctx, chromedp.Evaluate[T](script))
	if err != nil {
		t.Fatalf("evaluate in page: %v", err)
	}
	return v
}

// screenshot saves the viewport as a PNG in dir.
func (tb *tab) screenshot(t *testing.T, dir, name string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(tb.ctx, 30*time.Second)
	defer cancel()
	png, err := chromedp.Run(ctx, chromedp.CaptureScreenshot())
	if err != nil {
		t.Fatalf("screenshot: %v", err)
	}
	path := filepath.Join(dir, name)
	if err := os.WriteFile(path, png, 0o644); err != nil {
		t.Fatal(err)
	}
	if len(png) < 10_000 {
		t.Errorf("screenshot %s is %d bytes: blank?", path, len(png))
	}
	t.Logf("screenshot: %s", path)
}

// box is an element's layout box in CSS px, relative to the viewport.
type box struct {
	ID         string
	X, Y, W, H float64
}

func (b box) String() string {
	return fmt.Sprintf("%s [%.0f,%.0f %.0f×%.0f]", b.ID, b.X, b.Y, b.W, b.H)
}

func (b box) within(w, h float64) bool {
	return b.W > 0 && b.H > 0 && b.X >= 0 && b.Y >= 0 && b.X+b.W <= w && b.Y+b.H <= h
}

func (b box) intersects(o box) bool {
	return b.X < o.X+o.W && o.X < b.X+b.W && b.Y < o.Y+o.H && o.Y < b.Y+b.H
}

// figureLayout is what the test measures of one figure.
type figureLayout struct {
	ID      string
	Plots   int   // svg.plot elements
	Areas   []box // data areas (rect.plot-data)
	Legends []box // legend boxes
	Texts   int   // text elements in the plots
	// MinText is the smallest rendered plot or legend text, in px, and what it says.
	MinText     float64
	MinTextWhat string
}

// measureJS opens every <details> (nested ones too) and measures every figure. A plot text's
// rendered size is its font size times the scale its SVG is drawn at (the screen CTM).
const measureJS = `(() => {
  document.querySelectorAll("details").forEach(d => d.open = true);
  const box = (e, id) => { const r = e.getBoundingClientRect(); return {ID: id, X: r.left, Y: r.top, W: r.width, H: r.height}; };
  return Array.from(document.querySelectorAll("figure"), f => {
    const out = {ID: f.id, Plots: 0, Areas: [], Legends: [], Texts: 0, MinText: 1e9, MinTextWhat: ""};
    const seen = (px, what) => { if (px < out.MinText) { out.MinText = px; out.MinTextWhat = what; } };
    f.querySelectorAll("svg.plot").forEach(svg => {
      out.Plots++;
      svg.querySelectorAll("rect.plot-data").forEach(r => out.Areas.push(box(r, f.id + " data")));
      svg.querySelectorAll("text").forEach(t => {
        if (!t.textContent.trim()) return;
        const m = t.getScreenCTM();
        out.Texts++;
        seen(parseFloat(getComputedStyle(t).fontSize) * Math.hypot(m.a, m.b), t.textContent);
      });
    });
    f.querySelectorAll(".legend").forEach(l => {
      out.Legends.push(box(l, f.id + " legend"));
      l.querySelectorAll("td, sup").forEach(e => { if (e.textContent.trim()) seen(parseFloat(getComputedStyle(e).fontSize), e.textContent.trim()); });
    });
    return out;
  });
})()`

// firstScreenJS measures the verdict and the summary plots as the page opens, before anything
// is unfolded or scrolled.
const firstScreenJS = `(() => {
  const box = (e, id) => { const r = e.getBoundingClientRect(); return {ID: id, X: r.left, Y: r.top, W: r.width, H: r.height}; };
  const v = document.getElementById("verdict");
  return [v ? box(v, "verdict") : {ID: "verdict (missing)"}].concat(
    Array.from(document.querySelectorAll("#summary > figure"), f => box(f, f.id)));
})()`

func writePage(t *testing.T, dir, name string, render func(*bytes.Buffer) error) string {
	t.Helper()
	var buf bytes.Buffer
	if err := render(&buf); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, name)
	if err := os.WriteFile(path, buf.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// checkFigures asserts that every plot has a marked data area, that no legend box touches a
// data area of its own figure, and that every plot and legend text renders at minTextPx or more.
func checkFigures(t *testing.T, figs []figureLayout) {
	t.Helper()
	for _, f := range figs {
		if f.Plots == 0 {
			continue // a summary plot without data says so in text
		}
		if len(f.Areas) < f.Plots || f.Texts == 0 {
			t.Errorf("figure %s: %d plots, %d data areas, %d texts", f.ID, f.Plots, len(f.Areas), f.Texts)
		}
		for _, a := range f.Areas {
			if a.W <= 0 || a.H <= 0 {
				t.Errorf("figure %s: data area %v is not laid out", f.ID, a)
			}
			for _, l := range f.Legends {
				if l.intersects(a) {
					t.Errorf("figure %s: legend %v covers data area %v", f.ID, l, a)
				}
			}
		}
		if f.MinText < minTextPx {
			t.Errorf("figure %s: text %q renders at %.1f px, below %d px", f.ID, f.MinTextWhat, f.MinText, minTextPx)
		}
	}
}

func TestBrowserReportAnswersOnTheFirstScreen(t *testing.T) {
	dir := artifactDir(t)
	pages := []struct {
		name string
		run  *results.Run
	}{
		{"report.html", resultstest.Run(resultstest.SweepOptions())},
		{"report-small.html", resultstest.Run(resultstest.DefaultOptions())},
		{"report-cluster.html", func() *results.Run {
			o := resultstest.DefaultOptions()
			o.Cluster, o.Pods = "prod.yaml", []int{2400}
			return resultstest.Run(o)
		}()},
	}
	for _, p := range pages {
		t.Run(p.name, func(t *testing.T) {
			path := writePage(t, dir, p.name, func(b *bytes.Buffer) error { return reports.Render(b, p.run) })
			tb := mustOpen(t, path)

			first := eval[[]box](t, tb, firstScreenJS)
			if len(first) != 5 {
				t.Fatalf("first screen has %v, want the verdict and four summary plots", first)
			}
			for _, b := range first {
				if !b.within(screenW, screenH) {
					t.Errorf("%v is not inside the first %d×%d screen", b, screenW, screenH)
				}
			}
			tb.screenshot(t, dir, strings.TrimSuffix(p.name, ".html")+"-first-screen.png")

			figs := eval[[]figureLayout](t, tb, measureJS)
			if len(figs) < 4+len(p.run.Churn) {
				t.Errorf("%d figures measured, want the four summary plots and the details' plots", len(figs))
			}
			checkFigures(t, figs)
			if reqs := tb.requests(); len(reqs) > 0 {
				t.Errorf("the report made network requests: %q", reqs)
			}
			if msgs := tb.messages(); len(msgs) > 0 {
				t.Errorf("the report logged: %q", msgs)
			}
		})
	}
}

func TestBrowserRendersEmptyReportAndComparison(t *testing.T) {
	dir := artifactDir(t)
	base := resultstest.Run(resultstest.DefaultOptions())
	o := resultstest.DefaultOptions()
	o.Seed, o.Slowdown = 3, 1.2
	cur := resultstest.Run(o)
	for name, render := range map[string]func(*bytes.Buffer) error{
		"empty-report.html": func(b *bytes.Buffer) error { return reports.Render(b, results.New()) },
		"compare.html": func(b *bytes.Buffer) error {
			return reports.RenderCompare(b, base, cur, gate.Compare(base, cur, gate.DefaultOptions()))
		},
	} {
		t.Run(name, func(t *testing.T) {
			tb := mustOpen(t, writePage(t, dir, name, render))
			figs := eval[[]figureLayout](t, tb, measureJS)
			checkFigures(t, figs)
			if reqs := tb.requests(); len(reqs) > 0 {
				t.Errorf("%s made network requests: %q", name, reqs)
			}
			if msgs := tb.messages(); len(msgs) > 0 {
				t.Errorf("%s logged: %q", name, msgs)
			}
			tb.screenshot(t, dir, strings.TrimSuffix(name, ".html")+"-first-screen.png")
		})
	}
}

// The checks above pass vacuously if the listeners hear nothing; a page that does what a report
// must not proves they hear it.
func TestBrowserChecksCatchRequestsErrorsAndCoveredData(t *testing.T) {
	dir := t.TempDir()
	bad := `<!DOCTYPE html><html><body>
<img src="http://127.0.0.1:9/pixel.png">
<script>notDefined()</script>
<figure id="f"><svg class="plot" width="200" height="100" viewBox="0 0 200 100"><text x="5" y="20" style="font-size:6px">tiny</text>
<rect class="plot-data" x="0" y="0" width="200" height="100" fill="none"/></svg>
<div class="legend" style="position:relative; top:-60px">legend</div></figure>
</body></html>`
	path := filepath.Join(dir, "bad.html")
	if err := os.WriteFile(path, []byte(bad), 0o644); err != nil {
		t.Fatal(err)
	}
	tb := mustOpen(t, path)
	figs := eval[[]figureLayout](t, tb, measureJS)
	if len(figs) != 1 || len(figs[0].Legends) != 1 || len(figs[0].Areas) != 1 {
		t.Fatalf("measured %+v, want one figure with one legend and one data area", figs)
	}
	f := figs[0]
	if !f.Legends[0].intersects(f.Areas[0]) {
		t.Errorf("a legend moved over the data area (%v over %v) is not seen to intersect it", f.Legends[0], f.Areas[0])
	}
	if f.MinText >= minTextPx {
		t.Errorf("6 px text measured at %.1f px", f.MinText)
	}
	deadline := time.Now().Add(5 * time.Second)
	for len(tb.requests()) == 0 && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
	}
	if reqs := tb.requests(); len(reqs) != 1 || !strings.HasPrefix(reqs[0], "http://127.0.0.1:9/") {
		t.Errorf("requests heard %q, want the image's", reqs)
	}
	if msgs := tb.messages(); len(msgs) == 0 {
		t.Error("an uncaught error was not heard")
	}
}
