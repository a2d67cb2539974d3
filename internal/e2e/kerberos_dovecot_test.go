package e2e

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/postoffice-mail/postoffice/internal/testutil/dovecot"
	"github.com/postoffice-mail/postoffice/internal/testutil/krbtest"
)

// krbDovecotMessages are what Dovecot serves to the fetch tests: a dot
// line, an empty body, a long one.
var krbDovecotMessages = []string{
	"From: a@example.org\r\nSubject: one\r\n\r\nfirst\r\n.dot line\r\n",
	"From: b@example.org\r\nSubject: two\r\n\r\n",
	"From: c@example.org\r\nSubject: three\r\n\r\n" + fmt.Sprintf("%0998d\r\n", 3),
}

// startDovecotGSSAPI starts Dovecot offering PLAIN and GSSAPI, with a
// keytab for pop/localhost of the test realm, alice's Maildir holding
// krbDovecotMessages. Dovecot's auth process reads the realm's krb5.conf
// (import_environment) for krb5_kuserok, which maps alice@REALM to the
// local name alice. auth_username_format %Ln makes a login without an
// authorization identity (user name alice@POSTOFFICE.TEST) the user alice,
// as a site with one realm configures it.
func startDovecotGSSAPI(t *testing.T, r *krbtest.Realm) *dovecot.Server {
	t.Helper()
	kt := r.Keytab(t, "pop/"+krbtest.Host)
	d := dovecot.StartWith(t, dovecot.Options{
		Users:      []string{"alice"},
		Mechanisms: []string{"plain", "gssapi"},
		Config: fmt.Sprintf("auth_krb5_keytab = %s\nauth_gssapi_hostname = %s\nauth_username_format = %%Ln\nimport_environment = TZ KRB5_CONFIG=%s\n",
			kt, krbtest.Host, r.Config),
	})
	d.Deliver(t, "alice", krbDovecotMessages)
	return d
}

// ourFetch runs postoffice fetch with the account lines (after name and
// server) into a new Maildir and returns the messages it holds, sorted.
func ourFetch(t *testing.T, env []string, addr, account string) []string {
	t.Helper()
	dir := t.TempDir()
	md := filepath.Join(dir, "Maildir")
	cfg := filepath.Join(dir, "fetch.toml")
	conf := fmt.Sprintf("[[account]]\nname = \"dovecot\"\nserver = %q\ntls = \"none\"\n%starget = \"maildir:%s\"\nstate_dir = %q\n",
		addr, account, md, filepath.Join(dir, "state"))
	if err := os.WriteFile(cfg, []byte(conf), 0o600); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(binary, "fetch", "--config", cfg)
	cmd.Env = env
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("postoffice fetch:\n%s\n%v\n%s", conf, err, out)
	}
	var got []string
	for _, sub := range []string{"new", "cur"} {
		es, _ := os.ReadDir(filepath.Join(md, sub))
		for _, f := range es {
			b, err := os.ReadFile(filepath.Join(md, sub, f.Name()))
			if err != nil {
				t.Fatal(err)
			}
			got = append(got, string(b))
		}
	}
	sort.Strings(got)
	return got
}

// postoffice fetch with auth = "gssapi" against Dovecot's GSSAPI
// (dovecot-gssapi, MIT's libgssapi) retrieves the same messages, byte for
// byte, as a password login does: with the user as authorization identity
// and without one.
func TestKerberosFetchFromDovecot(t *testing.T) {
	r := krbtest.Get(t)
	r.AddUser(t, "alice", "alice-pw")
	d := startDovecotGSSAPI(t, r)
	_, port, _ := net.SplitHostPort(d.Addr)
	cc := r.Kinit(t, "alice", "alice-pw")
	env := r.Env(cc)

	want := ourFetch(t, env, d.Addr, fmt.Sprintf("user = \"alice\"\npassword = %q\nauth = \"plain\"\n", dovecot.Password))
	if len(want) != len(krbDovecotMessages) {
		t.Fatalf("password fetch got %d messages, want %d", len(want), len(krbDovecotMessages))
	}
	server := krbtest.Host + ":" + port
	for _, tc := range []struct{ name, user string }{
		{"authzid", "user = \"alice\"\n"},
		{"no authzid", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := ourFetch(t, env, server, tc.user+fmt.Sprintf("auth = \"gssapi\"\nkrb5_ccache = %q\nkrb5_config = %q\n", cc, r.Config))
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("gssapi fetch differs from the password fetch (-password +gssapi):\n%s", diff)
			}
		})
	}
	if n := d.Files(t, "alice"); n != len(krbDovecotMessages) {
		t.Errorf("dovecot holds %d messages after fetches that keep them, want %d", n, len(krbDovecotMessages))
	}
}
