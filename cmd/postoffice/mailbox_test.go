package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/postoffice-mail/postoffice/internal/config"
	"github.com/postoffice-mail/postoffice/internal/store"
)

// mailboxSite is a config with one user, alice, whose maildrop holds the
// given messages, delivered by postoffice deliver.
func mailboxSite(t *testing.T, msgs ...string) (cfgPath string) {
	t.Helper()
	dir := t.TempDir()
	passwd := filepath.Join(dir, "passwd")
	if code, _, errs := runCmd(t, "pw\n", "user", "add", "--passwd-file", passwd, "--password-stdin", "alice"); code != 0 {
		t.Fatal(errs)
	}
	cfgPath = filepath.Join(dir, "postoffice.toml")
	text := "[pop3]\nlisten = [\"127.0.0.1:0\"]\n[auth]\npasswd_file = \"" + passwd + "\"\n[mail]\nlocation = \"maildir:" + dir + "/mail/%u/Maildir\"\n"
	if err := os.WriteFile(cfgPath, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, m := range msgs {
		var errb bytes.Buffer
		if code := deliverMain(context.Background(), []string{"-u", "alice", "--config", cfgPath}, strings.NewReader(m), &errb); code != 0 {
			t.Fatalf("deliver = %d: %s", code, errb.String())
		}
	}
	return cfgPath
}

// testStore returns the store of the config at cfgPath, as the commands
// build it.
func testStore(t *testing.T, cfgPath string) store.Store {
	t.Helper()
	cfg, err := config.Load(cfgPath)
	if err != nil {
		t.Fatal(err)
	}
	a := newApp(cfg, io.Discard)
	t.Cleanup(a.close)
	if errs := a.build(partStore); errs != nil {
		t.Fatal(errs[0])
	}
	return a.store
}

// snapshot returns alice's messages as the store lists them.
func snapshot(t *testing.T, cfgPath string) []store.Message {
	t.Helper()
	md, err := testStore(t, cfgPath).Open(context.Background(), "alice")
	if err != nil {
		t.Fatal(err)
	}
	defer md.Close()
	return append([]store.Message(nil), md.Messages()...)
}

func received(ago time.Duration) string {
	return "Received: from mx.example.org by pop.example.org with ESMTP id 1;\n\t" + time.Now().Add(-ago).Format(time.RFC1123Z) + "\n"
}

var (
	oldMsg     = received(40*24*time.Hour) + "Subject: old\n\nold body\n"
	newMsg     = received(time.Hour) + "Subject: new\n\nnew body\n"
	undatedMsg = "Date: Mon, 2 Jan 2006 15:04:05 +0000\nSubject: no Received field\n\nundated\n"
)

// stat and list show what the store holds: the sizes and UIDLs a POP3
// session would list, as a table or JSON.
func TestMailboxStatList(t *testing.T) {
	cfg := mailboxSite(t, oldMsg, newMsg)
	msgs := snapshot(t, cfg)
	var total int64
	for _, m := range msgs {
		total += m.Size
	}
	code, out, errs := runCmd(t, "", "mailbox", "stat", "--config", cfg, "alice")
	if want := "2 messages, " + itoa(total) + " octets\n"; code != 0 || out != want {
		t.Errorf("mailbox stat = %d, %q, %q; want %q", code, out, errs, want)
	}
	code, out, errs = runCmd(t, "", "mailbox", "list", "--config", cfg, "alice")
	lines := strings.Split(strings.TrimSuffix(out, "\n"), "\n")
	if code != 0 || len(lines) != 3 || !strings.Contains(lines[0], "UIDL") {
		t.Fatalf("mailbox list = %d, %q, %q; want a header and 2 lines", code, out, errs)
	}
	for i, m := range msgs {
		if f := strings.Fields(lines[i+1]); len(f) != 3 || f[0] != itoa(int64(i+1)) || f[1] != itoa(m.Size) || f[2] != m.UID {
			t.Errorf("list line %q, want %d %d %s", lines[i+1], i+1, m.Size, m.UID)
		}
	}
	code, out, errs = runCmd(t, "", "mailbox", "list", "--json", "--config", cfg, "alice")
	var got []listEntry
	if err := json.Unmarshal([]byte(out), &got); code != 0 || err != nil {
		t.Fatalf("mailbox list --json = %d, %q, %q: %v", code, out, errs, err)
	}
	want := []listEntry{{1, msgs[0].Size, msgs[0].UID, nil}, {2, msgs[1].Size, msgs[1].UID, nil}}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("mailbox list --json (-want +got):\n%s", diff)
	}
}

func itoa(n int64) string { return strconv.FormatInt(n, 10) }

