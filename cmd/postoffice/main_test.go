package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/postoffice-mail/postoffice/internal/auth/passwdfile"
)

func runCmd(t *testing.T, stdinText string, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	stdin = strings.NewReader(stdinText)
	var out, errb bytes.Buffer
	code = run(args, &out, &errb)
	return code, out.String(), errb.String()
}

// postoffice user add|passwd|del|list edit a passwd-file that the server's
// user database then accepts; mistakes exit non-zero with a message.
func TestUserCommand(t *testing.T) {
	file := filepath.Join(t.TempDir(), "passwd")
	code, out, errs := runCmd(t, "", "user", "add", "--passwd-file", file, "alice@example.org")
	if code != 0 || !strings.HasPrefix(out, "alice@example.org password: ") {
		t.Fatalf("user add = %d, %q, %q", code, out, errs)
	}
	generated := strings.TrimSpace(strings.TrimPrefix(out, "alice@example.org password: "))
	if code, _, errs := runCmd(t, "s3cret pass\n", "user", "add", "--passwd-file", file, "--password-stdin", "--scheme", "BLF-CRYPT", "bob"); code != 0 {
		t.Fatalf("user add bob = %d, %q", code, errs)
	}
	db, err := passwdfile.Open(file, passwdfile.Options{})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if _, err := db.Authenticate(ctx, "alice@example.org", generated); err != nil {
		t.Errorf("the printed password does not log in: %v", err)
	}
	if _, err := db.Authenticate(ctx, "bob", "s3cret pass"); err != nil {
		t.Errorf("bob's password from stdin does not log in: %v", err)
	}
	if code, _, errs := runCmd(t, "new one\n", "user", "passwd", "--passwd-file", file, "--password-stdin", "bob"); code != 0 {
		t.Fatalf("user passwd = %d, %q", code, errs)
	}
	db, _ = passwdfile.Open(file, passwdfile.Options{})
	if _, err := db.Authenticate(ctx, "bob", "new one"); err != nil {
		t.Errorf("new password does not log in: %v", err)
	}
	if code, _, _ := runCmd(t, "", "user", "del", "--passwd-file", file, "alice@example.org"); code != 0 {
		t.Fatal("user del failed")
	}
	if code, out, _ := runCmd(t, "", "user", "list", "--passwd-file", file); code != 0 || out != "bob\n" {
		t.Errorf("user list = %d, %q; want bob", code, out)
	}

	for _, tt := range []struct {
		args []string
		code int
		want string
	}{
		{[]string{"user", "add", "--passwd-file", file, "bob"}, 1, "bob"},
		{[]string{"user", "add", "--passwd-file", file, "../x"}, 1, "passwdfile"},
		{[]string{"user", "add", "bob"}, 2, "need --passwd-file"},
		{[]string{"user", "add", "--passwd-file", file, "--scheme", "NOPE", "carol"}, 2, "NOPE"},
		{[]string{"user", "frob", "--passwd-file", file}, 2, "unknown subcommand"},
		{[]string{"serve"}, 2, "need --config"},
		{[]string{"serve", "--dev", "--config", "x"}, 2, "exclude"},
		{[]string{"serve", "--config", filepath.Join(t.TempDir(), "missing.toml")}, 1, "config"},
		{[]string{"nonsense"}, 2, "unknown command"},
	} {
		code, _, errs := runCmd(t, "", tt.args...)
		if code != tt.code || !strings.Contains(errs, tt.want) {
			t.Errorf("postoffice %s = %d, %q; want %d and %q", strings.Join(tt.args, " "), code, errs, tt.code, tt.want)
		}
	}
}

// The schemes the challenge-response login methods need can be chosen with
// --scheme, and the entries they write log in.
func TestUserSchemes(t *testing.T) {
	file := filepath.Join(t.TempDir(), "passwd")
	for _, tt := range []struct{ scheme, password, prefix string }{
		{"SCRAM-SHA-256", "s3cret pass", "{SCRAM-SHA-256}"},
		{"scram-sha-1", "s3cret pass", "{SCRAM-SHA-1}"},
		{"CRAM-MD5", "s3cret pass", "{CRAM-MD5}"},
		{"PLAIN", "s3cret pass", "{PLAIN}s3cret pass"},
		{"PLAIN", "with:colon", "{PLAIN.B64}"},
	} {
		user := "u-" + strings.ToLower(tt.scheme) + "-" + strings.Map(func(r rune) rune {
			if r == ':' || r == ' ' {
				return '_'
			}
			return r
		}, tt.password)
		if code, _, errs := runCmd(t, tt.password+"\n", "user", "add", "--passwd-file", file, "--password-stdin", "--scheme", tt.scheme, user); code != 0 {
			t.Fatalf("user add --scheme %s = %d, %q", tt.scheme, code, errs)
		}
		db, err := passwdfile.Open(file, passwdfile.Options{})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := db.Authenticate(context.Background(), user, tt.password); err != nil {
			t.Errorf("--scheme %s: Authenticate = %v", tt.scheme, err)
		}
		if _, stored, err := db.Credentials(context.Background(), user); err != nil || !strings.HasPrefix(stored, tt.prefix) {
			t.Errorf("--scheme %s: Credentials = %q, %v, want prefix %q", tt.scheme, stored, err, tt.prefix)
		}
	}
}

