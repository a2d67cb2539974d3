package sasl

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"os"
	"path/filepath"
	"testing"

	gosasl "github.com/emersion/go-sasl"

	"github.com/postoffice-mail/postoffice/internal/auth/passwdfile"
)

// The "user+domain" login alias (alice+example.org for alice@example.org)
// applies to names the user types, never to a name from a token claim or a
// client certificate: those are looked up exactly. Run over the real
// passwd-file database, which implements the alias.
func TestLoginAliasOnlyForTypedNames(t *testing.T) {
	t.Parallel()
	passwd := filepath.Join(t.TempDir(), "passwd")
	if err := os.WriteFile(passwd, []byte("alice@example.org:{PLAIN}secret::::::\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	db, err := passwdfile.Open(passwd, passwdfile.Options{})
	if err != nil {
		t.Fatal(err)
	}
	m := newMechs(t, func(o *Options) { o.Users = db })
	ctx := context.Background()
	certFor := func(cn string) *tls.ConnectionState {
		return &tls.ConnectionState{VerifiedChains: [][]*x509.Certificate{{{Subject: pkix.Name{CommonName: cn}}}}}
	}
	for _, tc := range []struct {
		name   string
		mech   string
		cs     *tls.ConnectionState
		client gosasl.Client
		ok     bool
	}{
		// Typed by the user: the alias applies.
		{"PLAIN alias", Plain, nil, gosasl.NewPlainClient("", "alice+example.org", "secret"), true},
		{"LOGIN alias", Login, nil, gosasl.NewLoginClient("alice+example.org", "secret"), true},
		{"CRAM-MD5 alias", CramMD5, nil, &cramClient{"alice+example.org", "secret"}, true},
		{"SCRAM-SHA-256 alias", ScramSHA256, nil, newSCRAMClient(t, ScramSHA256, "alice+example.org", "secret", nil, false), true},
		// The SASL user name next to a token is typed too; the token's
		// own name decides who logs in.
		{"XOAUTH2 typed alias", XOAuth2, nil, &xoauth2Client{"alice+example.org", "token-for-alice@example.org"}, true},
		// From a token claim or a certificate: exact names only.
		{"XOAUTH2 claim", XOAuth2, nil, &xoauth2Client{"alice@example.org", "token-for-alice+example.org"}, false},
		{"XOAUTH2 claim, no typed name", XOAuth2, nil, &xoauth2Client{"alice+example.org", "token-for-alice+example.org"}, false},
		{"OAUTHBEARER claim", OAuthBearer, nil, gosasl.NewOAuthBearerClient(&gosasl.OAuthBearerOptions{Token: "token-for-alice+example.org"}), false},
		{"EXTERNAL cert", External, certFor("alice+example.org"), gosasl.NewExternalClient(""), false},
		{"EXTERNAL cert exact", External, certFor("alice@example.org"), gosasl.NewExternalClient(""), true},
	} {
		s, err := m.Start(ctx, tc.mech, tc.cs)
		if err != nil {
			t.Errorf("%s: Start: %v", tc.name, err)
			continue
		}
		if tc.ok {
			err = run(ctx, s, tc.client)
		} else {
			err = runFailing(ctx, s, tc.client)
		}
		switch {
		case tc.ok && (err != nil || s.User().Name != "alice@example.org"):
			t.Errorf("%s: %v, user %q, want alice@example.org", tc.name, err, s.User().Name)
		case !tc.ok && !errors.Is(err, ErrAuthFailed):
			t.Errorf("%s: %v, user %q, want ErrAuthFailed", tc.name, err, s.User().Name)
		}
	}
}
