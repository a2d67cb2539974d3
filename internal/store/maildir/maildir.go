package maildir

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"syscall"
	"time"

	"github.com/postoffice-mail/postoffice/internal/store"
	"github.com/postoffice-mail/postoffice/internal/store/safefs"
	"github.com/postoffice-mail/postoffice/internal/uidlfmt"
	"github.com/postoffice-mail/postoffice/internal/wire"
)

// Names of the files this package keeps in a Maildir, beside cur/ new/ tmp/.
const (
	lockName  = "postoffice-pop3.lock"
	indexName = "postoffice-index"
	uidlist   = "dovecot-uidlist"
	courier   = "courierpop3dsizelist"
	uidsName  = "postoffice-uids"
)

// Options configure a Store. Location is required; every other zero value is
// a working default.
type Options struct {
	// Location is the Maildir path template, Dovecot style, without the
	// "maildir:" prefix (it is stripped if present): "/var/vmail/%d/%n/Maildir",
	// "~/Maildir". See the package doc for the variables.
	Location string
	// Home returns the home directory of a user, for %h and a leading ~ in
	// Location. Required only when Location uses them.
	Home func(user string) (string, error)
	// Owner returns the uid and gid that own user's maildrop, from the
	// user database (the passwd-file's uid and gid fields), -1 for either
	// that it does not set. Nil, or -1, means the owner of the Maildir
	// directory. It matters only to a process running as root, which
	// then works in the maildrop as that owner (see the package doc).
	Owner func(user string) (uid, gid int, err error)
	// Logger receives warnings (a corrupt index rebuilt, a dovecot-uidlist
	// UIDL that could not be kept). Nil discards them.
	Logger *slog.Logger
	// Hostname goes into the names of delivered files. Empty means
	// os.Hostname().
	Hostname string
	// NoSync turns off every fsync. The zero value (false) syncs: a delivered
	// message, a deletion and the index are on disk before the call returns.
	// Only tests and benchmarks should set it.
	NoSync bool
	// VerifySizeFields makes the size of a message whose name (or
	// dovecot-uidlist record) has Dovecot's W= exact: its last octet is
	// read once, when the message is first indexed, and a message without
	// a final newline is listed with the 2 octets of the CRLF the server
	// appends (RFC 1939 §3). The zero value (false) trusts W= as Dovecot
	// does and never opens such a file to size it: a 100,000-message
	// Maildir is indexed from its directory listing alone, and LIST shows
	// the sizes Dovecot showed; a message without a final newline (rare:
	// SMTP and LMTP deliveries end in CRLF, an IMAP APPEND or a script may
	// not) is then listed at W and sent as W+2 octets, as Dovecot sends it.
	// Files without W= are always read whole, and sized exactly.
	VerifySizeFields bool
	// UIDLFormat is the UIDL format of messages that have no UIDL yet
	// (config: [mail] uidl_format), in the syntax of Dovecot's
	// pop3_uidl_format (package uidlfmt): %u, %v, %f and %g; %m exists
	// for mbox only and is refused by New. Nil keeps the default: a
	// message listed in dovecot-uidlist gets Dovecot 2.3's default
	// "%08Xu%08Xv", any other one a UIDL derived from its file name. See
	// the package doc, "UIDL formats".
	UIDLFormat *uidlfmt.Format
}

// Store is a collection of Maildirs, one per user, found by a location
// template. It is safe for concurrent use.
type Store struct {
	loc    pathTemplate
	home   func(string) (string, error)
	owner  func(string) (int, int, error)
	log    *slog.Logger
	host   string
	noSync bool
	// verifySizes is Options.VerifySizeFields.
	verifySizes bool
	// uidlFormat is Options.UIDLFormat.
	uidlFormat *uidlfmt.Format

	syncHook func(dir string)  // test hook, nil in production
	scanHook func(dir string)  // test hook: Open reads new/ and cur/
	sizeHook func(name string) // test hook: a file is opened to size it (from several goroutines)
	now      func() time.Time  // test hook for the clock, nil in production

	beforeScan func(sub string) // test hook: the beforeScan every maildrop Open makes starts with
}

