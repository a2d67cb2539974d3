package location

import (
	"errors"
	"slices"
	"testing"

	"github.com/postoffice-mail/postoffice/internal/store"
)

func TestParseUser(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct{ in, full, local, domain string }{
		{"alice", "alice", "alice", ""},
		{"alice@example.org", "alice@example.org", "alice", "example.org"},
		// No login alias: the user database resolves user+domain.
		{"alice+example.org", "alice+example.org", "alice+example.org", ""},
	} {
		got, err := ParseUser(tt.in)
		if want := (User{tt.full, tt.local, tt.domain}); err != nil || got != want {
			t.Errorf("ParseUser(%q) = %+v, %v, want %+v", tt.in, got, err, want)
		}
	}
	for _, in := range []string{"", "..", "a/b", ".x", "a@b@c", "user@", "a\x00b", "\xff"} {
		if got, err := ParseUser(in); !errors.Is(err, store.ErrNoUser) {
			t.Errorf("ParseUser(%q) = %+v, %v, want an error wrapping store.ErrNoUser", in, got, err)
		}
	}
}

func TestSplit(t *testing.T) {
	t.Parallel()
	u := User{"bob@example.org", "bob", "example.org"}
	for _, tt := range []struct {
		tmpl, top string
		below     []string
	}{
		{"/var/vmail/%d/%n/Maildir", "/var/vmail", []string{"example.org", "bob", "Maildir"}},
		{"~/Maildir", "/home/bob", []string{"Maildir"}},
		{"%h/mail/%u", "/home/bob", []string{"mail", "bob@example.org"}},
		{"/var/mail/fixed", "/var/mail/fixed", nil},
	} {
		l, err := Parse(tt.tmpl)
		if err != nil {
			t.Fatalf("Parse(%q): %v", tt.tmpl, err)
		}
		top, below, err := l.Split(u, "/home/bob")
		if err != nil || top != tt.top || !slices.Equal(below, tt.below) {
			t.Errorf("Parse(%q).Split = %q, %q, %v, want %q, %q", tt.tmpl, top, below, err, tt.top, tt.below)
		}
	}
	for _, tmpl := range []string{"", "relative/%u", "/m/%x", "/m/%", "/m/%{user", "~user/x"} {
		if _, err := Parse(tmpl); err == nil {
			t.Errorf("Parse(%q) succeeded, want error", tmpl)
		}
	}
}
