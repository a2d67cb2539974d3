package e2e

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"testing"
)

// fetchmail (Debian's 6.4, OpenSSL): implicit TLS with "ssl", STLS with
// "sslproto tls1.2+" (without "ssl" that demands STLS), the certificate
// checked against our CA, USER/PASS, CRAM-MD5 and APOP (fetchmail's APOP
// mode never sends STLS, so it runs on the implicit-TLS port). fetchmail
// checks the server name against DNS names only, not IP addresses, so it
// is told to expect "localhost" (sslcommonname). Messages go to an MDA
// that writes one file each; fetchmail deletes them afterwards.
func TestFetchmailTLS(t *testing.T) {
	t.Parallel()
	need(t, "fetchmail", "fetchmail")
	run := fetchmailCase
	runClientCases(t, []clientCase{
		// "auth any" (the default) picks CRAM-MD5 when offered, which
		// needs a plaintext-equivalent stored password.
		{"ssl", true, run("protocol POP3", rolePlain, "ssl", true, "AUTH CRAM-MD5")},
		{"sslproto-stls", true, run("protocol POP3", rolePlain, `sslproto "tls1.2+"`, false, "AUTH CRAM-MD5")},
		{"auth-password", true, run("protocol POP3 auth password", roleHashed, `sslproto "tls1.2+"`, false, "USER ")},
		{"auth-cram-md5", true, run("protocol POP3 auth cram-md5", rolePlain, `sslproto "tls1.2+"`, false, "AUTH CRAM-MD5")},
		{"apop", true, run("protocol APOP", rolePlain, "ssl", true, "APOP ")},
	})
}

// fetchmailCase runs fetchmail with the poll options proto (protocol and
// auth) and tlsOpts as the user of role, and checks it logged in with the
// command login.
func fetchmailCase(proto, role, tlsOpts string, implicit bool, login string) func(*testing.T, *target) {
	return func(t *testing.T, tg *target) {
		fm := need(t, "fetchmail", "fetchmail")
		addr := tg.plain
		if implicit {
			addr = tg.tls
		}
		host, port := hostPort(t, addr)
		out := filepath.Join(tg.dir, "out")
		if err := os.Mkdir(out, 0o755); err != nil {
			t.Fatal(err)
		}
		mda := tg.writeFile(t, "mda.sh", fmt.Sprintf("#!/bin/sh\nexec cat > %s/$(date +%%s%%N).$$\n", out), 0o755)
		rc := tg.writeFile(t, "fetchmailrc", fmt.Sprintf(`set no bouncemail
poll %s service %s %s timeout 20
  user %q there with password %q
  %s sslcertck sslcertfile %q sslcommonname localhost
  mda %q
  nokeep fetchall
`, host, port, proto, tg.user(role), tg.pass, tlsOpts, tg.caFile, mda), 0o600)
		cmd := exec.Command(fm, "-f", rc, "-v", "--nosyslog", "--idfile", filepath.Join(tg.dir, "fetchids"),
			"--pidfile", filepath.Join(tg.dir, "fetchmail.pid")) // root's default is /var/run, shared
		cmd.Env = append(os.Environ(), "HOME="+tg.dir, "FETCHMAILHOME="+tg.dir)
		b, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("%s: fetchmail: %v\n%s\nserver log:\n%s", tg.name, err, b, tg.logs())
		}
		log := string(b)
		// "2 messages for alice at 127.0.0.1 (1622 octets)."
		m := regexp.MustCompile(`(\d+) messages? for \S+ at \S+ \((\d+) octets\)`).FindStringSubmatch(log)
		if m == nil || m[1] != strconv.Itoa(len(tlsMessages)) || m[2] != strconv.Itoa(tlsOctets()) {
			t.Errorf("%s: fetchmail counted %q, want %d messages of %d octets\n%s", tg.name, m, len(tlsMessages), tlsOctets(), log)
		}
		if !strings.Contains(log, "POP3> "+login) {
			t.Errorf("%s: fetchmail did not log in with %s:\n%s", tg.name, login, log)
		}
		if sent := strings.Contains(log, "POP3> STLS"); sent == implicit {
			t.Errorf("%s: implicit TLS %v, STLS sent %v:\n%s", tg.name, implicit, sent, log)
		}
		if !strings.Contains(log, "SSL/TLS: using protocol TLSv1.") {
			t.Errorf("%s: no TLS in fetchmail's log:\n%s", tg.name, log)
		}
		tg.checkDelivered(t, tg.user(role), readFiles(t, out), 0)
	}
}

