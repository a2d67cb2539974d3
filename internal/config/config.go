// Package config owns the postoffice server configuration: the TOML schema,
// its defaults, and Validate, which reports every problem with the key that
// has it and the line it is on. Config flows one way: file -> Config ->
// Validate -> the Options of each component, wired in cmd/postoffice.
package config

import (
	"fmt"
	"net"
	"net/netip"
	"net/url"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/postoffice-mail/postoffice/internal/ipgroup"
	"github.com/postoffice-mail/postoffice/internal/tomlconf"
	"github.com/postoffice-mail/postoffice/internal/uidlfmt"
)

// Config is the whole server configuration file.
type Config struct {
	Server Server `toml:"server"`
	POP3   POP3   `toml:"pop3"`
	Limits Limits `toml:"limits"`
	TLS    TLS    `toml:"tls"`
	Auth   Auth   `toml:"auth"`
	Mail   Mail   `toml:"mail"`
	LMTP   LMTP   `toml:"lmtp"`
	// Kerberos is the [kerberos] table: GSSAPI and KPOP logins.
	Kerberos Kerberos `toml:"kerberos"`
	// KPOP is the [kpop] table: the Kerberized POP listener.
	KPOP KPOP `toml:"kpop"`
	// POP2 is the [pop2] table: the POP2 and POP1 listener.
	POP2 POP2 `toml:"pop2"`
	// POP4 is the [pop4] table: the POP4 commands on the POP3 listeners.
	POP4  POP4  `toml:"pop4"`
	Quota Quota `toml:"quota"`
	// Devices is the [devices] table: per-device views.
	Devices Devices `toml:"devices"`
	// Expire is the [expire] table: expiry after retrieval or arrival.
	Expire Expire `toml:"expire"`
	// History is the [history] table: retrieval history and storms.
	History History `toml:"history"`
	Log     Log     `toml:"log"`
	Metrics Metrics `toml:"metrics"`
	// Postgres is read only when mail.location is a PostgreSQL DSN.
	Postgres Postgres `toml:"postgres"`

	// SDPS is the [sdps] table: Demon's multi-drop service (legacy.go).
	SDPS SDPS `toml:"sdps"`
	// RPOP is the [rpop] table: RPOP logins (legacy.go).
	RPOP RPOP `toml:"rpop"`
	// XTND is the [xtnd] table: the relay of XTND XMIT (legacy.go).
	XTND XTND `toml:"xtnd"`

	file *tomlconf.File // the file read, for messages placed at their key's line
	path string
}

// Server is the [server] table: the process itself.
type Server struct {
	// User, when set, is who the server runs as once every listener is
	// bound and the TLS keys are loaded (a name or a numeric uid; never
	// root). Empty: stay as started.
	User string `toml:"user"`
	// Group is the group to run as; empty means User's primary group.
	Group string `toml:"group"`
}

// Limits is the [limits] table: connection limits, the PROXY protocol and
// the engine's abuse limits (docs/security.md).
type Limits struct {
	MaxConnections      int `toml:"max_connections"`        // open POP3 connections in all; 0 = no cap; default 20000 (an idle session costs about 16 KiB)
	MaxConnectionsPerIP int `toml:"max_connections_per_ip"` // per IPv4 address or IPv6 group; 0 = no cap; default 20
	IPv6Prefix          int `toml:"ipv6_prefix"`            // how IPv6 clients are grouped: 48-64, default 64
	// TrustedNetworks (CIDR prefixes or addresses) are exempt from
	// max_connections_per_ip and from the auth penalty. Default none, not
	// even loopback.
	TrustedNetworks []string `toml:"trusted_networks"`
	// ProxyProtocolFrom lists the load balancers that may, and must, send
	// a PROXY protocol v1 or v2 header. Default none: PROXY off.
	ProxyProtocolFrom  []string `toml:"proxy_protocol_from"`
	ProxyHeaderTimeout Duration `toml:"proxy_header_timeout"` // default 5s
	PreLoginTimeout    Duration `toml:"pre_login_timeout"`    // idle timeout before login; default 1m
	WriteTimeout       Duration `toml:"write_timeout"`        // per write to a client; default 2m
	MaxLoginCommands   int      `toml:"max_login_commands"`   // commands before login; default 50
	MaxCommands        int      `toml:"max_commands"`         // after login; 0 = 1000 + 10 per message
}

