package mbox

import (
	"bytes"
	"crypto/md5"
	"encoding/hex"
	"fmt"
)

// Both schemes below hash the header as the scanner keeps it: the From_
// line, then the header lines up to the empty line, as stored (before any
// un-quoting), at most maxKey octets. A header longer than that (64 KB)
// is hashed in part, where popa3d and Dovecot hash it all.

// popa3dUIDL returns the UIDL popa3d serves for a message with the From_
// line and header hdr (popa3d 1.0.3, mailbox.c mailbox_parse and
// pop_trans.c): the MD5 of the header lines that "remain fixed over MUA
// runs", each whole, with its LF, and its continuation lines:
//
//   - the first line starting "Received:" (case-insensitive), and no
//     Received line after it;
//   - every "Delivered-To:";
//   - "Date:" and "Message-ID:" only before the first Received line;
//   - every "X-Delivery-ID:", whose first letter must be an uppercase X
//     (popa3d tests line[0] == 'X' only).
//
// A line starting with a space or tab continues the previous one and is
// hashed with it. A line starting with R, D, M or X that is not one of
// those is not hashed; any other line is not hashed either. The UIDL is the
// first 8 octets of the digest in lowercase hex, each 4-octet half in
// reverse order (digest[3], [2], [1], [0], [7], [6], [5], [4]), as
// popa3d prints it. Two messages with the same such lines have the same
// UIDL in popa3d.
func popa3dUIDL(hdr []byte) string {
	if i := bytes.IndexByte(hdr, '\n'); i >= 0 {
		hdr = hdr[i+1:] // the From_ line is not hashed
	} else {
		hdr = nil
	}
	h := md5.New()
	fixed, received := false, false
	for len(hdr) > 0 {
		line := hdr
		if i := bytes.IndexByte(hdr, '\n'); i >= 0 {
			line, hdr = hdr[:i+1], hdr[i+1:]
		} else {
			hdr = nil
		}
		switch line[0] {
		case '\t', ' ':
			// inherits fixed from the previous line
		case 'R', 'r':
			if !received {
				received = hasPrefixFold(line, "Received:")
				fixed = received
			} else {
				fixed = false
			}
		case 'D', 'd':
			fixed = hasPrefixFold(line, "Delivered-To:") || !received && hasPrefixFold(line, "Date:")
		case 'M', 'm':
			fixed = !received && hasPrefixFold(line, "Message-ID:")
		case 'X':
			fixed = hasPrefixFold(line, "X-Delivery-ID:")
		default:
			fixed = false
		}
		if fixed {
			h.Write(line)
		}
	}
	d := h.Sum(nil)
	return fmt.Sprintf("%02x%02x%02x%02x%02x%02x%02x%02x", d[3], d[2], d[1], d[0], d[7], d[6], d[5], d[4])
}

func hasPrefixFold(line []byte, p string) bool {
	return len(line) >= len(p) && bytes.EqualFold(line[:len(p)], []byte(p))
}

// headerMD5 returns Dovecot's %m for a message with the From_ line and
// header hdr, in lowercase hex: the header MD5 of its mbox storage, with
// the default mbox_md5 = apop3d (src/lib-storage/index/mbox/
// mbox-md5-apop3d.c, fed by mbox-sync-parse.c through Dovecot's header
// parser, src/lib-mail/message-header-parser.c). Only header values are
// hashed, without their line ends: the value is what follows the colon
// with one leading space or tab removed, and a continuation line's value
// is the whole line. The headers, by name (case-insensitive, spaces
// before the colon ignored):
//
//   - Received: the first one only, all its lines;
//   - Delivered-To and X-Delivery-ID: every one;
//   - Date and Message-ID: only before the first Received header.
func headerMD5(hdr []byte) string {
	if i := bytes.IndexByte(hdr, '\n'); i >= 0 {
		hdr = hdr[i+1:]
	} else {
		hdr = nil
	}
	h := md5.New()
	seenReceived := false
	var name []byte
	for len(hdr) > 0 {
		line := hdr
		if i := bytes.IndexByte(hdr, '\n'); i >= 0 {
			line, hdr = hdr[:i], hdr[i+1:]
		} else {
			hdr = nil
		}
		line = bytes.TrimSuffix(line, []byte("\r"))
		continues := len(hdr) > 0 && (hdr[0] == ' ' || hdr[0] == '\t')
		var value []byte
		if len(line) > 0 && (line[0] == ' ' || line[0] == '\t') && name != nil {
			value = line // a continuation line: same name, whole line
		} else if c := bytes.IndexByte(line, ':'); c >= 0 {
			name = bytes.TrimRight(line[:c], " \t")
			value = line[c+1:]
			if len(value) > 0 && (value[0] == ' ' || value[0] == '\t') {
				value = value[1:]
			}
		} else {
			name, value = []byte{}, line
		}
		switch {
		case bytes.EqualFold(name, []byte("Received")):
			if !seenReceived {
				h.Write(value)
				if !continues {
					seenReceived = true
				}
			}
		case bytes.EqualFold(name, []byte("Delivered-To")), bytes.EqualFold(name, []byte("X-Delivery-ID")):
			h.Write(value)
		case bytes.EqualFold(name, []byte("Date")), bytes.EqualFold(name, []byte("Message-ID")):
			if !seenReceived {
				h.Write(value)
			}
		}
	}
	return hex.EncodeToString(h.Sum(nil))
}
