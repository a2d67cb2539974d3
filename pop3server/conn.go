package pop3server

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"io"
	"log/slog"
	"net"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/postoffice-mail/postoffice/internal/wire"
	"github.com/postoffice-mail/postoffice/pop3proto"
)

type state int

const (
	stateAuthorization state = iota
	stateTransaction
)

// conn is one POP3 session.
type conn struct {
	srv  *Server
	nc   net.Conn  // as accepted; never replaced, so abort may close it from any goroutine
	tc   *tls.Conn // the TLS layer started by STLS, else nil
	info Conn
	log  *slog.Logger // adds conn, remote and user (log.go)

	// br and bw read and write the current layer: nc, or tc after STLS.
	// bw is small, or the large buffer a long reply borrowed. All are
	// pooled, and nil while the session waits for input (writer.go).
	layer net.Conn // nc, or tc after STLS
	br    *bufio.Reader
	bw    *bufio.Writer
	small *bufio.Writer // the session's reply buffer, into out
	out   replyWriter
	dw    wire.DotWriter
	tw    wire.TopWriter
	raw   *rawWaiter // waits for input on the socket (wait.go); nil: not yet, or cannot

	state       state
	sess        Session
	apopTS      string // APOP timestamp of the greeting, "" when APOP is not offered
	mbox        Mailbox
	deadline    time.Time // the read deadline of the wait for the next command
	msgs        []pop3proto.MessageInfo
	deleted     []bool
	nDeleted    int
	size        int64  // of all messages
	deletedSize int64  // of the messages marked deleted
	user        string // pending USER, then the logged-in user
	lastUser    bool   // previous command was a successful USER

	busyMu sync.Mutex
	busy   bool // running a command (Shutdown lets it finish)

	evictable evictableConn // the connection limiter's view of nc, or nil
	evicted   atomic.Bool   // set by evict, from the limiter's goroutine

	badCommands  int
	authFailures int
	commands     int // command lines run in the current state
	maxCommands  int // cap on commands in the current state; < 0: none
	quit         bool
	linger       bool // close with lingerClose: the client may still be sending

	cmdLimit func([]byte) int // c.commandLineLimit, bound once: no allocation per line

	// counters for the logout line (Dovecot's pop3_logout_format)
	retrCount, topCount int
	retrBytes, topBytes int64
	delCount            int
	delBytes            int64

	// legacy.go
	last int              // LAST: highest message number retrieved
	ww   workaroundWriter // Options.Workarounds
}

func newConn(s *Server, nc net.Conn) *conn {
	id := strconv.FormatUint(s.nextID.Add(1), 36)
	c := &conn{
		srv: s,
		nc:  nc,
		info: Conn{
			ID:         id,
			RemoteAddr: nc.RemoteAddr(),
			LocalAddr:  nc.LocalAddr(),
		},
	}
	c.info.RealRemoteAddr = directPeer(nc)
	c.log = newSessionLogger(s.log.Handler(), c)
	c.cmdLimit = c.commandLineLimit
	c.evictable = findEvictable(nc)
	return c
}

func addrString(a net.Addr) string {
	if a == nil {
		return ""
	}
	return a.String()
}

func (c *conn) abort() { c.nc.Close() }

// setBusy records whether the session is running a command. It returns
// false when the server is shutting down.
func (c *conn) setBusy(b bool) bool {
	c.busyMu.Lock()
	defer c.busyMu.Unlock()
	c.busy = b
	return !c.srv.closing()
}

// abortIfIdle closes the connection unless a command is running; a running
// command finishes and the session ends after it.
func (c *conn) abortIfIdle() {
	c.busyMu.Lock()
	defer c.busyMu.Unlock()
	if !c.busy {
		c.nc.Close()
	}
}

// evictableConn is a connection whose slot a connection limiter may give
// to a newcomer while it has not logged in (internal/netlimit with
// EvictPreLogin, as Dovecot's login processes do). The engine registers
// evict with OnEvict when the session starts and calls LoggedIn when a
// login succeeds: from then on the connection is never evicted; false
// means it has been, and the login is dropped.
type evictableConn interface {
	OnEvict(func())
	LoggedIn() bool
}

// findEvictable returns the evictableConn under nc (below an implicit TLS
// layer), or nil.
func findEvictable(nc net.Conn) evictableConn {
	if tc, ok := nc.(*tls.Conn); ok {
		nc = tc.NetConn()
	}
	if cc, ok := nc.(*corkConn); ok {
		nc = cc.Conn
	}
	e, _ := nc.(evictableConn)
	return e
}

