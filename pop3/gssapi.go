package pop3

import (
	"errors"
	"fmt"
)

// GSSContext is a GSS-API security context on the initiator's side, as
// the GSSAPI SASL mechanism needs it (RFC 2743 names in brackets). The
// Kerberos 5 implementation postoffice uses lives in an internal package;
// any other (a cgo binding of the system's libgssapi, say) fits too.
type GSSContext interface {
	// InitSecContext [GSS_Init_sec_context] is called first with a nil
	// token, then with each token of the server, until it reports the
	// context complete. Its output token goes to the server.
	InitSecContext(token []byte) (out []byte, complete bool, err error)
	// Wrap [GSS_Wrap] protects a message for the server (integrity only
	// is enough).
	Wrap(msg []byte) ([]byte, error)
	// Unwrap [GSS_Unwrap] checks a message of the server's.
	Unwrap(token []byte) ([]byte, error)
}

// GSSAPI security layers (RFC 4752 §3.3).
const gssLayerNone = 1

type gssapiClient struct {
	ctx      GSSContext
	authzid  string
	complete bool
	done     bool
	empty    bool // an empty challenge after the context was complete
}

// NewGSSAPIClient returns the GSSAPI mechanism of RFC 4752 over ctx (for
// Kerberos, a context for the service principal "pop/host"). authzid is
// the authorization identity, usually empty (the server then maps the
// principal to its user).
//
// The exchange (RFC 4752 §3.1): context tokens until the context is
// complete (the AP-REQ, then the server's AP-REP, answered with an empty
// response), then the server's wrapped offer of security layers, answered
// with the wrapped choice of "no security layer" (max size 0) and the
// authorization identity. No layer is ever chosen: the rest of the POP3
// session is not protected by it (use TLS), so a server that offers no
// "none" layer is refused. The maximum size the server states beside a
// "none"-only offer is not checked: RFC 4752 §3.1 wants it 0, but a
// server stating its buffer size there anyway does no harm when no layer
// is chosen, and refusing it would only break the login.
//
// Mutual authentication is required (the context asks for it; Kerberos
// checks the AP-REP): the mechanism is a Completer, and a server that says
// +OK before the security-layer exchange is done, which an impostor
// without the service key would do, fails Authenticate with
// ErrServerNotVerified. The exchange also carries the authorization
// identity, so a server that skips it would log the client in as a user
// of its own choosing.
func NewGSSAPIClient(ctx GSSContext, authzid string) SASLClient {
	return &gssapiClient{ctx: ctx, authzid: authzid}
}

func (a *gssapiClient) Start() (string, []byte, error) {
	out, complete, err := a.ctx.InitSecContext(nil)
	if err != nil {
		return "", nil, err
	}
	a.complete = complete
	if out == nil {
		out = []byte{}
	}
	return "GSSAPI", out, nil
}

func (a *gssapiClient) Next(challenge []byte) ([]byte, error) {
	if a.done {
		return nil, errUnexpectedChallenge
	}
	if !a.complete {
		out, complete, err := a.ctx.InitSecContext(challenge)
		if err != nil {
			return nil, err
		}
		a.complete = complete
		if out == nil {
			out = []byte{}
		}
		return out, nil
	}
	if len(challenge) == 0 {
		// A server that sends its last (empty) context token after the
		// context is complete on our side gets an empty answer, once:
		// more would be a server that never makes its offer.
		if a.empty {
			return nil, errors.New("GSSAPI: another empty challenge instead of the security layer offer")
		}
		a.empty = true
		return []byte{}, nil
	}
	msg, err := a.ctx.Unwrap(challenge)
	if err != nil {
		return nil, fmt.Errorf("GSSAPI security layer offer: %w", err)
	}
	if len(msg) != 4 {
		return nil, fmt.Errorf("GSSAPI security layer offer of %d octets, want 4", len(msg))
	}
	if msg[0]&gssLayerNone == 0 {
		return nil, errors.New("GSSAPI: the server insists on a security layer, which this client does not implement")
	}
	a.done = true
	return a.ctx.Wrap(append([]byte{gssLayerNone, 0, 0, 0}, a.authzid...))
}

// Complete implements Completer: the server proved itself only if the
// context was established (the AP-REP checked) and its security-layer
// offer unwrapped under the context's key.
func (a *gssapiClient) Complete() error {
	if !a.done {
		return fmt.Errorf("%w: GSSAPI: +OK before the security layer exchange of RFC 4752 §3.1", ErrServerNotVerified)
	}
	return nil
}
