package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"time"

	"github.com/postoffice-mail/postoffice/internal/certutil"

	"github.com/postoffice-mail/postoffice/internal/auth/passwdfile"
	"github.com/postoffice-mail/postoffice/internal/auth/scheme"
	"github.com/postoffice-mail/postoffice/internal/config"
)

const devUser = "demo"

// setupDev prepares a data directory for a local trial: a passwd-file with
// the demo user and a fresh random password, a Maildir with sample mail (on
// first run), and a self-signed certificate for POP3S. It returns the
// configuration to serve it on loopback, and the lines telling the user how
// to try it; print them only once the listeners are up (serve's ready), so
// a script that runs the printed curl line at once finds the server.
func setupDev(dir string) (*config.Config, string, error) {
	dir, err := filepath.Abs(dir)
	if err != nil {
		return nil, "", err
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, "", fmt.Errorf("dev: %w", err)
	}
	cfg := config.Default()
	cfg.POP3.Listen = []string{"127.0.0.1:1110"}
	cfg.POP3.ListenTLS = []string{"127.0.0.1:1995"}
	cfg.Auth.PasswdFile = filepath.Join(dir, "passwd")
	cfg.Mail.Location = "maildir:" + filepath.Join(dir, "mail", "%u", "Maildir")
	cfg.TLS.Cert = filepath.Join(dir, "tls", "cert.pem")
	cfg.TLS.Key = filepath.Join(dir, "tls", "key.pem")

	password := rand.Text()[:16]
	// SCRAM keys serve SCRAM and, checked like any hash, PLAIN and USER.
	cfg.Auth.Mechanisms = []string{"SCRAM-SHA-256-PLUS", "SCRAM-SHA-256", "PLAIN", "LOGIN"}
	hash, err := scheme.Hash("SCRAM-SHA-256", password)
	if err != nil {
		return nil, "", err
	}
	if err := passwdfile.SetPassword(cfg.Auth.PasswdFile, devUser, hash); err != nil {
		if err := passwdfile.AddUser(cfg.Auth.PasswdFile, devUser, hash); err != nil {
			return nil, "", fmt.Errorf("dev: %w", err)
		}
	}
	if err := seedDevMail(&cfg, dir); err != nil {
		return nil, "", fmt.Errorf("dev: seeding sample mail: %w", err)
	}
	if err := ensureSelfSigned(cfg.TLS.Cert, cfg.TLS.Key); err != nil {
		return nil, "", fmt.Errorf("dev: certificate: %w", err)
	}
	banner := fmt.Sprintf(`postoffice dev server (data in %s)
  user %s, password %s
  POP3 127.0.0.1:1110, POP3S 127.0.0.1:1995 (self-signed certificate)

Try it:
  curl pop3://%s:%s@127.0.0.1:1110/1
  curl --cacert %s pop3s://%s:%s@127.0.0.1:1995/
`, dir, devUser, password, devUser, password, cfg.TLS.Cert, devUser, password)
	return &cfg, banner, nil
}

// seedDevMail delivers the sample messages into the demo user's maildrop,
// through the store serve will serve.
func seedDevMail(cfg *config.Config, dir string) error {
	if _, err := os.Stat(filepath.Join(dir, "mail", devUser)); err == nil {
		return nil // seeded before; leave the user's mail alone
	}
	a := newApp(cfg, io.Discard)
	defer a.close()
	if errs := a.build(partStore); errs != nil {
		return errs[0]
	}
	st := a.store
	now := time.Now().UTC()
	samples := []struct{ subject, body string }{
		{"Welcome to postoffice", "This is a sample message in your development maildrop.\n\nDelete it with DELE 1 and QUIT.\n"},
		{"A message with dots", "Lines that start with a dot are byte-stuffed on the wire:\n.like this one\n..and this one\n"},
		{"Line endings", "This one was stored with bare LF line endings; POP3 sends CRLF,\nand LIST counts the octets exactly as RETR sends them.\n"},
	}
	for i, s := range samples {
		var b bytes.Buffer
		fmt.Fprintf(&b, "Date: %s\nFrom: postoffice <postmaster@localhost>\nTo: %s@localhost\nSubject: %s\nMessage-ID: <sample-%d.%d@localhost>\n\n%s",
			now.Add(time.Duration(i)*time.Second).Format(time.RFC1123Z), devUser, s.subject, now.Unix(), i, s.body)
		if err := st.Deliver(context.Background(), devUser, &b); err != nil {
			return err
		}
	}
	return nil
}

func ensureSelfSigned(certPath, keyPath string) error {
	if _, err := os.Stat(certPath); err == nil {
		return nil
	} else if !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(certPath), 0o700); err != nil {
		return err
	}
	p, err := certutil.SelfSigned(365 * 24 * time.Hour)
	if err != nil {
		return err
	}
	return p.WriteFiles(certPath, keyPath)
}
