package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/postoffice-mail/postoffice/internal/auth/scheme"
	"github.com/postoffice-mail/postoffice/internal/config"
	"github.com/postoffice-mail/postoffice/internal/store/pgstore"
	"github.com/postoffice-mail/postoffice/internal/tlsconf"
)

// runCheck is "postoffice check": everything serve would load, loaded and
// reported on, without binding a port. Problems that would stop serve, and
// unusable password entries, are errors and make the exit status 1; the
// rest are warnings.
func runCheck(args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("check", stderr)
	cfgPath := fs.String("config", defaultConfig, "configuration `file` (TOML)")
	fs.Usage = func() {
		fmt.Fprintln(stderr, "usage: postoffice check [--config FILE]")
		fmt.Fprintln(stderr, "Loads the config, the TLS certificates and the passwd-file as serve would,")
		fmt.Fprintln(stderr, "checks the mail location and the server user, and reports what it found.")
		fmt.Fprintln(stderr, "Exit status 1 when serve would not start or a stored password is unusable;")
		fmt.Fprintln(stderr, "warnings (such as users who cannot use an enabled login method) leave it 0.")
		fs.PrintDefaults()
	}
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if fs.NArg() != 0 {
		return usageError{"check takes no arguments"}
	}
	c := &checker{out: stdout}
	c.run(*cfgPath)
	if c.errors > 0 {
		fmt.Fprintf(stdout, "%d error(s), %d warning(s)\n", c.errors, c.warnings)
		return exitError{code: 1}
	}
	fmt.Fprintf(stdout, "ok: %d warning(s)\n", c.warnings)
	return nil
}

type checker struct {
	out              io.Writer
	errors, warnings int
}

func (c *checker) info(format string, a ...any) { fmt.Fprintf(c.out, "  "+format+"\n", a...) }

func (c *checker) warn(format string, a ...any) {
	c.warnings++
	fmt.Fprintf(c.out, "warning: "+format+"\n", a...)
}

func (c *checker) fail(format string, a ...any) {
	c.errors++
	fmt.Fprintf(c.out, "error: "+format+"\n", a...)
}

func (c *checker) run(path string) {
	cfg, err := config.Load(path)
	if err != nil {
		c.fail("%v", err)
		return
	}
	fmt.Fprintf(c.out, "config %s: valid\n", path)
	// Build what serve builds, with the same builder: every part serve
	// would refuse to start with is an error here. Only binding the ports
	// and switching user are left out.
	a := newApp(cfg, io.Discard)
	a.check = true
	defer a.close()
	for _, err := range a.build(allParts...) {
		c.fail("%v", err)
	}
	c.listeners(cfg)
	c.tls(a)
	c.users(a)
	c.oauth(a)
	c.kerberos(a)
	c.mail(a)
	c.serverUser(a)
}

func (c *checker) listeners(cfg *config.Config) {
	if len(cfg.POP3.Listen) == 0 && len(cfg.POP3.ListenTLS) == 0 {
		c.warn("pop3.listen and pop3.listen_tls are empty: only systemd sockets would be served")
	}
	for _, a := range cfg.POP3.Listen {
		c.info("POP3 on %s%s", a, map[bool]string{true: " (STLS)", false: ""}[cfg.STLS()])
	}
	for _, a := range cfg.POP3.ListenTLS {
		c.info("POP3S on %s", a)
	}
	for _, a := range cfg.LMTP.Listen {
		c.info("LMTP on %s", a)
	}
	if s := cfg.LMTP.Socket; s != "" {
		c.info("LMTP on unix:%s", s)
		if st, err := os.Stat(filepath.Dir(s)); err != nil || !st.IsDir() {
			c.fail("lmtp.socket: directory %s does not exist", filepath.Dir(s))
		}
	}
	if a := cfg.Metrics.Listen; a != "" {
		c.info("metrics on http://%s/metrics", a)
	}
	for _, a := range cfg.POP2.Listen {
		c.info("POP2 and POP1 on %s (plaintext passwords, no TLS)", a)
	}
	if cfg.POP4.Enabled {
		c.info("POP4 commands on the POP3 listeners")
	}
	for _, a := range cfg.KPOP.Listen {
		c.info("KPOP on %s", a)
	}
	if cfg.Auth.AllowPlaintext {
		c.warn("auth.allow_plaintext = true: passwords may cross the network unencrypted")
	}
}

// tls reports the certificates build loaded: an expired one is an error
// (clients refuse it, though serve starts), one within
// tlsconf.ExpiryWarning of its end a warning.
func (c *checker) tls(a *app) {
	if a.tls == nil {
		return // none configured, or build has reported why
	}
	now := time.Now()
	for _, e := range a.tls.Expiry() {
		names := strings.Join(e.Names, ", ")
		switch e.State(now) {
		case tlsconf.Expired:
			c.fail("certificate %s (%s) expired on %s", e.CertFile, names, e.NotAfter.UTC().Format(time.DateOnly))
		case tlsconf.Expiring:
			c.warn("certificate %s (%s) expires in %d days", e.CertFile, names, int(e.NotAfter.Sub(now).Hours()/24))
		default:
			c.info("certificate %s: %s, until %s", e.CertFile, names, e.NotAfter.UTC().Format(time.DateOnly))
		}
	}
}

