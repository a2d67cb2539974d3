package oauth

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"io"
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
type IntrospectionOptions struct {
	// URL is the introspection endpoint (RFC 7662 §2). Required; https
	// unless it is a loopback address.
	URL string
	// ClientID and ClientSecret authenticate postoffice to the endpoint with
	// HTTP Basic (RFC 6749 §2.3.1). Both empty sends no credentials.
	ClientID, ClientSecret string
	// UsernameField names the response member holding the user name; empty
	// means "username" (RFC 7662 §2.2).
	UsernameField string
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
	if opts.UsernameField == "" {
		opts.UsernameField = "username"
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

// introspectionResponse is the part of RFC 7662 §2.2 we use.
type introspectionResponse struct {
	Active bool   `json:"active"`
	Exp    *int64 `json:"exp"`
	Nbf    *int64 `json:"nbf"`
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
	var r introspectionResponse
	var fields map[string]any
	if err := json.Unmarshal(body, &r); err != nil {
		return "", fmt.Errorf("oauth: introspection response is not JSON: %w", err)
	}
	if err := json.Unmarshal(body, &fields); err != nil {
		return "", fmt.Errorf("oauth: introspection response is not a JSON object: %w", err)
	}
	if !r.Active {
		return "", fmt.Errorf("%w: not active", ErrInvalidToken)
	}
	if r.Exp != nil && !now.Before(time.Unix(*r.Exp, 0)) {
		return "", fmt.Errorf("%w: expired", ErrInvalidToken)
	}
	if r.Nbf != nil && now.Before(time.Unix(*r.Nbf, 0)) {
		return "", fmt.Errorf("%w: not yet valid", ErrInvalidToken)
	}
	name, _ := fields[v.opts.UsernameField].(string)
	if name == "" {
		return "", fmt.Errorf("%w: no %q in the introspection response", ErrInvalidToken, v.opts.UsernameField)
	}
	if v.opts.CacheTTL > 0 {
		until := now.Add(v.opts.CacheTTL)
		if r.Exp != nil && time.Unix(*r.Exp, 0).Before(until) {
			until = time.Unix(*r.Exp, 0)
		}
		v.store(key, cacheEntry{name, until}, now)
	}
	return name, nil
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
