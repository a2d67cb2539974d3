package sasl

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/md5"
	"crypto/tls"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"strings"
	"testing"

	gosasl "github.com/emersion/go-sasl"
	"github.com/google/go-cmp/cmp"
	"github.com/xdg-go/scram"

	"github.com/postoffice-mail/postoffice/internal/auth"
)

func TestNew(t *testing.T) {
	t.Parallel()
	db := newFakeDB(t)
	for _, tc := range []struct {
		name string
		opts Options
		want []string // nil: New fails
	}{
		// Only what every stored scheme can serve is on by default.
		{"defaults", Options{Users: db}, []string{Plain, Login}},
		{"defaults with oauth", Options{Users: db, OAuth: fakeVerifier{}},
			[]string{Plain, Login, OAuthBearer, XOAuth2}},
		{"no credentials", Options{Users: plainDB{db}}, []string{Plain, Login}},
		{"explicit", Options{Users: db, Enabled: []string{"plain", "EXTERNAL", "Plain", "scram-sha-1"}},
			[]string{Plain, External, ScramSHA1}},
		{"unknown", Options{Users: db, Enabled: []string{"PLAIN", "DIGEST-MD5"}}, nil},
		{"scram without credentials", Options{Users: plainDB{db}, Enabled: []string{ScramSHA256}}, nil},
		{"oauth without verifier", Options{Users: db, Enabled: []string{XOAuth2}}, nil},
		{"no users", Options{}, nil},
		{"bad external", Options{Users: db, ExternalUsername: "dns"}, nil},
	} {
		m, err := New(tc.opts)
		if tc.want == nil {
			if err == nil {
				t.Errorf("%s: New succeeded, want an error", tc.name)
			}
			continue
		}
		if err != nil {
			t.Errorf("%s: New: %v", tc.name, err)
			continue
		}
		if diff := cmp.Diff(tc.want, m.Enabled()); diff != "" {
			t.Errorf("%s: Enabled() (-want +got):\n%s", tc.name, diff)
		}
	}
}

func TestAvailable(t *testing.T) {
	t.Parallel()
	m := newMechs(t, nil)
	mEP := newMechs(t, func(o *Options) { o.ServerCertificate = serverCert })
	tls13, _ := tlsPair(t, tls.VersionTLS13, false)
	tls13c, _ := tlsPair(t, tls.VersionTLS13, true)
	tls12, _ := tlsPair(t, tls.VersionTLS12, false)
	noPlus := []string{ScramSHA256, ScramSHA1, CramMD5, Plain, Login, OAuthBearer, XOAuth2}
	withPlus := []string{ScramSHA256Plus, ScramSHA256, ScramSHA1Plus, ScramSHA1, CramMD5, Plain, Login, OAuthBearer, XOAuth2}
	for _, tc := range []struct {
		name string
		m    *Mechanisms
		cs   *tls.ConnectionState
		want []string
	}{
		{"plaintext", m, nil, noPlus},
		{"TLS 1.3", m, &tls13, withPlus},
		{"TLS 1.2 with EMS", m, &tls12, withPlus},
		{"TLS 1.3 client cert", m, &tls13c, append(withPlus, External)},
		{"hand-made state", m, &tls.ConnectionState{Version: tls.VersionTLS13, HandshakeComplete: true}, noPlus},
		{"hand-made state, end-point", mEP, &tls.ConnectionState{Version: tls.VersionTLS12, HandshakeComplete: true}, withPlus},
	} {
		if diff := cmp.Diff(tc.want, tc.m.Available(tc.cs)); diff != "" {
			t.Errorf("%s: Available (-want +got):\n%s", tc.name, diff)
		}
	}
	if _, err := m.Start(context.Background(), ScramSHA256Plus, nil); !errors.Is(err, ErrUnavailable) {
		t.Errorf("Start(-PLUS without TLS) = %v, want ErrUnavailable", err)
	}
	if _, err := m.Start(context.Background(), External, &tls13); !errors.Is(err, ErrUnavailable) {
		t.Errorf("Start(EXTERNAL without client cert) = %v, want ErrUnavailable", err)
	}
	if _, err := m.Start(context.Background(), "GSSAPI", nil); !errors.Is(err, ErrUnavailable) {
		t.Errorf("Start(GSSAPI) = %v, want ErrUnavailable", err)
	}
}

