package mbox

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"strconv"

	"github.com/postoffice-mail/postoffice/internal/wire"
)

// Format is the From_ quoting an mbox was written with.
type Format int

const (
	// MboxO is the quoting of Postfix's local(8), procmail and most
	// delivery agents: a line starting with "From " is written as
	// ">From "; nothing else is changed. Reading removes one '>' from a
	// line starting with ">From ", so a message that arrived with "From "
	// lines comes back as it was sent; one that arrived with ">From "
	// lines loses that '>' (the format cannot tell the two apart).
	MboxO Format = iota
	// MboxRD is the reversible quoting of mboxrd writers: a line matching
	// ^>*From  gets one more '>', and reading removes one from each such
	// line, so every message comes back exactly as it was sent.
	MboxRD
)

// maxKey bounds the octets of a message (its From_ line and header) that
// identify it: the key hash, and what Commit reads again to check that a
// message is still where the snapshot saw it.
const maxKey = 64 << 10

// msg is one message of the mbox, as the scanner found it.
type msg struct {
	off  int64 // the From_ line
	body int64 // the first octet of the message, after the From_ line
	end  int64 // one past the message's last octet, before the separating blank line
	next int64 // the next From_ line, or the end of the scanned data
	size int64 // CRLF size after un-escaping (store.Message.Size)
	raw  bool  // a trusted Content-Length: no From_ line inside, nothing un-escaped
	klen int64 // octets from off that key hashes
	key  string
	// xuidl is the message's X-UIDL header value (qpopper, UW ipop3d), if
	// any, unchecked.
	xuidl string
	// hdrUIDL is the UIDL the configured UIDL scheme computes from the
	// header (Options.UIDLFormat, Options.Popa3dUIDLs), if any, unchecked.
	hdrUIDL string
	uid     string
}

// keyOf hashes the octets that identify a message.
func keyOf(b []byte) string {
	h := sha256.Sum256(b)
	return hex.EncodeToString(h[:12])
}

// isFrom reports whether line is a From_ line candidate.
func isFrom(line []byte) bool { return bytes.HasPrefix(line, []byte("From ")) }

// quoted reports whether line is a quoted From_ line in format f, which
// reading un-escapes by removing its first octet.
func quoted(line []byte, f Format) bool {
	if f == MboxO {
		return bytes.HasPrefix(line, []byte(">From "))
	}
	i := 0
	for i < len(line) && line[i] == '>' {
		i++
	}
	return i > 0 && bytes.HasPrefix(line[i:], []byte("From "))
}

// errNotMbox is returned for data that does not start with a From_ line.
var errNotMbox = errors.New("mbox: file does not begin with a \"From \" line (not an mbox)")

// scan reads the messages of r from start to size. start must be 0 or the
// offset of a From_ line that follows a separating blank line.
//
// A message starts at a line beginning with "From " that is the first line
// of the file or follows an empty line; that empty line separates it from
// the previous message and belongs to neither. So a message's own final
// empty line, if it has one, is kept, and mbox writers' habit of ending
// every message with one blank line is undone. A "From " line elsewhere is
// message text (a writer that did not quote it).
//
// Content-Length (Solaris and SysV writers, which do not quote) is trusted
// only as mutt trusts it: when the body it measures ends exactly on an
// empty line followed by a From_ line, or at the end of the file; a
// message so measured may contain unquoted "From " lines and is returned
// without un-escaping. Otherwise the header is ignored.
//
// uidlOf, if not nil, computes each message's hdrUIDL from its From_ line
// and header (at most maxKey octets), as the scanner read them.
func scan(r io.ReaderAt, start, size int64, f Format, uidlOf func(hdr []byte) string) ([]msg, error) {
	sc := scanner{r: r, size: size, f: f, rawUntil: -1, uidlOf: uidlOf}
	br := bufio.NewReaderSize(io.NewSectionReader(r, start, size-start), 64<<10)
	off := start
	lineStart := true
	for {
		chunk, err := br.ReadSlice('\n')
		if len(chunk) > 0 {
			if err := sc.chunk(off, chunk, lineStart); err != nil {
				return nil, err
			}
			off += int64(len(chunk))
			lineStart = chunk[len(chunk)-1] == '\n'
		}
		if err == bufio.ErrBufferFull {
			continue
		}
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("mbox: read: %w", err)
		}
	}
	sc.finish(size)
	return sc.msgs, nil
}

type scanner struct {
	r    io.ReaderAt
	size int64
	f    Format
	msgs []msg
	cur  *msg

	count     wire.CRLFCounter
	pending   bool  // the last line was empty and is not counted yet
	blankOff  int64 // where that line is
	inHeader  bool
	inFrom    bool // inside a From_ line longer than one chunk
	hdr       []byte
	rawUntil  int64 // while a trusted Content-Length body lasts, its end; else -1
	quotedCur bool  // the current (partial) line is a quoted From_ line
	uidlOf    func(hdr []byte) string
}

