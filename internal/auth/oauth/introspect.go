package oauth

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"
)

// Defaults for IntrospectionOptions.
const (
	DefaultCacheTTL  = 30 * time.Second
	DefaultCacheSize = 1024
	// maxIntrospectionResponse bounds the endpoint's answer.
	maxIntrospectionResponse = 64 << 10
)

// IntrospectionOptions configures NewIntrospection.
//
// An endpoint answers "active" for every live token its provider issued,
// whichever client it was issued to and for whichever service; "active"
// alone therefore says nothing about whether the token was meant for this
// server. Issuer, Audience and ClientIDs narrow that down, as JWTOptions
// does for a JWT: a site should set at least Audience or ClientIDs.
type IntrospectionOptions struct {
	// URL is the introspection endpoint (RFC 7662 §2). Required; https
	// unless it is a loopback address.
	URL string
	// ClientID and ClientSecret authenticate postoffice to the endpoint with
	// HTTP Basic (RFC 6749 §2.3.1). Both empty sends no credentials. They
	// say who asks, not which tokens are accepted: see ClientIDs.
	ClientID, ClientSecret string
	// Issuer, when set, must equal the answer's "iss" (RFC 7662 §2.2); an
	// answer without "iss" is refused.
	Issuer string
	// Audience, when set, must be the answer's "aud", or one of its values
	// when it is an array (RFC 7662 §2.2, RFC 7519 §4.1.3); an answer
	// without "aud" is refused.
	Audience string
	// ClientIDs, when not empty, are the OAuth clients whose tokens are
	// accepted: the answer's "client_id" (RFC 7662 §2.2) must be one of
	// them; an answer without it is refused.
	ClientIDs []string
	// UsernameClaim names the answer member holding the user name, a
	// non-empty string; empty means "username" (RFC 7662 §2.2). When it is
	// "email", an answer with "email_verified": false is refused. A member
	// that names no user ("active", "exp", "aud", ...) is refused by
	// NewIntrospection.
	UsernameClaim string
	// HTTPClient sends the requests; nil means a client with a 10 s timeout.
	HTTPClient *http.Client
	// CacheTTL is how long a positive answer is reused (never past the
	// token's "exp"). Zero means DefaultCacheTTL; negative disables the
	// cache. Negative answers are never cached.
	CacheTTL time.Duration
	// CacheSize bounds the number of cached tokens; zero means
	// DefaultCacheSize.
	CacheSize int
	// Now is the clock; nil means time.Now.
	Now func() time.Time
}

// Introspection is a Verifier that asks an RFC 7662 endpoint.
type Introspection struct {
	opts IntrospectionOptions

	mu    sync.Mutex
	cache map[[sha256.Size]byte]cacheEntry
}

type cacheEntry struct {
	username string
	until    time.Time
}

