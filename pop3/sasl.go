package pop3

import (
	"crypto/hmac"
	"crypto/md5"
	"encoding/hex"
	"errors"
	"strconv"
	"strings"
)

// SASLClient is one SASL mechanism on the client side, for Authenticate.
// It has the shape of github.com/emersion/go-sasl's Client, so those
// mechanisms (and SCRAM clients wrapped the same way) plug in unchanged.
type SASLClient interface {
	// Start returns the mechanism name and the initial response: nil for
	// none, an empty non-nil slice for an empty one.
	Start() (mech string, ir []byte, err error)
	// Next answers a decoded server challenge. An error cancels the
	// exchange with "*".
	Next(challenge []byte) (response []byte, err error)
}

var errUnexpectedChallenge = errors.New("unexpected server challenge")

type plainClient struct{ identity, username, password string }

// NewPlainClient returns the PLAIN mechanism (RFC 4616): identity is the
// authorization identity, usually empty.
func NewPlainClient(identity, username, password string) SASLClient {
	return &plainClient{identity, username, password}
}

func (a *plainClient) Start() (string, []byte, error) {
	return "PLAIN", []byte(a.identity + "\x00" + a.username + "\x00" + a.password), nil
}

func (a *plainClient) Next(challenge []byte) ([]byte, error) {
	return nil, errUnexpectedChallenge
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
	ch := strings.ToLower(string(challenge))
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

type xoauth2Client struct{ username, token string }

// NewXOAuth2Client returns Google's XOAUTH2 mechanism
// (developers.google.com/gmail/imap/xoauth2-protocol). When the token is
// refused the server sends a JSON error as a challenge; the client answers
// with an empty response and the server then says -ERR.
func NewXOAuth2Client(username, token string) SASLClient {
	return &xoauth2Client{username, token}
}

func (a *xoauth2Client) Start() (string, []byte, error) {
	return "XOAUTH2", []byte("user=" + a.username + "\x01auth=Bearer " + a.token + "\x01\x01"), nil
}

func (a *xoauth2Client) Next(challenge []byte) ([]byte, error) {
	return []byte{}, nil
}

// OAuthBearerOptions are the fields of an OAUTHBEARER initial response
// (RFC 7628 §3.1). Host and Port are optional.
type OAuthBearerOptions struct {
	Username string // authorization identity, may be empty
	Token    string
	Host     string
	Port     int
}

type oauthBearerClient struct {
	opts OAuthBearerOptions
	sent bool
}

// NewOAuthBearerClient returns the OAUTHBEARER mechanism (RFC 7628). When
// the token is refused the server sends a JSON error as a challenge; the
// client answers with the dummy response %x01 (RFC 7628 §3.2.3) and the
// server then says -ERR.
func NewOAuthBearerClient(opts OAuthBearerOptions) SASLClient {
	return &oauthBearerClient{opts: opts}
}

func (a *oauthBearerClient) Start() (string, []byte, error) {
	var b strings.Builder
	b.WriteString("n,")
	if a.opts.Username != "" {
		// RFC 5801 §5: "=" and "," in the authzid are escaped.
		b.WriteString("a=" + strings.NewReplacer("=", "=3D", ",", "=2C").Replace(a.opts.Username))
	}
	b.WriteString(",\x01")
	if a.opts.Host != "" {
		b.WriteString("host=" + a.opts.Host + "\x01")
	}
	if a.opts.Port != 0 {
		b.WriteString("port=" + strconv.Itoa(a.opts.Port) + "\x01")
	}
	b.WriteString("auth=Bearer " + a.opts.Token + "\x01\x01")
	return "OAUTHBEARER", []byte(b.String()), nil
}

func (a *oauthBearerClient) Next(challenge []byte) ([]byte, error) {
	if a.sent {
		return nil, errUnexpectedChallenge
	}
	a.sent = true
	return []byte{0x01}, nil
}
