package main

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net"
	"os"
	"slices"
	"strings"

	"github.com/postoffice-mail/postoffice/internal/backend"
	"github.com/postoffice-mail/postoffice/internal/config"
	"github.com/postoffice-mail/postoffice/internal/legacy/rpop"
	"github.com/postoffice-mail/postoffice/internal/legacy/sdps"
	"github.com/postoffice-mail/postoffice/internal/submit"
	"github.com/postoffice-mail/postoffice/pop3server"
)

// The older POP3 family members on the POP3 listeners ([sdps], [rpop],
// pop3.enable_last, pop3.client_workarounds): what buildPOP3 and
// buildLMTP add to their options. Each stays nil or off when its keys
// are unset, so nothing of it is reachable then.

// sdpsDomains returns the [sdps] domains, nil when there are none.
func sdpsDomains(cfg *config.Config) (*sdps.Domains, error) {
	if len(cfg.SDPS.Domains) == 0 {
		return nil, nil
	}
	d, err := sdps.NewDomains(cfg.SDPS.Domains)
	if err != nil {
		return nil, fmt.Errorf("sdps.domains: %w", err)
	}
	return d, nil
}

// legacyBackend sets the backend options of [sdps] and [rpop].
func legacyBackend(cfg *config.Config, o *backend.Options) error {
	d, err := sdpsDomains(cfg)
	if err != nil {
		return err
	}
	if d != nil {
		o.MultiDrop = d
	}
	if cfg.RPOP.Enabled {
		p, err := rpop.New(rpop.Options{TrustedNetworks: cfg.RPOP.Trusted(), MapFile: cfg.RPOP.Map})
		if err != nil {
			return fmt.Errorf("rpop.map: %w", err)
		}
		o.RPOP = p
	}
	return nil
}

// legacyEngine sets the engine options of pop3.enable_last and
// pop3.client_workarounds, with [xtnd] for "xtnd-xmit".
func legacyEngine(cfg *config.Config, o *pop3server.Options) error {
	o.EnableLAST = cfg.POP3.EnableLAST
	w := cfg.POP3.ClientWorkarounds
	o.Workarounds = pop3server.Workarounds{
		OutlookNoNULs: slices.Contains(w, "outlook-no-nuls"),
		OENSEOH:       slices.Contains(w, "oe-ns-eoh"),
		BareAUTH:      slices.Contains(w, "bare-auth"),
	}
	if !slices.Contains(w, "xtnd-xmit") {
		return nil
	}
	relay, err := xtndRelay(cfg.XTND)
	if err != nil {
		return err
	}
	o.Workarounds.XTNDXMIT = &pop3server.XMIT{
		Submitter:      relay,
		MaxMessageSize: cfg.XTND.MaxMessageSize,
		MaxRecipients:  cfg.XTND.MaxRecipients,
	}
	return nil
}

// xtndRelay makes the SMTP relay of XTND XMIT from [xtnd] (validated by
// the config): the CA file and the password file are read now, so a
// missing file stops the start, not a user's message.
func xtndRelay(x config.XTND) (*submit.Relay, error) {
	o := submit.Options{Addr: x.Relay, Username: x.User, SenderDomain: x.SenderDomain}
	if h, err := os.Hostname(); err == nil {
		o.LocalName = h
	}
	if x.StartTLS {
		host, _, _ := net.SplitHostPort(x.Relay)
		tc := &tls.Config{ServerName: host, MinVersion: tls.VersionTLS12}
		if x.CAFile != "" {
			pem, err := os.ReadFile(x.CAFile)
			if err != nil {
				return nil, fmt.Errorf("xtnd.ca_file: %w", err)
			}
			tc.RootCAs = x509.NewCertPool()
			if !tc.RootCAs.AppendCertsFromPEM(pem) {
				return nil, fmt.Errorf("xtnd.ca_file: no PEM certificates in %s", x.CAFile)
			}
		}
		o.StartTLS = tc
	}
	if x.PasswordFile != "" {
		b, err := os.ReadFile(x.PasswordFile)
		if err != nil {
			return nil, fmt.Errorf("xtnd.password_file: %w", err)
		}
		pw, _, _ := strings.Cut(string(b), "\n")
		o.Password = strings.TrimSuffix(pw, "\r")
		if o.Password == "" {
			return nil, fmt.Errorf("xtnd.password_file: %s has no password on its first line", x.PasswordFile)
		}
	}
	return submit.New(o)
}

// sdpsDrop is LMTP's Drop for the [sdps] domains, nil when there are none.
func sdpsDrop(cfg *config.Config) (func(string) (string, bool), error) {
	d, err := sdpsDomains(cfg)
	if d == nil || err != nil {
		return nil, err
	}
	return d.Drop, nil
}
