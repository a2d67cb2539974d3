// Package oauth verifies OAuth 2.0 bearer tokens for the SASL mechanisms
// OAUTHBEARER (RFC 7628) and XOAUTH2: it turns a token into the user name it
// was issued for, or refuses it.
//
// Two verifiers are provided:
//   - NewJWT checks a signed JSON Web Token (RFC 7519, JWS RFC 7515) against
//     the keys of a JWKS file (RFC 7517 §5), reloaded when the file changes:
//     signature (RS256, ES256 or EdDSA only), "exp" (required), "nbf", "iat",
//     "iss" and "aud", and optionally the client the token was issued to.
//   - NewIntrospection asks the authorization server (RFC 7662 token
//     introspection) and caches positive answers briefly. The answer gets the
//     same checks a JWT's claims get, where configured: "iss", "aud",
//     "client_id", "exp" and "nbf".
//
// Implementation notes:
//   - ErrInvalidToken (wrapped, with a reason) means the token is not
//     acceptable; any other error is a temporary failure (the JWKS file cannot
//     be read, the introspection endpoint is down) and must not be reported
//     to the client as a bad token.
//   - The user name comes from one configured claim, taken as it stands:
//     it is looked up exactly, never rewritten (no login alias applies to
//     it), so a token names exactly one user or none.
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
	"fmt"
	"slices"
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

// nonIdentityClaims are registered claims (RFC 7519 §4.1) and introspection
// members (RFC 7662 §2.2) that describe the token, not its user; none can
// be a username claim.
var nonIdentityClaims = []string{
	"active", "scope", "client_id", "azp", "token_type", "exp", "iat", "nbf",
	"aud", "iss", "jti", "email_verified",
}

// CheckUsernameClaim refuses a username claim that cannot name a user.
func CheckUsernameClaim(claim string) error {
	if claim == "" {
		return errors.New("oauth: the username claim is empty")
	}
	if slices.Contains(nonIdentityClaims, claim) {
		return fmt.Errorf("oauth: %q describes the token, not a user; it cannot be the username claim", claim)
	}
	return nil
}

// username returns the non-empty string claim naming the user. When the
// claim is "email", "email_verified": false refuses the token (OpenID
// Connect Core §5.1): an address the provider did not verify may belong to
// someone else.
func username(claims map[string]any, claim string) (string, error) {
	name, _ := claims[claim].(string)
	if name == "" {
		return "", fmt.Errorf("%w: no %q claim", ErrInvalidToken, claim)
	}
	if claim == "email" {
		if verified, present := claims["email_verified"].(bool); present && !verified {
			return "", fmt.Errorf("%w: email not verified", ErrInvalidToken)
		}
	}
	return name, nil
}

// checkClientID refuses a token whose client is not in allowed (when
// allowed is not empty). The client is the first of keys present as a
// string.
func checkClientID(claims map[string]any, allowed []string, keys ...string) error {
	if len(allowed) == 0 {
		return nil
	}
	for _, k := range keys {
		if id, ok := claims[k].(string); ok {
			if slices.Contains(allowed, id) {
				return nil
			}
			return fmt.Errorf("%w: issued to a client not accepted", ErrInvalidToken)
		}
	}
	return fmt.Errorf("%w: no client_id", ErrInvalidToken)
}
