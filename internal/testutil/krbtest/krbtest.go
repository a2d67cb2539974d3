// Package krbtest runs a real MIT Kerberos KDC for tests: a realm in a
// temporary directory (kdb5_util), krb5kdc on a loopback port, principals
// and keytabs made with kadmin.local, and tickets from kinit into a
// credential cache of the test's own. The KDC is started once per test
// binary, on first use; a package that uses it calls Stop from its TestMain
// after m.Run. Where the MIT programs are absent the test skips (or, under
// POSTOFFICE_REQUIRE_PEERS, fails) naming the Debian packages.
package krbtest

import (
	"bytes"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/postoffice-mail/postoffice/internal/testutil"
)

// RealmName is the test realm. Host is the host name every service
// principal uses: it needs no DNS.
const (
	RealmName = "POSTOFFICE.TEST"
	Host      = "localhost"
)

// Realm is the running test realm.
type Realm struct {
	Dir     string // temporary directory holding everything
	Config  string // krb5.conf for clients (KRB5_CONFIG)
	KDCAddr string // host:port of krb5kdc (TCP and UDP)

	kdcProfile string
	kadmin     string
	kinit      string
	cmd        *exec.Cmd
	exited     chan struct{}

	mu      sync.Mutex
	created map[string]bool // principals added
	n       int             // counter for file names
}

var (
	once    sync.Once
	realm   *Realm
	missing [2]string // what is absent: program, package
	failed  error
)

// Get returns the realm, starting it on first use, or skips the test.
func Get(t testing.TB) *Realm {
	t.Helper()
	once.Do(func() { realm, failed = start() })
	if missing[0] != "" {
		testutil.Missing(t, missing[0], missing[1])
	}
	if failed != nil {
		t.Fatalf("krbtest: starting the KDC: %v", failed)
	}
	return realm
}

// Stop stops the KDC and removes the realm, if it was started.
func Stop() {
	if realm == nil {
		return
	}
	if realm.cmd != nil && realm.cmd.Process != nil {
		realm.cmd.Process.Kill()
		select {
		case <-realm.exited:
		case <-time.After(10 * time.Second):
		}
	}
	os.RemoveAll(realm.Dir)
}

func find(prog string) string {
	for _, d := range []string{"/usr/sbin", "/usr/bin", "/sbin", "/bin"} {
		p := filepath.Join(d, prog)
		if _, err := os.Stat(p); err == nil {
			return p
		}
	}
	if p, err := exec.LookPath(prog); err == nil {
		return p
	}
	return ""
}

func freePort() (int, error) {
	// A port free for both TCP and UDP: krb5kdc binds both.
	for range 20 {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return 0, err
		}
		port := l.Addr().(*net.TCPAddr).Port
		u, err := net.ListenPacket("udp", fmt.Sprintf("127.0.0.1:%d", port))
		l.Close()
		if err == nil {
			u.Close()
			return port, nil
		}
	}
	return 0, fmt.Errorf("no free port for TCP and UDP")
}

func start() (*Realm, error) {
	progs := map[string]string{}
	for prog, pkg := range map[string]string{
		"krb5kdc": "krb5-kdc", "kdb5_util": "krb5-kdc", "kadmin.local": "krb5-admin-server", "kinit": "krb5-user",
	} {
		p := find(prog)
		if p == "" {
			missing = [2]string{prog, "krb5-kdc krb5-admin-server krb5-user"}
			_ = pkg
			return nil, nil
		}
		progs[prog] = p
	}
	dir, err := os.MkdirTemp("", "postoffice-krb5-")
	if err != nil {
		return nil, err
	}
	if err := os.Chmod(dir, 0o755); err != nil {
		return nil, err
	}
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	r := &Realm{
		Dir: dir, Config: filepath.Join(dir, "krb5.conf"), KDCAddr: fmt.Sprintf("127.0.0.1:%d", port),
		kdcProfile: filepath.Join(dir, "kdc.conf"), kadmin: progs["kadmin.local"], kinit: progs["kinit"],
		created: map[string]bool{}, exited: make(chan struct{}),
	}
	krb5conf := fmt.Sprintf(`[libdefaults]
	default_realm = %[1]s
	dns_lookup_realm = false
	dns_lookup_kdc = false
	dns_canonicalize_hostname = false
	rdns = false
	udp_preference_limit = 1
	default_ccache_name = FILE:%[2]s/ccache-default
	default_keytab_name = FILE:%[2]s/default.keytab
	ticket_lifetime = 1h
	forwardable = false
	permitted_enctypes = aes256-cts-hmac-sha1-96 aes128-cts-hmac-sha1-96
	default_tkt_enctypes = aes256-cts-hmac-sha1-96 aes128-cts-hmac-sha1-96
	default_tgs_enctypes = aes256-cts-hmac-sha1-96 aes128-cts-hmac-sha1-96

[realms]
	%[1]s = {
		kdc = %[3]s
	}

[domain_realm]
	localhost = %[1]s
	.localhost = %[1]s
`, RealmName, dir, r.KDCAddr)
	kdcconf := fmt.Sprintf(`[kdcdefaults]
	kdc_listen = 127.0.0.1:%[3]d
	kdc_tcp_listen = 127.0.0.1:%[3]d

[realms]
	%[1]s = {
		database_name = %[2]s/principal
		key_stash_file = %[2]s/stash
		acl_file = %[2]s/kadm5.acl
		max_life = 10h
		max_renewable_life = 0
		supported_enctypes = aes256-cts-hmac-sha1-96:normal aes128-cts-hmac-sha1-96:normal
	}

[logging]
	kdc = FILE:%[2]s/kdc.log
	admin_server = FILE:%[2]s/kadmin.log
	default = FILE:%[2]s/krb5lib.log
`, RealmName, dir, port)
	for name, content := range map[string]string{"krb5.conf": krb5conf, "kdc.conf": kdcconf, "kadm5.acl": ""} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o644); err != nil {
			return nil, err
		}
	}
	if out, err := r.command(progs["kdb5_util"], "create", "-s", "-r", RealmName, "-P", "krbtest master key").CombinedOutput(); err != nil {
		return nil, fmt.Errorf("kdb5_util create: %v: %s", err, out)
	}
	cmd := r.command(progs["krb5kdc"], "-n", "-r", RealmName)
	var logb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &logb, &logb
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	r.cmd = cmd
	go func() { cmd.Wait(); close(r.exited) }()
	realm = r // so that Stop finds it even if the wait below fails
	deadline := time.Now().Add(20 * time.Second)
	for {
		c, err := net.DialTimeout("tcp", r.KDCAddr, time.Second)
		if err == nil {
			c.Close()
			break
		}
		select {
		case <-r.exited:
			return nil, fmt.Errorf("krb5kdc exited: %s", logb.String())
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			return nil, fmt.Errorf("krb5kdc did not listen on %s within 20s: %s", r.KDCAddr, logb.String())
		}
	}
	return r, nil
}

