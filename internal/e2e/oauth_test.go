package e2e

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// introspectionSite is a site whose OAuth tokens are checked by an RFC 7662
// endpoint run by the test (plain http on loopback, which the config
// allows). The endpoint knows the tokens in answers; any other is inactive.
func introspectionSite(t *testing.T, oauthKeys string, answers map[string]map[string]any) *site {
	t.Helper()
	endpoint := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if id, secret, ok := r.BasicAuth(); !ok || id != "postoffice" || secret != "s3cret" {
			http.Error(w, "unauthorized", http.StatusUnauthorized)
			return
		}
		if err := r.ParseForm(); err != nil {
			http.Error(w, "bad form", http.StatusBadRequest)
			return
		}
		a, ok := answers[r.PostForm.Get("token")]
		if !ok {
			a = map[string]any{"active": false}
		}
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(a)
	}))
	t.Cleanup(endpoint.Close)
	s := newSite(t)
	secret := filepath.Join(s.dir, "oauth-secret")
	if err := os.WriteFile(secret, []byte("s3cret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := os.ReadFile(s.config)
	if err != nil {
		t.Fatal(err)
	}
	// The penalty is off so that the refusals below do not slow the
	// logins after them.
	text := strings.Replace(string(cfg), "[auth]\n", `[auth]
mechanisms = ["XOAUTH2", "OAUTHBEARER"]
penalty = false
`, 1)
	text += fmt.Sprintf(`
[auth.oauth]
introspection_url = %q
client_id = "postoffice"
client_secret_file = %q
%s
`, endpoint.URL+"/introspect", secret, oauthKeys)
	if err := os.WriteFile(s.config, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	return s
}

// oauthLogin logs in with token over mech (XOAUTH2 or OAUTHBEARER) and
// returns the final reply; on +OK it also returns STAT's reply.
func oauthLogin(t *testing.T, addr, mech, user, token string) (reply, stat string) {
	t.Helper()
	c := dialPlain(t, addr)
	var ir string
	step := noMoreSteps
	if mech == "XOAUTH2" {
		ir = "user=" + user + "\x01auth=Bearer " + token + "\x01\x01"
	} else {
		ir = "n,a=" + user + ",\x01auth=Bearer " + token + "\x01\x01"
		// RFC 7628 §3.2.3: the client answers an error with 0x01.
		step = func([]byte) []byte { return []byte{1} }
	}
	reply = c.auth(mech, []byte(ir), step)
	if strings.HasPrefix(reply, "+OK") {
		stat = c.cmd("STAT", "+OK")
	}
	c.cmd("QUIT", "+OK")
	return reply, stat
}

// With introspection, issuer, audience and username_claim are checked on
// the endpoint's answer as on a JWT: an active token issued by the same
// provider for another service, or by another issuer, does not log in, and
// the user is the one the configured claim names, never RFC 7662's
// "username" member.
func TestOAuthIntrospectionChecks(t *testing.T) {
	t.Parallel()
	const iss = "https://id.example.org"
	future := time.Now().Add(time.Hour).Unix()
	answers := map[string]map[string]any{
		// Issued by another provider for another application, its
		// "username" naming a user who exists here.
		"evil": {"active": true, "username": "alice", "email": "mallory@evil.example",
			"aud": "some-other-app", "iss": "https://evil.example"},
		"wrong-iss": {"active": true, "email": "bob@example.org", "aud": "pop3", "iss": "https://evil.example"},
		"wrong-aud": {"active": true, "email": "bob@example.org", "aud": []any{"webmail", "calendar"}, "iss": iss},
		"no-aud":    {"active": true, "email": "bob@example.org", "iss": iss},
		"no-claim":  {"active": true, "username": "alice", "aud": "pop3", "iss": iss},
		"unverified": {"active": true, "email": "bob@example.org", "email_verified": false,
			"aud": "pop3", "iss": iss},
		"expired": {"active": true, "email": "bob@example.org", "aud": "pop3", "iss": iss,
			"exp": time.Now().Add(-time.Hour).Unix()},
		"not-yet": {"active": true, "email": "bob@example.org", "aud": "pop3", "iss": iss,
			"nbf": time.Now().Add(time.Hour).Unix()},
		// The user is the email claim's, not "username"'s.
		"good": {"active": true, "username": "alice", "email": "bob@example.org",
			"aud": []any{"webmail", "pop3"}, "iss": iss, "exp": future},
		"good-string-aud": {"active": true, "email": "bob@example.org", "aud": "pop3", "iss": iss},
	}
	s := introspectionSite(t, `issuer = "`+iss+`"
audience = "pop3"
username_claim = "email"`, answers)
	s.deliver("bob@example.org", "Subject: one\r\n\r\nbody\r\n")
	s.deliver("bob@example.org", "Subject: two\r\n\r\nbody\r\n")
	srv := s.start()
	for _, mech := range []string{"XOAUTH2", "OAUTHBEARER"} {
		for _, tok := range []string{"evil", "wrong-iss", "wrong-aud", "no-aud", "no-claim", "unverified", "expired", "not-yet", "unknown"} {
			for _, user := range []string{"alice", "bob@example.org"} {
				if reply, _ := oauthLogin(t, srv.addr, mech, user, tok); !strings.HasPrefix(reply, "-ERR") {
					t.Errorf("%s with token %q as %s: %q, want -ERR", mech, tok, user, reply)
				}
			}
		}
		for _, tok := range []string{"good", "good-string-aud"} {
			reply, stat := oauthLogin(t, srv.addr, mech, "bob@example.org", tok)
			if !strings.HasPrefix(reply, "+OK") || !strings.HasPrefix(stat, "+OK 2 ") {
				t.Errorf("%s with token %q: %q, STAT %q, want +OK and bob@example.org's 2 messages", mech, tok, reply, stat)
			}
			// The token is bob's: claiming to be alice is refused.
			if reply, _ := oauthLogin(t, srv.addr, mech, "alice", tok); !strings.HasPrefix(reply, "-ERR") {
				t.Errorf("%s with bob's token %q as alice: %q, want -ERR", mech, tok, reply)
			}
		}
	}
	if t.Failed() {
		t.Logf("server log:\n%s", srv.log)
	}
}

// Demon's user+domain login form still works for a name typed at USER,
// through the built binary.
func TestLoginAliasUSER(t *testing.T) {
	t.Parallel()
	s := newSite(t)
	s.deliver("bob@example.org", "Subject: one\r\n\r\nbody\r\n")
	srv := s.start()
	c := srv.dial()
	c.login("bob+example.org")
	if stat := c.cmd("STAT", "+OK"); !strings.HasPrefix(stat, "+OK 1 ") {
		t.Errorf("STAT after USER bob+example.org = %q, want bob@example.org's 1 message", stat)
	}
	c.cmd("QUIT", "+OK")
}