// TestSuccess runs every mechanism with a real client implementation.
func TestSuccess(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	srvTLS, cliTLS := tlsPair(t, tls.VersionTLS13, true)
	srv12, cli12 := tlsPair(t, tls.VersionTLS12, false)
	exporter, err := scram.NewTLSExporterBinding(&cliTLS)
	if err != nil {
		t.Fatal(err)
	}
	exporter12, err := scram.NewTLSExporterBinding(&cli12)
	if err != nil {
		t.Fatal(err)
	}
	endpoint, err := scram.NewTLSServerEndpointBinding(&cliTLS)
	if err != nil {
		t.Fatal(err)
	}
	m := newMechs(t, func(o *Options) { o.ServerCertificate = serverCert })
	for _, tc := range []struct {
		name   string
		mech   string
		cs     *tls.ConnectionState
		client gosasl.Client
		user   string
	}{
		{"PLAIN", Plain, nil, gosasl.NewPlainClient("", "alice", "secret"), "alice"},
		{"PLAIN authzid=authcid", Plain, nil, gosasl.NewPlainClient("dave", "dave", "secret"), "dave"},
		{"LOGIN", Login, nil, gosasl.NewLoginClient("dave", "secret"), "dave"},
		{"LOGIN without initial response", Login, nil, &loginNoIR{"alice", "secret"}, "alice"},
		{"CRAM-MD5 plaintext", CramMD5, nil, &cramClient{"alice", "secret"}, "alice"},
		{"CRAM-MD5 doveadm context", CramMD5, nil, &cramClient{"erin", "secret"}, "erin"},
		{"CRAM-MD5 Hash context", CramMD5, nil, &cramClient{"gina", "secret"}, "gina"},
		{"SCRAM-SHA-256 stored", ScramSHA256, nil, newSCRAMClient(t, ScramSHA256, "bob", "secret", nil, false), "bob"},
		{"SCRAM-SHA-256 scheme.Hash", ScramSHA256, nil, newSCRAMClient(t, ScramSHA256, "henry", "secret", nil, false), "henry"},
		{"SCRAM-SHA-256 from plaintext", ScramSHA256, nil, newSCRAMClient(t, ScramSHA256, "alice", "secret", nil, false), "alice"},
		{"SCRAM-SHA-1 stored", ScramSHA1, nil, newSCRAMClient(t, ScramSHA1, "carol", "secret", nil, false), "carol"},
		{"SCRAM-SHA-1 from plaintext", ScramSHA1, nil, newSCRAMClient(t, ScramSHA1, "alice", "secret", nil, false), "alice"},
		{"SCRAM-SHA-256 y without PLUS offered", ScramSHA256, nil, newSCRAMClient(t, ScramSHA256, "bob", "secret", nil, true), "bob"},
		{"SCRAM-SHA-256 n over TLS", ScramSHA256, &srvTLS, newSCRAMClient(t, ScramSHA256, "bob", "secret", nil, false), "bob"},
		{"SCRAM-SHA-256-PLUS tls-exporter", ScramSHA256Plus, &srvTLS, newSCRAMClient(t, ScramSHA256Plus, "bob", "secret", &exporter, false), "bob"},
		{"SCRAM-SHA-256-PLUS tls-exporter TLS 1.2", ScramSHA256Plus, &srv12, newSCRAMClient(t, ScramSHA256Plus, "alice", "secret", &exporter12, false), "alice"},
		{"SCRAM-SHA-256-PLUS tls-server-end-point", ScramSHA256Plus, &srvTLS, newSCRAMClient(t, ScramSHA256Plus, "bob", "secret", &endpoint, false), "bob"},
		{"SCRAM-SHA-1-PLUS tls-exporter", ScramSHA1Plus, &srvTLS, newSCRAMClient(t, ScramSHA1Plus, "carol", "secret", &exporter, false), "carol"},
		{"OAUTHBEARER", OAuthBearer, nil, gosasl.NewOAuthBearerClient(&gosasl.OAuthBearerOptions{Username: "alice", Token: "token-for-alice", Host: "pop.example.org", Port: 995}), "alice"},
		{"OAUTHBEARER without user", OAuthBearer, nil, gosasl.NewOAuthBearerClient(&gosasl.OAuthBearerOptions{Token: "token-for-alice"}), "alice"},
		{"XOAUTH2", XOAuth2, nil, &xoauth2Client{"alice", "token-for-alice"}, "alice"},
		{"EXTERNAL", External, &srvTLS, gosasl.NewExternalClient(""), "alice"},
		{"EXTERNAL authzid", External, &srvTLS, gosasl.NewExternalClient("alice"), "alice"},
	} {
		s, err := m.Start(ctx, tc.mech, tc.cs)
		if err != nil {
			t.Errorf("%s: Start: %v", tc.name, err)
			continue
		}
		if err := run(ctx, s, tc.client); err != nil {
			t.Errorf("%s: %v", tc.name, err)
			continue
		}
		if got := s.User().Name; got != tc.user {
			t.Errorf("%s: User() = %q, want %q", tc.name, got, tc.user)
		}
	}
}

