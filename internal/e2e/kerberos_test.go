package e2e

import (
	"bufio"
	"context"
	"encoding/base64"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/postoffice-mail/postoffice/internal/auth/kerberos"
	"github.com/postoffice-mail/postoffice/internal/testutil/krbtest"
	"github.com/postoffice-mail/postoffice/pop3"
)

// krbMessage is what every Kerberos client retrieves, byte for byte (after
// CRLF line ends are made LF, which some clients do).
const krbMessage = "From: kdc@example.org\nTo: alice@example.org\nSubject: with a ticket\n\nHello from Kerberos\n.dot line\n"

// krbEnv is a postoffice serve with [kerberos] and [kpop] on a realm of a
// real MIT KDC, alice's maildrop holding krbMessage.
type krbEnv struct {
	realm *krbtest.Realm
	site  *site
	srv   *server
	kpop  string // address of the KPOP listener
	port  string // of the POP3 listener
}

var kpopRE = regexp.MustCompile(`msg="kpop listening" addr=(\S+)`)

func startKerberos(t *testing.T) *krbEnv {
	t.Helper()
	return startKerberosWith(t, "")
}

// startKerberosWith is startKerberos with extra lines in [kerberos].
func startKerberosWith(t *testing.T, kerberosLines string) *krbEnv {
	t.Helper()
	r := krbtest.Get(t)
	kt := r.Keytab(t, "pop/"+krbtest.Host)
	r.AddUser(t, "alice", "alice-pw")
	r.AddUser(t, "stranger", "stranger-pw") // no local user
	s := newSite(t)
	b, err := os.ReadFile(s.config)
	if err != nil {
		t.Fatal(err)
	}
	// No auth penalty: the refusal tests fail several logins in a row from
	// 127.0.0.1, which would otherwise be delayed and banned.
	cfg := strings.Replace(string(b), "[auth]\n", "[auth]\npenalty = false\n", 1) +
		fmt.Sprintf("\n[kerberos]\nkeytab = %q\nrealm = %q\n%s\n[kpop]\nlisten = [\"127.0.0.1:0\"]\n", kt, krbtest.RealmName, kerberosLines)
	if err := os.WriteFile(s.config, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	s.deliver("alice", krbMessage)
	srv := s.start()
	m := kpopRE.FindStringSubmatch(srv.log.String())
	if m == nil {
		t.Fatalf("no kpop listener in the log:\n%s", srv.log)
	}
	_, port, _ := net.SplitHostPort(srv.addr)
	return &krbEnv{realm: r, site: s, srv: srv, kpop: m[1], port: port}
}

// checkLeft fails unless alice's maildrop still holds its message and is
// not locked: a password login sees it.
func (e *krbEnv) checkUnlocked(t *testing.T) {
	t.Helper()
	c := e.srv.dial()
	c.login("alice")
	c.cmd("STAT", "+OK 1 ")
	c.cmd("QUIT", "+OK")
}

func wantMessage(t *testing.T, who, got string) {
	t.Helper()
	if lf(got) != krbMessage {
		t.Errorf("%s retrieved %q, want %q", who, lf(got), krbMessage)
	}
}

// curl's POP3 with GSSAPI (its GSS-API build links MIT's libgssapi).
func TestKerberosCurl(t *testing.T) {
	curl := need(t, "curl", "curl")
	e := startKerberos(t)
	cc := e.realm.Kinit(t, "alice", "alice-pw")
	cmd := exec.Command(curl, "-4", "-sS", "--max-time", "20", "--login-options", "AUTH=GSSAPI", "-u", ":",
		fmt.Sprintf("pop3://%s:%s/1", krbtest.Host, e.port))
	cmd.Env = e.realm.Env(cc)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("curl: %v\n%s%s\nserver log:\n%s", err, out, stderr.String(), e.srv.log)
	}
	wantMessage(t, "curl", string(out))
	e.checkUnlocked(t)
}

