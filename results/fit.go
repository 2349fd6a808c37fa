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
	// ExponentLo and ExponentHi bound Exponent where the points' own uncertainty is known (the
	// per-packet fits: a 95% interval from resampling each scale's rounds); both 0 otherwise.
	ExponentLo float64 `json:"exponent_lo,omitempty"`
	ExponentHi float64 `json:"exponent_hi,omitempty"`
}

// HasInterval reports whether the fit carries an interval of its exponent.
func (f Fit) HasInterval() bool { return f.ExponentLo != 0 || f.ExponentHi != 0 }

// Growth is how many times y grows over the fit's range of x at exponent a: (max x / min x)^a.
func (f Fit) Growth(a float64) float64 {
	lo, hi := math.Inf(1), 0.0
	for _, p := range f.Points {
		if p.X > 0 && p.Y > 0 {
			lo, hi = math.Min(lo, p.X), math.Max(hi, p.X)
		}
	}
	if hi == 0 {
		return 1
	}
	return math.Pow(hi/lo, a)
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