// Trusted returns limits.trusted_networks parsed (valid after Parse).
func (l Limits) Trusted() []netip.Prefix {
	ps, _ := ipgroup.ParsePrefixes(l.TrustedNetworks)
	return ps
}

// ProxyFrom returns limits.proxy_protocol_from parsed (valid after Parse).
func (l Limits) ProxyFrom() []netip.Prefix {
	ps, _ := ipgroup.ParsePrefixes(l.ProxyProtocolFrom)
	return ps
}

// POP3 is the [pop3] table.
type POP3 struct {
	Listen         []string `toml:"listen"`           // POP3 with STLS offered when tls.cert is set, e.g. ["0.0.0.0:110"]
	ListenTLS      []string `toml:"listen_tls"`       // implicit TLS (POP3S, RFC 8314), e.g. ["0.0.0.0:995"]
	Greeting       string   `toml:"greeting"`         // text after "+OK " in the greeting
	IdleTimeout    Duration `toml:"idle_timeout"`     // default 10m, at least 10m (RFC 1939 §3)
	AuthFailDelay  Duration `toml:"auth_fail_delay"`  // default 1s
	MaxBadCommands int      `toml:"max_bad_commands"` // default 20 (Dovecot's); unknown, misplaced and malformed commands count, a missing message does not
	LoginDelay     Duration `toml:"login_delay"`      // advertised and enforced per user; 0 = off
	Expire         string   `toml:"expire"`           // advertised: "NEVER" or days; "" = not advertised
	// EnableLAST answers LAST (RFC 1460 §5) with the highest message
	// number retrieved in the session, as Dovecot's pop3_enable_last.
	// Default false: LAST is an unknown command.
	EnableLAST bool `toml:"enable_last"`
	// ClientWorkarounds turn on behaviours for old clients (see
	// KnownWorkarounds): "outlook-no-nuls" (NUL sent as 0x80),
	// "oe-ns-eoh" (a blank line after a message that is all header), as
	// Dovecot's pop3_client_workarounds; "bare-auth" (AUTH without
	// argument lists the SASL mechanisms); and "xtnd-xmit" (the
	// Berkeley popper's XTND XMIT, mail sent through the POP3 connection;
	// needs xtnd.relay). Default none.
	ClientWorkarounds []string `toml:"client_workarounds"`
	// Sendfile: true (the default) sends a message stored in wire form
	// (CRLF line ends, as LMTP deliveries are stored) on a plain
	// connection with sendfile(2), without copying it through the
	// server. false reads and writes it, as over TLS: better when the
	// clients are on the same host (a proxy in front, over loopback),
	// whose copy out of the socket then reads cold pages, or when the
	// Maildirs are on a file system whose sendfile(2) misbehaves.
	Sendfile bool `toml:"sendfile"`
}

// TLS is the [tls] table. With cert and key set, pop3.listen_tls serves
// implicit TLS and pop3.listen offers STLS.
type TLS struct {
	Cert string `toml:"cert"` // PEM certificate chain: the default certificate
	Key  string `toml:"key"`  // PEM private key
	// Certificates are further pairs chosen by the client's SNI name
	// (their DNS names, else their CN; wildcards allowed). Written as
	// certificates = [{cert = "...", key = "..."}] or [[tls.certificates]].
	Certificates []CertPair `toml:"certificates"`
	// ClientCA is a PEM file of CAs whose client certificates are requested
	// and verified, for SASL EXTERNAL; "" means none are requested.
	ClientCA string `toml:"client_ca"`
}

// CertPair is one certificate chain file and its key file. Its fields match
// tlsconf.Pair, so tlsconf.Pair(p) converts it.
type CertPair struct {
	CertFile string `toml:"cert"`
	KeyFile  string `toml:"key"`
}

// Pairs returns every configured certificate, the default (cert, key) first,
// or nil when TLS is not configured.
func (t TLS) Pairs() []CertPair {
	if t.Cert == "" {
		return nil
	}
	return append([]CertPair{{CertFile: t.Cert, KeyFile: t.Key}}, t.Certificates...)
}

// KnownMechanisms returns the SASL mechanism names auth.mechanisms accepts.
func KnownMechanisms() []string {
	return []string{
		"PLAIN", "LOGIN", "CRAM-MD5", "SCRAM-SHA-1", "SCRAM-SHA-1-PLUS", "SCRAM-SHA-256",
		"SCRAM-SHA-256-PLUS", "OAUTHBEARER", "XOAUTH2", "EXTERNAL", "GSSAPI",
	}
}

