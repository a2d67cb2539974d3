package fetch

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func run1(t *testing.T, a *Account, opts Options) Result {
	t.Helper()
	res, err := Run(testCtx(t), a, opts)
	if err != nil {
		t.Fatalf("Run: %v (exit %d)", err, ExitCode(err))
	}
	return res
}

func TestFetchTwiceKeep(t *testing.T) {
	t.Parallel()
	srv := startServer(t, nil)
	srv.deliver(t, 5, "Subject: %d\r\n\r\nhello\r\n")
	a := account(t, srv, "")
	if res := run1(t, a, Options{}); res.Fetched != 5 || res.Deleted != 0 {
		t.Fatalf("first run = %+v, want 5 fetched", res)
	}
	if res := run1(t, a, Options{}); res.Fetched != 0 {
		t.Fatalf("second run = %+v, want nothing new", res)
	}
	srv.deliver(t, 2, "Subject: new %d\r\n\r\nhello\r\n")
	if res := run1(t, a, Options{}); res.Fetched != 2 {
		t.Fatalf("third run = %+v, want 2 new", res)
	}
	dir := strings.TrimPrefix(a.Target, "maildir:")
	files := maildirFiles(t, dir)
	if len(files) != 7 || srv.b.Count(testUser) != 7 {
		t.Fatalf("maildir has %d, server %d; want 7 and 7", len(files), srv.b.Count(testUser))
	}
	for _, f := range files {
		if strings.Contains(f, "\r") {
			t.Errorf("delivered message has CR: %q", f)
		}
	}
}

func TestFetchDelete(t *testing.T) {
	t.Parallel()
	srv := startServer(t, nil)
	srv.deliver(t, 4, "Subject: %d\r\n\r\nhello\r\n")
	a := account(t, srv, "keep = false")
	if res := run1(t, a, Options{}); res.Fetched != 4 || res.Deleted != 4 {
		t.Fatalf("run = %+v, want 4 fetched and deleted", res)
	}
	if n := srv.b.Count(testUser); n != 0 {
		t.Fatalf("server has %d messages, want 0", n)
	}
	srv.deliver(t, 1, "Subject: %d\r\n\r\nagain\r\n")
	if res := run1(t, a, Options{}); res.Fetched != 1 || res.Deleted != 1 {
		t.Fatalf("second run = %+v", res)
	}
	st, err := OpenState(a.StateDir, a.Name)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	if st.Len() != 0 {
		t.Errorf("state keeps %d entries of deleted messages", st.Len())
	}
}

func TestDeleteAfterDays(t *testing.T) {
	t.Parallel()
	srv := startServer(t, nil)
	srv.deliver(t, 3, "Subject: %d\r\n\r\nhello\r\n")
	a := account(t, srv, "delete_after_days = 3")
	t0 := time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC)
	at := func(d time.Duration) Options { return Options{Now: func() time.Time { return t0.Add(d) }} }
	if res := run1(t, a, at(0)); res.Fetched != 3 || res.Deleted != 0 {
		t.Fatalf("day 0 = %+v", res)
	}
	srv.deliver(t, 1, "Subject: late %d\r\n\r\nhello\r\n")
	if res := run1(t, a, at(2*24*time.Hour)); res.Fetched != 1 || res.Deleted != 0 {
		t.Fatalf("day 2 = %+v", res)
	}
	if res := run1(t, a, at(3*24*time.Hour+time.Minute)); res.Deleted != 3 {
		t.Fatalf("day 3 = %+v, want the first 3 deleted", res)
	}
	if res := run1(t, a, at(5*24*time.Hour)); res.Deleted != 1 || srv.b.Count(testUser) != 0 {
		t.Fatalf("day 5 = %+v, server %d", res, srv.b.Count(testUser))
	}
}

