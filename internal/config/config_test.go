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
