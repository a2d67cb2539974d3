package e2e

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/postoffice-mail/postoffice/internal/store/maildir"
	"github.com/postoffice-mail/postoffice/internal/testutil/dovecot"
)

// coexistReport is what testdata/coexist_load.py prints (ids are the
// X-Test-Id of each message; JSON object keys are ids in decimal).
type coexistReport struct {
	Initial       []int               `json:"initial"`
	Delivered     []int               `json:"delivered"`
	IMAPExpunged  []int               `json:"imap_expunged"`
	POP3Deleted   []int               `json:"pop3_deleted"`
	FinalDeleted  []int               `json:"final_deleted"`
	NoopExpunges  int                 `json:"noop_expunges"`
	IMAPAfterNoop []int               `json:"imap_after_noop"`
	Flags         map[string][]string `json:"flags"`
	FinalIMAP     map[string][]string `json:"final_imap"`
	FinalPOP3     map[string]string   `json:"final_pop3"`
	Errors        []string            `json:"errors"`
	Ops           map[string]int      `json:"ops"`
}

// dovecotTrouble matches the Dovecot log lines that mean its view of the
// Maildir went wrong: a repaired index or dovecot-uidlist, a file it did
// not expect, an error of any kind.
var dovecotTrouble = regexp.MustCompile(`(?i)corrupt|fixed|inconsisten|uidlist|broken|error|panic|fatal|warning|reappeared|duplicate|lost`)

// dovecotHarness matches the warnings the test itself causes: the reload
// that turns on IMAP, and the SIGTERM that stops Dovecot.
var dovecotHarness = regexp.MustCompile(`master: Warning: (SIGHUP received - reloading configuration|Killed with signal 15 )`)

