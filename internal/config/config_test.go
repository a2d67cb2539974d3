package config

import (
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

const good = `
[pop3]
listen = ["127.0.0.1:1110"]
listen_tls = ["127.0.0.1:1995"]
idle_timeout = "15m"
expire = "30"

[tls]
cert = "/etc/ssl/pop.pem"
key = "/etc/ssl/pop.key"

[auth]
passwd_file = "/etc/postoffice/passwd"

[mail]
location = "maildir:/var/vmail/%d/%n/Maildir"
`

func TestParseGood(t *testing.T) {
	t.Parallel()
	c, err := Parse("good.toml", []byte(good))
	if err != nil {
		t.Fatal(err)
	}
	if c.POP3.IdleTimeout.Duration != 15*time.Minute || c.POP3.AuthFailDelay.Duration != time.Second {
		t.Errorf("durations: %v %v", c.POP3.IdleTimeout, c.POP3.AuthFailDelay)
	}
	if got := c.Mail.MaildirPath(); got != "/var/vmail/%d/%n/Maildir" {
		t.Errorf("MaildirPath = %q", got)
	}
	if c.Mail.VerifySizeFields {
		t.Errorf("mail.verify_size_fields = true by default, want false (W= trusted)")
	}
}

// pop3.sendfile is on unless a file turns it off.
func TestParseSendfile(t *testing.T) {
	t.Parallel()
	c, err := Parse("x.toml", []byte(good))
	if err != nil {
		t.Fatal(err)
	}
	if !c.POP3.Sendfile {
		t.Errorf("pop3.sendfile = false by default, want true")
	}
	text := strings.Replace(good, "[pop3]\n", "[pop3]\nsendfile = false\n", 1)
	if text == good {
		t.Fatal("the test configuration has no [pop3] table")
	}
	if c, err = Parse("x.toml", []byte(text)); err != nil {
		t.Fatal(err)
	}
	if c.POP3.Sendfile {
		t.Errorf("pop3.sendfile = false read as true")
	}
}

func TestParseVerifySizeFields(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		line string
		want bool
	}{
		{"verify_size_fields = true\n", true},
		{"verify_size_fields = false\n", false},
	} {
		c, err := Parse("x.toml", []byte(good+tt.line))
		if err != nil {
			t.Fatalf("Parse(%q): %v", tt.line, err)
		}
		if c.Mail.VerifySizeFields != tt.want {
			t.Errorf("Parse(%q): VerifySizeFields = %v, want %v", tt.line, c.Mail.VerifySizeFields, tt.want)
		}
	}
	if _, err := Parse("x.toml", []byte(good+"verify_size_fields = \"yes\"\n")); err == nil {
		t.Errorf("Parse(verify_size_fields = \"yes\") = nil error, want a type error")
	}
}

func TestParseErrorsNameKeyAndLine(t *testing.T) {
	t.Parallel()
	tests := []struct{ text, want string }{
		{good + "bogus = 1\n", "x.toml:17: mail.bogus: unknown key"},
		{strings.Replace(good, `"15m"`, `"5m"`, 1), "x.toml:5: pop3.idle_timeout: 5m0s is below"},
		{strings.Replace(good, `"15m"`, `"soon"`, 1), `x.toml:5`},
		{strings.Replace(good, `"30"`, `"later"`, 1), `x.toml:6: pop3.expire: must be "NEVER"`},
		{strings.Replace(good, `maildir:`, `dbox:`, 1), `x.toml:16: mail.location: unsupported store "dbox"`},
		{strings.Replace(good, `cert = "/etc/ssl/pop.pem"`, ``, 1), `pop3.listen_tls: needs tls.cert and tls.key`},
		{strings.Replace(good, `passwd_file = "/etc/postoffice/passwd"`, ``, 1), `auth.passwd_file: is required`},
		{"[pop3\n", "x.toml:2: expected"},
	}
	for _, tt := range tests {
		_, err := Parse("x.toml", []byte(tt.text))
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("Parse(...%q...) = %v, want error containing %q", tt.want, err, tt.want)
		}
	}
}

func TestParseReportsEveryProblem(t *testing.T) {
	t.Parallel()
	_, err := Parse("x.toml", []byte("[pop3]\nidle_timeout = \"1m\"\nmax_bad_commands = 0\n"))
	e, ok := err.(*Error)
	if !ok || len(e.Problems) < 4 {
		t.Fatalf("Parse = %v, want several problems", err)
	}
}

