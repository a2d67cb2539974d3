package scheme

import (
	"context"
	"errors"
	"os/exec"
	"strings"
	"testing"
	"time"
)

// doveadm returns the path of Dovecot's doveadm or skips the test.
func doveadm(t *testing.T) string {
	t.Helper()
	p, err := exec.LookPath("doveadm")
	if err != nil {
		t.Skip("doveadm not on PATH: install dovecot-core to cross-check against Dovecot")
	}
	return p
}

// doveadmPw runs "doveadm pw args..." and returns its trimmed output and
// whether it exited 0.
func doveadmPw(t *testing.T, bin string, args ...string) (string, bool) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, bin, append([]string{"pw"}, args...)...).CombinedOutput()
	var exit *exec.ExitError
	if err != nil && !errors.As(err, &exit) {
		t.Fatalf("doveadm pw %q: %v", args, err)
	}
	return strings.TrimSpace(string(out)), err == nil
}

var livePasswords = []string{"Correct horse 9", "pässwörd ключ 密码", "x"}

// TestDoveadmLive makes fresh hashes with the installed doveadm and verifies
// them, and checks Hash output with "doveadm pw -t" (Dovecot's own verifier).
func TestDoveadmLive(t *testing.T) {
	t.Parallel()
	bin := doveadm(t)
	t.Run("doveadm-hashes", func(t *testing.T) {
		t.Parallel()
		for _, s := range []string{
			"CRYPT", "MD5-CRYPT", "SHA256-CRYPT", "SHA512-CRYPT", "BLF-CRYPT", "ARGON2I",
			"ARGON2ID", "SSHA", "SSHA256", "SSHA512", "SHA", "SHA256", "SHA512", "SMD5",
			"PLAIN-MD5", "LDAP-MD5", "CRAM-MD5", "PBKDF2", "SCRAM-SHA-1", "SCRAM-SHA-256",
			"PLAIN", "SHA512.HEX", "SSHA256.HEX", "CRAM-MD5.B64",
		} {
			for _, pw := range livePasswords {
				h, ok := doveadmPw(t, bin, "-s", s, "-p", pw)
				if !ok {
					t.Fatalf("doveadm pw -s %s failed: %s", s, h)
				}
				if ok, err := Verify(h, pw, DovecotDefaultScheme); !ok || err != nil {
					t.Errorf("Verify(%q, %q) = %v, %v, want true, nil", h, pw, ok, err)
				}
				if ok, err := Verify(h, wrongPassword(pw), DovecotDefaultScheme); ok || err != nil {
					t.Errorf("Verify(%q, %q) = %v, %v, want false, nil", h, wrongPassword(pw), ok, err)
				}
			}
		}
	})
	for _, s := range HashSchemes() {
		t.Run("Hash-"+s, func(t *testing.T) {
			t.Parallel()
			pws := append(livePasswords[:len(livePasswords):len(livePasswords)], "with:colon")
			if expensive(s) {
				pws = pws[1:2]
			}
			for _, pw := range pws {
				h, err := Hash(s, pw)
				if err != nil {
					t.Fatalf("Hash(%q, %q) = %v", s, pw, err)
				}
				if out, ok := doveadmPw(t, bin, "-t", h, "-p", pw); !ok {
					t.Errorf("doveadm pw -t %q -p %q failed: %s", h, pw, out)
				}
				if out, ok := doveadmPw(t, bin, "-t", h, "-p", wrongPassword(pw)); ok {
					t.Errorf("doveadm pw -t %q -p %q accepted a wrong password: %s", h, wrongPassword(pw), out)
				}
			}
		})
	}
	// Differential cases: Verify must agree with doveadm pw -t on entries
	// whose handling is subtle (truncation, encodings, aliases).
	t.Run("differential", func(t *testing.T) {
		t.Parallel()
		long := strings.Repeat("0123456789", 8)
		bcryptLong, ok := doveadmPw(t, bin, "-s", "BLF-CRYPT", "-p", long)
		if !ok {
			t.Fatalf("doveadm pw -s BLF-CRYPT failed: %s", bcryptLong)
		}
		cases := []struct{ stored, pass string }{
			{"{PLAIN-TRUNC}5-Corre", "Correct horse 9"},
			{"{PLAIN-TRUNC}5-Corre", "Corre"},
			{"{PLAIN-TRUNC}5-Corre", "Corr"},
			{"{PLAIN-TRUNC}9-Corre", "Corre"},
			{"{PLAIN-TRUNC}9-Corre", "Correct"},
			{"{MD5}e9ef243952c4fa5644d2ab12dbec5791", "Correct horse 9"},
			{"{MD5}6e8kOVLE+lZE0qsS2+xXkQ==", "Correct horse 9"},
			{"{LDAP-MD5}e9ef243952c4fa5644d2ab12dbec5791", "Correct horse 9"},
			{"{PLAIN-MD5}6e8kOVLE+lZE0qsS2+xXkQ==", "Correct horse 9"},
			{"{plain}abc", "abc"},
			{"{PLAIN.B64}YWJj", "abc"},
			{"{PLAIN.HEX}616263", "abc"},
			{"{CRYPT}$6$rounds=10000$abcdefgh$qDYTU34w75MDypzlS8.Kv6Mrb6ncganlkT/rQdRKkDE4xe96ruue8nFCnTv48xR1zdsR0a/yLCfzdqysCkxDs/", "Correct horse 9"},
			{"{SHA256-CRYPT}$5$rounds=5000$ab$9rEuYnshm9mWP0./2tzHllBq.ywkx3KV0JN02H/NKx9", "Correct horse 9"},
			{bcryptLong, long},
			{bcryptLong, long[:72]},
			{bcryptLong, long[:71]},
		}
		for _, c := range cases {
			out, dovecotOK := doveadmPw(t, bin, "-t", c.stored, "-p", c.pass)
			got, err := Verify(c.stored, c.pass, DovecotDefaultScheme)
			if got != dovecotOK || err != nil {
				t.Errorf("Verify(%q, %q) = %v, %v; doveadm pw -t says %v (%s)", c.stored, c.pass, got, err, dovecotOK, out)
			}
		}
	})
}
