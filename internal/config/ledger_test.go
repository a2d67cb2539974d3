package config

import (
	"strings"
	"testing"
	"time"
)

const ledgerBase = `
[auth]
passwd_file = "/etc/postoffice/users"
[mail]
location = "maildir:/var/vmail/%d/%n/Maildir"
`

// The user's extra field beats the domain's table, which beats the
// global keys; CAPA before login says USER.
func TestExpirePolicy(t *testing.T) {
	t.Parallel()
	c, err := Parse("t.toml", []byte(ledgerBase+`
[expire]
after_retrieval = "30d"
after_arrival = "365d"
[expire.domains."example.org"]
after_retrieval = "7d"
`))
	if err != nil {
		t.Fatal(err)
	}
	if got := c.ExpireCapa(); got != "30 USER" {
		t.Errorf("ExpireCapa() = %q, want 30 USER", got)
	}
	for _, tc := range []struct {
		user  string
		extra map[string]string
		want  string
	}{
		{"bob@other.org", nil, "30"},
		{"alice@example.org", nil, "7"},
		{"alice@Example.ORG", nil, "7"},
		{"alice@example.org", map[string]string{"expire_after_retrieval": "2d"}, "2"},
		{"alice@example.org", map[string]string{"expire_after_retrieval": "never", "expire_after_arrival": "never"}, "NEVER"},
	} {
		p := c.Policy(tc.user, tc.extra)
		if got := p.Capa(); got != tc.want {
			t.Errorf("Policy(%q, %v).Capa() = %q, want %q", tc.user, tc.extra, got, tc.want)
		}
	}
	if p := c.Policy("bob", nil); p.Arrival != 365*24*time.Hour || !p.HasArrival {
		t.Errorf("after_arrival = %+v", p)
	}
}

func TestLedgerValidate(t *testing.T) {
	t.Parallel()
	_, err := Parse("t.toml", []byte(ledgerBase+`
[pop3]
expire = "30"
[expire]
after_retrieval = "soon"
[devices]
idle_after = "-3d"
[history]
max_entries = -5
`))
	if err == nil {
		t.Fatal("Parse accepted bad [expire], [devices], [history] keys")
	}
	for _, key := range []string{"pop3.expire", "expire.after_retrieval", "devices.idle_after", "history.max_entries"} {
		if !strings.Contains(err.Error(), key) {
			t.Errorf("error does not name %s:\n%v", key, err)
		}
	}
}
