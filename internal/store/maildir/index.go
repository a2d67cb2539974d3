package maildir

import (
	"bytes"
	"errors"
	"fmt"
	"hash/crc32"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"unsafe"
)

// The index file, postoffice-index, caches for each message key its UIDL,
// its wire size and where it was last seen, in first-seen order. Its format
// is lines of text:
//
//	postoffice-index 2
//	<uidl> <size> <new|cur|-> <key><info>
//	...
//	end <count> <crc32c of everything before this line, 8 hex digits>
//
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
	indexHeader   = "postoffice-index 2\n"
	indexHeaderV1 = "postoffice-index 1\n"
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// indexEntry is an index line: a message's key, where it was seen ("new",
// "cur", or "" when not known: version 1), its info part, UIDL and size.
type indexEntry = entry

// errCorrupt marks an index file that must be rebuilt.
var errCorrupt = errors.New("maildir: index corrupt")

// readIndex reads the index at path. A missing file is (nil, nil).
func readIndex(path string) ([]indexEntry, error) {
	entries, _, err := readIndexSum(path)
	return entries, err
}

// readIndexSum reads the index at path and also returns its checksum (the
// one in its trailer), which the lock file's directory stamps refer to. A
// missing file is (nil, 0, nil).
func readIndexSum(path string) ([]indexEntry, uint32, error) {
	data, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, 0, nil
	}
	if err != nil {
		return nil, 0, fmt.Errorf("maildir: index: %w", err)
	}
	return parseIndexSum(data)
}

func parseIndex(data []byte) ([]indexEntry, error) {
	entries, _, err := parseIndexSum(data)
	return entries, err
}

func parseIndexSum(data []byte) ([]indexEntry, uint32, error) {
	v1 := bytes.HasPrefix(data, []byte(indexHeaderV1))
	if !v1 && !bytes.HasPrefix(data, []byte(indexHeader)) {
		return nil, 0, fmt.Errorf("%w: bad header", errCorrupt)
	}
	entries, sum, err := parseIndexBody(data, v1)
	if err != nil {
		return nil, 0, err
	}
	return entries, sum, nil
}

func parseIndexBody(data []byte, v1 bool) ([]indexEntry, uint32, error) {
	if len(data) == 0 || data[len(data)-1] != '\n' {
		return nil, 0, fmt.Errorf("%w: truncated", errCorrupt)
	}
	t := bytes.LastIndexByte(data[:len(data)-1], '\n') + 1
	trailer := string(data[t : len(data)-1])
	f := strings.Fields(trailer)
	if len(f) != 3 || f[0] != "end" {
		return nil, 0, fmt.Errorf("%w: no trailer", errCorrupt)
	}
	count, err := strconv.Atoi(f[1])
	if err != nil || count < 0 {
		return nil, 0, fmt.Errorf("%w: bad count", errCorrupt)
	}
	sum, err := strconv.ParseUint(f[2], 16, 32)
	if err != nil || uint32(sum) != crc32.Checksum(data[:t], castagnoli) || t < len(indexHeader) {
		return nil, 0, fmt.Errorf("%w: checksum mismatch", errCorrupt)
	}
	// One string for the whole body, sharing data's memory (nothing writes
	// data after this); keys and UIDLs are substrings of it.
	body := unsafe.String(&data[len(indexHeader)], t-len(indexHeader))
	if t == len(indexHeader) {
		body = ""
	}
	entries := make([]indexEntry, 0, count)
	for body != "" {
		nl := strings.IndexByte(body, '\n')
		line := body[:nl]
		body = body[nl+1:]
		sp1 := strings.IndexByte(line, ' ')
		if sp1 <= 0 {
			return nil, 0, fmt.Errorf("%w: line %d", errCorrupt, len(entries)+2)
		}
		sp2 := strings.IndexByte(line[sp1+1:], ' ')
		if sp2 <= 0 {
			return nil, 0, fmt.Errorf("%w: line %d", errCorrupt, len(entries)+2)
		}
		sp2 += sp1 + 1
		size, ok := atoi64(line[sp1+1 : sp2])
		name := line[sp2+1:]
		var sub string
		if !v1 {
			// "<sub> <name>": sub is one of three words.
			switch {
			case strings.HasPrefix(name, "new "):
				sub, name = "new", name[4:]
			case strings.HasPrefix(name, "cur "):
				sub, name = "cur", name[4:]
			case strings.HasPrefix(name, "- "):
				name = name[2:]
			default:
				ok = false
			}
		}
		key, info := name, ""
		if i := strings.IndexByte(name, infoSep); i >= 0 {
			if v1 {
				ok = false // a version 1 key never has one
			}
			key, info = name[:i], name[i:]
		}
		if !ok || key == "" || !validUIDL(line[:sp1]) {
			return nil, 0, fmt.Errorf("%w: line %d", errCorrupt, len(entries)+2)
		}
		entries = append(entries, indexEntry{key: key, sub: sub, info: info, uidl: line[:sp1], size: size})
	}
	if len(entries) != count {
		return nil, 0, fmt.Errorf("%w: %d entries, trailer says %d", errCorrupt, len(entries), count)
	}
	return entries, uint32(sum), nil
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

// writeIndex replaces the index in dir atomically: it writes a temporary
// file, fsyncs it, renames it over the index and fsyncs dir. The caller
// holds the maildrop lock, so the temporary name needs no uniqueness.
func (s *Store) writeIndex(dir string, entries []indexEntry) error {
	_, err := s.writeIndexSum(dir, entries)
	return err
}

// writeIndexSum is writeIndex, and returns the checksum of what it wrote.
func (s *Store) writeIndexSum(dir string, entries []indexEntry) (uint32, error) {
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
		b.WriteByte(' ')
		b.WriteString(e.key)
		b.WriteString(e.info)
		b.WriteByte('\n')
	}
	sum := crc32.Checksum(b.Bytes(), castagnoli)
	fmt.Fprintf(&b, "end %d %08x\n", len(entries), sum)

	tmp := filepath.Join(dir, indexName+".tmp")
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
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
		err = os.Rename(tmp, filepath.Join(dir, indexName))
	}
	if err != nil {
		os.Remove(tmp)
		return 0, fmt.Errorf("maildir: index: %w", err)
	}
	return sum, s.syncDir(dir)
}
