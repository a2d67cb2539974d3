package fetch

import (
	"fmt"
	"path/filepath"
	"testing"

	"github.com/postoffice-mail/postoffice/internal/testutil/dovecot"
)

// A fetch from a real Dovecot (internal/testutil/dovecot): every mechanism
// it offers, nothing refetched, then keep = false empties the maildrop.
func TestDovecotFetch(t *testing.T) {
	t.Parallel()
	d := dovecot.Start(t, "fetch")
	d.Deliver(t, "fetch", []string{"Subject: 1\n\none\n", "Subject: 2\n\n.dot\nFrom x\n", "Subject: 3\n\nthree\n"})
	srv := &testServer{addr: d.Addr}
	mail := filepath.Join(t.TempDir(), "Maildir")
	state := filepath.Join(t.TempDir(), "state")
	acct := func(auth, extra string) *Account {
		a := account(t, srv, fmt.Sprintf("tls = \"starttls\"\nfingerprint = %q\nauth = %q\ntarget = \"maildir:%s\"\n%s", d.Cert.Fingerprint(), auth, mail, extra))
		a.User, a.Password, a.StateDir = "fetch", dovecot.Password, state
		return a
	}
	if res := run1(t, acct("auto", ""), Options{}); res.Fetched != 3 {
		t.Fatalf("first run = %+v, want 3 fetched", res)
	}
	// Every mechanism Dovecot offers here; nothing new each time.
	for _, mech := range []string{"user", "plain", "login", "cram-md5", "apop"} {
		if res := run1(t, acct(mech, ""), Options{}); res.Fetched != 0 {
			t.Errorf("auth %s: run = %+v, want nothing new", mech, res)
		}
	}
	if res := run1(t, acct("auto", "keep = false"), Options{}); res.Fetched != 0 || res.Deleted != 3 {
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
		if m == "Subject: 2\n\n.dot\nFrom x\n" {
			return
		}
	}
	t.Errorf("message 2 not delivered intact: %q", got)
}
