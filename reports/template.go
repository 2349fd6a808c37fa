package reports

import (
	"bytes"
	"fmt"
	"html/template"
	"io"
)

func execute(w io.Writer, pg page) error {
	var buf bytes.Buffer
	if err := pageTmpl.Execute(&buf, pg); err != nil {
		return fmt.Errorf("render report: %w", err)
	}
	if _, err := buf.WriteTo(w); err != nil {
		return fmt.Errorf("write report: %w", err)
	}
	return nil
}

// The page uses no script besides the embedded JSON data and no external resource, so it works
// offline and from file://.
var pageTmpl = template.Must(template.New("page").Parse(`<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{{.Title}}</title>
<style>
:root { --fg:#1d2330; --muted:#5b6475; --line:#d9dee7; --bg:#ffffff; --soft:#f4f6fa; --good:#0b7a4b; --bad:#b3261e; --accent:#0072b2; }
* { box-sizing: border-box; }
body { margin:0; font:15px/1.5 system-ui, -apple-system, "Segoe UI", "Liberation Sans", sans-serif; color:var(--fg); background:var(--bg); }
header { padding:24px 40px 12px; border-bottom:1px solid var(--line); background:var(--soft); }
header h1 { margin:0 0 4px; font-size:24px; }
header .sub { color:var(--muted); font-size:13px; }
nav { padding:8px 40px; border-bottom:1px solid var(--line); font-size:13px; position:sticky; top:0; background:var(--bg); z-index:1; }
nav a { margin-right:14px; color:var(--accent); text-decoration:none; white-space:nowrap; }
main { padding:8px 40px 48px; max-width:1400px; }
.headline { margin:18px 0 8px; padding:14px 18px; border-left:4px solid var(--accent); background:var(--soft); }
.headline ul { margin:0; padding-left:20px; }
.headline li { margin:4px 0; font-size:16px; }
.verdict { display:inline-block; padding:4px 12px; border-radius:4px; font-weight:600; color:#fff; }
.verdict.ok { background:var(--good); } .verdict.fail { background:var(--bad); }
section { margin-top:28px; }
section h2 { font-size:19px; margin:0 0 6px; padding-bottom:4px; border-bottom:1px solid var(--line); }
.intro { color:var(--muted); margin:4px 0 12px; max-width:900px; }
.empty { padding:12px 16px; background:var(--soft); color:var(--muted); border-radius:4px; font-style:italic; }
.figs { display:flex; flex-wrap:wrap; gap:18px; }
figure { margin:0; padding:8px; border:1px solid var(--line); border-radius:4px; max-width:100%; overflow-x:auto; }
figure svg.plot { display:block; max-width:100%; height:auto; }
.legend { font-size:12px; margin:4px 0 0 8px; }
.legend span { margin-right:14px; white-space:nowrap; }
.legend i { display:inline-block; width:10px; height:10px; margin-right:4px; vertical-align:-1px; border:1px solid #333; }
figcaption { width:0; min-width:100%; font-size:12px; color:var(--muted); margin-top:4px; }
.tablewrap { overflow-x:auto; margin:10px 0 16px; }
table { border-collapse:collapse; font-size:13px; }
caption { text-align:left; font-weight:600; padding:4px 0; }
th, td { border-bottom:1px solid var(--line); padding:4px 10px; text-align:left; vertical-align:top; }
th { background:var(--soft); font-weight:600; white-space:nowrap; }
td.num { text-align:right; font-variant-numeric:tabular-nums; white-space:nowrap; }
td.good { color:var(--good); font-weight:600; } td.bad { color:var(--bad); font-weight:600; }
td.muted { color:var(--muted); }
td.path { font-size:11px; color:var(--muted); word-break:break-all; min-width:14em; }
details > summary { cursor:pointer; color:var(--accent); margin:6px 0; }
</style>
</head>
<body>
<header>
<h1>{{.Title}}</h1>
<div class="sub">{{.Subtitle}}</div>
</header>
<nav>{{range .Sections}}<a href="#{{.ID}}">{{.Title}}</a>{{end}}</nav>
<main>
{{if .Verdict}}<p><span class="verdict {{if .VerdictOK}}ok{{else}}fail{{end}}" id="verdict">{{.Verdict}}</span></p>{{end}}
<div class="headline" id="headline"><ul>{{range .Headlines}}<li>{{.}}</li>{{end}}</ul></div>
{{range .Sections}}
<section id="{{.ID}}">
<h2>{{.Title}}</h2>
{{if .Intro}}<p class="intro">{{.Intro}}</p>{{end}}
{{if .Empty}}<p class="empty">{{.Empty}}</p>{{end}}
{{if .Figures}}<div class="figs">{{range .Figures}}
<figure id="{{.ID}}" data-plot="{{.Title}}">{{.SVG}}{{if .Legend}}<div class="legend">{{range .Legend}}<span><i style="background:{{.Color}}"></i>{{.Name}}</span>{{end}}</div>{{end}}<figcaption>{{.Caption}}</figcaption></figure>{{end}}
</div>{{end}}
{{range .Tables}}{{if .Folded}}<details><summary>{{if .Caption}}{{.Caption}}: {{end}}{{len .Rows}} rows</summary>{{end}}
<div class="tablewrap"><table>{{if .Caption}}<caption>{{.Caption}}</caption>{{end}}
{{if .Head}}<thead><tr>{{range .Head}}<th>{{.}}</th>{{end}}</tr></thead>{{end}}
<tbody>{{range .Rows}}<tr>{{range .}}<td{{if .Class}} class="{{.Class}}"{{end}}>{{.Text}}</td>{{end}}</tr>
{{end}}</tbody></table></div>{{if .Folded}}</details>{{end}}
{{end}}
</section>
{{end}}
</main>
<script type="application/json" id="results-json">{{.JSON}}</script>
</body>
</html>
`))
