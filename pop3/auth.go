package pop3

import (
	"context"
	"crypto/md5"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
)

// Login authenticates with USER and PASS (RFC 1939 §7). The password
// travels in clear: use TLS. On success the session is in TRANSACTION and
// the cached capabilities are dropped.
func (c *Client) Login(ctx context.Context, user, pass string) error {
	if err := c.begin(ctx); err != nil {
		return err
	}
	defer c.end()
	if strings.ContainsAny(pass, "\r\n\x00") {
		return errors.New("pop3: argument contains CR, LF or NUL")
	}
	if _, err := c.cmd("USER", user); err != nil {
		return err
	}
	if err := c.writeCmd("PASS", pass, true); err != nil {
		return err
	}
	if _, err := c.readStatus(); err != nil {
		return err
	}
	c.loggedIn = true
	c.caps = nil
	return nil
}

// APOPDigest returns the APOP digest of RFC 1939 §7: the lowercase hex MD5
// of the greeting timestamp (brackets included) followed by the secret.
func APOPDigest(timestamp, secret string) string {
	sum := md5.Sum([]byte(timestamp + secret))
	return hex.EncodeToString(sum[:])
}

// APOP authenticates with the APOP command (RFC 1939 §7), using the
// timestamp of the greeting; it returns ErrNoAPOP when there was none.
func (c *Client) APOP(ctx context.Context, user, secret string) error {
	ts := c.greeting.Timestamp
	if ts == "" {
		return ErrNoAPOP
	}
	if strings.ContainsAny(user, " \r\n\x00") {
		return errors.New("pop3: APOP user name contains a space, CR, LF or NUL")
	}
	if err := c.begin(ctx); err != nil {
		return err
	}
	defer c.end()
	if err := c.writeCmd("APOP", user+" "+APOPDigest(ts, secret), true); err != nil {
		return err
	}
	if _, err := c.readStatus(); err != nil {
		return err
	}
	c.loggedIn = true
	c.caps = nil
	return nil
}

// maxCommandLine is the longest command line a server must accept,
// CRLF included (RFC 2449 §4, RFC 5034 §4).
const maxCommandLine = 255

// Authenticate runs the SASL exchange of mech with the AUTH command
// (RFC 5034 §4). The initial response goes on the AUTH line when the line
// fits in 255 octets (an empty one as "="), otherwise after the server's
// first "+". A challenge that is not base64, or that the mechanism rejects,
// cancels the exchange with "*". Data the server sends with its final "+"
// goes to the mechanism, and its answer (usually empty) is sent before the
// +OK. On success the cached capabilities are dropped.
//
// Two add-on interfaces of mech are honoured: a ChannelBinder gets the
// connection's TLS state before Start, and a Completer is asked after the
// +OK whether the server proved itself; if not, Authenticate fails with
// its error (wrapping ErrServerNotVerified for SCRAM) and the Client is
// broken.
func (c *Client) Authenticate(ctx context.Context, mech SASLClient) error {
	if err := c.usable(); err != nil {
		return err
	}
	if b, ok := mech.(ChannelBinder); ok {
		if err := b.BindTLS(c.TLS()); err != nil {
			return fmt.Errorf("pop3: sasl: %w", err)
		}
	}
	if p, ok := mech.(plusOffer); ok {
		p.sawCaps(c.caps)
	}
	name, ir, err := mech.Start()
	if err != nil {
		return fmt.Errorf("pop3: sasl: %w", err)
	}
	if name == "" || strings.ContainsAny(name, " \r\n\x00") {
		return fmt.Errorf("pop3: sasl: bad mechanism name %q", name)
	}
	if err := c.begin(ctx); err != nil {
		return err
	}
	defer c.end()

	line := "AUTH " + name
	traced := line
	pending := ir != nil // initial response still to send
	if pending {
		enc := encodeResponse(ir)
		if len(line)+1+len(enc)+2 <= maxCommandLine {
			line += " " + enc
			traced += " <redacted>"
			pending = false
		}
	}
	c.trace("C: " + traced)
	if err := c.writeRaw(line); err != nil {
		return err
	}
	for {
		l, err := c.readLine()
		if err != nil {
			return err
		}
		st, text, err := parseReply(l)
		if err != nil {
			return c.fail(err)
		}
		switch st {
		case statusOK:
			if v, ok := mech.(Completer); ok {
				if err := v.Complete(); err != nil {
					// Logged in, but not to a server that proved itself:
					// drop the session rather than use it.
					return c.fail(fmt.Errorf("pop3: sasl %s: %w", name, err))
				}
			}
			c.loggedIn = true
			c.caps = nil
			return nil
		case statusErr:
			return parseError(text)
		}
		// A continuation.
		if pending {
			// RFC 5034 §4: the server asks for the initial response
			// with an empty challenge.
			pending = false
			if err := c.writeSecret(base64.StdEncoding.EncodeToString(ir)); err != nil {
				return err
			}
			continue
		}
		chal, derr := base64.StdEncoding.DecodeString(text)
		if derr != nil {
			return c.cancelAuth(ErrBadChallenge)
		}
		resp, merr := mech.Next(chal)
		if merr != nil {
			return c.cancelAuth(fmt.Errorf("pop3: sasl %s: %w", name, merr))
		}
		if err := c.writeSecret(base64.StdEncoding.EncodeToString(resp)); err != nil {
			return err
		}
	}
}

// cancelAuth sends "*" (RFC 5034 §4) and reads the server's -ERR. cause is
// returned; the client stays usable when the server answers as it must.
func (c *Client) cancelAuth(cause error) error {
	c.trace("C: *")
	if err := c.writeRaw("*"); err != nil {
		return err
	}
	l, err := c.readLine()
	if err != nil {
		return err
	}
	st, _, err := parseReply(l)
	switch {
	case err != nil:
		return c.fail(err)
	case st == statusCont:
		return c.fail(fmt.Errorf("%w: server went on after AUTH was cancelled", ErrProtocol))
	case st == statusOK:
		// The server took "*" as a response and let us in: the
		// session is not in the state the caller expects.
		return c.fail(fmt.Errorf("%w: server accepted a cancelled AUTH", ErrProtocol))
	}
	return cause
}

// encodeResponse is the initial response on the AUTH line: "=" for an
// empty one (RFC 5034 §4).
func encodeResponse(ir []byte) string {
	if len(ir) == 0 {
		return "="
	}
	return base64.StdEncoding.EncodeToString(ir)
}

func (c *Client) writeSecret(s string) error {
	c.trace("C: <redacted>")
	return c.writeRaw(s)
}

// writeRaw sends one line without tracing it.
func (c *Client) writeRaw(s string) error {
	c.bw.WriteString(s)
	c.bw.WriteString("\r\n")
	if err := c.bw.Flush(); err != nil {
		return c.ioFail(err)
	}
	return nil
}