func TestMaxSize(t *testing.T) {
	t.Parallel()
	big := "Subject: big\r\n\r\n" + strings.Repeat("x", 2000) + "\r\n"
	for _, tc := range []struct {
		extra     string
		fetched   int
		skipped   int
		wantShort bool
	}{
		{"max_size = 1000", 1, 1, false},
		{"max_size = 1000\noversize = \"truncate\"", 2, 0, true},
		{"headers_only = true", 2, 0, true},
	} {
		t.Run(tc.extra, func(t *testing.T) {
			t.Parallel()
			srv := startServer(t, nil)
			srv.b.Deliver(testUser, []byte("Subject: small\r\n\r\nsmall body\r\n"))
			srv.b.Deliver(testUser, []byte(big))
			a := account(t, srv, tc.extra)
			res := run1(t, a, Options{})
			if res.Fetched != tc.fetched || res.Skipped != tc.skipped {
				t.Fatalf("run = %+v, want %d fetched %d skipped", res, tc.fetched, tc.skipped)
			}
			for _, f := range maildirFiles(t, strings.TrimPrefix(a.Target, "maildir:")) {
				if strings.Contains(f, "Subject: big") && strings.Contains(f, "xxx") == tc.wantShort {
					t.Errorf("big message delivered as %d octets, headers only = %v", len(f), tc.wantShort)
				}
			}
			// A skipped message stays skipped, and is not deleted.
			if res := run1(t, a, Options{}); res.Fetched != 0 || res.Skipped != tc.skipped {
				t.Fatalf("second run = %+v", res)
			}
		})
	}
}

func TestMboxTarget(t *testing.T) {
	t.Parallel()
	srv := startServer(t, nil)
	srv.b.Deliver(testUser, []byte("Subject: one\r\n\r\nFrom me\r\n>From you\r\nend"))
	srv.b.Deliver(testUser, []byte("Subject: two\r\n\r\nbody\r\n"))
	mbox := filepath.Join(t.TempDir(), "inbox")
	a := account(t, srv, fmt.Sprintf("target = \"mbox:%s\"", mbox))
	run1(t, a, Options{})
	b, err := os.ReadFile(mbox)
	if err != nil {
		t.Fatal(err)
	}
	got := string(b)
	msgs := strings.Split(got, "\nFrom MAILER-DAEMON ")
	if len(msgs) != 2 || !strings.HasPrefix(got, "From MAILER-DAEMON ") {
		t.Fatalf("mbox = %q, want 2 messages", got)
	}
	if !strings.Contains(got, "\n>From me\n>>From you\nend\n\n") {
		t.Errorf("mboxrd quoting missing: %q", got)
	}
	if strings.Contains(got, "\r") {
		t.Errorf("mbox has CR: %q", got)
	}
}

func TestMDATarget(t *testing.T) {
	t.Parallel()
	srv := startServer(t, nil)
	srv.deliver(t, 3, "Subject: %d\r\n\r\nhello\r\n")
	out := t.TempDir()
	a := account(t, srv, fmt.Sprintf("keep = false\ntarget = 'mda:cat > \"$(mktemp %s/msg.XXXXXX)\"'", out))
	if res := run1(t, a, Options{}); res.Fetched != 3 || res.Deleted != 3 {
		t.Fatalf("run = %+v", res)
	}
	es, _ := os.ReadDir(out)
	if len(es) != 3 {
		t.Fatalf("MDA ran %d times, want 3", len(es))
	}
	// A failing MDA: nothing recorded, nothing deleted.
	srv.deliver(t, 2, "Subject: %d\r\n\r\nhello\r\n")
	for _, tc := range []struct {
		cmd  string
		code int
	}{{"exit 75", ExitTempFail}, {"cat >/dev/null; exit 1", ExitIOErr}} {
		a.Target = "mda:" + tc.cmd
		_, err := Run(testCtx(t), a, Options{})
		if ExitCode(err) != tc.code {
			t.Errorf("mda %q: err %v, exit %d, want %d", tc.cmd, err, ExitCode(err), tc.code)
		}
		if n := srv.b.Count(testUser); n != 2 {
			t.Errorf("mda %q: server has %d messages, want 2", tc.cmd, n)
		}
	}
}