func TestParseLMTP(t *testing.T) {
	t.Parallel()
	c, err := Parse("x.toml", []byte(good))
	if err != nil {
		t.Fatal(err)
	}
	if len(c.LMTP.Listen) != 0 || c.LMTP.Socket != "" || c.LMTP.MaxMessageSize != 50<<20 || c.LMTP.SocketPerm() != 0o666 ||
		c.LMTP.RecipientDelimiter != "+" {
		t.Errorf("LMTP defaults = %+v", c.LMTP)
	}
	lmtp := good + `
[lmtp]
listen = ["127.0.0.1:2424"]
socket = "/run/postoffice/lmtp.sock"
socket_mode = "0660"
max_message_size = 1000
hostname = "mx.example.org"
recipient_delimiter = "+-"
`
	c, err = Parse("x.toml", []byte(lmtp))
	if err != nil {
		t.Fatal(err)
	}
	if c.LMTP.Listen[0] != "127.0.0.1:2424" || c.LMTP.SocketPerm() != 0o660 || c.LMTP.MaxMessageSize != 1000 || c.LMTP.Hostname != "mx.example.org" ||
		c.LMTP.RecipientDelimiter != "+-" {
		t.Errorf("LMTP = %+v", c.LMTP)
	}
	// "" turns plus-addressing off (the default is "+").
	c, err = Parse("x.toml", []byte(strings.Replace(lmtp, `recipient_delimiter = "+-"`, `recipient_delimiter = ""`, 1)))
	if err != nil || c.LMTP.RecipientDelimiter != "" {
		t.Errorf(`recipient_delimiter = "": %v, %q`, err, c.LMTP.RecipientDelimiter)
	}
	tests := []struct{ old, new, want string }{
		{`"127.0.0.1:2424"`, `"2424"`, `x.toml:19: lmtp.listen: "2424" is not host:port`},
		{`"/run/postoffice/lmtp.sock"`, `"lmtp.sock"`, `x.toml:20: lmtp.socket: must be an absolute path`},
		{`"0660"`, `"rw-rw----"`, `x.toml:21: lmtp.socket_mode: must be octal`},
		{`"0660"`, `"1777"`, `x.toml:21: lmtp.socket_mode: must be octal`},
		{`= 1000`, `= 0`, `x.toml:22: lmtp.max_message_size: must be a positive`},
		{`"mx.example.org"`, `"mx example"`, `x.toml:23: lmtp.hostname: must be one word`},
		{`hostname`, `host`, `x.toml:23: lmtp.host: unknown key`},
		{`"+-"`, `"+@"`, `x.toml:24: lmtp.recipient_delimiter: '@' cannot separate a detail`},
		{`"+-"`, `" "`, `x.toml:24: lmtp.recipient_delimiter: ' ' cannot separate a detail`},
		{`"+-"`, `"a"`, `x.toml:24: lmtp.recipient_delimiter: 'a' cannot separate a detail`},
	}
	for _, tt := range tests {
		_, err := Parse("x.toml", []byte(strings.Replace(lmtp, tt.old, tt.new, 1)))
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("Parse(%s -> %s) = %v, want error containing %q", tt.old, tt.new, err, tt.want)
		}
	}
}

func TestParseMetrics(t *testing.T) {
	t.Parallel()
	c, err := Parse("x.toml", []byte(good))
	if err != nil {
		t.Fatal(err)
	}
	if c.Metrics.Listen != "" {
		t.Errorf("metrics.listen defaults to %q, want off", c.Metrics.Listen)
	}
	c, err = Parse("x.toml", []byte(good+"\n[metrics]\nlisten = \"127.0.0.1:9110\"\n"))
	if err != nil || c.Metrics.Listen != "127.0.0.1:9110" {
		t.Fatalf("Parse = %v, %v", c, err)
	}
	_, err = Parse("x.toml", []byte(good+"\n[metrics]\nlisten = \"9110\"\n"))
	if err == nil || !strings.Contains(err.Error(), `metrics.listen: "9110" is not host:port`) {
		t.Errorf("Parse(listen = \"9110\") = %v", err)
	}
}

