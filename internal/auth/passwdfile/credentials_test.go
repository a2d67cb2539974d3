package passwdfile

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/postoffice-mail/postoffice/internal/auth"
	"github.com/postoffice-mail/postoffice/internal/auth/scheme"
)

func TestCredentialsFixture(t *testing.T) {
	t.Parallel()
	db, _ := openFixture(t)
	tests := []struct {
		login, wantName, wantPrefix string // wantPrefix "" means no password
	}{
		{"alice", "alice", "{SHA512-CRYPT}$6$phi1wjzg0iXIzN3R$"},
		{"bob+example.org", "bob@example.org", "{BLF-CRYPT}$2y$05$"}, // SDPS form
		{"dave", "dave", "{CRYPT}$5$izKs1KlirzSf5Gsb$"},              // the default scheme made explicit
		{"erin", "erin", "{SCRAM-SHA-256}4096,"},
		{"frank", "frank", "{CRAM-MD5}466d36e6"},
		{"grace", "grace", "{PLAIN}Correct horse 9"},
		{"heidi", "heidi", ""},
		{"ivan", "ivan", ""},
		{"mallory", "mallory", "{NOSUCH}abc"}, // unusable, returned as stored
	}
	for _, tt := range tests {
		u, pw, err := db.Credentials(t.Context(), tt.login)
		if err != nil || u.Name != tt.wantName {
			t.Errorf("Credentials(%q) = %+v, _, %v, want user %q", tt.login, u, err, tt.wantName)
			continue
		}
		if tt.wantPrefix == "" {
			if pw != "" {
				t.Errorf("Credentials(%q) password = %q, want none", tt.login, pw)
			}
			continue
		}
		if len(pw) < len(tt.wantPrefix) || pw[:len(tt.wantPrefix)] != tt.wantPrefix {
			t.Errorf("Credentials(%q) password = %q, want prefix %q", tt.login, pw, tt.wantPrefix)
		}
	}
	// What Credentials returns verifies without a default scheme.
	for _, login := range []string{"alice", "dave", "erin", "frank", "grace"} {
		_, pw, _ := db.Credentials(t.Context(), login)
		if ok, err := scheme.Verify(pw, fixturePassword, ""); !ok || err != nil {
			t.Errorf("Verify(Credentials(%q), fixture password, \"\") = %v, %v, want true", login, ok, err)
		}
	}
	_, pw, _ := db.Credentials(t.Context(), "grace")
	if plain, ok := scheme.PlaintextEquivalent(pw); !ok || plain != fixturePassword {
		t.Errorf("PlaintextEquivalent(Credentials(grace)) = %q, %v, want the fixture password", plain, ok)
	}
	for _, login := range []string{"nobody", "bob", "", "ALICE", "ignored-line-without-user"} {
		if u, pw, err := db.Credentials(t.Context(), login); !errors.Is(err, auth.ErrUnknownUser) || pw != "" {
			t.Errorf("Credentials(%q) = %+v, %q, %v, want %v", login, u, pw, err, auth.ErrUnknownUser)
		}
	}
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if _, _, err := db.Credentials(ctx, "alice"); !errors.Is(err, context.Canceled) {
		t.Errorf("Credentials(cancelled) = %v, want %v", err, context.Canceled)
	}
}

func TestCredentialsDefaultScheme(t *testing.T) {
	t.Parallel()
	p := filepath.Join(t.TempDir(), "users")
	os.WriteFile(p, []byte("u:secret\nv:$1$salt$x\nw:{broken\nx:{}y\n"), 0o600)
	db, err := Open(p, Options{DefaultScheme: "plain"})
	if err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct{ user, want string }{
		{"u", "{PLAIN}secret"},
		{"v", "{MD5-CRYPT}$1$salt$x"}, // Dovecot's rule: bare $1$ is always MD5-CRYPT
		{"w", "{PLAIN}{broken"},       // no closing brace: not a prefix
		{"x", "{}y"},                  // an (empty) prefix is kept
	} {
		if _, got, err := db.Credentials(t.Context(), tt.user); err != nil || got != tt.want {
			t.Errorf("Credentials(%q) = %q, %v, want %q", tt.user, got, err, tt.want)
		}
	}
	_, pw, _ := db.Credentials(t.Context(), "u")
	if plain, ok := scheme.PlaintextEquivalent(pw); !ok || plain != "secret" {
		t.Errorf("PlaintextEquivalent(%q) = %q, %v, want secret", pw, plain, ok)
	}
}
