package backend

import (
	"context"
	"errors"

	"github.com/postoffice-mail/postoffice/internal/auth"
	"github.com/postoffice-mail/postoffice/pop3server"
)

// OpenAuthenticated opens the maildrop of a user whose identity was proven
// outside the POP3 dialogue (KPOP's Kerberos sendauth, before the
// greeting): it looks the name up exactly (no login alias: the name comes
// from a principal, not from a user's typing) and then applies what every
// login gets: the user's restrictions, LOGIN-DELAY and the maildrop lock,
// with the same errors as a password login.
func (b *Backend) OpenAuthenticated(ctx context.Context, c *pop3server.Conn, name string) (pop3server.Mailbox, error) {
	return b.openAuthenticated(ctx, c, name, "KPOP")
}

// openAuthenticated is OpenAuthenticated for the login method mech (what
// the retrieval history records).
func (b *Backend) openAuthenticated(ctx context.Context, c *pop3server.Conn, name, mech string) (pop3server.Mailbox, error) {
	u, err := b.opts.Users.Lookup(ctx, name)
	if errors.Is(err, auth.ErrUnknownUser) {
		return nil, pop3server.ErrAuthFailed
	}
	if err != nil {
		return nil, authUnavailable(err)
	}
	return b.openSelect(ctx, c, u, "", loginInfo{mech: mech})
}
