package fetch

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"hash"
	"io"

	"github.com/postoffice-mail/postoffice/pop3"
)

// headerHash computes the header digest of a message as it streams past
// (an io.Writer, fed by io.TeeReader): SHA-256 over the header lines up to
// the first empty line, that line and the body excluded, each line end
// made CRLF and a last line without one completed; hex of the first 16
// octets. RETR and TOP n 0 (RFC 1939 §7) of the same message give the same
// digest, whether or not the server sends the empty line after a TOP
// header.
//
// It tells a message from another one the server gave the same UIDL (RFC
// 1939 §7 says a server should not reuse one, but a recreated mailbox or
// UIDLs made of message numbers do): the header holds the Received,
// Message-ID and Date fields of each delivery, so two messages share a
// digest only if they are the same delivery.
type headerHash struct {
	h    hash.Hash
	line int  // octets of the current line hashed, its CR excluded
	cr   bool // a CR was seen and not yet hashed
	done bool // the empty line was reached
}

func newHeaderHash() *headerHash { return &headerHash{h: sha256.New()} }

func (d *headerHash) Write(p []byte) (int, error) {
	n := len(p)
	for len(p) > 0 && !d.done {
		c := p[0]
		p = p[1:]
		switch {
		case c == '\n':
			if d.line == 0 {
				d.done = true
				break
			}
			d.h.Write([]byte("\r\n"))
			d.line, d.cr = 0, false
		case c == '\r':
			if d.cr {
				d.h.Write([]byte{'\r'})
				d.line++
			}
			d.cr = true
		default:
			if d.cr {
				d.h.Write([]byte{'\r'})
				d.line++
				d.cr = false
			}
			// The run of ordinary octets up to the next CR or LF at once.
			i := 0
			for i < len(p) && p[i] != '\r' && p[i] != '\n' {
				i++
			}
			d.h.Write([]byte{c})
			d.h.Write(p[:i])
			d.line += 1 + i
			p = p[i:]
		}
	}
	return n, nil
}

// Sum returns the digest of what was written.
func (d *headerHash) Sum() string {
	h := d.h
	if !d.done && d.line > 0 {
		// A header cut off without a line end (a message without body
		// and final CRLF): complete its last line. d.h is not reused.
		h.Write([]byte("\r\n"))
		d.line = 0
	}
	sum := h.Sum(nil)
	return hex.EncodeToString(sum[:16])
}

// topDigest returns the header digest of message n from TOP n 0. TOP is
// optional (RFC 1939 §7): a server that answers it with -ERR gets RETR
// instead, which costs the whole message but gives the same digest, so a
// server without TOP still has its messages confirmed before a DELE rather
// than deleted unconfirmed or never.
func topDigest(ctx context.Context, c *pop3.Client, n int) (string, error) {
	body, err := c.Top(ctx, n, 0)
	var pe *pop3.Error
	if errors.As(err, &pe) && !pe.Temporary() {
		body, err = c.Retr(ctx, n)
	}
	if err != nil {
		return "", err
	}
	d := newHeaderHash()
	_, err = io.Copy(d, body)
	if cerr := body.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return "", err
	}
	return d.Sum(), nil
}
