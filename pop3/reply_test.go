package pop3

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/postoffice-mail/postoffice/pop3proto"
)

func TestParseReply(t *testing.T) {
	t.Parallel()
	tests := []struct {
		in   string
		st   status
		text string
		bad  bool
	}{
		{"+OK", statusOK, "", false},
		{"+OK 2 320", statusOK, "2 320", false},
		{"+ok  lower case", statusOK, "lower case", false},
		{"-ERR", statusErr, "", false},
		{"-ERR [IN-USE] locked", statusErr, "[IN-USE] locked", false},
		{"+ ", statusCont, "", false},
		{"+", statusCont, "", false},
		{"+ VXNlcm5hbWU6", statusCont, "VXNlcm5hbWU6", false},
		{"+OKAY", 0, "", true},
		{"-ERROR", 0, "", true},
		{"* OK IMAP", 0, "", true},
		{"", 0, "", true},
		{"OK", 0, "", true},
	}
	for _, tc := range tests {
		st, text, err := parseReply([]byte(tc.in))
		if tc.bad {
			if !errors.Is(err, ErrProtocol) {
				t.Errorf("parseReply(%q) = %v, %q, %v; want ErrProtocol", tc.in, st, text, err)
			}
			continue
		}
		if err != nil || st != tc.st || text != tc.text {
			t.Errorf("parseReply(%q) = %v, %q, %v; want %v, %q", tc.in, st, text, err, tc.st, tc.text)
		}
	}
}

// Response codes (RFC 2449 §8, RFC 3206 §4, §5).
func TestParseError(t *testing.T) {
	t.Parallel()
	tests := []struct {
		in   string
		want Error
	}{
		{"[IN-USE] Mailbox locked", Error{Code: "IN-USE", Text: "Mailbox locked"}},
		{"[SYS/TEMP] later", Error{Code: "SYS/TEMP", Text: "later"}},
		{"[SYS/PERM/X-FOO]", Error{Code: "SYS/PERM/X-FOO", Text: ""}},
		{"[X-VENDOR-CODE] text", Error{Code: "X-VENDOR-CODE", Text: "text"}},
		{"no code", Error{Text: "no code"}},
		{"[not a code] x", Error{Text: "[not a code] x"}},
		{"[SYS//TEMP] x", Error{Text: "[SYS//TEMP] x"}},
		{"[] x", Error{Text: "[] x"}},
		{"[unclosed", Error{Text: "[unclosed"}},
		{"", Error{}},
	}
	for _, tc := range tests {
		if got := parseError(tc.in); *got != tc.want {
			t.Errorf("parseError(%q) = %+v, want %+v", tc.in, *got, tc.want)
		}
	}
}

func TestErrorHasCode(t *testing.T) {
	t.Parallel()
	tests := []struct {
		code, ask pop3proto.Code
		want      bool
	}{
		{"SYS/TEMP", "SYS", true},
		{"SYS/TEMP", "SYS/TEMP", true},
		{"SYS/TEMP/DISK", "sys/temp", true},
		{"SYSTEM", "SYS", false},
		{"SYS/TEMPORARY", "SYS/TEMP", false},
		{"", "AUTH", false},
	}
	for _, tc := range tests {
		if got := (&Error{Code: tc.code}).HasCode(tc.ask); got != tc.want {
			t.Errorf("Error{Code: %q}.HasCode(%q) = %v, want %v", tc.code, tc.ask, got, tc.want)
		}
	}
}