// Auth is the [auth] table.
type Auth struct {
	PasswdFile string `toml:"passwd_file"` // Dovecot passwd-file
	// Database, in place of passwd_file, keeps the users in PostgreSQL: a
	// libpq URL or key=value string. Without password_query the users are
	// rows of postoffice's own table (postoffice db migrate creates it,
	// postoffice user edits it).
	Database string `toml:"database"`
	// PasswordQuery reads the users of a site's own schema (Dovecot's
	// passdb sql password_query, Postfixadmin's mailbox table): one query
	// with one parameter, $1, the user name, returning a column password
	// in any scheme a passwd-file accepts, and optionally user, uid, gid,
	// home and extra fields by column name. The database is then read-only
	// to postoffice user.
	PasswordQuery string `toml:"password_query"`
	DefaultScheme string `toml:"default_scheme"` // scheme of hashes without {SCHEME}; default CRYPT
	// AllowPlaintext allows USER/PASS and the SASL mechanisms that send a
	// password or token in the clear (PLAIN, LOGIN, OAUTHBEARER, XOAUTH2) on
	// connections that are neither TLS nor loopback. Default false.
	AllowPlaintext bool `toml:"allow_plaintext"`
	// APOP offers APOP (RFC 1939 §7); it needs plaintext-equivalent stored
	// passwords. Default false.
	APOP bool `toml:"apop"`
	// Mechanisms are the SASL mechanisms offered, upper-case after Parse,
	// in order of preference (see KnownMechanisms). Empty means the default set
	// of internal/sasl.
	Mechanisms []string `toml:"mechanisms"`
	// ExternalUsername is what part of a client certificate names the user
	// for EXTERNAL: "cn" (the subject's Common Name, the default) or "email"
	// (the first rfc822Name SAN).
	ExternalUsername string `toml:"external_username"`
	// OAuth is the [auth.oauth] table; nil when the file has none.
	OAuth *OAuth `toml:"oauth"`

	// Penalty turns on the auth penalty across connections
	// (internal/ratelimit): growing delays and temporary bans per address
	// group, a capped delay per user name. Default true.
	Penalty          bool     `toml:"penalty"`
	PenaltyBase      Duration `toml:"penalty_base"`       // first delay of a group, doubling; "0s" = no delays; default 2s
	PenaltyMax       Duration `toml:"penalty_max"`        // cap on the delay and on queueing; default 15s
	PenaltyWindow    Duration `toml:"penalty_window"`     // counters live this long after the last failure; default 1h
	BanAfter         int      `toml:"ban_after"`          // failures of a group before a ban; 0 = never ban; default 10
	BanTime          Duration `toml:"ban_time"`           // default 15m
	UserPenaltyAfter int      `toml:"user_penalty_after"` // failures for one user name before it is delayed; 0 = never; default 5
	UserPenaltyMax   Duration `toml:"user_penalty_max"`   // cap on the per-user delay; default 8s
}

// OAuth is the [auth.oauth] table: how OAUTHBEARER (RFC 7628) and XOAUTH2
// tokens are checked. Exactly one of JWKSFile (JWTs verified locally) and
// IntrospectionURL (RFC 7662) is set. Issuer, Audience, ClientIDs and
// UsernameClaim apply in both modes: to the JWT's claims, or to the members
// of the introspection answer. Validate refuses a check a mode cannot apply
// and a username claim that cannot name a user.
type OAuth struct {
	JWKSFile string `toml:"jwks_file"` // JSON Web Key Set (RFC 7517) file; needs issuer and audience
	Issuer   string `toml:"issuer"`    // required "iss" (optional with introspection: checked when set)
	Audience string `toml:"audience"`  // required "aud" value (optional with introspection: checked when set)
	// ClientIDs, when set, are the OAuth clients whose tokens are accepted:
	// the token's "client_id" (a JWT's "azp" when it has none) must be one
	// of them.
	ClientIDs []string `toml:"accepted_client_ids"`
	// UsernameClaim names the claim holding the user name; the default is
	// "email" with jwks_file and "username" (RFC 7662 §2.2) with
	// introspection_url.
	UsernameClaim    string `toml:"username_claim"`
	IntrospectionURL string `toml:"introspection_url"`  // https endpoint (http only to loopback)
	ClientID         string `toml:"client_id"`          // introspection client credentials (RFC 7662 §2.1); not a check on tokens
	ClientSecretFile string `toml:"client_secret_file"` // file holding the client secret, one line
}

