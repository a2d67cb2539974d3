package main

import (
	"errors"

	"github.com/postoffice-mail/postoffice/internal/legacy/pop2"
	"github.com/postoffice-mail/postoffice/internal/legacy/pop4"
	"github.com/postoffice-mail/postoffice/internal/store"
	"github.com/postoffice-mail/postoffice/pop3server"
)

// addPOP4 puts the POP4 commands and greeting on the POP3 engine's
// options when [pop4] enabled is set. They need a store with folders (the
// Maildir store).
func (a *app) addPOP4(opts *pop3server.Options) error {
	if !a.cfg.POP4.Enabled {
		return nil
	}
	f, ok := a.store.(store.Folders)
	if !ok {
		return errors.New("pop4.enabled: needs a store with folders (mail.location maildir:...)")
	}
	x, err := pop4.New(pop4.Options{Folders: f, Logger: a.log})
	if err != nil {
		return err
	}
	opts.Extension = x
	opts.Greeting = pop4.Greeting
	return nil
}

// buildPOP2 makes the POP2/POP1 server of [pop2] listen, over the POP3
// backend (logins, restrictions, locks) and the store's folders.
func (a *app) buildPOP2() error {
	if len(a.cfg.POP2.Listen) == 0 {
		return nil
	}
	f, _ := a.store.(store.Folders) // nil: INBOX only
	srv, err := pop2.New(pop2.Options{
		Backend:            a.backend,
		Folders:            f,
		Logger:             a.log,
		Hostname:           a.pop3Opts.Hostname,
		AllowPlaintextAuth: a.cfg.Auth.AllowPlaintext,
		IdleTimeout:        a.cfg.POP3.IdleTimeout.Duration,
		AuthFailDelay:      a.pop3Opts.AuthFailDelay,
		MaxBadCommands:     a.cfg.POP3.MaxBadCommands,
	})
	if err != nil {
		return err
	}
	a.pop2 = srv
	return nil
}
