// Package lmtp is postoffice's mail intake: an LMTP server (RFC 2033) that
// an MTA such as Postfix hands mail to, over TCP or a unix socket, and the
// delivery steps it shares with the local delivery agent ("postoffice
// deliver"): resolving a recipient in the user database and prefixing the
// Return-Path and Delivered-To header fields, as Dovecot's LMTP does. It
// also holds the LMTP and SMTP client (Dial, client.go) that "postoffice
// fetch" forwards mail through.
//
// It owns the only import of github.com/emersion/go-smtp (a v0 API), which
// runs the LHLO/MAIL/RCPT/DATA state machine, dot-unstuffing, SIZE,
// 8BITMIME, PIPELINING and the per-recipient replies after DATA, and
// speaks the client side.
//
// Implementation notes (invariants):
//   - RCPT looks the recipient up (Resolve): unknown users get 550 5.1.1, a
//     failing user database 451 4.3.0. Nothing is written for a refused
//     recipient. Names are looked up exactly (auth.DB.Lookup): the
//     "user+domain" login alias never applies to a recipient, so no address
//     at any domain can reach another domain's user.
//   - Plus-addressing (RecipientDelimiter, as Postfix's recipient_delimiter
//     and Dovecot's): "user+detail@domain" is delivered to user@domain when
//     no user is named exactly "user+detail@domain". The detail selects no
//     folder (a POP3 maildrop has only its inbox); it is kept, as Postfix's
//     local(8) keeps it, only in the Delivered-To field, which carries the
//     recipient address as the MTA gave it.
//   - DATA is spooled once into an unlinked temporary file (SpoolDir), so a
//     message is never held in memory and a crash leaves no spool behind;
//     each recipient then gets its own copy read from the spool with its own
//     header fields in front (io.MultiReader).
//   - RFC 2033 §4.2: after DATA there is one reply per accepted recipient.
//     250 is sent only after store.Store.Deliver returned nil, that is once
//     the message is durable. A failed Deliver answers 451 4.3.0 (452 4.3.1 when the disk is full) for that
//     recipient; the store guarantees it left nothing a POP3 session sees.
//   - A message larger than MaxMessageSize is refused with 552 5.3.4, at
//     MAIL when the client declares SIZE (RFC 1870), else during DATA.
//   - Quota (optional, per user: octets and messages) is checked at RCPT, for
//     a maildrop already full, and before each delivery, for the message at
//     hand: 452 4.2.2 by default, 552 5.2.2 when Permanent (RFC 3463 X.2.2).
//     Usage comes from the store's Usage method (for a Maildir, the ",S="
//     sizes in its file names). POP3 sessions never see quotas.
//   - Client-facing text never shows paths or internal errors; the log does.
package lmtp

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/emersion/go-smtp"

	"github.com/postoffice-mail/postoffice/internal/auth"
	"github.com/postoffice-mail/postoffice/internal/store"
)

// DefaultMaxMessageSize is the message size limit when Options leaves it 0.
const DefaultMaxMessageSize = 50 << 20

// Options configures a Server. Users and Store are required.
type Options struct {
	Users auth.DB     // recipients are looked up here (required)
	Store store.Store // messages are delivered here (required)
	// Logger receives one line per delivery and go-smtp's internal errors;
	// nil discards.
	Logger *slog.Logger
	// Hostname is announced in the greeting and the LHLO reply; "" means
	// os.Hostname().
	Hostname string
	// MaxMessageSize bounds a message in octets, as received (before the
	// added header fields); 0 means DefaultMaxMessageSize.
	MaxMessageSize int64
	// MaxRecipients bounds RCPT commands per transaction; 0 means 1000.
	MaxRecipients int
	// SpoolDir holds the (unlinked) spool file of each DATA; "" means
	// os.TempDir().
	SpoolDir string
	// ReadTimeout and WriteTimeout bound each read and write on a
	// connection; 0 means 5 minutes (RFC 5321 §4.5.3.2 suggests 5 to 10).
	ReadTimeout, WriteTimeout time.Duration
	// Quota is checked at RCPT (a full maildrop) and before each delivery
	// (the message would not fit); the zero value limits nothing.
	Quota Quota
	// RecipientDelimiter is the set of characters that separate a local
	// part from its detail ("+" makes alice+news@example.org deliver to
	// alice@example.org); see Resolve. "" turns plus-addressing off.
	RecipientDelimiter string
	// OnDelivery, if set, is told the result of each delivery to one
	// recipient after DATA (e.g. to count it in a metric): one of the
	// Result constants, the message's size as received, and how long the
	// store took (for ResultDelivered). It must not block.
	OnDelivery func(result string, size int64, d time.Duration)
	// Drop, if set, names the multi-drop maildrop (SDPS,
	// internal/legacy/sdps) a recipient address delivers to: every
	// recipient at a multi-drop domain goes to the drop's user, looked up
	// exactly, whatever its local part. The address stays the copy's
	// Delivered-To, which is how the drop remembers its recipient.
	Drop func(rcpt string) (user string, ok bool)
}

