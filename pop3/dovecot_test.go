package pop3

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/postoffice-mail/postoffice/internal/testutil/dovecot"
)

// The same client tests against a real Dovecot, so the client is checked
// against the server most sites run and not only against our own; Dovecot
// runs as root from a temporary directory (internal/testutil/dovecot).

var dovecotUsers = []string{"plain", "authplain", "login", "crammd5", "apop", "stls", "close", "wrong", "many"}

// checkMailbox lists and retrieves everything and compares it with msgs
// byte for byte (as sets: Dovecot picks the order).
func checkMailbox(t *testing.T, ctx context.Context, c *Client, msgs []string) {
	t.Helper()
	list, err := c.List(ctx)
	if err != nil {
		t.Fatal(err)
	}
	uids, err := c.UIDL(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(list) != len(msgs) || len(uids) != len(msgs) {
		t.Fatalf("List = %v, Uidl = %v; want %d messages", list, uids, len(msgs))
	}
	var got, want []string
	for _, m := range msgs {
		want = append(want, crlfForm(m))
	}
	for i, info := range list {
		rc, err := c.Retr(ctx, info.Num)
		body := readAll(t, rc, err)
		got = append(got, body)
		// For a message without a final newline Dovecot's LIST size
		// leaves out the CRLF its RETR adds; allow exactly that.
		if n := int64(len(body)); info.Size != n && !(info.Size == n-2 && strings.HasSuffix(body, "\r\n")) {
			t.Errorf("message %d: LIST size %d, RETR %d octets", info.Num, info.Size, n)
		}
		if uids[i].Num != info.Num || uids[i].UID == "" {
			t.Errorf("UIDL line %d = %+v for LIST %+v", i, uids[i], info)
		}
	}
	slices.Sort(got)
	slices.Sort(want)
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("retrieved %q, want %q", got[i], want[i])
		}
	}
}

