package uidlimport

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"strings"
	"time"

	"github.com/postoffice-mail/postoffice/pop3"
)

// Security is how a connection to a server is protected.
type Security int

const (
	Implicit Security = iota // pop3s://: TLS from the first octet (RFC 8314 §3.1)
	StartTLS                 // pop3://...?starttls: STLS before login (RFC 2595 §4)
	Plain                    // pop3://: no TLS
)

// Server is a POP3 server to log in to, from a URL:
//
//	pop3s://user:pass@host[:995]          implicit TLS
//	pop3://user:pass@host[:110]?starttls  STLS, refused if not offered
//	pop3://user:pass@host[:110]           clear text
//
// The user part is a template for bulk runs: %u is the local user name,
// %n its local part, %d its domain, %% a '%'. A Dovecot master user logs
// in as "%u*master" (auth_master_user_separator "*"), with the master's
// password, to every user's maildrop. Name and password are
// percent-decoded (a '@' in a password is "%40").
type Server struct {
	Addr     string // host:port
	Host     string // for the certificate check
	Security Security
	User     string // login name template; "" means the local user name
	Pass     string
	HasPass  bool
}

// ParseServer parses a server URL (see Server). starttls forces STLS on a
// pop3:// URL, as the query "?starttls" does.
func ParseServer(raw string, starttls bool) (Server, error) {
	u, err := url.Parse(raw)
	if err != nil {
		return Server{}, fmt.Errorf("server URL: %w", err)
	}
	var s Server
	port := ""
	switch strings.ToLower(u.Scheme) {
	case "pop3s":
		s.Security, port = Implicit, "995"
		if starttls || u.Query().Has("starttls") {
			return Server{}, errors.New("server URL: starttls is for pop3://; pop3s:// is TLS from the start")
		}
	case "pop3":
		s.Security, port = Plain, "110"
		if starttls || u.Query().Has("starttls") {
			s.Security = StartTLS
		}
	default:
		return Server{}, fmt.Errorf("server URL %q: want pop3s://, or pop3:// with ?starttls", u.Redacted())
	}
	if u.Hostname() == "" {
		return Server{}, fmt.Errorf("server URL %q: no host", u.Redacted())
	}
	if u.Path != "" && u.Path != "/" {
		return Server{}, fmt.Errorf("server URL %q: a POP3 server has no path", u.Redacted())
	}
	for k := range u.Query() {
		if k != "starttls" {
			return Server{}, fmt.Errorf("server URL %q: unknown parameter %q (only starttls)", u.Redacted(), k)
		}
	}
	if u.Port() != "" {
		port = u.Port()
	}
	s.Host = u.Hostname()
	s.Addr = net.JoinHostPort(s.Host, port)
	if u.User != nil {
		s.User = u.User.Username()
		s.Pass, s.HasPass = u.User.Password()
	}
	return s, nil
}

// LoginName expands the user template for the local user name user.
func (s Server) LoginName(user string) (string, error) {
	if s.User == "" {
		return user, nil
	}
	local, domain, _ := strings.Cut(user, "@")
	var b strings.Builder
	for i := 0; i < len(s.User); i++ {
		c := s.User[i]
		if c != '%' {
			b.WriteByte(c)
			continue
		}
		if i+1 == len(s.User) {
			return "", fmt.Errorf("login name %q: a lone %% at the end", s.User)
		}
		i++
		switch s.User[i] {
		case 'u':
			b.WriteString(user)
		case 'n':
			b.WriteString(local)
		case 'd':
			b.WriteString(domain)
		case '%':
			b.WriteByte('%')
		default:
			return "", fmt.Errorf("login name %q: unknown %%%c (%%u, %%n, %%d, %%%%)", s.User, s.User[i])
		}
	}
	return b.String(), nil
}

// Templated reports whether the login name depends on the local user (a
// master-user login), so that one password serves every user.
func (s Server) Templated() bool { return strings.Contains(s.User, "%") }

// DialOptions are the connection settings shared by every login.
type DialOptions struct {
	// CAFile is a PEM file of the certificate authorities to trust
	// instead of the system's.
	CAFile string
	// Insecure allows a clear-text login to a server that is not on a
	// loopback address. Without it such a URL is refused: the password
	// would cross the network in clear.
	Insecure bool
	// Timeout bounds each network read and write; 0 means one minute.
	Timeout time.Duration
	// Dialer makes the TCP connection; nil means a net.Dialer.
	Dialer pop3.ContextDialer
}

// CheckSecurity refuses a clear-text server unless it is on loopback or
// opts.Insecure allows it.
func (s Server) CheckSecurity(opts DialOptions) error {
	if s.Security != Plain || opts.Insecure {
		return nil
	}
	if s.Host == "localhost" {
		return nil
	}
	if ip := net.ParseIP(s.Host); ip != nil && ip.IsLoopback() {
		return nil
	}
	return fmt.Errorf("refusing to send a password in clear to %s: use pop3s://, pop3://...?starttls, or --insecure", s.Addr)
}

// Login connects, protects the connection as the URL says and logs in as
// name with pass (USER/PASS, RFC 1939 §7). The caller Quits or Closes the
// client.
func (s Server) Login(ctx context.Context, name, pass string, opts DialOptions) (*pop3.Client, error) {
	if err := s.CheckSecurity(opts); err != nil {
		return nil, err
	}
	po := &pop3.Options{Timeout: opts.Timeout, Dialer: opts.Dialer}
	if po.Timeout == 0 {
		po.Timeout = time.Minute
	}
	if s.Security != Plain {
		cfg := &tls.Config{ServerName: s.Host, MinVersion: tls.VersionTLS12}
		if opts.CAFile != "" {
			pem, err := os.ReadFile(opts.CAFile)
			if err != nil {
				return nil, fmt.Errorf("CA file: %w", err)
			}
			pool := x509.NewCertPool()
			if !pool.AppendCertsFromPEM(pem) {
				return nil, fmt.Errorf("CA file %s: no PEM certificate in it", opts.CAFile)
			}
			cfg.RootCAs = pool
		}
		po.TLSConfig = cfg
	}
	var (
		c   *pop3.Client
		err error
	)
	switch s.Security {
	case Implicit:
		c, err = pop3.DialTLS(ctx, s.Addr, po)
	case StartTLS:
		c, err = pop3.DialStartTLS(ctx, s.Addr, po)
	default:
		c, err = pop3.Dial(ctx, s.Addr, po)
	}
	if err != nil {
		return nil, fmt.Errorf("%s: %w", s.Addr, err)
	}
	if err := c.Login(ctx, name, pass); err != nil {
		c.Close()
		return nil, fmt.Errorf("%s: login as %q: %w", s.Addr, name, err)
	}
	return c, nil
}
