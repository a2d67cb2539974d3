// Package auth defines the user database seam of postoffice: who may log in,
// with which credentials, and where their mail lives. Implementations live in
// subpackages (passwdfile for Dovecot's passwd-file format).
package auth

import (
	"context"
	"errors"
)

var (
	// ErrFailed is returned for a wrong password and for an unknown user
	// alike, so callers cannot tell them apart.
	ErrFailed = errors.New("auth: authentication failed")
	// ErrUnknownUser is returned by Lookup only (delivery needs to know).
	ErrUnknownUser = errors.New("auth: unknown user")
)

// User is an authenticated or looked-up account.
type User struct {
	Name  string            // canonical login name as stored in the database
	Home  string            // home directory, may be empty
	Extra map[string]string // extra fields (Dovecot's userdb_* and others), may be nil
}

// DB is a user database.
type DB interface {
	// Authenticate checks a plaintext password. It returns ErrFailed for an
	// unknown user and for a wrong password, spending about the same time on
	// both. Other errors are temporary failures (database down).
	Authenticate(ctx context.Context, user, password string) (User, error)
	// Lookup finds a user without a password (for delivery). It returns
	// ErrUnknownUser if there is none.
	Lookup(ctx context.Context, user string) (User, error)
}

// CredentialDB is a DB that also hands out a user's stored password. The
// challenge-response methods (APOP, CRAM-MD5, SCRAM) need the stored secret
// itself, not a password to check against it.
type CredentialDB interface {
	DB
	// Credentials returns the user and its stored password in "{SCHEME}data"
	// form, the database's default scheme made explicit. It returns
	// ErrUnknownUser when there is no such user; other errors are temporary
	// failures.
	Credentials(ctx context.Context, user string) (User, string, error)
}
