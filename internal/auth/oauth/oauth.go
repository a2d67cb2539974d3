// Package oauth verifies OAuth 2.0 bearer tokens for the SASL mechanisms
// OAUTHBEARER (RFC 7628) and XOAUTH2: it turns a token into the user name it
// was issued for, or refuses it.
//
// Two verifiers are provided:
//   - NewJWT checks a signed JSON Web Token (RFC 7519, JWS RFC 7515) against
//     the keys of a JWKS file (RFC 7517 §5), reloaded when the file changes:
//     signature (RS256, ES256 or EdDSA only), "exp" (required), "nbf", "iat",
//     "iss" and "aud".
//   - NewIntrospection asks the authorization server (RFC 7662 token
//     introspection) and caches positive answers briefly.
//
// Implementation notes:
//   - ErrInvalidToken (wrapped, with a reason) means the token is not
//     acceptable; any other error is a temporary failure (the JWKS file cannot
//     be read, the introspection endpoint is down) and must not be reported
//     to the client as a bad token.
//   - Tokens never appear in errors or logs. The introspection cache is keyed
//     by the SHA-256 of the token, not the token.
//   - JWTs are checked with go-jose (github.com/go-jose/go-jose/v4), the
//     library go-oidc builds on. go-oidc's verifier itself is not used: its
//     package imports golang.org/x/oauth2, which this module does not carry,
//     and a static key file needs none of its discovery code.
package oauth

import (
	"context"
	"errors"
)

// Verifier checks a bearer token.
type Verifier interface {
	// Verify returns the user name the token was issued for. It returns an
	// error wrapping ErrInvalidToken when the token is not acceptable
	// (malformed, bad signature, expired, wrong issuer or audience, inactive,
	// no user name); any other error is a temporary failure.
	Verify(ctx context.Context, token string) (username string, err error)
}

// ErrInvalidToken is wrapped by every error that means "this token is not
// acceptable".
var ErrInvalidToken = errors.New("oauth: invalid token")