// MaxLineLength is the longest LMTP command or DATA line accepted, in
// octets; a longer one is answered 500 5.4.0 and the connection closed.
const MaxLineLength = 2000

// Delivery results, as passed to Options.OnDelivery.
const (
	ResultDelivered = "delivered"
	ResultOverQuota = "over_quota" // 552 or 452 from the quota check
	ResultFull      = "full"       // 452 4.3.1: the file system is full
	ResultFailed    = "failed"     // any other temporary failure of the store
)

// Server is an LMTP server. Serve may be called for several listeners.
type Server struct {
	opts   Options
	log    *slog.Logger
	smtp   *smtp.Server
	ctx    context.Context // canceled by Close: aborts deliveries in flight
	cancel context.CancelFunc
	ids    atomic.Uint64

	mu       sync.Mutex
	sessions map[*session]struct{} // open connections
	closing  bool                  // Shutdown started
}

// New returns a Server for opts.
func New(opts Options) (*Server, error) {
	if opts.Users == nil || opts.Store == nil {
		return nil, errors.New("lmtp: Options.Users and Options.Store are required")
	}
	if opts.MaxMessageSize < 0 || opts.MaxRecipients < 0 || opts.ReadTimeout < 0 || opts.WriteTimeout < 0 {
		return nil, errors.New("lmtp: negative limit in Options")
	}
	if opts.Quota.Enabled() && !canMeasure(opts.Store) {
		return nil, errors.New("lmtp: Options.Quota is set but the store cannot report usage")
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.Hostname == "" {
		h, err := os.Hostname()
		if err != nil {
			return nil, fmt.Errorf("lmtp: hostname: %w", err)
		}
		opts.Hostname = h
	}
	if opts.MaxMessageSize == 0 {
		opts.MaxMessageSize = DefaultMaxMessageSize
	}
	if opts.MaxRecipients == 0 {
		opts.MaxRecipients = 1000
	}
	if opts.SpoolDir == "" {
		opts.SpoolDir = os.TempDir()
	}
	if opts.ReadTimeout == 0 {
		opts.ReadTimeout = 5 * time.Minute
	}
	if opts.WriteTimeout == 0 {
		opts.WriteTimeout = 5 * time.Minute
	}
	s := &Server{opts: opts, log: opts.Logger, sessions: make(map[*session]struct{})}
	s.ctx, s.cancel = context.WithCancel(context.Background())
	ss := smtp.NewServer(smtp.BackendFunc(s.newSession))
	ss.LMTP = true
	ss.Domain = opts.Hostname
	ss.MaxMessageBytes = opts.MaxMessageSize
	ss.MaxRecipients = opts.MaxRecipients
	// go-smtp (v0.25) counts the octets of each line as they are read, in
	// commands and in DATA, and once a line passes MaxLineLength it answers
	// "500 5.4.0 Too long line, closing connection" and closes: at once,
	// without waiting for the line's end, so an endless line costs one
	// read buffer, not ReadTimeout. RFC 5321 §4.5.3.1 allows 512 octets
	// for a command and 1,000 for a text line; Postfix's LMTP client folds
	// longer lines (lmtp_line_length_limit, 998). 2,000, go-smtp's
	// default, set here so the bound does not move with the library, leaves
	// room for a sender that does not fold. BDAT chunks are exempt (go-smtp
	// lifts the limit for them; MaxMessageBytes still applies).
	ss.MaxLineLength = MaxLineLength
	ss.ReadTimeout = opts.ReadTimeout
	ss.WriteTimeout = opts.WriteTimeout
	ss.ErrorLog = slogAdapter{opts.Logger}
	s.smtp = ss
	return s, nil
}

// Serve accepts LMTP connections on l until Close or Shutdown. It returns
// nil after Close or Shutdown.
func (s *Server) Serve(l net.Listener) error {
	err := s.smtp.Serve(l)
	if errors.Is(err, smtp.ErrServerClosed) || s.ctx.Err() != nil {
		return nil
	}
	if err != nil {
		return fmt.Errorf("lmtp: %w", err)
	}
	return nil
}

// Shutdown closes the listeners and waits until the connections have ended
// or ctx is done; then it closes what is left, aborting deliveries in flight
// (they answer nothing and leave nothing visible).
func (s *Server) Shutdown(ctx context.Context) error {
	// go-smtp's Shutdown waits for connections to end, and an MTA keeps idle
	// LMTP connections open: close those not inside a transaction now, and
	// the others as soon as their transaction has been answered.
	s.mu.Lock()
	s.closing = true
	for sess := range s.sessions {
		if !sess.busy {
			go sess.conn.Close()
		}
	}
	s.mu.Unlock()
	err := s.smtp.Shutdown(ctx)
	if err != nil {
		s.Close()
	}
	s.cancel()
	if errors.Is(err, smtp.ErrServerClosed) {
		return nil
	}
	return err
}

// Close closes the listeners and every connection at once.
func (s *Server) Close() error {
	s.cancel()
	if err := s.smtp.Close(); err != nil && !errors.Is(err, smtp.ErrServerClosed) {
		return fmt.Errorf("lmtp: %w", err)
	}
	return nil
}

// ListenUnix listens on a unix socket at path with the given permissions.
// A stale socket file (left by a killed server: nothing accepts on it) is
// removed first; a live one is an error, as is any other kind of file.
func ListenUnix(path string, mode os.FileMode) (net.Listener, error) {
	if fi, err := os.Lstat(path); err == nil {
		if fi.Mode().Type() != os.ModeSocket {
			return nil, fmt.Errorf("lmtp: %s exists and is not a socket", path)
		}
		if c, err := net.DialTimeout("unix", path, time.Second); err == nil {
			c.Close()
			return nil, fmt.Errorf("lmtp: %s is in use by another server", path)
		}
		if err := os.Remove(path); err != nil {
			return nil, fmt.Errorf("lmtp: removing stale socket: %w", err)
		}
	}
	l, err := net.Listen("unix", path)
	if err != nil {
		return nil, fmt.Errorf("lmtp: %w", err)
	}
	if err := os.Chmod(path, mode); err != nil {
		l.Close()
		return nil, fmt.Errorf("lmtp: %w", err)
	}
	return l, nil
}

// slogAdapter turns go-smtp's Printf-style logger (which would write to
// os.Stderr) into slog records.
//
// go-smtp reports there its own failures (a panic in a session, an accept
// that fails, a TLS handshake that fails) and also every connection that
// ended with an error other than a clean close: a client that resets the
// connection (Python's smtplib.LMTP closing right after QUIT, an MTA's
// cached connection cut by a firewall), a write to a client that has gone
// (EPIPE), an EOF in the middle of a TLS handshake, a timeout. Those are
// the peer's doing, and nothing was lost: a message is accepted only once
// its 250 is written after the durable delivery, and a client that goes
// away earlier retries. They are logged at debug level, as Dovecot logs a
// client's disconnection at info, not error; the rest stays at error.
type slogAdapter struct{ log *slog.Logger }

func (a slogAdapter) Printf(format string, v ...any) {
	a.report(!strings.HasPrefix(format, "panic") && peerGone(v), strings.TrimSpace(fmt.Sprintf(format, v...)))
}

func (a slogAdapter) Println(v ...any) {
	a.report(peerGone(v), strings.TrimSpace(fmt.Sprintln(v...)))
}

func (a slogAdapter) report(peer bool, detail string) {
	if peer {
		a.log.Debug("lmtp connection ended by the network", "detail", detail)
		return
	}
	a.log.Error("lmtp library error", "detail", detail)
}

// peerGone reports whether one of go-smtp's log arguments is a network
// error that says the other end went away or fell silent: a reset, a
// broken pipe, an EOF, a connection already closed, a timeout.
func peerGone(v []any) bool {
	for _, x := range v {
		err, ok := x.(error)
		if !ok {
			continue
		}
		if errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE) ||
			errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) ||
			errors.Is(err, net.ErrClosed) || errors.Is(err, os.ErrDeadlineExceeded) {
			return true
		}
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			return true
		}
	}
	return false
}

