// Package config owns the postoffice server configuration: the TOML schema,
// its defaults, and Validate, which reports every problem with the key that
// has it and the line it is on. Config flows one way: file -> Config ->
// Validate -> the Options of each component, wired in cmd/postoffice.
package config

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/BurntSushi/toml"
)

// Config is the whole server configuration file.
type Config struct {
	POP3  POP3  `toml:"pop3"`
	TLS   TLS   `toml:"tls"`
	Auth  Auth  `toml:"auth"`
	Mail  Mail  `toml:"mail"`
	LMTP  LMTP  `toml:"lmtp"`
	Quota Quota `toml:"quota"`
	Log   Log   `toml:"log"`

	lines map[string]int // "section.key" -> line, for messages
	path  string
}

// POP3 is the [pop3] table.
type POP3 struct {
	Listen         []string `toml:"listen"`           // plain POP3 (STLS later), e.g. ["0.0.0.0:110"]
	ListenTLS      []string `toml:"listen_tls"`       // implicit TLS (POP3S, RFC 8314), e.g. ["0.0.0.0:995"]
	Greeting       string   `toml:"greeting"`         // text after "+OK " in the greeting
	IdleTimeout    Duration `toml:"idle_timeout"`     // default 10m, at least 10m (RFC 1939 §3)
	AuthFailDelay  Duration `toml:"auth_fail_delay"`  // default 1s
	MaxBadCommands int      `toml:"max_bad_commands"` // default 10
	LoginDelay     Duration `toml:"login_delay"`      // advertised and enforced per user; 0 = off
	Expire         string   `toml:"expire"`           // advertised: "NEVER" or days; "" = not advertised
}

// TLS is the [tls] table.
type TLS struct {
	Cert string `toml:"cert"` // PEM certificate chain
	Key  string `toml:"key"`  // PEM private key
}

// Auth is the [auth] table.
type Auth struct {
	PasswdFile    string `toml:"passwd_file"`    // Dovecot passwd-file
	DefaultScheme string `toml:"default_scheme"` // scheme of hashes without {SCHEME}; default CRYPT
}

// Mail is the [mail] table.
type Mail struct {
	// Location is a Dovecot-style template: "maildir:/var/vmail/%d/%n/Maildir".
	Location string `toml:"location"`
}

// LMTP is the [lmtp] table: mail intake from an MTA (RFC 2033). With
// neither listen nor socket set, no LMTP listener runs.
type LMTP struct {
	Listen         []string `toml:"listen"`           // TCP addresses, e.g. ["127.0.0.1:2424"]
	Socket         string   `toml:"socket"`           // unix socket path, e.g. "/run/postoffice/lmtp.sock"
	SocketMode     string   `toml:"socket_mode"`      // octal permissions of the socket; default "0666" (as Dovecot)
	MaxMessageSize int64    `toml:"max_message_size"` // octets; default 50 MiB
	Hostname       string   `toml:"hostname"`         // announced name; default the host name
	SpoolDir       string   `toml:"spool_dir"`        // spool of messages being received; default the temp dir
}

// SocketPerm returns SocketMode as permission bits.
func (l LMTP) SocketPerm() os.FileMode {
	n, _ := strconv.ParseUint(l.SocketMode, 8, 32)
	return os.FileMode(n) & os.ModePerm
}

// Quota is the [quota] table: per-user limits enforced at delivery (LMTP
// and postoffice deliver). Zero means no limit.
type Quota struct {
	Bytes     int64 `toml:"bytes"`     // stored octets per maildrop
	Messages  int   `toml:"messages"`  // messages per maildrop
	Permanent bool  `toml:"permanent"` // over quota bounces (552 5.2.2) instead of deferring (452 4.2.2)
}

// Log is the [log] table.
type Log struct {
	Level  string `toml:"level"`  // debug, info, warn, error; default info
	Format string `toml:"format"` // text or json; default text
}

// Duration is a time.Duration written as "10m" in TOML.
type Duration struct{ time.Duration }