// readFiles returns the contents of the files of dir in name order.
func readFiles(t *testing.T, dir string) []string {
	t.Helper()
	es, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	names := make([]string, 0, len(es))
	for _, e := range es {
		names = append(names, e.Name())
	}
	sort.Strings(names)
	var out []string
	for _, n := range names {
		b, err := os.ReadFile(filepath.Join(dir, n))
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, string(b))
	}
	return out
}

// mpop (GnuTLS, GNU SASL): STLS ("tls_starttls on", its default) and
// implicit TLS ("tls_starttls off"), the server checked against our CA
// (tls_trust_file), and every authentication method it lists that the
// server offers. OAUTHBEARER and XOAUTH2 take the JWT as the password
// (through passwordeval: mpop refuses rc lines over 500 characters);
// EXTERNAL presents a client certificate (tls_cert_file, tls_key_file)
// whose CN is the user. Messages go to a Maildir, and mpop deletes them.
// (mpop sends an OAUTHBEARER initial response of any length on the AUTH
// line, past RFC 5034's 255 octets; XOAUTH2 and EXTERNAL it sends after
// the first "+".)
func TestMpopTLS(t *testing.T) {
	t.Parallel()
	need(t, "mpop", "mpop")
	run := mpopCase
	runClientCases(t, []clientCase{
		{"starttls/user", true, run("user", roleHashed, true)},
		{"implicit/user", true, run("user", roleHashed, false)},
		{"starttls/plain", true, run("plain", roleHashed, true)},
		{"implicit/plain", true, run("plain", roleHashed, false)},
		{"login", true, run("login", roleHashed, true)},
		{"cram-md5", true, run("cram-md5", rolePlain, true)},
		{"scram-sha-1", true, run("scram-sha-1", rolePlain, true)},
		{"scram-sha-256", true, run("scram-sha-256", roleSCRAM256, true)},
		{"implicit/scram-sha-256", true, run("scram-sha-256", roleSCRAM256, false)},
		// Dovecot's APOP timestamps hold "=", which mpop refuses.
		{"apop", false, run("apop", rolePlain, true)},
		{"oauthbearer", false, run("oauthbearer", roleOAuth, false)},
		{"xoauth2", false, run("xoauth2", roleOAuth, true)},
		{"external", false, run("external", roleExternal, false)},
		{"starttls/external", false, run("external", roleExternal, true)},
	})
}

