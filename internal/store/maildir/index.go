package maildir

import (
	"bytes"
	"errors"
	"fmt"
	"hash/crc32"
	"io/fs"
	"math/bits"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"unsafe"

	"github.com/postoffice-mail/postoffice/internal/store"
	"github.com/postoffice-mail/postoffice/internal/store/safefs"
)

// maxStuff is the most lines starting with "." a message in wire form may
// have: the index keeps where each one starts, for the stuffing dot to be
// sent there (msgFile).
const maxStuff = 16

// The index file, postoffice-index, caches for each message key its UIDL,
// its wire size and where it was last seen, in first-seen order. Its format
// is lines of text:
//
//	postoffice-index 3
//	<uidl> <size> <new|cur|->[+[<offset>,...]] <key><info>
//	...
//	end <count> <crc32c of everything before this line, 8 hex digits>
//
// A "+" after the location marks a file that is the message's wire form
// (CRLF line ends and a final CRLF), which a session sends as it is
// (msgFile.SendTo); it is set when the file was read whole to size it. The
// "+" is followed by the offsets of the lines that start with "." (at most
// 16, decimal, separated by commas), where the stuffing dot goes. Version
// 2 has no marks and is still read, as is version 1.
// A UIDL never contains a space (RFC 1939 §7: 0x21-0x7E), so the file name
// is the rest of the line and may. Keys never contain LF or ':', so the key
// is the file name up to its first ':' and the info part the rest. "-" is a
// message whose directory is not known. Version 1 (written before the
// location was kept) has lines "<uidl> <size> <key>" and is still read; the
// next Open rewrites it as version 2. A file that does not parse, has the
// wrong count or checksum, or repeats a key, is corrupt: Open logs it and
// rebuilds the index from the directories, which gives the same UIDLs
// because they are derived from the keys.
const (
	indexHeader   = "postoffice-index 3\n"
	indexHeaderV2 = "postoffice-index 2\n"
	indexHeaderV1 = "postoffice-index 1\n"
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// indexEntry is an index line: a message's key, where it was seen ("new",
// "cur", or "" when not known: version 1), its info part, UIDL and size.
type indexEntry = entry

// errCorrupt marks an index file that must be rebuilt.
var errCorrupt = errors.New("maildir: index corrupt")

// index is a parsed index file. A warm Open of a big maildrop is mostly
// reading and parsing it, so it keeps per message only what the snapshot
// hands out, the store.Message, and where the message's line starts:
// nothing else that holds a pointer, for the garbage collector to scan and
// the write barrier to track, and 24+8 octets a message instead of the 72
// of an entry and the 24 of the store.Message made from it. Where a
// message's file is (key, info part, directory) is read from its line when
// it is needed (entry).
//
// The file's bytes and the line offsets of a big index are in a buffer
// that the next session reuses (indexBuf): allocating them afresh, most of
// the cost was the kernel handing the process new zeroed pages. The UIDLs
// handed out are then copied out of it, so that nothing outside the index
// refers to the buffer; release gives it back.
type index struct {
	body    string          // the lines, sharing the file's bytes
	lines   []int           // where each message's line starts in body
	msgs    []store.Message // UIDL and size of each message, in index order
	v1      bool            // version 1: no locations
	located bool            // every line says where its file is
	sum     uint32          // the checksum in the trailer
	buf     *indexBuf       // body's and lines' memory, if it is to be reused
}

// entry returns message i of x as an entry.
func (x *index) entry(i int) entry {
	// Every line was checked by parseIndexBody.
	uidl, size, sub, wire, stuff, name, _, _ := indexLine(x.body[x.lines[i]:], x.v1)
	key, info := name, ""
	if j := strings.IndexByte(name, infoSep); j >= 0 {
		key, info = name[:j], name[j:]
	}
	return entry{key: key, sub: sub, info: info, uidl: uidl, size: size, wire: wire, stuff: stuff}
}

// entries returns every message of x as an entry.
func (x *index) entries() []entry {
	if x == nil {
		return nil
	}
	out := make([]entry, len(x.msgs))
	for i := range out {
		out[i] = x.entry(i)
	}
	return out
}

// readIndex reads the index at path. A missing file is (nil, nil).
func readIndex(path string) ([]indexEntry, error) {
	d, err := safefs.OpenTop(filepath.Dir(path))
	if err != nil {
		return nil, err
	}
	defer d.Close()
	x, err := readIndexFile(d)
	return x.entries(), err
}

// readIndexFile reads and parses the index in the Maildir d. A missing
// file is (nil, nil). The index may hold a reusable buffer: once nothing
// uses its entries any more, release gives it back.
func readIndexFile(d *safefs.Dir) (*index, error) {
	var buf *indexBuf
	data, err := readFile(d, indexName, func(size int64) []byte {
		buf = getIndexBuf(size)
		if buf == nil {
			return make([]byte, size)
		}
		return buf.data[:size]
	})
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("maildir: index: %w", err)
	}
	return parseIndexBuf(data, buf)
}