func TestParseQuota(t *testing.T) {
	t.Parallel()
	c, err := Parse("x.toml", []byte(good+"\n[quota]\nbytes = 1000000\nmessages = 500\npermanent = true\n"))
	if err != nil {
		t.Fatal(err)
	}
	if c.Quota != (Quota{Bytes: 1000000, Messages: 500, Permanent: true}) {
		t.Errorf("Quota = %+v", c.Quota)
	}
	_, err = Parse("x.toml", []byte(good+"\n[quota]\nbytes = -1\nmessages = -2\n"))
	for _, want := range []string{"x.toml:19: quota.bytes: must not be negative", "x.toml:20: quota.messages: must not be negative"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("Parse(negative quota) = %v, want error containing %q", err, want)
		}
	}
}

func TestParseTLSAndAuthDefaults(t *testing.T) {
	t.Parallel()
	c, err := Parse("good.toml", []byte(good))
	if err != nil {
		t.Fatal(err)
	}
	a := c.Auth
	if a.AllowPlaintext || a.APOP || a.Mechanisms != nil || a.ExternalUsername != "cn" || a.OAuth != nil {
		t.Errorf("Auth defaults = %+v", a)
	}
	if c.TLS.ClientCA != "" || c.TLS.Certificates != nil || !c.STLS() {
		t.Errorf("TLS defaults = %+v, STLS %v", c.TLS, c.STLS())
	}
	if got, want := c.TLS.Pairs(), []CertPair{{"/etc/ssl/pop.pem", "/etc/ssl/pop.key"}}; !slices.Equal(got, want) {
		t.Errorf("TLS.Pairs() = %v, want %v", got, want)
	}
	noTLS := strings.Replace(strings.Replace(good, `listen_tls = ["127.0.0.1:1995"]`, ``, 1), "[tls]\ncert = \"/etc/ssl/pop.pem\"\nkey = \"/etc/ssl/pop.key\"\n", "", 1)
	c, err = Parse("x.toml", []byte(noTLS))
	if err != nil {
		t.Fatal(err)
	}
	if c.STLS() || c.TLS.Pairs() != nil {
		t.Errorf("without [tls]: STLS %v, Pairs %v", c.STLS(), c.TLS.Pairs())
	}
}

// full sets every new [tls] and [auth] key; its line numbers are used below.
const full = `[pop3]
listen = ["0.0.0.0:110"]

[tls]
cert = "/etc/ssl/a.pem"
key = "/etc/ssl/a.key"
certificates = [{cert = "/etc/ssl/b.pem", key = "/etc/ssl/b.key"}, {cert = "/etc/ssl/c.pem", key = "/etc/ssl/c.key"}]
client_ca = "/etc/ssl/clients.pem"

[auth]
passwd_file = "/etc/postoffice/passwd"
allow_plaintext = true
apop = true
mechanisms = ["scram-sha-256-plus", "SCRAM-SHA-256", "plain", "OAUTHBEARER", "EXTERNAL"]
external_username = "email"

[auth.oauth]
jwks_file = "/etc/postoffice/jwks.json"
issuer = "https://id.example.org"
audience = "pop3"

[mail]
location = "maildir:/var/vmail/%d/%n/Maildir"
`

