package config

import (
	"strings"
	"time"

	"github.com/postoffice-mail/postoffice/internal/ledger"
)

// Devices is the [devices] table: per-device views of one maildrop. A
// device is named at login ("alice@example.org#phone" with the user's
// password) or by a device password (postoffice user device add); each
// device sees every message until it deletes it, and a message leaves
// the store when every active device has deleted it.
type Devices struct {
	Enabled bool `toml:"enabled"` // default false: one view per maildrop, DELE removes at QUIT
	// IdleAfter is how long a device may go unused before it stops
	// holding messages back ("30d", "2w", "36h"); default "30d".
	IdleAfter string `toml:"idle_after"`
}

// Expire is the [expire] table: the expiry policy, advertised as CAPA
// EXPIRE (RFC 2449 §6.7) and enforced by a sweeper that skips maildrops
// held by a session. A user's passwd-file extra fields
// expire_after_retrieval and expire_after_arrival override it, and
// [expire.domains."example.org"] overrides it for a domain.
type Expire struct {
	// AfterRetrieval removes a message this long after its first complete
	// RETR ("30d", "0d" for at the next sweep, "never"); empty: never.
	AfterRetrieval string `toml:"after_retrieval"`
	// AfterArrival removes a message this long after it arrived, retrieved
	// or not ("365d", "never"); empty: never.
	AfterArrival string `toml:"after_arrival"`
	// SweepInterval is how often serve sweeps every maildrop; default 1h.
	SweepInterval Duration `toml:"sweep_interval"`
	// Domains override after_retrieval and after_arrival per domain.
	Domains map[string]ExpireDomain `toml:"domains"`
}

// ExpireDomain is one [expire.domains."example.org"] table.
type ExpireDomain struct {
	AfterRetrieval string `toml:"after_retrieval"` // as expire.after_retrieval; empty: the global value
	AfterArrival   string `toml:"after_arrival"`   // as expire.after_arrival; empty: the global value
}

// History is the [history] table: the per-maildrop journal of
// retrievals and deletions, and re-download storm detection.
type History struct {
	MaxEntries int `toml:"max_entries"` // entries kept per maildrop; default 10000; -1 keeps none
	// Retention drops entries older than this ("90d"); default "90d".
	Retention string `toml:"retention"`
	// StormThreshold is how many messages one session must retrieve again
	// to be logged as a re-download storm; default 20.
	StormThreshold int `toml:"storm_threshold"`
}

// Extra fields of a user (passwd-file) that override the expiry policy.
const (
	ExtraExpireRetrieval = "expire_after_retrieval"
	ExtraExpireArrival   = "expire_after_arrival"
)

// Configured reports whether [expire] sets a policy anywhere.
func (e Expire) Configured() bool {
	return e.AfterRetrieval != "" || e.AfterArrival != "" || len(e.Domains) > 0
}

// Policy returns the expiry policy of user (with its extra fields):
// the user's fields win over the domain's table, which wins over the
// global keys. Values were checked by Validate (and the passwd-file
// loader); one that does not parse counts as unset.
func (c *Config) Policy(user string, extra map[string]string) ledger.Policy {
	var p ledger.Policy
	set := func(s string, d *time.Duration, has *bool) {
		if s == "" {
			return
		}
		v, ok, err := ledger.ParseAge(s)
		if err != nil {
			return
		}
		*d, *has = v, ok
	}
	e := c.Expire
	set(e.AfterRetrieval, &p.Retrieval, &p.HasRetrieval)
	set(e.AfterArrival, &p.Arrival, &p.HasArrival)
	if i := strings.LastIndexByte(user, '@'); i >= 0 {
		if d, ok := e.Domains[strings.ToLower(user[i+1:])]; ok {
			set(d.AfterRetrieval, &p.Retrieval, &p.HasRetrieval)
			set(d.AfterArrival, &p.Arrival, &p.HasArrival)
		}
	}
	set(extra[ExtraExpireRetrieval], &p.Retrieval, &p.HasRetrieval)
	set(extra[ExtraExpireArrival], &p.Arrival, &p.HasArrival)
	return p
}

// ExpireCapa is CAPA EXPIRE before login: the global policy, with USER
// since domains and users may override it (RFC 2449 §6.7); "" when no
// [expire] is configured ([pop3] expire then stands).
func (c *Config) ExpireCapa() string {
	if !c.Expire.Configured() {
		return c.POP3.Expire
	}
	return c.Policy("", nil).Capa() + " USER"
}

// LedgerOptions are the ledger's options from [devices] and [history].
func (c *Config) LedgerOptions() ledger.Options {
	o := ledger.Options{Devices: c.Devices.Enabled, HistoryMax: c.History.MaxEntries, StormThreshold: c.History.StormThreshold}
	if d, ok, err := ledger.ParseAge(c.Devices.IdleAfter); err == nil && ok {
		o.DeviceIdle = d
	}
	if d, ok, err := ledger.ParseAge(c.History.Retention); err == nil && ok {
		o.HistoryRetention = d
	}
	return o
}

func (c *Config) validateLedger() {
	bad := c.file.Bad
	age := func(key, v string) {
		if v == "" {
			return
		}
		if _, _, err := ledger.ParseAge(v); err != nil {
			bad(key, "%v", err)
		}
	}
	age("devices.idle_after", c.Devices.IdleAfter)
	age("expire.after_retrieval", c.Expire.AfterRetrieval)
	age("expire.after_arrival", c.Expire.AfterArrival)
	for d, e := range c.Expire.Domains {
		age("expire.domains."+d+".after_retrieval", e.AfterRetrieval)
		age("expire.domains."+d+".after_arrival", e.AfterArrival)
	}
	age("history.retention", c.History.Retention)
	if c.History.MaxEntries < -1 {
		bad("history.max_entries", "must be -1 (no journal), 0 (the default) or a positive count")
	}
	if c.History.StormThreshold < 0 {
		bad("history.storm_threshold", "must not be negative")
	}
	if c.Expire.SweepInterval.Duration < 0 {
		bad("expire.sweep_interval", "must not be negative")
	}
	if c.Expire.Configured() && c.POP3.Expire != "" {
		bad("pop3.expire", "is derived from [expire] when that is set: remove pop3.expire")
	}
}
