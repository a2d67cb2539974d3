package bench

import (
	"bytes"
	"encoding/json"
	"encoding/xml"
	"errors"
	"io"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// svgElements parses an SVG document and counts its elements by name; it
// fails the test when the document is not well-formed XML.
func svgElements(t *testing.T, doc []byte) map[string]int {
	t.Helper()
	n := map[string]int{}
	d := xml.NewDecoder(bytes.NewReader(doc))
	for {
		tok, err := d.Token()
		if errors.Is(err, io.EOF) {
			return n
		}
		if err != nil {
			t.Fatalf("SVG is not well-formed: %v\n%s", err, doc)
		}
		if se, ok := tok.(xml.StartElement); ok {
			n[se.Name.Local]++
		}
	}
}

func TestPlotSVG(t *testing.T) {
	t.Parallel()
	p := &Plot{
		Title: "login <cost> & more", XLabel: "concurrency", YLabel: "ms", LogX: true,
		Series: []Series{
			{Name: "p50", X: []float64{1, 10, 100, 1000}, Y: []float64{0.5, 1, 4, 40}},
			// A missing point breaks the line in two; a single point is a marker only.
			{Name: "cpu", X: []float64{1, 10, 100, 1000}, Y: []float64{0.2, 0.2, math.NaN(), 0.3}},
		},
	}
	var b bytes.Buffer
	if err := p.WriteSVG(&b); err != nil {
		t.Fatal(err)
	}
	n := svgElements(t, b.Bytes())
	if n["svg"] != 1 || n["polyline"] != 2 || n["circle"] != 7 {
		t.Errorf("svg has %d svg, %d polylines, %d circles; want 1, 2 (p50, cpu's first two points), 7", n["svg"], n["polyline"], n["circle"])
	}
	if !strings.Contains(b.String(), "login &lt;cost&gt; &amp; more") {
		t.Error("the title is not escaped")
	}
	// Ticks at each power of ten of the log axis.
	for _, tick := range []string{">1<", ">10<", ">100<", ">1k<"} {
		if !strings.Contains(b.String(), tick) {
			t.Errorf("no x tick %s", tick)
		}
	}
	// The same plot draws the same bytes.
	var b2 bytes.Buffer
	p.WriteSVG(&b2)
	if !bytes.Equal(b.Bytes(), b2.Bytes()) {
		t.Error("two drawings of one plot differ")
	}
}

func TestPlotSVGErrors(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		p    Plot
	}{
		{"lengths", Plot{Series: []Series{{X: []float64{1, 2}, Y: []float64{1}}}}},
		{"empty", Plot{Series: []Series{{}}}},
		{"all missing", Plot{Series: []Series{{X: []float64{1}, Y: []float64{math.NaN()}}}}},
		{"zero on log x", Plot{LogX: true, Series: []Series{{X: []float64{0, 1}, Y: []float64{1, 2}}}}},
		{"negative on log y", Plot{LogY: true, Series: []Series{{X: []float64{1, 2}, Y: []float64{-1, 2}}}}},
		{"infinite", Plot{Series: []Series{{X: []float64{1, 2}, Y: []float64{math.Inf(1), 2}}}}},
	} {
		var b bytes.Buffer
		if err := tc.p.WriteSVG(&b); err == nil || b.Len() != 0 {
			t.Errorf("%s: WriteSVG = %v with %d octets written, want an error and nothing", tc.name, err, b.Len())
		}
	}
}

func TestCurve(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	write := func(name string, r *Result) string {
		b, _ := json.Marshal(r)
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, b, 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	a := write("a.json", &Result{Sessions: 10, LatencyMs: Percentiles{P50: 1.25}, ServerCPUms: 0.2})
	b := write("b.json", &Result{Sessions: 0, Errors: 3}) // no verified session: metrics missing
	c := write("c.json", &Result{Sessions: 5, LatencyMs: Percentiles{P50: 1234.4}})
	curve, err := NewCurve("login", "concurrency", []string{"latency_p50_ms", "server_cpu_ms"}, []string{"100=" + c, "1=" + a, "10=" + b})
	if err != nil {
		t.Fatal(err)
	}
	var tb strings.Builder
	curve.WriteTable(&tb)
	want := `| concurrency | session latency p50 (ms) | server CPU per session (ms) | sessions | errors |
|---:|---:|---:|---:|---:|
| 1 | 1.25 | 0.2 | 10 | 0 |
| 10 | - | - | 0 | 3 |
| 100 | 1234 | - | 5 | 0 |
`
	if diff := cmp.Diff(want, tb.String()); diff != "" {
		t.Errorf("table (-want +got):\n%s", diff)
	}
	var svg bytes.Buffer
	if err := curve.Plot(true, false).WriteSVG(&svg); err != nil {
		t.Fatal(err)
	}
	if n := svgElements(t, svg.Bytes()); n["circle"] != 3 {
		t.Errorf("plot has %d points, want 3 (two p50, one CPU)", n["circle"])
	}
	if _, err := NewCurve("x", "x", []string{"nonsense"}, []string{"1=" + a}); err == nil {
		t.Error("unknown metric accepted")
	}
	if _, err := NewCurve("x", "x", []string{"mb_per_s"}, []string{a}); err == nil {
		t.Error("point without X= accepted")
	}
}