func TestParseTLSAndAuth(t *testing.T) {
	t.Parallel()
	c, err := Parse("x.toml", []byte(full))
	if err != nil {
		t.Fatal(err)
	}
	want := Default().Auth
	want = Auth{
		Penalty: want.Penalty, PenaltyBase: want.PenaltyBase, PenaltyMax: want.PenaltyMax,
		PenaltyWindow: want.PenaltyWindow, BanAfter: want.BanAfter, BanTime: want.BanTime,
		UserPenaltyAfter: want.UserPenaltyAfter, UserPenaltyMax: want.UserPenaltyMax,
		PasswdFile:       "/etc/postoffice/passwd",
		DefaultScheme:    "CRYPT",
		AllowPlaintext:   true,
		APOP:             true,
		Mechanisms:       []string{"SCRAM-SHA-256-PLUS", "SCRAM-SHA-256", "PLAIN", "OAUTHBEARER", "EXTERNAL"},
		ExternalUsername: "email",
		OAuth: &OAuth{
			JWKSFile: "/etc/postoffice/jwks.json", Issuer: "https://id.example.org", Audience: "pop3",
			UsernameClaim: "email",
		},
	}
	if diff := cmp.Diff(want, c.Auth); diff != "" {
		t.Errorf("Auth mismatch (-want +got):\n%s", diff)
	}
	wantPairs := []CertPair{{"/etc/ssl/a.pem", "/etc/ssl/a.key"}, {"/etc/ssl/b.pem", "/etc/ssl/b.key"}, {"/etc/ssl/c.pem", "/etc/ssl/c.key"}}
	if got := c.TLS.Pairs(); !slices.Equal(got, wantPairs) || c.TLS.ClientCA != "/etc/ssl/clients.pem" {
		t.Errorf("TLS = %+v, Pairs %v", c.TLS, got)
	}

	// The array-of-tables form works as well.
	tables := strings.Replace(full, `certificates = [{cert = "/etc/ssl/b.pem", key = "/etc/ssl/b.key"}, {cert = "/etc/ssl/c.pem", key = "/etc/ssl/c.key"}]
client_ca = "/etc/ssl/clients.pem"
`, `client_ca = "/etc/ssl/clients.pem"

[[tls.certificates]]
cert = "/etc/ssl/b.pem"
key = "/etc/ssl/b.key"

[[tls.certificates]]
cert = "/etc/ssl/c.pem"
key = "/etc/ssl/c.key"
`, 1)
	c, err = Parse("x.toml", []byte(tables))
	if err != nil {
		t.Fatal(err)
	}
	if got := c.TLS.Pairs(); !slices.Equal(got, wantPairs) {
		t.Errorf("[[tls.certificates]]: Pairs = %v, want %v", got, wantPairs)
	}

	introspection := strings.Replace(full, `jwks_file = "/etc/postoffice/jwks.json"`, `introspection_url = "https://id.example.org/introspect"
client_id = "pop3"
client_secret_file = "/etc/postoffice/oauth-secret"
username_claim = "preferred_username"`, 1)
	c, err = Parse("x.toml", []byte(introspection))
	if err != nil {
		t.Fatal(err)
	}
	if o := c.Auth.OAuth; o.IntrospectionURL != "https://id.example.org/introspect" || o.ClientID != "pop3" ||
		o.ClientSecretFile != "/etc/postoffice/oauth-secret" || o.UsernameClaim != "preferred_username" || o.JWKSFile != "" {
		t.Errorf("introspection OAuth = %+v", o)
	}

	// Without username_claim, introspection names the user by RFC 7662's
	// "username"; issuer, audience and accepted_client_ids are kept for it.
	introspection = strings.Replace(full, `jwks_file = "/etc/postoffice/jwks.json"`, `introspection_url = "https://id.example.org/introspect"
client_id = "pop3"
client_secret_file = "/etc/postoffice/oauth-secret"
accepted_client_ids = ["thunderbird", "mutt"]`, 1)
	c, err = Parse("x.toml", []byte(introspection))
	if err != nil {
		t.Fatal(err)
	}
	wantOAuth := &OAuth{IntrospectionURL: "https://id.example.org/introspect", ClientID: "pop3",
		ClientSecretFile: "/etc/postoffice/oauth-secret", Issuer: "https://id.example.org", Audience: "pop3",
		ClientIDs: []string{"thunderbird", "mutt"}, UsernameClaim: "username"}
	if diff := cmp.Diff(wantOAuth, c.Auth.OAuth); diff != "" {
		t.Errorf("introspection OAuth mismatch (-want +got):\n%s", diff)
	}
}