// Replies the backend sends (RFC 3463 enhanced codes).
var (
	errUnknownUser = &smtp.SMTPError{Code: 550, EnhancedCode: smtp.EnhancedCode{5, 1, 1}, Message: "No such user here"}
	errTempLookup  = &smtp.SMTPError{Code: 451, EnhancedCode: smtp.EnhancedCode{4, 3, 0}, Message: "Temporary user lookup failure, try again later"}
	errTempStore   = &smtp.SMTPError{Code: 451, EnhancedCode: smtp.EnhancedCode{4, 3, 0}, Message: "Temporary delivery failure, try again later"}
	errTooLarge    = &smtp.SMTPError{Code: 552, EnhancedCode: smtp.EnhancedCode{5, 3, 4}, Message: "Message too big"}
	errSpool       = &smtp.SMTPError{Code: 451, EnhancedCode: smtp.EnhancedCode{4, 3, 0}, Message: "Temporary failure receiving message, try again later"}
	// RFC 3463 X.3.1 "mail system full": the file system is out of space
	// or inodes; more precise than 4.3.0, and still temporary.
	errStoreFull = &smtp.SMTPError{Code: 452, EnhancedCode: smtp.EnhancedCode{4, 3, 1}, Message: "Mail system full, try again later"}
	// saved is a success reply: go-smtp writes a *SMTPError's code as is,
	// and its own default text ("queued") would misstate what happened.
	saved = &smtp.SMTPError{Code: 250, EnhancedCode: smtp.EnhancedCode{2, 0, 0}, Message: "Saved"}
)

