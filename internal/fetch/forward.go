package fetch

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"time"

	"github.com/postoffice-mail/postoffice/internal/lmtp"
)

// forwardTarget hands each message to an LMTP (RFC 2033) or SMTP (RFC 5321)
// server: MAIL FROM the message's Return-Path (else <>), RCPT TO the
// account's recipient, the message streamed as POP3 sent it (CRLF, header
// and body unchanged). Deliver returns nil only once the server said 250
// for the recipient after the message. One connection serves the whole run
// and is redialled after a failure.
//
// Replies map to outcomes:
//   - 4xx (and any network failure): *Error with ExitTempFail; the run
//     stops, the message is not recorded and is fetched again next run.
//   - 5xx to RCPT: the recipient is refused, which no other message will
//     change: *Error with ExitUnavailable, the run stops.
//   - 5xx to MAIL or after DATA: this message is refused for good:
//     *rejectedError, which run records as rejected (never fetched again,
//     never deleted) before going on with the next message.
type forwardTarget struct {
	kind          string // "lmtp" or "smtp", for messages
	network, addr string
	rcpt          string
	opts          lmtp.ClientOptions
	c             *lmtp.Client
}

// newForwardTarget parses "lmtp:HOST:PORT", "lmtp:unix:/PATH" or
// "smtp:HOST:PORT" (validated by the config).
func newForwardTarget(a *Account, kind, arg string, timeout time.Duration) (*forwardTarget, error) {
	f := &forwardTarget{kind: kind, network: "tcp", addr: arg, rcpt: a.Recipient,
		opts: lmtp.ClientOptions{LMTP: kind == "lmtp", Timeout: timeout, Username: a.SMTPUser, Password: a.SMTPPassword}}
	if path, ok := strings.CutPrefix(arg, "unix:"); ok && kind == "lmtp" {
		f.network, f.addr = "unix", path
	}
	if a.SMTPTLS == "starttls" {
		host, _, _ := net.SplitHostPort(arg)
		roots, err := loadRoots(a, "smtp_ca_file", a.SMTPCAFile)
		if err != nil {
			return nil, err
		}
		f.opts.StartTLS = &tls.Config{ServerName: host, MinVersion: tls.VersionTLS12, RootCAs: roots}
	}
	return f, nil
}

// rejectedError is a permanent refusal of one message by a forwarding
// target.
type rejectedError struct{ err error }

func (e *rejectedError) Error() string { return e.err.Error() }
func (e *rejectedError) Unwrap() error { return e.err }

func (f *forwardTarget) Copies(string) ([]string, error) { return nil, nil }

func (f *forwardTarget) Deliver(ctx context.Context, uidl string, r io.Reader) error {
	src := &readErr{r: r}
	br := bufio.NewReaderSize(src, 64<<10)
	from, head := returnPath(br)
	if src.err != nil {
		return src.err // the download failed
	}
	if f.c == nil {
		c, err := lmtp.Dial(ctx, f.network, f.addr, f.opts)
		var re *lmtp.ReplyError
		switch {
		case errors.As(err, &re) && re.Stage == "AUTH" && !re.Temporary():
			return &Error{Code: ExitNoPerm, Err: fmt.Errorf("fetch: %s target: %w", f.kind, err)}
		case errors.As(err, new(*tls.CertificateVerificationError)):
			return &Error{Code: ExitNoPerm, Err: fmt.Errorf("fetch: %s target: %w", f.kind, err)}
		case err != nil:
			return &Error{Code: ExitTempFail, Err: fmt.Errorf("fetch: %s target: %w", f.kind, err)}
		}
		f.c = c
	}
	err := f.c.Send(ctx, from, f.rcpt, io.MultiReader(bytes.NewReader(head), br))
	if err == nil {
		return nil
	}
	var re *lmtp.ReplyError
	switch {
	case src.err != nil:
		f.Close()
		return src.err
	case errors.As(err, &re) && re.Temporary():
		return &Error{Code: ExitTempFail, Err: fmt.Errorf("fetch: %s target: %w", f.kind, err)}
	case errors.As(err, &re) && re.Stage == "RCPT":
		return &Error{Code: ExitUnavailable, Err: fmt.Errorf("fetch: %s target refused recipient %s: %w", f.kind, f.rcpt, err)}
	case errors.As(err, &re):
		return &rejectedError{err: fmt.Errorf("fetch: %s target refused the message: %w", f.kind, err)}
	}
	f.Close()
	return &Error{Code: ExitTempFail, Err: fmt.Errorf("fetch: %s target: %w", f.kind, err)}
}

// Close ends the session with the server (QUIT).
func (f *forwardTarget) Close() error {
	if f.c != nil {
		f.c.Close()
		f.c = nil
	}
	return nil
}

// maxPeekHeader bounds how much of the header returnPath reads to find
// Return-Path; a longer header is forwarded with the null sender.
const maxPeekHeader = 64 << 10

// returnPath reads the message header from br, up to its end or
// maxPeekHeader octets, and returns the address of its first Return-Path
// field ("" for <>, a missing field or one that is not a plain address)
// and the octets read, which the caller sends first.
func returnPath(br *bufio.Reader) (string, []byte) {
	var head []byte
	from, found := "", false
	for len(head) < maxPeekHeader {
		line, err := br.ReadSlice('\n')
		head = append(head, line...)
		if err != nil {
			break // a full buffer (a huge line), the end or a read error
		}
		if len(bytes.TrimRight(line, "\r\n")) == 0 {
			break // the end of the header
		}
		if name, val, ok := bytes.Cut(line, []byte(":")); ok && !found && strings.EqualFold(string(name), "Return-Path") {
			found = true
			from = parsePath(string(val))
		}
	}
	return from, head
}

// parsePath returns the address of a Return-Path value such as
// " <a@b.example>", or "" when it is <> or not a printable ASCII address
// without spaces (the forwarded message then goes with the null sender).
func parsePath(v string) string {
	v = strings.TrimSpace(v)
	if i := strings.IndexByte(v, '<'); i >= 0 {
		j := strings.IndexByte(v[i:], '>')
		if j < 0 {
			return ""
		}
		v = v[i+1 : i+j]
	}
	for _, c := range []byte(v) {
		if c <= ' ' || c >= 0x7f || c == '<' || c == '>' {
			return ""
		}
	}
	return v
}