// clock returns the current time.
func (s *Store) clock() time.Time {
	if s.now != nil {
		return s.now()
	}
	return time.Now()
}

var _ store.Store = (*Store)(nil)

// New returns a Store for opts.
func New(opts Options) (*Store, error) {
	loc, err := parseLocation(opts.Location)
	if err != nil {
		return nil, err
	}
	if loc.needHome && opts.Home == nil {
		return nil, fmt.Errorf("maildir: location %q uses the home directory but Options.Home is nil", opts.Location)
	}
	host := opts.Hostname
	if host == "" {
		if host, err = os.Hostname(); err != nil {
			return nil, fmt.Errorf("maildir: hostname: %w", err)
		}
	}
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if f := opts.UIDLFormat; f != nil && f.Uses(uidlfmt.MD5) {
		return nil, fmt.Errorf("maildir: UIDL format %q: %%m (header MD5) exists for mbox only, as in Dovecot", f)
	}
	return &Store{loc: loc, home: opts.Home, owner: opts.Owner, log: log, host: safeHost(host), noSync: opts.NoSync,
		verifySizes: opts.VerifySizeFields, uidlFormat: opts.UIDLFormat}, nil
}

// Path returns the Maildir directory of user, after validating the name.
func (s *Store) Path(user string) (string, error) {
	top, below, err := s.locate(user)
	if err != nil {
		return "", err
	}
	return filepath.Join(append([]string{top}, below...)...), nil
}

// locate returns the Maildir of user split at the line between what the
// administrator owns and what the user may write: top, which is opened
// like any path and may hold symbolic links, and the components below it,
// none of which is ever followed (see the package doc, "Symbolic links").
func (s *Store) locate(user string) (top string, below []string, err error) {
	u, err := parseUser(user)
	if err != nil {
		return "", nil, err
	}
	var home string
	if s.loc.needHome {
		if home, err = s.home(user); err != nil {
			return "", nil, fmt.Errorf("maildir: home of %q: %w", user, err)
		}
		if !filepath.IsAbs(home) {
			return "", nil, fmt.Errorf("maildir: home of %q is not absolute: %q", user, home)
		}
	}
	return s.loc.split(u, home)
}

// box is an open Maildir: its directory, opened without following a link
// below the location's line, its tmp/, new/ and cur/ once used, and the
// owner its files are made and opened as (safefs.Do).
type box struct {
	dir   *safefs.Dir
	subs  [3]*safefs.Dir // tmp, new, cur
	owner safefs.Owner

	// A POP3 session's box may give its directories back while the
	// session waits for its client (release) and open them again when it
	// resumes (ensure): reopen walks the path as openBox does, and the
	// directory must then be the same one (dev and ino), else the session
	// cannot go on. reopen is nil for other boxes.
	reopen   func() (*box, error)
	dev, ino uint64
	where    string // the Maildir's path, for messages while released
	// statted: openBox took the fstat of dir already (for its owner) and
	// set dev and ino from it; the identity check uses them instead of
	// another fstat.
	statted bool
}

var subNames = [3]string{"tmp", "new", "cur"}

// sub returns the subdirectory name ("tmp", "new" or "cur"), opened on
// first use without following a link: a tmp/, new/ or cur/ that is a
// symbolic link is refused, never read, swept or written. Not safe for
// concurrent use; sizeAll opens what it needs before it starts workers.
func (b *box) sub(name string) (*safefs.Dir, error) {
	if err := b.ensure(); err != nil {
		return nil, err
	}
	i := slices.Index(subNames[:], name)
	if b.subs[i] == nil {
		d, err := b.dir.OpenDir(name)
		if err != nil {
			return nil, fmt.Errorf("maildir: %w", err)
		}
		b.subs[i] = d
	}
	return b.subs[i], nil
}