// UnmarshalText implements encoding.TextUnmarshaler.
func (d *Duration) UnmarshalText(b []byte) error {
	v, err := time.ParseDuration(string(b))
	if err != nil {
		return fmt.Errorf("invalid duration %q (use e.g. \"90s\", \"10m\")", b)
	}
	d.Duration = v
	return nil
}

// MarshalText implements encoding.TextMarshaler.
func (d Duration) MarshalText() ([]byte, error) { return []byte(d.String()), nil }

// Default returns the configuration used for keys a file leaves out.
func Default() Config {
	return Config{
		POP3: POP3{
			Listen:         []string{"127.0.0.1:1110"},
			Greeting:       "POP3 server ready",
			IdleTimeout:    Duration{10 * time.Minute},
			AuthFailDelay:  Duration{time.Second},
			MaxBadCommands: 10,
		},
		Auth: Auth{DefaultScheme: "CRYPT"},
		LMTP: LMTP{SocketMode: "0666", MaxMessageSize: 50 << 20},
		Log:  Log{Level: "info", Format: "text"},
	}
}

// Load reads, decodes and validates a file.
func Load(path string) (*Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	return Parse(path, data)
}

// Parse decodes and validates TOML text; path is used in messages only.
func Parse(path string, data []byte) (*Config, error) {
	c := Default()
	c.path = path
	c.lines = keyLines(data)
	md, err := toml.Decode(string(data), &c)
	if err != nil {
		var pe toml.ParseError
		if errors.As(err, &pe) {
			return nil, fmt.Errorf("config: %s:%d: %s", path, pe.Position.Line, pe.Message)
		}
		return nil, fmt.Errorf("config: %s: %v", path, err)
	}
	var problems []string
	for _, k := range md.Undecoded() {
		problems = append(problems, c.at(k.String(), "unknown key"))
	}
	problems = append(problems, c.validate()...)
	if len(problems) > 0 {
		return nil, &Error{Problems: problems}
	}
	return &c, nil
}

// Error lists every problem found in a file.
type Error struct{ Problems []string }

func (e *Error) Error() string {
	return "config: " + strings.Join(e.Problems, "\n  ")
}

// at formats a problem with key and, when known, its line.
func (c *Config) at(key, msg string) string {
	if n, ok := c.lines[key]; ok {
		return fmt.Sprintf("%s:%d: %s: %s", c.path, n, key, msg)
	}
	return fmt.Sprintf("%s: %s: %s", c.path, key, msg)
}