func TestTLS(t *testing.T) {
	t.Parallel()
	cert, pemData, fp := selfSigned(t)
	srv := startServer(t, &cert)
	srv.deliver(t, 2, "Subject: %d\r\n\r\nhello\r\n")
	caFile := filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(caFile, pemData, 0o600); err != nil {
		t.Fatal(err)
	}
	colons := strings.ToUpper(fp[:2])
	for i := 2; i < len(fp); i += 2 {
		colons += ":" + strings.ToUpper(fp[i:i+2])
	}
	wrong := strings.Repeat("ab", 32)
	for _, tc := range []struct {
		name, extra string
		code        int
	}{
		{"system roots", `tls = "implicit"`, ExitNoPerm},
		{"ca_file", fmt.Sprintf("tls = \"implicit\"\nca_file = %q", caFile), 0},
		{"pin", fmt.Sprintf("tls = \"implicit\"\nfingerprint = %q", fp), 0},
		{"pin colons", fmt.Sprintf("tls = \"implicit\"\nfingerprint = %q", colons), 0},
		{"wrong pin", fmt.Sprintf("tls = \"implicit\"\nca_file = %q\nfingerprint = %q", caFile, wrong), ExitNoPerm},
	} {
		// Sequential: the subtests share one maildrop (one session at a time).
		t.Run(tc.name, func(t *testing.T) {
			a := account(t, srv, tc.extra)
			res, err := Run(testCtx(t), a, Options{})
			if ExitCode(err) != tc.code {
				t.Fatalf("Run = %v (exit %d), want exit %d", err, ExitCode(err), tc.code)
			}
			if tc.code == 0 && res.Fetched != 2 {
				t.Errorf("fetched %d, want 2", res.Fetched)
			}
		})
	}
}

func TestUIDLChange(t *testing.T) {
	t.Parallel()
	srv := startServer(t, nil)
	srv.deliver(t, 3, "Subject: %d\r\n\r\nhello\r\n")
	a := account(t, srv, "")
	st, err := OpenState(a.StateDir, a.Name)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < MinMigrationState+1; i++ {
		if err := st.Record(fmt.Sprintf("old-%d", i), Rec{Time: time.Now(), Size: -1}); err != nil {
			t.Fatal(err)
		}
	}
	st.Close()
	_, err = Run(testCtx(t), a, Options{})
	if ExitCode(err) != ExitDataErr || !strings.Contains(err.Error(), "server UIDLs changed") {
		t.Fatalf("Run = %v (exit %d), want a UIDL change error", err, ExitCode(err))
	}
	if res := run1(t, a, Options{ResetState: true}); res.Fetched != 0 {
		t.Fatalf("reset run = %+v, want nothing fetched", res)
	}
	if res := run1(t, a, Options{}); res.Fetched != 0 {
		t.Fatalf("run after reset = %+v, want nothing fetched", res)
	}
	srv.deliver(t, 1, "Subject: %d\r\n\r\nnew\r\n")
	if res := run1(t, a, Options{}); res.Fetched != 1 {
		t.Fatalf("run with new mail = %+v, want 1", res)
	}
}

func TestAuthFailure(t *testing.T) {
	t.Parallel()
	srv := startServer(t, nil)
	a := account(t, srv, "")
	a.Password = "wrong"
	_, err := Run(testCtx(t), a, Options{})
	if ExitCode(err) != ExitNoPerm {
		t.Fatalf("Run = %v (exit %d), want %d", err, ExitCode(err), ExitNoPerm)
	}
	a.Password, a.PasswordCommand = "", "printf '%s\\nsecond line\\n' "+testPass
	if _, err := Run(testCtx(t), a, Options{}); err != nil {
		t.Fatalf("password_command: %v", err)
	}
}

