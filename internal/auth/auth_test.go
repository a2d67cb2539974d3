package auth

import "testing"

func TestLoginAlias(t *testing.T) {
	t.Parallel()
	tests := []struct {
		login, want string
		ok          bool
	}{
		{"alice+example.org", "alice@example.org", true},
		{"a+b+example.org", "a+b@example.org", true}, // the last '+' separates the domain
		// A name with a domain is never rewritten: plus-addressing, or an
		// attacker's domain after a victim's alias.
		{"alice+news@example.org", "", false},
		{"alice+example.org@attacker.test", "", false},
		{"alice", "", false},
		{"+example.org", "", false},
		{"alice+", "", false},
		{"", "", false},
	}
	for _, tt := range tests {
		if got, ok := LoginAlias(tt.login); got != tt.want || ok != tt.ok {
			t.Errorf("LoginAlias(%q) = %q, %v, want %q, %v", tt.login, got, ok, tt.want, tt.ok)
		}
	}
}
