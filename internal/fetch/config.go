package fetch

import (
	"crypto/tls"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/BurntSushi/toml"
	"github.com/postoffice-mail/postoffice/internal/tomlpos"
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
	"xoauth2", "oauthbearer", "external"}

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
func ParseConfig(path string, data []byte) (*Config, error) {
	var c Config
	md, err := toml.Decode(string(data), &c)
	if err != nil {
		var pe toml.ParseError
		if errors.As(err, &pe) {
			err = fmt.Errorf("%s:%d: %s", path, pe.Position.Line, pe.Message)
		} else {
			err = fmt.Errorf("%s: %v", path, err)
		}
		return nil, &Error{Code: ExitConfig, Err: &ConfigError{Problems: []string{err.Error()}}}
	}
	lines := tomlpos.Lines(data)
	at := func(i int, name, key, msg string) string {
		loc := path
		if n, ok := lines[fmt.Sprintf("account.%d.%s", i, key)]; ok {
			loc = fmt.Sprintf("%s:%d", path, n)
		} else if n, ok := lines[fmt.Sprintf("account.%d", i)]; ok {
			loc = fmt.Sprintf("%s:%d", path, n)
		}
		if name == "" {
			name = fmt.Sprintf("#%d", i+1)
		}
		return fmt.Sprintf("%s: account %s: %s: %s", loc, name, key, msg)
	}
	var problems []string
	for _, k := range md.Undecoded() {
		problems = append(problems, fmt.Sprintf("%s: unknown key %s", path, k))
	}
	if len(c.Accounts) == 0 {
		problems = append(problems, fmt.Sprintf("%s: no [[account]] tables", path))
	}
	seen := map[string]bool{}
	for i, a := range c.Accounts {
		a.line = lines[fmt.Sprintf("account.%d", i)]
		bad := func(key, msg string) { problems = append(problems, at(i, a.Name, key, msg)) }
		a.validate(bad, seen)
	}
	if len(problems) > 0 {
		return nil, &Error{Code: ExitConfig, Err: &ConfigError{Problems: problems}}
	}
	return &c, nil
}

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
	if a.Server == "" {
		bad("server", "required")
	} else if _, port, err := net.SplitHostPort(a.Server); err != nil || port == "" {
		bad("server", "want host:port")
	}
	switch a.TLS {
	case "":
		a.TLS = "implicit"
	case "implicit", "starttls", "none":
	default:
		bad("tls", `want "implicit", "starttls" or "none"`)
	}
	if a.CAFile != "" {
		if _, err := os.Stat(a.CAFile); err != nil {
			bad("ca_file", err.Error())
		}
	}
	if a.Fingerprint != "" {
		fp, err := hex.DecodeString(strings.ReplaceAll(a.Fingerprint, ":", ""))
		if err != nil || len(fp) != 32 {
			bad("fingerprint", "want the SHA-256 of the certificate in hex (64 digits, colons allowed)")
		}
		a.fingerprint = fp
	}
	if (a.CAFile != "" || a.Fingerprint != "") && a.TLS == "none" {
		bad("tls", `"none" with ca_file or fingerprint`)
	}
	if a.User == "" {
		bad("user", "required")
	}
	a.Auth = strings.ToLower(a.Auth)
	if a.Auth == "" {
		a.Auth = "auto"
	}
	switch {
	case a.Password != "" && a.PasswordCommand != "":
		bad("password", "set either password or password_command, not both")
	case a.Password == "" && a.PasswordCommand == "" && a.Auth != "external":
		bad("password", "required (or password_command)")
	}
	switch {
	case (a.CertFile == "") != (a.KeyFile == ""):
		bad("cert_file", "cert_file and key_file go together")
	case a.CertFile != "" && a.TLS == "none":
		bad("cert_file", `a client certificate needs tls = "implicit" or "starttls"`)
	case a.CertFile != "":
		if _, err := tls.LoadX509KeyPair(a.CertFile, a.KeyFile); err != nil {
			bad("cert_file", err.Error())
		}
	}
	if a.Auth == "external" && a.CertFile == "" {
		bad("auth", `"external" needs cert_file and key_file (the TLS client certificate)`)
	}
	if strings.HasSuffix(a.Auth, "-plus") && a.TLS == "none" {
		bad("auth", a.Auth+` needs tls = "implicit" or "starttls" (channel binding)`)
	}
	ok := false
	for _, n := range authNames {
		ok = ok || n == a.Auth
	}
	if !ok {
		bad("auth", "want one of "+strings.Join(authNames, ", "))
	}
	if a.DeleteAfterDays < 0 {
		bad("delete_after_days", "must not be negative")
	}
	if a.DeleteAfterDays > 0 && !a.KeepOnServer() {
		bad("delete_after_days", "conflicts with keep = false (messages are deleted at once)")
	}
	// A message fetched with TOP n 0 is only its header: deleting it from
	// the server would lose the body. The truncated messages of oversize =
	// "truncate" are kept on the server instead (see Run); headers_only
	// would make keep = false and delete_after_days mean nothing, so they
	// are refused rather than ignored.
	switch {
	case a.HeadersOnly && !a.KeepOnServer():
		bad("headers_only", "conflicts with keep = false: only the header is fetched, so deleting the message from the server would lose its body; remove keep = false or headers_only")
	case a.HeadersOnly && a.DeleteAfterDays > 0:
		bad("headers_only", "conflicts with delete_after_days: only the header is fetched, so deleting the message from the server would lose its body; remove delete_after_days or headers_only")
	}
	if a.MaxSize < 0 {
		bad("max_size", "must not be negative")
	}
	switch a.Oversize {
	case "":
		a.Oversize = "skip"
	case "skip", "truncate":
	default:
		bad("oversize", `want "skip" or "truncate"`)
	}
	forward := false
	if a.Target == "" {
		bad("target", "required")
	} else if kind, arg, ok := strings.Cut(a.Target, ":"); !ok || arg == "" {
		bad("target", `want "maildir:PATH", "mbox:PATH", "mda:COMMAND", "lmtp:HOST:PORT", "lmtp:unix:PATH" or "smtp:HOST:PORT"`)
	} else {
		switch kind {
		case "maildir", "mbox":
			if !filepath.IsAbs(arg) {
				bad("target", kind+" path must be absolute")
			}
		case "mda":
		case "lmtp", "smtp":
			forward = true
			if path, ok := strings.CutPrefix(arg, "unix:"); ok && kind == "lmtp" {
				if !filepath.IsAbs(path) {
					bad("target", "lmtp:unix: socket path must be absolute")
				}
			} else if _, port, err := net.SplitHostPort(arg); err != nil || port == "" {
				bad("target", kind+": want HOST:PORT")
			}
		default:
			bad("target", fmt.Sprintf("unknown target type %q", kind))
		}
	}
	switch {
	case forward && a.Recipient == "":
		bad("recipient", "required for lmtp: and smtp: targets (the RCPT TO address)")
	case !forward && a.Recipient != "":
		bad("recipient", "only for lmtp: and smtp: targets")
	case a.Recipient != "" && (strings.ContainsAny(a.Recipient, "<> \t\r\n\x00") || !strings.Contains(a.Recipient, "@")):
		bad("recipient", "want a bare address such as me@example.org")
	}
	smtpTarget := strings.HasPrefix(a.Target, "smtp:")
	switch {
	case !smtpTarget && (a.SMTPTLS != "" || a.SMTPCAFile != "" || a.SMTPUser != "" || a.SMTPPassword != ""):
		bad("smtp_tls", "smtp_tls, smtp_ca_file, smtp_user and smtp_password are for smtp: targets only")
	case a.SMTPTLS != "" && a.SMTPTLS != "none" && a.SMTPTLS != "starttls":
		bad("smtp_tls", `want "none" or "starttls"`)
	case a.SMTPCAFile != "" && a.SMTPTLS != "starttls":
		bad("smtp_ca_file", `needs smtp_tls = "starttls"`)
	case (a.SMTPUser == "") != (a.SMTPPassword == ""):
		bad("smtp_user", "smtp_user and smtp_password go together")
	case a.SMTPUser != "" && a.SMTPTLS != "starttls":
		bad("smtp_user", `needs smtp_tls = "starttls": the password would cross the network in the clear`)
	}
	if a.StateDir == "" {
		bad("state_dir", "required")
	} else if !filepath.IsAbs(a.StateDir) {
		bad("state_dir", "must be absolute")
	}
	a.poll = 5 * time.Minute
	if a.PollInterval != "" {
		d, err := time.ParseDuration(a.PollInterval)
		if err != nil || d < time.Second {
			bad("poll_interval", `want a duration of at least 1s, such as "5m"`)
		}
		a.poll = d
	}
}

// ConfigError lists every problem found in a configuration file.
type ConfigError struct{ Problems []string }

func (e *ConfigError) Error() string {
	return "fetch: config: " + strings.Join(e.Problems, "\n  ")
}
