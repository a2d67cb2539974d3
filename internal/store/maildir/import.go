package maildir

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"os"
	"time"

	"golang.org/x/sys/unix"

	"github.com/postoffice-mail/postoffice/internal/store"
	"github.com/postoffice-mail/postoffice/internal/store/safefs"
)

var (
	_ store.Importer     = (*Store)(nil)
	_ store.ArrivalTimer = (*maildrop)(nil)
)

// Import implements store.Importer: it stores msgs in user's Maildir with
// the UIDLs they had elsewhere, recorded in postoffice-index as the UIDLs
// of dovecot-uidlist are (the index line is what gives a message its
// UIDL; a file the index does not know would get a derived one).
//
// Import holds the maildrop's lock (postoffice-pop3.lock) for the whole
// batch, as a session does, since it rewrites the index; a maildrop in
// use gives store.ErrInUse. The order makes a crash at any instant safe:
//
//  1. every new message is written to tmp/ and fsynced, named
//     "<secs>.M<usec>P<pid>Q<n>.<host>,S=<size>,W=<crlf size>" from its
//     arrival time, which is also set as the file's modification time
//     (Dovecot's received date for a Maildir message);
//  2. the index is rewritten with a line per new message, its UIDL and
//     its future place in cur/, and made durable;
//  3. each file is linked into cur/ with the info part ":2," (no flags: a
//     message migrated is not new to the mailbox, but its \Seen state is
//     not known), its tmp/ name removed, and cur/ fsynced.
//
// A crash before 2 leaves only files in tmp/ (swept after 36 hours). A
// crash between 2 and 3 leaves index lines whose files do not exist: the
// next Open drops them, and importing again writes them anew. A file is
// never in cur/ without its UIDL in the index, so it never shows a derived
// UIDL to a client.
func (s *Store) Import(ctx context.Context, user string, msgs []store.ImportMessage) error {
	seen := make(map[string]bool, len(msgs))
	for _, m := range msgs {
		if !validUIDL(m.UID) {
			return fmt.Errorf("maildir: import: invalid UIDL %q (want 1-70 characters of 0x21-0x7E)", m.UID)
		}
		if seen[m.UID] {
			return fmt.Errorf("maildir: import: UIDL %q twice in one batch", m.UID)
		}
		seen[m.UID] = true
		if m.Open == nil {
			return fmt.Errorf("maildir: import: message %q has no Open", m.UID)
		}
	}
	mdi, err := s.Open(ctx, user)
	if err != nil {
		return err
	}
	md := mdi.(*maildrop)
	defer md.Close()

	md.mu.Lock()
	md.makeEntries()
	entries := append([]entry(nil), md.entries...)
	md.mu.Unlock()
	have := make(map[string]int, len(entries))
	for i, e := range entries {
		have[e.uidl] = i
	}
	// UIDLs already present first, so that a conflict stores nothing.
	var todo []store.ImportMessage
	for _, m := range msgs {
		i, ok := have[m.UID]
		if !ok {
			todo = append(todo, m)
			continue
		}
		same, err := md.sameMessage(ctx, i, m)
		if err != nil {
			return err
		}
		if !same {
			return fmt.Errorf("maildir: import: UIDL %q: %w", m.UID, store.ErrUIDExists)
		}
	}
	if len(todo) == 0 {
		return nil
	}
	return md.box.do(func() error { return md.importNew(ctx, entries, todo) })
}

// importNew does steps 1-3 of Import for messages whose UIDLs the maildrop
// does not have, as the Maildir's owner.
func (md *maildrop) importNew(ctx context.Context, entries []entry, msgs []store.ImportMessage) (err error) {
	s := md.s
	if err := s.createSubs(md.box); err != nil {
		return err
	}
	tmp, err := md.box.sub("tmp")
	if err != nil {
		return fmt.Errorf("maildir: import: %w", err)
	}
	cur, err := md.box.sub("cur")
	if err != nil {
		return fmt.Errorf("maildir: import: %w", err)
	}
	type written struct{ tmpName, final string }
	var files []written
	defer func() {
		if err != nil {
			for _, f := range files {
				tmp.Remove(f.tmpName)
			}
		}
	}()
	added := make([]entry, 0, len(msgs))
	for _, m := range msgs {
		at := m.ArrivalTime
		if at.IsZero() {
			at = s.clock()
		}
		name := uniqueName(at, s.host)
		final, size, err := md.writeTmp(ctx, tmp, name, at, m)
		if err != nil {
			return err
		}
		files = append(files, written{name, final})
		added = append(added, entry{key: final, sub: "cur", info: importInfo, uidl: m.UID, size: size})
	}
	if _, err := s.writeIndexSum(md.box.dir, append(entries, added...)); err != nil {
		return fmt.Errorf("maildir: import: %w", err)
	}
	for i, f := range files {
		if err := tmp.Link(f.tmpName, cur, f.final+importInfo); err != nil {
			files = files[i:]
			return fmt.Errorf("maildir: import: %w", err)
		}
		if err := tmp.Remove(f.tmpName); err != nil {
			s.log.Warn("maildir: removing imported tmp file", "err", err)
		}
	}
	files = nil
	return s.syncDir(cur)
}

