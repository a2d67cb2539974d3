package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/postoffice-mail/postoffice/internal/bench"
	"github.com/postoffice-mail/postoffice/internal/certutil"
)

// runBench is "postoffice bench": the load generator, or its helpers
// "bench seed" and "bench responder".
func runBench(args []string, stdout, stderr io.Writer) error {
	if len(args) > 0 {
		switch args[0] {
		case "seed":
			return runBenchSeed(args[1:], stdout, stderr)
		case "responder":
			return runBenchResponder(args[1:], stdout, stderr)
		case "curve":
			return runBenchCurve(args[1:], stdout, stderr)
		}
	}
	fs := newFlagSet("bench", stderr)
	fs.Usage = func() {
		fmt.Fprintln(stderr, "usage: postoffice bench [flags]            run a load scenario against a POP3 server")
		fmt.Fprintln(stderr, "       postoffice bench seed [flags]       write Maildirs and passwd-files to benchmark on")
		fmt.Fprintln(stderr, "       postoffice bench responder [flags]  run the in-memory POP3 responder (the generator's ceiling)")
		fmt.Fprintln(stderr, "       postoffice bench curve [flags] X=FILE...  a cost curve from --json results: table, JSON, SVG plot")
		fmt.Fprintln(stderr, "\nflags:")
		fs.PrintDefaults()
	}
	addr := fs.String("addr", "127.0.0.1:110", "server `host:port`")
	tlsMode := fs.String("tls", "none", "TLS: none, starttls or implicit")
	insecure := fs.Bool("insecure", false, "do not verify the server's certificate")
	cacert := fs.String("cacert", "", "PEM `file` of the CA (or self-signed certificate) to verify the server with")
	user := fs.String("user", "", "user name (or --users)")
	password := fs.String("password", "", "password for --user")
	usersFile := fs.String("users", "", "`file` of user:password lines; sessions are spread over them")
	scenario := fs.String("scenario", "login", "login, download, drain, top, bigbox, idle or resume (login resuming the TLS session)")
	concurrency := fs.Int("concurrency", 1, "sessions in flight")
	duration := fs.Duration("duration", 0, "start sessions for this long")
	sessions := fs.Int("sessions", 0, "start at most this many sessions (idle: hold this many)")
	timeout := fs.Duration("timeout", 30*time.Second, "bound on every network read and write")
	hold := fs.Duration("hold", 2*time.Second, "idle: how long to hold the sessions before reading the server's memory")
	serverPID := fs.Int("server-pid", 0, "server `pid`: report its CPU per session (with its descendants'), and its memory for idle")
	asJSON := fs.Bool("json", false, "write the result as JSON")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return usageError{"unexpected arguments: " + strings.Join(fs.Args(), " ")}
	}
	mode, err := bench.ParseTLSMode(*tlsMode)
	if err != nil {
		return usageError{err.Error()}
	}
	var users []bench.Credential
	switch {
	case *usersFile != "" && *user != "":
		return usageError{"--user and --users exclude each other"}
	case *usersFile != "":
		if users, err = bench.ReadUsers(*usersFile); err != nil {
			return err
		}
	case *user != "":
		users = []bench.Credential{{User: *user, Password: *password}}
	default:
		return usageError{"need --user and --password, or --users FILE"}
	}
	var tc *tls.Config
	if mode != bench.TLSNone {
		host, _, err := net.SplitHostPort(*addr)
		if err != nil {
			return usageError{fmt.Sprintf("--addr: %v", err)}
		}
		tc = &tls.Config{ServerName: host, InsecureSkipVerify: *insecure, MinVersion: tls.VersionTLS12}
		if *cacert != "" {
			pem, err := os.ReadFile(*cacert)
			if err != nil {
				return err
			}
			tc.RootCAs = x509.NewCertPool()
			if !tc.RootCAs.AppendCertsFromPEM(pem) {
				return fmt.Errorf("no certificate in %s", *cacert)
			}
		}
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	res, err := bench.Run(ctx, bench.Options{
		Addr: *addr, TLS: mode, TLSConf: tc, Users: users, Scenario: bench.Scenario(*scenario),
		Concurrency: *concurrency, Sessions: *sessions, Duration: *duration, Timeout: *timeout,
		Hold: *hold, ServerPID: *serverPID,
	})
	if err != nil {
		return err
	}
	if *asJSON {
		if err := res.WriteJSON(stdout); err != nil {
			return err
		}
	} else {
		res.WriteText(stdout)
	}
	if res.Sessions == 0 {
		return exitError{code: 1, err: errors.New("no session succeeded")}
	}
	return nil
}

