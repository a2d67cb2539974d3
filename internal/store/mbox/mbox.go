package mbox

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"golang.org/x/sys/unix"

	"github.com/postoffice-mail/postoffice/internal/store"
	"github.com/postoffice-mail/postoffice/internal/store/safefs"
	"github.com/postoffice-mail/postoffice/internal/uidlfmt"
)

// Options configure a Store. Location is required; every other zero value is
// a working default.
type Options struct {
	// Location is the mbox path template, Dovecot style, with or without
	// the "mbox:" prefix: "/var/mail/%u", "~/mbox",
	// "/var/mail/%u:INDEX=/var/lib/postoffice/mbox/%u". See the package
	// doc for the variables and parameters.
	Location string
	// Home returns the home directory of a user, for %h and a leading ~ in
	// Location. Required only when Location uses them.
	Home func(user string) (string, error)
	// Owner returns the uid and gid that own user's mbox, from the user
	// database, -1 for either that it does not set. Nil, or -1, means the
	// owner of the mbox file, or for one not made yet the owner of its
	// directory. It matters only to a process running as root, which then
	// works in the mbox as that owner (see the package doc). With a spool
	// owned by root (/var/mail) set it, or new mboxes belong to root.
	Owner func(user string) (uid, gid int, err error)
	// Logger receives warnings (an index rebuilt, a journal replayed, a
	// From_ line or X-UIDL that could not be kept). Nil discards them.
	Logger *slog.Logger
	// Format is the From_ quoting of the mbox files: MboxO (the zero
	// value, what Postfix's local(8) and procmail write) or MboxRD. It
	// applies to reading and to Deliver.
	Format Format
	// LockTimeout bounds the wait for the fcntl lock and the dotlock held
	// by another program. Zero means 30 seconds (Postfix's local waits
	// 20 attempts of 1 second). A timeout is store.ErrInUse.
	LockTimeout time.Duration
	// StaleLockAge is the age after which another program's dotlock is
	// broken. Zero means 5 minutes (procmail and Postfix break locks of
	// about that age: Postfix's stale_lock_time is 500 seconds).
	StaleLockAge time.Duration
	// NoSync turns off every fsync. Only tests and benchmarks set it.
	NoSync bool
	// UIDLFormat, if set, is the UIDL of messages the index does not know
	// yet (config: [mail] uidl_format), in the syntax of Dovecot's
	// pop3_uidl_format; of its variables only %m, the MD5 of the header
	// as Dovecot's mbox storage computes it (see headerMD5), exists for
	// mbox: New refuses the others. See the package doc, "UIDL schemes".
	UIDLFormat *uidlfmt.Format
	// Popa3dUIDLs gives messages the index does not know yet the UIDL
	// popa3d computes for them (config: [mail] uidl_format = "popa3d"; see
	// popa3dUIDL). It excludes UIDLFormat.
	Popa3dUIDLs bool
}

// Store is a collection of mbox files, one per user, found by a location
// template. It is safe for concurrent use.
type Store struct {
	loc         pathTemplate
	index       *pathTemplate
	home        func(string) (string, error)
	owner       func(string) (int, int, error)
	log         *slog.Logger
	format      Format
	lockTimeout time.Duration
	staleAge    time.Duration
	noSync      bool
	// uidlOf computes a message's UIDL from its header under the
	// configured UIDL scheme; nil without one.
	uidlOf func(hdr []byte) string

	mu   sync.Mutex
	busy map[string]chan struct{} // mbox path -> held while this process works on it

	// crashHook, if set, is called at the named points of a commit (test
	// hook for the kill test; nil in production).
	crashHook func(point string)
}

var _ store.Store = (*Store)(nil)

