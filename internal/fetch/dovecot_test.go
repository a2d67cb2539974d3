package fetch

import (
	"fmt"
	"path/filepath"
	"testing"

	"github.com/postoffice-mail/postoffice/internal/testutil/dovecot"
)

// A fetch from a real Dovecot (internal/testutil/dovecot) with every
// mechanism it offers, each from the stored scheme that can serve it: a
// first run gets all, a second nothing new; then keep = false empties the
// maildrop. Those DELEs come after a TOP n 0 that confirms each message is
// the one recorded, so this also checks that Dovecot's TOP header gives the
// header digest of its RETR.
func TestDovecotFetch(t *testing.T) {
	t.Parallel()
	d := dovecot.Start(t, "fetch", "scram1", "scram256")
	d.SetScheme(t, "scram1", "SCRAM-SHA-1")
	d.SetScheme(t, "scram256", "SCRAM-SHA-256")
	d.SetMechanisms(t, "plain", "login", "cram-md5", "apop", "scram-sha-1", "scram-sha-256")
	msgs := []string{"Subject: 1\n\none\n", "Subject: 2\n\n.dot\nFrom x\n", "Subject: 3\n\nthree\n"}
	for _, u := range []string{"fetch", "scram1", "scram256"} {
		d.Deliver(t, u, msgs)
	}
	srv := &testServer{addr: d.Addr}
	acct := func(user, auth, mail, state, extra string) *Account {
		a := account(t, srv, fmt.Sprintf("tls = \"starttls\"\nfingerprint = %q\nauth = %q\ntarget = \"maildir:%s\"\n%s", d.Cert.Fingerprint(), auth, mail, extra))
		a.User, a.Password, a.StateDir = user, dovecot.Password, state
		return a
	}
	t.Run("mechanisms", func(t *testing.T) {
		for _, tc := range []struct{ user, mech string }{
			{"fetch", "auto"}, // picks SCRAM-SHA-256
			{"fetch", "user"}, {"fetch", "plain"}, {"fetch", "login"}, {"fetch", "cram-md5"}, {"fetch", "apop"},
			{"fetch", "scram-sha-1"}, {"fetch", "scram-sha-256"},
			{"scram1", "scram-sha-1"}, {"scram1", "plain"},
			{"scram256", "scram-sha-256"}, {"scram256", "auto"}, {"scram256", "user"},
		} {
			t.Run(tc.user+"/"+tc.mech, func(t *testing.T) {
				t.Parallel()
				a := acct(tc.user, tc.mech, filepath.Join(t.TempDir(), "Maildir"), filepath.Join(t.TempDir(), "state"), "")
				if res := run1(t, a, Options{}); res.Fetched != 3 {
					t.Fatalf("first run = %+v, want 3 fetched", res)
				}
				if res := run1(t, a, Options{}); res.Fetched != 0 {
					t.Fatalf("second run = %+v, want nothing new", res)
				}
			})
		}
	})
	t.Run("keep=false", func(t *testing.T) {
		// After the mechanisms group has ended: it empties "fetch".
		mail := filepath.Join(t.TempDir(), "Maildir")
		state := filepath.Join(t.TempDir(), "state")
		if res := run1(t, acct("fetch", "auto", mail, state, ""), Options{}); res.Fetched != 3 {
			t.Fatalf("first run = %+v, want 3 fetched", res)
		}
		if res := run1(t, acct("fetch", "auto", mail, state, "keep = false"), Options{}); res.Fetched != 0 || res.Deleted != 3 {
			t.Fatalf("keep = false run = %+v, want 3 deleted", res)
		}
		if n := d.Files(t, "fetch"); n != 0 {
			t.Errorf("%d messages left on Dovecot", n)
		}
		got := maildirFiles(t, mail)
		if len(got) != 3 {
			t.Fatalf("maildir has %d messages, want 3", len(got))
		}
		for _, m := range got {
			if m == msgs[1] {
				return
			}
		}
		t.Errorf("message 2 not delivered intact: %q", got)
	})
}