// Resolve finds the user a recipient address delivers to. It tries the
// address as given, then in lower case, then (for user@domain where the
// database holds bare names) its local part in lower case, as Dovecot's
// auth_username_format = %Ln does. When none exists and the local part holds
// one of the characters of delimiters, it tries the same three forms with
// the local part cut at the first of them: "alice+news@example.org" is
// alice@example.org's, as Postfix's recipient_delimiter splits it (the split
// needs a non-empty part before the delimiter). An exact user always wins
// over the split.
//
// Names are looked up exactly (auth.DB.Lookup): the "user+domain" login
// alias never applies, so "alice+example.org@attacker.test" is not
// alice@example.org's. It returns auth.ErrUnknownUser when no user exists;
// any other error is temporary.
func Resolve(ctx context.Context, db auth.DB, rcpt, delimiters string) (auth.User, error) {
	u, err := resolveExact(ctx, db, rcpt)
	if !errors.Is(err, auth.ErrUnknownUser) || delimiters == "" {
		return u, err
	}
	local, domain := rcpt, ""
	if i := strings.LastIndexByte(rcpt, '@'); i >= 0 {
		local, domain = rcpt[:i], rcpt[i:]
	}
	if i := strings.IndexAny(local, delimiters); i > 0 {
		return resolveExact(ctx, db, local[:i]+domain)
	}
	return auth.User{}, auth.ErrUnknownUser
}

// resolveExact tries rcpt as given, in lower case, and its local part in
// lower case.
func resolveExact(ctx context.Context, db auth.DB, rcpt string) (auth.User, error) {
	cands := []string{rcpt}
	if l := strings.ToLower(rcpt); l != rcpt {
		cands = append(cands, l)
	}
	if i := strings.LastIndexByte(rcpt, '@'); i > 0 {
		cands = append(cands, strings.ToLower(rcpt[:i]))
	}
	for _, c := range cands {
		u, err := db.Lookup(ctx, c)
		if err == nil {
			return u, nil
		}
		if !errors.Is(err, auth.ErrUnknownUser) {
			return auth.User{}, err
		}
	}
	return auth.User{}, auth.ErrUnknownUser
}

