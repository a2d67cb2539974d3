package fetch

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"net"

	"github.com/postoffice-mail/postoffice/internal/sysexits"

	"github.com/postoffice-mail/postoffice/pop3"
)

// Exit statuses, from sysexits.h as mpop uses them.
const (
	ExitOK          = sysexits.OK          // every account fetched
	ExitDataErr     = sysexits.DataErr     // EX_DATAERR: protocol or server data problem (bad reply, no UIDL, UIDLs changed)
	ExitUnavailable = sysexits.Unavailable // EX_UNAVAILABLE: an lmtp:/smtp: target refused a recipient or a message for good (5xx)
	ExitSoftware    = sysexits.Software    // EX_SOFTWARE: internal error
	ExitIOErr       = sysexits.IOErr       // EX_IOERR: local delivery or state file failed
	ExitTempFail    = sysexits.TempFail    // EX_TEMPFAIL: network or temporary server error, MDA exit 75; try again later
	ExitNoPerm      = sysexits.NoPerm      // EX_NOPERM: authentication failed, certificate not trusted
	ExitConfig      = sysexits.Config      // EX_CONFIG: configuration error
)

// severity orders exit statuses for Worst: a later one is worse.
var severity = []int{ExitOK, ExitTempFail, ExitDataErr, ExitUnavailable, ExitIOErr, ExitNoPerm, ExitSoftware, ExitConfig}

// Worst returns the worse of two exit statuses.
func Worst(a, b int) int {
	rank := func(c int) int {
		for i, s := range severity {
			if s == c {
				return i
			}
		}
		return len(severity)
	}
	if rank(b) > rank(a) {
		return b
	}
	return a
}

// Error is a failure with the exit status it maps to.
type Error struct {
	Code int
	Err  error
}

func (e *Error) Error() string { return e.Err.Error() }
func (e *Error) Unwrap() error { return e.Err }

// ExitCode returns the exit status for err: 0 for nil, the Code of an
// *Error, otherwise a guess from the error's kind.
func ExitCode(err error) int {
	if err == nil {
		return ExitOK
	}
	var fe *Error
	if errors.As(err, &fe) {
		return fe.Code
	}
	return classify(err)
}

// classify maps an error of the POP3 session to an exit status.
func classify(err error) int {
	var pe *pop3.Error
	var ce *tls.CertificateVerificationError
	var ua x509.UnknownAuthorityError
	var hn x509.HostnameError
	var ci x509.CertificateInvalidError
	var pin *pinError
	var ne net.Error
	switch {
	case errors.As(err, &pin), errors.As(err, &ce), errors.As(err, &ua), errors.As(err, &hn), errors.As(err, &ci),
		errors.Is(err, pop3.ErrServerNotVerified):
		return ExitNoPerm
	case errors.As(err, &pe):
		if pe.Temporary() {
			return ExitTempFail
		}
		return ExitDataErr
	case errors.Is(err, pop3.ErrProtocol), errors.Is(err, pop3.ErrSTLSInjection), errors.Is(err, pop3.ErrBadChallenge):
		return ExitDataErr
	case errors.Is(err, pop3.ErrNoSTLS), errors.Is(err, pop3.ErrNoAPOP):
		return ExitDataErr
	case errors.As(err, &ne):
		return ExitTempFail
	}
	// Connections that drop mid-reply (io.EOF, resets) are temporary.
	return ExitTempFail
}

// pinError is a certificate whose SHA-256 does not match the pin.
type pinError struct{ got string }

func (e *pinError) Error() string {
	return "fetch: server certificate fingerprint " + e.got + " does not match the configured fingerprint"
}