// oauth describes the [auth.oauth] verifier build made, and warns when
// introspection accepts any token of the provider.
func (c *checker) oauth(a *app) {
	o := a.cfg.Auth.OAuth
	if o == nil || a.oauth == nil {
		return
	}
	if o.JWKSFile != "" {
		c.info("oauth: JWTs from %s for audience %s, user in %q", o.Issuer, o.Audience, o.UsernameClaim)
		return
	}
	c.info("oauth: introspection at %s, user in %q", o.IntrospectionURL, o.UsernameClaim)
	if o.Audience == "" && len(o.ClientIDs) == 0 {
		c.warn("auth.oauth: introspection without audience or accepted_client_ids accepts every active token of the provider, whatever client or service it was issued for")
	}
}

// kerberos names the service principals the keytab serves (build has
// refused a missing or unreadable keytab, and one without a key for the
// configured principal).
func (c *checker) kerberos(a *app) {
	if a.krb == nil {
		return
	}
	c.info("kerberos: GSSAPI offered for %s", strings.Join(a.krb.Principals(), ", "))
	if a.cfg.Kerberos.Hostname == "" && len(a.krb.Principals()) > 1 {
		c.info("kerberos.hostname is empty: a ticket for any of these principals is accepted")
	}
}

// users reads every entry of the passwd-file build opened and counts the
// users whose stored scheme cannot serve a login method the config enables
// (APOP, CRAM-MD5, SCRAM).
func (c *checker) users(a *app) {
	cfg, db := a.cfg, a.users
	if db == nil {
		return // build has reported why
	}
	names, ok := c.listUsers(a)
	if !ok {
		return
	}
	methods := cfg.Auth.Mechanisms
	if cfg.Auth.APOP {
		methods = append([]string{"APOP"}, methods...)
	}
	unserved := make(map[string][]string)
	schemes := make(map[string]int)
	var nologin, nets, nopw []string
	for _, n := range names {
		u, hash, err := db.Credentials(context.Background(), n)
		if err != nil {
			c.fail("user %s: %v", n, err)
			continue
		}
		if u.Restrict.NoLogin {
			nologin = append(nologin, n)
		}
		if u.Restrict.AllowNets != nil || u.Restrict.AllowRealNets != nil {
			nets = append(nets, n)
		}
		if _, ok := u.Extra["nopassword"]; ok && hash == "" {
			nopw = append(nopw, n)
			continue
		}
		if err := scheme.Check(hash, cfg.Auth.DefaultScheme); err != nil {
			c.fail("user %s: %v", n, err)
			continue
		}
		schemes[scheme.Name(hash, cfg.Auth.DefaultScheme)]++
		for _, m := range methods {
			if served, ok := serves(hash, m); ok && !served {
				unserved[m] = append(unserved[m], n)
			}
		}
	}
	var ss []string
	for s, k := range schemes {
		ss = append(ss, fmt.Sprintf("%s %d", s, k))
	}
	sort.Strings(ss)
	if len(ss) > 0 {
		c.info("stored schemes: %s", strings.Join(ss, ", "))
	}
	if len(nologin) > 0 {
		c.info("%d users have nologin (every login refused): %s", len(nologin), abbreviate(nologin, 5))
	}
	if len(nets) > 0 {
		c.info("%d users may log in only from allow_nets/allow_real_nets: %s", len(nets), abbreviate(nets, 5))
	}
	if len(nopw) > 0 {
		c.warn("%d users have nopassword: any password logs them in with USER/PASS, PLAIN and LOGIN (APOP, CRAM-MD5 and SCRAM always fail for them): %s",
			len(nopw), abbreviate(nopw, 5))
	}
	for _, m := range methods {
		if us := unserved[m]; len(us) > 0 {
			c.warn("%d of %d users cannot log in with %s (enabled in the config), their stored scheme cannot serve it: %s",
				len(us), len(names), m, abbreviate(us, 5))
		}
	}
}

func abbreviate(list []string, n int) string {
	if len(list) <= n {
		return strings.Join(list, ", ")
	}
	return strings.Join(list[:n], ", ") + fmt.Sprintf(" and %d more", len(list)-n)
}

// mail checks that the fixed part of the mail location (before the first
// %) of the store build made exists.
func (c *checker) mail(a *app) {
	if a.store == nil {
		return // build has reported why
	}
	if _, ok := a.cfg.Mail.PostgresDSN(); ok {
		c.info("PostgreSQL store, schema version %d", pgstore.SchemaVersion)
		return
	}
	tmpl := a.cfg.Mail.MaildirPath()
	base := tmpl
	if i := strings.IndexByte(tmpl, '%'); i >= 0 {
		base = filepath.Dir(tmpl[:i] + "x")
	}
	st, err := os.Stat(base)
	switch {
	case os.IsNotExist(err):
		c.warn("mail.location: %s does not exist (a delivery would create it; a typo?)", base)
	case err != nil:
		c.fail("mail.location: %s: %v", base, err)
	case !st.IsDir():
		c.fail("mail.location: %s is not a directory", base)
	default:
		what := "Maildirs"
		if a.cfg.Mail.Store() == "mbox" {
			what = "mbox files"
		}
		c.info("%s under %s (%s)", what, base, tmpl)
	}
}

// serverUser says whom serve runs as once the ports are bound (build
// resolved [server] user and group), and warns about running as root
// without them.
func (c *checker) serverUser(a *app) {
	s := a.cfg.Server
	if s.User == "" {
		if os.Geteuid() == 0 {
			c.warn("server.user is not set: serve run as root would stay root")
		}
		return
	}
	if a.runAs == nil {
		return // build has reported why
	}
	c.info("runs as %s%s once the ports are bound", s.User, map[bool]string{true: ":" + s.Group, false: ""}[s.Group != ""])
}
