package fetch

import (
	"cmp"
	"crypto/sha256"
	"crypto/tls"
	"encoding/hex"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/postoffice-mail/postoffice/internal/tomlconf"
)

// Config is a fetch configuration file: a list of accounts.
type Config struct {
	Accounts []*Account `toml:"account"`
}

// Account is one [[account]] table. The zero value of each optional key is
// its documented default (see docs/fetch.md).
type Account struct {
	Name            string `toml:"name"`
	Server          string `toml:"server"`            // host:port
	TLS             string `toml:"tls"`               // "implicit" (default), "starttls", "none"
	CAFile          string `toml:"ca_file"`           // PEM roots instead of the system's
	Fingerprint     string `toml:"fingerprint"`       // SHA-256 of the leaf certificate, hex
	User            string `toml:"user"`              // login name
	Password        string `toml:"password"`          // or PasswordCommand
	PasswordCommand string `toml:"password_command"`  // sh -c, first line of stdout
	Auth            string `toml:"auth"`              // mechanism name or "auto" (default)
	Keep            *bool  `toml:"keep"`              // leave messages on the server; default true
	DeleteAfterDays int    `toml:"delete_after_days"` // with keep: delete N days after first retrieval
	MaxSize         int64  `toml:"max_size"`          // octets; 0: no limit
	Oversize        string `toml:"oversize"`          // "skip" (default) or "truncate"
	HeadersOnly     bool   `toml:"headers_only"`      // fetch headers only (TOP n 0)
	Target          string `toml:"target"`            // maildir:PATH, mbox:PATH, mda:COMMAND, lmtp:ADDR, smtp:HOST:PORT
	Recipient       string `toml:"recipient"`         // RCPT TO of lmtp: and smtp: targets
	SMTPTLS         string `toml:"smtp_tls"`          // smtp: target: "none" (default) or "starttls" (required)
	SMTPCAFile      string `toml:"smtp_ca_file"`      // smtp: target: PEM roots instead of the system's
	SMTPUser        string `toml:"smtp_user"`         // smtp: target: AUTH name (needs smtp_tls = "starttls")
	SMTPPassword    string `toml:"smtp_password"`     // smtp: target: AUTH password
	CertFile        string `toml:"cert_file"`         // TLS client certificate (PEM), for auth = "external"
	KeyFile         string `toml:"key_file"`          // its private key (PEM)
	Krb5CCache      string `toml:"krb5_ccache"`       // auth = "gssapi": credential cache; default $KRB5CCNAME
	Krb5Keytab      string `toml:"krb5_keytab"`       // auth = "gssapi": keytab of krb5_principal, instead of a cache
	Krb5Principal   string `toml:"krb5_principal"`    // auth = "gssapi": "name@REALM" to log in as with krb5_keytab
	Krb5Config      string `toml:"krb5_config"`       // auth = "gssapi": krb5.conf; default $KRB5_CONFIG or /etc/krb5.conf
	StateDir        string `toml:"state_dir"`         // directory of the UIDL state
	PollInterval    string `toml:"poll_interval"`     // daemon mode; default 5m

	// Derived by Validate.
	fingerprint []byte
	poll        time.Duration
	line        int // line of the [[account]] header
}

// KeepOnServer reports the keep key, default true.
func (a *Account) KeepOnServer() bool { return a.Keep == nil || *a.Keep }

// Poll returns the daemon poll interval.
func (a *Account) Poll() time.Duration { return a.poll }

// authNames are the accepted values of the auth key.
var authNames = []string{"auto", "user", "apop", "plain", "login", "cram-md5",
	"scram-sha-1", "scram-sha-256", "scram-sha-1-plus", "scram-sha-256-plus",
	"xoauth2", "oauthbearer", "external", "gssapi"}

// MinMigrationState is the number of state entries above which a server
// whose UIDLs share none with the state is taken to have changed its UIDLs.
const MinMigrationState = 10

// LoadConfig reads and validates a configuration file. A validation error
// is a *ConfigError listing every problem with its account, key and line.
func LoadConfig(path string) (*Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, &Error{Code: ExitConfig, Err: fmt.Errorf("fetch: %w", err)}
	}
	return ParseConfig(path, data)
}

