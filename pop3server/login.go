package pop3server

import (
	"context"
	"errors"
	"log/slog"
	"strconv"
	"strings"
	"time"

	"github.com/postoffice-mail/postoffice/pop3proto"
)

// The AUTHORIZATION state (RFC 1939 §4): USER and PASS (§7), and what
// every login method shares: the LoginLimiter's checks, the answer to a
// failed login and the entry into TRANSACTION. APOP and SASL AUTH are in
// auth.go, STLS in stls.go.

func (c *conn) cmdUser(args string) error {
	// USER sends no secret: where the plaintext rule refuses PASS, it
	// still opens the way to RPOP (legacy.go) when the session offers it.
	if _, rpop := c.sess.(RPOPSession); !c.plaintextOK() && !rpop {
		return c.badErr(c.plaintextDisallowed())
	}
	if args == "" || strings.IndexByte(args, 0) >= 0 {
		return c.badErr("-ERR USER needs a user name: send USER followed by your user name")
	}
	if !c.validText(args) {
		return c.badErr("-ERR Invalid UTF-8 after the UTF8 command: send the name and password in UTF-8")
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
		return c.badErr(c.plaintextDisallowed())
	}
	if !afterUser {
		return c.badErr("-ERR PASS must come right after USER: send USER with your name, then PASS")
	}
	if !c.validText(pass) {
		return c.badErr("-ERR Invalid UTF-8 after the UTF8 command: send the name and password in UTF-8")
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
	growLoginStack() // stack.go: the login runs without stack copies
	lim := c.srv.opts.LoginLimiter
	if lim == nil {
		return nil
	}
	delay, refuse, until := lim.BeforeLogin(c.info.RemoteAddr, user)
	if refuse {
		c.observeLogin(LoginEvent{Method: method, Code: pop3proto.CodeSysTemp, Refused: true})
		c.log.Info("login refused", "user", user, "code", pop3proto.CodeSysTemp,
			"reason", "too many failed logins", "until", until)
		// [SYS/TEMP], not [AUTH]: the codes tell a client whether to ask
		// the user for new credentials ([AUTH], RFC 3206 §5) or to try
		// again later ([SYS/TEMP], §4; see §3). These credentials were
		// never checked and may well be right (a user behind the same NAT
		// as an attacker), and the same ones will work later: [AUTH] would
		// have the user change a good password. [LOGIN-DELAY] (RFC 2449
		// §8.1.1) is about successful logins coming too often. An
		// attacker learns it is throttled, which it could measure anyway.
		// The wait is said in whole minutes, rounded up: the client's user
		// learns when to come back and that the password the client keeps
		// retrying (a changed one, often) is the likely cause.
		c.writeLine("-ERR [SYS/TEMP] Too many failed logins from your network; try again " + waitText(time.Until(until)) + ", with the password checked")
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

// loginFailed answers an error from a login method (Login, APOP,
// StartSASL, a SASLExchange's Next or Login) as the Session contract says:
//   - ErrAuthFailed, or an *Error with pop3proto.CodeAuth: a credential
//     failure. It waits AuthFailDelay first, whatever the reason, so
//     timing reveals nothing, is reported to the LoginLimiter as user with
//     password (nil: unknown) and counts towards MaxAuthFailures.
//   - an *Error with another code: sent as it is; the login failed for a
//     reason that is not the credentials, and is not counted.
//   - an *Error without code: a malformed request, sent at once and
//     counted as a bad command; the session goes on.
//   - anything else: logged, answered [SYS/TEMP].
func (c *conn) loginFailed(err error, a loginAttempt, user string, password []byte) error {
	var pe *Error
	isErr := errors.As(err, &pe)
	switch {
	case isErr && pe.Code == pop3proto.CodeAuth:
	case errors.Is(err, ErrAuthFailed):
		pe = errAuthFailed
	case !isErr:
		c.log.Error("login failed", "user", c.user, "err", err)
		pe = &Error{Code: pop3proto.CodeSysTemp, Text: "Temporary server failure; try again in a few minutes, and tell the administrator if it persists"}
	case pe.Code == "":
		if pe.Err != nil {
			c.log.Info("login request refused", "err", pe.Err)
		}
		return c.badErr(pe.reply())
	}
	c.observeLogin(LoginEvent{Method: a.method, Code: pe.Code, Duration: a.d})
	if pe.Code == pop3proto.CodeAuth {
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
	} else if pe.Err != nil {
		c.log.Warn("login refused", "user", c.user, "code", pe.Code, "err", pe.Err)
	} else {
		c.log.Info("login refused", "user", c.user, "code", pe.Code)
	}
	c.user = ""
	c.writeLine(pe.reply())
	if c.authFailures >= c.srv.opts.MaxAuthFailures {
		c.writeLine("-ERR Too many authentication failures, closing connection; check the user name and password, then reconnect")
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
	// With user from now on (log.go).
	c.logAttrs(&siteLoggedIn, slog.LevelInfo, "logged in", slog.Int("messages", len(c.msgs)))
	c.writeLine("+OK Logged in, " + strconv.Itoa(len(c.msgs)) + " messages")
	return nil
}

// waitText says when a wait ends, for a client's user: "in 4 minutes",
// in whole minutes rounded up (seconds would be false precision for a
// delay the next attempt may extend), or "later" when d is not a
// plausible wait (not positive, or more than a day: a limiter that did not
// say).
func waitText(d time.Duration) string {
	switch m := int((d + time.Minute - 1) / time.Minute); {
	case d <= 0 || d > 24*time.Hour:
		return "later"
	case m == 1:
		return "in 1 minute"
	default:
		return "in " + strconv.Itoa(m) + " minutes"
	}
}