// Header returns the header fields Dovecot's LMTP and LDA put in front of a
// delivered message: "Return-Path: <from>" and "Delivered-To: <rcpt>", each
// ended by eol ("\r\n" or "\n", matching the message).
func Header(from, rcpt, eol string) string {
	return "Return-Path: <" + clean(from) + ">" + eol + "Delivered-To: <" + clean(rcpt) + ">" + eol
}

// clean drops characters that would break a header line.
func clean(s string) string {
	return strings.Map(func(r rune) rune {
		if r == '\r' || r == '\n' || r == 0 || r == '<' || r == '>' {
			return -1
		}
		return r
	}, s)
}

// recipient is one accepted RCPT.
type recipient struct {
	addr string // as given in RCPT TO, the key of go-smtp's status
	user string // store user name (auth.User.Name)
}

// session is one LMTP connection's transaction state.
type session struct {
	srv    *Server
	id     uint64
	remote string
	conn   *smtp.Conn
	from   string
	rcpts  []recipient
	busy   bool // inside a transaction (MAIL to its end); guarded by srv.mu
}

var errShuttingDown = &smtp.SMTPError{Code: 421, EnhancedCode: smtp.EnhancedCode{4, 3, 2}, Message: "Server shutting down"}

func (s *Server) newSession(c *smtp.Conn) (smtp.Session, error) {
	sess := &session{srv: s, id: s.ids.Add(1), remote: c.Conn().RemoteAddr().String(), conn: c}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closing {
		return nil, errShuttingDown
	}
	s.sessions[sess] = struct{}{}
	return sess, nil
}

var _ smtp.LMTPSession = (*session)(nil)

// Reset ends a transaction. go-smtp calls it with the connection's lock
// held, after the replies to DATA are written.
func (s *session) Reset() {
	s.from = ""
	s.rcpts = nil
	s.srv.mu.Lock()
	s.busy = false
	closing := s.srv.closing
	s.srv.mu.Unlock()
	if closing {
		go s.conn.Close() // waits for the lock, so after this command
	}
}

func (s *session) Logout() error {
	s.srv.mu.Lock()
	delete(s.srv.sessions, s)
	s.srv.mu.Unlock()
	return nil
}

func (s *session) Mail(from string, _ *smtp.MailOptions) error {
	// A declared SIZE above MaxMessageSize never gets here: go-smtp
	// answers 552 5.3.4 itself (MaxMessageBytes, RFC 1870 §6.1).
	s.from = ""
	s.rcpts = nil
	s.srv.mu.Lock()
	closing := s.srv.closing
	s.busy = !closing
	s.srv.mu.Unlock()
	if closing {
		return errShuttingDown
	}
	s.from = from
	return nil
}

func (s *session) Rcpt(to string, _ *smtp.RcptOptions) error {
	var u auth.User
	var err error
	if drop, ok := s.dropOf(to); ok {
		u, err = s.srv.opts.Users.Lookup(s.srv.ctx, drop)
	} else {
		u, err = Resolve(s.srv.ctx, s.srv.opts.Users, to, s.srv.opts.RecipientDelimiter)
	}
	switch {
	case errors.Is(err, auth.ErrUnknownUser):
		s.srv.log.Info("lmtp unknown recipient", "conn", s.id, "remote", s.remote, "rcpt", to)
		return errUnknownUser
	case err != nil:
		s.srv.log.Error("lmtp user lookup failed", "conn", s.id, "remote", s.remote, "rcpt", to, "err", err)
		return errTempLookup
	}
	if err := s.checkQuota(u.Name, 0); err != nil {
		return err
	}
	s.rcpts = append(s.rcpts, recipient{addr: to, user: u.Name})
	return nil
}

// dropOf returns the multi-drop user of a recipient (Options.Drop).
func (s *session) dropOf(rcpt string) (string, bool) {
	if f := s.srv.opts.Drop; f != nil {
		return f(rcpt)
	}
	return "", false
}

// Data is the SMTP form; over LMTP go-smtp calls LMTPData instead. Should
// it ever be called, one reply covers every recipient, so any failed
// recipient fails the whole message (the client retries; a duplicate beats
// a loss).
func (s *session) Data(r io.Reader) error {
	var first firstError
	if err := s.LMTPData(r, &first); err != nil {
		return err
	}
	return first.err
}

// firstError is a StatusCollector that keeps the first failure.
type firstError struct{ err error }

