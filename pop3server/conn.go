package pop3server

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/postoffice-mail/postoffice/internal/wire"
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
	msgs        []MessageInfo
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
	e, _ := nc.(evictableConn)
	return e
}

// replyEvicted tells a client not logged in that its connection was closed
// to make room (RFC 3206 §4: temporary; it may reconnect at once).
const replyEvicted = "-ERR [SYS/TEMP] Server full, closing connections that have not logged in"

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
		c.writeLine("-ERR [SYS/TEMP] Service unavailable, try again later")
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
		c.nc.SetReadDeadline(time.Now().Add(c.readTimeout()))
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
		if _, ok := c.sess.(SASLSession); ok {
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
	return len(head) >= 5 && strings.EqualFold(string(head[:5]), "AUTH ")
}

// lineTooLong answers a command line or SASL response found longer than
// its limit and ends the session. What is left of the line has not been
// read (wire.ReadLineAtMost), so the session cannot find the next command;
// answering at once, as Dovecot does, spares the client the wait for the
// idle timeout and bounds what an endless line costs us. The close lingers
// (lingerClose) so the client can read the reply.
func (c *conn) lineTooLong() error {
	c.log.Info("line too long", "logged_in", c.state == stateTransaction)
	c.writeLine("-ERR Line too long, closing connection")
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
	closeWrite(raw)
	raw.SetReadDeadline(time.Now().Add(lingerTime))
	io.Copy(io.Discard, io.LimitReader(raw, lingerBytes))
}

// closeWrite shuts down the sending side of the socket under nc, looking
// through wrappers that expose what they wrap (internal/netlimit's).
func closeWrite(nc net.Conn) {
	for range 4 {
		switch v := nc.(type) {
		case interface{ CloseWrite() error }:
			v.CloseWrite()
			return
		case interface{ NetConn() net.Conn }:
			nc = v.NetConn()
		case interface{ Raw() net.Conn }:
			nc = v.Raw()
		default:
			return
		}
	}
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
	attrs := []any{"duration", d.Round(time.Millisecond)}
	if c.state == stateTransaction || c.retrCount+c.topCount+c.delCount > 0 {
		attrs = append(attrs, "top", fmt.Sprintf("%d/%d", c.topCount, c.topBytes),
			"retr", fmt.Sprintf("%d/%d", c.retrCount, c.retrBytes),
			"del", fmt.Sprintf("%d/%d", c.delCount, c.delBytes),
			"size", c.size, "quit", c.quit)
	}
	c.log.Info("disconnected", attrs...)
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
		c.writeLine("-ERR Too many bad commands, closing connection")
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
			c.writeLine("-ERR Too many commands, closing connection")
			return errClose
		}
		if c.commands == c.maxCommands+1 {
			c.log.Info("too many commands", "commands", c.commands-1)
		}
		// QUIT still commits: a client at the cap loses no deletions.
		return c.badErr("-ERR Too many commands, only QUIT is accepted")
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
			return c.badErr("-ERR NOOP is only valid after login")
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
			// included (CONFORMANCE 22).
			return c.cmdPass(ctx, string(a), wasUser)
		case "APOP":
			return c.cmdAPOP(ctx, string(a))
		case "AUTH":
			return c.cmdAuth(ctx, string(a))
		case "STLS":
			return c.cmdSTLS(ctx, string(a))
		case "STAT", "LIST", "RETR", "DELE", "RSET", "TOP", "UIDL", "LAST":
			return c.badErr("-ERR Not logged in")
		}
		return c.badErr("-ERR Unknown command")
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
	case "USER", "PASS", "APOP", "AUTH", "STLS":
		return c.badErr("-ERR Already logged in")
	}
	return c.badErr("-ERR Unknown command")
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
	if o.Expire != "" {
		c.writeLine("EXPIRE " + o.Expire)
	}
	c.writeLine("IMPLEMENTATION " + o.Implementation)
	c.writeLine(".")
	return nil
}