// ParseConfig parses and validates data read from path (used in messages).
// Every problem is reported with its place: the line of the key, else of
// its [[account]] header.
func ParseConfig(path string, data []byte) (*Config, error) {
	var c Config
	f, err := tomlconf.Decode(path, data, &c)
	if err != nil {
		return nil, &Error{Code: ExitConfig, Err: &ConfigError{Problems: []string{err.Error()}}}
	}
	if len(c.Accounts) == 0 {
		f.Add(path + ": no [[account]] tables")
	}
	seen := map[string]bool{}
	for i, a := range c.Accounts {
		table := "account." + strconv.Itoa(i)
		a.line = f.Line(table)
		name := cmp.Or(a.Name, "#"+strconv.Itoa(i+1))
		a.validate(func(key, msg string) {
			f.Add(fmt.Sprintf("%s: account %s: %s: %s", f.Pos(table+"."+key), name, key, msg))
		}, seen)
	}
	if p := f.Problems(); len(p) > 0 {
		return nil, &Error{Code: ExitConfig, Err: &ConfigError{Problems: p}}
	}
	return &c, nil
}

// validate reports every problem of the account through bad, after
// setting the defaults and the derived values (setDefaults). seen holds the
// names of the accounts before it, which must differ from its own.
func (a *Account) validate(bad func(key, msg string), seen map[string]bool) {
	switch {
	case a.Name == "":
		bad("name", "required")
	case strings.ContainsAny(a.Name, "/\\\x00") || a.Name[0] == '.':
		bad("name", "must not contain '/' or start with '.'")
	case seen[a.Name]:
		bad("name", "duplicate account name")
	}
	seen[a.Name] = true
	a.setDefaults()
	for _, check := range accountChecks {
		if key, msg := check(a); msg != "" {
			bad(key, msg)
		}
	}
}

// setDefaults fills in the keys left out whose default the checks rely on
// (tls, auth, oversize; auth is lower-cased), and the values derived from
// the keys: the fingerprint's octets and the poll interval. A key with a
// bad value derives nothing; its check reports it.
func (a *Account) setDefaults() {
	a.TLS = cmp.Or(a.TLS, "implicit")
	a.Auth = cmp.Or(strings.ToLower(a.Auth), "auto")
	a.Oversize = cmp.Or(a.Oversize, "skip")
	if fp, ok := parseFingerprint(a.Fingerprint); ok {
		a.fingerprint = fp
	}
	a.poll = 5 * time.Minute
	if d, ok := parsePoll(a.PollInterval); ok {
		a.poll = d
	}
}

// parseFingerprint decodes a certificate's SHA-256 written in hex, with
// or without colons.
func parseFingerprint(s string) ([]byte, bool) {
	fp, err := hex.DecodeString(strings.ReplaceAll(s, ":", ""))
	return fp, err == nil && len(fp) == sha256.Size
}

// parsePoll parses poll_interval: a duration of at least a second.
func parsePoll(s string) (time.Duration, bool) {
	d, err := time.ParseDuration(s)
	return d, err == nil && d >= time.Second
}