// TestDovecotIMAPCoexistence is a site that moved only POP3 to postoffice
// and kept Dovecot for IMAP, on the same Maildir: Dovecot 2.3 serves IMAP
// (protocols = imap, its index and dovecot-uidlist in the Maildir, its
// mail processes as the Maildir's owner) while postoffice, running as
// root, serves POP3 and takes LMTP deliveries there as that owner. A
// Python script (testdata/coexist_load.py) runs a mixed load, bounded to
// 300 operations and 60 s: LMTP deliveries, IMAP flag changes (\Seen,
// \Flagged, keywords) and expunges with imaplib, POP3 RETR/DELE/QUIT (and
// dropped sessions) with poplib, and one SELECTed IMAP session sending
// NOOP throughout, all at the same time. Then:
//   - Dovecot's log has no line about corruption, repairs ("Fixed"), an
//     inconsistent or broken dovecot-uidlist, or any error or warning;
//   - IMAP (UID SEARCH ALL and FETCH X-Test-Id) and POP3 (UIDL and TOP)
//     list the same messages: every one accepted over LMTP or there at
//     the start, less those expunged over IMAP or deleted over POP3;
//   - every remaining message has exactly the flags IMAP left it with;
//   - a message deleted over POP3 while an IMAP session has the mailbox
//     SELECTed is reported EXPUNGEd at its next NOOP and is gone from it.
func TestDovecotIMAPCoexistence(t *testing.T) {
	t.Parallel()
	py := need(t, "python3", "python3")
	const (
		user    = "alice@example.org"
		initial = 20
		maxOps  = 300
		maxTime = 60 // seconds
	)
	d := dovecot.Start(t, user)
	imapAddr := d.ServeIMAP(t)
	msgs := make([]string, initial)
	for i := range msgs {
		msgs[i] = fmt.Sprintf("From: sender@example.org\nTo: %s\nSubject: before %d\nX-Test-Id: %d\n\nbody %d\n", user, i+1, i+1, i+1)
	}
	d.Deliver(t, user, msgs)

	// postoffice on Dovecot's Maildirs and passwd-file, POP3 and LMTP on
	// their own loopback ports.
	dir := t.TempDir()
	location := filepath.Join(d.Dir, "mail", "%u", "Maildir")
	s := &site{t: t, dir: dir, config: filepath.Join(dir, "postoffice.toml")}
	cfg := fmt.Sprintf(`[pop3]
listen = ["127.0.0.1:0"]
auth_fail_delay = "0s"

[auth]
passwd_file = %q

[mail]
location = "maildir:%s"
`, filepath.Join(d.Dir, "passwd"), location)
	if err := os.WriteFile(s.config, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	st, err := maildir.New(maildir.Options{Location: location})
	if err != nil {
		t.Fatal(err)
	}
	s.store = st
	lmtpAddr := s.enableLMTP()
	srv := s.start()
	srv.waitLMTP(lmtpAddr)

	seed := time.Now().UnixNano() % 1_000_000
	t.Logf("load seed %d", seed)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, py, filepath.Join("testdata", "coexist_load.py"),
		imapAddr, srv.addr, lmtpAddr, user, dovecot.Password,
		strconv.Itoa(initial), strconv.FormatInt(seed, 10), strconv.Itoa(maxOps), strconv.Itoa(maxTime))
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("coexist_load.py: %v\n%s\npostoffice log:\n%s", err, stderr.String(), srv.log)
	}
	var r coexistReport
	if err := json.Unmarshal(out, &r); err != nil {
		t.Fatalf("coexist_load.py printed %q: %v\n%s", out, err, stderr.String())
	}
	t.Logf("operations: %v", r.Ops)
	for _, e := range r.Errors {
		t.Errorf("load: %s", e)
	}

	// The load must have exercised each side.
	for _, op := range []string{"lmtp", "imap_store", "imap_expunge", "imap_noop", "pop3_retr", "pop3_dele", "pop3_quit"} {
		if r.Ops[op] == 0 {
			t.Errorf("the load did no %s operation: %v", op, r.Ops)
		}
	}

	gone := map[int]bool{}
	for _, n := range slices.Concat(r.IMAPExpunged, r.POP3Deleted) {
		gone[n] = true
	}
	var want []int
	for _, n := range slices.Concat(r.Initial, r.Delivered) {
		if !gone[n] {
			want = append(want, n)
		}
	}
	slices.Sort(want)
	ids := func(m map[string][]string) []int {
		var out []int
		for k := range m {
			n, err := strconv.Atoi(k)
			if err != nil {
				t.Fatal(err)
			}
			out = append(out, n)
		}
		slices.Sort(out)
		return out
	}
	if diff := cmp.Diff(want, ids(r.FinalIMAP)); diff != "" {
		t.Errorf("IMAP's messages (+) differ from those delivered and not deleted (-):\n%s", diff)
	}
	pop := map[string][]string{}
	uidls := map[string]bool{}
	for k, u := range r.FinalPOP3 {
		pop[k] = nil
		if uidls[u] {
			t.Errorf("UIDL %s listed twice", u)
		}
		uidls[u] = true
	}
	if diff := cmp.Diff(want, ids(pop)); diff != "" {
		t.Errorf("POP3's messages (+) differ from those delivered and not deleted (-):\n%s", diff)
	}
	for k, got := range r.FinalIMAP {
		wantFlags := r.Flags[k]
		if wantFlags == nil {
			wantFlags = []string{}
		}
		if got == nil {
			got = []string{}
		}
		if diff := cmp.Diff(wantFlags, got); diff != "" {
			t.Errorf("message %s: flags set over IMAP (-) and found at the end (+) differ:\n%s", k, diff)
		}
	}
	if len(r.FinalDeleted) == 0 {
		t.Error("the final phase deleted nothing over POP3")
	}
	if r.NoopExpunges != len(r.FinalDeleted) {
		t.Errorf("NOOP reported %d EXPUNGE after POP3 deleted %v, want %d", r.NoopExpunges, r.FinalDeleted, len(r.FinalDeleted))
	}
	for _, n := range r.FinalDeleted {
		if slices.Contains(r.IMAPAfterNoop, n) {
			t.Errorf("message %d deleted over POP3 is still listed by the SELECTed IMAP session after NOOP", n)
		}
	}

	// Dovecot's log, after stopping it (so every line is written).
	d.Stop(t)
	log, err := os.ReadFile(filepath.Join(d.Dir, "dovecot.log"))
	if err != nil {
		t.Fatal(err)
	}
	sc := bufio.NewScanner(bytes.NewReader(log))
	for sc.Scan() {
		if line := sc.Text(); dovecotTrouble.MatchString(line) && !dovecotHarness.MatchString(line) {
			t.Errorf("dovecot log: %s", line)
		}
	}
	// postoffice's log from the moment it listens (before that, warnings
	// about the test's environment: running as root, a low fd limit).
	srv.stop()
	_, served, _ := strings.Cut(srv.log.String(), "msg=listening")
	for _, line := range strings.Split(served, "\n") {
		if strings.Contains(line, "store: message no longer exists") {
			continue // RETR of a message IMAP expunged during the session: -ERR, as designed
		}
		if strings.Contains(line, "level=ERROR") || strings.Contains(line, "level=WARN") {
			t.Errorf("postoffice log: %s", line)
		}
	}
	if t.Failed() {
		t.Logf("postoffice log:\n%s", srv.log)
	}
}
