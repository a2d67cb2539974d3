package config

import (
	"strings"
	"testing"
	"time"
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
	if len(c.LMTP.Listen) != 0 || c.LMTP.Socket != "" || c.LMTP.MaxMessageSize != 50<<20 || c.LMTP.SocketPerm() != 0o666 {
		t.Errorf("LMTP defaults = %+v", c.LMTP)
	}
	lmtp := good + `
[lmtp]
listen = ["127.0.0.1:2424"]
socket = "/run/postoffice/lmtp.sock"
socket_mode = "0660"
max_message_size = 1000
hostname = "mx.example.org"
`
	c, err = Parse("x.toml", []byte(lmtp))
	if err != nil {
		t.Fatal(err)
	}
	if c.LMTP.Listen[0] != "127.0.0.1:2424" || c.LMTP.SocketPerm() != 0o660 || c.LMTP.MaxMessageSize != 1000 || c.LMTP.Hostname != "mx.example.org" {
		t.Errorf("LMTP = %+v", c.LMTP)
	}
	tests := []struct{ old, new, want string }{
		{`"127.0.0.1:2424"`, `"2424"`, `x.toml:19: lmtp.listen: "2424" is not host:port`},
		{`"/run/postoffice/lmtp.sock"`, `"lmtp.sock"`, `x.toml:20: lmtp.socket: must be an absolute path`},
		{`"0660"`, `"rw-rw----"`, `x.toml:21: lmtp.socket_mode: must be octal`},
		{`"0660"`, `"1777"`, `x.toml:21: lmtp.socket_mode: must be octal`},
		{`= 1000`, `= 0`, `x.toml:22: lmtp.max_message_size: must be a positive`},
		{`"mx.example.org"`, `"mx example"`, `x.toml:23: lmtp.hostname: must be one word`},
		{`hostname`, `host`, `x.toml:23: lmtp.host: unknown key`},
	}
	for _, tt := range tests {
		_, err := Parse("x.toml", []byte(strings.Replace(lmtp, tt.old, tt.new, 1)))
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("Parse(%s -> %s) = %v, want error containing %q", tt.old, tt.new, err, tt.want)
		}
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
