package dovecot

import (
	"bufio"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// SetScheme stores user's password (Password) in passdb in the given
// Dovecot scheme, as "doveadm pw -s SCHEME" writes it: {SCRAM-SHA-256},
// {SCRAM-SHA-1}, {CRAM-MD5}, {SHA512-CRYPT}... A mechanism then works for
// user only if the scheme can serve it (SCRAM-SHA-256 needs {SCRAM-SHA-256}
// or {PLAIN}; PLAIN and USER/PASS work with any). Call it before
// SetMechanisms, whose reload makes sure the new entry is read.
func (d *Server) SetScheme(t testing.TB, user, scheme string) {
	t.Helper()
	out, err := exec.Command("doveadm", "pw", "-s", scheme, "-p", Password).Output()
	if err != nil {
		t.Fatalf("doveadm pw -s %s: %v", scheme, err)
	}
	hash := strings.TrimSpace(string(out))
	p := filepath.Join(d.Dir, "passwd")
	data, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	found := false
	for _, l := range strings.SplitAfter(string(data), "\n") {
		if name, _, ok := strings.Cut(l, ":"); ok && name == user {
			l = fmt.Sprintf("%s:%s::::::\n", user, hash)
			found = true
		}
		b.WriteString(l)
	}
	if !found {
		fmt.Fprintf(&b, "%s:%s::::::\n", user, hash)
	}
	if err := os.WriteFile(p, []byte(b.String()), 0o644); err != nil {
		t.Fatal(err)
	}
}

var authMechanismsLine = regexp.MustCompile(`(?m)^auth_mechanisms = .*$`)

// SetMechanisms replaces auth_mechanisms (Dovecot names, such as "plain
// login cram-md5 apop scram-sha-1 scram-sha-256"), reloads Dovecot with
// SIGHUP and returns once CAPA lists them.
func (d *Server) SetMechanisms(t testing.TB, mechs ...string) {
	t.Helper()
	p := filepath.Join(d.Dir, "dovecot.conf")
	conf, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	if !authMechanismsLine.Match(conf) {
		t.Fatal("dovecot.conf has no auth_mechanisms line")
	}
	conf = authMechanismsLine.ReplaceAll(conf, []byte("auth_mechanisms = "+strings.Join(mechs, " ")))
	if err := os.WriteFile(p, conf, 0o644); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(filepath.Join(d.Dir, "run", "master.pid"))
	if err != nil {
		t.Fatal(err)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		t.Fatal(err)
	}
	if err := syscall.Kill(pid, syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	var want []string
	for _, m := range mechs {
		if m = strings.ToUpper(m); m != "APOP" {
			want = append(want, m)
		}
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		got, err := d.saslCaps()
		if err == nil && hasAll(got, want) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("dovecot reload: CAPA SASL = %q (%v), want %q", got, err, want)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// saslCaps reads the SASL line of CAPA, after STLS (Dovecot hides the
// plaintext mechanisms before it only with disable_plaintext_auth).
func (d *Server) saslCaps() ([]string, error) {
	nc, err := net.DialTimeout("tcp", d.Addr, time.Second)
	if err != nil {
		return nil, err
	}
	defer nc.Close()
	nc.SetDeadline(time.Now().Add(2 * time.Second))
	br := bufio.NewReader(nc)
	if _, err := br.ReadString('\n'); err != nil {
		return nil, err
	}
	fmt.Fprintf(nc, "CAPA\r\n")
	var sasl []string
	for {
		l, err := br.ReadString('\n')
		if err != nil {
			return nil, err
		}
		l = strings.TrimRight(l, "\r\n")
		if l == "." {
			break
		}
		if f := strings.Fields(l); len(f) > 0 && strings.EqualFold(f[0], "SASL") {
			sasl = f[1:]
		}
	}
	fmt.Fprintf(nc, "QUIT\r\n")
	return sasl, nil
}

func hasAll(have, want []string) bool {
	for _, w := range want {
		ok := false
		for _, h := range have {
			ok = ok || strings.EqualFold(h, w)
		}
		if !ok {
			return false
		}
	}
	return true
}
