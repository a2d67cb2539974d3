package fetch

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"time"

	"github.com/postoffice-mail/postoffice/internal/auth/kerberos"
	"github.com/postoffice-mail/postoffice/pop3"
)

// Options configure a fetch run. The zero value is usable.
type Options struct {
	// Logger gets one line per account; nil discards.
	Logger *slog.Logger
	// Progress, if set, gets a one-line progress display ("\r" updates).
	Progress io.Writer
	// Now is the clock (for delete_after_days); nil is time.Now.
	Now func() time.Time
	// ResetState accepts the server's current UIDLs: with keep = true the
	// messages on the server are recorded as retrieved without being
	// downloaded; with keep = false the state is forgotten.
	ResetState bool
	// Timeout bounds each network read and write; 0 is 2 minutes.
	Timeout time.Duration
}

// Result counts what one account run did. Rejected counts messages an
// lmtp: or smtp: target refused for good in this run.
type Result struct {
	Fetched, Skipped, Deleted, Rejected int
	// Syncs counts the fsyncs of message files, Maildir directories and
	// the state journal made while messages were fetched (not those of
	// the state's compaction at the end).
	Syncs int
}

// Run fetches one account once: connect, authenticate, list, deliver what
// is new, delete per policy, QUIT. The error is an *Error (see ExitCode).
func Run(ctx context.Context, a *Account, opts Options) (Result, error) {
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.Timeout == 0 {
		opts.Timeout = 2 * time.Minute
	}
	res, err := run(ctx, a, opts)
	if err != nil {
		var fe *Error
		if !errors.As(err, &fe) {
			err = &Error{Code: classify(err), Err: fmt.Errorf("fetch: account %s: %w", a.Name, err)}
		} else if !strings.Contains(err.Error(), "account "+a.Name) {
			err = &Error{Code: fe.Code, Err: fmt.Errorf("fetch: account %s: %w", a.Name, err)}
		}
		opts.Logger.Error("fetch failed", "account", a.Name, "fetched", res.Fetched, "skipped", res.Skipped, "deleted", res.Deleted, "rejected", res.Rejected, "err", err)
		return res, err
	}
	opts.Logger.Info("fetch done", "account", a.Name, "fetched", res.Fetched, "skipped", res.Skipped, "deleted", res.Deleted)
	return res, nil
}

// partialFetch reports whether the account's policy fetches a message of
// this size in part (TOP n 0).
func (a *Account) partialFetch(size int64) bool {
	return a.HeadersOnly || (a.MaxSize > 0 && size > a.MaxSize && a.Oversize == "truncate")
}

// password returns the account's secret: password, or the first line of
// what password_command prints.
func password(ctx context.Context, a *Account) (string, error) {
	if a.PasswordCommand == "" {
		return a.Password, nil
	}
	cmd := exec.CommandContext(ctx, "sh", "-c", a.PasswordCommand)
	cmd.Stderr = os.Stderr
	out, err := cmd.Output()
	if ctx.Err() != nil {
		// Interrupted (SIGTERM): not the command's fault.
		return "", &Error{Code: ExitTempFail, Err: fmt.Errorf("fetch: account %s: password_command: %w", a.Name, ctx.Err())}
	}
	if err != nil {
		return "", &Error{Code: ExitConfig, Err: fmt.Errorf("fetch: account %s: password_command: %w", a.Name, err)}
	}
	line, _, _ := strings.Cut(string(out), "\n")
	line = strings.TrimSuffix(line, "\r")
	if line == "" {
		return "", &Error{Code: ExitConfig, Err: fmt.Errorf("fetch: account %s: password_command printed nothing", a.Name)}
	}
	return line, nil
}

// loadRoots reads the PEM certificates of the account's key (ca_file,
// smtp_ca_file) at path; nil, the system's roots, when path is "".
func loadRoots(a *Account, key, path string) (*x509.CertPool, error) {
	if path == "" {
		return nil, nil
	}
	pem, err := os.ReadFile(path)
	if err != nil {
		return nil, &Error{Code: ExitConfig, Err: fmt.Errorf("fetch: account %s: %s: %w", a.Name, key, err)}
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return nil, &Error{Code: ExitConfig, Err: fmt.Errorf("fetch: account %s: %s: no PEM certificates in %s", a.Name, key, path)}
	}
	return pool, nil
}

// tlsConfig builds the TLS configuration: the system roots or ca_file, and
// with fingerprint a pin of the leaf certificate's SHA-256 that replaces
// the CA check (as mpop's tls_fingerprint does). Package pop3 fills in
// ServerName (the dialled host) and MinVersion (TLS 1.2).
func tlsConfig(a *Account) (*tls.Config, error) {
	roots, err := loadRoots(a, "ca_file", a.CAFile)
	if err != nil {
		return nil, err
	}
	cfg := &tls.Config{RootCAs: roots}
	if a.CertFile != "" {
		cert, err := tls.LoadX509KeyPair(a.CertFile, a.KeyFile)
		if err != nil {
			return nil, &Error{Code: ExitConfig, Err: fmt.Errorf("fetch: account %s: cert_file: %w", a.Name, err)}
		}
		cfg.Certificates = []tls.Certificate{cert}
	}
	if a.fingerprint != nil {
		want := a.fingerprint
		cfg.InsecureSkipVerify = true // replaced by the pin below
		cfg.VerifyConnection = func(cs tls.ConnectionState) error {
			if len(cs.PeerCertificates) == 0 {
				return &pinError{got: "(none)"}
			}
			sum := sha256.Sum256(cs.PeerCertificates[0].Raw)
			if !bytes.Equal(sum[:], want) {
				return &pinError{got: hex.EncodeToString(sum[:])}
			}
			return nil
		}
	}
	return cfg, nil
}

