package mbox

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"

	"golang.org/x/sys/unix"

	"github.com/postoffice-mail/postoffice/internal/store"
)

// errChanged is wrapped when the mbox no longer holds the snapshot's
// messages where it saw them (another program rewrote or replaced it).
var errChanged = errors.New("mbox: changed by another program since the session began")

// Open locks user's mbox for a POP3 session and returns its snapshot. The
// session's own lock (flock on the lock file) lasts until Close; the locks
// other mbox programs honour (fcntl, dotlock) are held only while the
// snapshot is read and the index written, and again during Commit.
func (s *Store) Open(ctx context.Context, user string) (store.Maildrop, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	b, err := s.openBox(user)
	if err != nil {
		return nil, err
	}
	md := &maildrop{s: s, b: b, lockFD: -1}
	ok := false
	defer func() {
		if !ok {
			md.Close()
		}
	}()
	if md.lockFD, err = b.openFile(b.idir, b.lockName(), unix.O_RDWR, 0o600); err != nil {
		return nil, fmt.Errorf("mbox: lock file: %w", err)
	}
	if err := sessionLock(md.lockFD); err != nil {
		return nil, err
	}
	fd, err := b.openFile(b.dir, b.name, unix.O_RDWR, 0o600)
	if err != nil {
		return nil, fmt.Errorf("mbox: open %s: %w", b.path, err)
	}
	md.f = os.NewFile(uintptr(fd), b.path)
	l, err := s.lock(ctx, b, fd)
	if err != nil {
		return nil, err
	}
	err = s.replay(b, md.f)
	if err == nil {
		err = md.snapshot()
	}
	l.unlock()
	if err != nil {
		return nil, err
	}
	ok = true
	return md, nil
}

type maildrop struct {
	s      *Store
	b      *box
	lockFD int
	f      *os.File
	x      *index
	msgs   []msg
	infos  []store.Message
	end    int64 // the file's size at the snapshot
	done   bool  // committed: the offsets are stale
	// prior are the messages the index listed before this snapshot
	// recorded its UIDLs (none without an index): ImportUIDLs tells by
	// them which UIDLs a client may have seen.
	prior []msg
}

func mtimeOf(st *unix.Stat_t) int64 { return st.Mtim.Nano() }

// snapshot reads the mbox (or as little of it as the index allows) and
// records the UIDLs before it returns.
func (md *maildrop) snapshot() error {
	s, b, f := md.s, md.b, md.f
	var st unix.Stat_t
	if err := unix.Fstat(int(f.Fd()), &st); err != nil {
		return fmt.Errorf("mbox: stat: %w", err)
	}
	x, err := s.readIndex(b)
	if err != nil {
		return err
	}
	fresh := x == nil
	if !fresh {
		md.prior = x.msgs
	}
	if fresh {
		x = &index{stamp: newStamp()}
	}
	same := x.dev == uint64(st.Dev) && x.ino == st.Ino
	var msgs []msg
	switch {
	case same && x.end == st.Size && x.mtime == mtimeOf(&st):
		msgs = x.msgs
	case same && x.end > 0 && st.Size > x.end && md.appendedOnly(x):
		newm, err := scan(f, x.end, st.Size, s.format, s.uidlOf)
		if err != nil {
			return fmt.Errorf("mbox: %s: %w", b.path, err)
		}
		used := map[string]bool{}
		for _, m := range x.msgs {
			used[m.uid] = true
		}
		for i := range newm {
			newm[i].uid = s.headerUID(b, &newm[i], used)
			if newm[i].uid == "" {
				newm[i].uid = nextFree(x, used)
			}
		}
		msgs = append(slices.Clip(x.msgs), newm...)
	default:
		all, err := scan(f, 0, st.Size, s.format, s.uidlOf)
		if err != nil {
			return fmt.Errorf("mbox: %s: %w", b.path, err)
		}
		assignUIDs(x, all, fresh, s, b)
		msgs = all
		if x.ino != 0 {
			s.log.Info("mbox: rescanned", "path", b.path, "messages", len(all))
		}
	}
	changed := !(same && x.end == st.Size && x.mtime == mtimeOf(&st))
	x.dev, x.ino, x.end, x.mtime, x.msgs = uint64(st.Dev), st.Ino, st.Size, mtimeOf(&st), msgs
	if changed || fresh {
		if err := s.writeIndex(b, x); err != nil {
			return err
		}
	}
	md.x, md.msgs, md.end = x, msgs, st.Size
	md.infos = make([]store.Message, len(msgs))
	for i, m := range msgs {
		md.infos[i] = store.Message{Size: m.size, UID: m.uid}
	}
	return nil
}

