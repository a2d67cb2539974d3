package fetch

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"time"

	"github.com/postoffice-mail/postoffice/internal/store/safefs"
)

// target is where fetched messages go. Deliver returns nil only once the
// message is durable (or the MDA said 0).
type target interface {
	// Copies returns the header digests (headerHash) of the messages with
	// this UIDL already there; only an idempotent target (Maildir) can
	// know. The caller compares them with the digest of the message on the
	// server, since a server may give a new message an old UIDL.
	Copies(uidl string) ([]string, error)
	// Deliver stores one message read from r (CRLF line ends, as POP3
	// sends them). uidl is "" when the server has no UIDLs.
	Deliver(ctx context.Context, uidl string, r io.Reader) error
}

// groupTarget is a target that makes deliveries durable in groups (a
// group commit): Stage stores a message as Deliver does but not yet
// durably, and Commit makes every message staged since the last Commit
// durable, or reports an error (then none of them counts as delivered).
// A kill before Commit returns loses no mail: the messages are not
// recorded yet, so the next run fetches them again (and finds those that
// were made visible, see Copies).
type groupTarget interface {
	target
	Stage(ctx context.Context, uidl string, r io.Reader) error
	Commit() error
}

// newTarget builds the target of an account. A target that holds a
// connection (lmtp:, smtp:) is an io.Closer, closed at the end of the run.
func newTarget(a *Account, timeout time.Duration) (target, error) {
	kind, arg, _ := strings.Cut(a.Target, ":")
	switch kind {
	case "maildir":
		return &maildirTarget{dir: arg, account: a.Name}, nil
	case "mbox":
		return &mboxTarget{path: arg}, nil
	case "mda":
		return &mdaTarget{command: arg}, nil
	case "lmtp", "smtp":
		return newForwardTarget(a, kind, arg, timeout)
	}
	return nil, &Error{Code: ExitConfig, Err: fmt.Errorf("fetch: account %s: target %s: not supported yet", a.Name, kind)}
}

// readErr remembers the error of the message stream, to tell a failed
// download from a failed delivery.
type readErr struct {
	r   io.Reader
	err error
}

func (e *readErr) Read(p []byte) (int, error) {
	n, err := e.r.Read(p)
	if err != nil && err != io.EOF {
		e.err = err
	}
	return n, err
}

// copyLF copies a message from r to w with CRLF line ends turned into LF,
// as local mailbox formats want them. With mboxrd, lines matching
// ^>*From  get one more '>' (the mboxrd quoting). It reports whether the
// output ended with a newline.
func copyLF(w io.Writer, r io.Reader, mboxrd bool) (endsNL bool, err error) {
	br := bufio.NewReaderSize(r, 64<<10)
	atStart, wrote := true, false
	for {
		chunk, rerr := br.ReadSlice('\n')
		if len(chunk) > 0 {
			if atStart && mboxrd && isFromLine(chunk) {
				if _, err := w.Write([]byte{'>'}); err != nil {
					return false, err
				}
			}
			atStart = chunk[len(chunk)-1] == '\n'
			if bytes.HasSuffix(chunk, []byte("\r\n")) {
				chunk = append(chunk[:len(chunk)-2], '\n')
			} else if errors.Is(rerr, bufio.ErrBufferFull) && chunk[len(chunk)-1] == '\r' {
				// A full buffer ending in CR: the LF may come next, so
				// the CR goes to the next chunk to be judged there.
				br.UnreadByte()
				chunk = chunk[:len(chunk)-1]
			}
			if _, err := w.Write(chunk); err != nil {
				return false, err
			}
			wrote = true
		}
		switch {
		case rerr == io.EOF:
			return atStart && wrote, nil
		case rerr != nil && !errors.Is(rerr, bufio.ErrBufferFull):
			return false, rerr
		}
	}
}

