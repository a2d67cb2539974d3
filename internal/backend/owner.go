package backend

import "github.com/postoffice-mail/postoffice/internal/store"

// User returns the name the user database gave the maildrop's owner at
// login: the name to hand the store for the user's other folders
// (store.Folders), whatever alias or form the client logged in with. The
// legacy listeners (POP2's FOLD, POP4's folder commands) find it by type
// assertion on the pop3server.Mailbox a login returned.
func (m *mailbox) User() string { return m.user }

// Maildrop returns the store's maildrop under the mailbox, for the add-on
// interfaces of the store (store.Flagged) that POP4 uses.
func (m *mailbox) Maildrop() store.Maildrop { return m.md }
