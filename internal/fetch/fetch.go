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
	"slices"
	"strconv"
	"strings"
	"time"

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

func run(ctx context.Context, a *Account, opts Options) (res Result, err error) {
	tgt, err := newTarget(a, opts.Timeout)
	if err != nil {
		return res, err
	}
	if c, ok := tgt.(io.Closer); ok {
		defer c.Close()
	}
	st, err := OpenState(a.StateDir, a.Name)
	if err != nil {
		return res, err
	}
	defer st.Close()
	secret, err := password(ctx, a)
	if err != nil {
		return res, err
	}
	c, err := dial(ctx, a, opts)
	if err != nil {
		return res, err
	}
	defer c.Close()
	if err := authenticate(ctx, c, a, secret); err != nil {
		return res, err
	}

	uids, err := c.UIDL(ctx)
	noUIDL := false
	if err != nil {
		var pe *pop3.Error
		if !errors.As(err, &pe) {
			return res, err
		}
		if a.KeepOnServer() {
			return res, &Error{Code: ExitDataErr, Err: fmt.Errorf("fetch: account %s: server has no UIDL (%v): it works only with keep = false", a.Name, pe)}
		}
		noUIDL = true
	}
	list, err := c.List(ctx)
	if err != nil {
		return res, err
	}
	sizes := make(map[int]int64, len(list))
	for _, m := range list {
		sizes[m.Num] = m.Size
	}
	if noUIDL {
		uids = make([]pop3.UIDListing, len(list))
		for i, m := range list {
			uids[i] = pop3.UIDListing{Num: m.Num}
		}
	}
	onServer := make(map[string]bool, len(uids))
	for _, u := range uids {
		onServer[u.UID] = true
	}

	// UIDL migration: a server that now shows none of the UIDLs we know
	// would otherwise have all its mail fetched again.
	if !noUIDL && a.KeepOnServer() && !opts.ResetState && st.Len() > MinMigrationState && len(uids) > 0 {
		known := false
		for _, u := range uids {
			if st.Known(u.UID) {
				known = true
				break
			}
		}
		if !known {
			return res, &Error{Code: ExitDataErr, Err: fmt.Errorf("fetch: account %s: server UIDLs changed: none of the %d messages on the server is among the %d recorded; run with --account %s --reset-state to accept them without downloading", a.Name, len(uids), st.Len(), a.Name)}
		}
	}
	if opts.ResetState {
		st.Reset()
		if a.KeepOnServer() {
			// Accepted as retrieved without download: whole, the size
			// from LIST, no header digest.
			now := opts.Now()
			for _, u := range uids {
				st.entries[u.UID] = entry{t: now.Unix(), size: sizes[u.Num]}
			}
		}
		if err := st.Compact(nil); err != nil {
			return res, err
		}
		if err := c.Quit(ctx); err != nil {
			return res, err
		}
		return res, nil
	}

	deleted := make(map[string]bool)
	dele := func(u pop3.UIDListing) error {
		if err := c.Dele(ctx, u.Num); err != nil {
			return err
		}
		deleted[u.UID] = true
		res.Deleted++
		return nil
	}
	maxAge := time.Duration(a.DeleteAfterDays) * 24 * time.Hour
	seen := make(map[string]bool, len(uids))
	runErr := func() error {
		for i, u := range uids {
			if opts.Progress != nil {
				fmt.Fprintf(opts.Progress, "\r%s: %d/%d messages", a.Name, i+1, len(uids))
			}
			size := sizes[u.Num]
			// digest is the header digest of the message on the server,
			// once TOP n 0 was needed to learn it.
			digest := ""
			if !noUIDL {
				if seen[u.UID] {
					// RFC 1939 §7 says UIDLs are unique; a server that
					// repeats one in a listing gets only the first
					// message fetched, and the others are never deleted.
					opts.Logger.Warn("duplicate uidl on server", "account", a.Name, "msg", u.Num)
					continue
				}
				seen[u.UID] = true
				if rec, ok := st.Get(u.UID); ok {
					same, due, d, err := recorded(ctx, c, st, a, u, size, rec, maxAge, opts.Now())
					if err != nil {
						return err
					}
					if same && due {
						if err := dele(u); err != nil {
							return err
						}
					}
					if same {
						continue
					}
					// The server gave a new message the UIDL of one
					// recorded in an earlier session: fetch it as new.
					opts.Logger.Warn("uidl reused by the server for another message", "account", a.Name, "msg", u.Num, "uidl", u.UID)
					digest = d
				}
			}
			top := a.HeadersOnly
			if a.MaxSize > 0 && size > a.MaxSize {
				if a.Oversize == "skip" || noUIDL {
					// Without UIDLs a truncated copy could not be
					// remembered: it would come again each run, and the
					// message could never be deleted. Left on the server.
					res.Skipped++
					continue
				}
				top = true
			}
			copies, err := tgt.Copies(u.UID)
			if err != nil {
				return err
			}
			have := false
			if len(copies) > 0 {
				// A copy with this UIDL is in the target: this message
				// delivered by a run killed before it recorded it, or
				// another message under a reused UIDL. Only the header
				// tells.
				if digest == "" {
					if digest, err = topDigest(ctx, c, u.Num); err != nil {
						return err
					}
				}
				have = slices.Contains(copies, digest)
			}
			if !have {
				var body io.ReadCloser
				if top {
					body, err = c.Top(ctx, u.Num, 0)
				} else {
					body, err = c.Retr(ctx, u.Num)
				}
				if err != nil {
					return err
				}
				hh := newHeaderHash()
				tee := io.TeeReader(body, hh)
				err = tgt.Deliver(ctx, u.UID, tee)
				if err == nil {
					// What the target did not read (an MDA that stops
					// early) still counts for the digest.
					_, err = io.Copy(io.Discard, tee)
				}
				if cerr := body.Close(); err == nil {
					err = cerr
				}
				var rej *rejectedError
				if errors.As(err, &rej) {
					// Recorded so it is not sent again each run, and never
					// deleted: the copy on the server is the only one.
					opts.Logger.Error("message refused by target", "account", a.Name, "msg", u.Num, "uidl", u.UID, "err", err)
					res.Rejected++
					if !noUIDL {
						if err := st.Reject(u.UID, opts.Now(), size); err != nil {
							return err
						}
					}
					continue
				}
				if err != nil {
					return err
				}
				if digest == "" {
					digest = hh.Sum()
				}
				res.Fetched++
			}
			// Delivered durably: record durably, and only then DELE; a
			// message delivered in part (TOP) never, as its copy on the
			// server is the only whole one.
			if !noUIDL {
				if err := st.Record(u.UID, Rec{Time: opts.Now(), Size: size, Digest: digest, Partial: top}); err != nil {
					return err
				}
			}
			if !a.KeepOnServer() && !top {
				if err := dele(u); err != nil {
					return err
				}
			}
		}
		return nil
	}()
	if opts.Progress != nil && len(uids) > 0 {
		fmt.Fprintln(opts.Progress)
	}
	qctx := ctx
	if runErr != nil {
		// Commit the deletions of messages already recorded, if the
		// session still works; briefly.
		var cancel context.CancelFunc
		qctx, cancel = context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
		defer cancel()
	}
	quitErr := c.Quit(qctx)
	if quitErr != nil {
		clear(deleted)
	}
	if !noUIDL {
		// The UIDL listing was complete: entries of messages no longer on
		// the server (or deleted now) are dropped.
		if err := st.Compact(func(u string) bool { return onServer[u] && !deleted[u] }); err != nil && runErr == nil {
			runErr = err
		}
	}
	if runErr != nil {
		return res, runErr
	}
	if quitErr != nil {
		return res, quitErr
	}
	if res.Rejected > 0 {
		return res, &Error{Code: ExitUnavailable, Err: fmt.Errorf("fetch: account %s: %d message(s) refused for good by the target: recorded as rejected and left on the server", a.Name, res.Rejected)}
	}
	return res, nil
}