// New returns a Store for opts.
func New(opts Options) (*Store, error) {
	if err := checkLocking(); err != nil {
		return nil, err
	}
	loc, index, err := parseLocation(opts.Location)
	if err != nil {
		return nil, err
	}
	if (loc.needHome || index != nil && index.needHome) && opts.Home == nil {
		return nil, fmt.Errorf("mbox: location %q uses the home directory but Options.Home is nil", opts.Location)
	}
	if opts.Format != MboxO && opts.Format != MboxRD {
		return nil, fmt.Errorf("mbox: unknown format %d", opts.Format)
	}
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	s := &Store{loc: loc, index: index, home: opts.Home, owner: opts.Owner, log: log, format: opts.Format,
		lockTimeout: opts.LockTimeout, staleAge: opts.StaleLockAge, noSync: opts.NoSync,
		busy: map[string]chan struct{}{}}
	switch f := opts.UIDLFormat; {
	case f != nil && opts.Popa3dUIDLs:
		return nil, errors.New("mbox: UIDLFormat and Popa3dUIDLs exclude each other")
	case f != nil && f.Uses(^uidlfmt.MD5):
		return nil, fmt.Errorf("mbox: UIDL format %q: only %%m exists for mbox (postoffice keeps no IMAP UIDs in mbox files)", f)
	case f != nil:
		s.uidlOf = func(hdr []byte) string { return f.Expand(uidlfmt.Values{MD5: headerMD5(hdr)}) }
	case opts.Popa3dUIDLs:
		s.uidlOf = popa3dUIDL
	}
	if s.lockTimeout <= 0 {
		s.lockTimeout = 30 * time.Second
	}
	if s.staleAge <= 0 {
		s.staleAge = 5 * time.Minute
	}
	return s, nil
}

// box is an open mbox location: the directory of the mbox file, its name,
// the directory of the index and session lock, and the owner files are
// opened and made as.
type box struct {
	dir   *safefs.Dir
	name  string
	idir  *safefs.Dir // == dir when the index lives beside the mbox
	owner safefs.Owner
	path  string // of the mbox file, for messages and the in-process lock
}

func (b *box) close() {
	if b.idir != b.dir {
		b.idir.Close()
	}
	b.dir.Close()
}

// Names of the files kept beside the mbox (or, for the index and the
// session lock, in the INDEX= directory). They start with '.', which no
// user name may, so no user's mbox can be one.
func (b *box) dotlockName() string { return b.name + ".lock" }
func (b *box) lockName() string    { return "." + b.name + ".postoffice-lock" }
func (b *box) indexName() string   { return "." + b.name + ".postoffice-index" }
func (b *box) journalName() string { return "." + b.name + ".postoffice-journal" }

// do runs fn as the owner of the mbox (safefs.Do).
func (b *box) do(fn func() error) error { return safefs.Do(b.owner, fn) }

// Path returns the mbox file of user, after validating the name.
func (s *Store) Path(user string) (string, error) {
	u, err := parseUser(user)
	if err != nil {
		return "", err
	}
	home, err := s.homeOf(user)
	if err != nil {
		return "", err
	}
	top, below, err := s.loc.split(u, home)
	if err != nil {
		return "", err
	}
	return filepath.Join(append([]string{top}, below...)...), nil
}

func (s *Store) homeOf(user string) (string, error) {
	if !s.loc.needHome && (s.index == nil || !s.index.needHome) {
		return "", nil
	}
	home, err := s.home(user)
	if err != nil {
		return "", fmt.Errorf("mbox: home of %q: %w", user, err)
	}
	if !filepath.IsAbs(home) {
		return "", fmt.Errorf("mbox: home of %q is not absolute: %q", user, home)
	}
	return home, nil
}