func runBenchSeed(args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("bench seed", stderr)
	dir := fs.String("maildir", "", "`directory` to write mail/<user>/Maildir, passwd and users.txt into")
	messages := fs.Int("messages", 100, "messages per user")
	sizeDist := fs.String("size-dist", "realistic", "message sizes: realistic (log-normal, median 4 KB, tail to 75 KB, 2% 1-5 MB) or fixed:BYTES")
	users := fs.Int("users", 1, "number of users (user00001...); 0 with --bigbox for that user only")
	bigbox := fs.Int("bigbox", 0, "also write a user with this many messages (no attachments)")
	bigboxName := fs.String("bigbox-name", "bigbox", "name of the --bigbox user; its credentials go to NAME.txt")
	bigboxSizes := fs.String("bigbox-size-dist", "", "sizes of the bigbox messages: fixed:BYTES, or realistic without attachments (default)")
	withSizes := fs.Bool("with-sizes", false, "name files like Dovecot's LDA, with ,S= and ,W= sizes (default: like Postfix, without)")
	var crlf crlfFlag
	fs.Var(&crlf, "crlf", "store the messages with CRLF line ends, as an LMTP delivery or Dovecot's mail_save_crlf does (default: LF, as Postfix writes); --crlf=F for a fraction F of them")
	password := fs.String("password", bench.DefaultPassword, "every user's password")
	seed := fs.Uint64("seed", 1, "random seed: the same seed writes the same messages")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		hint := ""
		if _, err := strconv.ParseFloat(fs.Arg(0), 64); err == nil && crlf != 0 {
			hint = fmt.Sprintf(" (a fraction of CRLF messages is written --crlf=%s)", fs.Arg(0))
		}
		return usageError{"unexpected arguments: " + strings.Join(fs.Args(), " ") + hint}
	}
	if *dir == "" {
		return usageError{"need --maildir DIR"}
	}
	start := time.Now()
	res, err := bench.Seed(bench.SeedOptions{
		Dir: *dir, Users: *users, Messages: *messages, SizeDist: *sizeDist, Bigbox: *bigbox, BigboxName: *bigboxName, BigboxSizeDist: *bigboxSizes,
		WithSizes: *withSizes, CRLF: float64(crlf), Password: *password, Seed: *seed,
	})
	if err != nil {
		return err
	}
	// A self-signed certificate for both servers' TLS listeners.
	certPath, keyPath := filepath.Join(*dir, "cert.pem"), filepath.Join(*dir, "key.pem")
	if _, err := os.Stat(certPath); err != nil {
		p, err := certutil.SelfSigned(30 * 24 * time.Hour)
		if err != nil {
			return err
		}
		if err := p.WriteFiles(certPath, keyPath); err != nil {
			return err
		}
	}
	fmt.Fprintf(stdout, "seeded %d maildrops, %d messages, %.1f MB in %.1fs\npasswd-file %s\nusers file  %s\ncertificate %s\n",
		res.Users, res.Messages, float64(res.Bytes)/1e6, time.Since(start).Seconds(), res.Passwd, res.UsersTxt, certPath)
	return nil
}

func runBenchResponder(args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("bench responder", stderr)
	addr := fs.String("addr", "127.0.0.1:0", "listen `address`")
	maildir := fs.String("maildir", "", "serve the messages of this Maildir (default: generate them)")
	mailRoot := fs.String("mail-root", "", "`directory` of <user>/Maildir: a user found there gets its own messages (what bench seed wrote in DIR/mail)")
	messages := fs.Int("messages", 100, "messages to generate when there is no --maildir")
	sizeDist := fs.String("size-dist", "realistic", "sizes of generated messages: realistic or fixed:BYTES")
	implicitTLS := fs.Bool("tls", false, "implicit TLS, with --cert and --key or a fresh self-signed certificate")
	certFile := fs.String("cert", "", "with --tls: PEM certificate `file` (chain) to serve, such as the cert.pem bench seed writes, so that the responder's handshakes cost what the servers' do")
	keyFile := fs.String("key", "", "with --tls: PEM private key `file` of --cert")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return usageError{"unexpected arguments: " + strings.Join(fs.Args(), " ")}
	}
	tc, err := responderTLS(*implicitTLS, *certFile, *keyFile)
	if err != nil {
		return err
	}
	var msgs [][]byte
	if *maildir != "" {
		msgs, err = bench.LoadMaildir(*maildir)
	} else {
		msgs, err = bench.GenerateMessages(*messages, *sizeDist, 1)
	}
	if err != nil {
		return err
	}
	l, err := net.Listen("tcp", *addr)
	if err != nil {
		return err
	}
	r := bench.NewResponder(msgs, tc)
	if *mailRoot != "" {
		r.ServeUsers(*mailRoot)
	}
	fmt.Fprintf(stdout, "responder listening on %s with %d messages\n", l.Addr(), len(msgs))
	if f, ok := stdout.(interface{ Sync() error }); ok {
		f.Sync()
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	return r.Serve(ctx, l)
}

