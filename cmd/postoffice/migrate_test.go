package main

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/postoffice-mail/postoffice/internal/store/maildir"
)

// postoffice migrate dispatches on its first argument: copy, uidl,
// verify, or copy when it is a flag; usage mistakes exit 2 with a message.
func TestMigrateCommandDispatch(t *testing.T) {
	for _, tt := range []struct {
		args []string
		code int
		want string
	}{
		{[]string{"migrate"}, 2, "need a subcommand"},
		{[]string{"migrate", "frobnicate"}, 2, `unknown subcommand "frobnicate"`},
		{[]string{"migrate", "uidl"}, 2, "need --from"},
		{[]string{"migrate", "verify", "--user", "a"}, 2, "need --from"},
		{[]string{"migrate", "--from", "maildir:/a/%u"}, 2, "need --from LOCATION and --to LOCATION"},
		{[]string{"migrate", "copy", "--from", "maildir:/a/%u", "--to", "maildir:/b/%u"}, 2, "need --user NAME, --passwd-file FILE or --config FILE"},
		{[]string{"migrate", "--from", "maildir:/a/%u", "--to", "maildir:/a/%u", "--user", "x"}, 2, "the same location"},
		{[]string{"migrate", "--from", "dbox:/a/%u", "--to", "maildir:/b/%u", "--user", "x"}, 1, `unsupported location "dbox"`},
		{[]string{"db"}, 2, "need a subcommand"},
		{[]string{"db", "upgrade"}, 2, `unknown subcommand "upgrade"`},
		{[]string{"db", "migrate"}, 2, "usage: postoffice db migrate --config FILE"},
	} {
		code, _, errs := runCmd(t, "", tt.args...)
		if code != tt.code || !strings.Contains(errs, tt.want) {
			t.Errorf("postoffice %s = %d, %q; want %d, containing %q", strings.Join(tt.args, " "), code, errs, tt.code, tt.want)
		}
	}
}

// migrate copy between two Maildir trees keeps every UIDL and verifies;
// run again, it copies nothing (resumable, idempotent).
func TestMigrateCopyMaildir(t *testing.T) {
	dir := t.TempDir()
	from, to := filepath.Join(dir, "a", "%u"), filepath.Join(dir, "b", "%u")
	src, err := maildir.New(maildir.Options{Location: from, NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	for _, m := range []string{"Subject: 1\n\none\n", "Subject: 2\r\n\r\ntwo"} {
		if err := src.Deliver(ctx, "alice", strings.NewReader(m)); err != nil {
			t.Fatal(err)
		}
	}
	md, err := src.Open(ctx, "alice")
	if err != nil {
		t.Fatal(err)
	}
	want := md.Messages()
	md.Close()
	for i, wantOut := range []string{"copied 2 messages, 0 already", "copied 0 messages, 2 already"} {
		code, out, errs := runCmd(t, "", "migrate", "--from", "maildir:"+from, "--to", "maildir:"+to, "--user", "alice", "--quiet")
		if code != 0 || !strings.Contains(out, wantOut) || !strings.Contains(out, "verified 1 users, 2 messages: 0 differences") {
			t.Fatalf("run %d: migrate = %d, %q, %q", i, code, out, errs)
		}
	}
	dst, err := maildir.New(maildir.Options{Location: to})
	if err != nil {
		t.Fatal(err)
	}
	md, err = dst.Open(ctx, "alice")
	if err != nil {
		t.Fatal(err)
	}
	defer md.Close()
	got := md.Messages()
	if len(got) != len(want) {
		t.Fatalf("%d messages copied, want %d", len(got), len(want))
	}
	for i := range want {
		if got[i].UID != want[i].UID || got[i].Size != want[i].Size {
			t.Errorf("message %d: %q %d, want %q %d", i, got[i].UID, got[i].Size, want[i].UID, want[i].Size)
		}
	}
	if _, err := os.Stat(filepath.Join(dir, "a", "alice")); err != nil {
		t.Errorf("source gone: %v", err)
	}
}
