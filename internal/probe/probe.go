// Package probe checks a POP3 server, ours or any other, from the
// outside, and reports what a user or an administrator can act on:
//
//   - the greeting and CAPA (RFC 2449 §5), before and after TLS;
//   - TLS: STLS (RFC 2595) on a pop3:// target, implicit TLS (RFC 8314) on
//     a pop3s:// one; the protocol versions the server accepts (RFC 8996
//     deprecates TLS 1.0 and 1.1), the certificate chain, its names
//     (RFC 7817 §3, RFC 6125) and expiry; and whether a command pipelined
//     in plaintext after STLS is run inside TLS (the CVE-2011-0411 class
//     of injection; RFC 2595 §4 says the client must discard what came
//     before the handshake, and the server must too);
//   - the authentication offered before and after TLS, and whether a
//     password could cross in the clear: the probe sends "USER" with a
//     made-up name on the unencrypted connection, never a password;
//   - the APOP timestamp of the greeting (RFC 1939 §7: an RFC 822 msg-id,
//     unique per connection);
//   - with credentials, the RFC 1939 behaviours that can be checked
//     without changing the maildrop: STAT, LIST and UIDL agree (§5, §7),
//     RETR sends exactly the octets LIST announced (§11), and so does a
//     message with lines starting with "." (dot-stuffing, §3), TOP sends
//     the header and the blank line (§7), UIDLs are 1-70 characters of
//     0x21-0x7E, unique (§7) and the same in a second session. The probe
//     never sends DELE: it ends each session with QUIT, which removes
//     nothing. It logs in only over TLS unless told otherwise.
//
// Each check yields Findings of a Severity; the report's worst severity is
// the exit status of `postoffice probe`. Every network step is bounded by
// Options.Timeout, and the number of messages read by
// Options.MaxMessages.
package probe

import (
	"fmt"
	"net"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// Severity ranks a Finding.
type Severity int

// The severities, from harmless to broken. The values are the exit
// statuses of `postoffice probe` for a report whose worst finding has them
// (Info and OK both exit 0).
const (
	OK   Severity = 0 // checked and fine
	Info Severity = 0 // worth knowing, nothing to fix; shown as INFO
	Warn Severity = 1 // works, but weakens security or interoperability
	Fail Severity = 2 // broken, or passwords or mail exposed
)

// Finding is the result of one check.
type Finding struct {
	Check    string   `json:"check"` // short name: "tls.cert.expiry", "stls.injection", ...
	Severity Severity `json:"severity"`
	Level    string   `json:"level"` // "ok", "info", "warn" or "fail"
	Text     string   `json:"text"`  // what was found
	Advice   string   `json:"advice,omitempty"`
}

// TLSInfo is what the probe saw of the server's TLS.
type TLSInfo struct {
	Mode        string   `json:"mode"`     // "implicit" or "stls"
	Versions    []string `json:"versions"` // accepted, e.g. "TLS 1.2"
	Negotiated  string   `json:"negotiated"`
	CipherSuite string   `json:"cipher_suite"`
	Chain       []Cert   `json:"chain"`
	Verified    bool     `json:"verified"`
	VerifyError string   `json:"verify_error,omitempty"`
}

// Cert is one certificate of the chain the server sent.
type Cert struct {
	Subject   string    `json:"subject"`
	Issuer    string    `json:"issuer"`
	Names     []string  `json:"names,omitempty"`
	NotBefore time.Time `json:"not_before"`
	NotAfter  time.Time `json:"not_after"`
}

// Report is the whole result.
type Report struct {
	Target    string    `json:"target"`
	Time      time.Time `json:"time"`
	Greeting  string    `json:"greeting,omitempty"`
	Capa      []string  `json:"capa,omitempty"`
	CapaTLS   []string  `json:"capa_after_tls,omitempty"`
	TLS       *TLSInfo  `json:"tls,omitempty"`
	Findings  []Finding `json:"findings"`
	Worst     Severity  `json:"worst"`
	WorstName string    `json:"worst_level"`
}

// Target is a parsed pop3:// or pop3s:// URL.
type Target struct {
	Implicit bool   // pop3s://
	Host     string // without brackets
	Addr     string // host:port
	User     string // from the URL or Options; empty: no login
	Password string
}

// ParseTarget parses "pop3://[user[:password]@]host[:port]" (port 110)
// or "pop3s://..." (port 995), as RFC 2384 writes POP URLs.
func ParseTarget(s string) (Target, error) {
	u, err := url.Parse(s)
	if err != nil {
		return Target{}, fmt.Errorf("probe: %q: %v", s, err)
	}
	var t Target
	port := "110"
	switch strings.ToLower(u.Scheme) {
	case "pop3", "pop":
	case "pop3s", "pops":
		t.Implicit, port = true, "995"
	default:
		return Target{}, fmt.Errorf("probe: %q: the scheme must be pop3:// or pop3s://", s)
	}
	if u.Hostname() == "" {
		return Target{}, fmt.Errorf("probe: %q: no host", s)
	}
	if (u.Path != "" && u.Path != "/") || u.RawQuery != "" {
		return Target{}, fmt.Errorf("probe: %q: a POP3 URL has no path or query here", s)
	}
	if p := u.Port(); p != "" {
		if n, err := strconv.Atoi(p); err != nil || n < 1 || n > 65535 {
			return Target{}, fmt.Errorf("probe: %q: bad port", s)
		}
		port = p
	}
	t.Host = u.Hostname()
	t.Addr = net.JoinHostPort(t.Host, port)
	if u.User != nil {
		t.User = u.User.Username()
		t.Password, _ = u.User.Password()
	}
	return t, nil
}

func levelName(f Finding) string {
	switch {
	case f.Severity >= Fail:
		return "fail"
	case f.Severity >= Warn:
		return "warn"
	case f.Level == "ok":
		return "ok"
	}
	return "info"
}

func (r *Report) add(check string, sev Severity, level, text, advice string) {
	f := Finding{Check: check, Severity: sev, Level: level, Text: text, Advice: advice}
	f.Level = levelName(f)
	r.Findings = append(r.Findings, f)
	if sev > r.Worst {
		r.Worst = sev
	}
}

func (r *Report) ok(check, text string) { r.add(check, OK, "ok", text, "") }
func (r *Report) info(check, text, advice string) {
	r.add(check, Info, "info", text, advice)
}
func (r *Report) warn(check, text, advice string) { r.add(check, Warn, "", text, advice) }
func (r *Report) fail(check, text, advice string) { r.add(check, Fail, "", text, advice) }
