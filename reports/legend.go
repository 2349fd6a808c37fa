package reports

import (
	"fmt"
	"html/template"
	"image/color"
	"math"
	"strings"

	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"
)

// LegendItem is one entry of a plot's legend. Legends are HTML beside the plot, never drawn
// inside its data area, so no legend can cover data however the data fall.
type LegendItem struct {
	Name string
	// Note is what the entry says beyond its name.
	Note string
	// Exponent, when set, is the series' fitted growth: y ∝ Growth^Exponent.
	Growth, Exponent string
	// Swatch is an inline SVG sample of how the series is drawn.
	Swatch template.HTML
}

// swatch is how a series is drawn, as much as its legend sample shows.
type swatch struct {
	// line is drawn across the sample.
	line *draw.LineStyle
	// band fills a band behind the line (a percentile band, an area under a line), or a box
	// (a box plot) when there is no line.
	band color.Color
	// glyph marks the middle, in glyphColour.
	glyph       *shape
	glyphColour color.Color
}

func lineSwatch(ls draw.LineStyle) swatch { return swatch{line: &ls} }

func boxSwatch(fill color.Color) swatch { return swatch{band: fill} }

func glyphSwatch(s shape, c color.Color) swatch { return swatch{glyph: &s, glyphColour: c} }

// pxPerPt converts gonum's points to CSS pixels at the SVG's natural size.
const pxPerPt = 96.0 / 72.0

// html draws the sample as a 30×14 px inline SVG (14×14 for a marker alone).
func (s swatch) html() template.HTML {
	w, h := 30.0, 14.0
	if s.line == nil && s.band == nil {
		w = 14
	}
	var b strings.Builder
	fmt.Fprintf(&b, `<svg class="swatch" width="%g" height="%g" viewBox="0 0 %g %g" aria-hidden="true">`, w, h, w, h)
	switch {
	case s.band != nil && s.line != nil:
		fmt.Fprintf(&b, `<rect x="0" y="2" width="%g" height="%g" fill="%s"/>`, w, h-4, cssColour(s.band))
	case s.band != nil:
		fmt.Fprintf(&b, `<rect x="8" y="1.5" width="14" height="11" fill="%s" stroke="#333" stroke-width="0.8"/>`, cssColour(s.band))
	}
	if s.line != nil && s.line.Width > 0 {
		dash := ""
		if len(s.line.Dashes) > 0 {
			var ds []string
			for _, d := range s.line.Dashes {
				ds = append(ds, trim(d.Points()*pxPerPt, 2))
			}
			dash = ` stroke-dasharray="` + strings.Join(ds, " ") + `"`
		}
		fmt.Fprintf(&b, `<line x1="0" y1="7" x2="%g" y2="7" stroke="%s" stroke-width="%s"%s/>`,
			w, cssColour(s.line.Color), trim(s.line.Width.Points()*pxPerPt, 2), dash)
	}
	if s.glyph != nil {
		b.WriteString(s.glyph.svg(w/2, h/2, 4.5, s.glyphColour))
	}
	b.WriteString(`</svg>`)
	return template.HTML(b.String()) //nolint:gosec // built from numbers and colours only
}

// shape is a marker drawn the same way in plots (as a draw.GlyphDrawer) and in legend swatches,
// so a legend shows exactly the marker of its series. Outline shapes use a stroke heavy enough
// to tell them from filled ones at a glance.
type shape int

const (
	shapeDot shape = iota
	shapeRing
	shapeSquare
	shapeBox
	shapeTriangle
	shapeTriangleOutline
	shapePlus
	shapeCross
)

// outlinePt is the stroke width of outline shapes, in points.
const outlinePt = 1.3

func (s shape) filled() bool {
	return s == shapeDot || s == shapeSquare || s == shapeTriangle
}

// vertices are the corners of a polygonal shape around (0, 0) for radius r, y up; nil for
// circles and strokes.
func (s shape) vertices(r float64) [][2]float64 {
	switch s {
	case shapeSquare, shapeBox:
		a := r * 0.82
		return [][2]float64{{-a, -a}, {a, -a}, {a, a}, {-a, a}}
	case shapeTriangle, shapeTriangleOutline:
		a := r * 1.15
		return [][2]float64{{0, a}, {-a * math.Cos(math.Pi/6), -a * 0.5}, {a * math.Cos(math.Pi/6), -a * 0.5}}
	}
	return nil
}

// strokes are the two segments of a plus or a cross, y up.
func (s shape) strokes(r float64) [][2][2]float64 {
	switch s {
	case shapePlus:
		return [][2][2]float64{{{-r, 0}, {r, 0}}, {{0, -r}, {0, r}}}
	case shapeCross:
		a := r * 0.8
		return [][2][2]float64{{{-a, -a}, {a, a}}, {{-a, a}, {a, -a}}}
	}
	return nil
}

// DrawGlyph implements draw.GlyphDrawer.
func (s shape) DrawGlyph(c *draw.Canvas, sty draw.GlyphStyle, pt vg.Point) {
	r := sty.Radius.Points()
	stroke := draw.LineStyle{Color: sty.Color, Width: vg.Points(outlinePt)}
	at := func(v [2]float64) vg.Point { return vg.Point{X: pt.X + vg.Length(v[0]), Y: pt.Y + vg.Length(v[1])} }
	var p vg.Path
	switch s {
	case shapeDot, shapeRing:
		p.Move(vg.Point{X: pt.X + sty.Radius, Y: pt.Y})
		p.Arc(pt, sty.Radius, 0, 2*math.Pi)
		p.Close()
	case shapePlus, shapeCross:
		c.SetLineStyle(stroke)
		for _, seg := range s.strokes(r) {
			var q vg.Path
			q.Move(at(seg[0]))
			q.Line(at(seg[1]))
			c.Stroke(q)
		}
		return
	default:
		for i, v := range s.vertices(r) {
			if i == 0 {
				p.Move(at(v))
			} else {
				p.Line(at(v))
			}
		}
		p.Close()
	}
	if s.filled() {
		c.SetColor(sty.Color)
		c.Fill(p)
		return
	}
	c.SetLineStyle(stroke)
	c.Stroke(p)
}

// svg draws the shape centred on (cx, cy) px with radius r px, for a swatch.
func (s shape) svg(cx, cy, r float64, c color.Color) string {
	col := cssColour(c)
	paint := fmt.Sprintf(`fill="%s"`, col)
	if !s.filled() {
		paint = fmt.Sprintf(`fill="none" stroke="%s" stroke-width="%s"`, col, trim(outlinePt*pxPerPt, 2))
	}
	pt := func(v [2]float64) string { return trim(cx+v[0], 2) + "," + trim(cy-v[1], 2) }
	switch s {
	case shapeDot, shapeRing:
		return fmt.Sprintf(`<circle cx="%s" cy="%s" r="%s" %s/>`, trim(cx, 2), trim(cy, 2), trim(r, 2), paint)
	case shapePlus, shapeCross:
		var b strings.Builder
		for _, seg := range s.strokes(r) {
			fmt.Fprintf(&b, `<polyline points="%s %s" %s/>`, pt(seg[0]), pt(seg[1]), paint)
		}
		return b.String()
	}
	var pts []string
	for _, v := range s.vertices(r) {
		pts = append(pts, pt(v))
	}
	return fmt.Sprintf(`<polygon points="%s" %s/>`, strings.Join(pts, " "), paint)
}
