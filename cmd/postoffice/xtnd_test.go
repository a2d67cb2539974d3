package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/postoffice-mail/postoffice/internal/config"
	"github.com/postoffice-mail/postoffice/pop3server"
)

// xtndConfig is a server file with "xtnd-xmit" and the given [xtnd] lines.
func xtndConfig(t *testing.T, workaround bool, xtnd ...string) *config.Config {
	t.Helper()
	text := "[auth]\npasswd_file = \"/etc/postoffice/users\"\n[mail]\nlocation = \"maildir:/var/vmail/%d/%n/Maildir\"\n"
	if workaround {
		text += "[pop3]\nclient_workarounds = [\"xtnd-xmit\"]\n"
	}
	text += "[xtnd]\n" + strings.Join(xtnd, "\n") + "\n"
	c, err := config.Parse("x.toml", []byte(text))
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// XTND XMIT reaches the engine only with the workaround and a relay; the
// relay's password file is read at start, and a missing one stops it.
func TestLegacyEngineXTND(t *testing.T) {
	t.Parallel()
	var o pop3server.Options
	if err := legacyEngine(xtndConfig(t, false, `relay = "127.0.0.1:25"`), &o); err != nil || o.Workarounds.XTNDXMIT != nil {
		t.Errorf("relay without the workaround: XTNDXMIT = %v, %v; want off", o.Workarounds.XTNDXMIT, err)
	}
	pw := filepath.Join(t.TempDir(), "relay.pw")
	if err := os.WriteFile(pw, []byte("s3cret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	c := xtndConfig(t, true, `relay = "127.0.0.1:587"`, "starttls = true", `user = "pop"`, `password_file = "`+pw+`"`, "max_recipients = 7")
	if err := legacyEngine(c, &o); err != nil {
		t.Fatal(err)
	}
	x := o.Workarounds.XTNDXMIT
	if x == nil || x.Submitter == nil || x.MaxRecipients != 7 || x.MaxMessageSize != 10<<20 {
		t.Fatalf("XTNDXMIT = %+v", x)
	}
	c = xtndConfig(t, true, `relay = "127.0.0.1:587"`, "starttls = true", `user = "pop"`, `password_file = "/nonexistent/relay.pw"`)
	if err := legacyEngine(c, &o); err == nil || !strings.Contains(err.Error(), "xtnd.password_file") {
		t.Errorf("missing password file: %v", err)
	}
}