// Env is the environment a Kerberos client of this realm needs, with
// ccache as its credential cache.
func (r *Realm) Env(ccache string) []string {
	env := []string{"KRB5_CONFIG=" + r.Config, "KRB5_KDC_PROFILE=" + r.kdcProfile, "KRB5CCNAME=FILE:" + ccache}
	for _, e := range os.Environ() {
		if !strings.HasPrefix(e, "KRB5") {
			env = append(env, e)
		}
	}
	return env
}

func (r *Realm) command(prog string, args ...string) *exec.Cmd {
	cmd := exec.Command(prog, args...)
	cmd.Env = r.Env(filepath.Join(r.Dir, "ccache-default"))
	return cmd
}

func (r *Realm) kadminQuery(t testing.TB, q string) {
	t.Helper()
	out, err := r.command(r.kadmin, "-r", RealmName, "-q", q).CombinedOutput()
	if err != nil || bytes.Contains(out, []byte("rror")) && !bytes.Contains(out, []byte("already exists")) {
		t.Fatalf("kadmin.local -q %q: %v: %s", q, err, out)
	}
}

// AddUser creates the principal name@REALM with password pw (once per
// name; later calls do nothing).
func (r *Realm) AddUser(t testing.TB, name, pw string) {
	t.Helper()
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.created[name] {
		return
	}
	r.kadminQuery(t, fmt.Sprintf("addprinc -pw %q %s", pw, name))
	r.created[name] = true
}

// Keytab creates the principal (a service principal such as
// "pop/localhost", with a random key, once) and exports its keys into a
// new keytab file, whose path it returns. Exporting twice would change
// the key (ktadd randomizes it), so later calls for a principal export it
// with -norandkey into another file.
func (r *Realm) Keytab(t testing.TB, principal string) string {
	t.Helper()
	r.mu.Lock()
	defer r.mu.Unlock()
	if !r.created[principal] {
		r.kadminQuery(t, "addprinc -randkey "+principal)
		r.created[principal] = true
	}
	r.n++
	p := filepath.Join(r.Dir, fmt.Sprintf("keytab-%d", r.n))
	r.kadminQuery(t, fmt.Sprintf("ktadd -norandkey -k %s %s", p, principal))
	if err := os.Chmod(p, 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// Kinit gets a ticket-granting ticket for principal (password pw) into a
// new credential cache and returns its path; extra goes to kinit as
// arguments (for example "-l", "5s" for a short life, or "-S",
// "pop/localhost" for a service ticket instead of a TGT).
func (r *Realm) Kinit(t testing.TB, principal, pw string, extra ...string) string {
	t.Helper()
	r.mu.Lock()
	r.n++
	cc := filepath.Join(r.Dir, fmt.Sprintf("ccache-%d", r.n))
	r.mu.Unlock()
	args := append(append([]string{"-c", "FILE:" + cc}, extra...), principal)
	cmd := exec.Command(r.kinit, args...)
	cmd.Env = r.Env(cc)
	cmd.Stdin = strings.NewReader(pw + "\n")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("kinit %s: %v: %s", strings.Join(args, " "), err, out)
	}
	os.Chmod(cc, 0o644)
	return cc
}

// EmptyCCache returns the path of a credential cache that does not exist:
// a client with it has no ticket.
func (r *Realm) EmptyCCache(t testing.TB) string {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.n++
	return filepath.Join(r.Dir, fmt.Sprintf("ccache-none-%d", r.n))
}

// Principal is name@REALM.
func Principal(name string) string { return name + "@" + RealmName }
