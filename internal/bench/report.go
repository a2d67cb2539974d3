package bench

import (
	"encoding/json"
	"fmt"
	"io"
	"sort"
)

// WriteText writes the result for a person.
func (r *Result) WriteText(w io.Writer) {
	fmt.Fprintf(w, "scenario %s  addr %s  tls %s  concurrency %d\n", r.Scenario, r.Addr, r.TLS, r.Concurrency)
	fmt.Fprintf(w, "  sessions    %d verified in %.2fs: %.1f sessions/s\n", r.Sessions, r.Elapsed, r.SessionsPerS)
	if r.Messages > 0 {
		fmt.Fprintf(w, "  messages    %d, %.1f MB: %.1f MB/s\n", r.Messages, float64(r.Bytes)/1e6, r.MBPerS)
	}
	fmt.Fprintf(w, "  latency ms  p50 %.2f  p90 %.2f  p99 %.2f  max %.2f\n", r.LatencyMs.P50, r.LatencyMs.P90, r.LatencyMs.P99, r.LatencyMs.Max)
	fmt.Fprintf(w, "  generator   %.2f cores busy\n", r.GeneratorCPU)
	if r.ServerCPUms > 0 {
		fmt.Fprintf(w, "  server CPU  %.3f ms per session\n", r.ServerCPUms)
	}
	if m := r.Memory; m != nil {
		fmt.Fprintf(w, "  memory      %d sessions held, %d server processes: RSS %d -> %d KiB, PSS %d -> %d KiB\n",
			m.Held, m.Processes, m.RSSBeforeKiB, m.RSSWithKiB, m.PSSBeforeKiB, m.PSSWithKiB)
		fmt.Fprintf(w, "  per session RSS %.1f KiB  PSS %.1f KiB\n", m.RSSPerSessionKiB, m.PSSPerSessionKiB)
	}
	fmt.Fprintf(w, "  errors      %d", r.Errors)
	if r.Errors > 0 {
		kinds := make([]string, 0, len(r.ErrorKinds))
		for k := range r.ErrorKinds {
			kinds = append(kinds, k)
		}
		sort.Strings(kinds)
		for _, k := range kinds {
			fmt.Fprintf(w, "  %s=%d", k, r.ErrorKinds[k])
		}
		fmt.Fprintln(w)
		for _, s := range r.ErrorSamples {
			fmt.Fprintf(w, "    %s\n", s)
		}
	} else {
		fmt.Fprintln(w)
	}
}

// WriteJSON writes the result as one JSON object.
func (r *Result) WriteJSON(w io.Writer) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(r)
}
