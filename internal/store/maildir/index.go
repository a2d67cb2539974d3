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

// The index file, postoffice-index, caches for each message key its UIDL and
// wire size, in first-seen order. Its format is lines of text:
//
//	postoffice-index 1
//	<uidl> <size> <key>
//	...
//	end <count> <crc32c of everything before this line, 8 hex digits>
//
// A UIDL never contains a space (RFC 1939 §7: 0x21-0x7E), so the key is the
// rest of the line and may. Keys never contain LF or ':'. A file that does
// not parse, has the wrong count or checksum, or repeats a key, is
// corrupt: Open logs it and rebuilds the index from the directories, which
// gives the same UIDLs because they are derived from the keys.
const indexHeader = "postoffice-index 1\n"

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

type indexEntry struct {
	key  string
	uidl string
	size int64
}

// errCorrupt marks an index file that must be rebuilt.
var errCorrupt = errors.New("maildir: index corrupt")

// readIndex reads the index at path. A missing file is (nil, nil).
func readIndex(path string) ([]indexEntry, error) {
	data, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("maildir: index: %w", err)
	}
	return parseIndex(data)
}

func parseIndex(data []byte) ([]indexEntry, error) {
	if !bytes.HasPrefix(data, []byte(indexHeader)) {
		return nil, fmt.Errorf("%w: bad header", errCorrupt)
	}
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
	if err != nil || uint32(sum) != crc32.Checksum(data[:t], castagnoli) {
		return nil, fmt.Errorf("%w: checksum mismatch", errCorrupt)
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
			return nil, fmt.Errorf("%w: line %d", errCorrupt, len(entries)+2)
		}
		sp2 := strings.IndexByte(line[sp1+1:], ' ')
		if sp2 <= 0 {
			return nil, fmt.Errorf("%w: line %d", errCorrupt, len(entries)+2)
		}
		sp2 += sp1 + 1
		size, ok := atoi64(line[sp1+1 : sp2])
		key := line[sp2+1:]
		if !ok || key == "" || !validUIDL(line[:sp1]) {
			return nil, fmt.Errorf("%w: line %d", errCorrupt, len(entries)+2)
		}
		entries = append(entries, indexEntry{key: key, uidl: line[:sp1], size: size})
	}
	if len(entries) != count {
		return nil, fmt.Errorf("%w: %d entries, trailer says %d", errCorrupt, len(entries), count)
	}
	return entries, nil
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
	var b bytes.Buffer
	b.Grow(len(indexHeader) + len(entries)*100)
	b.WriteString(indexHeader)
	var num [20]byte
	for _, e := range entries {
		b.WriteString(e.uidl)
		b.WriteByte(' ')
		b.Write(strconv.AppendInt(num[:0], e.size, 10))
		b.WriteByte(' ')
		b.WriteString(e.key)
		b.WriteByte('\n')
	}
	fmt.Fprintf(&b, "end %d %08x\n", len(entries), crc32.Checksum(b.Bytes(), castagnoli))

	tmp := filepath.Join(dir, indexName+".tmp")
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return fmt.Errorf("maildir: index: %w", err)
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
		return fmt.Errorf("maildir: index: %w", err)
	}
	return s.syncDir(dir)
}
