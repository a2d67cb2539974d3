package bench

import (
	"errors"
	"fmt"
	"html"
	"io"
	"math"
	"strconv"
	"strings"
)

// Plot is a line plot of one or more series against a shared x axis, drawn
// as a self-contained SVG (WriteSVG): axes with ticks and labels, one
// polyline with point markers per series, a legend. It is all the cost
// curves of docs/performance.md need, so no plotting library is pulled in.
type Plot struct {
	Title          string
	XLabel, YLabel string
	// LogX and LogY draw the axis on a base-10 logarithmic scale; every
	// value on it must then be positive.
	LogX, LogY bool
	Series     []Series
}

// Series is one line: Y[i] at X[i]. A NaN Y is a missing point (the
// line is broken there).
type Series struct {
	Name string
	X, Y []float64
}

// The SVG's geometry, in pixels.
const (
	plotW, plotH                       = 640, 400
	marginL, marginR, marginT, marginB = 70, 20, 40, 50
	innerW, innerH                     = plotW - marginL - marginR, plotH - marginT - marginB
	legendLine                         = 16
)

// seriesColours are distinguishable in colour and in grey.
var seriesColours = []string{"#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b"}

// axis maps data values onto a pixel range.
type axis struct {
	log      bool
	min, max float64 // in data units (log10 of them when log)
}

func newAxis(vals []float64, log bool) (axis, error) {
	a := axis{log: log, min: math.Inf(1), max: math.Inf(-1)}
	for _, v := range vals {
		if math.IsNaN(v) {
			continue
		}
		if math.IsInf(v, 0) {
			return a, errors.New("bench: plot: infinite value")
		}
		if log {
			if v <= 0 {
				return a, fmt.Errorf("bench: plot: %g on a logarithmic axis", v)
			}
			v = math.Log10(v)
		}
		a.min, a.max = min(a.min, v), max(a.max, v)
	}
	if math.IsInf(a.min, 1) {
		return a, errors.New("bench: plot: no values")
	}
	if log {
		a.min, a.max = math.Floor(a.min), math.Ceil(a.max)
	} else {
		a.min = min(a.min, 0) // linear axes start at zero: ratios read true
		a.max = niceCeil(a.max)
	}
	if a.max <= a.min {
		a.max = a.min + 1
	}
	return a, nil
}

// niceCeil rounds v up to 1, 2 or 5 times a power of ten.
func niceCeil(v float64) float64 {
	if v <= 0 {
		return 1
	}
	p := math.Pow(10, math.Floor(math.Log10(v)))
	for _, m := range []float64{1, 2, 5, 10} {
		if v <= m*p {
			return m * p
		}
	}
	return 10 * p
}

// frac returns where v lies between min (0) and max (1).
func (a axis) frac(v float64) float64 {
	if a.log {
		v = math.Log10(v)
	}
	return (v - a.min) / (a.max - a.min)
}

// ticks returns the tick values: each power of ten on a log axis, five
// steps on a linear one.
func (a axis) ticks() []float64 {
	var t []float64
	if a.log {
		for e := a.min; e <= a.max; e++ {
			t = append(t, math.Pow(10, e))
		}
		return t
	}
	step := (a.max - a.min) / 5
	for i := 0; i <= 5; i++ {
		t = append(t, a.min+float64(i)*step)
	}
	return t
}

// formatTick writes a tick value briefly: 1k, 10M, 0.5.
func formatTick(v float64) string {
	for _, u := range []struct {
		f float64
		s string
	}{{1e9, "G"}, {1e6, "M"}, {1e3, "k"}} {
		if math.Abs(v) >= u.f {
			return strconv.FormatFloat(v/u.f, 'g', 3, 64) + u.s
		}
	}
	return strconv.FormatFloat(v, 'g', 3, 64)
}