// openBox resolves user's mbox: the part of the path above the location's
// line is opened like any path, every component below it without following
// a link (safefs); missing directories below the line are made, mode 0700,
// as the owner.
func (s *Store) openBox(user string) (*box, error) {
	u, err := parseUser(user)
	if err != nil {
		return nil, err
	}
	home, err := s.homeOf(user)
	if err != nil {
		return nil, err
	}
	top, below, err := s.loc.split(u, home)
	if err != nil {
		return nil, err
	}
	var name string
	if len(below) == 0 {
		top, name = filepath.Dir(top), filepath.Base(top)
	} else {
		below, name = below[:len(below)-1], below[len(below)-1]
	}
	owner := safefs.Owner{UID: -1, GID: -1}
	if s.owner != nil {
		if owner.UID, owner.GID, err = s.owner(user); err != nil {
			return nil, fmt.Errorf("mbox: owner of %q: %w", user, err)
		}
	}
	b := &box{name: name, owner: owner}
	mkdir := func(parent *safefs.Dir, n string) error {
		return b.do(func() error { return parent.Mkdir(n, 0o700) })
	}
	if os.Geteuid() == 0 && (owner.UID < 0 || owner.GID < 0) && owner.UID != 0 {
		// The owner of the deepest existing directory makes what is missing.
		if d, err := safefs.Walk(top, nil, nil); err == nil {
			if o, err := safefs.OwnerOf(d); err == nil {
				b.owner = owner.Or(o)
			}
			d.Close()
		}
	}
	if b.dir, err = safefs.Walk(top, below, mkdir); err != nil {
		return nil, fmt.Errorf("mbox: %w", err)
	}
	if os.Geteuid() == 0 && (owner.UID < 0 || owner.GID < 0) {
		if st, err := b.dir.Lstat(name); err == nil && st.Mode&unix.S_IFMT == unix.S_IFREG {
			b.owner = owner.Or(safefs.Owner{UID: int(st.Uid), GID: int(st.Gid)})
		} else if o, ok := systemOwner(name); ok && errors.Is(err, fs.ErrNotExist) {
			b.owner = owner.Or(o)
		} else if o, err := safefs.OwnerOf(b.dir); err == nil {
			b.owner = owner.Or(o)
		}
	}
	b.path = filepath.Join(b.dir.Path(), name)
	b.idir = b.dir
	if s.index != nil {
		itop, ibelow, err := s.index.split(u, home)
		if err == nil {
			// The top of the index directory is postoffice's own: made
			// (mode 0700, as the process) when missing, as maildir makes
			// its location's top.
			if _, serr := os.Stat(itop); errors.Is(serr, fs.ErrNotExist) {
				err = os.MkdirAll(itop, 0o700)
			}
		}
		if err == nil {
			b.idir, err = safefs.Walk(itop, ibelow, mkdir)
		}
		if err != nil {
			b.dir.Close()
			return nil, fmt.Errorf("mbox: index directory: %w", err)
		}
	}
	return b, nil
}

// openFile opens name in d as the owner, creating it (mode perm) if it is
// missing. When the owner may not make files in d (Debian's /var/mail is
// root:mail 2775) and the process is root, it is made as root with O_EXCL,
// which follows nothing and fails on anything already there, and handed to
// the owner with fchown, as Postfix's local(8) makes a new mailbox.
//
// flags with O_EXCL (a temporary file) ask for a new file only: the open
// of an existing one is skipped, so that the owner's EACCES on the create
// reaches the fallback to root, and an existing file is an error.
func (b *box) openFile(d *safefs.Dir, name string, flags int, perm uint32) (int, error) {
	excl := flags&unix.O_EXCL != 0
	flags &^= unix.O_CREAT | unix.O_EXCL
	for range 3 {
		var fd int
		var err error
		if !excl {
			err = b.do(func() (err error) {
				fd, _, err = d.OpenFD(name, flags, 0)
				return err
			})
			if err == nil || !errors.Is(err, fs.ErrNotExist) {
				return fd, err
			}
		}
		err = b.do(func() (err error) {
			fd, _, err = d.OpenFD(name, flags|unix.O_CREAT|unix.O_EXCL, perm)
			return err
		})
		if errors.Is(err, fs.ErrPermission) && os.Geteuid() == 0 && b.owner.UID > 0 {
			fd, _, err = d.OpenFD(name, flags|unix.O_CREAT|unix.O_EXCL, perm)
			if err == nil {
				if err = unix.Fchown(fd, b.owner.UID, b.owner.GID); err != nil {
					unix.Close(fd)
					d.Remove(name)
					return -1, fmt.Errorf("mbox: chown %s: %w", name, err)
				}
			}
		}
		if errors.Is(err, fs.ErrExist) && !excl {
			continue // made meanwhile: open it
		}
		return fd, err
	}
	return -1, fmt.Errorf("mbox: %s: %w", filepath.Join(d.Path(), name), fs.ErrExist)
}

// dirOp runs fn (a rename or unlink in a directory) as the owner, and again
// as the process if the owner may not write the directory and the process
// is root: renameat and unlinkat act on the entry, never follow it.
func (b *box) dirOp(fn func() error) error {
	err := b.do(fn)
	if errors.Is(err, fs.ErrPermission) && os.Geteuid() == 0 && b.owner.UID > 0 {
		err = fn()
	}
	return err
}

