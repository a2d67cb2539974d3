//go:build linux

package mbox

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/postoffice-mail/postoffice/internal/testutil"
)

// popa3dMbox exercises each rule of popa3d's UIDL: the first Received
// header (with a continuation line) and none after it, Date and
// Message-ID only before it, every Delivered-To, X-Delivery-ID only with
// an uppercase X, case-insensitive names, and a message without Received.
const popa3dMbox = "From a@example.org  Mon Dec  7 10:00:00 2026\n" +
	"Return-Path: <a@example.org>\n" +
	"Date: Mon, 7 Dec 2026 09:59:00 +0000\n" +
	"received: from mx.example.org by pop.example.org\n" +
	"\tid 4C1; Mon, 7 Dec 2026 10:00:00 +0000\n" +
	"Received: from second.example.org\n" +
	"Message-ID: <after-received@example.org>\n" +
	"Delivered-To: u@example.org\n" +
	"X-Delivery-ID: 1234\n" +
	"Subject: one\n" +
	"\n" +
	"body one\n" +
	"\n" +
	"From b@example.org  Mon Dec  7 10:00:01 2026\n" +
	"Date: Mon, 7 Dec 2026 10:00:01 +0000\n" +
	"message-id: <two@example.org>\n" +
	"x-delivery-id: lowercase-not-hashed\n" +
	"Subject: two\n" +
	"\n" +
	"body two\n" +
	"\n" +
	"From c@example.org  Mon Dec  7 10:00:02 2026\n" +
	"Delivered-To: v@example.org\n" +
	"Delivered-To: w@example.org\n" +
	"Message-ID:\n" +
	" <folded@example.org>\n" +
	"Subject: three\n" +
	"\n" +
	"body three\n"

// TestPopa3dUIDLsMatchRealPopa3d runs the real popa3d (Debian's package,
// unpacked: it conflicts with dovecot-pop3d) inetd-style on an mbox in
// /var/mail and checks that the store with Popa3dUIDLs lists the same
// UIDLs, for mail that was there and for mail delivered afterwards.
// popa3d reads /var/mail/<user> (compiled in) and authenticates through
// PAM, so the test needs root: it makes a system user with a password and
// removes it, and its mbox, at the end.
func TestPopa3dUIDLsMatchRealPopa3d(t *testing.T) {
	bin := os.Getenv("POSTOFFICE_POPA3D")
	if bin == "" {
		bin = "/usr/sbin/popa3d"
	}
	if _, err := os.Stat(bin); err != nil {
		testutil.Missing(t, "popa3d (set POSTOFFICE_POPA3D to an unpacked usr/sbin/popa3d)", "popa3d")
	}
	if os.Geteuid() != 0 {
		t.Skip("needs root: popa3d authenticates system users and reads /var/mail")
	}
	for _, p := range []string{"useradd", "userdel", "chpasswd"} {
		testutil.Need(t, p, "passwd")
	}
	// popa3d drops privileges to the user "popa3d" and chroots to
	// /var/lib/popa3d before it authenticates.
	if _, err := user.Lookup("popa3d"); err != nil {
		run(t, "", "useradd", "-r", "-M", "-d", "/var/lib/popa3d", "-s", "/usr/sbin/nologin", "popa3d")
		t.Cleanup(func() { exec.Command("userdel", "popa3d").Run() })
	}
	if err := os.MkdirAll("/var/lib/popa3d", 0o755); err != nil {
		t.Fatal(err)
	}
	name := fmt.Sprintf("pa3t%d", os.Getpid()%100000)
	const pass = "Pa3d-test-pw"
	exec.Command("userdel", name).Run() // a leftover of a killed run
	run(t, "", "useradd", "-M", "-d", "/nonexistent", "-s", "/usr/sbin/nologin", name)
	mboxPath := filepath.Join("/var/mail", name)
	t.Cleanup(func() {
		os.Remove(mboxPath)
		os.Remove(mboxPath + ".lock")
		for _, f := range []string{"index", "lock", "journal"} {
			os.Remove(filepath.Join("/var/mail", "."+name+".postoffice-"+f))
		}
		exec.Command("userdel", name).Run()
	})
	run(t, name+":"+pass+"\n", "chpasswd")
	u, err := user.Lookup(name)
	if err != nil {
		t.Fatal(err)
	}
	var uid, gid int
	fmt.Sscan(u.Uid, &uid)
	fmt.Sscan(u.Gid, &gid)
	if err := os.WriteFile(mboxPath, []byte(popa3dMbox), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(mboxPath, uid, gid); err != nil {
		t.Fatal(err)
	}

	s, err := New(Options{
		Location:    "mbox:/var/mail/%u",
		Popa3dUIDLs: true,
		NoSync:      true,
		Owner:       func(string) (int, int, error) { return uid, gid, nil },
	})
	if err != nil {
		t.Fatal(err)
	}
	compare := func(when string, n int) {
		t.Helper()
		want := popa3dUIDLs(t, bin, name, pass)
		if len(want) != n {
			t.Fatalf("%s: popa3d listed %d messages, want %d: %q", when, len(want), n, want)
		}
		m, err := s.Open(context.Background(), name)
		if err != nil {
			t.Fatal(err)
		}
		var got []string
		for _, msg := range m.Messages() {
			got = append(got, msg.UID)
		}
		m.Close()
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("%s: UIDLs (-popa3d +postoffice):\n%s", when, diff)
		}
	}
	compare("old mail", 3)
	msg := "Received: from new.example.org by pop.example.org; Mon, 7 Dec 2026 11:00:00 +0000\n" +
		"Date: Mon, 7 Dec 2026 11:00:00 +0000\nMessage-ID: <new@example.org>\nSubject: new\n\nnew mail\n"
	if err := s.Deliver(context.Background(), name, strings.NewReader(msg)); err != nil {
		t.Fatal(err)
	}
	compare("after a delivery", 4)
}