// nonIdentityClaims are the claims and introspection members that describe
// a token rather than its user (RFC 7519 §4.1, RFC 7662 §2.2): none of them
// can be auth.oauth.username_claim.
var nonIdentityClaims = []string{
	"active", "scope", "client_id", "azp", "token_type", "exp", "iat", "nbf",
	"aud", "iss", "jti", "email_verified",
}

// STLS reports whether pop3.listen addresses offer STLS (RFC 2595): they
// do whenever tls.cert is set.
func (c *Config) STLS() bool { return c.TLS.Cert != "" }

// Mail is the [mail] table.
type Mail struct {
	// Location is a Dovecot-style template: "maildir:/var/vmail/%d/%n/Maildir"
	// for Maildirs, "mbox:/var/mail/%u" for mbox files (with Dovecot's
	// optional ":INDEX=<dir template>" parameter for postoffice's index), or
	// a PostgreSQL connection string ("postgres://mail@db1,db2/mail?target_session_attrs=read-write",
	// or key=value as libpq takes it) for a store shared by many servers,
	// configured further by [postgres].
	Location string `toml:"location"`
	// VerifySizeFields: false (the default) trusts the ",W=<n>" size in
	// Maildir file names as Dovecot does, so a message is indexed without
	// opening its file; a message stored without a final newline is then
	// listed at W and sent as W+2 octets (the CRLF the server appends, RFC
	// 1939 §3), exactly as Dovecot lists and sends it. true restores exact
	// sizes by reading each such file's last octet once, when the message
	// is first indexed. Files without W= are read, and sized exactly,
	// either way.
	VerifySizeFields bool `toml:"verify_size_fields"`
	// UIDLFormat is the UIDL of messages that have none yet, in the syntax
	// of Dovecot's pop3_uidl_format, so that a site taking over from
	// Dovecot serves the UIDLs Dovecot served, old mail and new: %u (UID),
	// %v (UIDVALIDITY), %f (file name), %g (GUID) for maildir; %m
	// (header MD5, Dovecot's mbox_md5 = apop3d) for mbox; with Dovecot's modifiers
	// ("%08Xu%08Xv": lowercase hex, as Dovecot prints it). "popa3d" (mbox
	// only) serves the UIDLs popa3d computes from each message's header.
	// Empty (the default) keeps postoffice's own: Dovecot's default form
	// for messages listed in dovecot-uidlist, a derived one otherwise.
	// A UIDL Dovecot saved (pop3_uidl in dovecot-uidlist) always wins.
	UIDLFormat string `toml:"uidl_format"`
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
	// RecipientDelimiter is the set of characters that separate a
	// recipient's local part from its detail, as Postfix's and Dovecot's
	// recipient_delimiter: with "+", alice+news@example.org is delivered to
	// alice@example.org unless a user has exactly that name. Default "+";
	// "" turns plus-addressing off. Each character must be one an address's
	// local part may hold unquoted (RFC 5322 §3.2.3 atext, or '.').
	RecipientDelimiter string `toml:"recipient_delimiter"`
}

// Kerberos is the [kerberos] table. With a keytab set, SASL GSSAPI
// (RFC 4752) is offered in CAPA and AUTH, whatever auth.mechanisms lists,
// and [kpop] may run; without one neither is ever offered.
type Kerberos struct {
	Keytab  string `toml:"keytab"`  // keytab holding the service principal's keys, e.g. "/etc/postoffice/pop.keytab"
	Service string `toml:"service"` // service name of the principal; default "pop" (service/HOST@REALM)
	Realm   string `toml:"realm"`   // realm of the principal and of the users; default the keytab's
	// Hostname is the only host part a ticket may name; empty accepts a
	// ticket for any service/HOST principal in the keytab (a server known
	// under several names needs one principal per name).
	Hostname string `toml:"hostname"`
	// Mapping turns a client principal into a user name: "strip-realm"
	// (default: user@REALM of the service's realm becomes user), "keep"
	// (the user name is user@REALM) or "file" (map_file's pairs).
	Mapping string `toml:"mapping"`
	// MapFile holds "principal@REALM user" lines for mapping = "file".
	MapFile string `toml:"map_file"`
	// Authorize lets a principal log in as other users through the SASL
	// authorization identity: "admin@EXAMPLE.ORG" = ["alice", "bob"].
	// Default none: a principal acts as its own user only.
	Authorize map[string][]string `toml:"authorize"`
	ClockSkew Duration            `toml:"clock_skew"` // tolerated clock difference with clients; default 5m
}

