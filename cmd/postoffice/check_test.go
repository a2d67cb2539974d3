package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/postoffice-mail/postoffice/internal/certutil"
)

// postoffice check loads what serve would and says what is wrong: exit 1
// for an invalid config, an expired certificate or an unusable password
// entry; warnings (users an enabled method cannot serve, a missing Maildir
// root) leave it 0.
func TestCheck(t *testing.T) {
	dir := t.TempDir()
	passwd := filepath.Join(dir, "passwd")
	if code, _, errs := runCmd(t, "pw\n", "user", "add", "--passwd-file", passwd, "--password-stdin", "alice"); code != 0 {
		t.Fatal(errs)
	}
	if code, _, errs := runCmd(t, "pw\n", "user", "add", "--passwd-file", passwd, "--password-stdin", "--scheme", "SCRAM-SHA-256", "bob"); code != 0 {
		t.Fatal(errs)
	}
	writePair := func(name string, valid time.Duration) (cert, key string) {
		p, err := certutil.SelfSigned(valid)
		if err != nil {
			t.Fatal(err)
		}
		cert, key = filepath.Join(dir, name+".pem"), filepath.Join(dir, name+".key")
		os.WriteFile(cert, p.CertPEM, 0o600)
		os.WriteFile(key, p.KeyPEM, 0o600)
		return cert, key
	}
	cert, key := writePair("good", 90*24*time.Hour)
	soonCert, soonKey := writePair("soon", 3*24*time.Hour)
	vmail := filepath.Join(dir, "vmail")
	os.Mkdir(vmail, 0o700)
	write := func(name, text string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(text), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	base := func(cert, key, auth, location string) string {
		return `[server]
user = "nobody"
[pop3]
listen = ["127.0.0.1:1110"]
listen_tls = ["127.0.0.1:1995"]
[tls]
cert = "` + cert + `"
key = "` + key + `"
[auth]
passwd_file = "` + passwd + `"
` + auth + `
[mail]
location = "maildir:` + location + `/%d/%n/Maildir"
`
	}

	secret := write("oauth-secret", "s3cret\n")
	introspection := func(secretFile, keys string) string {
		return "[auth.oauth]\nintrospection_url = \"http://127.0.0.1:9/introspect\"\nclient_id = \"postoffice\"\nclient_secret_file = \"" + secretFile + "\"\n" + keys + "\n"
	}
	tests := []struct {
		name, config string
		code         int
		want         []string
	}{
		{"clean", base(cert, key, "", vmail), 0, []string{"config ", ": valid", "passwd-file " + passwd + ": 2 users",
			"stored schemes: SCRAM-SHA-256 1, SHA512-CRYPT 1", "certificate " + cert, "runs as nobody", "ok: 0 warning(s)"}},
		{"scram-for-crypt-users", base(cert, key, `mechanisms = ["SCRAM-SHA-256", "PLAIN"]`, vmail), 0,
			[]string{"warning: 1 of 2 users cannot log in with SCRAM-SHA-256 (enabled in the config), their stored scheme cannot serve it: alice", "ok: 1 warning(s)"}},
		{"expiring", base(soonCert, soonKey, "", vmail), 0, []string{"warning: certificate " + soonCert, "expires in 2 days"}},
		{"missing-root", base(cert, key, "", filepath.Join(dir, "nope")), 0, []string{"warning: mail.location: " + filepath.Join(dir, "nope") + " does not exist"}},
		{"bad-key", base(cert, soonKey, "", vmail), 1, []string{"error: ", "1 error(s)"}},
		{"invalid", base(cert, key, "apop = 3", vmail), 1, []string{"error: config: ", "auth.apop", "1 error(s)"}},
		// check builds the store as serve does: a location the store
		// refuses (serve would not start) is an error, not a warning.
		{"relative-location", base(cert, key, "", "relative"), 1,
			[]string{"error: mail.location: maildir: location \"relative/%d/%n/Maildir\" is not an absolute path", "1 error(s)"}},
		{"other-home-location", base(cert, key, "", "~other"), 1,
			[]string{"error: mail.location: maildir: location \"~other/%d/%n/Maildir\": only ~/ (the user's home) is supported", "1 error(s)"}},
		// check builds the OAuth verifier as serve does: what serve
		// refuses, check refuses.
		{"oauth-no-secret", base(cert, key, introspection(filepath.Join(dir, "nosecret"), `audience = "pop3"`), vmail), 1,
			[]string{"error: auth.oauth.client_secret_file: ", "1 error(s)"}},
		{"oauth-no-jwks", base(cert, key, "[auth.oauth]\njwks_file = \""+filepath.Join(dir, "nojwks.json")+"\"\nissuer = \"https://id\"\naudience = \"pop3\"\n", vmail), 1,
			[]string{"error: oauth: jwks: ", "1 error(s)"}},
		{"oauth-introspection", base(cert, key, introspection(secret, `audience = "pop3"`), vmail), 0,
			[]string{`oauth: introspection at http://127.0.0.1:9/introspect, user in "username"`, "ok: 0 warning(s)"}},
		{"oauth-any-token", base(cert, key, introspection(secret, ""), vmail), 0,
			[]string{"warning: auth.oauth: introspection without audience or accepted_client_ids accepts every active token", "ok: 1 warning(s)"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, out, errs := runCmd(t, "", "check", "--config", write(tt.name+".toml", tt.config))
			if code != tt.code {
				t.Errorf("exit %d, want %d\n%s%s", code, tt.code, out, errs)
			}
			for _, w := range tt.want {
				if !strings.Contains(out, w) {
					t.Errorf("output lacks %q:\n%s", w, out)
				}
			}
		})
	}

	// An unusable stored password is an error: that user cannot log in.
	f, _ := os.OpenFile(passwd, os.O_APPEND|os.O_WRONLY, 0)
	f.WriteString("carol:{NOSUCH}abc::::::\n")
	f.Close()
	code, out, _ := runCmd(t, "", "check", "--config", write("clean2.toml", base(cert, key, "", vmail)))
	if code != 1 || !strings.Contains(out, "error: ") {
		t.Errorf("with a {NOSUCH} entry: exit %d\n%s", code, out)
	}
	// Login restrictions are reported; nopassword is a warning; a field
	// that restricts a login in a way postoffice does not implement is an
	// error naming the file and line.
	restricted := write("restricted.passwd", "a:{PLAIN}x::::::nologin=y reason=Moved\nb:{PLAIN}x::::::allow_nets=10.0.0.0/8\nc:::::::nopassword\n")
	code, out, _ = runCmd(t, "", "check", "--config", write("restricted.toml", strings.Replace(base(cert, key, "", vmail), passwd, restricted, 1)))
	for _, w := range []string{"1 users have nologin", "1 users may log in only from allow_nets", "warning: 1 users have nopassword"} {
		if code != 0 || !strings.Contains(out, w) {
			t.Errorf("restricted users: exit %d, output lacks %q:\n%s", code, w, out)
		}
	}
	proxied := write("proxied.passwd", "a:{PLAIN}x\nb:{PLAIN}x::::::proxy host=10.0.0.2\n")
	code, out, _ = runCmd(t, "", "check", "--config", write("proxied.toml", strings.Replace(base(cert, key, "", vmail), passwd, proxied, 1)))
	if code != 1 || !strings.Contains(out, proxied+":2:") || !strings.Contains(out, `"host"`) {
		t.Errorf("proxy field: exit %d, want 1 with an error at %s:2:\n%s", code, proxied, out)
	}
}
