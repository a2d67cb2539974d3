package main

import (
	"encoding/binary"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// writeKeytab writes a keytab (MIT format 0x0502) with one AES-256 key of
// principal components@realm; the key is made up, which is enough for
// postoffice check, which reads the keytab and does not decrypt anything.
func writeKeytab(t *testing.T, path, realm string, components ...string) {
	t.Helper()
	str := func(b []byte, s string) []byte {
		b = binary.BigEndian.AppendUint16(b, uint16(len(s)))
		return append(b, s...)
	}
	var e []byte
	e = binary.BigEndian.AppendUint16(e, uint16(len(components)))
	e = str(e, realm)
	for _, c := range components {
		e = str(e, c)
	}
	e = binary.BigEndian.AppendUint32(e, 3)          // KRB5_NT_SRV_HST
	e = binary.BigEndian.AppendUint32(e, 1700000000) // timestamp
	e = append(e, 2)                                 // kvno
	e = binary.BigEndian.AppendUint16(e, 18)         // aes256-cts-hmac-sha1-96
	e = str(e, strings.Repeat("k", 32))
	out := []byte{5, 2}
	out = binary.BigEndian.AppendUint32(out, uint32(len(e)))
	out = append(out, e...)
	if err := os.WriteFile(path, out, 0o600); err != nil {
		t.Fatal(err)
	}
}

// postoffice check reports a missing keytab, an unreadable one and one
// without the configured service principal's key, each naming
// kerberos.keytab, and exits 1; a good keytab is reported with its
// principal.
func TestCheckKerberosKeytab(t *testing.T) {
	dir := t.TempDir()
	passwd := filepath.Join(dir, "passwd")
	if code, _, errs := runCmd(t, "pw\n", "user", "add", "--passwd-file", passwd, "--password-stdin", "alice"); code != 0 {
		t.Fatal(errs)
	}
	good := filepath.Join(dir, "pop.keytab")
	writeKeytab(t, good, "EXAMPLE.ORG", "pop", "mail.example.org")
	wrong := filepath.Join(dir, "imap.keytab")
	writeKeytab(t, wrong, "EXAMPLE.ORG", "imap", "mail.example.org")
	garbage := filepath.Join(dir, "garbage.keytab")
	os.WriteFile(garbage, []byte("not a keytab"), 0o600)
	cfg := func(keytab string) string {
		p := filepath.Join(dir, "postoffice.toml")
		text := `[pop3]
listen = ["127.0.0.1:1110"]
[auth]
passwd_file = "` + passwd + `"
[mail]
location = "maildir:` + dir + `/vmail/%d/%n/Maildir"
[kerberos]
keytab = "` + keytab + `"
realm = "EXAMPLE.ORG"
[kpop]
listen = ["127.0.0.1:1109"]
`
		if err := os.WriteFile(p, []byte(text), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	for _, tc := range []struct {
		keytab string
		code   int
		want   string
	}{
		{good, 0, "GSSAPI offered for pop/mail.example.org@EXAMPLE.ORG"},
		{filepath.Join(dir, "missing.keytab"), 1, "kerberos.keytab: kerberos: keytab: open"},
		{garbage, 1, "kerberos.keytab:"},
		{wrong, 1, "has no key for pop/*@EXAMPLE.ORG (it has: imap/mail.example.org@EXAMPLE.ORG)"},
	} {
		code, out, errs := runCmd(t, "", "check", "--config", cfg(tc.keytab))
		if code != tc.code || !strings.Contains(out+errs, tc.want) {
			t.Errorf("check with keytab %s: exit %d, want %d; output lacks %q:\n%s%s", filepath.Base(tc.keytab), code, tc.code, tc.want, out, errs)
		}
	}
	if os.Geteuid() == 0 {
		// Mode 000 stops anyone but root, who reads it as serve would:
		// only a non-root run can see the unreadable keytab refused.
		return
	}
	os.Chmod(good, 0)
	if code, out, errs := runCmd(t, "", "check", "--config", cfg(good)); code != 1 || !strings.Contains(out+errs, "permission denied") {
		t.Errorf("check with an unreadable keytab: exit %d:\n%s%s", code, out, errs)
	}
}
