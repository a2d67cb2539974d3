package config

import (
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// The legacy keys: all off by default, parsed when set.
func TestParseLegacy(t *testing.T) {
	t.Parallel()
	c, err := Parse("good.toml", []byte(good))
	if err != nil {
		t.Fatal(err)
	}
	if c.POP3.EnableLAST || len(c.POP3.ClientWorkarounds) > 0 || len(c.SDPS.Domains) > 0 || c.RPOP.Enabled {
		t.Errorf("legacy defaults: %+v %+v %+v", c.POP3, c.SDPS, c.RPOP)
	}
	text := strings.Replace(good, "expire = \"30\"\n", "expire = \"30\"\nenable_last = true\nclient_workarounds = [\"outlook-no-nuls\", \"oe-ns-eoh\", \"bare-auth\"]\n", 1) +
		"\n[sdps]\ndomains = [\"host.example\"]\n\n[rpop]\nenabled = true\ntrusted_networks = [\"192.0.2.0/24\"]\nmap = \"/etc/postoffice/rpop.map\"\n"
	c, err = Parse("x.toml", []byte(text))
	if err != nil {
		t.Fatal(err)
	}
	if !c.POP3.EnableLAST || len(c.POP3.ClientWorkarounds) != 3 || c.SDPS.Domains[0] != "host.example" || !c.RPOP.Enabled || len(c.RPOP.Trusted()) != 1 {
		t.Errorf("parsed: %+v %+v %+v", c.POP3, c.SDPS, c.RPOP)
	}
}

func TestParseLegacyErrors(t *testing.T) {
	t.Parallel()
	for _, c := range []struct{ text, want []string }{
		{[]string{"[sdps]", `domains = ["host example"]`}, []string{`x.toml:19: sdps.domains: "host example" is not a domain name`}},
		{[]string{"[rpop]", "enabled = true"}, []string{
			"x.toml:18: rpop.trusted_networks: is required when rpop.enabled is true",
			"x.toml:18: rpop.map: is required when rpop.enabled is true"}},
		{[]string{"[rpop]", `trusted_networks = ["nowhere"]`, `map = "rpop.map"`}, []string{
			`x.toml:19: rpop.trusted_networks: "nowhere" is neither an address nor a CIDR prefix`,
			`x.toml:20: rpop.map: must be an absolute path, not "rpop.map"`}},
	} {
		_, err := Parse("x.toml", []byte(good+"\n"+strings.Join(c.text, "\n")+"\n"))
		e, ok := err.(*Error)
		if !ok {
			t.Errorf("%q: err = %v, want problems", c.text, err)
			continue
		}
		if diff := cmp.Diff(c.want, e.Problems); diff != "" {
			t.Errorf("%q problems (-want +got):\n%s", c.text, diff)
		}
	}
	text := strings.Replace(good, "expire = \"30\"\n", "expire = \"30\"\nclient_workarounds = [\"outlook-idle\"]\n", 1)
	_, err := Parse("x.toml", []byte(text))
	if err == nil || !strings.Contains(err.Error(), `pop3.client_workarounds: unknown workaround "outlook-idle" (known: outlook-no-nuls, oe-ns-eoh, bare-auth, xtnd-xmit)`) {
		t.Errorf("unknown workaround: %v", err)
	}
}

// [xtnd]: off and defaulted when absent; "xtnd-xmit" needs a relay, a
// relay off loopback needs STARTTLS, and the AUTH keys follow the fetch
// accounts' smtp_* rules.
func TestParseXTND(t *testing.T) {
	t.Parallel()
	c, err := Parse("good.toml", []byte(good))
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(XTND{MaxMessageSize: 10 << 20, MaxRecipients: 100}, c.XTND); diff != "" {
		t.Errorf("[xtnd] defaults (-want +got):\n%s", diff)
	}
	on := strings.Replace(good, "expire = \"30\"\n", "expire = \"30\"\nclient_workarounds = [\"xtnd-xmit\"]\n", 1)
	c, err = Parse("x.toml", []byte(on+"\n[xtnd]\nrelay = \"smtp.example.org:587\"\nstarttls = true\nca_file = \"/etc/ssl/relay.pem\"\nuser = \"pop\"\npassword_file = \"/etc/postoffice/relay.pw\"\nsender_domain = \"example.org\"\nmax_message_size = 5000000\nmax_recipients = 20\n"))
	if err != nil {
		t.Fatal(err)
	}
	want := XTND{Relay: "smtp.example.org:587", StartTLS: true, CAFile: "/etc/ssl/relay.pem", User: "pop",
		PasswordFile: "/etc/postoffice/relay.pw", SenderDomain: "example.org", MaxMessageSize: 5000000, MaxRecipients: 20}
	if diff := cmp.Diff(want, c.XTND); diff != "" {
		t.Errorf("[xtnd] (-want +got):\n%s", diff)
	}
	if _, err := Parse("x.toml", []byte(on+"\n[xtnd]\nrelay = \"127.0.0.1:25\"\n")); err != nil {
		t.Errorf("a loopback relay without STARTTLS: %v", err)
	}
	for _, tc := range []struct {
		text string
		want []string
	}{
		{on, []string{`x.toml:7: pop3.client_workarounds: "xtnd-xmit" needs xtnd.relay (the SMTP server that sends the messages)`}},
		{on + "\n[xtnd]\nrelay = \"smtp.example.org:587\"\n", []string{
			"x.toml:19: xtnd.starttls: is required for a relay that is not on loopback: messages and the relay password would cross the network in the clear"}},
		{good + "\n[xtnd]\nrelay = \"smtp.example.org\"\nca_file = \"relay.pem\"\nuser = \"pop\"\nsender_domain = \"no domain\"\nmax_message_size = 0\nmax_recipients = -1\n", []string{
			`x.toml:19: xtnd.relay: "smtp.example.org" is not host:port`,
			"x.toml:20: xtnd.ca_file: needs xtnd.starttls = true",
			"x.toml:21: xtnd.user: xtnd.user and xtnd.password_file go together",
			"x.toml:21: xtnd.user: needs xtnd.starttls = true: the password would cross the network in the clear",
			`x.toml:20: xtnd.ca_file: must be an absolute path, not "relay.pem"`,
			`x.toml:22: xtnd.sender_domain: "no domain" is not a domain name`,
			"x.toml:23: xtnd.max_message_size: must be at least 1",
			"x.toml:24: xtnd.max_recipients: must be at least 1"}},
	} {
		_, err := Parse("x.toml", []byte(tc.text))
		e, ok := err.(*Error)
		if !ok {
			t.Errorf("%q: err = %v, want problems", tc.text, err)
			continue
		}
		if diff := cmp.Diff(tc.want, e.Problems); diff != "" {
			t.Errorf("%q problems (-want +got):\n%s", tc.text, diff)
		}
	}
}