// path returns the path of the Maildir, for logs and hooks.
func (b *box) path() string {
	if b.dir == nil {
		return b.where
	}
	return b.dir.Path()
}

func (b *box) close() {
	b.closeSubs()
	b.dir.Close()
	b.dir = nil
}

// closeSubs closes tmp/, new/ and cur/; sub opens them again.
func (b *box) closeSubs() {
	for i, d := range b.subs {
		d.Close()
		b.subs[i] = nil
	}
}

// releasable makes b able to give back its directories (release) and open
// them again with reopen, checking they are the same directory.
func (b *box) releasable(reopen func() (*box, error)) error {
	dev, ino, err := b.id()
	if err != nil {
		return err
	}
	b.reopen, b.dev, b.ino, b.where = reopen, dev, ino, b.dir.Path()
	return nil
}

// release closes b's directories, if b can open them again.
func (b *box) release() {
	if b.reopen != nil && b.dir != nil {
		b.close()
	}
}

// errReplaced is the error of a session whose Maildir was replaced by
// another directory while the session waited.
var errReplaced = errors.New("maildir: the Maildir was replaced during the session")

// ensure opens b's directory again after release. The caller runs as the
// Maildir's owner or holds nothing that needs it: the walk is openBox's.
func (b *box) ensure() error {
	if b.dir != nil {
		return nil
	}
	if b.reopen == nil {
		return errors.New("maildir: box closed")
	}
	nb, err := b.reopen()
	if err != nil {
		return fmt.Errorf("maildir: reopening %s: %w", b.where, err)
	}
	d := nb.dir
	dev, ino, err := nb.id()
	if err != nil || dev != b.dev || ino != b.ino {
		d.Close()
		if err == nil {
			err = errReplaced
		}
		return fmt.Errorf("maildir: reopening %s: %w", b.where, err)
	}
	b.dir = d
	return nil
}

// id returns the device and inode numbers of b's directory, from the
// fstat openBox took if it took one: the same descriptor gives the same
// numbers.
func (b *box) id() (dev, ino uint64, err error) {
	if b.statted {
		return b.dev, b.ino, nil
	}
	var st syscall.Stat_t
	if err := syscall.Fstat(b.dir.FD(), &st); err != nil {
		return 0, 0, err
	}
	return uint64(st.Dev), st.Ino, nil
}

// switches reports whether do changes ids (safefs.Do: a root process, a
// maildrop owned by another user).
func (b *box) switches() bool { return b.owner.UID > 0 && os.Geteuid() == 0 }

// do runs fn as the owner of the Maildir (safefs.Do).
func (b *box) do(fn func() error) error { return safefs.Do(b.owner, fn) }

