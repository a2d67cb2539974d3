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
	"time"

	"github.com/postoffice-mail/postoffice/internal/store"
	"github.com/postoffice-mail/postoffice/internal/wire"
)

// Names of the files this package keeps in a Maildir, beside cur/ new/ tmp/.
const (
	lockName  = "postoffice-pop3.lock"
	indexName = "postoffice-index"
	uidlist   = "dovecot-uidlist"
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
}

// Store is a collection of Maildirs, one per user, found by a location
// template. It is safe for concurrent use.
type Store struct {
	loc    location
	home   func(string) (string, error)
	log    *slog.Logger
	host   string
	noSync bool
	// verifySizes is Options.VerifySizeFields.
	verifySizes bool

	syncHook func(dir string)  // test hook, nil in production
	scanHook func(dir string)  // test hook: Open reads new/ and cur/
	sizeHook func(name string) // test hook: a file is opened to size it (from several goroutines)
	now      func() time.Time  // test hook for the clock, nil in production
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
	return &Store{loc: loc, home: opts.Home, log: log, host: safeHost(host), noSync: opts.NoSync,
		verifySizes: opts.VerifySizeFields}, nil
}

// Path returns the Maildir directory of user, after validating the name.
func (s *Store) Path(user string) (string, error) {
	u, err := parseUser(user)
	if err != nil {
		return "", err
	}
	var home string
	if s.loc.needHome {
		if home, err = s.home(user); err != nil {
			return "", fmt.Errorf("maildir: home of %q: %w", user, err)
		}
		if !filepath.IsAbs(home) {
			return "", fmt.Errorf("maildir: home of %q is not absolute: %q", user, home)
		}
	}
	return s.loc.expand(u, home)
}

// create makes the Maildir dir with cur/, new/ and tmp/ (mode 0700) and
// syncs the directories whose entries it added: dir, and the parent of every
// directory MkdirAll made (a new domain directory, say, as well as the
// Maildir in it).
func (s *Store) create(dir string) error {
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
	for _, sub := range []string{"cur", "new", "tmp"} {
		if err := os.Mkdir(filepath.Join(dir, sub), 0o700); err != nil && !errors.Is(err, fs.ErrExist) {
			return fmt.Errorf("maildir: create: %w", err)
		}
	}
	if err := s.syncDir(dir); err != nil {
		return err
	}
	for d := dir; top != ""; d = filepath.Dir(d) {
		if err := s.syncDir(filepath.Dir(d)); err != nil {
			return err
		}
		if d == top {
			break
		}
	}
	return nil
}

// syncDir fsyncs a directory so that renames, links and unlinks in it are
// durable.
func (s *Store) syncDir(dir string) error {
	if s.noSync {
		return nil
	}
	if s.syncHook != nil {
		s.syncHook(dir)
	}
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("maildir: sync: %w", err)
	}
	err = d.Sync()
	if cerr := d.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("maildir: sync %s: %w", filepath.Base(dir), err)
	}
	return nil
}

// Deliver stores one message for user: it writes tmp/<unique>, fsyncs it,
// links it into new/ as "<unique>,S=<size>,W=<crlfsize>", removes the tmp
// name and fsyncs new/. A message that does not end in a newline gets no W=
// (only S=): its W= would leave out the CRLF a server appends, and a W=
// that Open trusts must be the exact size. Only then is the message durable and Deliver returns
// nil. On any error nothing is left in new/.
func (s *Store) Deliver(ctx context.Context, user string, r io.Reader) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	dir, err := s.Path(user)
	if err != nil {
		return err
	}
	name := uniqueName(time.Now(), s.host)
	tmpPath := filepath.Join(dir, "tmp", name)
	f, err := os.OpenFile(tmpPath, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if errors.Is(err, fs.ErrNotExist) {
		if err := s.create(dir); err != nil {
			return err
		}
		f, err = os.OpenFile(tmpPath, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	}
	if err != nil {
		return fmt.Errorf("maildir: deliver: %w", err)
	}
	newPath, err := s.deliver(ctx, f, tmpPath, dir, name, r)
	if err != nil {
		os.Remove(tmpPath)
		if newPath != "" {
			os.Remove(newPath)
		}
		return err
	}
	return nil
}

// deliver does the work of Deliver once tmp/<name> is open as f. It returns
// the new/ path once that exists, so the caller can undo it on error.
func (s *Store) deliver(ctx context.Context, f *os.File, tmpPath, dir, name string, r io.Reader) (string, error) {
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
	newPath := filepath.Join(dir, "new", final)
	// link, not rename: link fails instead of replacing an existing file.
	if err := os.Link(tmpPath, newPath); err != nil {
		return "", fmt.Errorf("maildir: deliver: %w", err)
	}
	if err := os.Remove(tmpPath); err != nil {
		s.log.Warn("maildir: removing delivered tmp file", "err", err)
	}
	if err := s.syncDir(filepath.Join(dir, "new")); err != nil {
		return newPath, err
	}
	return newPath, nil
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