// replyEvicted tells a client not logged in that its connection was closed
// to make room (RFC 3206 §4: temporary; it may reconnect at once).
const replyEvicted = "-ERR [SYS/TEMP] Server full, closing connections that have not logged in; reconnect and log in at once"

// evict is called by the connection limiter, from its goroutine, when it
// gives this connection's slot to a newcomer. It marks the session and
// moves the read deadline to the past, which wakes a session waiting for
// input; the session sets its deadline before it checks the mark, so one
// of the two always sees the other. The session then says why and closes
// (sayEvicted). A session busy elsewhere (a TLS handshake, a login) sees
// the mark at its next read, and a login that succeeds meanwhile is
// dropped (LoggedIn); the limiter closes the socket after a grace period in
// any case.
func (c *conn) evict() {
	c.evicted.Store(true)
	c.nc.SetReadDeadline(time.Unix(1, 0))
}

// sayEvicted answers an evicted connection (if the client still reads)
// and ends the session.
func (c *conn) sayEvicted() {
	c.log.Info("evicted: server full, not logged in")
	c.writeLine(replyEvicted)
	c.flush()
}

// errClose ends the session after the reply has been sent.
var errClose = errors.New("close")

func (c *conn) serve(ctx context.Context) {
	start := time.Now()
	defer c.close()
	defer func() {
		if r := recover(); r != nil {
			c.log.Error("panic in session", "panic", r)
		}
		c.finish(start)
	}()

	if o := c.srv.opts.Observer; o != nil {
		o.SessionStarted(&c.info)
	}
	if tc, ok := c.nc.(*tls.Conn); ok {
		if err := c.handshake(ctx, tc); err != nil {
			return
		}
	}
	c.setLayer(c.nc)

	sess, err := c.srv.opts.Backend.NewSession(ctx, &c.info)
	if err != nil {
		c.log.Error("new session failed", "err", err)
		c.writeLine("-ERR [SYS/TEMP] Service temporarily unavailable; try again in a few minutes")
		c.flush()
		return
	}
	c.sess = sess
	c.maxCommands = c.srv.opts.MaxLoginCommands
	greeting := "+OK " + c.srv.opts.Greeting
	if _, ok := sess.(APOPSession); ok {
		// RFC 1939 §7: a timestamp unique to this connection.
		c.apopTS = c.srv.apopTimestamp()
		greeting += " " + c.apopTS
	}
	c.writeLine(greeting)

	for {
		if c.br.Buffered() == 0 {
			if err := c.flush(); err != nil {
				return
			}
		}
		if !c.setBusy(false) {
			// Shutting down: end between commands, after the replies
			// already made.
			c.flush()
			return
		}
		c.deadline = time.Now().Add(c.readTimeout())
		c.nc.SetReadDeadline(c.deadline)
		// After setting the deadline, so an evict that comes later moves
		// it (see evict).
		if c.evicted.Load() {
			c.sayEvicted()
			return
		}
		line, _, err := c.readLine(c.cmdLimit)
		if err == nil || err == wire.ErrLineTooLong {
			c.setBusy(true)
		}
		if err == wire.ErrLineTooLong {
			c.lineTooLong()
			c.flush()
			return
		}
		if err != nil && c.evicted.Load() {
			c.sayEvicted()
			return
		}
		if err != nil {
			// EOF, reset, or the idle timer: end silently, no UPDATE
			// (RFC 1939 §3).
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				c.log.Info("idle timeout", "logged_in", c.state == stateTransaction)
			}
			return
		}
		if err := c.command(ctx, line); err != nil {
			if err != errClose {
				c.log.Info("session ended", "err", err)
			}
			c.flush()
			return
		}
	}
}

// readTimeout is how long the session waits for the next line: the
// pre-login timeout until login, then the idle timeout.
func (c *conn) readTimeout() time.Duration {
	if c.state == stateAuthorization {
		return c.srv.opts.PreLoginTimeout
	}
	return c.srv.opts.IdleTimeout
}

// handshake runs the TLS handshake on tc within TLSHandshakeTimeout and
// records the connection state for the backend.
func (c *conn) handshake(ctx context.Context, tc *tls.Conn) error {
	d := c.srv.opts.TLSHandshakeTimeout
	c.nc.SetDeadline(time.Now().Add(d))
	hctx, cancel := context.WithTimeout(ctx, d)
	defer cancel()
	if err := tc.HandshakeContext(hctx); err != nil {
		c.log.Info("tls handshake failed", "err", err)
		return err
	}
	c.nc.SetDeadline(time.Time{})
	st := tc.ConnectionState()
	c.info.TLS = &st
	return nil
}