func TestExternalEmail(t *testing.T) {
	t.Parallel()
	srvTLS, _ := tlsPair(t, tls.VersionTLS13, true)
	m := newMechs(t, func(o *Options) { o.ExternalUsername = "email" })
	s, err := m.Start(context.Background(), External, &srvTLS)
	if err != nil {
		t.Fatal(err)
	}
	if err := run(context.Background(), s, gosasl.NewExternalClient("")); err != nil || s.User().Name != "frank@example.org" {
		t.Errorf("EXTERNAL by email = %v, user %q", err, s.User().Name)
	}
}

// TestFailures checks that every wrong credential is ErrAuthFailed.
func TestFailures(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	srvTLS, cliTLS := tlsPair(t, tls.VersionTLS13, true)
	_, otherCli := tlsPair(t, tls.VersionTLS13, false)
	exporter, _ := scram.NewTLSExporterBinding(&cliTLS)
	wrongBinding, _ := scram.NewTLSExporterBinding(&otherCli)
	endpoint, _ := scram.NewTLSServerEndpointBinding(&cliTLS)
	m := newMechs(t, func(o *Options) {
		o.Enabled = []string{ScramSHA256Plus, ScramSHA256, ScramSHA1, CramMD5, Plain, Login, OAuthBearer, XOAuth2}
	})
	for _, tc := range []struct {
		name   string
		mech   string
		cs     *tls.ConnectionState
		client gosasl.Client
	}{
		{"PLAIN wrong password", Plain, nil, gosasl.NewPlainClient("", "alice", "wrong")},
		{"PLAIN unknown user", Plain, nil, gosasl.NewPlainClient("", "nobody", "secret")},
		{"PLAIN other authzid", Plain, nil, gosasl.NewPlainClient("bob", "alice", "secret")},
		{"LOGIN wrong password", Login, nil, gosasl.NewLoginClient("alice", "wrong")},
		{"CRAM-MD5 wrong password", CramMD5, nil, &cramClient{"alice", "wrong"}},
		{"CRAM-MD5 wrong password, context", CramMD5, nil, &cramClient{"erin", "wrong"}},
		{"CRAM-MD5 unknown user", CramMD5, nil, &cramClient{"nobody", "secret"}},
		{"CRAM-MD5 unusable scheme", CramMD5, nil, &cramClient{"dave", "secret"}},
		{"SCRAM wrong password", ScramSHA256, nil, newSCRAMClient(t, ScramSHA256, "bob", "wrong", nil, false)},
		{"SCRAM wrong password, plaintext", ScramSHA256, nil, newSCRAMClient(t, ScramSHA256, "alice", "wrong", nil, false)},
		{"SCRAM unknown user", ScramSHA256, nil, newSCRAMClient(t, ScramSHA256, "nobody", "secret", nil, false)},
		{"SCRAM unusable scheme", ScramSHA256, nil, newSCRAMClient(t, ScramSHA256, "dave", "secret", nil, false)},
		{"SCRAM other hash stored", ScramSHA256, nil, newSCRAMClient(t, ScramSHA256, "carol", "secret", nil, false)},
		{"SCRAM-SHA-1 other hash stored", ScramSHA1, nil, newSCRAMClient(t, ScramSHA1, "bob", "secret", nil, false)},
		{"SCRAM-PLUS wrong binding data", ScramSHA256Plus, &srvTLS, newSCRAMClient(t, ScramSHA256Plus, "bob", "secret", &wrongBinding, false)},
		{"SCRAM-PLUS binding type not offered", ScramSHA256Plus, &srvTLS, newSCRAMClient(t, ScramSHA256Plus, "bob", "secret", &endpoint, false)},
		{"SCRAM-PLUS wrong password", ScramSHA256Plus, &srvTLS, newSCRAMClient(t, ScramSHA256Plus, "bob", "wrong", &exporter, false)},
		{"SCRAM downgrade (y while PLUS offered)", ScramSHA256, &srvTLS, newSCRAMClient(t, ScramSHA256, "bob", "secret", nil, true)},
		{"OAUTHBEARER bad token", OAuthBearer, nil, gosasl.NewOAuthBearerClient(&gosasl.OAuthBearerOptions{Username: "alice", Token: "forged"})},
		{"OAUTHBEARER other user", OAuthBearer, nil, gosasl.NewOAuthBearerClient(&gosasl.OAuthBearerOptions{Username: "bob", Token: "token-for-alice"})},
		{"OAUTHBEARER unknown user", OAuthBearer, nil, gosasl.NewOAuthBearerClient(&gosasl.OAuthBearerOptions{Token: "token-for-nobody"})},
		{"XOAUTH2 bad token", XOAuth2, nil, &xoauth2Client{"alice", "forged"}},
		{"XOAUTH2 other user", XOAuth2, nil, &xoauth2Client{"bob", "token-for-alice"}},
	} {
		s, err := m.Start(ctx, tc.mech, tc.cs)
		if err != nil {
			t.Errorf("%s: Start: %v", tc.name, err)
			continue
		}
		err = runFailing(ctx, s, tc.client)
		if !errors.Is(err, ErrAuthFailed) {
			t.Errorf("%s: err = %v, want ErrAuthFailed", tc.name, err)
		}
		if err != nil && (strings.Contains(err.Error(), "secret") || strings.Contains(err.Error(), "wrong") && !strings.Contains(err.Error(), "wrong digest")) {
			t.Errorf("%s: error %q may contain the password", tc.name, err)
		}
		if u := s.User(); u.Name != "" {
			t.Errorf("%s: User() = %q after a failure", tc.name, u.Name)
		}
	}

	// EXTERNAL with an authzid other than the certificate's.
	m = newMechs(t, nil)
	s, _ := m.Start(ctx, External, &srvTLS)
	if err := run(ctx, s, gosasl.NewExternalClient("bob")); !errors.Is(err, ErrAuthFailed) {
		t.Errorf("EXTERNAL other authzid: %v, want ErrAuthFailed", err)
	}
	// EXTERNAL for a certificate naming no user.
	m = newMechs(t, func(o *Options) { o.Users = &fakeDB{users: map[string]string{}} })
	s, _ = m.Start(ctx, External, &srvTLS)
	if err := run(ctx, s, gosasl.NewExternalClient("")); !errors.Is(err, ErrAuthFailed) {
		t.Errorf("EXTERNAL unknown user: %v, want ErrAuthFailed", err)
	}
}