func (f *firstError) SetStatus(_ string, err error) {
	if f.err == nil {
		f.err = err
	}
}

// LMTPData spools the message once and delivers a copy to each recipient,
// reporting each result (RFC 2033 §4.2).
func (s *session) LMTPData(r io.Reader, status smtp.StatusCollector) error {
	spool, size, err := s.spool(r)
	if err != nil {
		return err
	}
	defer spool.Close()
	ctx := s.srv.ctx
	for _, rc := range s.rcpts {
		body := io.NewSectionReader(spool, 0, size)
		hdr := Header(s.from, rc.addr, "\r\n")
		if err := s.checkQuota(rc.user, size+int64(len(hdr))); err != nil {
			r := ResultOverQuota
			if err == errTempStore {
				r = ResultFailed
			}
			s.srv.observe(r, size, 0)
			status.SetStatus(rc.addr, err)
			continue
		}
		msg := io.MultiReader(strings.NewReader(hdr), body)
		start := time.Now()
		if err := s.srv.opts.Store.Deliver(ctx, rc.user, msg); err != nil {
			s.srv.log.Error("lmtp delivery failed", "conn", s.id, "remote", s.remote, "user", rc.user, "err", err)
			reply := tempError(err, errTempStore)
			r := ResultFailed
			if reply == errStoreFull {
				r = ResultFull
			}
			s.srv.observe(r, size, 0)
			status.SetStatus(rc.addr, reply)
			continue
		}
		d := time.Since(start)
		s.srv.observe(ResultDelivered, size, d)
		s.srv.log.Info("lmtp delivered", "conn", s.id, "remote", s.remote, "user", rc.user,
			"size", size, "duration", d.Round(time.Microsecond))
		status.SetStatus(rc.addr, saved)
	}
	return nil
}

// observe calls Options.OnDelivery, if set.
func (s *Server) observe(result string, size int64, d time.Duration) {
	if f := s.opts.OnDelivery; f != nil {
		f(result, size, d)
	}
}

// tempError is the reply for a failed write: 452 4.3.1 when the file
// system is full, else def.
func tempError(err error, def *smtp.SMTPError) *smtp.SMTPError {
	if errors.Is(err, syscall.ENOSPC) || errors.Is(err, syscall.EDQUOT) {
		return errStoreFull
	}
	return def
}

// spool copies the message into an unlinked temporary file.
func (s *session) spool(r io.Reader) (*os.File, int64, error) {
	f, err := os.CreateTemp(s.srv.opts.SpoolDir, "postoffice-lmtp-*")
	if err != nil {
		s.srv.log.Error("lmtp spool failed", "conn", s.id, "err", err)
		return nil, 0, tempError(err, errSpool)
	}
	os.Remove(f.Name()) // unlinked: gone with the descriptor, even after a crash
	bw := bufio.NewWriterSize(f, 64<<10)
	n, err := io.Copy(bw, r)
	if err == nil {
		err = bw.Flush()
	}
	if err != nil {
		f.Close()
		if errors.Is(err, smtp.ErrDataTooLarge) {
			s.srv.log.Info("lmtp message too large", "conn", s.id, "remote", s.remote, "limit", s.srv.opts.MaxMessageSize)
			return nil, 0, errTooLarge
		}
		var se *smtp.SMTPError
		if errors.As(err, &se) {
			return nil, 0, err
		}
		s.srv.log.Error("lmtp spool failed", "conn", s.id, "remote", s.remote, "err", err)
		return nil, 0, tempError(err, errSpool)
	}
	return f, n, nil
}

// checkQuota returns the reply for a recipient that is over quota (or whose
// usage cannot be measured), nil if size more octets fit.
func (s *session) checkQuota(user string, size int64) error {
	q := s.srv.opts.Quota
	err := CheckQuota(s.srv.ctx, s.srv.opts.Store, q, user, size)
	switch {
	case err == nil:
		return nil
	case errors.Is(err, ErrOverQuota):
		s.srv.log.Info("lmtp over quota", "conn", s.id, "remote", s.remote, "user", user, "size", size)
		return quotaReply(q)
	default:
		s.srv.log.Error("lmtp quota check failed", "conn", s.id, "remote", s.remote, "user", user, "err", err)
		return errTempStore
	}
}