func TestParseTLSAndAuthErrors(t *testing.T) {
	t.Parallel()
	tests := []struct{ old, new, want string }{
		// [tls]
		{`cert = "/etc/ssl/a.pem"` + "\n" + `key = "/etc/ssl/a.key"`, "\n",
			`x.toml:7: tls.certificates: needs tls.cert and tls.key (the default certificate)`},
		{`cert = "/etc/ssl/a.pem"` + "\n" + `key = "/etc/ssl/a.key"`, "\n", `x.toml:8: tls.client_ca: needs tls.cert and tls.key`},
		{`key = "/etc/ssl/b.key"`, `kee = "/etc/ssl/b.key"`, `x.toml:7: tls.certificates: entry 1 needs both cert and key`},
		{`key = "/etc/ssl/b.key"`, `kee = "/etc/ssl/b.key"`, `x.toml:7: tls.certificates.kee: unknown key`},
		{`{cert = "/etc/ssl/c.pem", `, `{`, `x.toml:7: tls.certificates: entry 2 needs both cert and key`},
		{`client_ca = `, `client_cas = `, `x.toml:8: tls.client_cas: unknown key`},
		// [auth]
		{`"plain"`, `"DIGEST-MD5"`, `x.toml:14: auth.mechanisms: unknown mechanism "DIGEST-MD5" (known: PLAIN LOGIN CRAM-MD5`},
		{`"plain"`, `"scram-sha-256"`, `x.toml:14: auth.mechanisms: SCRAM-SHA-256 is listed twice`},
		{`"EXTERNAL"`, `"EXTERNAL", "xoauth2"`, ``}, // fine: [auth.oauth] is there
		{"[auth.oauth]\n", "[auth.oauth_x]\n", `x.toml:14: auth.mechanisms: OAUTHBEARER needs an [auth.oauth] table`},
		{`client_ca = "/etc/ssl/clients.pem"`, ``, `x.toml:14: auth.mechanisms: EXTERNAL needs tls.client_ca`},
		{`"email"`, `"uid"`, `x.toml:15: auth.external_username: must be "cn" or "email", not "uid"`},
		{`allow_plaintext = true`, `allow_plaintext = "yes"`, `line 12 (last key "auth.allow_plaintext")`},
		// [auth.oauth]
		{`jwks_file = "/etc/postoffice/jwks.json"`, ``, `x.toml:17: auth.oauth: set one of jwks_file and introspection_url`},
		{`jwks_file = "/etc/postoffice/jwks.json"`, `jwks_file = "/etc/postoffice/jwks.json"` + "\n" + `introspection_url = "https://id.example.org/i"`,
			`x.toml:19: auth.oauth.introspection_url: set jwks_file or introspection_url, not both`},
		{`issuer = "https://id.example.org"`, ``, `x.toml:17: auth.oauth.issuer: is required with jwks_file`},
		{`audience = "pop3"`, `client_id = "pop3"`, `x.toml:17: auth.oauth.audience: is required with jwks_file`},
		{`audience = "pop3"`, `audience = "pop3"` + "\n" + `client_id = "pop3"`,
			`x.toml:21: auth.oauth.client_id: client_id and client_secret_file are for introspection_url only`},
		{`jwks_file = "/etc/postoffice/jwks.json"`, `introspection_url = "http://id.example.org/i"`,
			`x.toml:18: auth.oauth.introspection_url: "http://id.example.org/i" must use https (http only to a loopback address)`},
		{`jwks_file = "/etc/postoffice/jwks.json"`, `introspection_url = "/introspect"`,
			`x.toml:18: auth.oauth.introspection_url: "/introspect" is not an absolute URL`},
		{`jwks_file = "/etc/postoffice/jwks.json"`, `introspection_url = "ftp://id.example.org/i"`,
			`x.toml:18: auth.oauth.introspection_url: "ftp://id.example.org/i" must be an https URL`},
		{`jwks_file = "/etc/postoffice/jwks.json"`, `introspection_url = "http://127.0.0.1:8080/i"`,
			`x.toml:17: auth.oauth.client_id: introspection_url needs client_id and client_secret_file`},
		{`audience = "pop3"`, `audience = "pop3"` + "\n" + `secret = "x"`, `x.toml:21: auth.oauth.secret: unknown key`},
		{`audience = "pop3"`, `audience = "pop3"` + "\n" + `username_claim = "aud"`,
			`x.toml:21: auth.oauth.username_claim: "aud" describes the token, not its user`},
		{`audience = "pop3"`, `audience = "pop3"` + "\n" + `username_claim = "client_id"`,
			`x.toml:21: auth.oauth.username_claim: "client_id" describes the token, not its user`},
		{`audience = "pop3"`, `audience = "pop3"` + "\n" + `accepted_client_ids = ["mutt", " "]`,
			`x.toml:21: auth.oauth.accepted_client_ids: an entry is empty`},
		{`audience = "pop3"`, `audience = "pop3"` + "\n" + `accepted_client_ids = ["mutt"]`, ``},
	}
	for _, tt := range tests {
		text := strings.Replace(full, tt.old, tt.new, 1)
		if text == full {
			t.Fatalf("test edit %q -> %q does not apply", tt.old, tt.new)
		}
		_, err := Parse("x.toml", []byte(text))
		if tt.want == "" {
			if err != nil {
				t.Errorf("Parse(%s -> %s) = %v, want success", tt.old, tt.new, err)
			}
			continue
		}
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("Parse(%s -> %s) = %v, want error containing %q", tt.old, tt.new, err, tt.want)
		}
	}
	// -PLUS needs TLS at all.
	noTLS := "[pop3]\nlisten = [\"127.0.0.1:110\"]\n[auth]\npasswd_file = \"/p\"\nmechanisms = [\"SCRAM-SHA-1-PLUS\"]\n[mail]\nlocation = \"maildir:/m\"\n"
	if _, err := Parse("x.toml", []byte(noTLS)); err == nil || !strings.Contains(err.Error(), "x.toml:5: auth.mechanisms: SCRAM-SHA-1-PLUS needs TLS: set tls.cert and tls.key") {
		t.Errorf("Parse(SCRAM-SHA-1-PLUS without TLS) = %v", err)
	}
}