// isFromLine reports whether line matches ^>*From  (mboxrd).
func isFromLine(line []byte) bool {
	return bytes.HasPrefix(bytes.TrimLeft(line, ">"), []byte("From "))
}

// maildirTarget delivers into a Maildir (https://cr.yp.to/proto/maildir.html)
// under a name derived from the account, the UIDL and the header:
// "<unix-time>.F<hash>.H<digest>.postoffice-fetch", hash = hex
// SHA-256(account NUL uidl)[:32], digest = the headerHash of the message
// as delivered. A file in new/ or cur/, with any flags, whose name holds
// the same F<hash> and H<digest> is the same message, so a delivery
// repeated after a kill is recognised and skipped: a Maildir target never
// gets a duplicate. The H part tells apart two messages a server gave the
// same UIDL; a file named by an older version, without it, cannot be told
// apart and is not counted (a duplicate at worst, never a loss).
// tmp/, new/ and cur/ and the files in them are never followed if they are
// symbolic links, and a root fetcher writes as the Maildir's owner
// (localfs.go).
//
// Deliveries are grouped (groupTarget): Stage writes the message to tmp/
// without a sync; Commit fsyncs the staged files (all at once, so the file
// system can commit them in one journal transaction), links each into
// new/ and fsyncs new/ once. That is the durability of Maildir delivery
// (file data synced before the name appears in new/, the directory synced
// before the delivery counts) at the cost of a few syncs per batch instead
// of two per message.
type maildirTarget struct {
	dir, account string
	have         map[string][]string // F<hash> -> H<digest>s present, read once
	syncs        int                 // fsyncs made, for Result.Syncs

	subs   [3]*safefs.Dir // tmp/, new/, cur/, opened once
	owner  safefs.Owner
	staged []stagedFile
}

// stagedFile is a message written to tmp/ and not yet committed.
type stagedFile struct {
	f        *os.File
	tmp, key string
	digest   string
}

// maxSyncers bounds the fsyncs in flight at once in Commit.
const maxSyncers = 16

func (m *maildirTarget) key(uidl string) string {
	sum := sha256.Sum256([]byte(m.account + "\x00" + uidl))
	return "F" + hex.EncodeToString(sum[:16])
}

// open opens the Maildir's directories once per run.
func (m *maildirTarget) open() error {
	if m.subs[0] != nil {
		return nil
	}
	subs, owner, err := maildirDirs(m.dir)
	if err != nil {
		return &Error{Code: ExitIOErr, Err: fmt.Errorf("fetch: maildir: %w", err)}
	}
	m.subs, m.owner = subs, owner
	return nil
}

func (m *maildirTarget) scan() error {
	if m.have != nil {
		return nil
	}
	if err := m.open(); err != nil {
		return err
	}
	m.have = make(map[string][]string)
	for _, sd := range m.subs[1:] {
		var names []string
		err := safefs.Do(m.owner, func() (err error) {
			names, err = sd.Names()
			return err
		})
		if err != nil {
			return &Error{Code: ExitIOErr, Err: fmt.Errorf("fetch: maildir: %w", err)}
		}
		for _, n := range names {
			n, _, _ = strings.Cut(n, ":")
			key, digest := "", ""
			for _, part := range strings.Split(n, ".") {
				switch {
				case len(part) == 33 && part[0] == 'F':
					key = part
				case len(part) == 33 && part[0] == 'H':
					digest = part[1:]
				}
			}
			if key != "" && digest != "" {
				m.have[key] = append(m.have[key], digest)
			}
		}
	}
	return nil
}

func (m *maildirTarget) Copies(uidl string) ([]string, error) {
	if uidl == "" {
		return nil, nil
	}
	if err := m.scan(); err != nil {
		return nil, err
	}
	return m.have[m.key(uidl)], nil
}

// Deliver stores one message durably: Stage, then Commit.
func (m *maildirTarget) Deliver(ctx context.Context, uidl string, r io.Reader) error {
	if err := m.Stage(ctx, uidl, r); err != nil {
		return err
	}
	return m.Commit()
}

