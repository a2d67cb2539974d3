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
	"github.com/postoffice-mail/postoffice/internal/store/mbox"
	"github.com/postoffice-mail/postoffice/internal/uidlfmt"
)

// maildirOptions builds the Maildir store's options for serve and deliver:
// the location, the UIDL format, and from the user database each user's
// home directory (for ~ and %h in the location) and uid and gid (the
// passwd-file's fields). Run as root, the store works in a maildrop as
// that uid and gid, or as the owner of the Maildir when the database has
// none, as Dovecot's mail processes run as the user.
func maildirOptions(cfg *config.Config, users auth.DB, log *slog.Logger) maildir.Options {
	home, owner := userLookups(users)
	return maildir.Options{
		Location:         cfg.Mail.MaildirPath(),
		Logger:           log,
		VerifySizeFields: cfg.Mail.VerifySizeFields,
		UIDLFormat:       uidlFormat(cfg),
		Home:             home,
		Owner:            owner,
	}
}

// mboxOptions builds the mbox store's options, with the same home and
// owner lookups as maildirOptions: with a spool such as /var/mail (root's)
// the owner from the database is who new mbox files belong to.
func mboxOptions(cfg *config.Config, users auth.DB, log *slog.Logger) mbox.Options {
	home, owner := userLookups(users)
	o := mbox.Options{Location: cfg.Mail.Location, Logger: log, Home: home, Owner: owner}
	if cfg.Mail.UIDLFormat == "popa3d" {
		o.Popa3dUIDLs = true
	} else {
		o.UIDLFormat = uidlFormat(cfg)
	}
	return o
}

// uidlFormat returns the parsed [mail] uidl_format, nil when unset (or
// "popa3d", which is not a template). config.Validate has parsed it.
func uidlFormat(cfg *config.Config) *uidlfmt.Format {
	f := cfg.Mail.UIDLFormat
	if f == "" || f == "popa3d" {
		return nil
	}
	p, err := uidlfmt.Parse(f)
	if err != nil {
		return nil // unreachable after Validate
	}
	return p
}

// userLookups returns the store's Home and Owner functions over users.
func userLookups(users auth.DB) (home func(string) (string, error), owner func(string) (int, int, error)) {
	lookup := func(name string) (auth.User, error) { return users.Lookup(context.Background(), name) }
	home = func(name string) (string, error) {
		u, err := lookup(name)
		if err != nil {
			return "", err
		}
		if u.Home == "" {
			return "", errors.New("the user database gives no home directory")
		}
		return u.Home, nil
	}
	owner = func(name string) (int, int, error) {
		u, err := lookup(name)
		if errors.Is(err, auth.ErrUnknownUser) {
			return -1, -1, nil // the maildrop's owner decides
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
	}
	return home, owner
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