// appendedOnly reports whether the file grew only by appended mail since
// the index was written: its last message is still where it was, and a
// From_ line follows the empty line that ends the indexed part.
func (md *maildrop) appendedOnly(x *index) bool {
	var tail [7]byte
	if n, _ := md.f.ReadAt(tail[:], x.end-2); n != 7 || string(tail[:]) != "\n\nFrom " {
		return false
	}
	if len(x.msgs) == 0 {
		return false
	}
	return md.check(x.msgs[len(x.msgs)-1]) == nil
}

// nextFree returns a new UIDL that is not in used.
func nextFree(x *index, used map[string]bool) string {
	for {
		u := x.newUID()
		if !used[u] {
			used[u] = true
			return u
		}
	}
}

// assignUIDs gives the messages of a full scan their UIDLs: a message the
// index knew (same key: From_ line and header; equal keys matched in
// order) keeps its UIDL, so a rewrite by another program (mutt) changes
// none. When there was no index at all, a valid (RFC 1939 §7) X-UIDL
// header (qpopper, UW ipop3d) that no other message has is kept, so
// clients of the old server do not download everything again; it is not
// honoured for mail that arrives later, whose headers a sender wrote. The
// rest get new ones from the counter. With a configured UIDL scheme
// (Options.UIDLFormat, Options.Popa3dUIDLs) the messages the index does not
// know get the scheme's UIDL instead of the X-UIDL header, as Dovecot and
// popa3d ignore X-UIDL.
func assignUIDs(x *index, all []msg, fresh bool, s *Store, b *box) {
	old := map[string][]string{}
	for _, m := range x.msgs {
		old[m.key] = append(old[m.key], m.uid)
	}
	used := map[string]bool{}
	xcount := map[string]int{}
	if fresh {
		for _, m := range all {
			if m.xuidl != "" {
				xcount[m.xuidl]++
			}
		}
	}
	for i := range all {
		m := &all[i]
		if q := old[m.key]; len(q) > 0 {
			m.uid, old[m.key] = q[0], q[1:]
			used[m.uid] = true
		}
	}
	for i := range all {
		m := &all[i]
		if m.uid != "" {
			continue
		}
		if s.uidlOf != nil {
			m.uid = s.headerUID(b, m, used)
			continue
		}
		if fresh && m.xuidl != "" {
			if err := validUID(m.xuidl); err == nil && xcount[m.xuidl] == 1 && !used[m.xuidl] {
				m.uid = m.xuidl
				used[m.uid] = true
				continue
			} else {
				s.log.Warn("mbox: X-UIDL not kept", "path", b.path, "message", i+1, "err", err, "copies", xcount[m.xuidl])
			}
		}
	}
	for i := range all {
		if all[i].uid == "" {
			all[i].uid = nextFree(x, used)
		}
	}
}

func (md *maildrop) Messages() []store.Message { return md.infos }