func (c *conn) cmdUser(args string) error {
	if !c.plaintextOK() {
		return c.badErr(replyPlaintextDisallowed)
	}
	if args == "" || strings.IndexByte(args, 0) >= 0 {
		return c.badErr("-ERR USER needs a user name")
	}
	if !c.validText(args) {
		return c.badErr("-ERR Invalid UTF-8")
	}
	c.user = args
	c.lastUser = true
	// RFC 1939 §7 allows +OK for unknown users; saying the same for every
	// name reveals nothing.
	c.writeLine("+OK")
	return nil
}

func (c *conn) cmdPass(ctx context.Context, pass string, afterUser bool) error {
	if !c.plaintextOK() {
		return c.badErr(replyPlaintextDisallowed)
	}
	if !afterUser {
		return c.badErr("-ERR PASS must follow USER")
	}
	if !c.validText(pass) {
		return c.badErr("-ERR Invalid UTF-8")
	}
	if err := c.beforeLogin(c.user, "USER"); err != nil {
		return err
	}
	start := time.Now()
	mbox, err := c.sess.Login(ctx, c.user, pass)
	a := loginAttempt{method: "USER", d: time.Since(start)}
	if err != nil {
		// A non-nil copy even for an empty password: nil would mean "not
		// known" to the LoginLimiter.
		return c.loginFailed(err, a, c.user, append([]byte{}, pass...))
	}
	return c.enterTransaction(mbox, a)
}

// beforeLogin asks the LoginLimiter whether the client may try the
// credentials of user now, and waits the delay it asks for. An error ends
// the session: the client was refused (the reply is buffered) or the
// server is stopping.
func (c *conn) beforeLogin(user, method string) error {
	lim := c.srv.opts.LoginLimiter
	if lim == nil {
		return nil
	}
	delay, refuse, until := lim.BeforeLogin(c.info.RemoteAddr, user)
	if refuse {
		c.observeLogin(LoginEvent{Method: method, Code: CodeSysTemp, Refused: true})
		c.log.Info("login refused", "user", user, "code", CodeSysTemp,
			"reason", "too many failed logins", "until", until)
		// [SYS/TEMP], not [AUTH]: the codes tell a client whether to ask
		// the user for new credentials ([AUTH], RFC 3206 §5) or to try
		// again later ([SYS/TEMP], §4; see §3). These credentials were
		// never checked and may well be right (a user behind the same NAT
		// as an attacker), and the same ones will work later: [AUTH] would
		// have the user change a good password. [LOGIN-DELAY] (RFC 2449
		// §8.1.1) is about successful logins coming too often. An
		// attacker learns it is throttled, which it could measure anyway.
		c.writeLine("-ERR [SYS/TEMP] Too many failed logins, try again later")
		return errClose
	}
	if delay > 0 {
		c.log.Debug("login delayed", "user", user, "delay", delay)
		return c.pause(delay)
	}
	return nil
}

// pause sends what is buffered and waits d. It returns errClose if the
// server stops meanwhile: a session sitting out a delay has nothing to
// finish.
func (c *conn) pause(d time.Duration) error {
	c.flush()
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-c.srv.stopped:
		return errClose
	}
}

// loginFailed answers a failed login. Credential failures wait
// AuthFailDelay first, whatever the reason, so timing reveals nothing, and
// are reported to the LoginLimiter as user with password (nil: unknown);
// other failures are not.
func (c *conn) loginFailed(err error, a loginAttempt, user string, password []byte) error {
	var pe *Error
	if !errors.As(err, &pe) {
		c.log.Error("login failed", "user", c.user, "err", err)
		pe = &Error{Code: CodeSysTemp, Text: "Temporary failure, try again later"}
	}
	code := pe.Code
	if code == "" {
		code = CodeAuth // answered and counted as a credential failure below
	}
	c.observeLogin(LoginEvent{Method: a.method, Code: code, Duration: a.d})
	switch pe.Code {
	case CodeAuth, "":
		c.authFailures++
		// fail2ban (docs/fail2ban/postoffice.conf) matches this line and
		// "client banned": keep their messages, and conn and remote
		// first.
		c.log.Info("authentication failed", "user", c.user)
		if lim := c.srv.opts.LoginLimiter; lim != nil {
			if banned, until := lim.LoginFailed(c.info.RemoteAddr, user, password); banned {
				c.log.Warn("client banned", "until", until)
			}
		}
		if d := c.srv.opts.AuthFailDelay; d > 0 {
			if err := c.pause(d); err != nil {
				return err
			}
		}
	default:
		if pe.Err != nil {
			c.log.Warn("login refused", "user", c.user, "code", pe.Code, "err", pe.Err)
		} else {
			c.log.Info("login refused", "user", c.user, "code", pe.Code)
		}
	}
	c.user = ""
	c.writeLine(pe.reply())
	if c.authFailures >= c.srv.opts.MaxAuthFailures {
		c.writeLine("-ERR Too many authentication failures, closing connection")
		return errClose
	}
	return nil
}

