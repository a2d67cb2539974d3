package bench

import (
	"encoding/json"
	"fmt"
	"io"
	"math"
	"os"
	"sort"
	"strconv"
	"strings"
)

// Curve is a cost curve: one scenario measured at several values of one
// parameter (concurrency, maildrop size, sessions held, message size),
// each point a whole Result of Run. bench/curves.sh makes the points, one
// `postoffice bench --json` per value, in one invocation; `postoffice
// bench curve` gathers them into a Curve, its table (WriteTable) and its
// plot (Plot).
type Curve struct {
	Name    string       `json:"name"`
	XLabel  string       `json:"x_label"`
	YLabel  string       `json:"y_label,omitempty"` // the plot's; default the metrics' labels
	Metrics []string     `json:"metrics"`
	Points  []CurvePoint `json:"points"`
}

// CurvePoint is the Result measured at X.
type CurvePoint struct {
	X      float64 `json:"x"`
	Result *Result `json:"result"`
}

// curveMetric is one figure a curve can show, and its label with unit.
type curveMetric struct {
	label string
	get   func(*Result) float64
}

// CurveMetrics are the figures a curve can show, by name.
var curveMetrics = map[string]curveMetric{
	"latency_p50_ms": {"session latency p50 (ms)", func(r *Result) float64 { return r.LatencyMs.P50 }},
	"latency_p99_ms": {"session latency p99 (ms)", func(r *Result) float64 { return r.LatencyMs.P99 }},
	"server_cpu_ms":  {"server CPU per session (ms)", func(r *Result) float64 { return orNaN(r.ServerCPUms) }},
	"sessions_per_s": {"sessions/s", func(r *Result) float64 { return r.SessionsPerS }},
	"mb_per_s":       {"MB/s", func(r *Result) float64 { return r.MBPerS }},
	"pss_kib":        {"PSS per session (KiB)", func(r *Result) float64 { return memOf(r, true) }},
	"rss_kib":        {"RSS per session (KiB)", func(r *Result) float64 { return memOf(r, false) }},
}

func orNaN(v float64) float64 {
	if v == 0 {
		return math.NaN()
	}
	return v
}

func memOf(r *Result, pss bool) float64 {
	if r.Memory == nil {
		return math.NaN()
	}
	if pss {
		return r.Memory.PSSPerSessionKiB
	}
	return r.Memory.RSSPerSessionKiB
}

// CurveMetricNames lists the metric names, sorted.
func CurveMetricNames() []string {
	var n []string
	for k := range curveMetrics {
		n = append(n, k)
	}
	sort.Strings(n)
	return n
}

// NewCurve gathers the points "X=FILE" (FILE a `postoffice bench --json`
// result) into a curve of the given metrics, sorted by X. A result with no
// verified session is kept (its metrics are missing, not zero).
func NewCurve(name, xLabel string, metrics, points []string) (*Curve, error) {
	for _, m := range metrics {
		if _, ok := curveMetrics[m]; !ok {
			return nil, fmt.Errorf("bench: curve: unknown metric %q (known: %s)", m, strings.Join(CurveMetricNames(), ", "))
		}
	}
	if len(metrics) == 0 || len(points) == 0 {
		return nil, fmt.Errorf("bench: curve: needs at least one metric and one point")
	}
	c := &Curve{Name: name, XLabel: xLabel, Metrics: metrics}
	for _, p := range points {
		xs, file, ok := strings.Cut(p, "=")
		x, err := strconv.ParseFloat(xs, 64)
		if !ok || err != nil {
			return nil, fmt.Errorf("bench: curve: point %q is not X=FILE", p)
		}
		b, err := os.ReadFile(file)
		if err != nil {
			return nil, fmt.Errorf("bench: curve: %w", err)
		}
		r := new(Result)
		if err := json.Unmarshal(b, r); err != nil {
			return nil, fmt.Errorf("bench: curve: %s: %w", file, err)
		}
		c.Points = append(c.Points, CurvePoint{X: x, Result: r})
	}
	sort.SliceStable(c.Points, func(i, j int) bool { return c.Points[i].X < c.Points[j].X })
	return c, nil
}

// value returns metric m at point p; NaN when the point has no verified
// session or does not have the figure.
func (c *Curve) value(p CurvePoint, m string) float64 {
	if p.Result == nil || p.Result.Sessions == 0 {
		return math.NaN()
	}
	return curveMetrics[m].get(p.Result)
}

// WriteTable writes the curve as a Markdown table: X, each metric, the
// verified sessions and the errors.
func (c *Curve) WriteTable(w io.Writer) {
	fmt.Fprintf(w, "| %s |", c.XLabel)
	for _, m := range c.Metrics {
		fmt.Fprintf(w, " %s |", curveMetrics[m].label)
	}
	fmt.Fprintln(w, " sessions | errors |")
	fmt.Fprint(w, "|---:|")
	for range c.Metrics {
		fmt.Fprint(w, "---:|")
	}
	fmt.Fprintln(w, "---:|---:|")
	for _, p := range c.Points {
		fmt.Fprintf(w, "| %s |", strconv.FormatFloat(p.X, 'f', -1, 64))
		for _, m := range c.Metrics {
			v := c.value(p, m)
			if math.IsNaN(v) {
				fmt.Fprint(w, " - |")
			} else {
				fmt.Fprintf(w, " %s |", figure(v))
			}
		}
		n, e := 0, 0
		if p.Result != nil {
			n, e = p.Result.Sessions, p.Result.Errors
		}
		fmt.Fprintf(w, " %d | %d |\n", n, e)
	}
}

// figure writes v with three significant digits, or as a whole number
// from 1,000 up.
func figure(v float64) string {
	if math.Abs(v) >= 1000 {
		return strconv.FormatFloat(math.Round(v), 'f', 0, 64)
	}
	return strconv.FormatFloat(v, 'g', 3, 64)
}

// Plot returns the curve's plot: a series per metric against X.
func (c *Curve) Plot(logX, logY bool) *Plot {
	p := &Plot{Title: c.Name, XLabel: c.XLabel, LogX: logX, LogY: logY}
	labels := make([]string, len(c.Metrics))
	for i, m := range c.Metrics {
		s := Series{Name: curveMetrics[m].label}
		labels[i] = curveMetrics[m].label
		for _, pt := range c.Points {
			s.X = append(s.X, pt.X)
			s.Y = append(s.Y, c.value(pt, m))
		}
		p.Series = append(p.Series, s)
	}
	p.YLabel = c.YLabel
	if p.YLabel == "" {
		p.YLabel = strings.Join(labels, ", ")
	}
	return p
}