// KPOP is the [kpop] table: Kerberized POP (the Kerberos 5 sendauth
// exchange, then POP3), as fetchmail's "protocol KPOP" speaks it on port
// 1109. Off unless listen is set; it needs [kerberos] keytab.
type KPOP struct {
	Listen []string `toml:"listen"` // TCP addresses, e.g. ["0.0.0.0:1109"]
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

// Metrics is the [metrics] table: Prometheus metrics over HTTP.
type Metrics struct {
	// Listen is the host:port serving GET /metrics, e.g.
	// "127.0.0.1:9110". Empty (the default): no metrics listener. The
	// metrics reveal no user names or addresses, but keep the listener on
	// a private address all the same.
	Listen string `toml:"listen"`
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
			MaxBadCommands: 20,
			Sendfile:       true,
		},
		Limits: Limits{
			MaxConnections:      20000,
			MaxConnectionsPerIP: 20,
			IPv6Prefix:          64,
			ProxyHeaderTimeout:  Duration{5 * time.Second},
			PreLoginTimeout:     Duration{time.Minute},
			WriteTimeout:        Duration{2 * time.Minute},
			MaxLoginCommands:    50,
		},
		Auth: Auth{
			DefaultScheme: "CRYPT", ExternalUsername: "cn",
			Penalty:          true,
			PenaltyBase:      Duration{2 * time.Second},
			PenaltyMax:       Duration{15 * time.Second},
			PenaltyWindow:    Duration{time.Hour},
			BanAfter:         10,
			BanTime:          Duration{15 * time.Minute},
			UserPenaltyAfter: 5,
			UserPenaltyMax:   Duration{8 * time.Second},
		},
		Postgres: Postgres{
			ConnectTimeout: Duration{10 * time.Second},
			LockTTL:        Duration{30 * time.Second},
		},
		LMTP: LMTP{SocketMode: "0666", MaxMessageSize: 50 << 20, RecipientDelimiter: "+"},
		XTND: XTND{MaxMessageSize: 10 << 20, MaxRecipients: 100},
		Log:  Log{Level: "info", Format: "text"},
	}
}