// close closes the connection, with a TLS close_notify when STLS started
// one (an implicit-TLS nc sends its own).
func (c *conn) close() {
	if c.linger {
		c.lingerClose()
	}
	if c.tc != nil {
		c.tc.Close()
	}
	c.nc.Close()
	c.putWriter()
	c.putReader()
}

// commandLineLimit is the longest command line the session accepts now,
// given the start of the line (wire.ReadLineAtMost): 255 octets (RFC 2449
// §4), and maxAuthLine for an AUTH command where AUTH is possible (RFC
// 5034 §4 allows longer lines; OAuth tokens need them). No other command
// gains from more.
func (c *conn) commandLineLimit(head []byte) int {
	if c.state == stateAuthorization && isAuthHead(head) {
		if ss, _ := c.saslSession(); ss != nil {
			return maxAuthLine
		}
	}
	return maxCommandLine
}

// authLineLimit is the limit of a SASL response line.
func authLineLimit([]byte) int { return maxAuthLine }

// isAuthHead reports whether a line starts with an AUTH command that has
// an argument; a bare AUTH is short.
func isAuthHead(head []byte) bool {
	return wire.HasPrefixFoldASCII(head, "AUTH ")
}

// lineTooLong answers a command line or SASL response found longer than
// its limit and ends the session. What is left of the line has not been
// read (wire.ReadLineAtMost), so the session cannot find the next command;
// answering at once, as Dovecot does, spares the client the wait for the
// idle timeout and bounds what an endless line costs us. The close lingers
// (lingerClose) so the client can read the reply.
func (c *conn) lineTooLong() error {
	c.log.Info("line too long", "logged_in", c.state == stateTransaction)
	c.writeLine("-ERR Line too long, closing connection; reconnect and send shorter lines (a command has at most 255 octets)")
	c.linger = true
	return errClose
}

// Bounds of lingerClose.
const (
	lingerTime  = 2 * time.Second
	lingerBytes = 64 << 10
)

// lingerClose prepares the close of a connection whose client may still be
// sending: it half-closes (the client reads the reply, then end of file),
// then reads and discards what comes, at most lingerBytes for at most
// lingerTime. Closing a socket with unread input makes the kernel send a
// reset, which may destroy the reply before the client reads it. The
// bounds keep an endless sender from holding the session.
func (c *conn) lingerClose() {
	if c.tc != nil {
		c.tc.CloseWrite() // close_notify of the STLS layer
	}
	raw := c.nc
	if tc, ok := raw.(*tls.Conn); ok {
		tc.CloseWrite()
		raw = tc.NetConn()
	}
	if !closeWrite(raw) {
		// Without a half-close the client sees no end of file until the
		// connection is closed, so waiting would only delay it.
		return
	}
	raw.SetReadDeadline(time.Now().Add(lingerTime))
	io.Copy(io.Discard, io.LimitReader(raw, lingerBytes))
}

// closeWrite shuts down the sending side of the socket under nc, looking
// through wrappers that expose what they wrap (internal/netlimit's).
// It reports whether it could: a connection without a half-close (a
// net.Pipe, a wrapper that hides the socket) cannot.
func closeWrite(nc net.Conn) bool {
	for range 4 {
		switch v := nc.(type) {
		case interface{ CloseWrite() error }:
			return v.CloseWrite() == nil
		case interface{ NetConn() net.Conn }:
			nc = v.NetConn()
		case interface{ Raw() net.Conn }:
			nc = v.Raw()
		default:
			return false
		}
	}
	return false
}

// finish releases the maildrop and the session and writes the logout line.
func (c *conn) finish(start time.Time) {
	c.releaseMailbox()
	if c.sess != nil {
		if err := c.sess.Close(); err != nil {
			c.log.Error("closing session failed", "err", err)
		}
	}
	d := time.Since(start)
	if o := c.srv.opts.Observer; o != nil {
		o.SessionEnded(&c.info, SessionStats{
			Duration: d, LoggedIn: c.state == stateTransaction,
			Retr: c.retrCount, RetrBytes: c.retrBytes, Top: c.topCount, TopBytes: c.topBytes,
			Deleted: c.delCount, DeletedBytes: c.delBytes,
		})
	}
	dur := slog.Duration("duration", d.Round(time.Millisecond))
	if c.state == stateTransaction || c.retrCount+c.topCount+c.delCount > 0 {
		c.logAttrs(&siteDisconnected, slog.LevelInfo, "disconnected", dur,
			slog.String("top", countBytes(c.topCount, c.topBytes)),
			slog.String("retr", countBytes(c.retrCount, c.retrBytes)),
			slog.String("del", countBytes(c.delCount, c.delBytes)),
			slog.Int64("size", c.size), slog.Bool("quit", c.quit))
		return
	}
	c.logAttrs(&siteDisconnectedEarly, slog.LevelInfo, "disconnected", dur)
}

