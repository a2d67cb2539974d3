package pop3server_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"testing"

	"github.com/postoffice-mail/postoffice/pop3server"
	"github.com/postoffice-mail/postoffice/pop3server/memserver"
)

// nulMessage is the transcripts' message with a NUL octet (nulmessage=on).
const nulMessage = "Subject: nul\r\n\r\na\x00b\r\n"

// parseWorkarounds reads a transcript's workarounds= list.
func parseWorkarounds(t *testing.T, v string) pop3server.Workarounds {
	var w pop3server.Workarounds
	for _, name := range strings.Split(v, ",") {
		switch name {
		case "outlook-no-nuls":
			w.OutlookNoNULs = true
		case "oe-ns-eoh":
			w.OENSEOH = true
		case "bare-auth":
			w.BareAUTH = true
		case "xtnd-xmit":
			w.XTNDXMIT = &pop3server.XMIT{Submitter: fakeSubmitter{}, MaxMessageSize: 400, MaxRecipients: 3}
		default:
			t.Fatalf("unknown workaround %q", name)
		}
	}
	return w
}

// legacyBackend adds the legacy add-ons to memserver for the transcripts:
// RPOP (client user "root" may act as alice) and SDPS envelopes.
type legacyBackend struct {
	*memserver.Backend
	rpop, sdps bool
}

func (b legacyBackend) NewSession(ctx context.Context, c *pop3server.Conn) (pop3server.Session, error) {
	s, err := b.Backend.NewSession(ctx, c)
	if err != nil {
		return nil, err
	}
	ls := legacySession{Session: s, sdps: b.sdps}
	if b.rpop {
		return rpopSession{ls}, nil
	}
	return ls, nil
}

type legacySession struct {
	pop3server.Session
	sdps bool
}

func (s legacySession) Login(ctx context.Context, user, pass string) (pop3server.Mailbox, error) {
	m, err := s.Session.Login(ctx, user, pass)
	if err != nil || !s.sdps {
		return m, err
	}
	return envMailbox{m}, nil
}

type rpopSession struct{ legacySession }

func (s rpopSession) RPOP(ctx context.Context, user, clientUser string) (pop3server.Mailbox, error) {
	if user != "alice" || clientUser != "root" {
		return nil, pop3server.ErrAuthFailed
	}
	return s.Login(ctx, "alice", "secret word")
}

// envMailbox gives message n the envelope sender@example.org ->
// rcptn@host.example; message 2 has the null sender, message 3 an unknown
// recipient.
type envMailbox struct{ pop3server.Mailbox }

func (m envMailbox) Envelope(ctx context.Context, i int) (string, string, error) {
	switch i {
	case 1:
		return "", "rcpt2@host.example", nil
	case 2:
		return "sender@example.org", "", nil
	}
	return "sender@example.org", fmt.Sprintf("rcpt%d@host.example", i+1), nil
}

// fakeSubmitter is the transcripts' relay (workarounds=xtnd-xmit): it reads
// the message and takes it, but fails for now for a recipient
// tempfail@..., refuses for good a message to refuse@..., and fails for a
// sender other than alice, which no transcript may reach.
type fakeSubmitter struct{}

func (fakeSubmitter) Submit(ctx context.Context, user string, rcpts []string, msg io.Reader) error {
	if user != "alice" {
		return fmt.Errorf("fake relay: unexpected sender %q", user)
	}
	if _, err := io.Copy(io.Discard, msg); err != nil {
		return err
	}
	for _, r := range rcpts {
		switch {
		case strings.HasPrefix(r, "tempfail@"):
			return errors.New("fake relay: 451 try later")
		case strings.HasPrefix(r, "refuse@"):
			return &pop3server.Error{Code: "SYS/PERM", Text: "Message refused by the mail relay, not sent: contact your administrator"}
		}
	}
	return nil
}