// check reports whether m is still where the snapshot saw it: the mbox
// file is the same (device and inode, by its name), not shorter than m,
// and its From_ line and header hash to m's key.
func (md *maildrop) check(m msg) error {
	st, err := md.b.dir.Lstat(md.b.name)
	if err != nil {
		return fmt.Errorf("%w: %v", errChanged, err)
	}
	var fst unix.Stat_t
	if err := unix.Fstat(int(md.f.Fd()), &fst); err != nil {
		return fmt.Errorf("mbox: stat: %w", err)
	}
	if st.Dev != fst.Dev || st.Ino != fst.Ino {
		return fmt.Errorf("%w: the file was replaced", errChanged)
	}
	if fst.Size < m.next {
		return fmt.Errorf("%w: the file shrank", errChanged)
	}
	buf := make([]byte, m.klen)
	if _, err := md.f.ReadAt(buf, m.off); err != nil {
		return fmt.Errorf("mbox: read: %w", err)
	}
	if keyOf(buf) != m.key {
		return fmt.Errorf("%w: message moved", errChanged)
	}
	return nil
}

// Open returns message i, un-escaped (see Format). A message that is no
// longer where the snapshot saw it (another program rewrote the mbox) is
// store.ErrNoMessage.
func (md *maildrop) Open(ctx context.Context, i int) (io.ReadCloser, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if i < 0 || i >= len(md.msgs) {
		return nil, fmt.Errorf("mbox: no message %d of %d", i+1, len(md.msgs))
	}
	if md.done || md.f == nil {
		return nil, fmt.Errorf("mbox: session committed or closed")
	}
	m := md.msgs[i]
	if err := md.check(m); err != nil {
		md.s.log.Warn("mbox: message changed under the session", "path", md.b.path, "message", i+1, "err", err)
		return nil, fmt.Errorf("%w (%w)", store.ErrNoMessage, err)
	}
	sr := io.NewSectionReader(md.f, m.body, m.end-m.body)
	if m.raw {
		return io.NopCloser(sr), nil
	}
	return io.NopCloser(&unquoter{br: bufio.NewReaderSize(sr, 64<<10), f: md.s.format, atStart: true}), nil
}

// unquoter removes the From_ quoting of format f: one '>' from each line
// that quoted(line) accepts.
type unquoter struct {
	br      *bufio.Reader
	f       Format
	buf     []byte
	atStart bool
	err     error
}

func (u *unquoter) Read(p []byte) (int, error) {
	for len(u.buf) == 0 {
		if u.err != nil {
			return 0, u.err
		}
		line, err := u.br.ReadSlice('\n')
		if err == bufio.ErrBufferFull {
			err = nil
		}
		if len(line) > 0 {
			start := u.atStart
			u.atStart = line[len(line)-1] == '\n'
			if start && quoted(line, u.f) {
				line = line[1:]
			}
			u.buf = line
		}
		u.err = err
	}
	n := copy(p, u.buf)
	u.buf = u.buf[n:]
	return n, nil
}