// purge deletes through the store: everything, by age (arrival time from
// the topmost Received: field; an undatable message is kept), or by UIDL;
// --dry-run deletes nothing; a UIDL that names no message deletes nothing
// and exits 65.
func TestMailboxPurge(t *testing.T) {
	cfg := mailboxSite(t, oldMsg, newMsg, undatedMsg)
	msgs := snapshot(t, cfg)

	code, out, errs := runCmd(t, "", "mailbox", "purge", "--dry-run", "--older-than", "30d", "--config", cfg, "alice")
	if code != 0 || !strings.HasPrefix(out, "1 "+itoa(msgs[0].Size)+" "+msgs[0].UID+"\nwould delete 1 of 3 messages") ||
		!strings.Contains(out, "kept 1 messages whose arrival time is unknown") {
		t.Errorf("purge --dry-run --older-than = %d, %q, %q", code, out, errs)
	}
	if diff := cmp.Diff(msgs, snapshot(t, cfg)); diff != "" {
		t.Fatalf("--dry-run deleted messages (-before +after):\n%s", diff)
	}

	code, out, errs = runCmd(t, "", "mailbox", "purge", "--uidl", msgs[1].UID, "--uidl", "no-such-uidl", "--config", cfg, "alice")
	if code != 65 || !strings.Contains(errs, `has UIDL "no-such-uidl"; nothing deleted`) {
		t.Errorf("purge with an unknown --uidl = %d, %q, %q; want 65", code, out, errs)
	}
	if diff := cmp.Diff(msgs, snapshot(t, cfg)); diff != "" {
		t.Fatalf("purge with an unknown --uidl deleted messages (-before +after):\n%s", diff)
	}

	code, out, errs = runCmd(t, "", "mailbox", "purge", "--older-than", "30d", "--config", cfg, "alice")
	if code != 0 || !strings.HasPrefix(out, "deleted 1 of 3 messages") {
		t.Errorf("purge --older-than = %d, %q, %q", code, out, errs)
	}
	if diff := cmp.Diff(msgs[1:], snapshot(t, cfg)); diff != "" {
		t.Fatalf("after purge --older-than 30d (-want +got):\n%s", diff)
	}

	code, out, errs = runCmd(t, "", "mailbox", "purge", "--uidl", msgs[2].UID, "--config", cfg, "alice")
	if code != 0 || !strings.HasPrefix(out, "deleted 1 of 2 messages") {
		t.Errorf("purge --uidl = %d, %q, %q", code, out, errs)
	}
	if diff := cmp.Diff(msgs[1:2], snapshot(t, cfg)); diff != "" {
		t.Fatalf("after purge --uidl (-want +got):\n%s", diff)
	}

	code, out, errs = runCmd(t, "", "mailbox", "purge", "--config", cfg, "alice")
	if code != 0 || !strings.HasPrefix(out, "deleted 1 of 1 messages") || len(snapshot(t, cfg)) != 0 {
		t.Errorf("purge = %d, %q, %q; want the maildrop empty", code, out, errs)
	}
}

// A maildrop locked by a POP3 session is refused with exit 75 and a
// message saying so; nothing is deleted. Unknown users, bad ages and
// misplaced flags are refused too.
func TestMailboxRefusals(t *testing.T) {
	cfg := mailboxSite(t, newMsg)
	session, err := testStore(t, cfg).Open(context.Background(), "alice") // as a POP3 login does
	if err != nil {
		t.Fatal(err)
	}
	for _, sub := range []string{"stat", "list", "purge"} {
		code, out, errs := runCmd(t, "", "mailbox", sub, "--config", cfg, "alice")
		if code != 75 || !strings.Contains(errs, `maildrop of "alice" is in use`) {
			t.Errorf("mailbox %s on a locked maildrop = %d, %q, %q; want 75 and a message", sub, code, out, errs)
		}
	}
	session.Close()
	if n := len(snapshot(t, cfg)); n != 1 {
		t.Errorf("%d messages after purge of a locked maildrop, want 1", n)
	}
	for _, tt := range []struct {
		args []string
		code int
		want string
	}{
		{[]string{"mailbox", "stat", "--config", cfg, "bob"}, 67, `unknown user "bob"`},
		{[]string{"mailbox", "purge", "--older-than", "soon", "--config", cfg, "alice"}, 2, "--older-than"},
		{[]string{"mailbox", "purge", "--older-than", "0d", "--config", cfg, "alice"}, 2, "--older-than"},
		{[]string{"mailbox", "list", "--dry-run", "--config", cfg, "alice"}, 2, "are for purge"},
		{[]string{"mailbox", "stat", "--config", cfg}, 2, "exactly one USER"},
		{[]string{"mailbox", "frob", "alice"}, 2, "unknown subcommand"},
		{[]string{"mailbox", "stat", "--config", filepath.Join(t.TempDir(), "none.toml"), "alice"}, 78, "config"},
	} {
		code, _, errs := runCmd(t, "", tt.args...)
		if code != tt.code || !strings.Contains(errs, tt.want) {
			t.Errorf("postoffice %s = %d, %q; want %d and %q", strings.Join(tt.args, " "), code, errs, tt.code, tt.want)
		}
	}
	if n := len(snapshot(t, cfg)); n != 1 {
		t.Errorf("%d messages after the refused commands, want 1", n)
	}
}

func TestParseAge(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		in   string
		want time.Duration
		ok   bool
	}{
		{"30d", 30 * 24 * time.Hour, true},
		{"2w", 14 * 24 * time.Hour, true},
		{"12h", 12 * time.Hour, true},
		{"90m", 90 * time.Minute, true},
		{"0d", 0, false},
		{"-1d", 0, false},
		{"d", 0, false},
		{"-5h", 0, false},
		{"soon", 0, false},
	} {
		got, err := parseAge(tt.in)
		if got != tt.want || (err == nil) != tt.ok {
			t.Errorf("parseAge(%q) = %v, %v, want %v (ok %v)", tt.in, got, err, tt.want, tt.ok)
		}
	}
}
