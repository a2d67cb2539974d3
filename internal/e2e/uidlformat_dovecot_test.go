package e2e

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/postoffice-mail/postoffice/internal/testutil/dovecot"
	"github.com/postoffice-mail/postoffice/internal/uidlfmt"
)

// TestUIDLFormatMatchesDovecot checks [mail] uidl_format against a live
// Dovecot 2.3 for each variable postoffice maps on Maildir (%f, %g, %u,
// %v) and combinations: Dovecot with that pop3_uidl_format serves a
// Maildir of 5 messages, then postoffice with the same uidl_format serves
// the same files, dovecot-uidlist in place. The UIDL listings must be
// byte-identical, and a message delivered over LMTP after the switch is
// listed in the same shape: the format expanded with the UID Dovecot
// would give it next (dovecot-uidlist's N), its UIDVALIDITY (V) and its
// file name. "%v" alone gives every message the same UIDL in Dovecot,
// which serves them so, against RFC 1939 §7 ("unique within a maildrop");
// postoffice never serves a UIDL twice: the first message keeps Dovecot's
// and every other one, the new message included, gets one of its own, so
// there the test checks that instead of identity (a site with that format
// has clients that could never tell its messages apart anyway).
func TestUIDLFormatMatchesDovecot(t *testing.T) {
	for _, format := range []string{"%f", "%g", "%u", "%v", "%v.%u", "%08Xv%08Xu", "%u-%f"} {
		t.Run(strings.ReplaceAll(format, "%", ""), func(t *testing.T) {
			t.Parallel()
			py := need(t, "python3", "python3")
			const user = "alice"
			d := dovecot.StartWith(t, dovecot.Options{Users: []string{user}, Config: "pop3_uidl_format = " + format})
			msgs := make([]string, 5)
			for i := range msgs {
				msgs[i] = fmt.Sprintf("From: sender@example.org\nTo: alice@example.org\nMessage-ID: <fmt-%d@example.org>\nSubject: format %d\n\nbody %d\n", i, i, i)
			}
			d.Deliver(t, user, msgs)
			host, port := hostPort(t, d.Addr)
			fromDovecot := poplibUIDL(t, py, host, port, user)
			if n := bytes.Count(fromDovecot, []byte("\r\n")); n != len(msgs) {
				t.Fatalf("Dovecot's UIDL listing has %d lines, want %d:\n%s", n, len(msgs), fromDovecot)
			}
			md := d.Maildir(user)
			validity, next := readUIDListHeader(t, filepath.Join(md, "dovecot-uidlist"))
			d.Stop(t)

			dir := t.TempDir()
			srv, lmtpAddr := postofficeOn(t, dir, d.Addr, filepath.Join(d.Dir, "passwd"),
				"maildir:"+filepath.Join(d.Dir, "mail", "%u", "Maildir"), format)
			lines := func(b []byte) []string { return strings.SplitAfter(string(b), "\r\n") }
			got := poplibUIDL(t, py, host, port, user)
			if format == "%v" {
				checkUniqueUIDLs(t, lines(fromDovecot), lines(got))
				return
			}
			if !bytes.Equal(got, fromDovecot) {
				t.Errorf("UIDL listing: Dovecot (-) and postoffice (+) differ:\n%s\npostoffice log:\n%s",
					cmp.Diff(lines(fromDovecot), lines(got)), srv.log)
			}

			lmtpDeliver(t, lmtpAddr, "alice@example.org", "From: sender@example.org\nMessage-ID: <fmt-new@example.org>\nSubject: after\n\nnew\n")
			base := newestMessage(t, md)
			after := lines(poplibUIDL(t, py, host, port, user))
			if len(after) != len(msgs)+2 { // the last element is empty
				t.Fatalf("listing after a delivery: %q", after)
			}
			if diff := cmp.Diff(lines(fromDovecot)[:len(msgs)], after[:len(msgs)]); diff != "" {
				t.Errorf("old messages' UIDLs changed after a delivery (-before +after):\n%s", diff)
			}
			want := uidlfmt.MustParse(format).Expand(uidlfmt.Values{UID: next, UIDValidity: validity, Filename: base, GUID: base})
			if got, want := after[len(msgs)], fmt.Sprintf("%d %s\r\n", len(msgs)+1, want); got != want {
				t.Errorf("new message listed as %q, want %q (the format with UID %d, UIDVALIDITY %d, file %s)", got, want, next, validity, base)
			}
		})
	}
}

// checkUniqueUIDLs checks postoffice's listing for a format that gave
// every message one UIDL in Dovecot: the first line as Dovecot's, every
// UIDL different.
func checkUniqueUIDLs(t *testing.T, dovecot, got []string) {
	t.Helper()
	if len(got) != len(dovecot) || got[0] != dovecot[0] {
		t.Fatalf("listing %q, want %d lines starting %q", got, len(dovecot), dovecot[0])
	}
	seen := map[string]bool{}
	for _, l := range got[:len(got)-1] {
		_, u, _ := strings.Cut(strings.TrimSuffix(l, "\r\n"), " ")
		if seen[u] {
			t.Errorf("UIDL %q listed twice: %q", u, got)
		}
		seen[u] = true
	}
}

// readUIDListHeader returns the UIDVALIDITY and next UID of a
// dovecot-uidlist (version 3 header: "3 V<validity> N<next> ...").
func readUIDListHeader(t *testing.T, path string) (validity, next uint32) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("Dovecot left no dovecot-uidlist: %v", err)
	}
	head, _, _ := strings.Cut(string(b), "\n")
	for _, f := range strings.Fields(head) {
		switch {
		case strings.HasPrefix(f, "V"):
			fmt.Sscan(f[1:], &validity)
		case strings.HasPrefix(f, "N"):
			fmt.Sscan(f[1:], &next)
		}
	}
	if validity == 0 || next == 0 {
		t.Fatalf("dovecot-uidlist header %q has no V and N", head)
	}
	return validity, next
}

// newestMessage returns the base name (without ":2,...") of the one
// message file in md's new/ that the test did not write (its names start
// with 17000000).
func newestMessage(t *testing.T, md string) string {
	t.Helper()
	var found []string
	for _, sub := range []string{"new", "cur"} {
		es, err := os.ReadDir(filepath.Join(md, sub))
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range es {
			if !strings.HasPrefix(e.Name(), "17000000") {
				base, _, _ := strings.Cut(e.Name(), ":")
				found = append(found, base)
			}
		}
	}
	if len(found) != 1 {
		t.Fatalf("messages delivered after the switch: %q, want one", found)
	}
	return found[0]
}