func (c *conn) enterTransaction(mbox Mailbox, a loginAttempt) error {
	if c.evictable != nil && !c.evictable.LoggedIn() {
		// The limiter gave this connection's slot to a newcomer while the
		// credentials were checked: the session ends as evict says.
		if err := mbox.Close(); err != nil {
			c.log.Error("closing maildrop failed", "err", err)
		}
		c.log.Info("login dropped: connection evicted")
		c.writeLine(replyEvicted)
		return errClose
	}
	c.observeLogin(LoginEvent{Method: a.method, Duration: a.d})
	c.mbox = mbox
	c.msgs = mbox.Messages()
	c.deleted = make([]bool, len(c.msgs))
	for _, m := range c.msgs {
		c.size += m.Size
	}
	c.state = stateTransaction
	c.commands = 0
	c.maxCommands = c.srv.opts.MaxCommands // negative: no cap
	if c.maxCommands == 0 {
		c.maxCommands = baseCommands + commandsPerMessage*len(c.msgs)
	}
	if lim := c.srv.opts.LoginLimiter; lim != nil {
		lim.LoginSucceeded(c.info.RemoteAddr, c.user)
	}
	c.log.Info("logged in", "messages", len(c.msgs)) // with user from now on (log.go)
	c.writeLine(fmt.Sprintf("+OK Logged in, %d messages", len(c.msgs)))
	return nil
}

func (c *conn) cmdQuit(ctx context.Context) error {
	c.quit = true
	if c.state != stateTransaction {
		c.writeLine("+OK Logging out")
		return errClose
	}
	// RFC 1939 §6: UPDATE removes exactly the marked messages.
	if c.nDeleted > 0 {
		del := make([]int, 0, c.nDeleted)
		for i, d := range c.deleted {
			if d {
				del = append(del, i)
			}
		}
		// The commit finishes even if the server is shutting down.
		if err := c.mbox.Commit(context.WithoutCancel(ctx), del); err != nil {
			c.log.Error("commit failed", "err", err)
			c.releaseMailbox()
			c.writeLine("-ERR [SYS/TEMP] Some deleted messages not removed")
			return errClose
		}
		for _, i := range del {
			c.delCount++
			c.delBytes += c.msgs[i].Size
		}
	}
	// RFC 1939 §6: the lock is released before the reply, so a client that
	// reconnects as soon as it reads +OK does not find its maildrop in use.
	c.releaseMailbox()
	c.writeLine("+OK Logging out, messages deleted")
	return errClose
}

func (c *conn) cmdStat(args []byte) error {
	if len(args) != 0 {
		return c.badErr("-ERR STAT takes no arguments")
	}
	c.bw.WriteString("+OK ")
	c.writeInt(int64(len(c.msgs) - c.nDeleted))
	c.bw.WriteByte(' ')
	c.writeInt(c.size - c.deletedSize)
	c.bw.WriteString("\r\n")
	return nil
}

// writeInt writes n in decimal, formatted in the buffer's free space.
func (c *conn) writeInt(n int64) {
	if c.bw.Available() < 20 {
		c.bw.Flush() // as a full buffer would be; an error stays for the next flush
	}
	c.bw.Write(strconv.AppendInt(c.bw.AvailableBuffer(), n, 10))
}

