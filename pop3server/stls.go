package pop3server

import (
	"context"
	"crypto/tls"
	"strings"

	"github.com/postoffice-mail/postoffice/internal/wire"
)

// stlsAvailable reports whether STLS can be offered: TLS is configured and
// not yet active. CAPA lists it in both states (RFC 2449 §5); the command
// itself works only in AUTHORIZATION.
func (c *conn) stlsAvailable() bool {
	return c.srv.opts.TLSConfig != nil && c.info.TLS == nil
}

// cmdSTLS starts TLS on the connection (RFC 2595 §4). After the +OK the
// next octets from the client must be its ClientHello: anything it
// pipelined after STLS in plaintext is thrown away with the old read
// buffer, never run as a command inside TLS (the CVE-2011-0411 class of
// injection). What the client said before TLS is forgotten too (RFC 2595
// §4): a pending USER and UTF8 mode. A failed handshake ends the session.
func (c *conn) cmdSTLS(ctx context.Context, args string) error {
	if !c.stlsAvailable() {
		if c.info.TLS != nil {
			return c.badErr("-ERR Already using TLS: go on and log in")
		}
		return c.badErr("-ERR Unknown command: send CAPA for the commands this server supports")
	}
	if args != "" {
		return c.badErr("-ERR STLS takes no arguments: send STLS alone")
	}
	c.writeLine("+OK Begin TLS negotiation")
	if err := c.flush(); err != nil {
		return err
	}
	if n := c.br.Buffered(); n > 0 {
		c.log.Info("discarding input pipelined after STLS", "octets", n)
	}
	// The old reader, with whatever it buffered, is dropped by setLayer;
	// if the handshake fails the session ends without reading again.
	tc := tls.Server(corkOf(c.nc), c.srv.opts.TLSConfig)
	c.tc = tc
	if err := c.handshake(ctx, tc); err != nil {
		return errClose
	}
	c.setLayer(tc)
	c.user = ""
	c.lastUser = false
	c.info.UTF8 = false
	return nil
}

// cmdUTF8 enables UTF-8 mode (RFC 6856 §2): user names and passwords of
// USER, PASS and APOP may be UTF-8 and must then be valid UTF-8.
//
// RFC 6856 §2 restricts UTF8 to the AUTHORIZATION state; it is accepted
// after login too because classic Outlook, having seen UTF8 in the CAPA
// before login, sends it right after PASS and aborts the download on -ERR
// (error 0x800CCC90). Nothing is left to change by then, so +OK is
// harmless.
func (c *conn) cmdUTF8(args string) error {
	if args != "" {
		return c.badErr("-ERR UTF8 takes no arguments: send UTF8 alone")
	}
	c.info.UTF8 = true
	c.writeLine("+OK UTF8 enabled")
	return nil
}

// cmdLang is RFC 6856 §3 LANG, valid in both states. Replies are in
// English only, so the listing is "en" and "i-default" (RFC 2277), and a
// change succeeds only for a range that selects one of them.
func (c *conn) cmdLang(args string) error {
	if args == "" {
		c.writeLine("+OK Language listing follows:")
		c.writeLine("en English")
		c.writeLine("i-default Default language")
		c.writeLine(".")
		return nil
	}
	if !validLanguageRange(args) {
		return c.badErr("-ERR Invalid language range: send LANG alone for the languages offered")
	}
	// RFC 6856 §3: the reply starts with the tag of the language now in
	// use; "*" asks for the server's default. A range is matched by
	// truncation (RFC 4647 §3.4 lookup), so "en-GB" selects "en".
	tag := wire.ToLowerASCII(args)
	switch {
	case tag == "*" || tag == "en" || strings.HasPrefix(tag, "en-"):
		c.writeLine("+OK en Language changed to English")
	case tag == "i-default":
		c.writeLine("+OK i-default Language changed to the default (English)")
	default:
		// The RFC's example: "-ERR invalid language MUL". The range has
		// passed validLanguageRange, so echoing it is safe.
		c.writeLine("-ERR invalid language " + args + ": send LANG alone for the languages offered")
	}
	return nil
}

// validLanguageRange checks RFC 6856 §3's language-range:
// (1*8ALPHA *("-" 1*8alphanum)) / "*".
func validLanguageRange(s string) bool {
	if s == "*" {
		return true
	}
	for i, part := range strings.Split(s, "-") {
		if len(part) < 1 || len(part) > 8 {
			return false
		}
		for j := 0; j < len(part); j++ {
			b := part[j]
			alpha := 'a' <= b && b <= 'z' || 'A' <= b && b <= 'Z'
			if !alpha && (i == 0 || b < '0' || b > '9') {
				return false
			}
		}
	}
	return true
}