func TestParseLimitsDefaults(t *testing.T) {
	t.Parallel()
	c, err := Parse("x.toml", []byte(good))
	if err != nil {
		t.Fatal(err)
	}
	wantLimits := Limits{
		MaxConnections: 20000, MaxConnectionsPerIP: 20, IPv6Prefix: 64,
		ProxyHeaderTimeout: Duration{5 * time.Second}, PreLoginTimeout: Duration{time.Minute},
		WriteTimeout: Duration{2 * time.Minute}, MaxLoginCommands: 50,
	}
	if diff := cmp.Diff(wantLimits, c.Limits); diff != "" {
		t.Errorf("Limits defaults (-want +got):\n%s", diff)
	}
	if c.POP3.MaxBadCommands != 20 {
		t.Errorf("pop3.max_bad_commands default = %d, want 20", c.POP3.MaxBadCommands)
	}
	a := c.Auth
	if !a.Penalty || a.PenaltyBase.Duration != 2*time.Second || a.PenaltyMax.Duration != 15*time.Second ||
		a.PenaltyWindow.Duration != time.Hour || a.BanAfter != 10 || a.BanTime.Duration != 15*time.Minute ||
		a.UserPenaltyAfter != 5 || a.UserPenaltyMax.Duration != 8*time.Second {
		t.Errorf("auth penalty defaults = %+v", a)
	}
	if c.Server != (Server{}) {
		t.Errorf("Server defaults = %+v, want empty", c.Server)
	}
	if c.Limits.Trusted() == nil || len(c.Limits.Trusted()) != 0 || len(c.Limits.ProxyFrom()) != 0 {
		t.Errorf("Trusted, ProxyFrom = %v, %v, want empty", c.Limits.Trusted(), c.Limits.ProxyFrom())
	}
}

const hardened = good + `
[server]
user = "vmail"
group = "mail"

[limits]
max_connections = 100
max_connections_per_ip = 5
ipv6_prefix = 48
trusted_networks = ["10.1.0.0/16", "2001:db8::1"]
proxy_protocol_from = ["192.0.2.10", "192.0.2.0/28"]
proxy_header_timeout = "2s"
pre_login_timeout = "30s"
write_timeout = "90s"
max_login_commands = 20
max_commands = 5000
`

func TestParseLimitsAndServer(t *testing.T) {
	t.Parallel()
	text := strings.Replace(hardened, `passwd_file = "/etc/postoffice/passwd"`, `passwd_file = "/etc/postoffice/passwd"
penalty = true
penalty_base = "1s"
penalty_max = "10s"
penalty_window = "30m"
ban_after = 0
ban_time = "1h"
user_penalty_after = 3
user_penalty_max = "4s"`, 1)
	c, err := Parse("x.toml", []byte(text))
	if err != nil {
		t.Fatal(err)
	}
	if c.Server != (Server{User: "vmail", Group: "mail"}) {
		t.Errorf("Server = %+v", c.Server)
	}
	l := c.Limits
	if l.MaxConnections != 100 || l.MaxConnectionsPerIP != 5 || l.IPv6Prefix != 48 ||
		l.ProxyHeaderTimeout.Duration != 2*time.Second || l.PreLoginTimeout.Duration != 30*time.Second ||
		l.WriteTimeout.Duration != 90*time.Second || l.MaxLoginCommands != 20 || l.MaxCommands != 5000 {
		t.Errorf("Limits = %+v", l)
	}
	wantTrusted := []netip.Prefix{netip.MustParsePrefix("10.1.0.0/16"), netip.MustParsePrefix("2001:db8::1/128")}
	if diff := cmp.Diff(wantTrusted, l.Trusted(), cmp.Comparer(func(a, b netip.Prefix) bool { return a == b })); diff != "" {
		t.Errorf("Trusted (-want +got):\n%s", diff)
	}
	wantProxy := []netip.Prefix{netip.MustParsePrefix("192.0.2.10/32"), netip.MustParsePrefix("192.0.2.0/28")}
	if diff := cmp.Diff(wantProxy, l.ProxyFrom(), cmp.Comparer(func(a, b netip.Prefix) bool { return a == b })); diff != "" {
		t.Errorf("ProxyFrom (-want +got):\n%s", diff)
	}
	a := c.Auth
	if !a.Penalty || a.PenaltyBase.Duration != time.Second || a.PenaltyMax.Duration != 10*time.Second ||
		a.PenaltyWindow.Duration != 30*time.Minute || a.BanAfter != 0 || a.BanTime.Duration != time.Hour ||
		a.UserPenaltyAfter != 3 || a.UserPenaltyMax.Duration != 4*time.Second {
		t.Errorf("auth penalty = %+v", a)
	}

	// "0s" and false are accepted: no delays, and no penalty at all.
	off := strings.Replace(good, `passwd_file = "/etc/postoffice/passwd"`, `passwd_file = "/etc/postoffice/passwd"
penalty = false
penalty_base = "0s"
user_penalty_after = 0`, 1)
	if c, err := Parse("x.toml", []byte(off)); err != nil {
		t.Errorf("Parse(penalty off) = %v", err)
	} else if c.Auth.Penalty || c.Auth.PenaltyBase.Duration != 0 || c.Auth.UserPenaltyAfter != 0 {
		t.Errorf("penalty off: Auth = %+v", c.Auth)
	}
}

