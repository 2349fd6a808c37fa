package reports

import (
	"fmt"
	"hash/fnv"
	"html/template"
	"image/color"

	"netpolbench/results"
)

// backendColours fixes the colour of every backend the suite knows, so a backend has the same
// colour in every plot of a report and in every report: the eBPF layouts in blues, the iptables
// family in warm tones, nftables green, the control and the floor in greys. The colours are
// Okabe-Ito's, which stay distinct under the common colour-vision deficiencies.
var backendColours = map[string]color.RGBA{
	"ebpf":                   {0, 114, 178, 255},   // blue
	"ebpf-cilium":            {86, 180, 233, 255},  // sky blue
	"iptables":               {213, 94, 0, 255},    // vermillion
	"ipset":                  {230, 159, 0, 255},   // orange
	"nftables":               {0, 158, 115, 255},   // bluish green
	"compiled":               {110, 110, 110, 255}, // grey: the control, enforces nothing in a kernel
	results.BackendFloorName: {150, 150, 150, 255},
}

// fallbackColours serve backend names backendColours does not list. The pick depends on the
// name alone (a hash), never on which other backends a run has, so a new backend keeps its
// colour from one report to the next.
var fallbackColours = []color.RGBA{
	{204, 121, 167, 255}, // reddish purple
	{136, 34, 85, 255},   // wine
	{68, 170, 153, 255},  // teal
	{153, 153, 51, 255},  // olive
	{51, 34, 136, 255},   // indigo
	{0, 0, 0, 255},       // black
}

// backendColour is the colour of a backend in every plot and legend.
func backendColour(name string) color.RGBA {
	if c, ok := backendColours[name]; ok {
		return c
	}
	h := fnv.New32a()
	h.Write([]byte(name))
	return fallbackColours[h.Sum32()%uint32(len(fallbackColours))]
}

// grey draws what is context rather than a backend's figure: floors, churn event marks, the
// baseline of a comparison.
var grey = color.RGBA{120, 120, 120, 255}

// accent is the current run in a comparison's ratio plots.
var accent = color.RGBA{0, 114, 178, 255}

// translucent returns c at the given opacity (0–1), for bands and filled areas behind lines.
func translucent(c color.RGBA, alpha float64) color.NRGBA {
	return color.NRGBA{R: c.R, G: c.G, B: c.B, A: uint8(alpha * 255)}
}

// cssColour spells c for a style attribute.
func cssColour(c color.Color) template.CSS {
	r, g, b, a := c.RGBA()
	if a == 0xffff {
		return template.CSS(fmt.Sprintf("#%02x%02x%02x", r>>8, g>>8, b>>8))
	}
	if a == 0 {
		return "transparent"
	}
	// color.Color is alpha-premultiplied; CSS wants straight components.
	return template.CSS(fmt.Sprintf("rgba(%d,%d,%d,%.3f)", r*255/a, g*255/a, b*255/a, float64(a)/0xffff))
}
