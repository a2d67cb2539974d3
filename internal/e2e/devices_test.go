package e2e

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// The end-to-end proofs of docs/devices.md with the built binary and real
// clients: two devices on one maildrop, expiry after retrieval, and the
// retrieval history with its re-download storms.

// deviceUser is the user of the device tests; it is added to the site's
// user database by addDeviceUser.
const deviceUser = "alice@example.org"

// addConfig appends text to the site's configuration.
func (s *site) addConfig(text string) {
	s.t.Helper()
	f, err := os.OpenFile(s.config, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		s.t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.WriteString("\n" + text + "\n"); err != nil {
		s.t.Fatal(err)
	}
}

// addDeviceUser adds deviceUser (password testPassword) to the site's user
// database, passwd-file or SQL, through the binary.
func (s *site) addDeviceUser() {
	s.t.Helper()
	s.run(testPassword+"\n", "user", "add", "--config", s.config, "--password-stdin", deviceUser)
}

// poplibFetch logs in as login with Python's poplib, retrieves every
// message, deletes each when dele is set, and QUITs. It returns the
// messages as retrieved (CRLF lines).
func poplibFetch(t *testing.T, py, addr, login, password string, dele bool) []string {
	t.Helper()
	const script = `import poplib, sys, json
p = poplib.POP3(sys.argv[1], int(sys.argv[2]), timeout=20)
p.user(sys.argv[3])
p.pass_(sys.argv[4])
n = p.stat()[0]
out = []
for i in range(1, n + 1):
    resp, lines, octets = p.retr(i)
    out.append(b"".join(l + b"\r\n" for l in lines).decode("latin-1"))
    if sys.argv[5] == "1":
        p.dele(i)
p.quit()
json.dump(out, sys.stdout)
`
	h, p := hostPort(t, addr)
	flag := "0"
	if dele {
		flag = "1"
	}
	out, err := exec.Command(py, "-c", script, h, p, login, password, flag).Output()
	if err != nil {
		t.Fatalf("poplib as %s: %v\n%s", login, err, stderrOf(err))
	}
	var msgs []string
	if err := json.Unmarshal(out, &msgs); err != nil {
		t.Fatalf("poplib output %q: %v", out, err)
	}
	return msgs
}

// mpopFetch runs mpop with "keep off" (it deletes what it fetched) as
// user with password, delivering into a Maildir of its own for this
// round, and returns what it delivered.
func mpopFetch(t *testing.T, mpop, dir, addr, user, password, round string) []string {
	t.Helper()
	h, p := hostPort(t, addr)
	out := filepath.Join(dir, "mpop-"+round)
	for _, sub := range []string{"new", "cur", "tmp"} {
		if err := os.MkdirAll(filepath.Join(out, sub), 0o700); err != nil {
			t.Fatal(err)
		}
	}
	rc := filepath.Join(dir, "mpoprc-devices")
	if err := os.WriteFile(rc, []byte(fmt.Sprintf(`account phone
host %s
port %s
timeout 20
tls off
user %s
password %q
auth user
delivery maildir %s
uidls_file %s
received_header off
keep off
`, h, p, user, password, out, filepath.Join(dir, "mpop-devices-uidls"))), 0o600); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(mpop, "-C", rc, "phone")
	cmd.Env = append(os.Environ(), "HOME="+dir)
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("mpop (%s): %v\n%s", round, err, b)
	}
	return readFiles(t, filepath.Join(out, "new"))
}

// subjects returns the Subject of each message, sorted.
func subjects(msgs []string) []string {
	var out []string
	for _, m := range msgs {
		for _, l := range strings.Split(strings.ReplaceAll(m, "\r\n", "\n"), "\n") {
			if v, ok := strings.CutPrefix(l, "Subject: "); ok {
				out = append(out, v)
				break
			}
		}
	}
	slices.Sort(out)
	return out
}

// TestDevicesTwoClients: Python's poplib as the laptop (its own password,
// "alice@example.org#laptop") and mpop as the phone (a device password
// from postoffice user device add), each fetching and deleting. Each gets
// every message exactly once, and a message leaves the disk only once both
// have deleted it, whichever deletes first.
func TestDevicesTwoClients(t *testing.T) {
	t.Parallel()
	testDevicesTwoClients(t, func(t *testing.T) *site { return newSite(t) })
}