// runFailing is run, but answers an OAuth error challenge as a client must
// (0x01 for OAUTHBEARER, empty for XOAUTH2).
func runFailing(ctx context.Context, srv Server, c gosasl.Client) error {
	_, resp, _ := c.Start()
	for range 10 {
		ch, done, err := srv.Next(ctx, resp)
		if err != nil {
			return err
		}
		if done {
			return errors.New("succeeded")
		}
		if bytes.HasPrefix(ch, []byte("{")) {
			if _, ok := c.(*xoauth2Client); ok {
				resp = []byte{}
			} else {
				resp = []byte{0x01}
			}
			continue
		}
		resp, err = c.Next(ch)
		if err != nil {
			return fmt.Errorf("client: %w", err)
		}
		if resp == nil {
			resp = []byte{}
		}
	}
	return errors.New("exchange did not finish")
}

// TestSCRAMUnknownUserLooksKnown checks the server-first message for an
// unknown user or an unusable scheme has the same shape as for a real one,
// and that the decoy salt is stable.
func TestSCRAMUnknownUserLooksKnown(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	m := newMechs(t, nil)
	first := func(user string) string {
		t.Helper()
		s, err := m.Start(ctx, ScramSHA256, nil)
		if err != nil {
			t.Fatal(err)
		}
		c := newSCRAMClient(t, ScramSHA256, user, "x", nil, false)
		_, ir, _ := c.Start()
		ch, done, err := s.Next(ctx, ir)
		if err != nil || done {
			t.Fatalf("first step for %q: done=%v err=%v", user, done, err)
		}
		return string(ch)
	}
	shape := regexp.MustCompile(`^r=[A-Za-z0-9+/=]{64},s=[A-Za-z0-9+/]{22}==,i=4096$`)
	salt := func(s string) string { return strings.Split(s, ",")[1] }
	for _, user := range []string{"alice", "bob", "nobody", "dave"} {
		got := first(user)
		if !shape.MatchString(got) {
			t.Errorf("server-first for %q = %q, want the shape %s", user, got, shape)
		}
	}
	if a, b := salt(first("nobody")), salt(first("nobody")); a != b {
		t.Errorf("decoy salt changes between attempts: %s, %s", a, b)
	}
	if a, b := salt(first("nobody")), salt(first("nobody2")); a == b {
		t.Errorf("decoy salt is the same for two users")
	}
}