// release gives x's buffer back for another session to reuse. Nothing may
// use x, or an entry made from it, afterwards; the UIDLs in x.msgs stay
// valid.
func (x *index) release() {
	if x.buf == nil {
		return
	}
	b := x.buf
	*x = index{}
	putIndexBuf(b)
}

func parseIndex(data []byte) ([]indexEntry, error) {
	x, err := parseIndexBuf(data, nil)
	return x.entries(), err
}

// parseIndexBuf parses an index file's bytes, which it keeps: the caller
// must not modify data afterwards. data is in buf if buf is not nil; the
// UIDLs in msgs are then copied out of it.
func parseIndexBuf(data []byte, buf *indexBuf) (*index, error) {
	// The three headers have the same length: the body starts at
	// len(indexHeader) in each.
	v1 := bytes.HasPrefix(data, []byte(indexHeaderV1))
	if !v1 && !bytes.HasPrefix(data, []byte(indexHeader)) && !bytes.HasPrefix(data, []byte(indexHeaderV2)) {
		return nil, fmt.Errorf("%w: bad header", errCorrupt)
	}
	return parseIndexBody(data, v1, buf)
}

func parseIndexBody(data []byte, v1 bool, buf *indexBuf) (*index, error) {
	if len(data) == 0 || data[len(data)-1] != '\n' {
		return nil, fmt.Errorf("%w: truncated", errCorrupt)
	}
	t := bytes.LastIndexByte(data[:len(data)-1], '\n') + 1
	trailer := string(data[t : len(data)-1])
	f := strings.Fields(trailer)
	if len(f) != 3 || f[0] != "end" {
		return nil, fmt.Errorf("%w: no trailer", errCorrupt)
	}
	count, err := strconv.Atoi(f[1])
	if err != nil || count < 0 {
		return nil, fmt.Errorf("%w: bad count", errCorrupt)
	}
	sum, err := strconv.ParseUint(f[2], 16, 32)
	if err != nil || uint32(sum) != crc32.Checksum(data[:t], castagnoli) || t < len(indexHeader) {
		return nil, fmt.Errorf("%w: checksum mismatch", errCorrupt)
	}
	// One string for the whole body, sharing data's memory (nothing writes
	// data after this); keys and UIDLs are substrings of it.
	body := ""
	if t > len(indexHeader) {
		body = unsafe.String(&data[len(indexHeader)], t-len(indexHeader))
	}
	// count is only a claim until the lines are counted: allocate for what
	// the body can hold (a line is at least 6 octets: "u 0 k\n").
	n := min(count, len(body)/6)
	x := &index{body: body, v1: v1, located: !v1, sum: uint32(sum), msgs: make([]store.Message, 0, n)}
	if buf != nil {
		x.lines = buf.lines[:0]
	}
	if cap(x.lines) < n {
		x.lines = make([]int, 0, n)
	}
	uidls := 0 // octets of all UIDLs
	for off := 0; off < len(body); {
		uidl, size, sub, _, _, _, ln, ok := indexLine(body[off:], v1)
		if !ok {
			return nil, fmt.Errorf("%w: line %d", errCorrupt, len(x.msgs)+2)
		}
		if sub == "" {
			x.located = false
		}
		x.lines = append(x.lines, off)
		x.msgs = append(x.msgs, store.Message{UID: uidl, Size: size})
		uidls += len(uidl)
		off += ln
	}
	if len(x.msgs) != count {
		return nil, fmt.Errorf("%w: %d entries, trailer says %d", errCorrupt, len(x.msgs), count)
	}
	if buf != nil {
		// The UIDLs go to the client after the buffer is reused: copy them,
		// all into one string.
		u := make([]byte, 0, uidls)
		for _, m := range x.msgs {
			u = append(u, m.UID...)
		}
		us := unsafe.String(unsafe.SliceData(u), len(u))
		for i := range x.msgs {
			k := len(x.msgs[i].UID)
			x.msgs[i].UID, us = us[:k], us[k:]
		}
		buf.lines = x.lines[:0]
		x.buf = buf
	}
	return x, nil
}

