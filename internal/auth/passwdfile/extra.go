package passwdfile

import (
	"fmt"
	"strings"

	"github.com/postoffice-mail/postoffice/internal/auth"
)

// LoginFields is what a user's extra fields say about logging in.
type LoginFields struct {
	// Restrict holds nologin, reason, allow_nets and allow_real_nets.
	Restrict auth.Restrictions
	// NoPassword is Dovecot's nopassword on a user without a password:
	// any password logs in.
	NoPassword bool
	// Warning, when not empty, is a problem to log that does not stop the
	// user (nopassword beside a password, which is ignored).
	Warning string
}

// ParseExtraFields parses Dovecot extra fields written as text, a
// space-separated list of key=value or bare keys (a bare key has the value
// ""), as the eighth field of a passwd-file line holds them. Other user
// databases that keep extra fields as text (the SQL user database) read
// them with it, so both accept the same input.
func ParseExtraFields(s string) (map[string]string, error) {
	var extra map[string]string
	for kv := range strings.FieldsSeq(s) {
		k, v, _ := strings.Cut(kv, "=")
		if k == "" {
			return nil, fmt.Errorf("passwdfile: extra field %q has no name", kv)
		}
		if extra == nil {
			extra = make(map[string]string)
		}
		extra[k] = v
	}
	return extra, nil
}

// CheckLoginFields applies to extra (a user's extra fields) the rules a
// passwd-file line is loaded with: nologin, reason, allow_nets,
// allow_real_nets and nopassword are honoured, and a field that would
// restrict, redirect or rename a login in a way postoffice does not
// implement (user, proxy, host, master, noauthenticate, allow_*, deny*,
// ...) is an error, so a user database never lets in a login that Dovecot
// would refuse. hasPassword says whether the user has a stored password
// (nopassword is ignored, with a Warning, when it does).
func CheckLoginFields(extra map[string]string, hasPassword bool) (LoginFields, error) {
	e := entry{extra: extra, hasPassword: hasPassword}
	if err := e.loginFields(); err != nil {
		return LoginFields{}, fmt.Errorf("passwdfile: %w", err)
	}
	return LoginFields{Restrict: e.restrict, NoPassword: e.noPassword, Warning: e.warn}, nil
}

// CostClass names what decides the cost of verifying stored, a
// "{SCHEME}data" string: the scheme and its cost parameters (bcrypt's
// cost, sha-crypt rounds, argon2's parameters, SCRAM's iteration count),
// without salt or hash. Two stored passwords of one class cost the same
// to verify; a user database that verifies unknown users against a hash
// of its dominant class picks that class with it.
func CostClass(stored string) string { return costClass(stored) }

// ExplicitScheme writes out the scheme of a stored password that has no
// {SCHEME} prefix, the way scheme.Verify reads it: a well-formed "{NAME}"
// prefix is kept, a bare "$1$" string is MD5-CRYPT, anything else is in
// defaultScheme.
func ExplicitScheme(stored, defaultScheme string) string {
	return explicitScheme(stored, defaultScheme)
}