func maildirErr(err error) error {
	return &Error{Code: ExitIOErr, Err: fmt.Errorf("fetch: maildir: %w", err)}
}

// Stage writes one message to tmp/, named after its key; it is not synced
// and not yet in new/ (see Commit).
func (m *maildirTarget) Stage(ctx context.Context, uidl string, r io.Reader) error {
	if err := m.scan(); err != nil {
		return err
	}
	key := ""
	if uidl != "" {
		key = m.key(uidl)
	} else {
		var b [16]byte
		rand.Read(b[:])
		key = "R" + hex.EncodeToString(b[:])
	}
	tmpDir := m.subs[0]
	tmp := key + ".postoffice-fetch"
	var f *os.File
	err := safefs.Do(m.owner, func() (err error) {
		// A file left by a killed run, or a link planted there, is
		// removed rather than opened; O_EXCL never follows a link.
		if err := tmpDir.Remove(tmp); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return err
		}
		f, err = tmpDir.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
		return err
	})
	if err != nil {
		return maildirErr(err)
	}
	digest := newHeaderHash()
	src := &readErr{r: io.TeeReader(r, digest)}
	bw := bufio.NewWriterSize(f, 64<<10)
	_, err = copyLF(bw, src, false)
	if err == nil {
		err = bw.Flush()
	}
	if src.err != nil || err != nil {
		f.Close()
		safefs.Do(m.owner, func() error { return tmpDir.Remove(tmp) })
		if src.err != nil {
			return src.err // the download failed: the server side's error
		}
		return maildirErr(err)
	}
	m.staged = append(m.staged, stagedFile{f: f, tmp: tmp, key: key, digest: digest.Sum()})
	return nil
}

// Commit makes the staged messages durable: their files synced (in
// parallel, up to maxSyncers at once), linked into new/, new/ synced. On
// an error none counts as delivered; files already linked stay in new/,
// where the next run's Copies finds them.
func (m *maildirTarget) Commit() error {
	staged := m.staged
	m.staged = nil
	if len(staged) == 0 {
		return nil
	}
	tmpDir, newDir := m.subs[0], m.subs[1]
	defer func() {
		for _, sf := range staged {
			if sf.f != nil {
				sf.f.Close()
			}
			safefs.Do(m.owner, func() error { return tmpDir.Remove(sf.tmp) })
		}
	}()
	errs := make([]error, len(staged))
	sem := make(chan struct{}, maxSyncers)
	done := make(chan struct{})
	for i := range staged {
		sem <- struct{}{}
		go func() {
			defer func() { <-sem; done <- struct{}{} }()
			errs[i] = staged[i].f.Sync()
		}()
	}
	for range staged {
		<-done
	}
	m.syncs++ // one group
	for i := range staged {
		err := staged[i].f.Close()
		staged[i].f = nil
		if err := errors.Join(errs[i], err); err != nil {
			return maildirErr(err)
		}
	}
	now := time.Now().Unix()
	for _, sf := range staged {
		name := fmt.Sprintf("%d.%s.H%s.postoffice-fetch", now, sf.key, sf.digest)
		err := safefs.Do(m.owner, func() error { return tmpDir.Link(sf.tmp, newDir, name) })
		if err != nil {
			return maildirErr(err)
		}
	}
	m.syncs++
	if err := newDir.Sync(); err != nil {
		return maildirErr(err)
	}
	for _, sf := range staged {
		m.have[sf.key] = append(m.have[sf.key], sf.digest)
	}
	return nil
}

// Close drops what is staged and not committed, and closes the
// directories.
func (m *maildirTarget) Close() error {
	for _, sf := range m.staged {
		sf.f.Close()
		safefs.Do(m.owner, func() error { return m.subs[0].Remove(sf.tmp) })
	}
	m.staged = nil
	if m.subs[0] != nil {
		closeDirs(m.subs[:])
		m.subs = [3]*safefs.Dir{}
	}
	return nil
}