func TestDovecot(t *testing.T) {
	t.Parallel()
	d := dovecot.Start(t, dovecotUsers...)
	msgs := append(slices.Clone(fixtures), "Subject: dot end\n\n.\n")

	t.Run("USER/PASS, list, retr, top, dele+quit", func(t *testing.T) {
		t.Parallel()
		ctx := testCtx(t)
		d.Deliver(t, "plain", msgs)
		c, err := Dial(ctx, d.Addr, nil)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		caps, err := c.Capabilities(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if !caps.Has("TOP") || !caps.Has("UIDL") || !caps.STLS() || !caps.HasSASL("PLAIN") || !caps.Pipelining() || !caps.RespCodes() {
			t.Errorf("Dovecot CAPA = %q", caps.Lines)
		}
		if err := c.Login(ctx, "plain", dovecot.Password); err != nil {
			t.Fatal(err)
		}
		if caps, err = c.Capabilities(ctx); err != nil || caps.STLS() {
			t.Errorf("CAPA after login = %q, %v; want it re-read without STLS", caps.Lines, err)
		}
		checkMailbox(t, ctx, c, msgs)
		rc, err := c.Top(ctx, 4, 1)
		if got := readAll(t, rc, err); got != "Subject: top\r\n\r\nb1\r\n" {
			t.Errorf("Top(4, 1) = %q", got)
		}
		if err := c.Dele(ctx, 1); err != nil {
			t.Fatal(err)
		}
		if err := c.Quit(ctx); err != nil {
			t.Fatal(err)
		}
		if n := d.Files(t, "plain"); n != len(msgs)-1 {
			t.Errorf("after DELE+QUIT: %d files, want %d", n, len(msgs)-1)
		}
		c, err = Dial(ctx, d.Addr, nil)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		if err := c.Login(ctx, "plain", dovecot.Password); err != nil {
			t.Fatal(err)
		}
		if n, _, err := c.Stat(ctx); n != len(msgs)-1 || err != nil {
			t.Errorf("Stat in a new session = %d, %v", n, err)
		}
		c.Quit(ctx)
	})

	auths := []struct {
		user string
		do   func(ctx context.Context, c *Client) error
	}{
		{"authplain", func(ctx context.Context, c *Client) error {
			return c.Authenticate(ctx, NewPlainClient("", "authplain", dovecot.Password))
		}},
		{"login", func(ctx context.Context, c *Client) error {
			return c.Authenticate(ctx, NewLoginClient("login", dovecot.Password))
		}},
		{"crammd5", func(ctx context.Context, c *Client) error {
			return c.Authenticate(ctx, NewCRAMMD5Client("crammd5", dovecot.Password))
		}},
		{"apop", func(ctx context.Context, c *Client) error {
			if c.Greeting().Timestamp == "" {
				return fmt.Errorf("no APOP timestamp in greeting %q", c.Greeting().Text)
			}
			return c.APOP(ctx, "apop", dovecot.Password)
		}},
	}
	for _, a := range auths {
		t.Run("auth "+a.user, func(t *testing.T) {
			t.Parallel()
			ctx := testCtx(t)
			d.Deliver(t, a.user, msgs)
			c, err := Dial(ctx, d.Addr, nil)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			if err := a.do(ctx, c); err != nil {
				t.Fatal(err)
			}
			checkMailbox(t, ctx, c, msgs)
			if err := c.Quit(ctx); err != nil {
				t.Fatal(err)
			}
		})
	}

	t.Run("STLS", func(t *testing.T) {
		t.Parallel()
		ctx := testCtx(t)
		d.Deliver(t, "stls", msgs)
		c, err := DialStartTLS(ctx, d.Addr, &Options{TLSConfig: &tls.Config{RootCAs: d.Cert.Pool()}})
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		caps, err := c.Capabilities(ctx)
		if err != nil || caps.STLS() {
			t.Errorf("CAPA after STLS = %q, %v", caps.Lines, err)
		}
		if err := c.Authenticate(ctx, NewPlainClient("", "stls", dovecot.Password)); err != nil {
			t.Fatal(err)
		}
		checkMailbox(t, ctx, c, msgs)
		c.Quit(ctx)
	})

	t.Run("close without quit, pipelined DELE", func(t *testing.T) {
		t.Parallel()
		ctx := testCtx(t)
		d.Deliver(t, "many", msgs)
		for _, quit := range []bool{false, true} {
			c, err := Dial(ctx, d.Addr, nil)
			if err != nil {
				t.Fatal(err)
			}
			if err := c.Login(ctx, "many", dovecot.Password); err != nil {
				t.Fatal(err)
			}
			if err := c.DeleMany(ctx, []int{1, 2, 3}); err != nil {
				t.Fatal(err)
			}
			if !quit {
				c.Close()
				// Dovecot notices the close asynchronously; nothing may
				// go in any case.
				time.Sleep(100 * time.Millisecond)
				if n := d.Files(t, "many"); n != len(msgs) {
					t.Fatalf("after Close: %d files, want %d", n, len(msgs))
				}
				continue
			}
			if err := c.Quit(ctx); err != nil {
				t.Fatal(err)
			}
			if n := d.Files(t, "many"); n != len(msgs)-3 {
				t.Errorf("after DeleMany+Quit: %d files, want %d", n, len(msgs)-3)
			}
		}
	})

	t.Run("wrong password", func(t *testing.T) {
		t.Parallel()
		ctx := testCtx(t)
		d.Deliver(t, "wrong", msgs)
		// Dovecot's authentication failure penalty is per source
		// address; use one of our own so the other subtests are not
		// slowed down.
		opts := &Options{Dialer: &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.IPv4(127, 0, 0, 2)}}}
		c, err := Dial(ctx, d.Addr, opts)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		err = c.Login(ctx, "wrong", "not the password")
		var perr *Error
		if !errors.As(err, &perr) || !perr.IsAuth() {
			t.Errorf("Login with a wrong password = %v, want [AUTH]", err)
		}
	})
}