// mpopCase runs mpop with auth (one of its method names) as the user of
// role, with STLS or implicit TLS.
func mpopCase(auth, role string, starttls bool) func(*testing.T, *target) {
	return func(t *testing.T, tg *target) {
		mpop := need(t, "mpop", "mpop")
		addr := tg.tls
		if starttls {
			addr = tg.plain
		}
		host, port := hostPort(t, addr)
		user, pass := tg.user(role), tg.pass
		var extra string
		switch auth {
		case "oauthbearer", "xoauth2":
			// mpop refuses rc lines over 500 characters, which a JWT is:
			// the token comes from passwordeval.
			tok := tg.writeFile(t, "token", tg.oauth.token(t, user)+"\n", 0o600)
			pass = ""
			extra = fmt.Sprintf("passwordeval \"cat %s\"\n", tok)
		case "external":
			pass = ""
			extra = fmt.Sprintf("tls_cert_file %s\ntls_key_file %s\n", tg.pki.certFile, tg.pki.keyFile)
		}
		md := filepath.Join(tg.dir, "Maildir")
		for _, sub := range []string{"new", "cur", "tmp"} {
			if err := os.MkdirAll(filepath.Join(md, sub), 0o700); err != nil {
				t.Fatal(err)
			}
		}
		onOff := map[bool]string{true: "on", false: "off"}
		passLine := ""
		if pass != "" {
			passLine = fmt.Sprintf("password %q\n", pass)
		}
		rc := tg.writeFile(t, "mpoprc", fmt.Sprintf(`account test
host %s
port %s
timeout 20
tls on
tls_starttls %s
tls_trust_file %s
%suser %s
%sauth %s
delivery maildir %s
uidls_file %s
received_header off
keep off
`, host, port, onOff[starttls], tg.caFile, extra, user, passLine, auth, md, filepath.Join(tg.dir, "uidls")), 0o600)
		cmd := exec.Command(mpop, "-C", rc, "--debug", "test")
		cmd.Env = append(os.Environ(), "HOME="+tg.dir)
		b, err := cmd.CombinedOutput()
		log := string(b)
		if err != nil {
			t.Fatalf("%s: mpop: %v\n%s\nserver log:\n%s", tg.name, err, log, tg.logs())
		}
		if sent := strings.Contains(log, "--> STLS"); sent != starttls {
			t.Errorf("%s: STLS sent %v, want %v:\n%s", tg.name, sent, starttls, log)
		}
		want := map[string]string{"user": "--> USER ", "apop": "--> APOP "}[auth]
		if want == "" {
			want = "--> AUTH " + strings.ToUpper(auth)
		}
		if !strings.Contains(log, want) {
			t.Errorf("%s: mpop did not log in with %q:\n%s", tg.name, want, log)
		}
		got := readMaildir(t, md)
		for i := range got {
			if i < len(tlsMessages) && got[i] != lf(tlsMessages[i]) {
				t.Errorf("%s: message %d = %.200q, want %.200q", tg.name, i+1, got[i], lf(tlsMessages[i]))
			}
		}
		tg.checkDelivered(t, user, got, 0)
	}
}

// getmail6: SimplePOP3SSLRetriever (implicit TLS only; getmail has no
// STLS) with ca_certs, which also makes it check the certificate's name
// (an IP address SAN here), into a Maildir, deleting what it retrieved;
// and the same with use_apop.
func TestGetmailTLS(t *testing.T) {
	t.Parallel()
	need(t, "getmail", "getmail6")
	runClientCases(t, []clientCase{
		{"ssl", true, getmailCase(roleHashed, false)},
		{"ssl-apop", true, getmailCase(rolePlain, true)},
	})
}

func getmailCase(role string, apop bool) func(*testing.T, *target) {
	return func(t *testing.T, tg *target) {
		gm := need(t, "getmail", "getmail6")
		host, port := hostPort(t, tg.tls)
		md, deliverAs := getmailMaildir(t)
		user := tg.user(role)
		rc := tg.writeFile(t, "getmailrc", fmt.Sprintf(`[retriever]
type = SimplePOP3SSLRetriever
server = %s
port = %s
username = %s
password = %s
ca_certs = %s
use_apop = %v
timeout = 20

[destination]
type = Maildir
path = %s/
%s

[options]
verbose = 2
read_all = true
delete = true
delivered_to = false
received = false
`, host, port, user, tg.pass, tg.caFile, map[bool]string{true: "true", false: "false"}[apop], md, deliverAs), 0o600)
		// getmail runs under its own Python, with the wait for its
		// delivery child fixed (see testdata/getmail_norace.py).
		py := getmailPython(t, gm)
		norace, err := filepath.Abs("testdata/getmail_norace.py")
		if err != nil {
			t.Fatal(err)
		}
		cmd := exec.Command(py, norace, gm, "--getmaildir", tg.dir, "--rcfile", rc)
		cmd.Env = append(os.Environ(), "HOME="+tg.dir)
		b, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("%s: getmail: %v\n%s\nserver log:\n%s", tg.name, err, b, tg.logs())
		}
		if want := fmt.Sprintf("%d messages (%d bytes) retrieved", len(tlsMessages), tlsOctets()); !strings.Contains(string(b), want) {
			t.Errorf("%s: getmail output lacks %q:\n%s", tg.name, want, b)
		}
		tg.checkDelivered(t, user, readMaildir(t, md), 0)
	}
}