// msgArg parses a message number (RFC 1939 §3: 1..count, not deleted).
// It writes the -ERR itself and returns ok=false on failure. Only a
// malformed number is a bad command; a number naming no message (0, past
// the end, deleted) is an ordinary -ERR (Options.MaxBadCommands).
func (c *conn) msgArg(s []byte) (int, bool, error) {
	n, ok := parseNumber(s)
	if !ok {
		return 0, false, c.badErr("-ERR Invalid message number")
	}
	if n < 1 || n > int64(len(c.msgs)) {
		c.writeLine("-ERR No such message")
		return 0, false, nil
	}
	i := int(n - 1)
	if c.deleted[i] {
		c.writeLine("-ERR Message already deleted")
		return 0, false, nil
	}
	return i, true, nil
}

// parseNumber accepts 1-10 decimal digits and nothing else.
func parseNumber(s []byte) (int64, bool) {
	if len(s) == 0 || len(s) > 10 {
		return 0, false
	}
	var n int64
	for _, d := range s {
		if d < '0' || d > '9' {
			return 0, false
		}
		n = n*10 + int64(d-'0')
	}
	return n, true
}

// maxListLine is the longest line of a LIST or UIDL listing: a message
// number, a space, a UID (at most 70 octets, RFC 1939 §7) or a size, CRLF.
const maxListLine = 10 + 1 + 70 + 2

func (c *conn) cmdList(args []byte, uidl bool) error {
	if len(args) != 0 {
		i, ok, err := c.msgArg(args)
		if !ok {
			return err
		}
		c.bw.WriteString("+OK ")
		c.writeInt(int64(i + 1))
		c.bw.WriteByte(' ')
		if uidl {
			c.bw.WriteString(c.msgs[i].UID)
		} else {
			c.writeInt(c.msgs[i].Size)
		}
		c.bw.WriteString("\r\n")
		return nil
	}
	c.beginLong()
	if uidl {
		c.writeLine("+OK Unique-ID listing follows")
	} else {
		c.writeLine("+OK Scan listing follows")
	}
	// Each line is built in the buffer's free space and taken in by one
	// Write that only copies it.
	for i, m := range c.msgs {
		if c.deleted[i] {
			continue
		}
		b := c.bw.AvailableBuffer()
		if cap(b) < maxListLine {
			if err := c.bw.Flush(); err != nil {
				return err
			}
			b = c.bw.AvailableBuffer()
		}
		b = strconv.AppendInt(b, int64(i+1), 10)
		b = append(b, ' ')
		if uidl {
			b = append(b, m.UID...)
		} else {
			b = strconv.AppendInt(b, m.Size, 10)
		}
		b = append(b, '\r', '\n')
		c.bw.Write(b)
	}
	c.writeLine(".")
	return nil
}

func (c *conn) cmdDele(args []byte) error {
	i, ok, err := c.msgArg(args)
	if !ok {
		return err
	}
	c.deleted[i] = true
	c.nDeleted++
	c.deletedSize += c.msgs[i].Size
	c.writeLine("+OK Message deleted")
	return nil
}

func (c *conn) cmdRset(args []byte) error {
	if len(args) != 0 {
		return c.badErr("-ERR RSET takes no arguments")
	}
	clear(c.deleted)
	c.nDeleted = 0
	c.deletedSize = 0
	c.writeLine("+OK")
	return nil
}

func (c *conn) cmdRetr(ctx context.Context, args []byte) error {
	i, ok, err := c.msgArg(args)
	if !ok {
		return err
	}
	n, sent, err := c.sendMessage(ctx, i, -1)
	if sent {
		c.retrCount++
		c.retrBytes += n
	}
	return err
}

func (c *conn) cmdTop(ctx context.Context, args []byte) error {
	num, lines, found := bytes.Cut(args, []byte(" "))
	if !found {
		return c.badErr("-ERR TOP needs a message number and a line count")
	}
	i, ok, err := c.msgArg(num)
	if !ok {
		return err
	}
	k, ok := parseNumber(lines)
	if !ok {
		return c.badErr("-ERR Invalid line count")
	}
	n, sent, err := c.sendMessage(ctx, i, k)
	if sent {
		c.topCount++
		c.topBytes += n
	}
	return err
}

