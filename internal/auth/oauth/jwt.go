package oauth

import (
	"context"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rsa"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"sync"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
)

// JWTLeeway is the clock skew allowed when checking "exp", "nbf" and "iat".
const JWTLeeway = time.Minute

// maxJWKSSize bounds the JWKS file read.
const maxJWKSSize = 1 << 20

// jwtAlgorithms are the signature algorithms accepted; "none" and the HMAC
// algorithms never are.
var jwtAlgorithms = []jose.SignatureAlgorithm{jose.RS256, jose.ES256, jose.EdDSA}

// JWTOptions configures NewJWT.
type JWTOptions struct {
	// JWKSFile is the path of a JSON Web Key Set (RFC 7517 §5) holding the
	// issuer's public keys. Required. It is read by NewJWT and read again
	// when its modification time or size changes; if a reload fails, the
	// keys already loaded stay in use and the failure is logged. Private or
	// symmetric keys in it are reduced to their public part or ignored.
	JWKSFile string
	// Issuer must equal the token's "iss" claim. Required.
	Issuer string
	// Audience must be one of the token's "aud" values. Required.
	Audience string
	// ClientIDs, when not empty, are the OAuth clients whose tokens are
	// accepted: the token's "client_id" (RFC 9068 §2.2), or "azp" (OpenID
	// Connect Core §2) when it has none, must be one of them.
	ClientIDs []string
	// UsernameClaim names the claim holding the user name; it must be a
	// non-empty string. Empty means "email". When the claim is "email", a
	// token with "email_verified": false is refused. There is deliberately no
	// fallback to "preferred_username": at several identity providers users
	// can set that claim themselves, so it identifies no one. Configure it
	// explicitly only where the provider guarantees it. A claim that names
	// no user ("aud", "client_id", "exp", ...) is refused by NewJWT. The
	// name is returned as the claim has it, for an exact lookup.
	UsernameClaim string
	// Now is the clock; nil means time.Now.
	Now func() time.Time
	// Logger receives key reload failures; nil discards them.
	Logger *slog.Logger
}

// JWT is a Verifier for signed JSON Web Tokens.
type JWT struct {
	opts JWTOptions

	mu    sync.Mutex
	keys  []jose.JSONWebKey
	mtime time.Time
	size  int64
}

// NewJWT returns a verifier for JWTs signed by a key in opts.JWKSFile. It
// fails if a required option is missing or the file cannot be loaded.
func NewJWT(opts JWTOptions) (*JWT, error) {
	switch {
	case opts.JWKSFile == "":
		return nil, errors.New("oauth: JWKSFile is required")
	case opts.Issuer == "":
		return nil, errors.New("oauth: Issuer is required")
	case opts.Audience == "":
		return nil, errors.New("oauth: Audience is required")
	}
	if opts.UsernameClaim == "" {
		opts.UsernameClaim = "email"
	}
	if err := CheckUsernameClaim(opts.UsernameClaim); err != nil {
		return nil, err
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	v := &JWT{opts: opts}
	if _, err := v.currentKeys(); err != nil {
		return nil, err
	}
	return v, nil
}

// currentKeys returns the key set, reloading the file if it changed.
func (v *JWT) currentKeys() ([]jose.JSONWebKey, error) {
	v.mu.Lock()
	defer v.mu.Unlock()
	fi, err := os.Stat(v.opts.JWKSFile)
	if err != nil {
		if v.keys != nil {
			v.opts.Logger.Warn("jwks reload failed", "file", v.opts.JWKSFile, "err", err)
			return v.keys, nil
		}
		return nil, fmt.Errorf("oauth: jwks: %w", err)
	}
	if v.keys != nil && fi.ModTime().Equal(v.mtime) && fi.Size() == v.size {
		return v.keys, nil
	}
	keys, err := loadJWKS(v.opts.JWKSFile)
	if err != nil {
		if v.keys != nil {
			v.opts.Logger.Warn("jwks reload failed", "file", v.opts.JWKSFile, "err", err)
			return v.keys, nil
		}
		return nil, err
	}
	v.keys, v.mtime, v.size = keys, fi.ModTime(), fi.Size()
	return keys, nil
}

// loadJWKS reads a JWKS file and keeps the public signature keys.
func loadJWKS(path string) ([]jose.JSONWebKey, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("oauth: jwks: %w", err)
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, maxJWKSSize+1))
	if err != nil {
		return nil, fmt.Errorf("oauth: jwks: %w", err)
	}
	if len(data) > maxJWKSSize {
		return nil, fmt.Errorf("oauth: jwks: %s is larger than %d bytes", path, maxJWKSSize)
	}
	var set jose.JSONWebKeySet
	if err := json.Unmarshal(data, &set); err != nil {
		return nil, fmt.Errorf("oauth: jwks: %s: %w", path, err)
	}
	var keys []jose.JSONWebKey
	for _, k := range set.Keys {
		if k.Use != "" && k.Use != "sig" {
			continue
		}
		pub := k.Public()
		switch pub.Key.(type) {
		case *rsa.PublicKey, *ecdsa.PublicKey, ed25519.PublicKey:
			keys = append(keys, pub)
		}
	}
	if len(keys) == 0 {
		return nil, fmt.Errorf("oauth: jwks: %s holds no public signature keys", path)
	}
	return keys, nil
}

// Verify implements Verifier.
func (v *JWT) Verify(ctx context.Context, token string) (string, error) {
	tok, err := jwt.ParseSigned(token, jwtAlgorithms)
	if err != nil {
		return "", fmt.Errorf("%w: not a signed JWT with an accepted algorithm", ErrInvalidToken)
	}
	if len(tok.Headers) != 1 {
		return "", fmt.Errorf("%w: want exactly one signature", ErrInvalidToken)
	}
	hdr := tok.Headers[0]
	keys, err := v.currentKeys()
	if err != nil {
		return "", err
	}
	var (
		claims jwt.Claims
		extra  map[string]any
		ok     bool
	)
	for _, k := range keys {
		if hdr.KeyID != "" && k.KeyID != hdr.KeyID {
			continue
		}
		if k.Algorithm != "" && k.Algorithm != hdr.Algorithm {
			continue
		}
		claims, extra = jwt.Claims{}, nil
		if tok.Claims(k.Key, &claims, &extra) == nil {
			ok = true
			break
		}
	}
	if !ok {
		return "", fmt.Errorf("%w: signature does not verify with any key", ErrInvalidToken)
	}
	if claims.Expiry == nil {
		return "", fmt.Errorf("%w: no exp claim", ErrInvalidToken)
	}
	err = claims.ValidateWithLeeway(jwt.Expected{
		Issuer:      v.opts.Issuer,
		AnyAudience: jwt.Audience{v.opts.Audience},
		Time:        v.opts.Now(),
	}, JWTLeeway)
	if err != nil {
		return "", fmt.Errorf("%w: %w", ErrInvalidToken, err)
	}
	if err := checkClientID(extra, v.opts.ClientIDs, "client_id", "azp"); err != nil {
		return "", err
	}
	return username(extra, v.opts.UsernameClaim)
}