// indexLine parses the index line at the start of s: "<uidl> <size>
// <sub>[+] <key><info>\n", or "<uidl> <size> <key>\n" in version 1. It
// returns its fields, with wire for the "+", stuff for the offsets after
// it, and name the key and info part together, and the length of the
// line with its newline. ok is false for a line that is not well formed: a
// UIDL that is not 1-70 octets of 0x21-0x7E (RFC 1939 §7), a size that is
// not 1-18 digits, an unknown sub, no newline, an empty key, or an info
// part in version 1. It reads each octet of the UIDL and the size once and
// finds the newline with one vectorized search: this loop is most of a warm
// Open of a big maildrop.
func indexLine(s string, v1 bool) (uidl string, size int64, sub string, wire bool, stuff, name string, n int, ok bool) {
	i := 0
	for i < len(s) && s[i] != ' ' {
		if c := s[i]; c < 0x21 || c > 0x7e {
			return
		}
		i++
	}
	if i == 0 || i > 70 || i == len(s) {
		return
	}
	uidl = s[:i]
	i++
	j := i
	for j < len(s) && s[j] >= '0' && s[j] <= '9' {
		size = size*10 + int64(s[j]-'0')
		j++
	}
	if j == i || j-i > 18 || j == len(s) || s[j] != ' ' {
		return
	}
	i = j + 1
	if !v1 {
		// "<sub>[+] <name>": sub is one of three words.
		switch rest := s[i:]; {
		case strings.HasPrefix(rest, "new"):
			sub, i = "new", i+3
		case strings.HasPrefix(rest, "cur"):
			sub, i = "cur", i+3
		case strings.HasPrefix(rest, "-"):
			i++
		default:
			return
		}
		if i < len(s) && s[i] == '+' {
			wire = true
			i++
			j := i
			for j < len(s) && (s[j] >= '0' && s[j] <= '9' || s[j] == ',') {
				j++
			}
			stuff, i = s[i:j], j
			if !validStuff(stuff, size) {
				return
			}
		}
		if i == len(s) || s[i] != ' ' {
			return
		}
		i++
	}
	nl := strings.IndexByte(s[i:], '\n')
	if nl < 0 {
		return
	}
	name = s[i : i+nl]
	if name == "" || name[0] == infoSep || v1 && strings.IndexByte(name, infoSep) >= 0 {
		return // no key; or an info part in version 1, whose keys never have one
	}
	return uidl, size, sub, wire, stuff, name, i + nl + 1, true
}

// validStuff reports whether s is a list of offsets of lines to stuff as
// the index keeps them: at most maxStuff increasing offsets below size,
// decimal, separated by commas; or empty.
func validStuff(s string, size int64) bool {
	if s == "" {
		return true
	}
	prev, k := int64(-1), 0
	for f := range strings.SplitSeq(s, ",") {
		v, ok := atoi64(f)
		if !ok || v <= prev || v >= size || k == maxStuff {
			return false
		}
		prev, k = v, k+1
	}
	return true
}