func TestMalformed(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	srvTLS, _ := tlsPair(t, tls.VersionTLS13, true)
	m := newMechs(t, nil)
	for _, tc := range []struct {
		mech  string
		cs    *tls.ConnectionState
		steps [][]byte // the last one must fail with ErrMalformed
	}{
		{Plain, nil, [][]byte{[]byte("alice\x00secret")}},
		{Plain, nil, [][]byte{nil, []byte("")}},
		{Plain, nil, [][]byte{[]byte("a\x00b\x00c\x00d")}},
		{CramMD5, nil, [][]byte{[]byte("initial")}},
		{CramMD5, nil, [][]byte{nil, []byte("alice")}},
		{CramMD5, nil, [][]byte{nil, []byte("alice 0123")}},
		{CramMD5, nil, [][]byte{nil, []byte("alice zz23456789abcdef0123456789abcdef")}},
		{CramMD5, nil, [][]byte{nil, []byte(" 0123456789abcdef0123456789abcdef")}},
		{ScramSHA256, nil, [][]byte{[]byte("")}},
		{ScramSHA256, nil, [][]byte{[]byte("garbage")}},
		{ScramSHA256, nil, [][]byte{[]byte("q,,n=bob,r=abc")}},
		{ScramSHA256, nil, [][]byte{[]byte("n,,n=bob")}},
		{ScramSHA256, nil, [][]byte{[]byte("n,,n=b=ZZob,r=abc")}},
		{ScramSHA256, nil, [][]byte{[]byte("p=tls-exporter,,n=bob,r=abc")}},
		{ScramSHA256Plus, &srvTLS, [][]byte{[]byte("n,,n=bob,r=abc")}},
		{ScramSHA256Plus, &srvTLS, [][]byte{[]byte("y,,n=bob,r=abc")}},
		{ScramSHA256, nil, [][]byte{[]byte("n,,n=bob,r=abc"), []byte("nonsense")}},
		{ScramSHA256, nil, [][]byte{[]byte("n,,n=bob,r=abc"), []byte("c=biws,r=abc")}},
		{OAuthBearer, nil, [][]byte{[]byte("garbage"), {0x01}}},
		{OAuthBearer, nil, [][]byte{[]byte("n,,\x01auth=Basic xyz\x01\x01"), {0x01}}},
		{OAuthBearer, nil, [][]byte{[]byte("n,,\x01auth=Bearer forged\x01\x01"), {}}}, // go-sasl panicked here
		{OAuthBearer, nil, [][]byte{[]byte("n,,\x01auth=Bearer forged\x01\x01"), {0x02}}},
		{XOAuth2, nil, [][]byte{[]byte("user=alice")}},
		{XOAuth2, nil, [][]byte{[]byte("user=alice\x01auth=Basic x\x01\x01")}},
		{XOAuth2, nil, [][]byte{[]byte("user=alice\x01auth=Bearer t\x01x=y\x01\x01")}},
		{External, &srvTLS, [][]byte{[]byte("a\x00b")}},
		{Plain, nil, [][]byte{bytes.Repeat([]byte("a"), MaxResponseSize+1)}},
	} {
		name := fmt.Sprintf("%s %q", tc.mech, tc.steps)
		if len(name) > 120 {
			name = name[:120]
		}
		s, err := m.Start(ctx, tc.mech, tc.cs)
		if err != nil {
			t.Errorf("%s: Start: %v", name, err)
			continue
		}
		for i, step := range tc.steps {
			_, done, err := s.Next(ctx, step)
			if i < len(tc.steps)-1 {
				if err != nil || done {
					t.Errorf("%s: step %d: done=%v err=%v", name, i, done, err)
				}
				continue
			}
			if !errors.Is(err, ErrMalformed) {
				t.Errorf("%s: err = %v, want ErrMalformed", name, err)
			}
		}
		if _, _, err := s.Next(ctx, []byte{}); !errors.Is(err, ErrMalformed) {
			t.Errorf("%s: Next after the end: %v, want ErrMalformed", name, err)
		}
	}
}

