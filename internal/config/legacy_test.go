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
	if err == nil || !strings.Contains(err.Error(), `pop3.client_workarounds: unknown workaround "outlook-idle" (known: outlook-no-nuls, oe-ns-eoh, bare-auth)`) {
		t.Errorf("unknown workaround: %v", err)
	}
}