// testDevicesTwoClients runs the two-device test on the site mk makes
// (Maildir or PostgreSQL).
func testDevicesTwoClients(t *testing.T, mk func(*testing.T) *site) {
	py := need(t, "python3", "python3")
	mpop := need(t, "mpop", "mpop")
	s := mk(t)
	s.addDeviceUser()
	s.addConfig("[devices]\nenabled = true")
	// Both devices are known before anyone deletes (docs/devices.md): a
	// device added later would not see what the other already removed.
	s.run("", "user", "device", "add", "--config", s.config, deviceUser, "laptop")
	phonePass := strings.TrimSpace(s.run("", "user", "device", "add", "--config", s.config, deviceUser, "phone"))
	if phonePass == "" {
		t.Fatal("device add printed no password")
	}
	for i := 1; i <= 3; i++ {
		s.deliver(deviceUser, fmt.Sprintf("From: a@example.org\nTo: %s\nSubject: m%d\n\nbody %d\n", deviceUser, i, i))
	}
	srv := s.start()
	defer func() {
		if t.Failed() {
			t.Logf("server log:\n%s", srv.log)
		}
	}()

	// The laptop deletes first: the phone still holds the messages.
	got := poplibFetch(t, py, srv.addr, deviceUser+"#laptop", testPassword, true)
	if diff := cmp.Diff([]string{"m1", "m2", "m3"}, subjects(got)); diff != "" {
		t.Fatalf("laptop, first fetch (-want +got):\n%s", diff)
	}
	if n := s.count(deviceUser); n != 3 {
		t.Fatalf("%d messages stored after the laptop deleted, want 3 (the phone has not)", n)
	}
	got = mpopFetch(t, mpop, s.dir, srv.addr, deviceUser, phonePass, "1")
	if diff := cmp.Diff([]string{"m1", "m2", "m3"}, subjects(got)); diff != "" {
		t.Fatalf("phone, first fetch (-want +got):\n%s", diff)
	}
	if n := s.count(deviceUser); n != 0 {
		t.Fatalf("%d messages stored after both devices deleted, want 0", n)
	}

	// Now the phone deletes first; neither sees a message twice.
	s.deliver(deviceUser, "From: a@example.org\nSubject: m4\n\nbody 4\n")
	got = mpopFetch(t, mpop, s.dir, srv.addr, deviceUser, phonePass, "2")
	if diff := cmp.Diff([]string{"m4"}, subjects(got)); diff != "" {
		t.Errorf("phone, second fetch (-want +got):\n%s", diff)
	}
	if n := s.count(deviceUser); n != 1 {
		t.Errorf("%d messages stored after the phone deleted m4, want 1 (the laptop has not)", n)
	}
	got = poplibFetch(t, py, srv.addr, deviceUser+"#laptop", testPassword, true)
	if diff := cmp.Diff([]string{"m4"}, subjects(got)); diff != "" {
		t.Errorf("laptop, second fetch (-want +got):\n%s", diff)
	}
	if n := s.count(deviceUser); n != 0 {
		t.Errorf("%d messages stored after both devices deleted m4, want 0", n)
	}
	if got := mpopFetch(t, mpop, s.dir, srv.addr, deviceUser, phonePass, "3"); len(got) != 0 {
		t.Errorf("phone, third fetch: %d messages, want none", len(got))
	}
	if got := poplibFetch(t, py, srv.addr, deviceUser+"#laptop", testPassword, false); len(got) != 0 {
		t.Errorf("laptop, third fetch: %d messages, want none", len(got))
	}
}

// runExit runs the binary and returns its stdout and exit status.
func (s *site) runExit(args ...string) (string, int) {
	s.t.Helper()
	cmd := exec.Command(binary, args...)
	var out, errb strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	var ee *exec.ExitError
	switch {
	case err == nil:
		return out.String(), 0
	case errors.As(err, &ee):
		return out.String() + errb.String(), ee.ExitCode()
	}
	s.t.Fatalf("postoffice %s: %v", strings.Join(args, " "), err)
	return "", 0
}

