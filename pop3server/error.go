package pop3server

import (
	"errors"
	"fmt"

	"github.com/postoffice-mail/postoffice/pop3proto"
)

// ErrAuthFailed is what a backend returns, or wraps, when it refuses the
// credentials of a login (Session.Login, APOPSession.APOP, or a
// SASLExchange's Next or Login): a wrong password, an unknown user, a user
// not allowed to log in from this client. The engine answers
// "-ERR [AUTH] Authentication failed: check the user name and password" (RFC 3206 §5: the client should ask
// its user for new credentials) after Options.AuthFailDelay, counts it
// towards Options.MaxAuthFailures and reports it to the LoginLimiter. An
// *Error with pop3proto.CodeAuth is the same failure with a text of the
// backend's choosing (a nologin reason, say).
var ErrAuthFailed = errors.New("pop3server: authentication failed")

// errAuthFailed is the answer to ErrAuthFailed.
var errAuthFailed = &Error{Code: pop3proto.CodeAuth, Text: "Authentication failed: check the user name and password"}

// Error is a failure a backend wants the client to see, as "-ERR [Code]
// Text", or "-ERR Text" without a code. Text must not reveal paths,
// configuration or other internals, nor whether a user exists. It says
// what went wrong and what to do, as "reason; advice" or "reason:
// advice" ("Cannot open the maildrop now; try again in a few minutes"):
// a user reading it in a client's error box should know the next step.
// Err, if set, is logged and never sent.
//
// What the engine does with it depends on Code, the same for every backend
// method (see Session for the whole contract):
//   - pop3proto.CodeAuth: a credential failure, as ErrAuthFailed.
//   - another code: sent as it is; the command failed, the session goes
//     on. On a login method the login failed but not for the credentials
//     ([IN-USE], [LOGIN-DELAY], [SYS/TEMP]): no delay, not counted.
//   - no code: the client's request was malformed (a SASL message that
//     does not parse, an unknown mechanism). The text is sent at once and
//     the command counts as a bad command (Options.MaxBadCommands), not as
//     a failed login.
type Error struct {
	Code pop3proto.Code
	Text string
	Err  error
}

func (e *Error) Error() string {
	s := e.Text
	if e.Code != "" {
		s = "[" + string(e.Code) + "] " + s
	}
	if e.Err != nil {
		s += ": " + e.Err.Error()
	}
	return s
}

func (e *Error) Unwrap() error { return e.Err }

// reply is the -ERR line for e.
func (e *Error) reply() string {
	if e.Code != "" {
		return fmt.Sprintf("-ERR [%s] %s", e.Code, e.Text)
	}
	return "-ERR " + e.Text
}
