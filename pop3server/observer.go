package pop3server

import (
	"time"

	"github.com/postoffice-mail/postoffice/pop3proto"
)

// Observer is told what happens in sessions, for metrics
// (internal/metrics). The engine calls it from the session goroutines,
// concurrently; its methods must return quickly and must not write to the
// session.
type Observer interface {
	// SessionStarted is called when a connection is accepted, before the
	// TLS handshake of an implicit-TLS listener and the greeting.
	SessionStarted(c *Conn)
	// Login is called after each login attempt that reached the backend
	// or was refused by the LoginLimiter, but not for commands refused
	// before that (a malformed APOP, PASS without USER, an unknown SASL
	// mechanism, plaintext refused on an insecure connection).
	Login(c *Conn, e LoginEvent)
	// SessionEnded is called once for each SessionStarted, when the
	// connection is closed.
	SessionEnded(c *Conn, s SessionStats)
}

// LoginEvent is the outcome of one login attempt.
type LoginEvent struct {
	// Method is "USER" (USER/PASS), "APOP", or the SASL mechanism's name
	// as the backend offers it: a name from a fixed set, never the
	// client's text.
	Method string
	// Code is "" for a successful login, else the response code the
	// client got (pop3proto.CodeAuth, CodeInUse, CodeLoginDelay,
	// CodeSysTemp, ...).
	Code pop3proto.Code
	// Refused reports that the LoginLimiter refused the attempt: no
	// credential was checked (Code is pop3proto.CodeSysTemp).
	Refused bool
	// Duration is the time the backend took to check the credentials and
	// open the maildrop (for SASL, the last step: the earlier ones wait
	// for the client); zero when Refused or not measured (a SASL exchange
	// that failed before its last step). Deliberate delays (the
	// LoginLimiter's, AuthFailDelay) are not in it.
	Duration time.Duration
}

// SessionStats are the totals of one session, as in its log line.
type SessionStats struct {
	Duration time.Duration // from accept to close
	LoggedIn bool          // the session reached the TRANSACTION state

	Retr, Top    int   // RETR and TOP commands answered
	RetrBytes    int64 // octets of the messages RETR sent (LIST sizes)
	TopBytes     int64 // octets TOP sent
	Deleted      int   // messages removed in UPDATE, after the commit succeeded
	DeletedBytes int64
}

// loginAttempt is what the engine knows of a login attempt for
// LoginEvent: the method, and how long the backend took (zero when not
// measured: a SASL exchange failing before its last step).
type loginAttempt struct {
	method string
	d      time.Duration
}

// observeLogin tells the Observer, if any, of a login attempt.
func (c *conn) observeLogin(e LoginEvent) {
	if o := c.srv.opts.Observer; o != nil {
		o.Login(&c.info, e)
	}
}