// indexBuf is the memory of a big index file: its bytes and its line
// offsets, reused from session to session. The buffers are pooled by size
// class, powers of two from minPooledIndex, so that a small maildrop never
// holds a big maildrop's buffer; smaller files are not worth it.
type indexBuf struct {
	data  []byte // cap is the size class
	lines []int
}

const minPooledIndex = 256 << 10

var indexBufs [24]sync.Pool // *indexBuf of cap(data) minPooledIndex<<i

// indexBufClass returns the size class of a file of size octets, or -1.
func indexBufClass(size int64) int {
	if size < minPooledIndex {
		return -1
	}
	c := bits.Len64(uint64(size-1)) - bits.Len64(minPooledIndex-1)
	if c >= len(indexBufs) {
		return -1
	}
	return c
}

// getIndexBuf returns a buffer for a file of size octets, or nil if a file
// of that size is not worth one.
func getIndexBuf(size int64) *indexBuf {
	c := indexBufClass(size)
	if c < 0 {
		return nil
	}
	if b, ok := indexBufs[c].Get().(*indexBuf); ok {
		return b
	}
	return &indexBuf{data: make([]byte, minPooledIndex<<c)}
}

func putIndexBuf(b *indexBuf) {
	if c := indexBufClass(int64(cap(b.data))); c >= 0 && cap(b.data) == minPooledIndex<<c {
		indexBufs[c].Put(b)
	}
}

// atoi64 parses a non-negative decimal without allocating.
func atoi64(s string) (int64, bool) {
	if s == "" || len(s) > 18 {
		return 0, false
	}
	var n int64
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c < '0' || c > '9' {
			return 0, false
		}
		n = n*10 + int64(c-'0')
	}
	return n, true
}

// validUIDL reports whether s is 1-70 octets of 0x21-0x7E (RFC 1939 §7).
func validUIDL(s string) bool {
	if len(s) < 1 || len(s) > 70 {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < 0x21 || s[i] > 0x7e {
			return false
		}
	}
	return true
}

// writeIndex replaces the index in the Maildir dir (a path, for tests).
func (s *Store) writeIndex(dir string, entries []indexEntry) error {
	d, err := safefs.OpenTop(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	_, err = s.writeIndexSum(d, entries)
	return err
}

// writeIndexSum replaces the index in the Maildir d atomically: it writes
// a temporary file, fsyncs it, renames it over the index and fsyncs d, and
// returns the checksum of what it wrote. The caller holds the maildrop
// lock, so the temporary name needs no uniqueness; whatever has that name
// (a file left by a crash, or a link planted to have a file elsewhere
// truncated) is removed first, and the file is made with O_EXCL, which
// never follows a link.
func (s *Store) writeIndexSum(d *safefs.Dir, entries []indexEntry) (uint32, error) {
	var b bytes.Buffer
	b.Grow(len(indexHeader) + len(entries)*100)
	b.WriteString(indexHeader)
	var num [20]byte
	for _, e := range entries {
		b.WriteString(e.uidl)
		b.WriteByte(' ')
		b.Write(strconv.AppendInt(num[:0], e.size, 10))
		b.WriteByte(' ')
		switch e.sub {
		case "new", "cur":
			b.WriteString(e.sub)
		default:
			b.WriteByte('-')
		}
		if e.wire {
			b.WriteByte('+')
			b.WriteString(e.stuff)
		}
		b.WriteByte(' ')
		b.WriteString(e.key)
		b.WriteString(e.info)
		b.WriteByte('\n')
	}
	sum := crc32.Checksum(b.Bytes(), castagnoli)
	fmt.Fprintf(&b, "end %d %08x\n", len(entries), sum)

	tmp := indexName + ".tmp"
	if err := d.Remove(tmp); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return 0, fmt.Errorf("maildir: index: %w", err)
	}
	f, err := d.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return 0, fmt.Errorf("maildir: index: %w", err)
	}
	_, err = f.Write(b.Bytes())
	if err == nil && !s.noSync {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = d.Rename(tmp, d, indexName)
	}
	if err != nil {
		d.Remove(tmp)
		return 0, fmt.Errorf("maildir: index: %w", err)
	}
	return sum, s.syncDir(d)
}