func TestStateJournal(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	st, err := OpenState(dir, "acct")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := OpenState(dir, "acct"); ExitCode(err) != ExitTempFail {
		t.Errorf("second OpenState = %v, want locked", err)
	}
	st.Record("a", Rec{Time: time.Unix(100, 0), Size: -1})
	st.Record("b", Rec{Time: time.Unix(200, 0), Size: -1})
	st.Close()
	// A torn record at the end of the journal is ignored and cut.
	f, _ := os.OpenFile(filepath.Join(dir, "acct.journal"), os.O_APPEND|os.O_WRONLY, 0)
	f.WriteString("300 tor")
	f.Close()
	st, err = OpenState(dir, "acct")
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := st.Has("tor"); ok || st.Len() != 2 {
		t.Fatalf("state has %d entries, torn record read", st.Len())
	}
	st.Record("c", Rec{Time: time.Unix(400, 0), Size: -1})
	if err := st.Compact(func(u string) bool { return u != "a" }); err != nil {
		t.Fatal(err)
	}
	st.Close()
	st, err = OpenState(dir, "acct")
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	if ts, ok := st.Has("b"); !ok || ts.Unix() != 200 || st.Len() != 2 {
		t.Fatalf("after compaction: len %d, b = %v %v", st.Len(), ts, ok)
	}
}

func TestConfigErrors(t *testing.T) {
	t.Parallel()
	conf := accountTOML("ok") + `
[[account]]
name = "bad"
server = "nopor"
user = "u"
password = "p"
tls = "sometimes"
target = "smtp:localhost:25"
state_dir = "/tmp/s"
oversize = "shrink"
`
	_, err := ParseConfig("f.toml", []byte(conf))
	var ce *ConfigError
	if !errors.As(err, &ce) || ExitCode(err) != ExitConfig {
		t.Fatalf("ParseConfig = %v, want a ConfigError", err)
	}
	for _, want := range []string{
		"f.toml:11: account bad: server:",
		"f.toml:14: account bad: tls:",
		"f.toml:9: account bad: recipient: required for lmtp: and smtp: targets",
		"f.toml:17: account bad: oversize:",
	} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error lacks %q:\n%v", want, err)
		}
	}
	if strings.Contains(err.Error(), "account ok") {
		t.Errorf("good account reported: %v", err)
	}
}

// An interrupted run (SIGTERM cancels ctx) is temporary, not a config
// error, even when it is password_command that got cut short.
func TestCanceledPasswordCommand(t *testing.T) {
	t.Parallel()
	srv := startServer(t, nil)
	a := account(t, srv, "")
	a.Password, a.PasswordCommand = "", "echo "+testPass
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := Run(ctx, a, Options{}); ExitCode(err) != ExitTempFail {
		t.Fatalf("Run(canceled) = %v (exit %d), want exit %d", err, ExitCode(err), ExitTempFail)
	}
}

// An unknown key is reported with its line, and with the index of the
// [[account]] table it is in (a misspelt key in the third account must not
// send the reader to the first).
func TestConfigUnknownKey(t *testing.T) {
	t.Parallel()
	conf := accountTOML("a") + accountTOML("b") + "pasword = \"p\"\n" + accountTOML("c") + "pasword = \"p\"\n"
	_, err := ParseConfig("f.toml", []byte(conf))
	var ce *ConfigError
	if !errors.As(err, &ce) || ExitCode(err) != ExitConfig {
		t.Fatalf("ParseConfig = %v, want a ConfigError", err)
	}
	want := []string{"f.toml:15: account.1.pasword: unknown key", "f.toml:23: account.2.pasword: unknown key"}
	if diff := cmp.Diff(want, ce.Problems); diff != "" {
		t.Errorf("problems (-want +got):\n%s", diff)
	}
}
