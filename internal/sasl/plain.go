package sasl

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"

	gosasl "github.com/emersion/go-sasl"

	"github.com/postoffice-mail/postoffice/internal/auth"
)

// authenticate checks a password with Users and maps auth.ErrFailed.
func (m *Mechanisms) authenticate(ctx context.Context, username, password string) (auth.User, error) {
	u, err := m.opts.Users.Authenticate(ctx, username, password)
	if errors.Is(err, auth.ErrFailed) || errors.Is(err, auth.ErrUnknownUser) {
		return auth.User{}, fmt.Errorf("%w: %w", ErrAuthFailed, err)
	}
	return u, err
}

// plainServer is PLAIN (RFC 4616) over go-sasl's server, which parses the
// message; the authorization identity must be empty or the authentication
// identity (no proxy authorization).
type plainServer struct {
	inner  gosasl.Server
	ctx    context.Context
	called bool
	u      auth.User
}

func newPlain(m *Mechanisms) *plainServer {
	s := &plainServer{}
	s.inner = gosasl.NewPlainServer(func(identity, username, password string) error {
		s.called = true
		if err := identify(s.ctx, username); err != nil {
			return err
		}
		if identity != "" && identity != username {
			return fmt.Errorf("%w: authorization identity differs from the user", ErrAuthFailed)
		}
		u, err := m.authenticate(s.ctx, username, password)
		if err != nil {
			return err
		}
		s.u = u
		return nil
	})
	return s
}

func (s *plainServer) next(ctx context.Context, response []byte) ([]byte, bool, error) {
	s.ctx = ctx
	challenge, done, err := s.inner.Next(response)
	if err != nil {
		if s.called {
			return nil, false, err
		}
		// go-sasl's own complaint: not three NUL-separated fields.
		return nil, false, fmt.Errorf("%w: PLAIN: %w", ErrMalformed, err)
	}
	return challenge, done, nil
}

func (s *plainServer) user() auth.User { return s.u }

// loginServer is LOGIN (draft-murchison-sasl-login-00): the server asks
// "Username:" then "Password:"; an initial response is the user name.
type loginServer struct {
	m        *Mechanisms
	step     int // 0 start, 1 want username, 2 want password
	username string
	u        auth.User
}

func (s *loginServer) next(ctx context.Context, response []byte) ([]byte, bool, error) {
	switch s.step {
	case 0:
		if response == nil {
			s.step = 1
			return []byte("Username:"), false, nil
		}
		s.username, s.step = string(response), 2
		return []byte("Password:"), false, nil
	case 1:
		s.username, s.step = string(response), 2
		return []byte("Password:"), false, nil
	}
	if err := identify(ctx, s.username); err != nil {
		return nil, false, err
	}
	u, err := s.m.authenticate(ctx, s.username, string(response))
	if err != nil {
		return nil, false, err
	}
	s.u = u
	return nil, true, nil
}

func (s *loginServer) user() auth.User { return s.u }

// externalIdentity returns the user name a verified client certificate
// carries, per Options.ExternalUsername.
func (m *Mechanisms) externalIdentity(cs *tls.ConnectionState) (string, error) {
	if cs == nil || len(cs.VerifiedChains) == 0 || len(cs.VerifiedChains[0]) == 0 {
		return "", errors.New("no verified client certificate")
	}
	leaf := cs.VerifiedChains[0][0]
	var id string
	switch m.opts.ExternalUsername {
	case "email":
		if len(leaf.EmailAddresses) > 0 {
			id = leaf.EmailAddresses[0]
		}
	default:
		id = leaf.Subject.CommonName
	}
	if id == "" {
		return "", fmt.Errorf("client certificate has no %s", m.opts.ExternalUsername)
	}
	return id, nil
}

// externalServer is EXTERNAL (RFC 4422 Appendix A) over go-sasl's server:
// the identity comes from the verified client certificate; a requested
// authorization identity must equal it.
type externalServer struct {
	inner  gosasl.Server
	ctx    context.Context
	called bool
	u      auth.User
}

func newExternal(m *Mechanisms, id string) *externalServer {
	s := &externalServer{}
	s.inner = gosasl.NewExternalServer(func(identity string) error {
		s.called = true
		if identity != "" && identity != id {
			return fmt.Errorf("%w: authorization identity differs from the certificate's", ErrAuthFailed)
		}
		u, err := m.opts.Users.Lookup(s.ctx, id)
		if err != nil {
			return lookupErr(err)
		}
		s.u = u
		return nil
	})
	return s
}

func (s *externalServer) next(ctx context.Context, response []byte) ([]byte, bool, error) {
	s.ctx = ctx
	challenge, done, err := s.inner.Next(response)
	if err != nil {
		if s.called {
			return nil, false, err
		}
		return nil, false, fmt.Errorf("%w: EXTERNAL: %w", ErrMalformed, err)
	}
	return challenge, done, nil
}

func (s *externalServer) user() auth.User { return s.u }