// copyBufs holds the buffers RETR and TOP read stored messages through,
// shared by all sessions so an idle session holds none.
var copyBufs = sync.Pool{New: func() any { b := make([]byte, copyBufSize); return &b }}

const copyBufSize = 32 << 10

// sendMessage sends message i whole (lines < 0, RETR) or its TOP cut. A
// failure before the first byte is an -ERR; a failure in the middle of the
// body cannot be reported in the protocol and ends the session.
func (c *conn) sendMessage(ctx context.Context, i int, lines int64) (n int64, sent bool, err error) {
	r, err := c.mbox.Open(ctx, i)
	if err != nil {
		var pe *Error
		if errors.As(err, &pe) {
			c.log.Warn("opening message failed", "msg", i+1, "err", err)
			c.writeLine(pe.reply())
			return 0, false, nil
		}
		c.log.Error("opening message failed", "msg", i+1, "err", err)
		if errors.Is(err, os.ErrNotExist) {
			c.writeLine("-ERR [SYS/PERM] Message was removed by another agent")
		} else {
			c.writeLine("-ERR [SYS/TEMP] Cannot read message, try again later")
		}
		return 0, false, nil
	}
	defer r.Close()
	c.beginLong()
	if lines < 0 {
		c.bw.WriteString("+OK ")
		c.writeInt(c.msgs[i].Size)
		c.bw.WriteString(" octets\r\n")
	} else {
		c.writeLine("+OK Top of message follows")
	}
	c.dw.Reset(c.bw)
	var dst io.Writer = &c.dw
	if lines >= 0 {
		c.tw = wire.TopWriter{W: &c.dw, Lines: lines}
		dst = &c.tw
	}
	// No deadline for the whole message: each write has its own
	// (deadlineWriter), so a slow but steady reader gets any size.
	buf := copyBufs.Get().(*[]byte)
	err = copyMessage(dst, r, *buf)
	copyBufs.Put(buf)
	if err != nil && err != wire.ErrTopDone {
		return c.dw.Count(), true, fmt.Errorf("sending message %d: %w", i+1, err)
	}
	if err := c.dw.Close(); err != nil {
		return c.dw.Count(), true, err
	}
	if sent, listed := c.dw.Count(), c.msgs[i].Size; lines < 0 && sent != listed {
		if d := sent - listed; d == 1 || d == 2 {
			// The CR or CRLF the terminator needs after a message
			// without a final newline, which a size taken from a
			// Maildir ,W= field does not count (as with Dovecot).
			c.log.Debug("message sent with completed last line", "msg", i+1,
				"listed", listed, "sent", sent)
		} else {
			// The stored message changed under us; the client got a
			// size that does not match. Worth an admin's attention.
			c.log.Warn("message size changed since listing", "msg", i+1,
				"listed", listed, "sent", sent)
		}
	}
	return c.dw.Count(), true, nil
}

// copyMessage copies r to dst through buf, as io.CopyBuffer does but
// without asking r for WriteTo: an *os.File's would allocate 32 KiB per
// message.
func copyMessage(dst io.Writer, r io.Reader, buf []byte) error {
	for {
		n, err := r.Read(buf)
		if n > 0 {
			if _, werr := dst.Write(buf[:n]); werr != nil {
				return werr
			}
		}
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
	}
}

// keywords are the commands the engine knows (RFC 1939, 2449, 2595,
// 5034, 6856), upper case.
var keywords = [...]string{"CAPA", "UTF8", "LANG", "NOOP", "QUIT", "USER", "PASS", "APOP",
	"AUTH", "STLS", "STAT", "LIST", "UIDL", "RETR", "TOP", "DELE", "RSET", "LAST"}

// keyword returns the known keyword kw is, case-insensitively, or "". It
// does not allocate for ASCII. Anything else goes through strings.ToUpper,
// as before, which also maps a few non-ASCII letters to ASCII ones ("ſ"
// to "S").
func keyword(kw []byte) string {
	var buf [4]byte
	if len(kw) > len(buf) {
		return knownKeyword([]byte(strings.ToUpper(string(kw))))
	}
	for i, ch := range kw {
		if ch >= 0x80 {
			return knownKeyword([]byte(strings.ToUpper(string(kw))))
		}
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