// WriteSVG draws the plot. It fails, writing nothing, when a series has
// X and Y of different lengths, when there is no value to draw, or when a
// value is not positive on a logarithmic axis.
func (p *Plot) WriteSVG(w io.Writer) error {
	var xs, ys []float64
	for _, s := range p.Series {
		if len(s.X) != len(s.Y) {
			return fmt.Errorf("bench: plot: series %q has %d x and %d y values", s.Name, len(s.X), len(s.Y))
		}
		for i := range s.X {
			if !math.IsNaN(s.Y[i]) {
				xs, ys = append(xs, s.X[i]), append(ys, s.Y[i])
			}
		}
	}
	ax, err := newAxis(xs, p.LogX)
	if err != nil {
		return err
	}
	ay, err := newAxis(ys, p.LogY)
	if err != nil {
		return err
	}
	px := func(v float64) float64 { return marginL + ax.frac(v)*innerW }
	py := func(v float64) float64 { return marginT + (1-ay.frac(v))*innerH }
	esc := html.EscapeString
	var b strings.Builder
	fmt.Fprintf(&b, `<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" viewBox="0 0 %d %d" font-family="sans-serif" font-size="12">`+"\n", plotW, plotH, plotW, plotH)
	fmt.Fprintf(&b, `<rect width="%d" height="%d" fill="white"/>`+"\n", plotW, plotH)
	fmt.Fprintf(&b, `<text x="%d" y="20" font-size="14" text-anchor="middle">%s</text>`+"\n", plotW/2, esc(p.Title))
	// Grid and ticks.
	for _, t := range ax.ticks() {
		x := px(t)
		fmt.Fprintf(&b, `<line x1="%.1f" y1="%d" x2="%.1f" y2="%d" stroke="#ddd"/>`+"\n", x, marginT, x, marginT+innerH)
		fmt.Fprintf(&b, `<text x="%.1f" y="%d" text-anchor="middle">%s</text>`+"\n", x, marginT+innerH+16, formatTick(t))
	}
	for _, t := range ay.ticks() {
		y := py(t)
		fmt.Fprintf(&b, `<line x1="%d" y1="%.1f" x2="%d" y2="%.1f" stroke="#ddd"/>`+"\n", marginL, y, marginL+innerW, y)
		fmt.Fprintf(&b, `<text x="%d" y="%.1f" text-anchor="end">%s</text>`+"\n", marginL-6, y+4, formatTick(t))
	}
	fmt.Fprintf(&b, `<rect x="%d" y="%d" width="%d" height="%d" fill="none" stroke="black"/>`+"\n", marginL, marginT, innerW, innerH)
	fmt.Fprintf(&b, `<text x="%d" y="%d" text-anchor="middle">%s</text>`+"\n", marginL+innerW/2, plotH-10, esc(p.XLabel))
	fmt.Fprintf(&b, `<text transform="translate(16 %d) rotate(-90)" text-anchor="middle">%s</text>`+"\n", marginT+innerH/2, esc(p.YLabel))
	// Series: polylines broken at missing points, a marker per point.
	for i, s := range p.Series {
		col := seriesColours[i%len(seriesColours)]
		var pts []string
		flush := func() {
			if len(pts) > 1 {
				fmt.Fprintf(&b, `<polyline fill="none" stroke="%s" stroke-width="2" points="%s"/>`+"\n", col, strings.Join(pts, " "))
			}
			pts = pts[:0]
		}
		for j := range s.X {
			if math.IsNaN(s.Y[j]) {
				flush()
				continue
			}
			x, y := px(s.X[j]), py(s.Y[j])
			pts = append(pts, fmt.Sprintf("%.1f,%.1f", x, y))
			fmt.Fprintf(&b, `<circle cx="%.1f" cy="%.1f" r="3" fill="%s"><title>%s: %s, %s</title></circle>`+"\n",
				x, y, col, esc(s.Name), formatTick(s.X[j]), strconv.FormatFloat(s.Y[j], 'g', 4, 64))
		}
		flush()
		ly := marginT + 10 + i*legendLine
		fmt.Fprintf(&b, `<line x1="%d" y1="%d" x2="%d" y2="%d" stroke="%s" stroke-width="2"/>`+"\n", marginL+10, ly, marginL+30, ly, col)
		fmt.Fprintf(&b, `<text x="%d" y="%d">%s</text>`+"\n", marginL+36, ly+4, esc(s.Name))
	}
	b.WriteString("</svg>\n")
	_, err = io.WriteString(w, b.String())
	return err
}
