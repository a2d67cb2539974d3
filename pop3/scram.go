package pop3

import (
	"crypto/tls"
	"fmt"
	"strings"

	"github.com/postoffice-mail/postoffice/internal/wire"
	"github.com/xdg-go/scram"
)

// ChannelBinder is an add-on interface of a SASLClient that binds the
// authentication to the TLS connection (RFC 5056), as the SCRAM -PLUS
// mechanisms do. Authenticate calls BindTLS before Start with the state of
// the connection, or nil when it is not encrypted; an error stops
// Authenticate before anything is sent.
type ChannelBinder interface {
	BindTLS(cs *tls.ConnectionState) error
}

// Completer is an add-on interface of a SASLClient with mutual
// authentication. Authenticate calls Complete once the server said +OK; a
// non-nil error means the server did not prove itself, and Authenticate
// fails with it (the session is dropped).
type Completer interface {
	Complete() error
}

// SCRAM mechanism names for NewSCRAMClient (RFC 5802, RFC 7677; -PLUS with
// channel binding, RFC 5802 §6, RFC 5929, RFC 9266).
const (
	SCRAMSHA1       = "SCRAM-SHA-1"
	SCRAMSHA1Plus   = "SCRAM-SHA-1-PLUS"
	SCRAMSHA256     = "SCRAM-SHA-256"
	SCRAMSHA256Plus = "SCRAM-SHA-256-PLUS"
)

// scramClient runs one SCRAM conversation through github.com/xdg-go/scram.
type scramClient struct {
	mech   string
	plus   bool
	client *scram.Client
	cb     scram.ChannelBinding
	bound  bool // BindTLS was called with a TLS state
	// canBind: a plain variant over TLS whose server did not offer the
	// -PLUS one; it then sends the GS2 flag "y" (RFC 5802 §6), so a server
	// that does support channel binding detects the stripped offer.
	canBind bool
	conv    *scram.ClientConversation
}

// plusOffer is shown the server's cached CAPA answer (nil when none) so a
// plain SCRAM mechanism can tell whether its -PLUS variant was offered.
type plusOffer interface{ sawCaps(caps *Caps) }

func (a *scramClient) sawCaps(caps *Caps) {
	// Without a CAPA answer "n" is the safe flag: "y" to a server that
	// does offer -PLUS would be refused as a downgrade.
	a.canBind = a.canBind && !a.plus && caps != nil && !caps.HasSASL(a.mech+"-PLUS")
}

// NewSCRAMClient returns the SCRAM mechanism mech (SCRAMSHA1, SCRAMSHA256
// or their -PLUS variants) for username and password, with an optional
// authorization identity. The names are normalised with SASLprep (RFC
// 4013).
//
// The client checks the server signature of the server-final-message: an
// "e=" error, a wrong signature or a +OK without a server-final-message
// fails the authentication (ErrServerNotVerified), so a server that does
// not know the credentials cannot pass for the real one. PBKDF2 iteration
// counts below 4096 are refused (RFC 7677 §4).
//
// The -PLUS variants need a TLS connection (Authenticate passes its state
// through ChannelBinder): they bind with tls-exporter (RFC 9266) on TLS 1.3
// and tls-server-end-point (RFC 5929 §4) before. The plain variants send
// the GS2 flag "y" over TLS when the server's CAPA did not offer the -PLUS
// variant (so a server that supports it detects an offer stripped on the
// way), and "n" otherwise.
func NewSCRAMClient(mech, username, password, authzid string) (SASLClient, error) {
	mech = wire.ToUpperASCII(mech)
	var h scram.HashGeneratorFcn
	switch strings.TrimSuffix(mech, "-PLUS") {
	case SCRAMSHA1:
		h = scram.SHA1
	case SCRAMSHA256:
		h = scram.SHA256
	default:
		return nil, fmt.Errorf("pop3: unknown SCRAM mechanism %q", mech)
	}
	c, err := h.NewClient(username, password, authzid)
	if err != nil {
		return nil, fmt.Errorf("pop3: %s: %w", mech, err)
	}
	return &scramClient{mech: mech, plus: strings.HasSuffix(mech, "-PLUS"), client: c}, nil
}

func (a *scramClient) BindTLS(cs *tls.ConnectionState) error {
	a.bound = false
	if !a.plus {
		a.canBind = cs != nil
		return nil
	}
	if cs == nil {
		return fmt.Errorf("%s needs a TLS connection for channel binding", a.mech)
	}
	var err error
	if cs.Version >= tls.VersionTLS13 {
		a.cb, err = scram.NewTLSExporterBinding(cs)
	} else {
		a.cb, err = scram.NewTLSServerEndpointBinding(cs)
	}
	if err != nil {
		return fmt.Errorf("%s: channel binding: %w", a.mech, err)
	}
	a.bound = true
	return nil
}

func (a *scramClient) Start() (string, []byte, error) {
	if a.plus {
		if !a.bound {
			return "", nil, fmt.Errorf("%s needs a TLS connection for channel binding", a.mech)
		}
		a.conv = a.client.NewConversationWithChannelBinding(a.cb)
	} else if a.canBind {
		a.conv = a.client.NewConversationAdvertisingChannelBinding()
	} else {
		a.conv = a.client.NewConversation()
	}
	first, err := a.conv.Step("")
	if err != nil {
		return "", nil, err
	}
	return a.mech, []byte(first), nil
}

func (a *scramClient) Next(challenge []byte) ([]byte, error) {
	if a.conv == nil || a.conv.Done() {
		return nil, errUnexpectedChallenge
	}
	resp, err := a.conv.Step(string(challenge))
	if err != nil {
		if !a.conv.Done() {
			return nil, err
		}
		if strings.HasPrefix(string(challenge), "e=") {
			// The server refused the proof (or the channel binding)
			// in its server-final-message: an empty answer lets it
			// say -ERR with its response code (RFC 5034 §4). Should
			// it say +OK instead, Complete still fails.
			return []byte{}, nil
		}
		// A wrong server signature: cancel.
		return nil, fmt.Errorf("%w: %v", ErrServerNotVerified, err)
	}
	return []byte(resp), nil
}

func (a *scramClient) Complete() error {
	if a.conv == nil || !a.conv.Valid() {
		return ErrServerNotVerified
	}
	return nil
}

// NewExternalClient returns the EXTERNAL mechanism (RFC 4422 Appendix A):
// the server authenticates the client from outside SASL, in practice by the
// TLS client certificate configured in Options.TLSConfig. authzid is the
// identity to act as; empty means the one the certificate maps to.
func NewExternalClient(authzid string) SASLClient {
	return &initialClient{mech: "EXTERNAL", ir: []byte(authzid)}
}
