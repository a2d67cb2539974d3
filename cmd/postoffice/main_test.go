package main

import (
	"bytes"
	"context"
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