// popa3dUIDLs runs popa3d once, inetd-style, and returns its UIDL listing.
func popa3dUIDLs(t *testing.T, bin, name, pass string) []string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin)
	cmd.Stdin = strings.NewReader("USER " + name + "\r\nPASS " + pass + "\r\nUIDL\r\nQUIT\r\n")
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("popa3d: %v; output %q", err, out)
	}
	// Greeting, USER, PASS and UIDL answer +OK; the listing follows.
	lines := strings.Split(strings.ReplaceAll(string(out), "\r\n", "\n"), "\n")
	for i := 0; i < 4; i++ {
		if i >= len(lines) || !strings.HasPrefix(lines[i], "+OK") {
			t.Fatalf("popa3d: reply %d is not +OK: %q", i+1, out)
		}
	}
	var uidls []string
	for _, line := range lines[4:] {
		if line == "." {
			return uidls
		}
		_, u, _ := strings.Cut(line, " ")
		uidls = append(uidls, u)
	}
	t.Fatalf("popa3d: unterminated UIDL listing in %q", out)
	return nil
}

func run(t *testing.T, stdin string, name string, args ...string) {
	t.Helper()
	cmd := exec.Command(name, args...)
	cmd.Stdin = strings.NewReader(stdin)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("%s %s: %v: %s", name, strings.Join(args, " "), err, out)
	}
}

// TestPopa3dUIDLDuplicates: popa3d gives two messages with the same
// hashed lines the same UIDL; the store keeps the first and gives the
// second one of its own (RFC 1939 §7: unique in the maildrop).
func TestPopa3dUIDLDuplicates(t *testing.T) {
	t.Parallel()
	s := newTestStore(t, Options{Popa3dUIDLs: true})
	const one = "From a@example.org  Mon Dec  7 10:00:00 2026\nMessage-ID: <same@example.org>\nSubject: x\n\nbody\n"
	p, err := s.Path("dup")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, []byte(one+"\n"+one), 0o600); err != nil {
		t.Fatal(err)
	}
	m, err := s.Open(context.Background(), "dup")
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	msgs := m.Messages()
	if len(msgs) != 2 || msgs[0].UID != popa3dUIDL([]byte(one[:strings.Index(one, "\n\n")+1])) || msgs[1].UID == msgs[0].UID {
		t.Errorf("UIDLs %v, want popa3d's then a unique one", msgs)
	}
}