// responderTLS is the responder's implicit TLS configuration: nil without
// --tls; the certificate and key of --cert and --key (both or neither),
// which a comparison passes so that the responder signs its handshakes
// with the servers' key type; otherwise a fresh self-signed ECDSA P-256
// certificate, valid for a day.
func responderTLS(implicit bool, certFile, keyFile string) (*tls.Config, error) {
	if (certFile == "") != (keyFile == "") {
		return nil, usageError{"--cert and --key go together"}
	}
	if !implicit {
		if certFile != "" {
			return nil, usageError{"--cert and --key need --tls"}
		}
		return nil, nil
	}
	var cert tls.Certificate
	var err error
	if certFile != "" {
		if cert, err = tls.LoadX509KeyPair(certFile, keyFile); err != nil {
			return nil, fmt.Errorf("bench responder: --cert %s --key %s: %w", certFile, keyFile, err)
		}
	} else {
		p, err := certutil.SelfSigned(24 * time.Hour)
		if err != nil {
			return nil, err
		}
		cert = p.TLS
	}
	return &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}, nil
}

// runBenchCurve is "postoffice bench curve": it gathers `postoffice bench
// --json` results, one per value X of a parameter, into a cost curve and
// writes its Markdown table to stdout, and with --json and --svg the curve
// and its plot.
func runBenchCurve(args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("bench curve", stderr)
	fs.Usage = func() {
		fmt.Fprintln(stderr, "usage: postoffice bench curve --name NAME --x-label LABEL --metric M [--metric M...] [--json FILE] [--svg FILE] X=RESULT.json...")
		fmt.Fprintln(stderr, "metrics: "+strings.Join(bench.CurveMetricNames(), ", "))
		fmt.Fprintln(stderr, "\nflags:")
		fs.PrintDefaults()
	}
	name := fs.String("name", "", "the curve's `title`")
	xLabel := fs.String("x-label", "x", "the parameter's `label`")
	yLabel := fs.String("y-label", "", "the plot's y `label` (default: the metrics')")
	var metrics stringList
	fs.Var(&metrics, "metric", "a `figure` to show (repeatable)")
	jsonOut := fs.String("json", "", "write the curve as JSON to `file`")
	svgOut := fs.String("svg", "", "write the plot as SVG to `file`")
	logX := fs.Bool("log-x", true, "logarithmic x axis")
	logY := fs.Bool("log-y", false, "logarithmic y axis")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	c, err := bench.NewCurve(*name, *xLabel, metrics, fs.Args())
	if err != nil {
		return usageError{err.Error()}
	}
	c.YLabel = *yLabel
	if *jsonOut != "" {
		b, err := json.MarshalIndent(c, "", "  ")
		if err != nil {
			return err
		}
		if err := os.WriteFile(*jsonOut, append(b, '\n'), 0o644); err != nil {
			return err
		}
	}
	if *svgOut != "" {
		var b bytes.Buffer
		if err := c.Plot(*logX, *logY).WriteSVG(&b); err != nil {
			return err
		}
		if err := os.WriteFile(*svgOut, b.Bytes(), 0o644); err != nil {
			return err
		}
	}
	c.WriteTable(stdout)
	return nil
}

// crlfFlag is bench seed's --crlf: the fraction of messages stored with
// CRLF line ends. Alone it means all of them (a boolean flag to the flag
// package); --crlf=F sets a fraction 0..1 and --crlf=false none.
type crlfFlag float64

func (f *crlfFlag) String() string   { return strconv.FormatFloat(float64(*f), 'g', -1, 64) }
func (f *crlfFlag) IsBoolFlag() bool { return true }
func (f *crlfFlag) Set(v string) error {
	if b, err := strconv.ParseBool(v); err == nil {
		*f = 0
		if b {
			*f = 1
		}
		return nil
	}
	x, err := strconv.ParseFloat(v, 64)
	if err != nil || !(x >= 0 && x <= 1) {
		return fmt.Errorf("want true, false or a fraction 0..1, not %q", v)
	}
	*f = crlfFlag(x)
	return nil
}

// stringList is a repeatable string flag.
type stringList []string

func (l *stringList) String() string     { return strings.Join(*l, ",") }
func (l *stringList) Set(v string) error { *l = append(*l, v); return nil }
