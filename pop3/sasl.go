package pop3

import (
	"crypto/hmac"
	"crypto/md5"
	"encoding/hex"
	"errors"
	"strconv"
	"strings"

	"github.com/postoffice-mail/postoffice/internal/wire"
)

// SASLClient is one SASL mechanism on the client side, for Authenticate.
// It has the shape of github.com/emersion/go-sasl's Client, so those
// mechanisms plug in unchanged. Mechanisms that need the TLS connection or
// must check the server's last word implement ChannelBinder or Completer.
type SASLClient interface {
	// Start returns the mechanism name and the initial response: nil for
	// none, an empty non-nil slice for an empty one.
	Start() (mech string, ir []byte, err error)
	// Next answers a decoded server challenge. An error cancels the
	// exchange with "*".
	Next(challenge []byte) (response []byte, err error)
}

var errUnexpectedChallenge = errors.New("unexpected server challenge")

// initialClient is a mechanism whose whole exchange is its initial
// response. A server that refuses it with an error challenge (XOAUTH2,
// OAUTHBEARER) gets errReply once and then says -ERR; any other challenge
// cancels the exchange, so a hostile server cannot keep it going.
type initialClient struct {
	mech     string
	ir       []byte
	errReply []byte // answer to the error challenge; nil: none expected
	answered bool
}

func (a *initialClient) Start() (string, []byte, error) {
	a.answered = false
	return a.mech, a.ir, nil
}

func (a *initialClient) Next([]byte) ([]byte, error) {
	if a.errReply == nil || a.answered {
		return nil, errUnexpectedChallenge
	}
	a.answered = true
	return a.errReply, nil
}

// NewPlainClient returns the PLAIN mechanism (RFC 4616): identity is the
// authorization identity, usually empty.
func NewPlainClient(identity, username, password string) SASLClient {
	return &initialClient{mech: "PLAIN", ir: []byte(identity + "\x00" + username + "\x00" + password)}
}

type loginClient struct {
	username, password string
	step               int
}

// NewLoginClient returns the obsolete LOGIN mechanism
// (draft-murchison-sasl-login): the user name and the password, each as the
// answer to a challenge ("Username:", "Password:").
func NewLoginClient(username, password string) SASLClient {
	return &loginClient{username: username, password: password}
}

func (a *loginClient) Start() (string, []byte, error) { return "LOGIN", nil, nil }

func (a *loginClient) Next(challenge []byte) ([]byte, error) {
	ch := wire.ToLowerASCII(string(challenge))
	a.step++
	switch {
	case strings.HasPrefix(ch, "user"):
		return []byte(a.username), nil
	case strings.HasPrefix(ch, "pass"):
		return []byte(a.password), nil
	case a.step == 1:
		return []byte(a.username), nil
	case a.step == 2:
		return []byte(a.password), nil
	}
	return nil, errUnexpectedChallenge
}

type cramMD5Client struct {
	username, secret string
	done             bool
}

// NewCRAMMD5Client returns the CRAM-MD5 mechanism (RFC 2195): the answer
// to the challenge is the user name and the hex HMAC-MD5 of the challenge
// keyed with the secret.
func NewCRAMMD5Client(username, secret string) SASLClient {
	return &cramMD5Client{username: username, secret: secret}
}

func (a *cramMD5Client) Start() (string, []byte, error) { return "CRAM-MD5", nil, nil }

func (a *cramMD5Client) Next(challenge []byte) ([]byte, error) {
	if a.done {
		return nil, errUnexpectedChallenge
	}
	a.done = true
	mac := hmac.New(md5.New, []byte(a.secret))
	mac.Write(challenge)
	return []byte(a.username + " " + hex.EncodeToString(mac.Sum(nil))), nil
}

// NewXOAuth2Client returns Google's XOAUTH2 mechanism
// (developers.google.com/gmail/imap/xoauth2-protocol). When the token is
// refused the server sends a JSON error as a challenge; the client answers
// with an empty response and the server then says -ERR.
func NewXOAuth2Client(username, token string) SASLClient {
	ir := []byte("user=" + username + "\x01auth=Bearer " + token + "\x01\x01")
	return &initialClient{mech: "XOAUTH2", ir: ir, errReply: []byte{}}
}

// OAuthBearerOptions are the fields of an OAUTHBEARER initial response
// (RFC 7628 §3.1). Host and Port are optional.
type OAuthBearerOptions struct {
	Username string // authorization identity, may be empty
	Token    string
	Host     string
	Port     int
}

// NewOAuthBearerClient returns the OAUTHBEARER mechanism (RFC 7628). When
// the token is refused the server sends a JSON error as a challenge; the
// client answers with the dummy response %x01 (RFC 7628 §3.2.3) and the
// server then says -ERR.
func NewOAuthBearerClient(opts OAuthBearerOptions) SASLClient {
	var b strings.Builder
	b.WriteString("n,")
	if opts.Username != "" {
		// RFC 5801 §5: "=" and "," in the authzid are escaped.
		b.WriteString("a=" + strings.NewReplacer("=", "=3D", ",", "=2C").Replace(opts.Username))
	}
	b.WriteString(",\x01")
	if opts.Host != "" {
		b.WriteString("host=" + opts.Host + "\x01")
	}
	if opts.Port != 0 {
		b.WriteString("port=" + strconv.Itoa(opts.Port) + "\x01")
	}
	b.WriteString("auth=Bearer " + opts.Token + "\x01\x01")
	return &initialClient{mech: "OAUTHBEARER", ir: []byte(b.String()), errReply: []byte{0x01}}
}