// Call sites of logAttrs.
var siteLoggedIn, siteDisconnected, siteDisconnectedEarly logSite

// countBytes formats a count and its octets for the logout line: "3/1024".
func countBytes(n int, octets int64) string {
	var b [40]byte
	s := strconv.AppendInt(b[:0], int64(n), 10)
	s = append(s, '/')
	return string(strconv.AppendInt(s, octets, 10))
}

// releaseMailbox closes the maildrop (releasing its lock) if one is open.
func (c *conn) releaseMailbox() {
	if c.mbox == nil {
		return
	}
	if err := c.mbox.Close(); err != nil {
		c.log.Error("closing maildrop failed", "err", err)
	}
	c.mbox = nil
}

func (c *conn) writeLine(s string) {
	c.bw.WriteString(s)
	c.bw.WriteString("\r\n")
}

// bad answers a bad command and reports whether the session must end.
func (c *conn) bad(reply string) bool {
	c.badCommands++
	if c.badCommands >= c.srv.opts.MaxBadCommands {
		c.writeLine("-ERR Too many bad commands, closing connection; reconnect and send CAPA for the commands this server supports")
		c.flush()
		return true
	}
	c.writeLine(reply)
	return false
}

func (c *conn) badErr(reply string) error {
	if c.bad(reply) {
		return errClose
	}
	return nil
}

// command runs one command line. A non-nil error ends the session.
func (c *conn) command(ctx context.Context, line []byte) error {
	// RFC 1939 §3: keyword, then arguments separated by single spaces.
	// Keywords are case-insensitive. The keyword and, for the commands of
	// a download, the arguments are looked at in place: no allocation.
	kwb, a := line, []byte(nil)
	if i := bytes.IndexByte(line, ' '); i >= 0 {
		kwb, a = line[:i], line[i+1:]
	}
	kw := keyword(kwb)
	wasUser := c.lastUser
	c.lastUser = false

	if c.commands++; c.maxCommands >= 0 && c.commands > c.maxCommands && kw != "QUIT" {
		if c.state == stateAuthorization {
			c.log.Info("too many commands", "commands", c.commands-1)
			c.writeLine("-ERR Too many commands before login, closing connection; reconnect and log in")
			return errClose
		}
		if c.commands == c.maxCommands+1 {
			c.log.Info("too many commands", "commands", c.commands-1)
		}
		// QUIT still commits: a client at the cap loses no deletions.
		return c.badErr("-ERR Too many commands in this session: send QUIT to keep your deletions, then reconnect")
	}

	switch kw {
	case "CAPA":
		return c.cmdCapa()
	case "UTF8":
		return c.cmdUTF8(string(a))
	case "LANG":
		return c.cmdLang(string(a))
	case "NOOP":
		if c.state != stateTransaction {
			return c.badErr("-ERR NOOP is only valid after login: log in first")
		}
		c.writeLine("+OK")
		return nil
	case "QUIT":
		return c.cmdQuit(ctx)
	}
	if c.state == stateAuthorization {
		switch kw {
		case "USER":
			return c.cmdUser(string(a))
		case "PASS":
			// RFC 1939 §7: the password is the rest of the line, spaces
			// included.
			return c.cmdPass(ctx, string(a), wasUser)
		case "APOP":
			return c.cmdAPOP(ctx, string(a))
		case "AUTH":
			return c.cmdAuth(ctx, string(a))
		case "STLS":
			return c.cmdSTLS(ctx, string(a))
		case "RPOP":
			return c.cmdRPOP(ctx, string(a), wasUser)
		case "XTND":
			return c.cmdXtndNotLoggedIn()
		case "STAT", "LIST", "RETR", "DELE", "RSET", "TOP", "UIDL":
			return c.badErr("-ERR Not logged in: log in first with USER and PASS, APOP or AUTH")
		}
		return c.badErr("-ERR Unknown command: send CAPA for the commands this server supports")
	}
	switch kw {
	case "STAT":
		return c.cmdStat(a)
	case "LIST":
		return c.cmdList(a, false)
	case "UIDL":
		return c.cmdList(a, true)
	case "RETR":
		return c.cmdRetr(ctx, a)
	case "TOP":
		return c.cmdTop(ctx, a)
	case "DELE":
		return c.cmdDele(a)
	case "RSET":
		return c.cmdRset(a)
	case "LAST":
		return c.cmdLast(a)
	case "*ENV":
		return c.cmdEnv(ctx, a)
	case "XTND":
		return c.cmdXtnd(ctx, a)
	case "USER", "PASS", "APOP", "AUTH", "STLS", "RPOP":
		return c.badErr("-ERR Already logged in: QUIT and reconnect to log in again")
	}
	if kw == "" {
		if handled, err := c.extCommand(ctx, kwb, a); handled || err != nil {
			return err
		}
	}
	return c.badErr("-ERR Unknown command: send CAPA for the commands this server supports")
}