// openBox opens user's Maildir. The location's top is opened following
// links, the components below it one by one without (safefs). With create,
// the missing ones are made, mode 0700, each new directory's entry fsynced
// in its parent, and so are cur/, new/ and tmp/ of a new Maildir.
//
// The owner is the user database's uid and gid (Options.Owner) where it
// has them, else the owner of the Maildir, or, for one not made yet, of
// the deepest directory of its path that exists (the home directory of
// "~/Maildir"). What is made is made as that owner.
func (s *Store) openBox(user string, create bool) (*box, error) {
	top, below, err := s.locate(user)
	if err != nil {
		return nil, err
	}
	owner := safefs.Owner{UID: -1, GID: -1}
	if s.owner != nil {
		if owner.UID, owner.GID, err = s.owner(user); err != nil {
			return nil, fmt.Errorf("maildir: owner of %q: %w", user, err)
		}
	}
	d, err := safefs.OpenTop(top)
	if errors.Is(err, fs.ErrNotExist) && create {
		if err = s.mkdirTop(top); err == nil {
			d, err = safefs.OpenTop(top)
		}
	}
	if err != nil {
		return nil, fmt.Errorf("maildir: %w", err)
	}
	rest := below
	for len(rest) > 0 {
		next, err := d.OpenDir(rest[0])
		if errors.Is(err, fs.ErrNotExist) {
			break
		}
		d.Close()
		if err != nil {
			return nil, fmt.Errorf("maildir: %w", err)
		}
		d, rest = next, rest[1:]
	}
	b := &box{}
	if os.Geteuid() == 0 {
		if st, err := d.Stat(); err == nil {
			owner = owner.Or(safefs.Owner{UID: int(st.Uid), GID: int(st.Gid)})
			// d is the Maildir when nothing is left to make.
			if len(rest) == 0 {
				b.statted, b.dev, b.ino = true, uint64(st.Dev), uint64(st.Ino)
			}
		}
	}
	if len(rest) > 0 && !create {
		d.Close()
		return nil, fmt.Errorf("maildir: %s: %w", filepath.Join(d.Path(), rest[0]), fs.ErrNotExist)
	}
	b.owner = owner
	if len(rest) > 0 {
		err := b.do(func() error {
			for _, name := range rest {
				if err := d.Mkdir(name, 0o700); err != nil && !errors.Is(err, fs.ErrExist) {
					return fmt.Errorf("maildir: create: %w", err)
				}
				if err := s.syncDir(d); err != nil {
					return err
				}
				next, err := d.OpenDir(name)
				if err != nil {
					return fmt.Errorf("maildir: create: %w", err)
				}
				d.Close()
				d = next
			}
			b.dir = d
			return s.createSubs(b)
		})
		if err != nil {
			d.Close()
			return nil, err
		}
	}
	b.dir = d
	return b, nil
}

// mkdirTop makes the location's top directory, as the process (it is the
// administrator's part of the path), and fsyncs the parent of every
// directory it made.
func (s *Store) mkdirTop(dir string) error {
	top := "" // the highest directory MkdirAll will make, "" if none
	for d := dir; ; d = filepath.Dir(d) {
		if _, err := os.Stat(d); err == nil || d == filepath.Dir(d) {
			break
		}
		top = d
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("maildir: create: %w", err)
	}
	for d := dir; top != ""; d = filepath.Dir(d) {
		p, err := safefs.OpenTop(filepath.Dir(d))
		if err != nil {
			return fmt.Errorf("maildir: create: %w", err)
		}
		err = s.syncDir(p)
		p.Close()
		if err != nil || d == top {
			return err
		}
	}
	return nil
}

// createSubs makes whichever of cur/, new/ and tmp/ (mode 0700) b lacks
// and fsyncs b's directory. The caller runs it as b's owner.
func (s *Store) createSubs(b *box) error {
	for _, sub := range []string{"cur", "new", "tmp"} {
		if err := b.dir.Mkdir(sub, 0o700); err != nil && !errors.Is(err, fs.ErrExist) {
			return fmt.Errorf("maildir: create: %w", err)
		}
	}
	return s.syncDir(b.dir)
}

// syncDir fsyncs a directory so that renames, links and unlinks in it are
// durable.
func (s *Store) syncDir(d *safefs.Dir) error {
	if s.noSync {
		return nil
	}
	if s.syncHook != nil {
		s.syncHook(d.Path())
	}
	if err := d.Sync(); err != nil {
		return fmt.Errorf("maildir: %w", err)
	}
	return nil
}

// Deliver stores one message for user: it writes tmp/<unique>, fsyncs it,
// links it into new/ as "<unique>,S=<size>,W=<crlfsize>", removes the tmp
// name and fsyncs new/. A message that does not end in a newline gets no W=
// (only S=): its W= would leave out the CRLF a server appends, and a W=
// that Open trusts must be the exact size. Only then is the message durable and Deliver returns
// nil. On any error nothing is left in new/. It runs as the Maildir's
// owner, and a tmp/ or new/ that is a symbolic link refuses the delivery.
func (s *Store) Deliver(ctx context.Context, user string, r io.Reader) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	b, err := s.openBox(user, true)
	if err != nil {
		return err
	}
	defer b.close()
	return b.do(func() error { return s.deliverBox(ctx, b, r) })
}