func TestParseLimitsErrors(t *testing.T) {
	t.Parallel()
	base := hardened
	// good has 16 lines after its leading newline; [server] starts on 18.
	tests := []struct{ old, new, want string }{
		{`max_connections = 100`, `max_connections = -1`, `x.toml:23: limits.max_connections: must not be negative`},
		{`max_connections_per_ip = 5`, `max_connections_per_ip = -5`, `x.toml:24: limits.max_connections_per_ip: must not be negative`},
		{`ipv6_prefix = 48`, `ipv6_prefix = 47`, `x.toml:25: limits.ipv6_prefix: must be between 48 and 64, not 47`},
		{`ipv6_prefix = 48`, `ipv6_prefix = 65`, `x.toml:25: limits.ipv6_prefix: must be between 48 and 64, not 65`},
		{`"10.1.0.0/16"`, `"10.1.0.0/33"`, `x.toml:26: limits.trusted_networks: "10.1.0.0/33" is neither an address nor a CIDR prefix`},
		{`"192.0.2.10"`, `"lb.example.org"`, `x.toml:27: limits.proxy_protocol_from: "lb.example.org" is neither`},
		{`proxy_header_timeout = "2s"`, `proxy_header_timeout = "0s"`, `x.toml:28: limits.proxy_header_timeout: must be positive`},
		{`pre_login_timeout = "30s"`, `pre_login_timeout = "-30s"`, `x.toml:29: limits.pre_login_timeout: must be positive`},
		{`pre_login_timeout = "30s"`, `pre_login_timeout = "16m"`, `x.toml:29: limits.pre_login_timeout: 16m0s is longer than pop3.idle_timeout (15m0s)`},
		{`pre_login_timeout = "30s"`, `pre_login_timeout = "soon"`, `x.toml:29`},
		{`write_timeout = "90s"`, `write_timeout = "0s"`, `x.toml:30: limits.write_timeout: must be positive`},
		{`max_login_commands = 20`, `max_login_commands = 0`, `x.toml:31: limits.max_login_commands: must be at least 1`},
		{`max_commands = 5000`, `max_commands = -1`, `x.toml:32: limits.max_commands: must not be negative`},
		{`max_commands`, `max_command`, `x.toml:32: limits.max_command: unknown key`},
		{`user = "vmail"`, `user = "root"`, `x.toml:19: server.user: must not be root`},
		{`group = "mail"`, `group = "0"`, `x.toml:20: server.group: must not be root`},
		{`user = "vmail"`, ``, `x.toml:20: server.group: needs server.user`},
		{`group = "mail"`, `chroot = "/x"`, `x.toml:20: server.chroot: unknown key`},
	}
	for _, tt := range tests {
		_, err := Parse("x.toml", []byte(strings.Replace(base, tt.old, tt.new, 1)))
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("Parse(%s -> %s) = %v, want error containing %q", tt.old, tt.new, err, tt.want)
		}
	}
}

