package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"

	"github.com/postoffice-mail/postoffice/internal/auth"
	"github.com/postoffice-mail/postoffice/internal/config"
	"github.com/postoffice-mail/postoffice/internal/store/maildir"
)

// maildirOptions builds the Maildir store's options for serve and deliver:
// the location, and from the user database each user's home directory (for
// ~ and %h in the location) and uid and gid (the passwd-file's fields).
// Run as root, the store works in a maildrop as that uid and gid, or as
// the owner of the Maildir when the database has none, as Dovecot's mail
// processes run as the user.
func maildirOptions(cfg *config.Config, users auth.DB, log *slog.Logger) maildir.Options {
	lookup := func(name string) (auth.User, error) { return users.Lookup(context.Background(), name) }
	return maildir.Options{
		Location:         cfg.Mail.MaildirPath(),
		Logger:           log,
		VerifySizeFields: cfg.Mail.VerifySizeFields,
		Home: func(name string) (string, error) {
			u, err := lookup(name)
			if err != nil {
				return "", err
			}
			if u.Home == "" {
				return "", errors.New("the user database gives no home directory")
			}
			return u.Home, nil
		},
		Owner: func(name string) (int, int, error) {
			u, err := lookup(name)
			if errors.Is(err, auth.ErrUnknownUser) {
				return -1, -1, nil // the Maildir's owner decides
			}
			if err != nil {
				return -1, -1, err
			}
			uid, err := idField(u.Extra, "uid")
			if err != nil {
				return -1, -1, err
			}
			gid, err := idField(u.Extra, "gid")
			return uid, gid, err
		},
	}
}

// idField returns the numeric id in extra[key], -1 when it is absent.
func idField(extra map[string]string, key string) (int, error) {
	s, ok := extra[key]
	if !ok || s == "" {
		return -1, nil
	}
	n, err := strconv.Atoi(s)
	if err != nil || n < 0 {
		return -1, fmt.Errorf("%s %q is not a number", key, s)
	}
	return n, nil
}
