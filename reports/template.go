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
// offline and from file://. A report's first screen (1280×800) holds the verdict and the four
// summary plots; every other section is a <details> folded below them.
//
// Plot text: gonum measures it with Liberation Sans; Arial and Arimo share its metrics, so they
// come first among the fallbacks. Plots are never scaled down (no max-width), which keeps their
// text at its natural size: at least 9 pt, 12 px.
var pageTmpl = template.Must(template.New("page").Parse(`<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{{.Title}}</title>
<style>
:root { --fg:#1d2330; --muted:#5b6475; --line:#d9dee7; --bg:#ffffff; --soft:#f4f6fa; --good:#0b7a4b; --bad:#b3261e; --accent:#0072b2; }
* { box-sizing: border-box; }
body { margin:0; font:14px/1.45 system-ui, -apple-system, "Segoe UI", "Liberation Sans", Arial, sans-serif; color:var(--fg); background:var(--bg); }
header { padding:6px 24px; border-bottom:1px solid var(--line); background:var(--soft); display:flex; flex-wrap:wrap; align-items:baseline; column-gap:16px; }
header h1 { margin:0; font-size:17px; }
header .sub { color:var(--muted); font-size:12px; }
nav { padding:6px 24px; border-bottom:1px solid var(--line); font-size:13px; }
nav a { margin-right:14px; color:var(--accent); text-decoration:none; white-space:nowrap; }
main { padding:4px 24px 48px; }
#verdict { margin:4px 0 10px; }
#verdict p { margin:2px 0; }
#verdict .cluster { font-size:14.5px; font-weight:600; }
#verdict .lead { font-size:14.5px; font-weight:600; }
#verdict .notice { color:#8a5a00; font-size:13px; }
.answer-row { display:flex; flex-wrap:wrap; align-items:flex-start; column-gap:18px; }
.answer-notes { flex:1 1 260px; max-width:720px; color:var(--muted); font-size:12px; line-height:1.35; margin-top:6px; }
.answer-notes p { margin:0 0 4px; }
.answer-notes b { color:var(--fg); font-weight:600; }
.answer-notes details { margin:0 0 4px; }
.answer-notes summary { cursor:pointer; }
.answer-notes details p { margin:4px 0 0; }
table.answer { margin:6px 0 4px; font-size:12px; }
table.answer th, table.answer td { padding:2px 6px; border-bottom:1px solid var(--line); }
table.answer th.cat { text-align:center; border-left:2px solid var(--bg); }
table.answer th.cat small { display:block; font-weight:400; color:var(--muted); font-size:11px; }
table.answer th.scale { text-align:right; font-weight:400; color:var(--muted); font-size:12px; }
table.answer th.pods-head { text-align:right; vertical-align:bottom; font-weight:400; color:var(--muted); font-size:12px; }
table.answer tbody th { background:none; text-align:left; }
table.answer td { text-align:right; white-space:nowrap; font-variant-numeric:tabular-nums; }
table.answer td.best { font-weight:700; background:#e8f3ec; }
table.answer td.capped, table.answer td.none { color:var(--muted); font-size:12px; }
.bk { white-space:nowrap; }
.bk::before { content:""; display:inline-block; width:9px; height:9px; border-radius:50%; background:var(--c); margin-right:5px; }
#summary { display:grid; grid-template-columns:repeat(2, minmax(max-content, 1fr)); gap:8px 12px; }
figure { margin:0; padding:6px 8px; border:1px solid var(--line); border-radius:4px; overflow-x:auto; display:grid; grid-template-columns:max-content max-content; align-items:start; align-content:start; column-gap:10px; row-gap:2px; }
figure > h3, figure > figcaption, figure > .empty { grid-column:1 / -1; width:0; min-width:100%; }
figure > h3 { margin:0; font-size:14px; }
figure > h3 small { font-weight:400; color:var(--muted); font-size:12px; margin-left:6px; }
figure svg.plot { display:block; }
figure.nodata { display:block; }
figure.nodata > h3, figure.nodata > .empty { width:auto; margin:4px 0; }
.legend { font-size:12px; }
.legend table { border-collapse:collapse; font-size:12px; }
.legend td { border:0; padding:1px 4px; vertical-align:middle; white-space:nowrap; }
.legend svg.swatch { display:block; }
.legend .note { color:var(--muted); }
.legend sup { font-size:11px; line-height:0; }
.legend table.key { margin-top:6px; }
figcaption { font-size:12px; color:var(--muted); }
.figs { display:flex; flex-wrap:wrap; gap:14px; }
svg.plot text { font-family:"Liberation Sans", Arimo, Arial, Helvetica, sans-serif !important; }
section.detail { margin-top:6px; border-top:1px solid var(--line); }
section.detail > details > summary { cursor:pointer; padding:6px 0; list-style-position:outside; }
section.detail > details > summary h2 { display:inline; font-size:16px; margin:0; }
section.detail > details > summary .digest { color:var(--muted); font-size:13px; margin-left:8px; }
.intro { color:var(--muted); margin:4px 0 12px; max-width:900px; }
.empty { padding:10px 14px; background:var(--soft); color:var(--muted); border-radius:4px; font-style:italic; }
.gate { display:inline-block; margin:10px 0 0; padding:4px 12px; border-radius:4px; font-weight:600; color:#fff; }
.gate.ok { background:var(--good); } .gate.fail { background:var(--bad); }
.headline { margin:10px 0 8px; padding:12px 16px; border-left:4px solid var(--accent); background:var(--soft); }
.headline ul { margin:0; padding-left:20px; }
.tablewrap { overflow-x:auto; margin:10px 0 16px; }
table { border-collapse:collapse; font-size:13px; }
caption { text-align:left; font-weight:600; padding:4px 0; }
th, td { border-bottom:1px solid var(--line); padding:4px 10px; text-align:left; vertical-align:top; }
th { background:var(--soft); font-weight:600; white-space:nowrap; }
td.num { text-align:right; font-variant-numeric:tabular-nums; white-space:nowrap; }
td.good { color:var(--good); font-weight:600; } td.bad { color:var(--bad); font-weight:600; }
td.muted { color:var(--muted); }
td.path { font-size:11px; color:var(--muted); word-break:break-all; min-width:14em; }
details details > summary { cursor:pointer; color:var(--accent); margin:6px 0; }
</style>
</head>
<body>
<header>
<h1>{{.Title}}</h1>
<span class="sub">{{.Subtitle}}</span>
</header>
{{if not .Fold}}<nav>{{range .Sections}}<a href="#{{.ID}}">{{.Title}}</a>{{end}}</nav>{{end}}
<main>
{{with .Answer}}{{with .Verdict}}<div id="verdict">
{{if .Cluster}}<p class="cluster">{{.Cluster}}</p>{{end}}
{{range .Notices}}<p class="notice">{{.}}</p>{{end}}
{{range .Lead}}<p class="lead">{{.}}</p>{{end}}
<div class="answer-row">
{{if .Rows}}<table class="answer"><thead><tr><th rowspan="2" class="pods-head">pods →</th>{{range .Heads}}<th colspan="{{.Span}}" class="cat">{{.Head}}<small>{{.What}}</small></th>{{end}}</tr>
<tr>{{range .Scales}}<th class="scale">{{.Pods}}{{.Mark}}</th>{{end}}</tr></thead>
<tbody>{{range .Rows}}<tr><th class="bk" style="--c:{{.Colour}}">{{.Backend}}</th>{{range .Cells}}<td class="{{.Class}}" title="{{.Title}}">{{.Text}}</td>{{end}}</tr>
{{end}}</tbody></table>{{end}}
<div class="answer-notes">{{range .Footnotes}}<p>{{.}}</p>{{end}}
{{if .Caps}}<details class="caps"><summary><b>Capped:</b> {{.CapsShort}} (why)</summary><p>{{range $i, $c := .Caps}}{{if $i}} {{end}}{{$c}}{{end}}</p></details>{{end}}
{{if .LeftOut}}<p class="leftout">{{.LeftOut}}</p>{{end}}</div>
</div>
</div>{{end}}
<div id="summary">{{range .Plots}}
<figure id="{{.ID}}" class="summary{{if .Empty}} nodata{{end}}" data-plot="{{.Title}}"><h3>{{.Title}}<small>{{.Caption}}</small></h3>{{if .Empty}}<p class="empty">{{.Empty}}</p>{{else}}{{.SVG}}{{template "legend" .}}{{end}}</figure>{{end}}
</div>{{end}}
{{if .Gate}}<p><span class="gate {{if .GateOK}}ok{{else}}fail{{end}}" id="gate">{{.Gate}}</span></p>{{end}}
{{if .Headlines}}<div class="headline" id="headline"><ul>{{range .Headlines}}<li>{{.}}</li>{{end}}</ul></div>{{end}}
{{range .Sections}}
<section id="{{.ID}}" class="detail"><details{{if not $.Fold}} open{{end}}><summary><h2>{{.Title}}</h2>{{if .Digest}}<span class="digest">{{.Digest}}</span>{{end}}</summary>
{{if .Intro}}<p class="intro">{{.Intro}}</p>{{end}}
{{if .Empty}}<p class="empty">{{.Empty}}</p>{{end}}
{{if .Figures}}<div class="figs">{{range .Figures}}
<figure id="{{.ID}}" data-plot="{{.Title}}">{{.SVG}}{{template "legend" .}}<figcaption>{{.Caption}}</figcaption></figure>{{end}}
</div>{{end}}
{{range .Tables}}{{if .Folded}}<details><summary>{{if .Caption}}{{.Caption}}: {{end}}{{len .Rows}} rows</summary>{{end}}
<div class="tablewrap"><table>{{if .Caption}}<caption>{{.Caption}}</caption>{{end}}
{{if .Head}}<thead><tr>{{range .Head}}<th>{{.}}</th>{{end}}</tr></thead>{{end}}
<tbody>{{range .Rows}}<tr>{{range .}}<td{{if .Class}} class="{{.Class}}"{{end}}>{{.Text}}</td>{{end}}</tr>
{{end}}</tbody></table></div>{{if .Folded}}</details>{{end}}
{{end}}
</details></section>
{{end}}
</main>
<script type="application/json" id="results-json">{{.JSON}}</script>
</body>
</html>
{{define "legend"}}{{if or .Legend .Key}}<div class="legend">{{if .Legend}}<table>{{range .Legend}}<tr><td>{{.Swatch}}</td><td>{{.Name}}</td>{{if or .Exponent .Note}}<td class="note">{{if .Exponent}}∝ {{.Growth}}<sup>{{.Exponent}}</sup>{{end}}{{if and .Exponent .Note}} {{end}}{{.Note}}</td>{{end}}</tr>{{end}}</table>{{end}}
{{if .Key}}<table class="key">{{range .KeyRows}}<tr>{{range .}}<td>{{.Swatch}}</td><td>{{.Name}}</td>{{end}}</tr>{{end}}</table>{{end}}</div>{{end}}{{end}}
`))