func TestParsePenaltyErrors(t *testing.T) {
	t.Parallel()
	// [auth] is line 12 of good; passwd_file line 13; the keys follow.
	text := strings.Replace(good, `passwd_file = "/etc/postoffice/passwd"`, `passwd_file = "/etc/postoffice/passwd"
penalty_base = "1s"
penalty_max = "10s"
penalty_window = "30m"
ban_after = 3
ban_time = "1h"
user_penalty_after = 3
user_penalty_max = "4s"`, 1)
	if _, err := Parse("x.toml", []byte(text)); err != nil {
		t.Fatal(err)
	}
	tests := []struct{ old, new, want string }{
		{`penalty_base = "1s"`, `penalty_base = "-1s"`, `x.toml:14: auth.penalty_base: must not be negative`},
		{`penalty_base = "1s"`, `penalty_base = "20s"`, `x.toml:15: auth.penalty_max: 10s is below auth.penalty_base (20s)`},
		{`penalty_max = "10s"`, `penalty_max = "0s"`, `x.toml:15: auth.penalty_max: must be positive, not 0s`},
		{`penalty_window = "30m"`, `penalty_window = "-1h"`, `x.toml:16: auth.penalty_window: must be positive`},
		{`ban_after = 3`, `ban_after = -1`, `x.toml:17: auth.ban_after: must not be negative`},
		{`ban_time = "1h"`, `ban_time = "0s"`, `x.toml:18: auth.ban_time: must be positive`},
		{`user_penalty_after = 3`, `user_penalty_after = -2`, `x.toml:19: auth.user_penalty_after: must not be negative`},
		{`user_penalty_max = "4s"`, `user_penalty_max = "0s"`, `x.toml:20: auth.user_penalty_max: must be positive`},
		{`ban_after = 3`, `ban_after = "3"`, `line 17`},
		{`ban_time = "1h"`, `penalty = "yes"`, `line 18`},
	}
	for _, tt := range tests {
		_, err := Parse("x.toml", []byte(strings.Replace(text, tt.old, tt.new, 1)))
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("Parse(%s -> %s) = %v, want error containing %q", tt.old, tt.new, err, tt.want)
		}
	}
}

// An unknown key under a [[tls.certificates]] header is reported at its
// own line, with the index of its table; the decoder names it without the
// index ("tls.certificates.kee"), which the file's lines do not know.
func TestParseUnknownKeyInArrayTable(t *testing.T) {
	t.Parallel()
	text := good
	for _, key := range []string{"key", "kee"} {
		text += fmt.Sprintf("\n[[tls.certificates]]\ncert = \"/etc/ssl/%[1]s.pem\"\n%[1]s = \"/etc/ssl/%[1]s.key\"\n", key)
	}
	_, err := Parse("x.toml", []byte(text))
	want := "x.toml:24: tls.certificates.1.kee: unknown key"
	if err == nil || !strings.Contains(err.Error(), want) {
		t.Errorf("Parse = %v, want an error containing %q", err, want)
	}
}

func TestParseUIDLFormat(t *testing.T) {
	t.Parallel()
	mbox := strings.Replace(good, `"maildir:/var/vmail/%d/%n/Maildir"`, `"mbox:/var/mail/%u"`, 1)
	for _, tt := range []struct{ text, want string }{
		{good + "uidl_format = \"%08Xu%08Xv\"\n", ""},
		{good + "uidl_format = \"%f\"\n", ""},
		{mbox + "uidl_format = \"%m\"\n", ""},
		{mbox + "uidl_format = \"popa3d\"\n", ""},
		{mbox, ""},
		{good + "uidl_format = \"%08Xu%y\"\n", `x.toml:17: mail.uidl_format: unknown variable "%y"`},
		{good + "uidl_format = \"%m\"\n", `x.toml:17: mail.uidl_format: %m (header MD5) exists for mbox locations only`},
		{mbox + "uidl_format = \"%g\"\n", `x.toml:17: mail.uidl_format: only %m exists for mbox locations`},
		{mbox + "uidl_format = \"%08Xu%08Xv\"\n", `x.toml:17: mail.uidl_format: only %m exists for mbox locations`},
		{good + "uidl_format = \"popa3d\"\n", `x.toml:17: mail.uidl_format: "popa3d" needs an mbox location`},
	} {
		c, err := Parse("x.toml", []byte(tt.text))
		if tt.want == "" {
			if err != nil {
				t.Errorf("Parse(...%q) = %v", tt.text[len(good)-30:], err)
			}
			continue
		}
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("Parse(...) = %v, want error containing %q", err, tt.want)
		}
		_ = c
	}
}
