// Package submit passes the messages a POP3 client sends with XTND XMIT
// (pop3server.XMIT) on to a mail relay over SMTP (RFC 5321), with
// STARTTLS (RFC 3207) and AUTH (RFC 4954) through internal/lmtp's client:
// it is the pop3server.Submitter of [xtnd] relay.
//
// Implementation notes:
//   - The envelope sender is always the logged-in user's address: the
//     login name when it has an "@", else name@SenderDomain. The message's
//     From field plays no part, so a user cannot send as another through
//     it; the relay should trust this account's envelope senders and may
//     check From against them.
//   - One connection per message: XTND XMIT is rare, and a connection
//     kept open would hold a relay slot for every idle POP3 session.
//   - Replies map to what the client sees: a 5xx to RCPT or after the
//     message is a refusal the client can act on (-ERR, no retry); a 5xx
//     to MAIL (the relay will not take mail from this user) is [SYS/PERM];
//     4xx, a failed connection, TLS or AUTH is [SYS/TEMP]: a relay that is
//     down or misconfigured is the administrator's to fix, and the client
//     may send again later. The relay's own text goes to the log only.
package submit

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/postoffice-mail/postoffice/internal/lmtp"
	"github.com/postoffice-mail/postoffice/pop3proto"
	"github.com/postoffice-mail/postoffice/pop3server"
)

// Options configure a Relay. Addr is required.
type Options struct {
	// Addr is the relay's host:port, a submission service (RFC 6409,
	// port 587) or a local MTA.
	Addr string
	// StartTLS, if set, makes every connection start TLS with it before
	// anything else and fail without it. nil: plain SMTP, which the
	// configuration allows only to a loopback relay.
	StartTLS *tls.Config
	// Username and Password, if set, authenticate to the relay (AUTH
	// PLAIN, else LOGIN) after STARTTLS.
	Username, Password string
	// SenderDomain completes a login name without "@" into the envelope
	// sender's address. Required when users log in with bare names.
	SenderDomain string
	// LocalName is the EHLO name; "" means "localhost".
	LocalName string
	// Timeout bounds the connection and each reply of the relay. Default
	// 2 minutes: the POP3 client waits for the answer.
	Timeout time.Duration
}

// Relay is a pop3server.Submitter sending to one SMTP relay.
type Relay struct{ opts Options }

// New returns a Relay.
func New(o Options) (*Relay, error) {
	if o.Addr == "" {
		return nil, errors.New("submit: Options.Addr is required")
	}
	if o.Timeout <= 0 {
		o.Timeout = 2 * time.Minute
	}
	return &Relay{opts: o}, nil
}

var _ pop3server.Submitter = (*Relay)(nil)

// Replies of the refusals the client can act on.
var (
	errRcptRefused   = &pop3server.Error{Text: "Recipient refused by the mail relay, message not sent: check the addresses in To, Cc and Bcc"}
	errMsgRefused    = &pop3server.Error{Text: "Message refused by the mail relay, not sent: check its content, or ask your administrator"}
	errSenderRefused = &pop3server.Error{Code: pop3proto.CodeSysPerm, Text: "The mail relay does not accept mail from this account: contact your administrator"}
	errNoSender      = &pop3server.Error{Code: pop3proto.CodeSysPerm, Text: "No sender address for this account: contact your administrator"}
)

// Sender returns the envelope sender for a logged-in user.
func (r *Relay) Sender(user string) (string, error) {
	addr := user
	if !strings.Contains(user, "@") {
		if r.opts.SenderDomain == "" {
			return "", fmt.Errorf("submit: user %q has no domain and xtnd.sender_domain is not set", user)
		}
		addr = user + "@" + r.opts.SenderDomain
	}
	for i := 0; i < len(addr); i++ {
		if b := addr[i]; b <= ' ' || b >= 0x7f || b == '<' || b == '>' {
			return "", fmt.Errorf("submit: user %q does not make an SMTP address", user)
		}
	}
	return addr, nil
}

// Submit sends msg from user to rcpts through the relay (see
// pop3server.Submitter). It returns nil only once the relay has answered
// 250 after the message.
func (r *Relay) Submit(ctx context.Context, user string, rcpts []string, msg io.Reader) error {
	from, err := r.Sender(user)
	if err != nil {
		return wrap(errNoSender, err)
	}
	dctx, cancel := context.WithTimeout(ctx, r.opts.Timeout)
	c, err := lmtp.Dial(dctx, "tcp", r.opts.Addr, lmtp.ClientOptions{
		LocalName: r.opts.LocalName, Timeout: r.opts.Timeout,
		StartTLS: r.opts.StartTLS, Username: r.opts.Username, Password: r.opts.Password,
	})
	cancel()
	if err != nil {
		return fmt.Errorf("submit: relay %s: %w", r.opts.Addr, err)
	}
	defer c.Close()
	err = c.SendAll(ctx, from, rcpts, msg)
	var re *lmtp.ReplyError
	switch {
	case err == nil:
		return nil
	case !errors.As(err, &re) || re.Temporary():
		return fmt.Errorf("submit: relay %s: %w", r.opts.Addr, err)
	case re.Stage == "RCPT":
		return wrap(errRcptRefused, err)
	case re.Stage == "MAIL":
		return wrap(errSenderRefused, err)
	}
	return wrap(errMsgRefused, err)
}

// wrap returns a copy of e carrying err for the log.
func wrap(e *pop3server.Error, err error) error {
	c := *e
	c.Err = err
	return &c
}
