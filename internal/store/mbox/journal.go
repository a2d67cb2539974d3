package mbox

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// journal describes an in-place rewrite: the file's bytes from first on
// become the journal's content, and the file ends after it.
type journal struct {
	dev, ino uint64
	first    int64  // where the content goes
	origEnd  int64  // the file's size when the rewrite began
	length   int64  // octets of content
	tail     string // hex SHA-256 of the old bytes [origEnd-tailWindow, origEnd)
}

const journalMagic = "postoffice-mbox-journal 1"

func (j journal) newEnd() int64 { return j.first + j.length }

// tailWindow is how many old octets before origEnd the tail hash covers:
// they lie past newEnd, so the rewrite never writes them, and finding
// them unchanged shows that the file was not truncated yet.
func (j journal) tailWindow() int64 { return min(4096, j.origEnd-j.newEnd()) }

func (j journal) header() string {
	return fmt.Sprintf("%s %d %d %d %d %d %s\n", journalMagic, j.dev, j.ino, j.first, j.origEnd, j.length, j.tail)
}

func hashRange(f *os.File, off, n int64) (string, error) {
	h := sha256.New()
	if _, err := io.Copy(h, io.NewSectionReader(f, off, n)); err != nil {
		return "", err
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

// writeJournal writes j and its content (the readers, in order) to name in
// the mbox's directory, with a SHA-256 trailer over everything before it,
// and makes it durable (the file and the directory entry). An existing
// file of that name is replaced.
func (s *Store) writeJournal(b *box, name string, j journal, content ...io.Reader) error {
	b.dirOp(func() error { return ignoreNotExist(b.dir.Remove(name)) })
	fd, err := b.openFile(b.dir, name, unix.O_RDWR|unix.O_CREAT|unix.O_EXCL, 0o600)
	if err != nil {
		return fmt.Errorf("mbox: journal: %w", err)
	}
	jf := os.NewFile(uintptr(fd), name)
	defer jf.Close()
	h := sha256.New()
	w := bufio.NewWriterSize(io.MultiWriter(jf, h), 256<<10)
	w.WriteString(j.header())
	var n int64
	for _, r := range content {
		m, err := io.Copy(w, r)
		n += m
		if err != nil {
			return fmt.Errorf("mbox: journal: %w", err)
		}
	}
	if n != j.length {
		return fmt.Errorf("mbox: journal: copied %d octets, want %d", n, j.length)
	}
	if err := w.Flush(); err != nil {
		return fmt.Errorf("mbox: journal: %w", err)
	}
	if _, err := fmt.Fprintf(jf, "%x\n", h.Sum(nil)); err != nil {
		return fmt.Errorf("mbox: journal: %w", err)
	}
	if err := s.fsync(fd); err != nil {
		return err
	}
	return s.syncDir(b.dir)
}

func ignoreNotExist(err error) error {
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	return err
}

// readJournal opens the journal and checks it. It returns ok=false with no
// error when there is none, and a nil file for one that is incomplete (its
// trailer missing or wrong: the writer died before the journal was
// durable, so the mbox was never touched).
func (s *Store) readJournal(b *box) (*os.File, journal, bool, error) {
	var j journal
	var fd int
	err := b.do(func() (err error) {
		fd, _, err = b.dir.OpenFD(b.journalName(), unix.O_RDONLY, 0)
		return err
	})
	if errors.Is(err, fs.ErrNotExist) {
		return nil, j, false, nil
	}
	if err != nil {
		return nil, j, false, fmt.Errorf("mbox: journal: %w", err)
	}
	jf := os.NewFile(uintptr(fd), b.journalName())
	bad := func(why string) (*os.File, journal, bool, error) {
		jf.Close()
		s.log.Warn("mbox: incomplete journal discarded", "path", b.path, "why", why)
		return nil, j, true, nil
	}
	br := bufio.NewReaderSize(jf, 512)
	line, err := br.ReadString('\n')
	if err != nil {
		return bad("no header")
	}
	f := strings.Fields(strings.TrimPrefix(line, journalMagic))
	if !strings.HasPrefix(line, journalMagic+" ") || len(f) != 6 {
		return bad("bad header")
	}
	var nums [5]int64
	for i := range 5 {
		if nums[i], err = strconv.ParseInt(f[i], 10, 64); err != nil || nums[i] < 0 {
			return bad("bad header")
		}
	}
	j = journal{dev: uint64(nums[0]), ino: uint64(nums[1]), first: nums[2], origEnd: nums[3], length: nums[4], tail: f[5]}
	var st unix.Stat_t
	if unix.Fstat(fd, &st) != nil || st.Size != int64(len(line))+j.length+65 {
		return bad("size")
	}
	sum, err := hashRange(jf, 0, int64(len(line))+j.length)
	if err != nil {
		return bad(err.Error())
	}
	trailer := make([]byte, 65)
	if _, err := jf.ReadAt(trailer, int64(len(line))+j.length); err != nil || string(trailer) != sum+"\n" {
		return bad("checksum")
	}
	return jf, j, true, nil
}

// contentOf returns a reader of the journal's content.
func contentOf(jf *os.File, j journal) io.Reader {
	return io.NewSectionReader(jf, int64(len(j.header())), j.length)
}

// replay finishes a rewrite that was interrupted, with the mbox locks held
// (Open, Commit and Deliver call it first). The journal is the complete
// new content of the file from j.first: writing it there and truncating
// the file after it can be repeated any number of times with the same
// result, so a crash during replay is replayed again.
//
// Mail appended after the crash by another program (which may happen once
// the dead process's dotlock is stale) is kept: if the file was not
// truncated yet (its old bytes before origEnd are still there) what lies
// past origEnd is new and is first added to the journal; if it was, the
// content is already in place (checked) and what follows it is new.
func (s *Store) replay(b *box, f *os.File) error {
	jf, j, found, err := s.readJournal(b)
	if err != nil || !found {
		return err
	}
	if jf == nil {
		return b.dirOp(func() error { return ignoreNotExist(b.dir.Remove(b.journalName())) })
	}
	defer jf.Close()
	var st unix.Stat_t
	if err := unix.Fstat(int(f.Fd()), &st); err != nil {
		return fmt.Errorf("mbox: stat: %w", err)
	}
	if uint64(st.Dev) != j.dev || st.Ino != j.ino {
		aside := b.journalName() + ".orphan"
		s.log.Error("mbox: journal for another file kept aside", "path", b.path, "journal", aside)
		return b.dirOp(func() error { return b.dir.Rename(b.journalName(), b.dir, aside) })
	}
	s.log.Warn("mbox: replaying an interrupted commit", "path", b.path)
	untruncated := false
	if st.Size >= j.origEnd {
		w := j.tailWindow()
		if h, err := hashRange(f, j.origEnd-w, w); err == nil && h == j.tail {
			untruncated = true
		}
	}
	if !untruncated {
		if st.Size < j.newEnd() {
			return fmt.Errorf("mbox: %s is shorter than its commit journal says; journal kept, nothing changed", b.path)
		}
		want, _ := hashRange(jf, int64(len(j.header())), j.length)
		got, err := hashRange(f, j.first, j.length)
		if err != nil || got != want {
			return fmt.Errorf("mbox: %s does not match its commit journal; journal kept, nothing changed", b.path)
		}
		return s.finishJournal(b)
	}
	if st.Size > j.origEnd {
		extra := st.Size - j.origEnd
		nj := j
		nj.origEnd = st.Size
		nj.length += extra
		if nj.tail, err = hashRange(f, nj.origEnd-nj.tailWindow(), nj.tailWindow()); err != nil {
			return fmt.Errorf("mbox: %w", err)
		}
		tmp := b.journalName() + ".new"
		if err := s.writeJournal(b, tmp, nj, contentOf(jf, j), io.NewSectionReader(f, j.origEnd, extra)); err != nil {
			return err
		}
		if err := b.dirOp(func() error { return b.dir.Rename(tmp, b.dir, b.journalName()) }); err != nil {
			return fmt.Errorf("mbox: journal: %w", err)
		}
		if err := s.syncDir(b.dir); err != nil {
			return err
		}
		jf.Close()
		return s.replay(b, f)
	}
	return s.applyJournal(b, f, jf, j)
}

// applyJournal writes the content in place, truncates, and removes the
// journal.
func (s *Store) applyJournal(b *box, f *os.File, jf *os.File, j journal) error {
	w := io.NewOffsetWriter(f, j.first)
	if _, err := io.Copy(w, contentOf(jf, j)); err != nil {
		return fmt.Errorf("mbox: rewrite: %w", err)
	}
	s.hook("written")
	if err := s.fsync(int(f.Fd())); err != nil {
		return err
	}
	if err := f.Truncate(j.newEnd()); err != nil {
		return fmt.Errorf("mbox: truncate: %w", err)
	}
	if err := s.fsync(int(f.Fd())); err != nil {
		return err
	}
	s.hook("truncated")
	return s.finishJournal(b)
}

func (s *Store) finishJournal(b *box) error {
	if err := b.dirOp(func() error { return b.dir.Remove(b.journalName()) }); err != nil {
		return fmt.Errorf("mbox: journal: %w", err)
	}
	return s.syncDir(b.dir)
}

var _ = bytes.Equal