func TestTemporaryFailure(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db := newFakeDB(t)
	m := newMechs(t, func(o *Options) { o.Users = db; o.OAuth = fakeVerifier{down: true} })
	db.down = true
	for _, tc := range []struct {
		mech   string
		client gosasl.Client
	}{
		{Plain, gosasl.NewPlainClient("", "alice", "secret")},
		{Login, gosasl.NewLoginClient("alice", "secret")},
		{CramMD5, &cramClient{"alice", "secret"}},
		{ScramSHA256, newSCRAMClient(t, ScramSHA256, "bob", "secret", nil, false)},
		{OAuthBearer, gosasl.NewOAuthBearerClient(&gosasl.OAuthBearerOptions{Token: "token-for-alice"})},
		{XOAuth2, &xoauth2Client{"alice", "token-for-alice"}},
	} {
		s, err := m.Start(ctx, tc.mech, nil)
		if err != nil {
			t.Fatal(err)
		}
		err = run(ctx, s, tc.client)
		if err == nil || errors.Is(err, ErrAuthFailed) || errors.Is(err, ErrMalformed) {
			t.Errorf("%s with the database down: %v, want a temporary error", tc.mech, err)
		}
	}
}

func TestOAuthErrorChallenge(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	m := newMechs(t, func(o *Options) { o.OAuthScope = "email" })
	s, _ := m.Start(ctx, OAuthBearer, nil)
	ch, done, err := s.Next(ctx, []byte("n,a=alice,\x01auth=Bearer forged\x01\x01"))
	if err != nil || done {
		t.Fatalf("Next = %v, %v", done, err)
	}
	var got map[string]string
	if err := json.Unmarshal(ch, &got); err != nil {
		t.Fatalf("challenge %q is not JSON: %v", ch, err)
	}
	if diff := cmp.Diff(map[string]string{"status": "invalid_token", "schemes": "bearer", "scope": "email"}, got); diff != "" {
		t.Errorf("OAUTHBEARER error (-want +got):\n%s", diff)
	}
	if _, _, err := s.Next(ctx, []byte{0x01}); !errors.Is(err, ErrAuthFailed) {
		t.Errorf("after 0x01: %v, want ErrAuthFailed", err)
	}

	s, _ = m.Start(ctx, XOAuth2, nil)
	ch, _, err = s.Next(ctx, []byte("user=alice\x01auth=Bearer forged\x01\x01"))
	if err != nil || !json.Valid(ch) || !strings.Contains(string(ch), `"status":"401"`) {
		t.Fatalf("XOAUTH2 error challenge = %q, %v", ch, err)
	}
	if _, _, err := s.Next(ctx, []byte{}); !errors.Is(err, ErrAuthFailed) {
		t.Errorf("XOAUTH2 after the empty reply: %v, want ErrAuthFailed", err)
	}
}