// expireJSON runs postoffice expire --json with args and returns the
// removals as "user uidl". The session that retrieved has ended: the
// server releases the maildrop before its QUIT reply (RFC 1939 §6), so
// the sweep finds no maildrop in use.
func (s *site) expireJSON(args ...string) (removed []string) {
	s.t.Helper()
	args = append([]string{"expire", "--config", s.config, "--json"}, args...)
	out, code := s.runExit(args...)
	if code != 0 {
		s.t.Fatalf("postoffice %s: exit status %d\n%s", strings.Join(args, " "), code, out)
	}
	var res struct {
		Removed []struct{ User, UIDL, Reason string }
	}
	if err := json.Unmarshal([]byte(out), &res); err != nil {
		s.t.Fatalf("expire output %q: %v", out, err)
	}
	for _, r := range res.Removed {
		if r.Reason != "expire_retrieval" {
			s.t.Errorf("removal %+v, want reason expire_retrieval", r)
		}
		removed = append(removed, r.User+" "+r.UIDL)
	}
	slices.Sort(removed)
	return removed
}

// capa sends CAPA and returns the capability lines.
func (c *conn) capa() []string {
	c.t.Helper()
	c.cmd("CAPA", "+OK")
	var out []string
	for range 100 {
		l := c.expect("")
		if l == "." {
			return out
		}
		out = append(out, l)
	}
	c.t.Fatal("CAPA: no end after 100 lines")
	return nil
}

// TestExpireAfterRetrieval: with [expire] after_retrieval = "1d", CAPA
// says EXPIRE 1 USER before login and EXPIRE 1 after (RFC 2449 §6.7); a
// client retrieves two of four messages and keeps them on the server;
// postoffice expire --at a day and a minute later removes exactly those
// two, --dry-run and a sweep a minute short of the day remove nothing.
func TestExpireAfterRetrieval(t *testing.T) {
	t.Parallel()
	s := newSite(t)
	s.addConfig("[expire]\nafter_retrieval = \"1d\"")
	for i := 1; i <= 4; i++ {
		s.deliver("alice", fmt.Sprintf("Subject: e%d\n\nbody %d\n", i, i))
	}
	srv := s.start()
	defer func() {
		if t.Failed() {
			t.Logf("server log:\n%s", srv.log)
		}
	}()
	c := srv.dial()
	if capa := c.capa(); !contains(capa, "EXPIRE 1 USER") {
		t.Errorf("CAPA before login = %q, want EXPIRE 1 USER", capa)
	}
	c.login("alice")
	if capa := c.capa(); !contains(capa, "EXPIRE 1") {
		t.Errorf("CAPA after login = %q, want EXPIRE 1", capa)
	}
	uidls := c.uidls()
	if len(uidls) != 4 {
		t.Fatalf("UIDL listed %d messages, want 4", len(uidls))
	}
	start := time.Now()
	c.retr(1)
	c.retr(3)
	c.cmd("QUIT", "+OK")

	dayLater := start.Add(24*time.Hour + time.Minute).UTC().Format(time.RFC3339)
	want := []string{"alice " + uidls[0], "alice " + uidls[2]}
	slices.Sort(want)
	if got := s.expireJSON("--dry-run", "--at", dayLater); !cmp.Equal(got, want) {
		t.Errorf("expire --dry-run would remove %q, want %q", got, want)
	}
	if n := s.count("alice"); n != 4 {
		t.Fatalf("%d messages after expire --dry-run, want 4", n)
	}
	early := start.Add(24*time.Hour - time.Minute).UTC().Format(time.RFC3339)
	if got := s.expireJSON("--at", early); len(got) != 0 {
		t.Errorf("expire a minute before the day removed %q, want nothing", got)
	}
	if got := s.expireJSON("--at", dayLater); !cmp.Equal(got, want) {
		t.Errorf("expire removed %q, want %q", got, want)
	}
	c = srv.dial()
	c.login("alice")
	if diff := cmp.Diff([]string{uidls[1], uidls[3]}, c.uidls()); diff != "" {
		t.Errorf("UIDLs left after expire (-want +got):\n%s", diff)
	}
	c.cmd("QUIT", "+OK")
}

