package sasl

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	gosasl "github.com/emersion/go-sasl"

	"github.com/postoffice-mail/postoffice/internal/auth"
	"github.com/postoffice-mail/postoffice/internal/auth/oauth"
)

// verifyToken checks a bearer token and the user it names: the token's user
// must exist under exactly the name the token carries (Lookup: no login
// alias applies to a claim), and a user the client claimed must be that user
// (by the name the token carries, the canonical name the database returns,
// or, since the client's name is typed by its user, the login alias of it).
func (m *Mechanisms) verifyToken(ctx context.Context, claimed, token string) (auth.User, error) {
	name, err := m.opts.OAuth.Verify(ctx, token)
	if errors.Is(err, oauth.ErrInvalidToken) {
		return auth.User{}, fmt.Errorf("%w: %w", ErrAuthFailed, err)
	}
	if err != nil {
		return auth.User{}, err
	}
	u, err := m.opts.Users.Lookup(ctx, name)
	if err != nil {
		return auth.User{}, lookupErr(err)
	}
	if alias, _ := auth.LoginAlias(claimed); claimed != "" && claimed != name && claimed != u.Name && alias != u.Name {
		return auth.User{}, fmt.Errorf("%w: token is for another user", ErrAuthFailed)
	}
	return u, nil
}

// oauthError is the JSON error challenge of RFC 7628 §3.2.2 (and XOAUTH2's).
type oauthError struct {
	Status  string `json:"status"`
	Schemes string `json:"schemes"`
	Scope   string `json:"scope,omitempty"`
}

// oauthBearerServer is OAUTHBEARER (RFC 7628) over go-sasl's server, which
// parses the GS2 header and key/value pairs. After a failure go-sasl sends a
// JSON error and expects the client's dummy 0x01 response, but it indexes an
// empty response and panics; this wrapper takes that last message itself.
type oauthBearerServer struct {
	m       *Mechanisms
	inner   gosasl.Server
	ctx     context.Context
	pending error // set after an error challenge: what to return next
	tempErr error
	authErr error
	u       auth.User
}

func newOAuthBearer(m *Mechanisms) *oauthBearerServer {
	s := &oauthBearerServer{m: m}
	s.inner = gosasl.NewOAuthBearerServer(func(opts gosasl.OAuthBearerOptions) *gosasl.OAuthBearerError {
		u, err := m.verifyToken(s.ctx, decodeSASLName(opts.Username), opts.Token)
		if err != nil {
			if errors.Is(err, ErrAuthFailed) {
				s.authErr = err
			} else {
				s.tempErr = err
			}
			return &gosasl.OAuthBearerError{Status: "invalid_token", Schemes: "bearer"}
		}
		s.u = u
		return nil
	})
	return s
}

func (s *oauthBearerServer) next(ctx context.Context, response []byte) ([]byte, bool, error) {
	if s.pending != nil {
		// RFC 7628 §3.2.3: the client answers an error with a single 0x01.
		if len(response) != 1 || response[0] != 0x01 {
			return nil, false, fmt.Errorf("%w: OAUTHBEARER: want 0x01 after an error", ErrMalformed)
		}
		return nil, false, s.pending
	}
	s.ctx = ctx
	challenge, done, err := s.inner.Next(response)
	switch {
	case s.tempErr != nil:
		return nil, false, s.tempErr
	case err != nil:
		return nil, false, fmt.Errorf("%w: OAUTHBEARER: %w", ErrMalformed, err)
	case done:
		return challenge, true, nil
	case s.authErr != nil:
		s.pending = s.authErr
		return s.m.oauthErrorJSON("invalid_token", "bearer"), false, nil
	case len(challenge) > 0:
		// go-sasl's invalid_request: the message did not parse.
		s.pending = fmt.Errorf("%w: OAUTHBEARER: message does not parse", ErrMalformed)
		return challenge, false, nil
	}
	return challenge, false, nil // the empty challenge asking for the message
}

func (s *oauthBearerServer) user() auth.User { return s.u }

func (m *Mechanisms) oauthErrorJSON(status, schemes string) []byte {
	b, _ := json.Marshal(oauthError{Status: status, Schemes: schemes, Scope: m.opts.OAuthScope})
	return b
}

// decodeSASLName undoes the GS2 saslname escaping (RFC 5801 §4: "=2C" is
// ",", "=3D" is "="); go-sasl passes the name through as sent.
func decodeSASLName(s string) string {
	if !strings.Contains(s, "=") {
		return s
	}
	return strings.NewReplacer("=2C", ",", "=3D", "=").Replace(s)
}

// xoauth2Server is Google's XOAUTH2: the client sends
// "user=" name 0x01 "auth=Bearer " token 0x01 0x01; on failure the server
// sends a JSON error as a challenge and fails after the client's (empty)
// reply.
type xoauth2Server struct {
	m       *Mechanisms
	started bool
	pending error
	u       auth.User
}

func (s *xoauth2Server) next(ctx context.Context, response []byte) ([]byte, bool, error) {
	if s.pending != nil {
		return nil, false, s.pending
	}
	if !s.started && response == nil {
		s.started = true
		return []byte{}, false, nil
	}
	s.started = true
	var user, token string
	var haveUser, haveAuth bool
	for _, f := range bytes.Split(bytes.TrimRight(response, "\x01"), []byte{0x01}) {
		k, v, ok := bytes.Cut(f, []byte("="))
		if !ok {
			return nil, false, fmt.Errorf("%w: XOAUTH2: field without \"=\"", ErrMalformed)
		}
		switch string(k) {
		case "user":
			user, haveUser = string(v), true
		case "auth":
			scheme, tok, ok := strings.Cut(string(v), " ")
			if !ok || !strings.EqualFold(scheme, "Bearer") || tok == "" {
				return nil, false, fmt.Errorf("%w: XOAUTH2: auth is not \"Bearer <token>\"", ErrMalformed)
			}
			token, haveAuth = tok, true
		default:
			return nil, false, fmt.Errorf("%w: XOAUTH2: unknown field", ErrMalformed)
		}
	}
	if !haveUser || !haveAuth {
		return nil, false, fmt.Errorf("%w: XOAUTH2: want user= and auth=", ErrMalformed)
	}
	u, err := s.m.verifyToken(ctx, user, token)
	if errors.Is(err, ErrAuthFailed) {
		s.pending = err
		return s.m.oauthErrorJSON("401", "bearer"), false, nil
	}
	if err != nil {
		return nil, false, err
	}
	s.u = u
	return nil, true, nil
}

func (s *xoauth2Server) user() auth.User { return s.u }
