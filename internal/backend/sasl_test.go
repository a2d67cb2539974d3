package backend

import (
	"context"
	"crypto/md5"
	"encoding/hex"
	"errors"
	"testing"

	"github.com/postoffice-mail/postoffice/internal/auth"
	"github.com/postoffice-mail/postoffice/internal/sasl"
	"github.com/postoffice-mail/postoffice/internal/store/maildir"
	"github.com/postoffice-mail/postoffice/pop3proto"
	"github.com/postoffice-mail/postoffice/pop3server"
)

// creds is a fake auth.CredentialDB with stored passwords per user.
type creds map[string]string

func (c creds) Authenticate(ctx context.Context, name, pass string) (auth.User, error) {
	if s, ok := c[name]; ok && s == "{PLAIN}"+pass {
		return auth.User{Name: name}, nil
	}
	return auth.User{}, auth.ErrFailed
}

func (c creds) Lookup(ctx context.Context, name string) (auth.User, error) {
	if _, ok := c[name]; ok {
		return auth.User{Name: name}, nil
	}
	return auth.User{}, auth.ErrUnknownUser
}

func (c creds) Credentials(ctx context.Context, name string) (auth.User, string, error) {
	if name == "down" {
		return auth.User{}, "", errors.New("database unreachable")
	}
	if s, ok := c[name]; ok {
		return auth.User{Name: name}, s, nil
	}
	return auth.User{}, "", auth.ErrUnknownUser
}

func digest(ts, secret string) string {
	s := md5.Sum([]byte(ts + secret))
	return hex.EncodeToString(s[:])
}

// APOP succeeds for a plaintext-equivalent stored password, and every
// failure (wrong digest, unknown user, a hash that cannot serve APOP) looks
// the same to the client.
func TestAPOP(t *testing.T) {
	t.Parallel()
	st, err := maildir.New(maildir.Options{Location: t.TempDir() + "/%u/Maildir", NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	db := creds{"alice": "{PLAIN}tanstaaf", "bob": "{SHA512-CRYPT}$6$x$y"}
	b, err := New(Options{Users: db, Store: st, APOP: true})
	if err != nil {
		t.Fatal(err)
	}
	s, err := b.NewSession(context.Background(), &pop3server.Conn{})
	if err != nil {
		t.Fatal(err)
	}
	as, ok := s.(pop3server.APOPSession)
	if !ok {
		t.Fatalf("session %T has no APOP with Options.APOP set", s)
	}
	// An empty mechanism list is no SASL (the engine's contract).
	if ss, ok := s.(pop3server.SASLSession); ok && len(ss.Mechanisms()) > 0 {
		t.Errorf("session %T offers SASL %v without Options.SASL", s, ss.Mechanisms())
	}
	// RFC 1939 §7's example.
	ts := "<1896.697170952@dbc.mtview.ca.us>"
	if d := digest(ts, "tanstaaf"); d != "c4c9334bac560ecc979e58001b3e22fb" {
		t.Fatalf("digest = %s, want the RFC's example", d)
	}
	for _, c := range []struct{ user, digest string }{
		{"alice", digest(ts, "wrong")},
		{"nobody", digest(ts, "tanstaaf")},
		{"bob", digest(ts, "y")},
	} {
		if _, err := as.APOP(context.Background(), c.user, ts, c.digest); code(err) != pop3proto.CodeAuth {
			t.Errorf("APOP(%s) = %v, want [AUTH]", c.user, err)
		}
	}
	if _, err := as.APOP(context.Background(), "down", ts, digest(ts, "x")); code(err) != pop3proto.CodeSysTemp {
		t.Errorf("APOP with the database down = %v, want [SYS/TEMP]", err)
	}
	mb, err := as.APOP(context.Background(), "alice", ts, digest(ts, "tanstaaf"))
	if err != nil {
		t.Fatalf("APOP(alice) = %v", err)
	}
	mb.Close()

	if _, err := New(Options{Users: users{}, Store: st, APOP: true}); err == nil {
		t.Error("New with APOP and a database without credentials succeeded")
	}
	plain, _ := New(Options{Users: db, Store: st})
	s, _ = plain.NewSession(context.Background(), &pop3server.Conn{})
	if _, ok := s.(pop3server.APOPSession); ok {
		t.Errorf("session %T offers APOP without Options.APOP", s)
	}
}

// SASL exchanges reach the store only after the mechanism succeeded, and
// the mechanism table's errors become the codes the engine acts on.
func TestSASL(t *testing.T) {
	t.Parallel()
	st, err := maildir.New(maildir.Options{Location: t.TempDir() + "/%u/Maildir", NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	db := creds{"alice": "{PLAIN}tanstaaf"}
	mechs, err := sasl.New(sasl.Options{Users: db, Enabled: []string{"PLAIN", "CRAM-MD5"}, Secret: []byte("0123456789abcdef")})
	if err != nil {
		t.Fatal(err)
	}
	b, err := New(Options{Users: db, Store: st, SASL: mechs})
	if err != nil {
		t.Fatal(err)
	}
	s, _ := b.NewSession(context.Background(), &pop3server.Conn{})
	ss, ok := s.(pop3server.SASLSession)
	if !ok {
		t.Fatalf("session %T has no SASL with Options.SASL set", s)
	}
	if _, ok := s.(pop3server.APOPSession); ok {
		t.Errorf("session %T offers APOP without Options.APOP", s)
	}
	if got := ss.Mechanisms(); len(got) != 2 {
		t.Errorf("Mechanisms() = %q, want CRAM-MD5 and PLAIN", got)
	}
	ctx := context.Background()
	if _, err := ss.StartSASL(ctx, "GSSAPI"); err == nil || code(err) != "" {
		t.Errorf("StartSASL(GSSAPI) = %v, want an error without response code", err)
	}

	try := func(resp string) (pop3server.SASLExchange, error) {
		ex, err := ss.StartSASL(ctx, "PLAIN")
		if err != nil {
			t.Fatal(err)
		}
		_, done, err := ex.Next(ctx, []byte(resp))
		if err == nil && !done {
			t.Fatalf("PLAIN with a full response not done")
		}
		return ex, err
	}
	if _, err := try("\x00alice\x00wrong"); code(err) != pop3proto.CodeAuth {
		t.Errorf("PLAIN with a wrong password = %v, want [AUTH]", err)
	}
	if _, err := try("no NULs here"); err == nil || code(err) != "" {
		t.Errorf("malformed PLAIN = %v, want an error without response code", err)
	}
	ex, err := try("\x00alice\x00tanstaaf")
	if err != nil {
		t.Fatalf("PLAIN = %v", err)
	}
	if ex.User() != "alice" {
		t.Errorf("User() = %q, want alice", ex.User())
	}
	mb, err := ex.Login(ctx)
	if err != nil {
		t.Fatalf("Login after PLAIN = %v", err)
	}
	mb.Close()
}