// Commit removes the given messages (RFC 1939 §6, the UPDATE state) under
// the fcntl lock and the dotlock. It first checks that every message from
// the first deleted one on is still where the snapshot saw it; if another
// program rewrote or replaced the mbox, Commit deletes nothing and returns
// an error. Then it rewrites the file in place through a journal (see the
// package doc): the new content from the first deleted message on (the
// kept messages, then any mail appended during the session) is written to
// the journal and made durable, then copied over the file, which is
// truncated and fsynced; the journal is removed last. A crash at any point
// leaves either the old mbox or, once the journal is durable, the new one
// after the next Open or Deliver replays it.
func (md *maildrop) Commit(ctx context.Context, deleted []int) error {
	if md.done || md.f == nil {
		return fmt.Errorf("mbox: session committed or closed")
	}
	del := map[int]bool{}
	for _, i := range deleted {
		if i < 0 || i >= len(md.msgs) {
			return fmt.Errorf("mbox: no message %d of %d", i+1, len(md.msgs))
		}
		del[i] = true
	}
	if len(del) == 0 {
		return nil
	}
	s, b, f := md.s, md.b, md.f
	l, err := s.lock(ctx, b, int(f.Fd()))
	if err != nil {
		return err
	}
	defer l.unlock()
	if err := s.replay(b, f); err != nil {
		return err
	}
	first := len(md.msgs)
	for i := range del {
		first = min(first, i)
	}
	for _, m := range md.msgs[first:] {
		if err := md.check(m); err != nil {
			return fmt.Errorf("%w; nothing deleted", err)
		}
	}
	var st unix.Stat_t
	if err := unix.Fstat(int(f.Fd()), &st); err != nil {
		return fmt.Errorf("mbox: stat: %w", err)
	}
	if st.Size < md.end {
		return fmt.Errorf("%w: the file shrank; nothing deleted", errChanged)
	}
	j := journal{dev: uint64(st.Dev), ino: st.Ino, first: md.msgs[first].off, origEnd: st.Size}
	var parts []io.Reader
	var kept []msg
	shift := int64(0)
	for i, m := range md.msgs {
		if i < first {
			kept = append(kept, m)
			continue
		}
		if del[i] {
			shift += m.next - m.off
			continue
		}
		parts = append(parts, io.NewSectionReader(f, m.off, m.next-m.off))
		j.length += m.next - m.off
		m.off, m.body, m.end, m.next = m.off-shift, m.body-shift, m.end-shift, m.next-shift
		kept = append(kept, m)
	}
	if extra := st.Size - md.end; extra > 0 {
		parts = append(parts, io.NewSectionReader(f, md.end, extra))
		j.length += extra
	}
	if j.tail, err = hashRange(f, j.origEnd-j.tailWindow(), j.tailWindow()); err != nil {
		return fmt.Errorf("mbox: %w", err)
	}
	if err := s.writeJournal(b, b.journalName(), j, parts...); err != nil {
		b.dirOp(func() error { return ignoreNotExist(b.dir.Remove(b.journalName())) })
		return err
	}
	s.hook("journaled")
	jf, j2, found, err := s.readJournal(b)
	if err != nil || !found || jf == nil || j2 != j {
		if jf != nil {
			jf.Close()
		}
		return fmt.Errorf("mbox: journal unreadable after writing it: %v", err)
	}
	err = s.applyJournal(b, f, jf, j)
	jf.Close()
	if err != nil {
		return err
	}
	md.done = true
	if err := unix.Fstat(int(f.Fd()), &st); err == nil {
		x := md.x
		x.msgs = kept
		x.end = md.end - shift
		x.mtime = -1 // never an exact match: appended mail may follow
		if x.end == st.Size {
			x.mtime = mtimeOf(&st)
		}
		if err := s.writeIndex(b, x); err != nil {
			s.log.Warn("mbox: index not updated after commit; the next Open rescans", "path", b.path, "err", err)
		}
	}
	return nil
}

// Close ends the session: it releases the session lock. It deletes nothing.
func (md *maildrop) Close() error {
	if md.f != nil {
		md.f.Close()
		md.f = nil
	}
	if md.lockFD >= 0 {
		unix.Close(md.lockFD)
		md.lockFD = -1
	}
	if md.b != nil {
		md.b.close()
		md.b = nil
	}
	return nil
}

// headerUID returns m's hdrUIDL if it is a valid UIDL (RFC 1939 §7) that
// no message in used has, and records it in used; else "" (the caller
// takes one from the counter) and a log line. popa3d's UIDL hashes a few
// header lines only, so two copies of one message have the same one;
// popa3d serves both, postoffice gives the second a UIDL of its own.
func (s *Store) headerUID(b *box, m *msg, used map[string]bool) string {
	if m.hdrUIDL == "" {
		return ""
	}
	if err := validUID(m.hdrUIDL); err != nil || used[m.hdrUIDL] {
		s.log.Warn("mbox: header UIDL not usable (invalid or not unique), using a new one",
			"path", b.path, "uidl", m.hdrUIDL, "err", err)
		return ""
	}
	used[m.hdrUIDL] = true
	return m.hdrUIDL
}
