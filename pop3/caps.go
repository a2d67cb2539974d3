package pop3

import (
	"math"
	"strconv"
	"strings"
	"time"

	"github.com/postoffice-mail/postoffice/internal/wire"
)

// Caps is a server's answer to CAPA (RFC 2449 §5). The zero Caps means the
// server knows no CAPA (it answered -ERR; RFC 2449 §5: the client then
// falls back to RFC 1939 behaviour), so every capability reads as absent.
type Caps struct {
	// Lines holds each capability line as sent, in order.
	Lines []string
}

// parseCaps builds Caps from the lines of a CAPA response.
func parseCaps(lines []string) Caps {
	return Caps{Lines: lines}
}

// find returns the arguments of the capability named name and whether it
// is present. Names compare case-insensitively in ASCII only (RFC 2449
// §5): "ſTLS", with U+017F, is not STLS.
func (c Caps) find(name string) ([]string, bool) {
	for _, l := range c.Lines {
		f := strings.Fields(l)
		if len(f) > 0 && wire.EqualFoldASCII(f[0], name) {
			return f[1:], true
		}
	}
	return nil, false
}

// Has reports whether the capability name (a tag such as "TOP", "UIDL",
// "STLS", "PIPELINING", "RESP-CODES", "SASL") was listed.
func (c Caps) Has(name string) bool {
	_, ok := c.find(name)
	return ok
}

// Args returns the arguments listed after the capability name.
func (c Caps) Args(name string) []string {
	a, _ := c.find(name)
	return a
}

// SASL returns the SASL mechanisms the server offers (RFC 5034 §3), upper
// case.
func (c Caps) SASL() []string {
	a := c.Args("SASL")
	mechs := make([]string, len(a))
	for i, m := range a {
		mechs[i] = wire.ToUpperASCII(m)
	}
	return mechs
}

// HasSASL reports whether mech is among the SASL mechanisms offered.
func (c Caps) HasSASL(mech string) bool {
	for _, m := range c.Args("SASL") {
		if wire.EqualFoldASCII(m, mech) {
			return true
		}
	}
	return false
}

// STLS reports the STLS capability (RFC 2595 §4).
func (c Caps) STLS() bool { return c.Has("STLS") }

// Pipelining reports the PIPELINING capability (RFC 2449 §6.6).
func (c Caps) Pipelining() bool { return c.Has("PIPELINING") }

// RespCodes reports the RESP-CODES capability (RFC 2449 §6.4).
func (c Caps) RespCodes() bool { return c.Has("RESP-CODES") }

// AuthRespCode reports AUTH-RESP-CODE: every credential failure carries
// [AUTH] (RFC 3206 §6).
func (c Caps) AuthRespCode() bool { return c.Has("AUTH-RESP-CODE") }

// Implementation returns the IMPLEMENTATION text (RFC 2449 §6.9), for
// display only: clients must not change behaviour on it.
func (c Caps) Implementation() string {
	for _, l := range c.Lines {
		name, rest, _ := strings.Cut(l, " ")
		if wire.EqualFoldASCII(name, "IMPLEMENTATION") {
			return strings.TrimSpace(rest)
		}
	}
	return ""
}

// LoginDelay returns the LOGIN-DELAY capability (RFC 2449 §6.5): the
// minimum time between logins, and whether the value varies per user
// (the "USER" argument, only before login). ok is false when not
// advertised or not a number.
func (c Caps) LoginDelay() (delay time.Duration, perUser, ok bool) {
	a, found := c.find("LOGIN-DELAY")
	if !found || len(a) == 0 {
		return 0, false, false
	}
	secs, err := strconv.ParseInt(a[0], 10, 64)
	if err != nil || secs < 0 || secs > int64(1<<62/time.Second) {
		return 0, false, false
	}
	return time.Duration(secs) * time.Second, len(a) > 1 && wire.EqualFoldASCII(a[1], "USER"), true
}

// ExpireNever is what Caps.Expire returns for "EXPIRE NEVER".
const ExpireNever time.Duration = -1

// Expire returns the EXPIRE capability (RFC 2449 §6.7): how long the
// server keeps messages after they are retrieved, ExpireNever, or 0 when
// it may delete them at the end of this session. perUser reports the
// "USER" argument. ok is false when not advertised or not understood.
func (c Caps) Expire() (keep time.Duration, perUser, ok bool) {
	a, found := c.find("EXPIRE")
	if !found || len(a) == 0 {
		return 0, false, false
	}
	perUser = len(a) > 1 && wire.EqualFoldASCII(a[1], "USER")
	if wire.EqualFoldASCII(a[0], "NEVER") {
		return ExpireNever, perUser, true
	}
	days, err := strconv.ParseInt(a[0], 10, 64)
	// A count whose Duration would overflow is not understood.
	if err != nil || days < 0 || days > int64(math.MaxInt64/(24*time.Hour)) {
		return 0, false, false
	}
	return time.Duration(days) * 24 * time.Hour, perUser, true
}