// fetchmailRun runs fetchmail with rc lines (after "poll") and returns its
// log and the messages its MDA wrote.
func fetchmailRun(t *testing.T, e *krbEnv, cc, poll string) (string, []string) {
	t.Helper()
	fm := need(t, "fetchmail", "fetchmail")
	dir := t.TempDir()
	out := filepath.Join(dir, "out")
	os.Mkdir(out, 0o755)
	mda := filepath.Join(dir, "mda.sh")
	os.WriteFile(mda, []byte(fmt.Sprintf("#!/bin/sh\nexec cat > %s/$(date +%%s%%N).$$\n", out)), 0o755)
	rc := filepath.Join(dir, "fetchmailrc")
	// sslproto '' keeps fetchmail from trying STLS, which this server
	// (without [tls]) does not offer.
	os.WriteFile(rc, []byte("set no bouncemail\n"+poll+fmt.Sprintf("  sslproto ''\n  mda %q\n  keep fetchall\n", mda)), 0o600)
	cmd := exec.Command(fm, "-f", rc, "-v", "--nosyslog", "--idfile", filepath.Join(dir, "ids"), "--pidfile", filepath.Join(dir, "pid"))
	cmd.Env = append(e.realm.Env(cc), "HOME="+dir, "FETCHMAILHOME="+dir)
	b, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("fetchmail: %v\n%s\nserver log:\n%s", err, b, e.srv.log)
	}
	return string(b), readFiles(t, out)
}

// fetchmail with "auth gssapi": RFC 4752 with an authorization identity
// (fetchmail sends the user name as one).
func TestKerberosFetchmailGSSAPI(t *testing.T) {
	e := startKerberos(t)
	cc := e.realm.Kinit(t, "alice", "alice-pw")
	log, msgs := fetchmailRun(t, e, cc, fmt.Sprintf("poll %s service %s protocol pop3 auth gssapi timeout 20\n  user \"alice\" there\n", krbtest.Host, e.port))
	if !strings.Contains(log, "AUTH GSSAPI") || len(msgs) != 1 {
		t.Fatalf("fetchmail did not fetch one message with GSSAPI:\n%s", log)
	}
	wantMessage(t, "fetchmail", msgs[0][len(msgs[0])-len(krbMessage):])
	e.checkUnlocked(t)
}

// relay is a fetchmail plugin: it joins its stdin and stdout to a TCP
// address, so fetchmail's service can say "kpop" (1109: its ticket step,
// and its dummy "PASS krb_ticket", happen for that service only) while the
// server listens elsewhere.
const relay = `import socket, sys, threading
s = socket.create_connection((sys.argv[1], int(sys.argv[2])))
def up():
    while True:
        b = sys.stdin.buffer.raw.read(65536)
        if not b:
            s.shutdown(socket.SHUT_WR); return
        s.sendall(b)
threading.Thread(target=up, daemon=True).start()
while True:
    b = s.recv(65536)
    if not b: break
    sys.stdout.buffer.write(b); sys.stdout.buffer.flush()
`

// fetchmail's "protocol KPOP": Kerberos 5 sendauth (KPOPV1.0) before the
// greeting, then USER and a dummy PASS.
func TestKerberosKPOP(t *testing.T) {
	py := need(t, "python3", "python3")
	e := startKerberos(t)
	cc := e.realm.Kinit(t, "alice", "alice-pw")
	script := filepath.Join(t.TempDir(), "relay.py")
	os.WriteFile(script, []byte(relay), 0o644)
	host, port, _ := net.SplitHostPort(e.kpop)
	log, msgs := fetchmailRun(t, e, cc, fmt.Sprintf("poll %s protocol kpop service \"kpop\" auth kerberos_v5 timeout 20\n  plugin \"%s %s %s %s\"\n  user \"alice\" there\n",
		krbtest.Host, py, script, host, port))
	if len(msgs) != 1 {
		t.Fatalf("fetchmail KPOP fetched %d messages:\n%s\nserver log:\n%s", len(msgs), log, e.srv.log)
	}
	wantMessage(t, "fetchmail KPOP", msgs[0][len(msgs[0])-len(krbMessage):])
	e.checkUnlocked(t)
}