// proc serialises this process's work on one mbox (deliveries, snapshot,
// commit), so that goroutines wait on a channel instead of polling the
// file locks, which still exclude other processes. It returns the release
// function.
func (s *Store) proc(ctx context.Context, path string) (func(), error) {
	for {
		s.mu.Lock()
		ch, held := s.busy[path]
		if !held {
			ch = make(chan struct{})
			s.busy[path] = ch
			s.mu.Unlock()
			return func() {
				s.mu.Lock()
				delete(s.busy, path)
				s.mu.Unlock()
				close(ch)
			}, nil
		}
		s.mu.Unlock()
		select {
		case <-ch:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
}

// mboxLock is the set of locks other mbox programs honour.
type mboxLock struct {
	fd    int
	dl    *dotlock
	procs func()
}

// lock takes the locks of Debian's Postfix (postconf -d
// mailbox_delivery_lock: "fcntl, dotlock"), after this process's own lock
// on the mbox: first the dotlock, then the fcntl lock on fd, in the order
// Postfix's local(8) takes them whatever that setting's order
// (src/global/mbox_open.c), and procmail and Dovecot too. Taking them the
// other way round deadlocks with local(8): each would hold the lock the
// other waits for until one timed out (local(8) after 20 s, deferring the
// mail). flock(2) is not taken: Debian's Postfix does not use it, and on
// Linux it is independent of fcntl locks, so it would exclude nobody who
// matters.
func (s *Store) lock(ctx context.Context, b *box, fd int) (*mboxLock, error) {
	release, err := s.proc(ctx, b.path)
	if err != nil {
		return nil, err
	}
	deadline := time.Now().Add(s.lockTimeout)
	dl, err := takeDotlock(ctx, b.dir, b.dotlockName(), s.staleAge, deadline, b.owner)
	if err != nil {
		release()
		return nil, err
	}
	if err := fcntlLock(ctx, fd, deadline); err != nil {
		dl.release()
		release()
		return nil, err
	}
	return &mboxLock{fd: fd, dl: dl, procs: release}, nil
}

// unlock releases in the reverse order.
func (l *mboxLock) unlock() {
	fcntlUnlock(l.fd)
	l.dl.release()
	l.procs()
}

func (s *Store) fsync(fd int) error {
	if s.noSync {
		return nil
	}
	if err := unix.Fsync(fd); err != nil {
		return fmt.Errorf("mbox: fsync: %w", err)
	}
	return nil
}

func (s *Store) syncDir(d *safefs.Dir) error {
	if s.noSync {
		return nil
	}
	if err := d.Sync(); err != nil {
		return fmt.Errorf("mbox: %w", err)
	}
	return nil
}

func (s *Store) hook(point string) {
	if s.crashHook != nil {
		s.crashHook(point)
	}
}

// Deliver appends one message to user's mbox the way Postfix's local(8)
// does: under the fcntl lock and the dotlock, a "From sender  date" line
// (the sender from a leading Return-Path header, else MAILER-DAEMON; the
// date in asctime(3) form, local time), the message with the store's From_
// quoting (mboxo: a line starting "From " gets a '>'), a newline if the
// message does not end in one, and an empty line. If the mbox does not end
// in an empty line (another writer's last message), one is added first,
// so the new From_ line is a separator. The file is fsynced before Deliver
// returns; on any error it is truncated back to its old size, so a failed
// delivery leaves nothing. A journal left by an interrupted commit is
// replayed first.
func (s *Store) Deliver(ctx context.Context, user string, r io.Reader) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	b, err := s.openBox(user)
	if err != nil {
		return err
	}
	defer b.close()
	fd, err := b.openFile(b.dir, b.name, unix.O_RDWR, 0o600)
	if err != nil {
		return fmt.Errorf("mbox: open %s: %w", b.path, err)
	}
	f := os.NewFile(uintptr(fd), b.path)
	defer f.Close()
	l, err := s.lock(ctx, b, fd)
	if err != nil {
		return err
	}
	defer l.unlock()
	// The descriptor is open: writing through it needs no switch of ids.
	if err := s.replay(b, f); err != nil {
		return err
	}
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return fmt.Errorf("mbox: stat: %w", err)
	}
	old := st.Size
	err = s.appendMessage(ctx, f, old, r)
	if err == nil {
		err = s.fsync(fd)
	}
	if err != nil {
		if terr := f.Truncate(old); terr != nil {
			s.log.Error("mbox: failed delivery not undone", "path", b.path, "err", terr)
		} else {
			s.fsync(fd)
		}
	}
	return err
}