// dial connects per the tls key.
func dial(ctx context.Context, a *Account, opts Options) (*pop3.Client, error) {
	po := &pop3.Options{Timeout: opts.Timeout}
	if a.TLS != "none" {
		cfg, err := tlsConfig(a)
		if err != nil {
			return nil, err
		}
		po.TLSConfig = cfg
	}
	dctx, cancel := context.WithTimeout(ctx, opts.Timeout)
	defer cancel()
	switch a.TLS {
	case "starttls":
		return pop3.DialStartTLS(dctx, a.Server, po)
	case "none":
		return pop3.Dial(dctx, a.Server, po)
	default:
		return pop3.DialTLS(dctx, a.Server, po)
	}
}

// autoOrder is the preference of auth = "auto", best first; each is
// taken only if the server offers it (and see safe below).
var autoOrder = []string{
	"scram-sha-256-plus", "scram-sha-1-plus", "scram-sha-256", "scram-sha-1",
	"cram-md5", "plain", "user", "apop",
}

// authenticate logs in with the account's mechanism. "auto" picks the
// first of autoOrder the server offers; PLAIN and USER/PASS, which send
// the password itself, only over TLS or to a loopback address, and the
// -PLUS mechanisms only over TLS. XOAUTH2 and OAUTHBEARER (the secret must
// be a token) and EXTERNAL (it needs cert_file) are never picked
// automatically.
func authenticate(ctx context.Context, c *pop3.Client, a *Account, secret string) error {
	caps, err := c.Capabilities(ctx)
	if err != nil {
		return err
	}
	mech := a.Auth
	if mech == "auto" {
		overTLS := c.TLS() != nil
		secure := overTLS || isLoopback(a.Server)
		noCAPA := len(caps.Lines) == 0
		for _, m := range autoOrder {
			ok := false
			switch m {
			case "scram-sha-256-plus", "scram-sha-1-plus":
				ok = overTLS && caps.HasSASL(m)
			case "scram-sha-256", "scram-sha-1", "cram-md5":
				ok = caps.HasSASL(m)
			case "plain":
				ok = secure && caps.HasSASL("PLAIN")
			case "user":
				ok = secure && (caps.Has("USER") || noCAPA)
			case "apop":
				ok = c.Greeting().Timestamp != ""
			}
			if ok {
				mech = m
				break
			}
		}
		if mech == "auto" {
			return &Error{Code: ExitNoPerm, Err: fmt.Errorf("fetch: account %s: auth auto: no mechanism the server offers is safe on this connection; use tls or set auth", a.Name)}
		}
	}
	host, port := hostPort(a.Server)
	switch mech {
	case "user":
		err = c.Login(ctx, a.User, secret)
	case "apop":
		err = c.APOP(ctx, a.User, secret)
	case "plain":
		err = c.Authenticate(ctx, pop3.NewPlainClient("", a.User, secret))
	case "login":
		err = c.Authenticate(ctx, pop3.NewLoginClient(a.User, secret))
	case "cram-md5":
		err = c.Authenticate(ctx, pop3.NewCRAMMD5Client(a.User, secret))
	case "scram-sha-1", "scram-sha-256", "scram-sha-1-plus", "scram-sha-256-plus":
		var m pop3.SASLClient
		m, err = pop3.NewSCRAMClient(mech, a.User, secret, "")
		if err != nil {
			return &Error{Code: ExitConfig, Err: fmt.Errorf("fetch: account %s: %w", a.Name, err)}
		}
		err = c.Authenticate(ctx, m)
	case "xoauth2":
		err = c.Authenticate(ctx, pop3.NewXOAuth2Client(a.User, secret))
	case "oauthbearer":
		err = c.Authenticate(ctx, pop3.NewOAuthBearerClient(pop3.OAuthBearerOptions{Username: a.User, Token: secret, Host: host, Port: port}))
	case "external":
		// The certificate was presented in the handshake; the server
		// derives the user from it (empty authzid).
		err = c.Authenticate(ctx, pop3.NewExternalClient(""))
	case "gssapi":
		// RFC 4752 §3: the service principal is pop/HOST, HOST as the
		// account names the server (no reverse lookup, as MIT's rdns =
		// false).
		gss := kerberos.NewGSSClient(kerberos.InitiatorOptions{
			Config: a.Krb5Config, CCache: a.Krb5CCache, Keytab: a.Krb5Keytab, Principal: a.Krb5Principal,
		}, "pop", host)
		err = c.Authenticate(ctx, pop3.NewGSSAPIClient(gss, a.User))
	}
	if err != nil {
		var pe *pop3.Error
		if errors.As(err, &pe) {
			code := ExitNoPerm
			if pe.Temporary() {
				code = ExitTempFail
			}
			return &Error{Code: code, Err: fmt.Errorf("fetch: account %s: login (%s) failed: %w", a.Name, mech, err)}
		}
		return err
	}
	return nil
}

func hostPort(addr string) (string, int) {
	h, p, _ := net.SplitHostPort(addr)
	n, _ := strconv.Atoi(p) // validated by the config
	return h, n
}

func isLoopback(addr string) bool {
	h, _, _ := net.SplitHostPort(addr)
	if h == "localhost" {
		return true
	}
	ip := net.ParseIP(h)
	return ip != nil && ip.IsLoopback()
}
