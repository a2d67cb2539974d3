package probe

import (
	"encoding/json"
	"fmt"
	"io"
	"strings"
)

// WriteText writes r for a person: the target, the greeting, CAPA, the
// TLS details, then one line per finding with its level, and its advice
// indented below.
func WriteText(w io.Writer, r *Report) error {
	var b strings.Builder
	fmt.Fprintf(&b, "probe of %s at %s\n", r.Target, r.Time.Format("2006-01-02 15:04 UTC"))
	if r.Greeting != "" {
		fmt.Fprintf(&b, "greeting: +OK %s\n", r.Greeting)
	}
	if len(r.Capa) > 0 {
		fmt.Fprintf(&b, "CAPA: %s\n", strings.Join(r.Capa, " | "))
	}
	if len(r.CapaTLS) > 0 {
		fmt.Fprintf(&b, "CAPA after STLS: %s\n", strings.Join(r.CapaTLS, " | "))
	}
	if t := r.TLS; t != nil {
		fmt.Fprintf(&b, "TLS (%s): %s %s; accepted: %s\n", t.Mode, t.Negotiated, t.CipherSuite, strings.Join(t.Versions, ", "))
		for i, c := range t.Chain {
			fmt.Fprintf(&b, "  cert %d: %s (issuer %s) names %s, valid %s to %s\n", i, c.Subject, c.Issuer,
				strings.Join(c.Names, ","), c.NotBefore.Format("2006-01-02"), c.NotAfter.Format("2006-01-02"))
		}
	}
	b.WriteString("\n")
	for _, f := range r.Findings {
		fmt.Fprintf(&b, "%-4s  %-20s %s\n", strings.ToUpper(f.Level), f.Check, f.Text)
		if f.Advice != "" && f.Level != "ok" {
			fmt.Fprintf(&b, "      %-20s -> %s\n", "", f.Advice)
		}
	}
	fmt.Fprintf(&b, "\nresult: %s\n", strings.ToUpper(r.WorstName))
	_, err := io.WriteString(w, b.String())
	return err
}

// WriteJSON writes r as one JSON object.
func WriteJSON(w io.Writer, r *Report) error {
	e := json.NewEncoder(w)
	e.SetIndent("", "  ")
	return e.Encode(r)
}
