package probe

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/postoffice-mail/postoffice/pop3"
)

// Options tune a probe. The zero value is usable.
type Options struct {
	// Timeout bounds each connection (dial, handshake and every command);
	// default 15 s.
	Timeout time.Duration
	// RootCAs verify the server's chain; nil means the system roots.
	RootCAs *x509.CertPool
	// Now is the clock for certificate expiry; default time.Now.
	Now func() time.Time
	// MaxMessages bounds the messages RETRieved and TOPped with
	// credentials (the smallest ones first); default 10.
	MaxMessages int
	// MaxBytes bounds the octets RETRieved in all; default 20 MiB.
	MaxBytes int64
	// PlaintextLogin lets the probe send the password over a connection
	// without TLS (for a server that offers none, on a trusted network).
	// Without it the probe logs in only over TLS.
	PlaintextLogin bool
}

func (o *Options) defaults() {
	if o.Timeout <= 0 {
		o.Timeout = 15 * time.Second
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.MaxMessages <= 0 {
		o.MaxMessages = 10
	}
	if o.MaxBytes <= 0 {
		o.MaxBytes = 20 << 20
	}
}

// prober holds one run's state.
type prober struct {
	t    Target
	opts Options
	r    *Report
}

// Run probes t and returns the report; it never returns nil. Failures to
// connect are findings too.
func Run(ctx context.Context, t Target, opts Options) *Report {
	opts.defaults()
	scheme := "pop3://"
	if t.Implicit {
		scheme = "pop3s://"
	}
	p := &prober{t: t, opts: opts, r: &Report{Target: scheme + t.Addr, Time: opts.Now().UTC()}}
	p.run(ctx)
	p.r.WorstName = levelName(Finding{Severity: p.r.Worst, Level: "ok"})
	return p.r
}

func (p *prober) clientOptions() *pop3.Options {
	return &pop3.Options{
		Timeout: p.opts.Timeout,
		// The chain is verified by the probe itself (verifyChain), so
		// that a bad certificate is reported, not a dead end.
		TLSConfig: &tls.Config{InsecureSkipVerify: true, ServerName: p.t.Host},
	}
}

func (p *prober) run(ctx context.Context) {
	r := p.r
	cctx, cancel := context.WithTimeout(ctx, 4*p.opts.Timeout)
	defer cancel()
	var c *pop3.Client
	var err error
	if p.t.Implicit {
		c, err = pop3.DialTLS(cctx, p.t.Addr, p.clientOptions())
	} else {
		c, err = pop3.Dial(cctx, p.t.Addr, p.clientOptions())
	}
	if err != nil {
		r.fail("connect", fmt.Sprintf("cannot open a POP3 session with %s: %v", p.t.Addr, err),
			"check the host and port (110 for pop3://, 995 for pop3s://) and that a firewall lets the probe through")
		return
	}
	defer c.Close()
	g := c.Greeting()
	r.Greeting = g.Text
	r.ok("greeting", "greeting: +OK "+g.Text)
	p.checkAPOP(ctx, g)

	caps, err := c.Capabilities(cctx)
	if err != nil {
		r.fail("capa", fmt.Sprintf("CAPA failed: %v", err), "the server must answer CAPA (RFC 2449 §5) or -ERR")
		return
	}
	r.Capa = caps.Lines
	if len(caps.Lines) == 0 {
		r.warn("capa", "the server does not answer CAPA: clients cannot learn whether it offers STLS, UIDL, TOP or SASL",
			"enable CAPA (RFC 2449); every server of the last 20 years has it")
	} else {
		r.ok("capa", fmt.Sprintf("CAPA lists %d capabilities", len(caps.Lines)))
		if !caps.Has("UIDL") {
			r.warn("capa.uidl", "CAPA does not list UIDL: clients that leave mail on the server cannot tell new mail from old",
				"enable UIDL (RFC 1939 §7)")
		}
	}

	if p.t.Implicit {
		p.checkTLS(ctx, c, "implicit")
	} else {
		p.checkCleartext(ctx, caps)
		if !caps.STLS() {
			r.fail("stls", "no STLS on this port: passwords and mail cross the network in clear",
				"configure a certificate so STLS is offered, and use pop3s:// (port 995) if the server has it")
		} else {
			p.checkInjection(ctx)
			if err := c.StartTLS(cctx); err != nil {
				r.fail("stls", fmt.Sprintf("STLS is offered but fails: %v", err), "check the server's certificate and TLS settings")
				return
			}
			r.ok("stls", "STLS works")
			p.checkTLS(ctx, c, "stls")
			caps, err = c.Capabilities(cctx)
			if err != nil {
				r.fail("capa", fmt.Sprintf("CAPA after STLS failed: %v", err), "")
				return
			}
			r.CapaTLS = caps.Lines
		}
	}
	if c.TLS() != nil {
		var m []string
		if caps.Has("USER") {
			m = append(m, "USER")
		}
		m = append(m, caps.SASL()...)
		if len(m) == 0 {
			r.warn("auth.tls", "no login method offered over TLS", "enable USER or SASL PLAIN over TLS")
		} else {
			r.ok("auth.tls", "login methods over TLS: "+strings.Join(m, " "))
		}
	}
	if p.t.User == "" {
		r.info("login", "no credentials given: the maildrop checks (LIST/RETR sizes, UIDL, TOP, dot-stuffing) were skipped",
			"give pop3s://user@host and the password (POSTOFFICE_PROBE_PASSWORD or --password-file) to run them")
		return
	}
	p.checkMaildrop(ctx, c)
}

// checkAPOP looks at the greeting's APOP timestamp (RFC 1939 §7) and, on a
// second connection, whether it changes.
func (p *prober) checkAPOP(ctx context.Context, g pop3.Greeting) {
	r := p.r
	if g.Timestamp == "" {
		r.ok("apop", "no APOP timestamp in the greeting (APOP not offered)")
		return
	}
	if !msgIDRE.MatchString(g.Timestamp) {
		r.warn("apop.timestamp", fmt.Sprintf("APOP timestamp %q is not of the form <unique@host>", g.Timestamp),
			"RFC 1939 §7 asks for an RFC 822 msg-id, such as <pid.clock@host>; some clients (mpop) refuse others")
	}
	g2, err := p.greetingOnly(ctx)
	switch {
	case err != nil:
	case apopTimestamp(g2) == g.Timestamp:
		r.fail("apop.timestamp", "the APOP timestamp is the same on two connections: a recorded APOP login can be replayed",
			"make the timestamp unique per connection (RFC 1939 §7), or disable APOP")
	default:
		r.ok("apop.timestamp", "APOP timestamp is unique per connection")
	}
	r.info("apop", "APOP is offered: its MD5 digest lets an eavesdropper without TLS test guesses offline, and it needs passwords stored in clear",
		"prefer SCRAM or a password over TLS, and disable APOP unless old clients need it")
}

var msgIDRE = regexp.MustCompile(`^<[\x21-\x3b\x3d\x3f-\x7e]+@[\x21-\x3b\x3d\x3f-\x7e]+>$`)

// apopTimestamp finds "<...>" in a greeting line.
func apopTimestamp(text string) string {
	i := strings.IndexByte(text, '<')
	if i < 0 {
		return ""
	}
	j := strings.IndexByte(text[i:], '>')
	if j < 0 {
		return ""
	}
	return text[i : i+j+1]
}

// raw is a bare connection for the checks the client library would refuse
// to make (it guards against exactly the behaviours probed here).
type raw struct {
	nc net.Conn
	br *bufio.Reader
}

func (p *prober) dialRaw(ctx context.Context) (*raw, string, error) {
	d := net.Dialer{Timeout: p.opts.Timeout}
	nc, err := d.DialContext(ctx, "tcp", p.t.Addr)
	if err != nil {
		return nil, "", err
	}
	nc.SetDeadline(time.Now().Add(p.opts.Timeout))
	if p.t.Implicit {
		tc := tls.Client(nc, &tls.Config{InsecureSkipVerify: true, ServerName: p.t.Host})
		if err := tc.HandshakeContext(ctx); err != nil {
			nc.Close()
			return nil, "", err
		}
		nc = tc
	}
	c := &raw{nc: nc, br: bufio.NewReader(nc)}
	g, err := c.line()
	if err != nil {
		nc.Close()
		return nil, "", err
	}
	return c, g, nil
}

func (c *raw) line() (string, error) {
	var b []byte
	for {
		part, isPrefix, err := c.br.ReadLine()
		if err != nil {
			return "", err
		}
		b = append(b, part...)
		if len(b) > 4096 {
			return "", errors.New("reply line too long")
		}
		if !isPrefix {
			return string(b), nil
		}
	}
}

func (c *raw) cmd(s string) (string, error) {
	if _, err := io.WriteString(c.nc, s+"\r\n"); err != nil {
		return "", err
	}
	return c.line()
}

func (c *raw) quit() {
	c.cmd("QUIT")
	c.nc.Close()
}

func (p *prober) greetingOnly(ctx context.Context) (string, error) {
	c, g, err := p.dialRaw(ctx)
	if err != nil {
		return "", err
	}
	c.quit()
	return g, nil
}

// isLoopback reports whether the target is this host, where servers
// usually allow passwords in the clear.
func (p *prober) isLoopback() bool {
	if p.t.Host == "localhost" {
		return true
	}
	a, err := netip.ParseAddr(p.t.Host)
	return err == nil && a.Unmap().IsLoopback()
}

// checkCleartext finds out whether a password could cross this
// connection in the clear, by sending USER with a made-up name and never
// a password.
func (p *prober) checkCleartext(ctx context.Context, caps pop3.Caps) {
	r := p.r
	var offered []string
	if caps.Has("USER") {
		offered = append(offered, "USER")
	}
	for _, m := range caps.SASL() {
		if slices.Contains([]string{"PLAIN", "LOGIN", "XOAUTH2", "OAUTHBEARER"}, strings.ToUpper(m)) {
			offered = append(offered, "AUTH "+m)
		}
	}
	c, _, err := p.dialRaw(ctx)
	if err != nil {
		r.warn("auth.cleartext", fmt.Sprintf("could not check: %v", err), "")
		return
	}
	defer c.quit()
	reply, err := c.cmd("USER postoffice-probe")
	if err != nil {
		r.warn("auth.cleartext", fmt.Sprintf("could not check: %v", err), "")
		return
	}
	where := ""
	if p.isLoopback() {
		where = " (the target is this host, where servers usually allow it: probe the public address to see what remote clients get)"
	}
	if strings.HasPrefix(reply, "+OK") {
		sev := r.fail
		if p.isLoopback() {
			sev = r.warn
		}
		sev("auth.cleartext", "the server accepts USER before TLS and asks for the password: passwords can cross the network in clear"+where,
			"refuse plaintext logins without TLS (postoffice: auth.allow_plaintext = false; Dovecot: auth_allow_cleartext = no)")
		return
	}
	r.ok("auth.cleartext", "USER before TLS is refused: "+reply)
	if len(offered) > 0 {
		r.info("auth.cleartext.capa", "CAPA before TLS still lists "+strings.Join(offered, ", ")+", which the server then refuses",
			"clients may try and fail; leaving them out of CAPA before TLS is clearer (RFC 2595 §2.3)")
	}
}

// checkInjection sends STLS and a command in one packet. A server that
// answers the command after the handshake ran plaintext input inside TLS
// (the CVE-2011-0411 class).
func (p *prober) checkInjection(ctx context.Context) {
	r := p.r
	c, _, err := p.dialRaw(ctx)
	if err != nil {
		r.warn("stls.injection", fmt.Sprintf("could not check: %v", err), "")
		return
	}
	defer c.nc.Close()
	// An unknown command: harmless if it does run, and its -ERR tells.
	if _, err := io.WriteString(c.nc, "STLS\r\nXPROBE-INJECTED\r\n"); err != nil {
		r.warn("stls.injection", fmt.Sprintf("could not check: %v", err), "")
		return
	}
	reply, err := c.line()
	if err != nil || !strings.HasPrefix(reply, "+OK") {
		r.warn("stls.injection", fmt.Sprintf("STLS pipelined with a command was refused (%q, %v)", reply, err), "")
		return
	}
	tc := tls.Client(c.nc, &tls.Config{InsecureSkipVerify: true, ServerName: p.t.Host})
	if err := tc.HandshakeContext(ctx); err != nil {
		// Some servers (Dovecot) feed what was pipelined into the TLS
		// layer, which fails the handshake: the injected command never
		// runs. A client that waits for +OK, as clients must, never meets
		// this.
		r.ok("stls.injection", "plaintext pipelined after STLS is not run: the server took it as the start of the TLS handshake, which failed")
		return
	}
	// Our own CAPA inside TLS: the first reply is either its +OK, or the
	// -ERR of the injected command that should never have run, followed
	// by the CAPA reply.
	tr := &raw{nc: tc, br: bufio.NewReader(tc)}
	first, err := tr.cmd("CAPA")
	switch {
	case err != nil:
		r.warn("stls.injection", fmt.Sprintf("could not check: %v", err), "")
	case strings.HasPrefix(first, "-ERR") && secondLine(tr):
		r.fail("stls.injection", "a command pipelined in plaintext after STLS was run inside TLS: an attacker on the path can inject commands (CVE-2011-0411 class)",
			"upgrade the server; after STLS it must discard everything received before the handshake (RFC 2595 §4)")
	default:
		r.ok("stls.injection", "plaintext pipelined after STLS is discarded")
	}
	tr.quit()
}

// secondLine reports whether another reply line arrives within a second:
// after the injected command's -ERR comes the CAPA reply. A server without
// CAPA that discarded the injected command sends its one -ERR only.
func secondLine(c *raw) bool {
	c.nc.SetReadDeadline(time.Now().Add(time.Second))
	defer c.nc.SetReadDeadline(time.Time{})
	_, err := c.line()
	return err == nil
}

// checkTLS reports the session's TLS, the chain and the versions the
// server accepts.
func (p *prober) checkTLS(ctx context.Context, c *pop3.Client, mode string) {
	r := p.r
	st := c.TLS()
	if st == nil {
		return
	}
	info := &TLSInfo{Mode: mode, Negotiated: tls.VersionName(st.Version), CipherSuite: tls.CipherSuiteName(st.CipherSuite)}
	r.TLS = info
	for _, cert := range st.PeerCertificates {
		info.Chain = append(info.Chain, Cert{Subject: cert.Subject.String(), Issuer: cert.Issuer.String(),
			Names: certNames(cert), NotBefore: cert.NotBefore.UTC(), NotAfter: cert.NotAfter.UTC()})
	}
	r.ok("tls", fmt.Sprintf("TLS (%s): %s, %s", mode, info.Negotiated, info.CipherSuite))
	p.checkChain(st.PeerCertificates, info)
	p.checkVersions(ctx, info)
}

func certNames(c *x509.Certificate) []string {
	n := slices.Clone(c.DNSNames)
	for _, ip := range c.IPAddresses {
		n = append(n, ip.String())
	}
	return n
}

func (p *prober) checkChain(chain []*x509.Certificate, info *TLSInfo) {
	r := p.r
	if len(chain) == 0 {
		r.fail("tls.cert", "the server sent no certificate", "configure a certificate")
		return
	}
	leaf := chain[0]
	now := p.opts.Now()
	switch left := leaf.NotAfter.Sub(now); {
	case left <= 0:
		r.fail("tls.cert.expiry", fmt.Sprintf("the certificate expired on %s", leaf.NotAfter.UTC().Format(time.RFC3339)),
			"renew it (certbot renew, or your CA); clients refuse it or teach users to click through warnings")
	case now.Before(leaf.NotBefore):
		r.fail("tls.cert.expiry", fmt.Sprintf("the certificate is not valid before %s", leaf.NotBefore.UTC().Format(time.RFC3339)),
			"check the server's clock and the certificate")
	case left < 14*24*time.Hour:
		r.warn("tls.cert.expiry", fmt.Sprintf("the certificate expires in %d days (%s)", int(left.Hours()/24), leaf.NotAfter.UTC().Format(time.RFC3339)),
			"renew it now; check that automatic renewal reloads the POP3 server too")
	default:
		r.ok("tls.cert.expiry", fmt.Sprintf("the certificate is valid until %s (%d days)", leaf.NotAfter.UTC().Format(time.RFC3339), int(left.Hours()/24)))
	}
	if err := leaf.VerifyHostname(p.t.Host); err != nil {
		r.fail("tls.cert.name", fmt.Sprintf("the certificate does not name %s: it names %s", p.t.Host, strings.Join(certNames(leaf), ", ")),
			"use a certificate for the name clients connect to (RFC 7817 §3), or point clients at a name it holds")
	} else {
		r.ok("tls.cert.name", "the certificate names "+p.t.Host)
	}
	inter := x509.NewCertPool()
	for _, c := range chain[1:] {
		inter.AddCert(c)
	}
	_, err := leaf.Verify(x509.VerifyOptions{Roots: p.opts.RootCAs, Intermediates: inter, CurrentTime: now})
	if err != nil {
		var ua x509.UnknownAuthorityError
		advice := "use a certificate from a CA clients trust, with its intermediates in the chain"
		if errors.As(err, &ua) && len(chain) == 1 && leaf.Issuer.String() == leaf.Subject.String() {
			advice = "the certificate is self-signed: clients warn on every connection; use one from a CA (Let's Encrypt)"
		}
		if _, ok := err.(x509.CertificateInvalidError); ok {
			// Expiry is reported above; the chain may be fine otherwise.
			advice = "see the expiry finding"
		}
		info.VerifyError = err.Error()
		r.fail("tls.cert.chain", "the certificate chain does not verify: "+err.Error(), advice)
	} else {
		info.Verified = true
		r.ok("tls.cert.chain", fmt.Sprintf("the chain verifies (%d certificate(s) sent)", len(chain)))
	}
}

// checkVersions tries each TLS version on a connection of its own.
func (p *prober) checkVersions(ctx context.Context, info *TLSInfo) {
	r := p.r
	var old []string
	for _, v := range []uint16{tls.VersionTLS10, tls.VersionTLS11, tls.VersionTLS12, tls.VersionTLS13} {
		if p.tryVersion(ctx, v) {
			info.Versions = append(info.Versions, tls.VersionName(v))
			if v < tls.VersionTLS12 {
				old = append(old, tls.VersionName(v))
			}
		}
	}
	r.ok("tls.versions", "TLS versions accepted: "+strings.Join(info.Versions, ", "))
	if len(old) > 0 {
		r.warn("tls.versions.old", "the server accepts "+strings.Join(old, " and ")+", deprecated by RFC 8996",
			"allow TLS 1.2 and 1.3 only (postoffice does by default)")
	}
	if !slices.Contains(info.Versions, tls.VersionName(tls.VersionTLS13)) {
		r.info("tls.versions.13", "the server does not accept TLS 1.3", "enable TLS 1.3 where the TLS library has it")
	}
}

func (p *prober) tryVersion(ctx context.Context, v uint16) bool {
	d := net.Dialer{Timeout: p.opts.Timeout}
	nc, err := d.DialContext(ctx, "tcp", p.t.Addr)
	if err != nil {
		return false
	}
	defer nc.Close()
	nc.SetDeadline(time.Now().Add(p.opts.Timeout))
	if !p.t.Implicit {
		c := &raw{nc: nc, br: bufio.NewReader(nc)}
		if _, err := c.line(); err != nil {
			return false
		}
		if reply, err := c.cmd("STLS"); err != nil || !strings.HasPrefix(reply, "+OK") {
			return false
		}
	}
	tc := tls.Client(nc, &tls.Config{InsecureSkipVerify: true, ServerName: p.t.Host, MinVersion: v, MaxVersion: v})
	return tc.HandshakeContext(ctx) == nil
}

// checkMaildrop logs in and checks the RFC 1939 behaviours that change
// nothing: the session ends with QUIT and no DELE.
func (p *prober) checkMaildrop(ctx context.Context, c *pop3.Client) {
	r := p.r
	if c.TLS() == nil && !p.opts.PlaintextLogin {
		r.warn("login", "no TLS on this connection: the probe did not send the password",
			"probe pop3s:// or a server with STLS, or allow a plaintext login explicitly (--plaintext-login) on a trusted network")
		return
	}
	cctx, cancel := context.WithTimeout(ctx, 20*p.opts.Timeout)
	defer cancel()
	if err := c.Login(cctx, p.t.User, p.t.Password); err != nil {
		r.fail("login", fmt.Sprintf("login as %s failed: %v", p.t.User, err),
			"check the user name and password; the server's text above says more")
		return
	}
	r.ok("login", "logged in as "+p.t.User+" with USER/PASS")
	count, size, err := c.Stat(cctx)
	if err != nil {
		r.fail("stat", fmt.Sprintf("STAT failed: %v", err), "")
		return
	}
	list, err := c.List(cctx)
	if err != nil {
		r.fail("list", fmt.Sprintf("LIST failed: %v", err), "")
		return
	}
	var sum int64
	for _, l := range list {
		sum += l.Size
	}
	if len(list) != count || sum != size {
		r.fail("list.stat", fmt.Sprintf("STAT says %d messages, %d octets; LIST lists %d, %d octets", count, size, len(list), sum),
			"STAT and LIST must agree (RFC 1939 §5)")
	} else {
		r.ok("list.stat", fmt.Sprintf("STAT and LIST agree: %d messages, %d octets", count, size))
	}
	uids, ok := p.checkUIDL(cctx, c, list)
	p.checkRetr(cctx, c, list)
	if err := c.Quit(cctx); err != nil {
		r.warn("quit", fmt.Sprintf("QUIT failed: %v", err), "")
	}
	if ok {
		p.checkStability(ctx, uids)
	}
}

func (p *prober) checkUIDL(ctx context.Context, c *pop3.Client, list []pop3.ScanListing) (map[int]string, bool) {
	r := p.r
	ul, err := c.UIDL(ctx)
	var pe *pop3.Error
	if errors.As(err, &pe) {
		r.warn("uidl", "UIDL is refused: "+pe.Text, "clients that leave mail on the server need UIDL (RFC 1939 §7)")
		return nil, false
	}
	if err != nil {
		r.fail("uidl", fmt.Sprintf("UIDL failed: %v", err), "")
		return nil, false
	}
	uids := make(map[int]string, len(ul))
	seen := make(map[string]int, len(ul))
	var bad, dup []string
	for _, u := range ul {
		uids[u.Num] = u.UID
		if !validUID(u.UID) && len(bad) < 5 {
			bad = append(bad, fmt.Sprintf("%d %q", u.Num, u.UID))
		}
		if n, ok := seen[u.UID]; ok && len(dup) < 5 {
			dup = append(dup, fmt.Sprintf("%d and %d", n, u.Num))
		}
		seen[u.UID] = u.Num
	}
	switch {
	case len(ul) != len(list):
		r.fail("uidl", fmt.Sprintf("UIDL lists %d messages, LIST %d", len(ul), len(list)), "UIDL and LIST must list the same messages")
	case len(bad) > 0:
		r.fail("uidl.charset", "UIDLs outside 1-70 characters of 0x21-0x7E: "+strings.Join(bad, ", "),
			"RFC 1939 §7; clients may choke on or mangle them")
	case len(dup) > 0:
		r.fail("uidl.unique", "messages with the same UIDL: "+strings.Join(dup, ", "),
			"UIDLs must be unique in a maildrop (RFC 1939 §7); clients skip or re-download such messages")
	default:
		r.ok("uidl", fmt.Sprintf("UIDL: %d unique ids, all of 0x21-0x7E and 1-70 characters", len(ul)))
	}
	return uids, len(bad) == 0
}

func validUID(s string) bool {
	if len(s) < 1 || len(s) > 70 {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < 0x21 || s[i] > 0x7e {
			return false
		}
	}
	return true
}

// checkRetr RETRs and TOPs the smallest messages, within the bounds.
func (p *prober) checkRetr(ctx context.Context, c *pop3.Client, list []pop3.ScanListing) {
	r := p.r
	if len(list) == 0 {
		r.info("retr", "the maildrop is empty: RETR, TOP and dot-stuffing were not checked",
			"deliver a message or two (one with a line starting with \".\") and probe again")
		return
	}
	pick := slices.Clone(list)
	slices.SortStableFunc(pick, func(a, b pop3.ScanListing) int { return int(a.Size - b.Size) })
	var budget = p.opts.MaxBytes
	var checked, dotted int
	var mismatch []string
	for _, l := range pick {
		if checked >= p.opts.MaxMessages || l.Size > budget {
			break
		}
		budget -= l.Size
		n, dots, err := retr(ctx, c, l.Num)
		if err != nil {
			r.fail("retr", fmt.Sprintf("RETR %d failed: %v", l.Num, err), "")
			return
		}
		checked++
		if dots {
			dotted++
		}
		if n != l.Size && len(mismatch) < 5 {
			mismatch = append(mismatch, fmt.Sprintf("message %d: LIST %d, RETR %d", l.Num, l.Size, n))
		}
		p.checkTop(ctx, c, l)
	}
	if len(mismatch) > 0 {
		r.fail("retr.size", "RETR sends a different size than LIST announced: "+strings.Join(mismatch, "; "),
			"LIST must give the exact size in CRLF form (RFC 1939 §11); clients show wrong progress or truncate")
	} else {
		r.ok("retr.size", fmt.Sprintf("RETR sends exactly the LIST size (%d messages checked)", checked))
	}
	if dotted > 0 {
		if len(mismatch) == 0 {
			r.ok("retr.dotstuff", fmt.Sprintf("dot-stuffing: %d message(s) with lines starting with \".\" came through whole", dotted))
		}
	} else {
		r.info("retr.dotstuff", "no message checked has a line starting with \".\": dot-stuffing was not exercised", "")
	}
}

// retr reads message n and returns its size and whether it has a line
// starting with ".".
func retr(ctx context.Context, c *pop3.Client, n int) (int64, bool, error) {
	body, err := c.Retr(ctx, n)
	if err != nil {
		return 0, false, err
	}
	defer body.Close()
	var size int64
	dots := false
	bol := true
	buf := make([]byte, 32<<10)
	for {
		k, err := body.Read(buf)
		for _, b := range buf[:k] {
			if bol && b == '.' {
				dots = true
			}
			bol = b == '\n'
		}
		size += int64(k)
		if err == io.EOF {
			return size, dots, nil
		}
		if err != nil {
			return size, dots, err
		}
	}
}

func (p *prober) checkTop(ctx context.Context, c *pop3.Client, l pop3.ScanListing) {
	body, err := c.Top(ctx, l.Num, 0)
	if err != nil {
		var pe *pop3.Error
		if errors.As(err, &pe) && !slices.ContainsFunc(p.r.Findings, func(f Finding) bool { return f.Check == "top" }) {
			p.r.warn("top", "TOP is refused: "+pe.Text, "clients that preview or filter mail need TOP (RFC 1939 §7)")
		}
		return
	}
	b, err := io.ReadAll(io.LimitReader(body, l.Size+1))
	body.Close()
	if err != nil || slices.ContainsFunc(p.r.Findings, func(f Finding) bool { return f.Check == "top" }) {
		return
	}
	hasBlank := bytes.Contains(b, []byte("\r\n\r\n")) || bytes.HasPrefix(b, []byte("\r\n"))
	switch {
	case int64(len(b)) > l.Size:
		p.r.fail("top", fmt.Sprintf("TOP %d 0 sends more than the whole message", l.Num), "TOP sends the header, a blank line and n body lines (RFC 1939 §7)")
	case !hasBlank && int64(len(b)) < l.Size:
		p.r.warn("top", fmt.Sprintf("TOP %d 0 does not end the header with a blank line", l.Num), "RFC 1939 §7")
	default:
		p.r.ok("top", "TOP n 0 sends the header and the blank line")
	}
}

// checkStability logs in again and compares the UIDLs (RFC 1939 §7: the
// same message keeps its id across sessions).
func (p *prober) checkStability(ctx context.Context, first map[int]string) {
	r := p.r
	cctx, cancel := context.WithTimeout(ctx, 10*p.opts.Timeout)
	defer cancel()
	var c *pop3.Client
	var err error
	if p.t.Implicit {
		c, err = pop3.DialTLS(cctx, p.t.Addr, p.clientOptions())
	} else if c, err = pop3.Dial(cctx, p.t.Addr, p.clientOptions()); err == nil {
		err = c.StartTLS(cctx)
		if errors.Is(err, pop3.ErrNoSTLS) && p.opts.PlaintextLogin {
			err = nil
		}
	}
	if err == nil {
		err = c.Login(cctx, p.t.User, p.t.Password)
	}
	var ul []pop3.UIDListing
	if err == nil {
		ul, err = c.UIDL(cctx)
	}
	if c != nil {
		c.Quit(cctx)
		c.Close()
	}
	var pe *pop3.Error
	if errors.As(err, &pe) && pe.HasCode("LOGIN-DELAY") {
		r.info("uidl.stable", "UIDL stability not checked: the server allows one login per period ([LOGIN-DELAY])", "probe again later")
		return
	}
	if err != nil {
		r.warn("uidl.stable", fmt.Sprintf("second session failed: %v", err), "")
		return
	}
	second := make(map[string]bool, len(ul))
	for _, u := range ul {
		second[u.UID] = true
	}
	gone := 0
	for _, u := range first {
		if !second[u] {
			gone++
		}
	}
	switch {
	case gone == 0:
		r.ok("uidl.stable", "UIDLs are the same in a second session")
	case len(ul) >= len(first):
		r.fail("uidl.stable", fmt.Sprintf("%d of %d UIDLs changed between two sessions", gone, len(first)),
			"UIDLs must not change (RFC 1939 §7): clients that leave mail on the server download everything again")
	default:
		r.info("uidl.stable", fmt.Sprintf("%d messages left the maildrop between the two sessions (another client?); the rest kept their UIDLs", gone), "")
	}
}