// historyEntry is one entry of postoffice history --json.
type historyEntry struct {
	Action string
	UIDL   string
	Device string
	Remote string
	TLS    string
	Mech   string
	Count  int
}

// history runs postoffice history --json for user.
func (s *site) history(user string) []historyEntry {
	s.t.Helper()
	out := s.run("", "history", "--config", s.config, "--json", user)
	var evs []historyEntry
	if err := json.Unmarshal([]byte(out), &evs); err != nil {
		s.t.Fatalf("history output %.200q: %v", out, err)
	}
	return evs
}

// countAction counts the entries of evs with action a.
func countAction(evs []historyEntry, a string) int {
	n := 0
	for _, e := range evs {
		if e.Action == a {
			n++
		}
	}
	return n
}

// TestHistoryStorm: a client that RETRs the same 50 messages on 5 logins
// is a re-download storm in each session after the first; postoffice
// history shows them, the server's warning names the client's address,
// and the journal survives a restart of the server and a kill -9 in the
// middle of a session (what was written before the kill is there).
func TestHistoryStorm(t *testing.T) {
	t.Parallel()
	const n, logins = 50, 5
	s := newSite(t)
	for i := 1; i <= n; i++ {
		s.deliver("alice", fmt.Sprintf("Subject: h%d\n\nbody %d\n", i, i))
	}
	srv := s.start()
	defer func() {
		if t.Failed() {
			t.Logf("server log:\n%s", srv.log)
		}
	}()
	for range logins {
		c := srv.dial()
		c.login("alice")
		for i := 1; i <= n; i++ {
			c.retr(i)
		}
		c.cmd("QUIT", "+OK")
	}
	// The storm is logged when the session ends, before QUIT's reply, but
	// the test reads the server's stderr through a pipe: wait for the
	// last line to come through (bounded).
	for try := 0; strings.Count(srv.log.String(), "re-download storm") < logins-1 && try < 100; try++ {
		time.Sleep(50 * time.Millisecond)
	}
	logText := srv.log.String()
	if got := strings.Count(logText, "re-download storm"); got != logins-1 {
		t.Errorf("%d storm log lines, want %d", got, logins-1)
	}
	for _, l := range strings.Split(logText, "\n") {
		if strings.Contains(l, "re-download storm") && !strings.Contains(l, "remote=127.0.0.1") {
			t.Errorf("storm log line does not name the client's address: %s", l)
		}
	}
	check := func(when string, wantRetr int) {
		t.Helper()
		evs := s.history("alice")
		if got := countAction(evs, "retr"); got != wantRetr {
			t.Errorf("%s: %d retr entries, want %d", when, got, wantRetr)
		}
		var storms []historyEntry
		for _, e := range evs {
			if e.Action == "storm" {
				storms = append(storms, e)
			}
		}
		want := slices.Repeat([]historyEntry{{Action: "storm", Remote: "127.0.0.1", Mech: "USER", Count: n}}, logins-1)
		if diff := cmp.Diff(want, storms); diff != "" {
			t.Errorf("%s: storm entries (-want +got):\n%s", when, diff)
		}
	}
	check("before restart", n*logins)

	srv.stop()
	srv = s.start()
	check("after restart", n*logins)

	// A session killed mid-way: its RETRs so far are in the journal. The
	// NOOP's reply proves the server has handled the last RETR.
	c := srv.dial()
	c.login("alice")
	for i := 1; i <= 10; i++ {
		c.retr(i)
	}
	c.cmd("NOOP", "+OK")
	srv.kill()
	check("after kill -9", n*logins+10)
}

// TestPostgresDevicesTwoClients is TestDevicesTwoClients on a server whose
// store and users are in PostgreSQL: the device views live in the
// database's maildrop_state table.
func TestPostgresDevicesTwoClients(t *testing.T) {
	t.Parallel()
	testDevicesTwoClients(t, func(t *testing.T) *site { return newPGSite(t, "", "") })
}
