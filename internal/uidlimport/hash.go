package uidlimport

import (
	"bufio"
	"crypto/sha1"
	"encoding/hex"
	"errors"
	"io"
	"strings"
)

// maxHeader bounds how much of a message HeaderHash reads: a header block
// longer than this is hashed up to here. Both sides cut at the same place,
// so two copies of one message still agree.
const maxHeader = 1 << 20

// skipHeaders are left out of the hash because servers add, drop or
// rewrite them: the list of Dovecot's pop3-migration plugin
// (src/plugins/pop3-migration/pop3-migration-plugin.c, hdr_hash_skip_headers).
// mbox servers keep their state in Status, X-Status, X-UID, X-IMAP,
// X-IMAPbase, X-Keywords and Content-Length; Return-Path is written by
// the delivery agent of one side and not the other.
var skipHeaders = map[string]bool{
	"content-length":          true,
	"return-path":             true,
	"status":                  true,
	"x-imap":                  true,
	"x-imapbase":              true,
	"x-keywords":              true,
	"x-message-flag":          true,
	"x-status":                true,
	"x-uid":                   true,
	"x-uidl":                  true,
	"x-yahoo-newman-property": true,
}

// stateHeaders are the skipped fields in which mbox servers keep their
// own state. Dovecot writes X-IMAPbase, X-UID, Status and X-Keywords into
// an mbox when it rewrites it, and hides them (with X-IMAP, X-Status and
// Content-Length) from POP3 clients, its LIST sizes included; a server
// that reads the file as it stands serves and counts them. Their octets
// are left out of the size that Match compares (see HeaderHash's state).
var stateHeaders = map[string]bool{
	"content-length": true,
	"status":         true,
	"x-imap":         true,
	"x-imapbase":     true,
	"x-keywords":     true,
	"x-status":       true,
	"x-uid":          true,
}

// HeaderHash returns a digest of the header of the message r streams (a
// whole message as stored, or what TOP n 0 sends, RFC 1939 §7), made so
// that two servers' copies of one message agree, as Dovecot's
// pop3-migration plugin makes its header hash:
//
//   - only the header counts, up to the first empty line (or a line of
//     nothing but CRs, where servers disagree whether the header ends);
//   - line ends are LF or CRLF alike, and a last line without one counts
//     as if it had one;
//   - the fields of skipHeaders are left out, with their continuation
//     lines, and so are lines that are not "name: value" fields, fields
//     whose name has octets outside 0x21-0x7E, and continuation lines of
//     nothing but blanks (servers drop all three);
//   - spaces and tabs are left out (servers strip trailing ones or
//     refold), and every octet below 0x20 or above 0x7E, and '?', counts
//     as a '?', a run of them as one (servers replace 8-bit octets and
//     NULs differently; Dovecot's message_header_hash version 4).
//
// The digest is hex SHA-1, like the plugin's. It reads at most maxHeader
// octets and never the body.
func HeaderHash(r io.Reader) (string, error) {
	hash, _, err := headerHash(r)
	return hash, err
}

// headerHash is HeaderHash; state is the size, in CRLF octets, of the
// lines of stateHeaders fields (with their continuation lines) in the
// header.
func headerHash(r io.Reader) (hash string, state int64, err error) {
	h := sha1.New()
	br := bufio.NewReader(io.LimitReader(r, maxHeader))
	var (
		skipping bool // in a skipped field: its continuation lines go too
		inState  bool // in a stateHeaders field
		prevQ    bool // the last octet hashed was a '?' standing for a run
		out      []byte
	)
	for {
		line, err := br.ReadSlice('\n')
		if errors.Is(err, bufio.ErrBufferFull) {
			// A line longer than the buffer: collect it whole.
			buf := append([]byte(nil), line...)
			for errors.Is(err, bufio.ErrBufferFull) {
				line, err = br.ReadSlice('\n')
				buf = append(buf, line...)
			}
			line = buf
		}
		if len(line) == 0 && err != nil {
			if err == io.EOF {
				break
			}
			return "", 0, err
		}
		text := strings.TrimRight(string(line), "\n")
		if strings.TrimLeft(text, "\r") == "" {
			break // the end of the header (or CR CR LF, where some servers end it)
		}
		text = strings.TrimSuffix(text, "\r")
		keep := true
		if text[0] == ' ' || text[0] == '\t' {
			keep = !skipping && strings.Trim(text, " \t") != ""
		} else {
			name, _, ok := strings.Cut(text, ":")
			name = strings.TrimRight(name, " \t")
			skipping = !ok || name == "" || !validName(name) || skipHeaders[strings.ToLower(name)]
			inState = ok && stateHeaders[strings.ToLower(name)]
			keep = !skipping
		}
		if inState {
			state += int64(len(text)) + 2
		}
		if keep {
			out = out[:0]
			for i := 0; i < len(text); i++ {
				c := text[i]
				switch {
				case c == ' ' || c == '\t':
					continue
				case c < 0x20 || c > 0x7e || c == '?':
					if !prevQ {
						out = append(out, '?')
					}
					prevQ = true
					continue
				}
				out = append(out, c)
				prevQ = false
			}
			out = append(out, '\n')
			prevQ = false
			h.Write(out)
		}
		if err == io.EOF {
			break
		}
		if err != nil {
			return "", 0, err
		}
	}
	return hex.EncodeToString(h.Sum(nil)), state, nil
}

// validName reports whether a field name is octets of 0x21-0x7E only.
func validName(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] <= 0x20 || s[i] >= 0x7f {
			return false
		}
	}
	return true
}