// Perl's Net::POP3 with Authen::SASL's GSSAPI (Authen::SASL::Perl::GSSAPI
// over the GSSAPI module).
func TestKerberosPerl(t *testing.T) {
	perl := need(t, "perl", "perl")
	if exec.Command(perl, "-MAuthen::SASL::Perl::GSSAPI", "-MGSSAPI", "-e", "1").Run() != nil {
		t.Skip("Authen::SASL's GSSAPI is not installed: apt-get install libauthen-sasl-perl libgssapi-perl")
	}
	e := startKerberos(t)
	cc := e.realm.Kinit(t, "alice", "alice-pw")
	script := `use Net::POP3; use Authen::SASL;
my $p = Net::POP3->new($ARGV[0], Port => $ARGV[1], Timeout => 20) or die "connect: $@";
my $sasl = Authen::SASL->new(mechanism => 'GSSAPI', callback => { user => '' });
$p->auth($sasl) or die "auth failed: " . $p->message;
my $m = $p->get(1) or die "get: " . $p->message;
print join('', @$m); $p->quit;`
	cmd := exec.Command(perl, "-e", script, krbtest.Host, e.port)
	cmd.Env = e.realm.Env(cc)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("perl: %v\n%s\nserver log:\n%s", err, out, e.srv.log)
	}
	wantMessage(t, "Net::POP3", string(out))
	e.checkUnlocked(t)
}

// postoffice fetch with auth = "gssapi", from the ticket cache.
func TestKerberosOurFetch(t *testing.T) {
	e := startKerberos(t)
	cc := e.realm.Kinit(t, "alice", "alice-pw")
	dir := t.TempDir()
	md := filepath.Join(dir, "Maildir")
	cfg := filepath.Join(dir, "fetch.toml")
	os.WriteFile(cfg, []byte(fmt.Sprintf(`[[account]]
name = "krb"
server = "%s:%s"
tls = "none"
auth = "gssapi"
krb5_ccache = %q
krb5_config = %q
target = "maildir:%s"
state_dir = %q
`, krbtest.Host, e.port, cc, e.realm.Config, md, filepath.Join(dir, "state"))), 0o600)
	cmd := exec.Command(binary, "fetch", "--config", cfg)
	cmd.Env = e.realm.Env(cc)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("postoffice fetch: %v\n%s\nserver log:\n%s", err, out, e.srv.log)
	}
	var got []string
	for _, sub := range []string{"new", "cur"} {
		es, _ := os.ReadDir(filepath.Join(md, sub))
		for _, f := range es {
			b, err := os.ReadFile(filepath.Join(md, sub, f.Name()))
			if err != nil {
				t.Fatal(err)
			}
			got = append(got, string(b))
		}
	}
	if len(got) != 1 {
		t.Fatalf("fetched %d messages, want 1", len(got))
	}
	wantMessage(t, "postoffice fetch", got[0])
	e.checkUnlocked(t)
}

// recorder is a GSS context that keeps the first token it produced.
type recorder struct {
	*kerberos.GSSClient
	first []byte
}

func (r *recorder) InitSecContext(tok []byte) ([]byte, bool, error) {
	out, done, err := r.GSSClient.InitSecContext(tok)
	if r.first == nil {
		r.first = out
	}
	return out, done, err
}

