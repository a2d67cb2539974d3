package pgstore

import (
	"encoding/binary"

	"github.com/postoffice-mail/postoffice/internal/wire"
)

// Bodies in wire form. A delivery stores a body in its CRLF form
// (wire.CRLFReader: RFC 1939 §3 and RFC 5321 §2.3.8 line ends, a last line
// completed with CRLF), whatever line ends it came with, so that the
// stored octets are exactly those RETR sends but for the dot-stuffing of
// lines that start with "." (and messages.size, unchanged in meaning, is
// their number). Where those lines start is kept in messages.stuff (schema
// version 4); the readers Open returns then implement
// pop3server.WireReader (Wire, by its method set: this package does not
// import the engine) and add the dots as they go, so RETR sends the body
// without running it through wire.DotWriter, which took about a tenth of
// the server's CPU in a download.
//
// Decisions:
//   - A body with more than maxStuff lines that start with "." gets a NULL
//     stuff, and RETR converts it as before: the list is read with every
//     Open of the message, so it stays short (at most 64 octets of
//     offsets plus the array's header, inline in the messages row). Such
//     lines are rare in mail; a body with many is still sent correctly.
//   - Rows stored before version 4 keep their octets and a NULL stuff:
//     nothing is rewritten, and they go through the converter.
//   - The reader trusts the list only if it is well formed: ascending
//     offsets below the message's size. Anything else (a row edited by
//     hand) is sent through the converter, which is always right for a
//     body in CRLF form: the list only spares the scan.
//   - Wire is honoured only before the first Read, as the engine asks.

// maxStuff is the most lines starting with "." a body may have and still
// be sent as it is stored (see above). The Maildir index keeps 16; a row
// of the messages table can afford a few more.
const maxStuff = 64

// stuffColumn is the value of messages.stuff for the lines d found: their
// offsets (an empty array for none), or NULL for more than maxStuff.
func stuffColumn(d *wire.DotLines) []int64 {
	if d.Many() {
		return nil
	}
	if d.Offsets() == nil {
		return []int64{}
	}
	return d.Offsets()
}

// decodeStuff decodes messages.stuff in PostgreSQL's binary array format
// (a header of dimensions, flags and element type, then each element as
// its length and value) and checks it against the message's size: ok is
// false for NULL and for anything that is not a list of at most maxStuff
// ascending offsets below size. No allocation for an empty list.
func decodeStuff(v []byte, size int64) (dots []int64, ok bool) {
	const int8OID = 20
	if len(v) < 12 {
		return nil, false
	}
	ndim := binary.BigEndian.Uint32(v[0:])
	if binary.BigEndian.Uint32(v[8:]) != int8OID {
		return nil, false
	}
	if ndim == 0 {
		return nil, len(v) == 12
	}
	if ndim != 1 || len(v) < 20 {
		return nil, false
	}
	n := int(binary.BigEndian.Uint32(v[12:]))
	if n < 0 || n > maxStuff || len(v) != 20+n*12 {
		return nil, false
	}
	dots = make([]int64, n)
	prev := int64(-1)
	for i := range n {
		e := v[20+i*12:]
		off := int64(binary.BigEndian.Uint64(e[4:]))
		if binary.BigEndian.Uint32(e) != 8 || off <= prev || off >= size {
			return nil, false
		}
		dots[i], prev = off, off
	}
	return dots, true
}

// stuffer adds the stuffing dots to a body in wire form as a reader hands
// it out, once wire mode is on.
type stuffer struct {
	ready bool    // the body is in wire form (messages.stuff was valid)
	on    bool    // Wire was called: add the dots
	read  bool    // Read was called
	dots  []int64 // offsets of the dots not yet added, ascending
	off   int64   // body octets handed out
}

// copy copies body octets from src into p, adding the dots due, and
// returns the octets written to p and those taken from src.
func (s *stuffer) copy(p, src []byte) (n, used int) {
	s.read = true
	if !s.on {
		n = copy(p, src)
		s.off += int64(n)
		return n, n
	}
	for n < len(p) && used < len(src) {
		if len(s.dots) > 0 && s.dots[0] == s.off {
			p[n] = '.'
			n++
			s.dots = s.dots[1:]
			continue
		}
		k := len(src) - used
		if len(s.dots) > 0 {
			k = min(k, int(s.dots[0]-s.off))
		}
		k = copy(p[n:], src[used:used+k])
		n += k
		used += k
		s.off += int64(k)
	}
	return n, used
}

// wire turns wire mode on if the body is in wire form and nothing was
// read yet.
func (s *stuffer) wire() bool {
	if !s.ready || s.read {
		return false
	}
	s.on = true
	return true
}