// partialFetch reports whether the account's policy fetches a message of
// this size in part (TOP n 0).
func (a *Account) partialFetch(size int64) bool {
	return a.HeadersOnly || (a.MaxSize > 0 && size > a.MaxSize && a.Oversize == "truncate")
}

// recorded handles message u, of LIST size size, which the state records
// (rec) from an earlier session. It reports whether the message on the
// server is the recorded one (then the caller is done with it, after a
// DELE if due says the policy wants one) or another one the server gave
// the same UIDL, which the caller fetches as new; digest is the message's
// header digest when TOP n 0 was asked for it.
//
// RFC 1939 §7 says a server should not reuse a UIDL, but some do (a
// mailbox recreated, UIDLs made of message numbers). Telling the two apart
// costs a TOP n 0, so it is asked only where a mistake would cost mail:
// before a DELE, and when LIST gives another size than the recorded one.
// A leave-on-server account with thousands of messages thus costs no
// command per message and run. Where the record has no digest (an older
// version's record, or one accepted by --reset-state), the size is all
// there is to compare: a different size is another message (a duplicate
// at worst), the same size is taken as the same message, as older versions
// took any record.
//
// A message recorded as delivered in part (TOP) is never DELEd: the copy
// on the server is its only whole one. An older version's record does not
// say; it is taken as partial when the account's policy fetches a message
// of this size in part, as the older version would have.
func recorded(ctx context.Context, c *pop3.Client, st *State, a *Account, u pop3.UIDListing, size int64, rec Rec, maxAge time.Duration, now time.Time) (same, due bool, digest string, err error) {
	partial := rec.Partial || (rec.Legacy && a.partialFetch(size))
	due = !rec.Rejected && !partial && (!a.KeepOnServer() || (maxAge > 0 && now.Sub(rec.Time) >= maxAge))
	sizeDiffers := rec.Size >= 0 && rec.Size != size
	same = true
	switch {
	case !due && !sizeDiffers:
	case rec.Digest != "" && !rec.Rejected:
		if digest, err = topDigest(ctx, c, u.Num); err != nil {
			return false, false, "", err
		}
		same = digest == rec.Digest
		if same && sizeDiffers {
			// The same message (a server whose sizes drift): keep the
			// size LIST gives now, so the next run need not ask again.
			rec.Size = size
			if err := st.Record(u.UID, rec); err != nil {
				return false, false, "", err
			}
		}
	default:
		same = !sizeDiffers
	}
	return same, due, digest, nil
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