// getmailPython returns the interpreter of getmail's #! line.
func getmailPython(t *testing.T, getmail string) string {
	t.Helper()
	b, err := os.ReadFile(getmail)
	if err != nil {
		t.Fatal(err)
	}
	first, _, _ := strings.Cut(string(b), "\n")
	f := strings.Fields(strings.TrimPrefix(first, "#!"))
	if !strings.HasPrefix(first, "#!") || len(f) == 0 {
		t.Fatalf("%s does not start with #!: %q", getmail, first)
	}
	if strings.HasSuffix(f[0], "/env") && len(f) > 1 {
		return f[1]
	}
	return f[0]
}

// getmailMaildir makes a Maildir for getmail. getmail refuses to deliver as
// root: running as root, it delivers as "nobody" to a Maildir that user
// owns, outside the tests' private temporary directories.
func getmailMaildir(t *testing.T) (dir, userLine string) {
	t.Helper()
	base, err := os.MkdirTemp("", "postoffice-getmail-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(base) })
	md := filepath.Join(base, "Maildir")
	for _, sub := range []string{"new", "cur", "tmp"} {
		if err := os.MkdirAll(filepath.Join(md, sub), 0o700); err != nil {
			t.Fatal(err)
		}
	}
	if os.Geteuid() != 0 {
		return md, ""
	}
	u, err := user.Lookup("nobody")
	if err != nil {
		t.Skipf("running as root and no user nobody for getmail to deliver as: %v", err)
	}
	uid, _ := strconv.Atoi(u.Uid)
	gid, _ := strconv.Atoi(u.Gid)
	if err := os.Chmod(base, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{md, filepath.Join(md, "new"), filepath.Join(md, "cur"), filepath.Join(md, "tmp")} {
		if err := os.Chown(p, uid, gid); err != nil {
			t.Fatal(err)
		}
	}
	return md, "user = nobody"
}

// curl: pop3s:// with --cacert, pop3:// with --ssl-reqd (STLS), and the
// login methods of --login-options (SASL PLAIN, LOGIN, CRAM-MD5, "+APOP")
// and of --oauth2-bearer (OAUTHBEARER, XOAUTH2), each retrieving message
// 1 byte for byte. curl 7.88 has no SCRAM. -v shows the command curl
// logged in with.
func TestCurlTLS(t *testing.T) {
	t.Parallel()
	need(t, "curl", "curl")
	runClientCases(t, []clientCase{
		// Without --login-options curl picks the strongest mechanism it
		// knows (CRAM-MD5) and does not fall back: the user needs a
		// plaintext-equivalent stored password.
		{"pop3s", true, curlCase("pop3s", rolePlain, "", "> AUTH CRAM-MD5")},
		{"ssl-reqd", true, curlCase("pop3", rolePlain, "", "> AUTH CRAM-MD5")},
		{"auth-plain", true, curlCase("pop3s", roleHashed, "AUTH=PLAIN", "> AUTH PLAIN")},
		{"auth-login", true, curlCase("pop3", roleHashed, "AUTH=LOGIN", "> AUTH LOGIN")},
		{"auth-cram-md5", true, curlCase("pop3", rolePlain, "AUTH=CRAM-MD5", "> AUTH CRAM-MD5")},
		{"apop", true, curlCase("pop3s", rolePlain, "AUTH=+APOP", "> APOP ")},
		{"oauthbearer", false, curlCase("pop3s", roleOAuth, "AUTH=OAUTHBEARER", "> AUTH OAUTHBEARER")},
	})
}

// curl 7.88 picks OAUTHBEARER whenever the server offers it, even with
// --login-options AUTH=XOAUTH2: XOAUTH2 is tried on a server that offers
// it without OAUTHBEARER.
func TestCurlXOAUTH2(t *testing.T) {
	t.Parallel()
	need(t, "curl", "curl")
	tg := newPostofficeTarget(t, tlsSiteOptions{mechanisms: []string{"PLAIN", "XOAUTH2"}})
	curlCase("pop3", roleOAuth, "AUTH=XOAUTH2", "> AUTH XOAUTH2")(t, tg)
}

// curlCase retrieves message 1 with curl over scheme ("pop3s", or "pop3"
// with --ssl-reqd, which makes curl use STLS) as the user of role, with
// login options opts; login is what -v must show curl sending.
func curlCase(scheme, role, opts, login string) func(*testing.T, *target) {
	return func(t *testing.T, tg *target) {
		curl := need(t, "curl", "curl")
		user := tg.user(role)
		addr := tg.tls
		args := []string{"-sS", "-v", "--max-time", "30", "--cacert", tg.caFile}
		if scheme == "pop3" {
			addr = tg.plain
			args = append(args, "--ssl-reqd")
		}
		if opts != "" {
			args = append(args, "--login-options", opts)
		}
		if strings.Contains(opts, "OAUTH") {
			args = append(args, "--user", user, "--oauth2-bearer", tg.oauth.token(t, user))
		} else {
			args = append(args, "--user", user+":"+tg.pass)
		}
		args = append(args, scheme+"://"+addr+"/1")
		cmd := exec.Command(curl, args...)
		var stderr strings.Builder
		cmd.Stderr = &stderr
		out, err := cmd.Output()
		if err != nil {
			t.Fatalf("%s: curl %s: %v\n%s\nserver log:\n%s", tg.name, strings.Join(args, " "), err, stderr.String(), tg.logs())
		}
		if string(out) != crlf(tlsMessages[0]) {
			t.Errorf("%s: curl RETR 1 = %q, want %q", tg.name, out, crlf(tlsMessages[0]))
		}
		log := stderr.String()
		if scheme == "pop3" && !strings.Contains(log, "> STLS") {
			t.Errorf("%s: curl --ssl-reqd did not send STLS:\n%s", tg.name, log)
		}
		if scheme == "pop3s" && strings.Contains(log, "> STLS") {
			t.Errorf("%s: curl sent STLS over pop3s:\n%s", tg.name, log)
		}
		if login != "" && !strings.Contains(log, login) {
			t.Errorf("%s: curl -v lacks %q:\n%s", tg.name, login, log)
		}
		if n := tg.left(t, user); n != len(tlsMessages) {
			t.Errorf("%s: %d messages left, want %d (curl deletes nothing)", tg.name, n, len(tlsMessages))
		}
	}
}

// Python's poplib: stls() on the plain port (CAPA lists STLS before and
// not after), POP3_SSL on the implicit-TLS port, and apop() over
// POP3_SSL, each with an ssl context that trusts our CA only; every
// message retrieved byte for byte and deleted.
func TestPoplibTLS(t *testing.T) {
	t.Parallel()
	need(t, "python3", "python3")
	runClientCases(t, []clientCase{
		{"stls", true, poplibCase("stls", roleHashed)},
		{"pop3-ssl", true, poplibCase("ssl", roleHashed)},
		{"apop", true, poplibCase("apop", rolePlain)},
	})
}

func poplibCase(mode, role string) func(*testing.T, *target) {
	return func(t *testing.T, tg *target) {
		py := need(t, "python3", "python3")
		addr := tg.tls
		if mode == "stls" {
			addr = tg.plain
		}
		h, p := hostPort(t, addr)
		user := tg.user(role)
		out, err := exec.Command(py, "testdata/poplib_tls.py", mode, h, p, user, tg.pass, tg.caFile).Output()
		if err != nil {
			t.Fatalf("%s: poplib %s: %v\n%s\nserver log:\n%s", tg.name, mode, err, stderrOf(err), tg.logs())
		}
		var got struct {
			CapaBefore []string `json:"capa_before"`
			STLS       string
			Welcome    string
			TLSVersion string `json:"tls_version"`
			Capa       []string
			Login      string
			Stat       []int
			Retr       []string
			Quit       string
		}
		if err := json.Unmarshal(out, &got); err != nil {
			t.Fatalf("%v: %s", err, out)
		}
		if mode == "stls" {
			if !contains(got.CapaBefore, "STLS") || !strings.HasPrefix(got.STLS, "+OK") {
				t.Errorf("%s: CAPA before STLS %v, STLS reply %q", tg.name, got.CapaBefore, got.STLS)
			}
		}
		if contains(got.Capa, "STLS") && (mode == "stls" || !tg.proxied) {
			t.Errorf("%s: CAPA over TLS lists STLS: %v", tg.name, got.Capa)
		}
		if got.TLSVersion != "TLSv1.2" && got.TLSVersion != "TLSv1.3" {
			t.Errorf("%s: TLS version %q", tg.name, got.TLSVersion)
		}
		if mode == "apop" && !regexp.MustCompile(`<[^<>@]+@[^<>]+>`).MatchString(got.Welcome) {
			t.Errorf("%s: greeting %q has no APOP timestamp", tg.name, got.Welcome)
		}
		if len(got.Stat) != 2 || got.Stat[0] != len(tlsMessages) || got.Stat[1] != tlsOctets() {
			t.Errorf("%s: STAT = %v, want [%d %d]", tg.name, got.Stat, len(tlsMessages), tlsOctets())
		}
		var bodies []string
		for _, r := range got.Retr {
			bodies = append(bodies, b64(t, r))
		}
		for i := range bodies {
			if i < len(tlsMessages) && bodies[i] != crlf(tlsMessages[i]) {
				t.Errorf("%s: RETR %d = %.200q, want %.200q", tg.name, i+1, bodies[i], crlf(tlsMessages[i]))
			}
		}
		tg.checkDelivered(t, user, bodies, 0)
	}
}

// openssl s_client -starttls pop3 on the plain port: the certificate
// verifies against our CA for the IP address, and CAPA inside TLS no
// longer lists STLS (RFC 2595 §4) but still lists USER and SASL.
func TestOpenSSLStartTLS(t *testing.T) {
	t.Parallel()
	need(t, "openssl", "openssl")
	runClientCases(t, []clientCase{{"starttls-pop3", true, func(t *testing.T, tg *target) {
		openssl := need(t, "openssl", "openssl")
		host, _ := hostPort(t, tg.plain)
		cmd := exec.Command(openssl, "s_client", "-starttls", "pop3", "-connect", tg.plain,
			"-CAfile", tg.caFile, "-verify_ip", host, "-verify_return_error", "-brief", "-crlf", "-ign_eof")
		cmd.Stdin = strings.NewReader("CAPA\nQUIT\n")
		var stderr strings.Builder
		cmd.Stderr = &stderr
		out, err := cmd.Output()
		if err != nil {
			t.Fatalf("%s: openssl s_client: %v\n%s\n%s\nserver log:\n%s", tg.name, err, out, stderr.String(), tg.logs())
		}
		if !strings.Contains(stderr.String(), "Verification: OK") {
			t.Errorf("%s: s_client did not verify the certificate:\n%s", tg.name, stderr.String())
		}
		lines := strings.Split(strings.TrimRight(string(out), "\r\n"), "\r\n")
		if len(lines) < 3 || !strings.HasPrefix(lines[0], "+OK") || !strings.HasPrefix(lines[len(lines)-1], "+OK") {
			t.Fatalf("%s: after the handshake, got %q; want CAPA's reply and QUIT's", tg.name, out)
		}
		var capa []string
		for _, l := range lines[1:] {
			if l == "." {
				break
			}
			capa = append(capa, strings.Fields(l)[0])
		}
		if contains(capa, "STLS") || !contains(capa, "USER") || !contains(capa, "SASL") {
			t.Errorf("%s: CAPA after STLS = %v, want USER and SASL and no STLS", tg.name, capa)
		}
	}}})
}