// Each refusal answers -ERR [AUTH] and leaves the maildrop unlocked: no
// ticket, a ticket for another service, a principal with no local user, a
// replayed AP-REQ, and an authorization identity the principal may not
// use.
func TestKerberosRefused(t *testing.T) {
	e := startKerberos(t)
	raw := func(t *testing.T, token []byte) {
		t.Helper()
		c := e.srv.dial()
		ir := base64.StdEncoding.EncodeToString(token)
		if ir == "" {
			ir = "=" // RFC 5034 §4: an empty initial response
		}
		c.cmd("AUTH GSSAPI "+ir, "-ERR [AUTH]")
		c.cmd("QUIT", "+OK")
		e.checkUnlocked(t)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	login := func(t *testing.T, cc, service, authzid string) (*recorder, error) {
		t.Helper()
		c, err := pop3.Dial(ctx, e.srv.addr, nil)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		r := &recorder{GSSClient: kerberos.NewGSSClient(kerberos.InitiatorOptions{Config: e.realm.Config, CCache: cc}, service, krbtest.Host)}
		err = c.Authenticate(ctx, pop3.NewGSSAPIClient(r, authzid))
		if err == nil {
			c.Quit(ctx)
		}
		return r, err
	}
	t.Run("no ticket", func(t *testing.T) { raw(t, nil) })
	t.Run("not a token", func(t *testing.T) { raw(t, []byte("no ticket here")) })
	alice := e.realm.Kinit(t, "alice", "alice-pw")
	t.Run("replay", func(t *testing.T) {
		r, err := login(t, alice, "pop", "")
		if err != nil {
			t.Fatalf("first login: %v\n%s", err, e.srv.log)
		}
		raw(t, r.first)
	})
	t.Run("other service", func(t *testing.T) {
		e.realm.Keytab(t, "imap/"+krbtest.Host)
		_, err := login(t, alice, "imap", "")
		if err == nil || !strings.Contains(err.Error(), "[AUTH]") {
			t.Fatalf("ticket for imap/: err = %v, want -ERR [AUTH]", err)
		}
		e.checkUnlocked(t)
	})
	t.Run("no local user", func(t *testing.T) {
		cc := e.realm.Kinit(t, "stranger", "stranger-pw")
		_, err := login(t, cc, "pop", "")
		if err == nil || !strings.Contains(err.Error(), "[AUTH]") {
			t.Fatalf("stranger: err = %v, want -ERR [AUTH]", err)
		}
		e.checkUnlocked(t)
	})
	t.Run("authzid of another", func(t *testing.T) {
		_, err := login(t, alice, "pop", "bob@example.org")
		if err == nil || !strings.Contains(err.Error(), "[AUTH]") {
			t.Fatalf("alice as bob: err = %v, want -ERR [AUTH]", err)
		}
		e.checkUnlocked(t)
	})
	t.Run("own authzid", func(t *testing.T) {
		if _, err := login(t, alice, "pop", "alice"); err != nil {
			t.Fatalf("alice as alice: %v", err)
		}
	})
}

// An expired ticket is refused end to end, and the maildrop stays
// unlocked. Careful clients (MIT's libgssapi in curl and fetchmail, and
// gokrb5 in postoffice fetch) never present one: they ask the KDC for a
// new ticket, which refuses the expired TGT. So the server's refusal is
// driven with what a client holding an old cache file could send, a fresh
// authenticator for the expired service ticket, over AUTH GSSAPI and over
// KPOP; postoffice fetch is run too, to show that its error says why.
func TestKerberosExpiredTicket(t *testing.T) {
	// One second of skew: the server refuses a ticket one second after
	// its end time rather than five minutes.
	e := startKerberosWith(t, "clock_skew = \"1s\"\n")
	spn := "pop/" + krbtest.Host
	svc := e.realm.Kinit(t, "alice", "alice-pw", "-l", "2s", "-S", spn)
	tgt := e.realm.Kinit(t, "alice", "alice-pw", "-l", "2s")
	// Both tickets end at most 2 s after kinit returned; with the 1 s of
	// skew the server refuses them from 3 s on. One sleep serves every
	// case.
	time.Sleep(4 * time.Second)
	apreq := func(t *testing.T) []byte {
		t.Helper()
		b, err := kerberos.APReqFromCCache(svc, spn)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}

	t.Run("AUTH GSSAPI", func(t *testing.T) {
		c := e.srv.dial()
		ir := base64.StdEncoding.EncodeToString(kerberos.GSSToken(apreq(t)))
		// RFC 5034 §4: the token does not fit on the AUTH line.
		c.cmd("AUTH GSSAPI", "+ ")
		c.cmd(ir, "-ERR [AUTH]")
		c.cmd("QUIT", "+OK")
		// The log reaches the harness through a pipe: give it a moment.
		for i := 0; !strings.Contains(e.srv.log.String(), "expired"); i++ {
			if i == 50 {
				t.Fatalf("the server's log gives no expiry as the reason:\n%s", e.srv.log)
			}
			time.Sleep(100 * time.Millisecond)
		}
		e.checkUnlocked(t)
	})

	t.Run("KPOP", func(t *testing.T) {
		nc, err := net.DialTimeout("tcp", e.kpop, 5*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		defer nc.Close()
		nc.SetDeadline(time.Now().Add(20 * time.Second))
		msg := func(b []byte) []byte {
			return append([]byte{byte(len(b) >> 24), byte(len(b) >> 16), byte(len(b) >> 8), byte(len(b))}, b...)
		}
		var out []byte
		out = append(out, msg([]byte("KRB5_SENDAUTH_V1.0\x00"))...)
		out = append(out, msg([]byte("KPOPV1.0\x00"))...)
		if _, err := nc.Write(out); err != nil {
			t.Fatal(err)
		}
		br := bufio.NewReader(nc)
		if ok, err := br.ReadByte(); err != nil || ok != 0 {
			t.Fatalf("sendauth version answer = %d, %v; want 0", ok, err)
		}
		if _, err := nc.Write(msg(apreq(t))); err != nil {
			t.Fatal(err)
		}
		var n [4]byte
		if _, err := io.ReadFull(br, n[:]); err != nil {
			t.Fatal(err)
		}
		l := int(n[0])<<24 | int(n[1])<<16 | int(n[2])<<8 | int(n[3])
		if l == 0 || l > 64<<10 {
			t.Fatalf("answer to the expired AP-REQ is %d octets, want a KRB-ERROR", l)
		}
		if _, err := io.ReadFull(br, make([]byte, l)); err != nil {
			t.Fatal(err)
		}
		line, err := br.ReadString('\n')
		if !strings.HasPrefix(line, "-ERR [AUTH]") {
			t.Fatalf("after the KRB-ERROR: %q, %v; want -ERR [AUTH]", line, err)
		}
		if rest, _ := io.ReadAll(br); len(rest) > 0 {
			t.Errorf("the server sent %q after the refusal", rest)
		}
		e.checkUnlocked(t)
	})

	t.Run("postoffice fetch", func(t *testing.T) {
		dir := t.TempDir()
		cfg := filepath.Join(dir, "fetch.toml")
		os.WriteFile(cfg, []byte(fmt.Sprintf("[[account]]\nname = \"krb\"\nserver = \"%s:%s\"\ntls = \"none\"\nauth = \"gssapi\"\nkrb5_ccache = %q\nkrb5_config = %q\ntarget = \"maildir:%s\"\nstate_dir = %q\n",
			krbtest.Host, e.port, tgt, e.realm.Config, filepath.Join(dir, "Maildir"), filepath.Join(dir, "state"))), 0o600)
		cmd := exec.Command(binary, "fetch", "--config", cfg)
		cmd.Env = e.realm.Env(tgt)
		out, err := cmd.CombinedOutput()
		if err == nil {
			t.Fatalf("postoffice fetch with an expired ticket succeeded:\n%s", out)
		}
		if !strings.Contains(strings.ToLower(string(out)), "expired") {
			t.Errorf("postoffice fetch does not say the ticket expired:\n%s", out)
		}
		e.checkUnlocked(t)
	})
}
