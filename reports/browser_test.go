package reports_test

import (
	"bytes"
	"context"
	"netpolbench/internal/testenv"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"netpolbench/gate"
	"netpolbench/reports"
	"netpolbench/results"
	"netpolbench/results/resultstest"
)

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

// runChromium loads page in a fresh headless profile with extra flags and returns stdout and the
// console messages chromium logged.
func runChromium(t *testing.T, bin, page string, extra ...string) (stdout string, console []string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	args := append([]string{"--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
		"--disable-background-networking", "--disable-component-update", "--disable-sync",
		"--user-data-dir=" + t.TempDir(), "--enable-logging=stderr", "--v=0", "--hide-scrollbars"}, extra...)
	args = append(args, "file://"+page)
	cmd := exec.CommandContext(ctx, bin, args...)
	// Chromium forks helpers (zygote, renderer, GPU); on a timeout kill the whole group, not
	// just the browser process, so nothing outlives the test.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	cmd.WaitDelay = 5 * time.Second
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		t.Fatalf("chromium %s: %v\n%s", strings.Join(extra, " "), err, tail(errb.String(), 2000))
	}
	for _, line := range strings.Split(errb.String(), "\n") {
		// A page without scripts logs nothing to the console; any message (an uncaught error, a
		// refused resource) is a defect.
		if strings.Contains(line, ":CONSOLE") || strings.Contains(line, "Uncaught") {
			console = append(console, line)
		}
	}
	return out.String(), console
}

func tail(s string, n int) string {
	if len(s) > n {
		return s[len(s)-n:]
	}
	return s
}

func TestBrowserDetectsConsoleErrors(t *testing.T) {
	bin := chromiumPath(t)
	page := filepath.Join(t.TempDir(), "bad.html")
	if err := os.WriteFile(page, []byte(`<!DOCTYPE html><html><body><script>notDefined()</script></body></html>`), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, console := runChromium(t, bin, page, "--dump-dom"); len(console) == 0 {
		t.Fatal("a page with an uncaught error logged no console message: the report check would miss errors")
	}
}

func TestBrowserRendersReportWithEveryPlot(t *testing.T) {
	bin := chromiumPath(t)
	dir := artifactDir(t)
	base := resultstest.Run(resultstest.DefaultOptions())
	o := resultstest.DefaultOptions()
	o.Seed, o.Slowdown = 3, 1.2
	cur := resultstest.Run(o)

	pages := map[string]func(*bytes.Buffer) error{
		"report.html": func(b *bytes.Buffer) error { return reports.Render(b, base) },
		"empty-report.html": func(b *bytes.Buffer) error {
			return reports.Render(b, results.New())
		},
		"compare.html": func(b *bytes.Buffer) error {
			return reports.RenderCompare(b, base, cur, gate.Compare(base, cur, gate.DefaultOptions()))
		},
	}
	for name, render := range pages {
		t.Run(name, func(t *testing.T) {
			var buf bytes.Buffer
			if err := render(&buf); err != nil {
				t.Fatal(err)
			}
			path := filepath.Join(dir, name)
			if err := os.WriteFile(path, buf.Bytes(), 0o644); err != nil {
				t.Fatal(err)
			}
			wantPlots := strings.Count(buf.String(), `<svg class="plot"`)

			dom, console := runChromium(t, bin, path, "--dump-dom")
			if len(console) > 0 {
				t.Errorf("console messages while loading %s:\n%s", name, strings.Join(console, "\n"))
			}
			if !strings.Contains(dom, `id="headline"`) || !strings.Contains(dom, `id="results-json"`) {
				t.Errorf("%s: rendered DOM lacks the headline or the embedded results", name)
			}
			// Every figure must come out of the parser as an SVG element with drawn content.
			if got := strings.Count(dom, `<svg class="plot"`); got != wantPlots {
				t.Errorf("%s: browser DOM has %d plots, the page has %d", name, got, wantPlots)
			}
			figs := strings.Split(dom, "<figure")[1:]
			if len(figs) != wantPlots {
				t.Errorf("%s: %d figures for %d plots", name, len(figs), wantPlots)
			}
			for i, f := range figs {
				if f = f[:strings.Index(f, "</figure>")]; !strings.Contains(f, "<path") || !strings.Contains(f, "<text") {
					t.Errorf("%s: figure %d has no drawn path or text", name, i)
				}
			}

			if wantPlots > 0 {
				if w := minPlotWidth(t, bin, dir, name, buf.String()); w < 200 {
					t.Errorf("%s: narrowest plot is laid out %d px wide; the page squeezes its figures", name, w)
				}
			}

			shot := filepath.Join(dir, strings.TrimSuffix(name, ".html")+".png")
			runChromium(t, bin, path, "--screenshot="+shot, "--window-size=1400,3000")
			st, err := os.Stat(shot)
			if err != nil || st.Size() < 10_000 {
				t.Fatalf("%s: screenshot %s missing or blank (%v)", name, shot, err)
			}
			t.Logf("screenshot: %s (%d plots)", shot, wantPlots)
		})
	}
}

// minPlotWidth lays out a copy of the page with a probe script appended (the report itself has
// none) and returns the rendered width of its narrowest plot, in CSS pixels: a layout mistake can
// keep every SVG in the DOM yet draw it a few pixels wide.
func minPlotWidth(t *testing.T, bin, dir, name, page string) int {
	t.Helper()
	const probe = `<script>document.body.setAttribute("data-min-plot-width", Math.round(Math.min(...Array.from(document.querySelectorAll("svg.plot"), s => s.getBoundingClientRect().width))))</script></body>`
	path := filepath.Join(dir, "layout-"+name)
	if err := os.WriteFile(path, []byte(strings.Replace(page, "</body>", probe, 1)), 0o644); err != nil {
		t.Fatal(err)
	}
	dom, _ := runChromium(t, bin, path, "--dump-dom", "--window-size=1400,3000")
	m := regexp.MustCompile(`data-min-plot-width="(\d+)"`).FindStringSubmatch(dom)
	if m == nil {
		t.Fatalf("%s: layout probe did not run", name)
	}
	w, _ := strconv.Atoi(m[1])
	return w
}