// cmdCapa lists capabilities (RFC 2449 §5); valid in both states. What
// depends on the connection (USER and SASL under the plaintext rule, STLS
// before TLS) is computed now, so a CAPA after STLS sees the change.
// RFC 2449 §5: capabilities of the AUTHORIZATION state are announced in
// both states (SASL, STLS); USER is listed only before login, as before.
// APOP has no tag (RFC 2449 §6): the greeting's timestamp announces it.
func (c *conn) cmdCapa() error {
	o := &c.srv.opts
	c.writeLine("+OK Capability list follows")
	c.writeLine("TOP")
	c.writeLine("UIDL")
	if c.state == stateAuthorization && c.plaintextOK() {
		c.writeLine("USER")
	}
	if mechs := c.mechanisms(); len(mechs) > 0 {
		c.writeLine("SASL " + strings.Join(mechs, " "))
	}
	if c.stlsAvailable() {
		c.writeLine("STLS")
	}
	c.writeLine("RESP-CODES")
	c.writeLine("AUTH-RESP-CODE")
	c.writeLine("PIPELINING")
	// RFC 6856 §2, §3: UTF8 with USER (UTF-8 user names and passwords),
	// and LANG.
	c.writeLine("UTF8 USER")
	c.writeLine("LANG")
	if o.LoginDelay > 0 {
		c.writeLine("LOGIN-DELAY " + strconv.Itoa(int(o.LoginDelay/time.Second)))
	}
	expire := o.Expire
	if e, ok := c.mbox.(ExpireMailbox); ok && c.state != stateAuthorization {
		// RFC 2449 §6.7: after login, the user's own value, without USER.
		if v := e.Expire(); v != "" {
			expire = v
		}
	}
	if expire != "" {
		c.writeLine("EXPIRE " + expire)
	}
	c.extCapa()
	c.capaLegacy()
	c.writeLine("IMPLEMENTATION " + o.Implementation)
	c.writeLine(".")
	return nil
}

// keywords are the commands the engine knows (RFC 1939, 2449, 2595,
// 5034, 6856; LAST, RPOP and SDPS's *ENV in legacy.go, XTND in xtnd.go),
// upper case.
var keywords = [...]string{"CAPA", "UTF8", "LANG", "NOOP", "QUIT", "USER", "PASS", "APOP",
	"AUTH", "STLS", "STAT", "LIST", "UIDL", "RETR", "TOP", "DELE", "RSET", "LAST", "RPOP", "*ENV", "XTND"}

// keyword returns the known keyword kw is, or "". RFC 1939 §3: keywords
// are case-insensitive ASCII, so only 'a'-'z' fold: a non-ASCII byte makes
// an unknown command, even where Unicode folds the letter onto an ASCII
// one ("ſtat" with U+017F, "lıst" with U+0131: strings.ToUpper would make
// them STAT and LIST). It does not allocate.
func keyword(kw []byte) string {
	var buf [4]byte
	if len(kw) > len(buf) {
		return ""
	}
	for i, ch := range kw {
		if 'a' <= ch && ch <= 'z' {
			ch -= 'a' - 'A'
		}
		buf[i] = ch
	}
	return knownKeyword(buf[:len(kw)])
}

func knownKeyword(b []byte) string {
	for _, k := range keywords {
		if string(b) == k {
			return k
		}
	}
	return ""
}