// accountChecks are the checks of an [[account]] table after setDefaults,
// in the order their problems are reported. Each looks at one concern and
// reports at most one problem, the first of its cases that applies, as the
// key to report it on and the message; msg is "" when nothing is wrong.
var accountChecks = []func(a *Account) (key, msg string){
	func(a *Account) (string, string) {
		if a.Server == "" {
			return "server", "required"
		}
		if _, port, err := net.SplitHostPort(a.Server); err != nil || port == "" {
			return "server", "want host:port"
		}
		return "", ""
	},
	func(a *Account) (string, string) {
		return "tls", oneOf(a.TLS, `want "implicit", "starttls" or "none"`, "implicit", "starttls", "none")
	},
	func(a *Account) (string, string) {
		return "ca_file", statProblem(a.CAFile)
	},
	func(a *Account) (string, string) {
		if _, ok := parseFingerprint(a.Fingerprint); a.Fingerprint != "" && !ok {
			return "fingerprint", "want the SHA-256 of the certificate in hex (64 digits, colons allowed)"
		}
		return "", ""
	},
	func(a *Account) (string, string) {
		if (a.CAFile != "" || a.Fingerprint != "") && a.TLS == "none" {
			return "tls", `"none" with ca_file or fingerprint`
		}
		return "", ""
	},
	func(a *Account) (string, string) {
		if a.Auth == "gssapi" {
			// The principal is the identity; user, if set, is sent as
			// the authorization identity (as fetchmail does).
			return "", ""
		}
		return "user", required(a.User)
	},
	func(a *Account) (string, string) {
		switch {
		case a.Password != "" && a.PasswordCommand != "":
			return "password", "set either password or password_command, not both"
		case a.Password == "" && a.PasswordCommand == "" && a.Auth != "external" && a.Auth != "gssapi":
			return "password", "required (or password_command)"
		case (a.Password != "" || a.PasswordCommand != "") && a.Auth == "gssapi":
			return "password", `not used with auth = "gssapi" (the Kerberos ticket is the credential)`
		}
		return "", ""
	},
	func(a *Account) (string, string) {
		switch {
		case a.Auth != "gssapi" && a.Krb5CCache+a.Krb5Keytab+a.Krb5Principal+a.Krb5Config != "":
			return "krb5_ccache", `krb5_ccache, krb5_keytab, krb5_principal and krb5_config are for auth = "gssapi"`
		case (a.Krb5Keytab == "") != (a.Krb5Principal == ""):
			return "krb5_keytab", "krb5_keytab and krb5_principal go together"
		case a.Krb5Keytab != "" && a.Krb5CCache != "":
			return "krb5_ccache", "set either krb5_ccache or krb5_keytab, not both"
		}
		return "", ""
	},
	func(a *Account) (string, string) {
		switch {
		case (a.CertFile == "") != (a.KeyFile == ""):
			return "cert_file", "cert_file and key_file go together"
		case a.CertFile != "" && a.TLS == "none":
			return "cert_file", `a client certificate needs tls = "implicit" or "starttls"`
		case a.CertFile != "":
			if _, err := tls.LoadX509KeyPair(a.CertFile, a.KeyFile); err != nil {
				return "cert_file", err.Error()
			}
		}
		return "", ""
	},
	func(a *Account) (string, string) {
		if a.Auth == "external" && a.CertFile == "" {
			return "auth", `"external" needs cert_file and key_file (the TLS client certificate)`
		}
		return "", ""
	},
	func(a *Account) (string, string) {
		if strings.HasSuffix(a.Auth, "-plus") && a.TLS == "none" {
			return "auth", a.Auth + ` needs tls = "implicit" or "starttls" (channel binding)`
		}
		return "", ""
	},
	func(a *Account) (string, string) {
		return "auth", oneOf(a.Auth, "want one of "+strings.Join(authNames, ", "), authNames...)
	},
	func(a *Account) (string, string) {
		return "delete_after_days", notNegative(int64(a.DeleteAfterDays))
	},
	func(a *Account) (string, string) {
		if a.DeleteAfterDays > 0 && !a.KeepOnServer() {
			return "delete_after_days", "conflicts with keep = false (messages are deleted at once)"
		}
		return "", ""
	},
	// A message fetched with TOP n 0 is only its header: deleting it from
	// the server would lose the body. The truncated messages of oversize =
	// "truncate" are kept on the server instead (see Run); headers_only
	// would make keep = false and delete_after_days mean nothing, so they
	// are refused rather than ignored.
	func(a *Account) (string, string) {
		switch {
		case a.HeadersOnly && !a.KeepOnServer():
			return "headers_only", "conflicts with keep = false: only the header is fetched, so deleting the message from the server would lose its body; remove keep = false or headers_only"
		case a.HeadersOnly && a.DeleteAfterDays > 0:
			return "headers_only", "conflicts with delete_after_days: only the header is fetched, so deleting the message from the server would lose its body; remove delete_after_days or headers_only"
		}
		return "", ""
	},
	func(a *Account) (string, string) {
		return "max_size", notNegative(a.MaxSize)
	},
	func(a *Account) (string, string) {
		return "oversize", oneOf(a.Oversize, `want "skip" or "truncate"`, "skip", "truncate")
	},
	func(a *Account) (string, string) {
		return "target", targetProblem(a.Target)
	},
	func(a *Account) (string, string) {
		forward := a.forwards()
		switch {
		case forward && a.Recipient == "":
			return "recipient", "required for lmtp: and smtp: targets (the RCPT TO address)"
		case !forward && a.Recipient != "":
			return "recipient", "only for lmtp: and smtp: targets"
		case a.Recipient != "" && (strings.ContainsAny(a.Recipient, "<> \t\r\n\x00") || !strings.Contains(a.Recipient, "@")):
			return "recipient", "want a bare address such as me@example.org"
		}
		return "", ""
	},
	func(a *Account) (string, string) {
		switch {
		case !strings.HasPrefix(a.Target, "smtp:") && (a.SMTPTLS != "" || a.SMTPCAFile != "" || a.SMTPUser != "" || a.SMTPPassword != ""):
			return "smtp_tls", "smtp_tls, smtp_ca_file, smtp_user and smtp_password are for smtp: targets only"
		case a.SMTPTLS != "" && a.SMTPTLS != "none" && a.SMTPTLS != "starttls":
			return "smtp_tls", `want "none" or "starttls"`
		case a.SMTPCAFile != "" && a.SMTPTLS != "starttls":
			return "smtp_ca_file", `needs smtp_tls = "starttls"`
		case (a.SMTPUser == "") != (a.SMTPPassword == ""):
			return "smtp_user", "smtp_user and smtp_password go together"
		case a.SMTPUser != "" && a.SMTPTLS != "starttls":
			return "smtp_user", `needs smtp_tls = "starttls": the password would cross the network in the clear`
		}
		return "", ""
	},
	func(a *Account) (string, string) {
		switch {
		case a.StateDir == "":
			return "state_dir", "required"
		case !filepath.IsAbs(a.StateDir):
			return "state_dir", "must be absolute"
		}
		return "", ""
	},
	func(a *Account) (string, string) {
		if _, ok := parsePoll(a.PollInterval); a.PollInterval != "" && !ok {
			return "poll_interval", `want a duration of at least 1s, such as "5m"`
		}
		return "", ""
	},
}