// NewIntrospection returns a Verifier asking opts.URL.
func NewIntrospection(opts IntrospectionOptions) (*Introspection, error) {
	u, err := url.Parse(opts.URL)
	if err != nil || u.Host == "" || (u.Scheme != "https" && u.Scheme != "http") {
		return nil, errors.New("oauth: introspection URL must be an absolute http(s) URL")
	}
	if u.Scheme == "http" && !isLoopback(u.Hostname()) {
		return nil, errors.New("oauth: introspection URL must use https unless it is on loopback")
	}
	if opts.UsernameClaim == "" {
		opts.UsernameClaim = "username"
	}
	if err := CheckUsernameClaim(opts.UsernameClaim); err != nil {
		return nil, err
	}
	if opts.HTTPClient == nil {
		opts.HTTPClient = &http.Client{Timeout: 10 * time.Second}
	}
	if opts.CacheTTL == 0 {
		opts.CacheTTL = DefaultCacheTTL
	}
	if opts.CacheSize <= 0 {
		opts.CacheSize = DefaultCacheSize
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	return &Introspection{opts: opts, cache: make(map[[sha256.Size]byte]cacheEntry)}, nil
}

func isLoopback(host string) bool {
	return host == "localhost" || strings.HasPrefix(host, "127.") || host == "::1"
}

// Verify implements Verifier.
func (v *Introspection) Verify(ctx context.Context, token string) (string, error) {
	if token == "" {
		return "", fmt.Errorf("%w: empty token", ErrInvalidToken)
	}
	key := sha256.Sum256([]byte(token))
	now := v.opts.Now()
	if v.opts.CacheTTL > 0 {
		v.mu.Lock()
		e, ok := v.cache[key]
		v.mu.Unlock()
		if ok && now.Before(e.until) {
			return e.username, nil
		}
	}

	form := url.Values{"token": {token}, "token_type_hint": {"access_token"}}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, v.opts.URL, strings.NewReader(form.Encode()))
	if err != nil {
		return "", fmt.Errorf("oauth: introspection request: %w", err)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Accept", "application/json")
	if v.opts.ClientID != "" || v.opts.ClientSecret != "" {
		// RFC 6749 §2.3.1: form-encode both before Basic.
		req.SetBasicAuth(url.QueryEscape(v.opts.ClientID), url.QueryEscape(v.opts.ClientSecret))
	}
	resp, err := v.opts.HTTPClient.Do(req)
	if err != nil {
		// The URL may carry the token only in the body; the error is safe.
		return "", fmt.Errorf("oauth: introspection: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		io.Copy(io.Discard, io.LimitReader(resp.Body, maxIntrospectionResponse))
		return "", fmt.Errorf("oauth: introspection endpoint answered %s", resp.Status)
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxIntrospectionResponse+1))
	if err != nil {
		return "", fmt.Errorf("oauth: introspection: %w", err)
	}
	if len(body) > maxIntrospectionResponse {
		return "", errors.New("oauth: introspection response too large")
	}
	var fields map[string]any
	if err := json.Unmarshal(body, &fields); err != nil || fields == nil {
		return "", errors.New("oauth: introspection response is not a JSON object")
	}
	name, exp, err := v.check(fields, now)
	if err != nil {
		return "", err
	}
	if v.opts.CacheTTL > 0 {
		until := now.Add(v.opts.CacheTTL)
		if !exp.IsZero() && exp.Before(until) {
			until = exp
		}
		v.store(key, cacheEntry{name, until}, now)
	}
	return name, nil
}

// check applies the checks of RFC 7662 §2.2 and of the options to an
// introspection answer and returns the user it names and its "exp" (zero
// when absent). Every refusal wraps ErrInvalidToken.
func (v *Introspection) check(fields map[string]any, now time.Time) (string, time.Time, error) {
	// RFC 7662 §2.2: "active" is a boolean, and only true means active.
	if active, _ := fields["active"].(bool); !active {
		return "", time.Time{}, fmt.Errorf("%w: not active", ErrInvalidToken)
	}
	exp, err := numericDate(fields, "exp")
	if err != nil {
		return "", time.Time{}, err
	}
	nbf, err := numericDate(fields, "nbf")
	if err != nil {
		return "", time.Time{}, err
	}
	// "exp" is checked without leeway: the endpoint said active, but a
	// token past its life by this server's clock is not taken. "nbf" gets
	// JWTLeeway, as in a JWT, for a provider whose clock runs ahead.
	if !exp.IsZero() && !now.Before(exp) {
		return "", time.Time{}, fmt.Errorf("%w: expired", ErrInvalidToken)
	}
	if !nbf.IsZero() && now.Add(JWTLeeway).Before(nbf) {
		return "", time.Time{}, fmt.Errorf("%w: not yet valid", ErrInvalidToken)
	}
	if want := v.opts.Issuer; want != "" {
		if iss, _ := fields["iss"].(string); iss != want {
			return "", time.Time{}, fmt.Errorf("%w: issuer is not %q", ErrInvalidToken, want)
		}
	}
	if want := v.opts.Audience; want != "" && !hasAudience(fields["aud"], want) {
		return "", time.Time{}, fmt.Errorf("%w: audience does not include %q", ErrInvalidToken, want)
	}
	if err := checkClientID(fields, v.opts.ClientIDs, "client_id"); err != nil {
		return "", time.Time{}, err
	}
	name, err := username(fields, v.opts.UsernameClaim)
	if err != nil {
		return "", time.Time{}, err
	}
	return name, exp, nil
}

// numericDate reads an optional NumericDate member (RFC 7519 §2: seconds
// since the epoch, possibly with a fraction); one that is not a number
// refuses the token.
func numericDate(fields map[string]any, key string) (time.Time, error) {
	raw, ok := fields[key]
	if !ok || raw == nil {
		return time.Time{}, nil
	}
	f, ok := raw.(float64)
	if !ok || math.IsNaN(f) || math.IsInf(f, 0) || f < 0 || f > 1<<40 {
		return time.Time{}, fmt.Errorf("%w: %q is not a date", ErrInvalidToken, key)
	}
	sec, frac := math.Modf(f)
	return time.Unix(int64(sec), int64(frac*1e9)), nil
}

// hasAudience reports whether aud, a JSON string or array of strings
// (RFC 7519 §4.1.3), is or holds want.
func hasAudience(aud any, want string) bool {
	switch a := aud.(type) {
	case string:
		return a == want
	case []any:
		for _, x := range a {
			if s, ok := x.(string); ok && s == want {
				return true
			}
		}
	}
	return false
}

// store adds a cache entry, first dropping expired ones and, if the cache is
// still full, an arbitrary one, so it never exceeds CacheSize.
func (v *Introspection) store(key [sha256.Size]byte, e cacheEntry, now time.Time) {
	v.mu.Lock()
	defer v.mu.Unlock()
	if len(v.cache) >= v.opts.CacheSize {
		for k, old := range v.cache {
			if !now.Before(old.until) {
				delete(v.cache, k)
			}
		}
		for k := range v.cache {
			if len(v.cache) < v.opts.CacheSize {
				break
			}
			delete(v.cache, k)
		}
	}
	v.cache[key] = e
}