// appendMessage writes the message at off (the end of the file).
func (s *Store) appendMessage(ctx context.Context, f *os.File, off int64, r io.Reader) error {
	if _, err := f.Seek(off, io.SeekStart); err != nil {
		return fmt.Errorf("mbox: seek: %w", err)
	}
	w := bufio.NewWriterSize(f, 64<<10)
	if off > 0 {
		var tail [2]byte
		n, _ := f.ReadAt(tail[:], max(off-2, 0))
		switch {
		case n == 2 && tail == [2]byte{'\n', '\n'}:
		case n >= 1 && tail[n-1] == '\n':
			w.WriteByte('\n')
		default:
			w.WriteString("\n\n")
		}
	}
	br := bufio.NewReaderSize(r, 64<<10)
	sender := "MAILER-DAEMON"
	if peek, _ := br.Peek(1024); len(peek) > 0 {
		sender = envelopeSender(peek)
	}
	fmt.Fprintf(w, "From %s  %s\n", sender, time.Now().Format("Mon Jan _2 15:04:05 2006"))
	q := &quoter{w: w, f: s.format}
	buf := make([]byte, 32<<10)
	for {
		if err := ctx.Err(); err != nil {
			return err
		}
		n, err := br.Read(buf)
		if n > 0 {
			q.Write(buf[:n])
		}
		if err == io.EOF {
			break
		}
		if err != nil {
			return fmt.Errorf("mbox: reading the message: %w", err)
		}
	}
	q.flush()
	if q.n > 0 && q.last != '\n' {
		w.WriteByte('\n')
	}
	w.WriteByte('\n')
	if err := w.Flush(); err != nil {
		return fmt.Errorf("mbox: write: %w", err)
	}
	return nil
}

// envelopeSender returns the address of a leading "Return-Path: <addr>"
// header for the From_ line, or MAILER-DAEMON (the null sender, or an
// address that would not fit in one word).
func envelopeSender(head []byte) string {
	line, _, _ := bytes.Cut(head, []byte("\n"))
	name, val, ok := bytes.Cut(line, []byte(":"))
	if !ok || !bytes.EqualFold(name, []byte("Return-Path")) {
		return "MAILER-DAEMON"
	}
	v := strings.TrimSpace(string(val))
	v = strings.TrimSuffix(strings.TrimPrefix(v, "<"), ">")
	if v == "" || len(v) > 256 {
		return "MAILER-DAEMON"
	}
	for i := 0; i < len(v); i++ {
		if c := v[i]; c <= ' ' || c >= 0x7f {
			return "MAILER-DAEMON"
		}
	}
	return v
}

// quoter writes a message with From_ quoting (see Format): a line starting
// "From " (mboxrd: ">*From ") gets one more '>'. It holds back at most the
// five octets of a possible "From " at the start of a line.
type quoter struct {
	w     *bufio.Writer
	f     Format
	state int // 0 at a line start (or in its leading '>' run), 1 matching "From ", 2 inside a line
	gt    bool
	m     int
	n     int64
	last  byte
}

const fromPrefix = "From "

func (q *quoter) Write(p []byte) {
	if len(p) == 0 {
		return
	}
	q.n += int64(len(p))
	q.last = p[len(p)-1]
	for len(p) > 0 {
		switch q.state {
		case 2:
			i := bytes.IndexByte(p, '\n')
			if i < 0 {
				q.w.Write(p)
				return
			}
			q.w.Write(p[:i+1])
			p = p[i+1:]
			q.state, q.gt = 0, false
		case 0:
			c := p[0]
			switch {
			case c == '>' && q.f == MboxRD:
				q.w.WriteByte(c)
				q.gt = true
				p = p[1:]
			case c == 'F' && (q.f == MboxRD || !q.gt):
				q.state, q.m = 1, 1
				p = p[1:]
			default:
				q.state = 2
				if c == '\n' {
					q.w.WriteByte(c)
					q.state, q.gt = 0, false
					p = p[1:]
				}
			}
		case 1:
			if p[0] == fromPrefix[q.m] {
				q.m++
				p = p[1:]
				if q.m == len(fromPrefix) {
					q.w.WriteString(">" + fromPrefix)
					q.state = 2
				}
				continue
			}
			q.w.WriteString(fromPrefix[:q.m])
			q.state = 2
			if p[0] == '\n' {
				q.w.WriteByte('\n')
				q.state, q.gt = 0, false
				p = p[1:]
			}
		}
	}
}

// flush writes what is held back.
func (q *quoter) flush() {
	if q.state == 1 {
		q.w.WriteString(fromPrefix[:q.m])
		q.state = 2
	}
}
