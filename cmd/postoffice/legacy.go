package main

import (
	"fmt"
	"slices"

	"github.com/postoffice-mail/postoffice/internal/backend"
	"github.com/postoffice-mail/postoffice/internal/config"
	"github.com/postoffice-mail/postoffice/internal/legacy/rpop"
	"github.com/postoffice-mail/postoffice/internal/legacy/sdps"
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
// pop3.client_workarounds.
func legacyEngine(cfg *config.Config, o *pop3server.Options) {
	o.EnableLAST = cfg.POP3.EnableLAST
	w := cfg.POP3.ClientWorkarounds
	o.Workarounds = pop3server.Workarounds{
		OutlookNoNULs: slices.Contains(w, "outlook-no-nuls"),
		OENSEOH:       slices.Contains(w, "oe-ns-eoh"),
		BareAUTH:      slices.Contains(w, "bare-auth"),
	}
}

// sdpsDrop is LMTP's Drop for the [sdps] domains, nil when there are none.
func sdpsDrop(cfg *config.Config) (func(string) (string, bool), error) {
	d, err := sdpsDomains(cfg)
	if d == nil || err != nil {
		return nil, err
	}
	return d.Drop, nil
}
