package results

import (
	"errors"
	"math"

	"gonum.org/v1/gonum/stat"
)

// Fit is a power-law fit y ∝ x^Exponent of one metric of one backend over the scale sweep.
type Fit struct {
	Backend string `json:"backend"`
	// Metric names what y is, e.g. "rules", "entries", "p99 ns above floor", "pod-add apply ns".
	Metric string `json:"metric"`
	// XLabel is what x counts: "pods" or "identities".
	XLabel string `json:"x_label"`
	// Points are the measured (x, y) pairs.
	Points []Point `json:"points"`
	// Exponent is a in y = e^Intercept · x^a, from least squares on (ln x, ln y).
	Exponent float64 `json:"exponent"`
	// Intercept is b in ln y = b + a ln x.
	Intercept float64 `json:"intercept"`
	// R2 is the coefficient of determination of the fit in log space.
	R2 float64 `json:"r2"`
}

// Point is one (x, y) pair.
type Point struct {
	X float64 `json:"x"`
	Y float64 `json:"y"`
}

// ErrTooFewPoints is returned by FitPowerLaw with fewer than two usable points.
var ErrTooFewPoints = errors.New("power-law fit needs at least two points with x > 0 and y > 0 and distinct x")

// FitPowerLaw fits y ∝ x^a by least squares on logs and fills Exponent, Intercept and R2 of a Fit
// with the given labels. Points with x ≤ 0 or y ≤ 0 are kept in Points but left out of the fit
// (a logarithm needs positive values).
func FitPowerLaw(backend, metric, xLabel string, pts []Point) (Fit, error) {
	f := Fit{Backend: backend, Metric: metric, XLabel: xLabel, Points: pts}
	var xs, ys []float64
	distinct := map[float64]bool{}
	for _, p := range pts {
		if p.X > 0 && p.Y > 0 {
			xs = append(xs, math.Log(p.X))
			ys = append(ys, math.Log(p.Y))
			distinct[p.X] = true
		}
	}
	if len(distinct) < 2 {
		return f, ErrTooFewPoints
	}
	f.Intercept, f.Exponent = stat.LinearRegression(xs, ys, nil, false)
	f.R2 = stat.RSquared(xs, ys, nil, f.Intercept, f.Exponent)
	if math.IsNaN(f.R2) {
		// All y equal: the fit is exact and flat.
		f.R2 = 1
	}
	return f, nil
}