func (c *Config) validate() []string {
	var p []string
	bad := func(key, format string, args ...any) { p = append(p, c.at(key, fmt.Sprintf(format, args...))) }
	if len(c.POP3.Listen)+len(c.POP3.ListenTLS) == 0 {
		bad("pop3.listen", "no listener: set pop3.listen or pop3.listen_tls")
	}
	for _, a := range c.POP3.Listen {
		if _, _, err := net.SplitHostPort(a); err != nil {
			bad("pop3.listen", "%q is not host:port", a)
		}
	}
	for _, a := range c.POP3.ListenTLS {
		if _, _, err := net.SplitHostPort(a); err != nil {
			bad("pop3.listen_tls", "%q is not host:port", a)
		}
	}
	if len(c.POP3.ListenTLS) > 0 && (c.TLS.Cert == "" || c.TLS.Key == "") {
		bad("pop3.listen_tls", "needs tls.cert and tls.key")
	}
	if (c.TLS.Cert == "") != (c.TLS.Key == "") {
		bad("tls.cert", "tls.cert and tls.key go together")
	}
	if c.POP3.IdleTimeout.Duration < 10*time.Minute {
		bad("pop3.idle_timeout", "%v is below the 10 minutes RFC 1939 §3 requires", c.POP3.IdleTimeout.Duration)
	}
	if c.POP3.AuthFailDelay.Duration < 0 || c.POP3.AuthFailDelay.Duration > time.Minute {
		bad("pop3.auth_fail_delay", "must be between 0s and 1m")
	}
	if c.POP3.MaxBadCommands < 1 {
		bad("pop3.max_bad_commands", "must be at least 1")
	}
	if c.POP3.LoginDelay.Duration < 0 {
		bad("pop3.login_delay", "must not be negative")
	}
	if e := c.POP3.Expire; e != "" && e != "NEVER" {
		if n, err := strconv.Atoi(e); err != nil || n < 0 {
			bad("pop3.expire", `must be "NEVER" or a number of days, not %q`, e)
		}
	}
	if len(c.POP3.Greeting) > 400 || strings.ContainsAny(c.POP3.Greeting, "\r\n") {
		bad("pop3.greeting", "must be one line of at most 400 characters")
	}
	if c.Auth.PasswdFile == "" {
		bad("auth.passwd_file", "is required")
	}
	if c.Mail.Location == "" {
		bad("mail.location", `is required, e.g. "maildir:/var/vmail/%%d/%%n/Maildir"`)
	} else if kind, _, _ := strings.Cut(c.Mail.Location, ":"); kind != "maildir" {
		bad("mail.location", "unsupported store %q (supported: maildir)", kind)
	}
	for _, a := range c.LMTP.Listen {
		if _, _, err := net.SplitHostPort(a); err != nil {
			bad("lmtp.listen", "%q is not host:port", a)
		}
	}
	if c.LMTP.Socket != "" && !strings.HasPrefix(c.LMTP.Socket, "/") {
		bad("lmtp.socket", "must be an absolute path, not %q", c.LMTP.Socket)
	}
	if n, err := strconv.ParseUint(c.LMTP.SocketMode, 8, 32); err != nil || n > 0o777 {
		bad("lmtp.socket_mode", `must be octal permissions such as "0660", not %q`, c.LMTP.SocketMode)
	}
	if c.LMTP.MaxMessageSize < 1 {
		bad("lmtp.max_message_size", "must be a positive number of octets")
	}
	if strings.ContainsAny(c.LMTP.Hostname, " \t\r\n") {
		bad("lmtp.hostname", "must be one word")
	}
	if c.LMTP.SpoolDir != "" && !strings.HasPrefix(c.LMTP.SpoolDir, "/") {
		bad("lmtp.spool_dir", "must be an absolute path, not %q", c.LMTP.SpoolDir)
	}
	if c.Quota.Bytes < 0 {
		bad("quota.bytes", "must not be negative")
	}
	if c.Quota.Messages < 0 {
		bad("quota.messages", "must not be negative")
	}
	switch c.Log.Level {
	case "debug", "info", "warn", "error":
	default:
		bad("log.level", "must be debug, info, warn or error")
	}
	switch c.Log.Format {
	case "text", "json":
	default:
		bad("log.format", "must be text or json")
	}
	return p
}

// MaildirPath returns the path template of a "maildir:" location.
func (m Mail) MaildirPath() string {
	_, p, _ := strings.Cut(m.Location, ":")
	return p
}

// keyLines maps "table.key" to the line it is set on. It understands the
// subset of TOML the config uses: [table] headers and key = value lines.
func keyLines(data []byte) map[string]int {
	lines := make(map[string]int)
	table := ""
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(nil, 1<<20)
	for n := 1; sc.Scan(); n++ {
		l := strings.TrimSpace(sc.Text())
		switch {
		case l == "" || l[0] == '#':
		case l[0] == '[':
			table = strings.Trim(l, "[] \t")
			if i := strings.IndexByte(table, '#'); i >= 0 {
				table = strings.TrimSpace(table[:i])
			}
			table = strings.Trim(table, "[] \t")
			if _, ok := lines[table]; !ok {
				lines[table] = n
			}
		default:
			k, _, ok := strings.Cut(l, "=")
			if !ok {
				continue
			}
			k = strings.Trim(strings.TrimSpace(k), `"`)
			full := k
			if table != "" {
				full = table + "." + k
			}
			if _, ok := lines[full]; !ok {
				lines[full] = n
			}
		}
	}
	return lines
}