// With --config, add and passwd warn about enabled login methods the chosen
// scheme cannot serve, and still succeed.
func TestUserWarnsAboutMechanisms(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "passwd")
	writeConfig := func(name, auth string) string {
		p := filepath.Join(dir, name)
		text := `[pop3]
listen = ["127.0.0.1:1110"]
[tls]
cert = "/etc/ssl/pop.pem"
key = "/etc/ssl/pop.key"
[auth]
passwd_file = "` + file + `"
` + auth + `
[mail]
location = "maildir:/var/vmail/%d/%n/Maildir"
`
		if err := os.WriteFile(p, []byte(text), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	all := writeConfig("all.toml", `apop = true
mechanisms = ["scram-sha-256", "CRAM-MD5", "PLAIN", "SCRAM-SHA-1-PLUS"]`)
	scram := writeConfig("scram.toml", `mechanisms = ["SCRAM-SHA-256-PLUS", "SCRAM-SHA-256", "PLAIN", "LOGIN"]`)
	none := writeConfig("none.toml", ``)
	cram := writeConfig("cram.toml", `mechanisms = ["CRAM-MD5"]`)
	for i, tt := range []struct {
		sub, config, scheme string
		want                string // "" means no warning
	}{
		{"add", all, "SHA512-CRYPT", "will not be able to log in with APOP, SCRAM-SHA-256, CRAM-MD5, SCRAM-SHA-1-PLUS (enabled in the config): a password stored as SHA512-CRYPT cannot serve them; --scheme PLAIN would serve them all, but stores a plaintext-equivalent secret"},
		{"add", all, "scram-sha-256", "log in with APOP, CRAM-MD5, SCRAM-SHA-1-PLUS (enabled in the config): a password stored as SCRAM-SHA-256"},
		{"add", all, "CRAM-MD5", "log in with APOP, SCRAM-SHA-256, SCRAM-SHA-1-PLUS (enabled"},
		{"add", all, "PLAIN", ""},
		{"add", scram, "BLF-CRYPT", "log in with SCRAM-SHA-256-PLUS, SCRAM-SHA-256 (enabled in the config): a password stored as BLF-CRYPT cannot serve them; --scheme SCRAM-SHA-256 would serve them all\n"},
		{"add", scram, "SCRAM-SHA-1", "log in with SCRAM-SHA-256-PLUS, SCRAM-SHA-256 (enabled"},
		{"add", scram, "SCRAM-SHA-256", ""},
		{"add", none, "SHA512-CRYPT", ""},
		{"add", cram, "ARGON2ID", "log in with CRAM-MD5 (enabled in the config): a password stored as ARGON2ID cannot serve them; --scheme CRAM-MD5 would serve them all, but stores a plaintext-equivalent secret"},
		{"passwd", all, "SHA256-CRYPT", "log in with APOP, SCRAM-SHA-256, CRAM-MD5, SCRAM-SHA-1-PLUS"},
	} {
		user := "u" + string(rune('a'+i))
		args := []string{"user", "add", "--config", tt.config, "--password-stdin", "--scheme", tt.scheme, user}
		if tt.sub == "passwd" {
			runCmd(t, "pw\n", "user", "add", "--passwd-file", file, "--password-stdin", user)
			args[1] = "passwd"
		}
		code, _, errs := runCmd(t, "pw\n", args...)
		if code != 0 {
			t.Errorf("postoffice %s = %d, %q; want success", strings.Join(args, " "), code, errs)
			continue
		}
		if tt.want == "" {
			if errs != "" {
				t.Errorf("postoffice %s: stderr %q, want none", strings.Join(args, " "), errs)
			}
			continue
		}
		if !strings.HasPrefix(errs, "postoffice user: warning: "+user+" ") || !strings.Contains(errs, tt.want) {
			t.Errorf("postoffice %s: stderr %q, want a warning containing %q", strings.Join(args, " "), errs, tt.want)
		}
	}
}

func TestServes(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		hash, method string
		served, ok   bool
	}{
		{"{PLAIN.B64}cHc=", "APOP", true, true},
		{"{CLEAR}pw", "SCRAM-SHA-256-PLUS", true, true},
		{"{HMAC-MD5}466d36e6039d748b4257a577209a5b5e908a55c46febe78a4bdc5bbdc4735f22", "CRAM-MD5", true, true},
		{"{HMAC-MD5}466d36e6039d748b4257a577209a5b5e908a55c46febe78a4bdc5bbdc4735f22", "APOP", false, true},
		{"{SCRAM-SHA-256}4096,iIJxNDLtF3x4/lyTtum0Mg==,a7TU193U1FhGHNKe+0xD7BPpeWJ1L0KqFzNm9OczwaA=,808Pkur2m2GZJa3yWj25830KrjLdcHqhrO+FxpdYuRY=", "SCRAM-SHA-256-PLUS", true, true},
		{"{SCRAM-SHA-256}4096,iIJxNDLtF3x4/lyTtum0Mg==,a7TU193U1FhGHNKe+0xD7BPpeWJ1L0KqFzNm9OczwaA=,808Pkur2m2GZJa3yWj25830KrjLdcHqhrO+FxpdYuRY=", "SCRAM-SHA-1", false, true},
		{"{SHA512-CRYPT}$6$x$y", "CRAM-MD5", false, true},
		{"pw", "APOP", false, true}, // no prefix: Credentials would add the default scheme
		{"{SHA512-CRYPT}$6$x$y", "PLAIN", false, false},
		{"{SHA512-CRYPT}$6$x$y", "EXTERNAL", false, false},
	} {
		if served, ok := serves(tt.hash, tt.method); served != tt.served || ok != tt.ok {
			t.Errorf("serves(%.20q, %s) = %v, %v, want %v, %v", tt.hash, tt.method, served, ok, tt.served, tt.ok)
		}
	}
}
