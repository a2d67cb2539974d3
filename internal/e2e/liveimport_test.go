package e2e

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"hash/crc32"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/postoffice-mail/postoffice/internal/store/maildir"
	"github.com/postoffice-mail/postoffice/internal/testutil/dovecot"
	"github.com/postoffice-mail/postoffice/internal/uidlimport"
)

// TestLiveUIDLImport is a cut-over from a Dovecot whose UIDLs postoffice
// does not derive from the Maildir by itself (pop3_uidl_format = %g, the
// message's GUID: for a Maildir, the base of its file name): mpop ("keep on")
// fetches everything from Dovecot; "postoffice migrate uidl" reads the
// UIDLs from the running Dovecot over STLS and records them; "migrate
// verify" agrees; then postoffice serves the same Maildir on Dovecot's
// address. Python's poplib must list the same UIDLs byte for byte, mpop
// must fetch nothing, and after one delivery exactly that one. verify
// must catch a changed UIDL, a missing message and a size difference,
// each injected into a copy of the maildrop.
func TestLiveUIDLImport(t *testing.T) {
	t.Parallel()
	mpop := need(t, "mpop", "mpop")
	py := need(t, "python3", "python3")
	const user = "alice"
	d := dovecot.Start(t, user)
	msgs := make([]string, 12)
	for i := range msgs {
		msgs[i] = fmt.Sprintf("From: sender@example.org\nTo: alice@example.org\nMessage-ID: <%d@example.org>\nSubject: live import %02d\n\nbody of message %02d\n", i, i+1, i+1)
	}
	// Hard cases for matching: the same message delivered twice, and a
	// message without Message-ID.
	msgs[5] = msgs[4]
	msgs[7] = "From: sender@example.org\nSubject: no id\n\nno message-id here\n"
	d.Deliver(t, user, msgs)
	d.AddConfig(t, "pop3_uidl_format = %g")
	host, port := hostPort(t, d.Addr)

	// Wait, bounded, until the reloaded Dovecot lists GUIDs (for a
	// Maildir, the base of the file name) instead of its default
	// %08Xu%08Xv.
	var fromDovecot []byte
	for deadline := time.Now().Add(15 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		fromDovecot = poplibUIDL(t, py, host, port, user)
		first, _, _ := bytes.Cut(fromDovecot, []byte("\r\n"))
		if f := bytes.Fields(first); len(f) == 2 && bytes.Contains(f[1], []byte(".M")) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("Dovecot does not list %%g UIDLs after the reload:\n%s", fromDovecot)
		}
	}
	if n := bytes.Count(fromDovecot, []byte("\r\n")); n != len(msgs) {
		t.Fatalf("Dovecot's UIDL listing has %d lines, want %d:\n%s", n, len(msgs), fromDovecot)
	}
	dir := t.TempDir()
	if got := takeoverMpop(t, mpop, dir, host, port, user, "dovecot"); len(got) != len(msgs) {
		t.Fatalf("mpop fetched %d messages from Dovecot, want %d", len(got), len(msgs))
	}

	location := filepath.Join(d.Dir, "mail", "%u", "Maildir")
	s := &site{t: t, dir: dir, config: filepath.Join(dir, "postoffice.toml")}
	writeConfig := func(path, location string) {
		cfg := fmt.Sprintf("[pop3]\nlisten = [%q]\nauth_fail_delay = \"0s\"\n\n[auth]\npasswd_file = %q\n\n[mail]\nlocation = \"maildir:%s\"\n",
			d.Addr, filepath.Join(d.Dir, "passwd"), location)
		if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	writeConfig(s.config, location)
	st, err := maildir.New(maildir.Options{Location: location})
	if err != nil {
		t.Fatal(err)
	}
	s.store = st
	caFile := filepath.Join(dir, "dovecot-ca.pem")
	if err := os.WriteFile(caFile, d.Cert.CertPEM, 0o644); err != nil {
		t.Fatal(err)
	}
	from := fmt.Sprintf("pop3://%s:%s@%s?starttls", user, strings.ReplaceAll(dovecot.Password, " ", "%20"), d.Addr)

	// A dry run records nothing: postoffice would still list its own UIDLs.
	out := s.run("", "migrate", "uidl", "--from", from, "--ca-file", caFile, "--user", user, "--config", s.config, "--dry-run")
	if !strings.Contains(out, "matched 12: would import 12 UIDLs") {
		t.Errorf("dry run said:\n%s", out)
	}
	if _, err := os.Stat(filepath.Join(d.Maildir(user), "postoffice-index")); err == nil {
		t.Errorf("the dry run wrote postoffice-index")
	}
	out = s.run("", "migrate", "uidl", "--from", from, "--ca-file", caFile, "--user", user, "--config", s.config)
	if !strings.Contains(out, "matched 12: imported 12 UIDLs, 0 already set") {
		t.Errorf("migrate uidl said:\n%s", out)
	}
	// Idempotent.
	out = s.run("", "migrate", "uidl", "--from", from, "--ca-file", caFile, "--user", user, "--config", s.config)
	if !strings.Contains(out, "matched 12: imported 0 UIDLs, 12 already set") {
		t.Errorf("second migrate uidl said:\n%s", out)
	}
	out = s.run("", "migrate", "verify", "--from", from, "--ca-file", caFile, "--user", user, "--config", s.config, "--sample", "-1")
	if !strings.Contains(out, "OK, the two agree") || !strings.Contains(out, "12 bodies compared") {
		t.Errorf("verify of a clean switch said:\n%s", out)
	}

	// verify catches each injected difference, in a copy of the maildrop.
	copyDir := filepath.Join(dir, "copy")
	if b, err := exec.Command("cp", "-a", filepath.Join(d.Dir, "mail"), copyDir).CombinedOutput(); err != nil {
		t.Fatalf("cp: %v\n%s", err, b)
	}
	copyCfg := filepath.Join(dir, "copy.toml")
	writeConfig(copyCfg, filepath.Join(copyDir, "%u", "Maildir"))
	changed, gone, resized := editIndex(t, filepath.Join(copyDir, user, "Maildir"))
	cmd := exec.Command(binary, "migrate", "verify", "--from", from, "--ca-file", caFile, "--user", user, "--config", copyCfg, "--json")
	b, err := cmd.Output()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != 1 {
		t.Fatalf("verify of a differing copy: %v (want exit status 1)\n%s", err, b)
	}
	var rep uidlimport.VerifyReport
	if err := json.Unmarshal(b, &rep); err != nil {
		t.Fatalf("verify --json: %v\n%s", err, b)
	}
	kinds := map[string]string{}
	for _, x := range rep.Differences {
		kinds[x.Kind+" "+x.UIDL] = x.New
	}
	for _, k := range []string{"missing " + changed, "extra CHANGED-" + changed, "missing " + gone, "size " + resized} {
		if _, ok := kinds[k]; !ok {
			t.Errorf("verify did not report %q: %+v", k, rep.Differences)
		}
	}

	// The switch: postoffice on Dovecot's address and Maildir.
	d.Stop(t)
	srv := s.start()
	if got := poplibUIDL(t, py, host, port, user); !bytes.Equal(got, fromDovecot) {
		lines := func(b []byte) []string { return strings.SplitAfter(string(b), "\r\n") }
		t.Errorf("UIDL listing after the import: Dovecot (-) and postoffice (+) differ:\n%s",
			cmp.Diff(lines(fromDovecot), lines(got)))
	}
	if got := takeoverMpop(t, mpop, dir, host, port, user, "postoffice"); len(got) != 0 {
		t.Errorf("mpop fetched %d messages again from postoffice, want 0", len(got))
	}
	const fresh = "From: sender@example.org\nTo: alice@example.org\nSubject: after the import\n\nnew mail\n"
	s.deliver(user, fresh)
	got := takeoverMpop(t, mpop, dir, host, port, user, "new")
	if len(got) != 1 || !strings.Contains(got[0], "Subject: after the import") {
		t.Errorf("mpop fetched %d messages after one delivery, want only the new one: %.300q", len(got), got)
	}
	if t.Failed() {
		t.Logf("postoffice log:\n%s", srv.log)
	}
}