func (c *Config) validateKerberos() {
	bad := c.file.Bad
	k := c.Kerberos
	if k.Keytab != "" && !strings.HasPrefix(k.Keytab, "/") {
		bad("kerberos.keytab", "must be an absolute path, not %q", k.Keytab)
	}
	if k.Keytab == "" && (k.Service != "" || k.Realm != "" || k.Hostname != "" || k.Mapping != "" || k.MapFile != "" || len(k.Authorize) > 0 || k.ClockSkew.Duration != 0) {
		bad("kerberos.keytab", "is required when [kerberos] is set")
	}
	if strings.ContainsAny(k.Service, "/@ \t") {
		bad("kerberos.service", "must be a bare service name such as \"pop\", not %q", k.Service)
	}
	if strings.ContainsAny(k.Hostname, "/@ \t") {
		bad("kerberos.hostname", "must be a host name, not %q", k.Hostname)
	}
	if strings.ContainsAny(k.Realm, "/@ \t") {
		bad("kerberos.realm", "must be a realm name such as \"EXAMPLE.ORG\", not %q", k.Realm)
	}
	switch k.Mapping {
	case "", "strip-realm", "keep":
		if k.MapFile != "" {
			bad("kerberos.map_file", `is only read with mapping = "file"`)
		}
	case "file":
		if k.MapFile == "" {
			bad("kerberos.map_file", `is required with mapping = "file"`)
		}
	default:
		bad("kerberos.mapping", `must be "strip-realm", "keep" or "file", not %q`, k.Mapping)
	}
	for p := range k.Authorize {
		if !strings.Contains(p, "@") {
			bad("kerberos.authorize", "%q is not a principal name@REALM", p)
		}
	}
	if k.ClockSkew.Duration < 0 || k.ClockSkew.Duration > time.Hour {
		bad("kerberos.clock_skew", "must be between 0s and 1h")
	}
	for _, a := range c.KPOP.Listen {
		if _, _, err := net.SplitHostPort(a); err != nil {
			bad("kpop.listen", "%q is not host:port", a)
		}
	}
	if len(c.KPOP.Listen) > 0 && k.Keytab == "" {
		bad("kpop.listen", "needs kerberos.keytab")
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

// Parse decodes and validates TOML text; path is used in messages only. A
// file that is not TOML, or has a value that does not fit its key, gives an
// error naming the line; any other problem gives an *Error listing every
// problem found, each with its key and line.
func Parse(path string, data []byte) (*Config, error) {
	c := Default()
	c.path = path
	f, err := tomlconf.Decode(path, data, &c)
	if err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	c.file = f
	c.validate()
	if p := f.Problems(); len(p) > 0 {
		return nil, &Error{Problems: p}
	}
	return &c, nil
}

// Error lists every problem found in a file.
type Error struct{ Problems []string }

func (e *Error) Error() string {
	return "config: " + strings.Join(e.Problems, "\n  ")
}

// validate adds every problem of the configuration to c.file, each placed
// at its key's line, or that of the nearest enclosing key or table set in
// the file (the [auth.oauth] header for a missing auth.oauth.issuer).
func (c *Config) validate() {
	bad := c.file.Bad
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
	c.validateTLS()
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
	if c.Auth.PasswdFile == "" && c.Auth.Database == "" {
		bad("auth.passwd_file", "is required (or auth.database)")
	}
	c.validateAuth()
	c.validateKerberos()
	c.validateLedger()
	c.validateFamily()
	c.validatePenalty()
	c.validateLimits()
	c.validateLegacy()
	c.validateServer()
	if c.Mail.Location == "" {
		bad("mail.location", `is required, e.g. "maildir:/var/vmail/%%d/%%n/Maildir"`)
	} else if _, pg := c.Mail.PostgresDSN(); pg {
		if c.Mail.UIDLFormat != "" {
			bad("mail.uidl_format", "is for maildir and mbox locations; the PostgreSQL store makes its own UIDLs")
		}
	} else if kind := c.Mail.Store(); kind != "maildir" && kind != "mbox" {
		bad("mail.location", "unsupported store %q (supported: maildir, mbox, postgres)", kind)
	} else if f := c.Mail.UIDLFormat; f == "popa3d" {
		if kind != "mbox" {
			bad("mail.uidl_format", `"popa3d" needs an mbox location (popa3d serves mbox files)`)
		}
	} else if f != "" {
		p, err := uidlfmt.Parse(f)
		switch {
		case err != nil:
			bad("mail.uidl_format", "%v", err)
		case kind == "maildir" && p.Uses(uidlfmt.MD5):
			bad("mail.uidl_format", "%%m (header MD5) exists for mbox locations only, as in Dovecot")
		case kind == "mbox" && p.Uses(^uidlfmt.MD5):
			bad("mail.uidl_format", "only %%m exists for mbox locations (%%f and %%g are maildir's; postoffice keeps no IMAP UIDs in mbox files for %%u and %%v)")
		}
	}
	c.validatePostgres()
	for _, a := range c.LMTP.Listen {
		if _, _, err := net.SplitHostPort(a); err != nil {
			bad("lmtp.listen", "%q is not host:port", a)
		}
	}
	if a := c.Metrics.Listen; a != "" {
		if _, _, err := net.SplitHostPort(a); err != nil {
			bad("metrics.listen", "%q is not host:port", a)
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
	for _, r := range c.LMTP.RecipientDelimiter {
		if !isAtextSpecial(r) {
			bad("lmtp.recipient_delimiter", `%q cannot separate a detail: use characters such as "+" or "-" (RFC 5322 atext)`, r)
			break
		}
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
}

// validateTLS checks the [tls] keys beyond cert and key.
func (c *Config) validateTLS() {
	bad := c.file.Bad
	if c.TLS.Cert == "" {
		if len(c.TLS.Certificates) > 0 {
			bad("tls.certificates", "needs tls.cert and tls.key (the default certificate)")
		}
		if c.TLS.ClientCA != "" {
			bad("tls.client_ca", "needs tls.cert and tls.key")
		}
	}
	for i, cp := range c.TLS.Certificates {
		if cp.CertFile == "" || cp.KeyFile == "" {
			bad("tls.certificates", "entry %d needs both cert and key", i+1)
		}
	}
}

// validateAuth checks the [auth] keys beyond passwd_file, and upper-cases
// auth.mechanisms.
func (c *Config) validateAuth() {
	bad := c.file.Bad
	a := &c.Auth
	known := KnownMechanisms()
	var mechs []string
	for _, m := range a.Mechanisms {
		m = strings.ToUpper(strings.TrimSpace(m))
		switch {
		case !slices.Contains(known, m):
			bad("auth.mechanisms", "unknown mechanism %q (known: %s)", m, strings.Join(known, " "))
		case slices.Contains(mechs, m):
			bad("auth.mechanisms", "%s is listed twice", m)
		default:
			mechs = append(mechs, m)
		}
	}
	a.Mechanisms = mechs
	for _, m := range mechs {
		switch {
		case (m == "OAUTHBEARER" || m == "XOAUTH2") && a.OAuth == nil:
			bad("auth.mechanisms", "%s needs an [auth.oauth] table", m)
		case m == "EXTERNAL" && c.TLS.ClientCA == "":
			bad("auth.mechanisms", "EXTERNAL needs tls.client_ca")
		case strings.HasSuffix(m, "-PLUS") && c.TLS.Cert == "":
			bad("auth.mechanisms", "%s needs TLS: set tls.cert and tls.key", m)
		}
	}
	switch a.ExternalUsername {
	case "cn", "email":
	default:
		bad("auth.external_username", `must be "cn" or "email", not %q`, a.ExternalUsername)
	}
	if o := a.OAuth; o != nil {
		if o.UsernameClaim == "" {
			o.UsernameClaim = "email"
			if o.JWKSFile == "" && o.IntrospectionURL != "" {
				o.UsernameClaim = "username"
			}
		}
		if slices.Contains(nonIdentityClaims, o.UsernameClaim) {
			bad("auth.oauth.username_claim", "%q describes the token, not its user", o.UsernameClaim)
		}
		for _, id := range o.ClientIDs {
			if strings.TrimSpace(id) == "" {
				bad("auth.oauth.accepted_client_ids", "an entry is empty")
				break
			}
		}
		switch {
		case o.JWKSFile == "" && o.IntrospectionURL == "":
			bad("auth.oauth", "set one of jwks_file and introspection_url")
		case o.JWKSFile != "" && o.IntrospectionURL != "":
			bad("auth.oauth.introspection_url", "set jwks_file or introspection_url, not both")
		case o.JWKSFile != "":
			if o.Issuer == "" {
				bad("auth.oauth.issuer", "is required with jwks_file")
			}
			if o.Audience == "" {
				bad("auth.oauth.audience", "is required with jwks_file")
			}
			// A JWT is checked locally: there is no endpoint to send
			// client credentials to, and client_id is not a check on
			// tokens (accepted_client_ids is).
			if o.ClientID != "" || o.ClientSecretFile != "" {
				bad("auth.oauth.client_id", "client_id and client_secret_file are for introspection_url only (to accept tokens of certain clients, use accepted_client_ids)")
			}
		default:
			if err := checkIntrospectionURL(o.IntrospectionURL); err != nil {
				bad("auth.oauth.introspection_url", "%v", err)
			}
			if o.ClientID == "" || o.ClientSecretFile == "" {
				bad("auth.oauth.client_id", "introspection_url needs client_id and client_secret_file")
			}
		}
	}
}

// validatePenalty checks the auth penalty keys of [auth].
func (c *Config) validatePenalty() {
	bad := c.file.Bad
	a := c.Auth
	if a.PenaltyBase.Duration < 0 {
		bad("auth.penalty_base", "must not be negative")
	}
	c.mustBePositive(
		keyDuration{"auth.penalty_max", a.PenaltyMax},
		keyDuration{"auth.penalty_window", a.PenaltyWindow},
		keyDuration{"auth.ban_time", a.BanTime},
		keyDuration{"auth.user_penalty_max", a.UserPenaltyMax},
	)
	if a.PenaltyMax.Duration > 0 && a.PenaltyMax.Duration < a.PenaltyBase.Duration {
		bad("auth.penalty_max", "%v is below auth.penalty_base (%v)", a.PenaltyMax.Duration, a.PenaltyBase.Duration)
	}
	if a.BanAfter < 0 {
		bad("auth.ban_after", "must not be negative (0: never ban)")
	}
	if a.UserPenaltyAfter < 0 {
		bad("auth.user_penalty_after", "must not be negative (0: no per-user delay)")
	}
}

// validateLimits checks the [limits] table.
func (c *Config) validateLimits() {
	bad := c.file.Bad
	l := c.Limits
	if l.MaxConnections < 0 {
		bad("limits.max_connections", "must not be negative (0: no cap)")
	}
	if l.MaxConnectionsPerIP < 0 {
		bad("limits.max_connections_per_ip", "must not be negative (0: no cap)")
	}
	if l.IPv6Prefix < 48 || l.IPv6Prefix > 64 {
		bad("limits.ipv6_prefix", "must be between 48 and 64, not %d", l.IPv6Prefix)
	}
	for _, k := range []struct {
		key string
		v   []string
	}{{"limits.trusted_networks", l.TrustedNetworks}, {"limits.proxy_protocol_from", l.ProxyProtocolFrom}} {
		for _, s := range k.v {
			if _, err := ipgroup.ParsePrefixes([]string{s}); err != nil {
				bad(k.key, "%q is neither an address nor a CIDR prefix", s)
			}
		}
	}
	c.mustBePositive(
		keyDuration{"limits.proxy_header_timeout", l.ProxyHeaderTimeout},
		keyDuration{"limits.pre_login_timeout", l.PreLoginTimeout},
		keyDuration{"limits.write_timeout", l.WriteTimeout},
	)
	if l.PreLoginTimeout.Duration > c.POP3.IdleTimeout.Duration {
		bad("limits.pre_login_timeout", "%v is longer than pop3.idle_timeout (%v)", l.PreLoginTimeout.Duration, c.POP3.IdleTimeout.Duration)
	}
	if l.MaxLoginCommands < 1 {
		bad("limits.max_login_commands", "must be at least 1")
	}
	if l.MaxCommands < 0 {
		bad("limits.max_commands", "must not be negative (0: 1000 plus 10 per message)")
	}
}

// keyDuration is a duration key and its value.
type keyDuration struct {
	key string
	v   Duration
}

// mustBePositive reports each of keys whose duration is not positive.
func (c *Config) mustBePositive(keys ...keyDuration) {
	for _, d := range keys {
		if d.v.Duration <= 0 {
			c.file.Bad(d.key, "must be positive, not %v", d.v.Duration)
		}
	}
}

// validateServer checks the [server] table. Whether the user and group
// exist is checked when the server switches to them.
func (c *Config) validateServer() {
	bad := c.file.Bad
	s := c.Server
	if s.User == "root" || s.User == "0" {
		bad("server.user", "must not be root")
	}
	if s.Group == "root" || s.Group == "0" {
		bad("server.group", "must not be root")
	}
	if s.Group != "" && s.User == "" {
		bad("server.group", "needs server.user")
	}
}

// checkIntrospectionURL accepts an absolute https URL, or http to a
// loopback address (a local token service).
func checkIntrospectionURL(s string) error {
	u, err := url.Parse(s)
	if err != nil || u.Host == "" {
		return fmt.Errorf("%q is not an absolute URL", s)
	}
	switch u.Scheme {
	case "https":
		return nil
	case "http":
		h := u.Hostname()
		if ip := net.ParseIP(h); (ip != nil && ip.IsLoopback()) || h == "localhost" {
			return nil
		}
		return fmt.Errorf("%q must use https (http only to a loopback address)", s)
	}
	return fmt.Errorf("%q must be an https URL", s)
}

// isAtextSpecial reports whether r is a character other than a letter or
// digit that an address's local part may hold unquoted: RFC 5322 §3.2.3
// atext, plus the '.' of a dot-atom.
func isAtextSpecial(r rune) bool {
	return strings.ContainsRune("!#$%&'*+-/=?^_`{|}~.", r)
}

// Store returns the kind of store of the location: "maildir" or "mbox".
func (m Mail) Store() string {
	kind, _, _ := strings.Cut(m.Location, ":")
	return kind
}

// MaildirPath returns the path template of a "maildir:" location, and
// that of an "mbox:" location (the part after the store's name).
func (m Mail) MaildirPath() string {
	_, p, _ := strings.Cut(m.Location, ":")
	return p
}