func (s *scanner) chunk(off int64, c []byte, lineStart bool) error {
	if s.inFrom {
		s.hdr = appendMax(s.hdr, c)
		if c[len(c)-1] == '\n' {
			s.inFrom = false
			s.cur.body = off + int64(len(c))
		}
		return nil
	}
	inRaw := s.rawUntil >= 0 && off < s.rawUntil
	if lineStart && !inRaw && isFrom(c) && (s.cur == nil || s.pending) {
		s.startMessage(off, c)
		return nil
	}
	if s.cur == nil {
		return errNotMbox
	}
	if s.rawUntil >= 0 && off >= s.rawUntil {
		s.rawUntil = -1
	}
	if s.pending {
		s.count.Write([]byte{'\n'})
		s.pending = false
	}
	if lineStart && len(c) == 1 && c[0] == '\n' && !inRaw {
		s.pending, s.blankOff = true, off
		if s.inHeader {
			s.endHeader(off)
		}
		return nil
	}
	if s.inHeader {
		s.hdr = appendMax(s.hdr, c)
	}
	if lineStart {
		s.quotedCur = !s.cur.raw && quoted(c, s.f)
		if s.quotedCur {
			c = c[1:]
		}
	}
	s.count.Write(c)
	return nil
}

func appendMax(b, c []byte) []byte {
	if n := maxKey - len(b); n > 0 {
		b = append(b, c[:min(n, len(c))]...)
	}
	return b
}

func (s *scanner) startMessage(off int64, c []byte) {
	s.finishCur(off)
	s.msgs = append(s.msgs, msg{off: off})
	s.cur = &s.msgs[len(s.msgs)-1]
	s.count = wire.CRLFCounter{}
	s.pending = false
	s.inHeader = true
	s.rawUntil = -1
	s.hdr = appendMax(s.hdr[:0], c)
	if c[len(c)-1] == '\n' {
		s.cur.body = off + int64(len(c))
	} else {
		s.inFrom = true
	}
}

// endHeader is called at the empty line (at off) that ends the header.
func (s *scanner) endHeader(off int64) {
	s.inHeader = false
	m := s.cur
	m.klen = int64(len(s.hdr))
	m.key = keyOf(s.hdr)
	if s.uidlOf != nil {
		m.hdrUIDL = s.uidlOf(s.hdr)
	}
	cl := -1
	for line := range bytes.SplitSeq(s.hdr, []byte("\n")) {
		name, val, ok := bytes.Cut(line, []byte(":"))
		if !ok {
			continue
		}
		val = bytes.TrimSpace(val)
		switch {
		case bytes.EqualFold(name, []byte("Content-Length")):
			if n, err := strconv.Atoi(string(val)); err == nil && n >= 0 {
				cl = n
			}
		case bytes.EqualFold(name, []byte("X-UIDL")) && m.xuidl == "":
			m.xuidl = string(val)
		}
	}
	if cl < 0 {
		return
	}
	bodyStart := off + 1
	e := bodyStart + int64(cl)
	if e > s.size || !s.landsOnSeparator(bodyStart, e) {
		return
	}
	m.raw = true
	if e > bodyStart {
		s.rawUntil = e
	}
}

// landsOnSeparator reports whether a Content-Length body [b, e) ends at the
// end of a line, followed by the end of the file, or an empty line and
// then a From_ line or the end of the file.
func (s *scanner) landsOnSeparator(b, e int64) bool {
	var buf [7]byte
	if e > b {
		if _, err := s.r.ReadAt(buf[:1], e-1); err != nil || buf[0] != '\n' {
			return false
		}
	}
	if e == s.size {
		return true
	}
	n, _ := s.r.ReadAt(buf[:6], e)
	switch {
	case n >= 1 && buf[0] != '\n':
		return false
	case e+1 == s.size:
		return true
	default:
		return n == 6 && string(buf[1:6]) == "From "
	}
}

func (s *scanner) finishCur(at int64) {
	m := s.cur
	if m == nil {
		return
	}
	if s.inFrom {
		m.body = at
		s.inFrom = false
	}
	if s.inHeader {
		s.inHeader = false
		m.klen = int64(len(s.hdr))
		m.key = keyOf(s.hdr)
		if s.uidlOf != nil {
			m.hdrUIDL = s.uidlOf(s.hdr)
		}
	}
	m.end = at
	if s.pending {
		m.end = s.blankOff
	}
	m.next = at
	m.size = s.count.Size()
}

func (s *scanner) finish(size int64) { s.finishCur(size) }