// required is the problem of a required key left empty.
func required(v string) string {
	if v == "" {
		return "required"
	}
	return ""
}

// notNegative is the problem of a count or size below zero.
func notNegative(n int64) string {
	if n < 0 {
		return "must not be negative"
	}
	return ""
}

// oneOf returns msg unless v is one of the values.
func oneOf(v, msg string, values ...string) string {
	if slices.Contains(values, v) {
		return ""
	}
	return msg
}

// statProblem is the problem of a file key naming a file that cannot be
// found; "" when the key is empty.
func statProblem(path string) string {
	if path == "" {
		return ""
	}
	if _, err := os.Stat(path); err != nil {
		return err.Error()
	}
	return ""
}

// forwards reports whether the target is an lmtp: or smtp: one.
func (a *Account) forwards() bool {
	kind, arg, ok := strings.Cut(a.Target, ":")
	return ok && arg != "" && (kind == "lmtp" || kind == "smtp")
}

// targetProblem checks the target key: a kind and its argument.
func targetProblem(target string) string {
	if target == "" {
		return "required"
	}
	kind, arg, ok := strings.Cut(target, ":")
	if !ok || arg == "" {
		return `want "maildir:PATH", "mbox:PATH", "mda:COMMAND", "lmtp:HOST:PORT", "lmtp:unix:PATH" or "smtp:HOST:PORT"`
	}
	switch kind {
	case "maildir", "mbox":
		if !filepath.IsAbs(arg) {
			return kind + " path must be absolute"
		}
	case "mda":
	case "lmtp", "smtp":
		if path, ok := strings.CutPrefix(arg, "unix:"); ok && kind == "lmtp" {
			if !filepath.IsAbs(path) {
				return "lmtp:unix: socket path must be absolute"
			}
		} else if _, port, err := net.SplitHostPort(arg); err != nil || port == "" {
			return kind + ": want HOST:PORT"
		}
	default:
		return fmt.Sprintf("unknown target type %q", kind)
	}
	return ""
}

// ConfigError lists every problem found in a configuration file.
type ConfigError struct{ Problems []string }

func (e *ConfigError) Error() string {
	return "fetch: config: " + strings.Join(e.Problems, "\n  ")
}
