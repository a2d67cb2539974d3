package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestMigrateUsage: command lines migrate refuses, with exit status 2 and
// the reason, before anything is contacted.
func TestMigrateUsage(t *testing.T) {
	dir := t.TempDir()
	users := filepath.Join(dir, "users")
	if err := os.WriteFile(users, []byte("a:{PLAIN}x\nb:{PLAIN}y\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"migrate"}, "need a subcommand"},
		{[]string{"migrate", "frobnicate"}, "unknown subcommand"},
		{[]string{"migrate", "uidl", "--user", "a"}, "need --from"},
		{[]string{"migrate", "uidl", "--from", "pop3s://h", "--user", "a", "--passwd-file", users}, "one of --user or --passwd-file"},
		{[]string{"migrate", "uidl", "--from", "pop3://u:p@old.example", "--user", "a", "--to", dir}, "refusing to send a password in clear"},
		{[]string{"migrate", "uidl", "--from", "imap://old.example", "--user", "a", "--to", dir}, "want pop3s://"},
		{[]string{"migrate", "uidl", "--from", "pop3s://bob:p@old.example", "--passwd-file", users, "--to", dir}, "needs %u"},
		{[]string{"migrate", "verify", "--from", "pop3s://old.example", "--user", "a"}, "one of --config or --to"},
		{[]string{"migrate", "verify", "--from", "pop3s://old.example", "--user", "a", "--to", "pop3://new.example"}, "refusing to send a password in clear"},
	} {
		var stdout, stderr bytes.Buffer
		if code := run(c.args, &stdout, &stderr); code != 2 || !strings.Contains(stderr.String(), c.want) {
			t.Errorf("postoffice %s: exit %d, stderr %q; want 2 and %q", strings.Join(c.args, " "), code, stderr.String(), c.want)
		}
	}
}