// importInfo is the info part of an imported message's name in cur/:
// version 2, no flags.
const importInfo = ":2,"

// writeTmp writes one imported message to tmp/name, fsyncs it and sets its
// modification time to at. It returns the base name the message keeps
// (name with its S= and W= fields) and its wire size.
func (md *maildrop) writeTmp(ctx context.Context, tmp *safefs.Dir, name string, at time.Time, m store.ImportMessage) (final string, size int64, err error) {
	rc, err := m.Open(ctx)
	if err != nil {
		return "", 0, fmt.Errorf("maildir: import: opening message %q: %w", m.UID, err)
	}
	defer rc.Close()
	f, err := tmp.OpenFile(name, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return "", 0, fmt.Errorf("maildir: import: %w", err)
	}
	var cw countWriter
	buf := make([]byte, 64<<10)
	_, err = io.CopyBuffer(io.MultiWriter(f, &cw), ctxReader{ctx, rc}, buf)
	if err == nil {
		err = setMtime(f, at)
	}
	if err == nil && !md.s.noSync {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		tmp.Remove(name)
		return "", 0, fmt.Errorf("maildir: import: message %q: %w", m.UID, err)
	}
	final = fmt.Sprintf("%s,S=%d", name, cw.n)
	if completion(cw.n, cw.last) == 0 {
		final += fmt.Sprintf(",W=%d", cw.vsize())
	}
	return final, cw.c.Size(), nil
}

// sameMessage reports whether message i of the snapshot has the bytes m
// opens (compared by SHA-256).
func (md *maildrop) sameMessage(ctx context.Context, i int, m store.ImportMessage) (bool, error) {
	rc, err := md.Open(ctx, i)
	if errors.Is(err, store.ErrNoMessage) {
		return false, fmt.Errorf("maildir: import: UIDL %q: its message vanished meanwhile: %w", m.UID, store.ErrUIDExists)
	}
	if err != nil {
		return false, err
	}
	have := sha256.New()
	_, err = io.Copy(have, rc)
	rc.Close()
	if err != nil {
		return false, fmt.Errorf("maildir: import: reading stored message %q: %w", m.UID, err)
	}
	src, err := m.Open(ctx)
	if err != nil {
		return false, fmt.Errorf("maildir: import: opening message %q: %w", m.UID, err)
	}
	defer src.Close()
	want := sha256.New()
	if _, err := io.Copy(want, src); err != nil {
		return false, fmt.Errorf("maildir: import: reading message %q: %w", m.UID, err)
	}
	return string(have.Sum(nil)) == string(want.Sum(nil)), nil
}

// ArrivalTime implements store.ArrivalTimer: the modification time of the
// message's file, which Dovecot takes as a Maildir message's received date
// and Import sets.
func (md *maildrop) ArrivalTime(ctx context.Context, i int) (time.Time, error) {
	if err := ctx.Err(); err != nil {
		return time.Time{}, err
	}
	md.mu.Lock()
	defer md.mu.Unlock()
	if err := md.usable(); err != nil {
		return time.Time{}, err
	}
	if i < 0 || i >= len(md.msgs) {
		return time.Time{}, fmt.Errorf("maildir: no message %d", i)
	}
	for attempt := 0; ; attempt++ {
		e := md.entry(i)
		if e.sub == "" {
			return time.Time{}, store.ErrNoMessage
		}
		var t time.Time
		err := md.box.do(func() error {
			d, err := md.box.sub(e.sub)
			if err != nil {
				return err
			}
			t, err = modTime(d, e.key+e.info)
			return err
		})
		if err == nil {
			return t, nil
		}
		if !errors.Is(err, os.ErrNotExist) {
			return time.Time{}, fmt.Errorf("maildir: arrival time: %w", err)
		}
		if attempt > 0 {
			return time.Time{}, store.ErrNoMessage
		}
		if err := md.relocate(); err != nil {
			return time.Time{}, err
		}
	}
}

// setMtime sets f's access and modification times to at.
func setMtime(f *os.File, at time.Time) error {
	tv := unix.NsecToTimeval(at.UnixNano())
	return unix.Futimes(int(f.Fd()), []unix.Timeval{tv, tv})
}

// modTime returns the modification time of the file name in d, without
// following a symbolic link.
func modTime(d *safefs.Dir, name string) (time.Time, error) {
	f, err := d.OpenFile(name, os.O_RDONLY, 0)
	if err != nil {
		return time.Time{}, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return time.Time{}, err
	}
	return fi.ModTime(), nil
}
