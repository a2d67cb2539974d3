package e2e

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net"
	"os/exec"
	"strconv"
	"strings"
	"testing"
)

// The messages every client test retrieves: bare LF with dot lines and no
// final newline, CRLF, and one with a 3000-octet line.
var clientMessages = []string{
	"From: a@example.org\nTo: alice@example.org\nSubject: first\n\nHello\n.dotted line\n..\n.\nlast line without newline",
	"From: b@example.org\r\nSubject: second\r\n\r\n" + strings.Repeat("line of the body\r\n", 100),
	"Subject: third\n\n" + strings.Repeat("x", 1500) + "\n",
}

func clientSite(t *testing.T) (*site, *server) {
	s := newSite(t)
	for _, m := range clientMessages {
		s.deliver("alice", m)
	}
	return s, s.start()
}

func hostPort(t *testing.T, addr string) (string, string) {
	h, p, err := net.SplitHostPort(addr)
	if err != nil {
		t.Fatal(err)
	}
	return h, p
}

func b64(t *testing.T, s string) string {
	b, err := base64.StdEncoding.DecodeString(s)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// Python's poplib: user/pass_, stat, list, uidl, top, retr, dele, rset, quit.
func TestPoplib(t *testing.T) {
	t.Parallel()
	testPoplib(t, clientSite)
}

// testPoplib runs the poplib client against the server mk starts on a site
// holding clientMessages for alice (Maildir or PostgreSQL).
func testPoplib(t *testing.T, mk func(*testing.T) (*site, *server)) {
	py := need(t, "python3", "python3")
	s, srv := mk(t)
	h, p := hostPort(t, srv.addr)
	out, err := exec.Command(py, "testdata/poplib_client.py", h, p, "alice", testPassword).Output()
	if err != nil {
		t.Fatalf("poplib: %v\n%s\nserver log:\n%s", err, stderrOf(err), srv.log)
	}
	var got struct {
		Welcome string
		Capa    []string
		Stat    []int
		List    []string
		List1   string
		Uidl    []string
		Uidl2   string
		Retr    map[string]struct {
			Resp, Body string
			Octets     int
		}
		Top1          string
		StatAfterDele []int `json:"stat_after_dele"`
		StatAfterRset []int `json:"stat_after_rset"`
		Quit          string
	}
	if err := json.Unmarshal(out, &got); err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	var total int
	for i, m := range clientMessages {
		n := strconv.Itoa(i + 1)
		want := crlf(m)
		total += len(want)
		r := got.Retr[n]
		if b64(t, r.Body) != want {
			t.Errorf("retr %s = %.80q, want %.80q", n, b64(t, r.Body), want)
		}
		if want := fmt.Sprintf("%s %d", n, len(want)); got.List[i] != want {
			t.Errorf("list line %q, want %q", got.List[i], want)
		}
		if !strings.HasPrefix(r.Resp, fmt.Sprintf("+OK %d octets", len(crlf(m)))) {
			t.Errorf("retr %s response %q", n, r.Resp)
		}
	}
	if got.Stat[0] != 3 || got.Stat[1] != total {
		t.Errorf("stat = %v, want [3 %d]", got.Stat, total)
	}
	if got.StatAfterDele[0] != 2 || got.StatAfterRset[0] != 3 {
		t.Errorf("stat after dele %v, after rset %v", got.StatAfterDele, got.StatAfterRset)
	}
	if want := "From: a@example.org\r\nTo: alice@example.org\r\nSubject: first\r\n\r\n"; b64(t, got.Top1) != want {
		t.Errorf("top 1 0 = %q, want %q", b64(t, got.Top1), want)
	}
	if !strings.HasPrefix(got.Uidl2, "+OK 2 ") || len(got.Uidl) != 3 {
		t.Errorf("uidl = %v, uidl 2 = %q", got.Uidl, got.Uidl2)
	}
	for _, c := range []string{"TOP", "UIDL", "USER", "RESP-CODES", "PIPELINING"} {
		if !contains(got.Capa, c) {
			t.Errorf("capa %v lacks %s", got.Capa, c)
		}
	}
	srv.stop()
	if n := s.count("alice"); n != 2 {
		t.Errorf("%d messages after dele 2 + quit, want 2", n)
	}
}

// Perl's Net::POP3: login, list, uidl, get, top, delete, quit.
func TestNetPOP3(t *testing.T) {
	t.Parallel()
	testNetPOP3(t, clientSite)
}

// testNetPOP3 runs the netPOP3 client against the server mk starts on a site
// holding clientMessages for alice (Maildir or PostgreSQL).
func testNetPOP3(t *testing.T, mk func(*testing.T) (*site, *server)) {
	perl := need(t, "perl", "perl")
	if exec.Command(perl, "-MNet::POP3", "-MJSON::PP", "-e", "1").Run() != nil {
		t.Skip("Net::POP3 or JSON::PP missing: apt-get install perl")
	}
	s, srv := mk(t)
	h, p := hostPort(t, srv.addr)
	out, err := exec.Command(perl, "testdata/netpop3_client.pl", h, p, "alice", testPassword).Output()
	if err != nil {
		t.Fatalf("Net::POP3: %v\n%s\nserver log:\n%s", err, stderrOf(err), srv.log)
	}
	var got struct {
		Login int
		List  map[string]int
		Uidl  map[string]string
		Uidl1 string
		Get   map[string]string
		Top1  string
		Quit  int
	}
	if err := json.Unmarshal(out, &got); err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	if got.Login != 3 || got.Quit != 1 {
		t.Errorf("login = %d, quit = %d", got.Login, got.Quit)
	}
	for i, m := range clientMessages {
		n := strconv.Itoa(i + 1)
		// Net::POP3 returns lines with "\n" ends, un-stuffed.
		want := strings.ReplaceAll(crlf(m), "\r\n", "\n")
		if g := b64(t, got.Get[n]); g != want {
			t.Errorf("get %s = %.80q, want %.80q", n, g, want)
		}
		if got.List[n] != len(crlf(m)) {
			t.Errorf("list %s = %d, want %d", n, got.List[n], len(crlf(m)))
		}
		if got.Uidl[n] == "" {
			t.Errorf("uidl %s empty", n)
		}
	}
	if got.Uidl1 != got.Uidl["1"] {
		t.Errorf("uidl(1) = %q, uidl()[1] = %q", got.Uidl1, got.Uidl["1"])
	}
	if want := "From: a@example.org\nTo: alice@example.org\nSubject: first\n\n"; b64(t, got.Top1) != want {
		t.Errorf("top = %q, want %q", b64(t, got.Top1), want)
	}
	srv.stop()
	if n := s.count("alice"); n != 2 {
		t.Errorf("%d messages after delete 1 + quit, want 2", n)
	}
}

// curl: pop3:// LIST and RETR compared byte for byte with the stored message.
func TestCurl(t *testing.T) {
	t.Parallel()
	testCurl(t, clientSite)
}

// testCurl runs the curl client against the server mk starts on a site
// holding clientMessages for alice (Maildir or PostgreSQL).
func testCurl(t *testing.T, mk func(*testing.T) (*site, *server)) {
	curl := need(t, "curl", "curl")
	_, srv := mk(t)
	base := "pop3://alice:" + strings.ReplaceAll(testPassword, " ", "%20") + "@" + srv.addr + "/"
	out, err := exec.Command(curl, "-sS", "--max-time", "30", base).Output()
	if err != nil {
		t.Fatalf("curl LIST: %v\n%s", err, stderrOf(err))
	}
	var want strings.Builder
	for i, m := range clientMessages {
		fmt.Fprintf(&want, "%d %d\r\n", i+1, len(crlf(m)))
	}
	if string(out) != want.String() {
		t.Errorf("curl LIST = %q, want %q", out, want.String())
	}
	for i, m := range clientMessages {
		out, err := exec.Command(curl, "-sS", "--max-time", "30", base+strconv.Itoa(i+1)).Output()
		if err != nil {
			t.Fatalf("curl RETR %d: %v\n%s", i+1, err, stderrOf(err))
		}
		if string(out) != crlf(m) {
			t.Errorf("curl RETR %d = %.80q, want %.80q", i+1, out, crlf(m))
		}
	}
	out, err = exec.Command(curl, "-sS", "--max-time", "30", "-X", "UIDL", base).Output()
	if err != nil || strings.Count(string(out), "\r\n") != 3 {
		t.Errorf("curl UIDL = %q, %v", out, err)
	}
	// A wrong password fails with curl's login-denied exit code 67.
	err = exec.Command(curl, "-sS", "--max-time", "30", "pop3://alice:wrong@"+srv.addr+"/1").Run()
	if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 67 {
		t.Errorf("curl with a wrong password: %v, want exit status 67", err)
	}
}

func stderrOf(err error) string {
	if ee, ok := err.(*exec.ExitError); ok {
		return string(ee.Stderr)
	}
	return ""
}

func contains(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}