// mboxTarget appends to an mbox file in the mboxrd format: a "From " line,
// the message with ^>*From  lines quoted by one more '>', a blank line. It
// holds flock(LOCK_EX) on the file while writing, fsyncs before returning
// and cuts the file back to its old size when a delivery fails. The file
// is never a symbolic link followed, and a root fetcher opens it as its
// owner (localfs.go).
type mboxTarget struct{ path string }

func (m *mboxTarget) Copies(string) ([]string, error) { return nil, nil }

func (m *mboxTarget) Deliver(ctx context.Context, uidl string, r io.Reader) error {
	ioErr := func(err error) error {
		return &Error{Code: ExitIOErr, Err: fmt.Errorf("fetch: mbox: %w", err)}
	}
	f, err := openMbox(m.path)
	if err != nil {
		return ioErr(err)
	}
	defer f.Close()
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX); err != nil {
		return ioErr(err)
	}
	defer syscall.Flock(int(f.Fd()), syscall.LOCK_UN)
	start, err := f.Seek(0, io.SeekEnd)
	if err != nil {
		return ioErr(err)
	}
	src := &readErr{r: r}
	bw := bufio.NewWriterSize(f, 64<<10)
	fmt.Fprintf(bw, "From MAILER-DAEMON %s\n", time.Now().UTC().Format(time.ANSIC))
	nl, err := copyLF(bw, src, true)
	if err == nil && !nl {
		err = bw.WriteByte('\n')
	}
	if err == nil {
		err = bw.WriteByte('\n')
	}
	if err == nil {
		err = bw.Flush()
	}
	if err == nil {
		err = f.Sync()
	}
	if err != nil || src.err != nil {
		f.Truncate(start)
		f.Sync()
		if src.err != nil {
			return src.err
		}
		return ioErr(err)
	}
	return nil
}

// mdaTarget pipes each message to "sh -c COMMAND". Exit 0 means delivered;
// 75 (EX_TEMPFAIL) a temporary failure; anything else a failure. When the
// download fails half way the MDA is killed before its stdin is closed, so
// it never sees a truncated message as complete.
type mdaTarget struct{ command string }

func (m *mdaTarget) Copies(string) ([]string, error) { return nil, nil }

func (m *mdaTarget) Deliver(ctx context.Context, uidl string, r io.Reader) error {
	cmd := exec.Command("sh", "-c", m.command)
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return &Error{Code: ExitSoftware, Err: fmt.Errorf("fetch: mda: %w", err)}
	}
	if err := cmd.Start(); err != nil {
		return &Error{Code: ExitIOErr, Err: fmt.Errorf("fetch: mda: %w", err)}
	}
	src := &readErr{r: r}
	bw := bufio.NewWriterSize(stdin, 64<<10)
	_, werr := copyLF(bw, src, false)
	if werr == nil {
		werr = bw.Flush()
	}
	if src.err != nil {
		cmd.Process.Kill()
		cmd.Wait()
		return src.err
	}
	stdin.Close()
	err = cmd.Wait()
	var ee *exec.ExitError
	switch {
	case errors.As(err, &ee) && ee.ExitCode() == ExitTempFail:
		return &Error{Code: ExitTempFail, Err: fmt.Errorf("fetch: mda exited with status 75 (temporary failure)")}
	case err != nil:
		return &Error{Code: ExitIOErr, Err: fmt.Errorf("fetch: mda: %w", err)}
	case werr != nil && !errors.Is(werr, syscall.EPIPE):
		return &Error{Code: ExitIOErr, Err: fmt.Errorf("fetch: mda: %w", werr)}
	}
	// Exit 0 is delivery, even when the MDA stopped reading early (a filter
	// that discards the message).
	return nil
}