func TestCRAMChallenge(t *testing.T) {
	t.Parallel()
	m := newMechs(t, nil)
	s, _ := m.Start(context.Background(), CramMD5, nil)
	ch, _, err := s.Next(context.Background(), nil)
	if err != nil || !regexp.MustCompile(`^<[0-9]+\.[0-9]+@pop\.example\.org>$`).Match(ch) {
		t.Errorf("CRAM-MD5 challenge = %q, %v", ch, err)
	}
}

// Clients go-sasl lacks.

type cramClient struct{ user, pass string }

func (c *cramClient) Start() (string, []byte, error) { return CramMD5, nil, nil }
func (c *cramClient) Next(ch []byte) ([]byte, error) {
	mac := hmac.New(md5.New, []byte(c.pass))
	mac.Write(ch)
	return []byte(c.user + " " + hex.EncodeToString(mac.Sum(nil))), nil
}

type xoauth2Client struct{ user, token string }

func (c *xoauth2Client) Start() (string, []byte, error) {
	return XOAuth2, []byte("user=" + c.user + "\x01auth=Bearer " + c.token + "\x01\x01"), nil
}
func (c *xoauth2Client) Next(ch []byte) ([]byte, error) {
	return nil, fmt.Errorf("xoauth2 error %s", ch)
}

type loginNoIR struct{ user, pass string }

func (c *loginNoIR) Start() (string, []byte, error) { return Login, nil, nil }
func (c *loginNoIR) Next(ch []byte) ([]byte, error) {
	switch string(ch) {
	case "Username:":
		return []byte(c.user), nil
	case "Password:":
		return []byte(c.pass), nil
	}
	return nil, fmt.Errorf("unexpected challenge %q", ch)
}

var _ auth.CredentialDB = (*fakeDB)(nil)

// TestSCRAMTranscript replays a fixed exchange against Dovecot's stored
// entry for bob (the transcript the fuzz seeds start from).
func TestSCRAMTranscript(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	m := newMechs(t, nil)
	m.scramNonce = func() string { return fuzzServerNonce }
	s, err := m.Start(ctx, ScramSHA256, nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, step := range []struct{ c, s string }{
		{"n,,n=bob,r=fyko+d2lbbFgONRv9qkxdawL", "r=fyko+d2lbbFgONRv9qkxdawL3rfcNHYJY1ZVvWVs7j,s=MoebiMZviRfzX27A703XNg==,i=4096"},
		{"c=biws,r=fyko+d2lbbFgONRv9qkxdawL3rfcNHYJY1ZVvWVs7j,p=USz2CxARHOtl9wVBvtAUXXSLcFT9jlWWcEULNKKHftE=", ""},
	} {
		ch, done, err := s.Next(ctx, []byte(step.c))
		if err != nil {
			t.Fatalf("Next(%q) = %v", step.c, err)
		}
		if step.s != "" && string(ch) != step.s {
			t.Errorf("Next(%q) = %q, want %q", step.c, ch, step.s)
		}
		if step.s == "" && (!done || !strings.HasPrefix(string(ch), "v=")) {
			t.Errorf("final Next = %q, done=%v, want v=... and done", ch, done)
		}
	}
	if s.User().Name != "bob" {
		t.Errorf("User() = %q", s.User().Name)
	}
}
