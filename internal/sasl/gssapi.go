package sasl

import (
	"context"
	"errors"
	"fmt"
	"net"

	"github.com/postoffice-mail/postoffice/internal/auth"
	"github.com/postoffice-mail/postoffice/internal/auth/kerberos"
)

// GSSAPI is the Kerberos 5 mechanism of RFC 4752.
const GSSAPI = "GSSAPI"

type remoteKey struct{}

// WithRemoteAddr returns a context carrying the client's address, which
// GSSAPI checks against the addresses a ticket may list (RFC 4120 §5.3
// caddr); without it such a ticket is refused. Address-less tickets, MIT's
// default, need nothing.
func WithRemoteAddr(ctx context.Context, a net.Addr) context.Context {
	return context.WithValue(ctx, remoteKey{}, a)
}

func remoteAddr(ctx context.Context) net.Addr {
	a, _ := ctx.Value(remoteKey{}).(net.Addr)
	return a
}

// The security layers of RFC 4752 §3.3.
const (
	layerNone      = 1
	layerIntegrity = 2
	layerConf      = 4
)

// gssapiServer is the server side of RFC 4752 §3.1:
//
//	C: initial context token (GSS AP-REQ)
//	S: output token (the AP-REP, when the client asked for mutual
//	   authentication; else this step and the next are left out)
//	C: empty
//	S: Wrap(layers offered | max size, 3 octets)
//	C: Wrap(layer chosen | max size | authorization identity)
//
// The context is complete after the first token, as with every Kerberos
// client. When the client asked for mutual authentication, the AP-REP goes
// out first and the client's empty answer is awaited; without it there is
// no output token and the security-layer message is the first challenge
// (RFC 4752 §3.1 sends the output token only when there is one; curl,
// which asks for no mutual authentication, expects exactly that). Only "no
// security layer" is offered, with a maximum size of 0 (Dovecot does the
// same): POP3 has no way to switch a layer on mid-stream, and TLS is the
// confidentiality postoffice offers. The authorization identity may be
// empty or the principal's own user; another is honoured only where the
// mapper's allow list lets the principal act for it.
type gssapiServer struct {
	m     *Mechanisms
	step  int
	ctx   *kerberos.AcceptorContext
	u     auth.User
	local string // the principal's mapped user
}

func (s *gssapiServer) next(ctx context.Context, response []byte) ([]byte, bool, error) {
	switch s.step {
	case 0:
		if response == nil {
			// No initial response: RFC 4422 §5 has the server send an
			// empty challenge for the client's first token.
			s.step = -1
			return []byte{}, false, nil
		}
		return s.accept(ctx, response)
	case -1:
		return s.accept(ctx, response)
	case 1:
		// RFC 4752 §3.1: the client answers the output token with an
		// empty response; Cyrus ignores what it holds, and so do we.
		s.step = 2
		w, err := s.ctx.Wrap([]byte{layerNone, 0, 0, 0})
		if err != nil {
			return nil, false, err
		}
		return w, false, nil
	case 2:
		s.step = 3
		done, err := s.finish(ctx, response)
		return nil, done, err
	}
	return nil, false, fmt.Errorf("%w: GSSAPI exchange is over", ErrMalformed)
}

func (s *gssapiServer) accept(ctx context.Context, token []byte) ([]byte, bool, error) {
	if len(token) == 0 {
		return nil, false, fmt.Errorf("%w: GSSAPI: empty context token (no Kerberos ticket)", ErrAuthFailed)
	}
	c, out, err := s.m.opts.GSSAPI.AcceptGSS(token, remoteAddr(ctx))
	if err != nil {
		if errors.Is(err, kerberos.ErrRefused) {
			return nil, false, fmt.Errorf("%w: GSSAPI: %w", ErrAuthFailed, err)
		}
		return nil, false, err
	}
	s.ctx = c
	// Map now, so a principal without a user fails before more round
	// trips; the failure is the same [AUTH] either way.
	local, err := s.m.opts.GSSAPIMapper.User(c.Client)
	if err != nil {
		return nil, false, fmt.Errorf("%w: GSSAPI: %w", ErrAuthFailed, err)
	}
	s.local = local
	if out == nil {
		// No mutual authentication asked: the context is complete on both
		// sides, and the next challenge is the security-layer message
		// (curl, whose SASL code expects exactly that).
		s.step = 2
		w, err := s.ctx.Wrap([]byte{layerNone, 0, 0, 0})
		if err != nil {
			return nil, false, err
		}
		return w, false, nil
	}
	s.step = 1
	return out, false, nil
}

func (s *gssapiServer) finish(ctx context.Context, response []byte) (bool, error) {
	msg, err := s.ctx.Unwrap(response)
	if err != nil {
		return false, fmt.Errorf("%w: GSSAPI security layer message: %w", ErrAuthFailed, err)
	}
	if len(msg) < 4 {
		return false, fmt.Errorf("%w: GSSAPI security layer message of %d octets", ErrMalformed, len(msg))
	}
	if msg[0] != layerNone {
		return false, fmt.Errorf("%w: GSSAPI: client chose security layer %#x, only none (1) was offered", ErrAuthFailed, msg[0])
	}
	authzid := string(msg[4:])
	if !s.m.opts.GSSAPIMapper.MayActFor(s.ctx.Client, s.local, authzid) {
		return false, fmt.Errorf("%w: GSSAPI: %s may not act for %q", ErrAuthFailed, s.ctx.Client, authzid)
	}
	name := s.local
	if authzid != "" {
		name = authzid
	}
	u, err := s.m.opts.Users.Lookup(ctx, name)
	if err != nil {
		return false, lookupErr(err)
	}
	s.u = u
	return true, nil
}

func (s *gssapiServer) user() auth.User { return s.u }