// deliverBox is Deliver once the Maildir is open, as its owner.
func (s *Store) deliverBox(ctx context.Context, b *box, r io.Reader) error {
	tmp, err := b.sub("tmp")
	if errors.Is(err, fs.ErrNotExist) {
		if err := s.createSubs(b); err != nil {
			return err
		}
		tmp, err = b.sub("tmp")
	}
	if err != nil {
		return fmt.Errorf("maildir: deliver: %w", err)
	}
	newDir, err := b.sub("new")
	if err != nil {
		return fmt.Errorf("maildir: deliver: %w", err)
	}
	name := uniqueName(time.Now(), s.host)
	// O_EXCL: a name that exists, a symbolic link included, is never
	// opened.
	f, err := tmp.OpenFile(name, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return fmt.Errorf("maildir: deliver: %w", err)
	}
	final, err := s.deliver(ctx, f, tmp, newDir, name, r)
	if err != nil {
		tmp.Remove(name)
		if final != "" {
			newDir.Remove(final)
		}
		return err
	}
	return nil
}

// deliver does the work of Deliver once tmp/<name> is open as f. It returns
// the name in new/ once that exists, so the caller can undo it on error.
func (s *Store) deliver(ctx context.Context, f *os.File, tmp, newDir *safefs.Dir, name string, r io.Reader) (string, error) {
	var cw countWriter
	buf := make([]byte, 64<<10)
	_, err := io.CopyBuffer(io.MultiWriter(f, &cw), ctxReader{ctx, r}, buf)
	if err == nil && !s.noSync {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		if ctx.Err() != nil && errors.Is(err, ctx.Err()) {
			return "", err
		}
		return "", fmt.Errorf("maildir: deliver: %w", err)
	}
	final := fmt.Sprintf("%s,S=%d", name, cw.n)
	if completion(cw.n, cw.last) == 0 {
		// W= is then the exact wire size, which Open trusts without
		// reading the file; otherwise Open reads it to size it.
		final += fmt.Sprintf(",W=%d", cw.vsize())
	}
	// link, not rename: link fails instead of replacing an existing file.
	if err := tmp.Link(name, newDir, final); err != nil {
		return "", fmt.Errorf("maildir: deliver: %w", err)
	}
	if err := tmp.Remove(name); err != nil {
		s.log.Warn("maildir: removing delivered tmp file", "err", err)
	}
	if err := s.syncDir(newDir); err != nil {
		return final, err
	}
	return final, nil
}

// countWriter counts what Dovecot puts in W=: the size with every bare LF
// made CRLF, without the CRLF a POP3 server appends to a message that lacks
// a final newline.
type countWriter struct {
	c    wire.CRLFCounter
	n    int64
	last byte
}

func (w *countWriter) Write(p []byte) (int, error) {
	if len(p) > 0 {
		w.c.Write(p)
		w.n += int64(len(p))
		w.last = p[len(p)-1]
	}
	return len(p), nil
}

func (w *countWriter) vsize() int64 {
	return w.c.Size() - completion(w.n, w.last)
}

// completion returns the octets a POP3 server adds after a message of n
// octets whose last octet is last: none after LF, LF after CR, else CRLF.
func completion(n int64, last byte) int64 {
	switch {
	case n == 0 || last == '\n':
		return 0
	case last == '\r':
		return 1
	}
	return 2
}

// ctxReader stops a copy when its context is done.
type ctxReader struct {
	ctx context.Context
	r   io.Reader
}

func (c ctxReader) Read(p []byte) (int, error) {
	if err := c.ctx.Err(); err != nil {
		return 0, err
	}
	return c.r.Read(p)
}