// The APOP timestamp anywhere in the greeting (RFC 1939 §7).
func TestAPOPTimestamp(t *testing.T) {
	t.Parallel()
	tests := []struct{ in, want string }{
		{"POP3 server ready <1896.697170952@dbc.mtview.ca.us>", "<1896.697170952@dbc.mtview.ca.us>"},
		{"<a.b@c> ready", "<a.b@c>"},
		{"Dovecot ready. <3a1c.1.65a0b1c2.abcdEF+/==@host>", "<3a1c.1.65a0b1c2.abcdEF+/==@host>"},
		{"hello <world> and <1.2@h>", "<1.2@h>"},
		{"hello <1.2>", "<1.2>"},
		{"no stamp", ""},
		{"<>", ""},
		{"a < b > c", ""},
		{"<unclosed@x", ""},
	}
	for _, tc := range tests {
		if got := apopTimestamp(tc.in); got != tc.want {
			t.Errorf("apopTimestamp(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

// CAPA tags and their arguments (RFC 2449 §6).
func TestCaps(t *testing.T) {
	t.Parallel()
	c := parseCaps([]string{
		"TOP", "UIDL", "SASL PLAIN login SCRAM-SHA-256", "RESP-CODES", "PIPELINING",
		"LOGIN-DELAY 900 USER", "EXPIRE 31", "IMPLEMENTATION Dovecot (Debian) 2.3",
	})
	if !c.Has("uidl") || c.Has("STLS") || c.STLS() || !c.Pipelining() || !c.RespCodes() {
		t.Errorf("Has/flags wrong for %q", c.Lines)
	}
	if diff := cmp.Diff([]string{"PLAIN", "LOGIN", "SCRAM-SHA-256"}, c.SASL()); diff != "" {
		t.Errorf("SASL() diff:\n%s", diff)
	}
	if !c.HasSASL("Login") || c.HasSASL("CRAM-MD5") {
		t.Error("HasSASL wrong")
	}
	if d, perUser, ok := c.LoginDelay(); d != 900*time.Second || !perUser || !ok {
		t.Errorf("LoginDelay() = %v, %v, %v", d, perUser, ok)
	}
	if d, perUser, ok := c.Expire(); d != 31*24*time.Hour || perUser || !ok {
		t.Errorf("Expire() = %v, %v, %v", d, perUser, ok)
	}
	if got := c.Implementation(); got != "Dovecot (Debian) 2.3" {
		t.Errorf("Implementation() = %q", got)
	}
	never := parseCaps([]string{"EXPIRE NEVER", "LOGIN-DELAY soon"})
	if d, _, ok := never.Expire(); d != ExpireNever || !ok {
		t.Errorf("Expire() NEVER = %v, %v", d, ok)
	}
	if _, _, ok := never.LoginDelay(); ok {
		t.Error("LoginDelay() accepted a non-number")
	}
	// A day count whose Duration overflows int64 is not understood, rather
	// than a negative or wrapped keep time.
	for _, days := range []string{"106752", "1048576"} {
		huge := parseCaps([]string{"EXPIRE " + days})
		if d, _, ok := huge.Expire(); ok {
			t.Errorf("Expire() for EXPIRE %s = %v, %v; want not ok", days, d, ok)
		}
	}
	if d, _, ok := parseCaps([]string{"EXPIRE 106751"}).Expire(); !ok || d != 106751*24*time.Hour {
		t.Errorf("Expire() for EXPIRE 106751 = %v, %v", d, ok)
	}
	var none Caps
	if none.Has("TOP") || len(none.SASL()) != 0 || none.Pipelining() {
		t.Error("zero Caps has capabilities")
	}
	if _, _, ok := none.Expire(); ok {
		t.Error("zero Caps has EXPIRE")
	}
}

// Capability names, SASL mechanism names and their arguments compare in
// ASCII only (RFC 2449 §5, RFC 4422 §3.1): letters Unicode folds onto
// ASCII ones (U+017F long s, U+0131 dotless i, U+212A Kelvin sign) do not
// make a capability a server did not send.
func TestCapsFoldASCII(t *testing.T) {
	t.Parallel()
	c := parseCaps([]string{
		"ſTLS", "PıPELINING", "\u212Aelvin", "SASL ſcram-sha-256 plaın", "EXPIRE NEVER uſer", "UIDL",
	})
	if c.STLS() || c.Has("STLS") || c.Pipelining() || c.Has("KELVIN") {
		t.Errorf("non-ASCII capability names matched ASCII ones in %q", c.Lines)
	}
	if !c.Has("uidl") {
		t.Errorf("Has(%q) = false for %q", "uidl", c.Lines)
	}
	if c.HasSASL("SCRAM-SHA-256") || c.HasSASL("PLAIN") {
		t.Errorf("HasSASL matched a non-ASCII mechanism name in %q", c.Lines)
	}
	if diff := cmp.Diff([]string{"ſCRAM-SHA-256", "PLAıN"}, c.SASL()); diff != "" {
		t.Errorf("SASL() diff:\n%s", diff)
	}
	if _, perUser, ok := c.Expire(); !ok || perUser {
		t.Errorf("Expire() perUser = %v, ok = %v; want false, true", perUser, ok)
	}
	for _, line := range []string{"+O\u212A", "-ERſ x"} {
		if _, _, err := parseReply([]byte(line)); !errors.Is(err, ErrProtocol) {
			t.Errorf("parseReply(%q) = %v, want ErrProtocol", line, err)
		}
	}
}

func TestParseListLines(t *testing.T) {
	t.Parallel()
	if n, size, err := parseNumbers("3   1200 extra info"); n != 3 || size != 1200 || err != nil {
		t.Errorf("parseNumbers = %d, %d, %v", n, size, err)
	}
	for _, bad := range []string{"", "3", "x 1", "1 -5", "1 x"} {
		if _, _, err := parseNumbers(bad); !errors.Is(err, ErrProtocol) {
			t.Errorf("parseNumbers(%q) = %v, want ErrProtocol", bad, err)
		}
	}
	if n, uid, err := parseUID("7  whqtswO00WBw418f9t5JxYwZ"); n != 7 || uid != "whqtswO00WBw418f9t5JxYwZ" || err != nil {
		t.Errorf("parseUID = %d, %q, %v", n, uid, err)
	}
	for _, bad := range []string{"", "1", "0 x", "x y"} {
		if _, _, err := parseUID(bad); !errors.Is(err, ErrProtocol) {
			t.Errorf("parseUID(%q) = %v, want ErrProtocol", bad, err)
		}
	}
}

// FuzzReply feeds reply lines to every parser of the client: none may
// panic, and what they accept must be consistent.
func FuzzReply(f *testing.F) {
	for _, s := range []string{
		"+OK POP3 server ready <1896.697170952@dbc.mtview.ca.us>",
		"-ERR [IN-USE] Mailbox is locked by another POP3 session",
		"-ERR [SYS/TEMP/X] later",
		"+ PDE4OTYuNjk3MTcwOTUyQHBvc3RvZmZpY2UucmVzdG9uLm1jaS5uZXQ+",
		"+OK 2 320",
		"1 whqtswO00WBw418f9t5JxYwZ",
		"SASL PLAIN LOGIN",
		"LOGIN-DELAY 900 USER",
		"EXPIRE NEVER",
		"IMPLEMENTATION x",
		"-ERR [",
		"+",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, line string) {
		st, text, err := parseReply([]byte(line))
		if err == nil && st == statusErr {
			e := parseError(text)
			if e.Code != "" && strings.ContainsAny(string(e.Code), " []") || e.Code == "" && e.Text != text {
				t.Errorf("parseError(%q) = %+v", text, *e)
			}
			_ = e.Error()
			e.Temporary()
		}
		if err != nil && !errors.Is(err, ErrProtocol) {
			t.Errorf("parseReply(%q) error %v is not ErrProtocol", line, err)
		}
		if n, size, err := parseNumbers(line); err == nil && (n < 0 || size < 0) {
			t.Errorf("parseNumbers(%q) = %d, %d", line, n, size)
		}
		if n, uid, err := parseUID(line); err == nil && (n <= 0 || uid == "") {
			t.Errorf("parseUID(%q) = %d, %q", line, n, uid)
		}
		if ts := apopTimestamp(line); ts != "" && (ts[0] != '<' || ts[len(ts)-1] != '>' || !strings.Contains(line, ts)) {
			t.Errorf("apopTimestamp(%q) = %q", line, ts)
		}
		c := parseCaps([]string{line})
		c.SASL()
		c.LoginDelay()
		c.Expire()
		c.Implementation()
	})
}
