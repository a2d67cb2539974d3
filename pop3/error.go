package pop3

import (
	"errors"

	"github.com/postoffice-mail/postoffice/internal/wire"
	"github.com/postoffice-mail/postoffice/pop3proto"
)

// Error is a -ERR reply. Code is the response code without its brackets
// (RFC 2449 §8; the known ones are pop3proto's Code constants), empty when
// the server sent none; unknown codes are kept as sent. Text is the rest of
// the reply line.
type Error struct {
	Code pop3proto.Code
	Text string
}

func (e *Error) Error() string {
	if e.Code == "" {
		return "pop3: server said: -ERR " + e.Text
	}
	return "pop3: server said: -ERR [" + string(e.Code) + "] " + e.Text
}

// HasCode reports whether the response code is code or one of its
// sub-levels, so HasCode("SYS") holds for "SYS/TEMP" and HasCode("SYS/TEMP")
// for "SYS/TEMP/DISK" (RFC 2449 §8: unknown sub-levels are ignored).
// Levels compare case-insensitively, in ASCII only.
func (e *Error) HasCode(code pop3proto.Code) bool {
	if len(e.Code) < len(code) || !wire.EqualFoldASCII(string(e.Code[:len(code)]), string(code)) {
		return false
	}
	return len(e.Code) == len(code) || e.Code[len(code)] == '/'
}

// IsAuth reports an [AUTH] code: the credentials were rejected (RFC 3206
// §5). Only this failure means a stored password is wrong.
func (e *Error) IsAuth() bool { return e.HasCode(pop3proto.CodeAuth) }

// InUse reports an [IN-USE] code: the credentials were good but the
// maildrop is locked by another session (RFC 2449 §8.1.2).
func (e *Error) InUse() bool { return e.HasCode(pop3proto.CodeInUse) }

// Temporary reports a failure worth retrying later without new
// credentials: [IN-USE], [LOGIN-DELAY] or [SYS/TEMP].
func (e *Error) Temporary() bool {
	return e.HasCode(pop3proto.CodeInUse) || e.HasCode(pop3proto.CodeLoginDelay) || e.HasCode(pop3proto.CodeSysTemp)
}

// Permanent reports a [SYS/PERM] code (RFC 3206 §4).
func (e *Error) Permanent() bool { return e.HasCode(pop3proto.CodeSysPerm) }

var (
	// ErrProtocol marks a reply the client cannot follow: a line that is
	// neither +OK nor -ERR, a malformed LIST or UIDL line, an oversize
	// reply line. The Client is broken after it. Match with errors.Is.
	ErrProtocol = errors.New("pop3: protocol error")
	// ErrClosed is returned for commands after Quit or Close.
	ErrClosed = errors.New("pop3: client closed")
	// ErrBodyOpen is returned for a command issued while the body of a
	// Retr or Top has been neither read to its end nor closed.
	ErrBodyOpen = errors.New("pop3: previous message body not closed")
	// ErrNoSTLS is returned by DialStartTLS and StartTLS when the server
	// does not advertise STLS.
	ErrNoSTLS = errors.New("pop3: server does not offer STLS")
	// ErrNoAPOP is returned by APOP when the greeting had no timestamp.
	ErrNoAPOP = errors.New("pop3: server greeting has no APOP timestamp")
	// ErrBadChallenge is returned by Authenticate when a server challenge
	// was not base64; the exchange was cancelled with "*" (RFC 5034 §4).
	ErrBadChallenge = errors.New("pop3: undecodable SASL challenge")
	// ErrSTLSInjection is returned when the server sent data after its
	// +OK to STLS, before the TLS handshake (CVE-2021-22947).
	ErrSTLSInjection = errors.New("pop3: server sent data before the TLS handshake")
	// ErrServerNotVerified is returned by Authenticate when a mechanism
	// with mutual authentication (SCRAM) got +OK without a valid proof
	// from the server (RFC 5802 §5: the server signature). The server may
	// be an impostor that never knew the password: the Client is broken.
	ErrServerNotVerified = errors.New("pop3: sasl: server did not prove it knows the credentials")
)