// editIndex injects three differences into the postoffice-index of a
// Maildir (postoffice-index 2 format: "<uidl> <size> <sub> <name>" lines,
// a trailer "end <count> <crc32c>"): message 1 gets another UIDL, message
// 2 is removed (its file too), message 3's size grows by one. It returns
// the three original UIDLs.
func editIndex(t *testing.T, md string) (changed, gone, resized string) {
	t.Helper()
	p := filepath.Join(md, "postoffice-index")
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSuffix(string(b), "\n"), "\n")
	head, body := lines[0], lines[1:len(lines)-1]
	var out []string
	for i, l := range body {
		f := strings.SplitN(l, " ", 4)
		switch i {
		case 0:
			changed = f[0]
			f[0] = "CHANGED-" + f[0]
		case 1:
			gone = f[0]
			if err := os.Remove(filepath.Join(md, f[2], f[3])); err != nil {
				t.Fatal(err)
			}
			continue
		case 2:
			resized = f[0]
			var n int
			fmt.Sscan(f[1], &n)
			f[1] = fmt.Sprint(n + 1)
		}
		out = append(out, strings.Join(f, " "))
	}
	text := head + "\n" + strings.Join(out, "\n") + "\n"
	sum := crc32.Checksum([]byte(text), crc32.MakeTable(crc32.Castagnoli))
	text += fmt.Sprintf("end %d %08x\n", len(out), sum)
	if err := os.WriteFile(p, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	return changed, gone, resized
}
