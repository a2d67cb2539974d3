package oauth

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
)

var testNow = time.Date(2026, 11, 28, 12, 0, 0, 0, time.UTC)

type testKey struct {
	kid string
	alg jose.SignatureAlgorithm
	key crypto.Signer
}

func newKeys(t *testing.T) []testKey {
	t.Helper()
	rk, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	ek, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	_, edk, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return []testKey{{"rsa1", jose.RS256, rk}, {"ec1", jose.ES256, ek}, {"ed1", jose.EdDSA, edk}}
}

func writeJWKS(t *testing.T, path string, keys []testKey) {
	t.Helper()
	var set jose.JSONWebKeySet
	for _, k := range keys {
		set.Keys = append(set.Keys, jose.JSONWebKey{Key: k.key.Public(), KeyID: k.kid, Algorithm: string(k.alg), Use: "sig"})
	}
	data, err := json.Marshal(set)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
}

func sign(t *testing.T, k testKey, claims any) string {
	t.Helper()
	signer, err := jose.NewSigner(jose.SigningKey{Algorithm: k.alg, Key: k.key},
		(&jose.SignerOptions{}).WithType("JWT").WithHeader("kid", k.kid))
	if err != nil {
		t.Fatal(err)
	}
	s, err := jwt.Signed(signer).Claims(claims).Serialize()
	if err != nil {
		t.Fatal(err)
	}
	return s
}

type claims struct {
	jwt.Claims
	Email         string `json:"email,omitempty"`
	EmailVerified *bool  `json:"email_verified,omitempty"`
	Preferred     string `json:"preferred_username,omitempty"`
}

func goodClaims() claims {
	return claims{
		Claims: jwt.Claims{
			Issuer:   "https://idp.example.org",
			Audience: jwt.Audience{"postoffice"},
			Subject:  "1234",
			Expiry:   jwt.NewNumericDate(testNow.Add(time.Hour)),
			IssuedAt: jwt.NewNumericDate(testNow.Add(-time.Minute)),
		},
		Email: "alice@example.org",
	}
}

func newTestJWT(t *testing.T, keys []testKey, mod func(*JWTOptions)) (*JWT, string) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "jwks.json")
	writeJWKS(t, path, keys)
	opts := JWTOptions{JWKSFile: path, Issuer: "https://idp.example.org", Audience: "postoffice",
		Now: func() time.Time { return testNow }}
	if mod != nil {
		mod(&opts)
	}
	v, err := NewJWT(opts)
	if err != nil {
		t.Fatalf("NewJWT: %v", err)
	}
	return v, path
}

func TestJWT(t *testing.T) {
	t.Parallel()
	keys := newKeys(t)
	v, _ := newTestJWT(t, keys, nil)
	ctx := context.Background()
	for _, k := range keys {
		got, err := v.Verify(ctx, sign(t, k, goodClaims()))
		if err != nil || got != "alice@example.org" {
			t.Errorf("Verify(%s token) = %q, %v, want alice@example.org", k.alg, got, err)
		}
	}

	other := newKeys(t)
	f := false
	bad := map[string]string{}
	c := goodClaims()
	c.Expiry = jwt.NewNumericDate(testNow.Add(-2 * time.Minute))
	bad["expired"] = sign(t, keys[0], c)
	c = goodClaims()
	c.NotBefore = jwt.NewNumericDate(testNow.Add(10 * time.Minute))
	bad["not yet valid"] = sign(t, keys[1], c)
	c = goodClaims()
	c.Issuer = "https://evil.example.org"
	bad["wrong issuer"] = sign(t, keys[0], c)
	c = goodClaims()
	c.Audience = jwt.Audience{"someone-else"}
	bad["wrong audience"] = sign(t, keys[2], c)
	c = goodClaims()
	c.Expiry = nil
	bad["no exp"] = sign(t, keys[0], c)
	c = goodClaims()
	c.Email = ""
	bad["no email"] = sign(t, keys[0], c)
	c = goodClaims()
	c.EmailVerified = &f
	bad["email not verified"] = sign(t, keys[0], c)
	bad["bad signature (other key, same kid)"] = sign(t, other[0], goodClaims())
	bad["bad signature (EC)"] = sign(t, other[1], goodClaims())
	good := sign(t, keys[0], goodClaims())
	parts := strings.Split(good, ".")
	payload, _ := json.Marshal(map[string]any{"iss": "https://idp.example.org", "aud": "postoffice",
		"exp": testNow.Add(time.Hour).Unix(), "email": "mallory@example.org"})
	bad["tampered payload"] = parts[0] + "." + base64.RawURLEncoding.EncodeToString(payload) + "." + parts[2]
	hs, _ := jose.NewSigner(jose.SigningKey{Algorithm: jose.HS256, Key: []byte("0123456789abcdef0123456789abcdef")}, nil)
	bad["HS256"], _ = jwt.Signed(hs).Claims(goodClaims()).Serialize()
	bad["alg none"] = base64.RawURLEncoding.EncodeToString([]byte(`{"alg":"none"}`)) + "." + base64.RawURLEncoding.EncodeToString(payload) + "."
	bad["garbage"] = "not a token"
	bad["empty"] = ""
	for name, tok := range bad {
		got, err := v.Verify(ctx, tok)
		if !errors.Is(err, ErrInvalidToken) {
			t.Errorf("Verify(%s) = %q, %v, want ErrInvalidToken", name, got, err)
		}
		if err != nil && tok != "" && strings.Contains(err.Error(), tok) {
			t.Errorf("Verify(%s) error contains the token", name)
		}
	}
}

func TestJWTUsernameClaim(t *testing.T) {
	t.Parallel()
	keys := newKeys(t)
	v, _ := newTestJWT(t, keys, func(o *JWTOptions) { o.UsernameClaim = "preferred_username" })
	c := goodClaims()
	c.Preferred = "alice"
	got, err := v.Verify(context.Background(), sign(t, keys[0], c))
	if err != nil || got != "alice" {
		t.Errorf("Verify = %q, %v, want alice", got, err)
	}
}

func TestJWTReload(t *testing.T) {
	t.Parallel()
	keys := newKeys(t)
	v, path := newTestJWT(t, keys[:1], nil)
	ctx := context.Background()
	if _, err := v.Verify(ctx, sign(t, keys[1], goodClaims())); !errors.Is(err, ErrInvalidToken) {
		t.Fatalf("Verify with a key not yet in the file: %v, want ErrInvalidToken", err)
	}
	writeJWKS(t, path, keys[1:])
	// Make sure the modification time moves even on coarse file systems.
	later := time.Now().Add(2 * time.Second)
	if err := os.Chtimes(path, later, later); err != nil {
		t.Fatal(err)
	}
	if got, err := v.Verify(ctx, sign(t, keys[1], goodClaims())); err != nil || got != "alice@example.org" {
		t.Errorf("Verify after reload = %q, %v", got, err)
	}
	if _, err := v.Verify(ctx, sign(t, keys[0], goodClaims())); !errors.Is(err, ErrInvalidToken) {
		t.Errorf("Verify with a removed key: %v, want ErrInvalidToken", err)
	}
	// A broken file keeps the old keys.
	if err := os.WriteFile(path, []byte("{broken"), 0o600); err != nil {
		t.Fatal(err)
	}
	later = later.Add(2 * time.Second)
	os.Chtimes(path, later, later)
	if _, err := v.Verify(ctx, sign(t, keys[1], goodClaims())); err != nil {
		t.Errorf("Verify after a broken reload = %v, want the old keys kept", err)
	}
}

func TestNewJWTErrors(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	empty := filepath.Join(dir, "empty.json")
	os.WriteFile(empty, []byte(`{"keys":[]}`), 0o600)
	for _, o := range []JWTOptions{
		{Issuer: "i", Audience: "a"},
		{JWKSFile: empty, Audience: "a"},
		{JWKSFile: empty, Issuer: "i"},
		{JWKSFile: filepath.Join(dir, "missing.json"), Issuer: "i", Audience: "a"},
		{JWKSFile: empty, Issuer: "i", Audience: "a"},
	} {
		if _, err := NewJWT(o); err == nil {
			t.Errorf("NewJWT(%+v) succeeded", o)
		}
	}
}

type introspectionServer struct {
	t     *testing.T
	calls atomic.Int32
	fail  atomic.Bool
}

func (s *introspectionServer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	s.calls.Add(1)
	if s.fail.Load() {
		http.Error(w, "down", http.StatusServiceUnavailable)
		return
	}
	id, secret, ok := r.BasicAuth()
	if r.Method != http.MethodPost || !ok || id != "postoffice" || secret != "s%3Acret" {
		http.Error(w, "unauthorized", http.StatusUnauthorized)
		return
	}
	if err := r.ParseForm(); err != nil {
		http.Error(w, "bad form", http.StatusBadRequest)
		return
	}
	var resp map[string]any
	switch r.PostForm.Get("token") {
	case "good":
		resp = map[string]any{"active": true, "username": "alice", "exp": testNow.Add(time.Hour).Unix()}
	case "short":
		resp = map[string]any{"active": true, "username": "bob", "exp": testNow.Add(5 * time.Second).Unix()}
	case "expired":
		resp = map[string]any{"active": true, "username": "alice", "exp": testNow.Add(-time.Second).Unix()}
	case "nouser":
		resp = map[string]any{"active": true}
	default:
		resp = map[string]any{"active": false}
	}
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(resp)
}

func TestIntrospection(t *testing.T) {
	t.Parallel()
	is := &introspectionServer{t: t}
	srv := httptest.NewServer(is)
	t.Cleanup(srv.Close)
	now := testNow
	var clock atomic.Int64
	clock.Store(now.UnixNano())
	v, err := NewIntrospection(IntrospectionOptions{URL: srv.URL, ClientID: "postoffice", ClientSecret: "s:cret",
		HTTPClient: srv.Client(), CacheSize: 2, Now: func() time.Time { return time.Unix(0, clock.Load()) }})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	for range 3 {
		if got, err := v.Verify(ctx, "good"); err != nil || got != "alice" {
			t.Fatalf("Verify(good) = %q, %v", got, err)
		}
	}
	if n := is.calls.Load(); n != 1 {
		t.Errorf("3 verifications made %d requests, want 1 (cached)", n)
	}
	for _, tok := range []string{"expired", "inactive", "nouser", ""} {
		if got, err := v.Verify(ctx, tok); !errors.Is(err, ErrInvalidToken) {
			t.Errorf("Verify(%q) = %q, %v, want ErrInvalidToken", tok, got, err)
		}
	}
	// The cache never outlives exp.
	if got, err := v.Verify(ctx, "short"); err != nil || got != "bob" {
		t.Fatalf("Verify(short) = %q, %v", got, err)
	}
	clock.Store(now.Add(10 * time.Second).UnixNano())
	is.fail.Store(true)
	if _, err := v.Verify(ctx, "short"); err == nil || errors.Is(err, ErrInvalidToken) {
		t.Errorf("Verify(short) past exp with the endpoint down = %v, want a temporary error", err)
	}
	// Still cached (TTL 30 s): good.
	if got, err := v.Verify(ctx, "good"); err != nil || got != "alice" {
		t.Errorf("Verify(good) from cache = %q, %v", got, err)
	}
	v.mu.Lock()
	n := len(v.cache)
	v.mu.Unlock()
	if n > 2 {
		t.Errorf("cache holds %d entries, bound 2", n)
	}
}

func TestIntrospectionWrongClient(t *testing.T) {
	t.Parallel()
	srv := httptest.NewServer(&introspectionServer{t: t})
	t.Cleanup(srv.Close)
	v, err := NewIntrospection(IntrospectionOptions{URL: srv.URL, ClientID: "postoffice", ClientSecret: "wrong", HTTPClient: srv.Client()})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := v.Verify(context.Background(), "good"); err == nil || errors.Is(err, ErrInvalidToken) {
		t.Errorf("Verify with bad client credentials = %v, want a temporary error", err)
	}
}

func TestNewIntrospectionErrors(t *testing.T) {
	t.Parallel()
	for _, u := range []string{"", "idp.example.org/introspect", "http://idp.example.org/introspect", "ftp://x/"} {
		if _, err := NewIntrospection(IntrospectionOptions{URL: u}); err == nil {
			t.Errorf("NewIntrospection(%q) succeeded", u)
		}
	}
}

// introspectionAnswers is an endpoint answering a fixed JSON document per
// token (the raw text, so that numbers and types are exactly as written).
type introspectionAnswers map[string]string

func (a introspectionAnswers) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if err := r.ParseForm(); err != nil {
		http.Error(w, "bad form", http.StatusBadRequest)
		return
	}
	body, ok := a[r.PostForm.Get("token")]
	if !ok {
		body = `{"active":false}`
	}
	w.Header().Set("Content-Type", "application/json")
	io.WriteString(w, body)
}

// The checks a JWT's claims get apply to an introspection answer too, when
// configured: iss, aud (a string or an array), client_id, the username
// claim (and email_verified for "email"), exp and nbf (numbers, with a
// fraction or not).
func TestIntrospectionChecks(t *testing.T) {
	t.Parallel()
	exp := testNow.Add(time.Hour).Unix()
	answers := introspectionAnswers{
		"good":         fmt.Sprintf(`{"active":true,"iss":"https://idp","aud":"pop3","client_id":"thunderbird","email":"alice@example.org","username":"bob","exp":%d}`, exp),
		"aud-array":    `{"active":true,"iss":"https://idp","aud":["webmail","pop3"],"client_id":"thunderbird","email":"alice@example.org"}`,
		"exp-fraction": fmt.Sprintf(`{"active":true,"iss":"https://idp","aud":"pop3","client_id":"thunderbird","email":"alice@example.org","exp":%d.5}`, exp),
		"evil":         `{"active":true,"username":"bob","email":"mallory@evil.example","aud":"some-other-app","iss":"https://evil.example","client_id":"thunderbird"}`,
		"wrong-iss":    `{"active":true,"iss":"https://evil","aud":"pop3","client_id":"thunderbird","email":"alice@example.org"}`,
		"no-iss":       `{"active":true,"aud":"pop3","client_id":"thunderbird","email":"alice@example.org"}`,
		"wrong-aud":    `{"active":true,"iss":"https://idp","aud":["webmail"],"client_id":"thunderbird","email":"alice@example.org"}`,
		"aud-number":   `{"active":true,"iss":"https://idp","aud":7,"client_id":"thunderbird","email":"alice@example.org"}`,
		"no-aud":       `{"active":true,"iss":"https://idp","client_id":"thunderbird","email":"alice@example.org"}`,
		"wrong-client": `{"active":true,"iss":"https://idp","aud":"pop3","client_id":"other-app","email":"alice@example.org"}`,
		"no-client":    `{"active":true,"iss":"https://idp","aud":"pop3","email":"alice@example.org"}`,
		"no-claim":     `{"active":true,"iss":"https://idp","aud":"pop3","client_id":"thunderbird","username":"bob"}`,
		"claim-number": `{"active":true,"iss":"https://idp","aud":"pop3","client_id":"thunderbird","email":5}`,
		"unverified":   `{"active":true,"iss":"https://idp","aud":"pop3","client_id":"thunderbird","email":"alice@example.org","email_verified":false}`,
		"expired":      fmt.Sprintf(`{"active":true,"iss":"https://idp","aud":"pop3","client_id":"thunderbird","email":"alice@example.org","exp":%d}`, testNow.Add(-time.Second).Unix()),
		"exp-string":   `{"active":true,"iss":"https://idp","aud":"pop3","client_id":"thunderbird","email":"alice@example.org","exp":"tomorrow"}`,
		"not-yet":      fmt.Sprintf(`{"active":true,"iss":"https://idp","aud":"pop3","client_id":"thunderbird","email":"alice@example.org","nbf":%d}`, testNow.Add(time.Hour).Unix()),
		"nbf-skew":     fmt.Sprintf(`{"active":true,"iss":"https://idp","aud":"pop3","client_id":"thunderbird","email":"alice@example.org","nbf":%d}`, testNow.Add(10*time.Second).Unix()),
		"active-str":   `{"active":"true","iss":"https://idp","aud":"pop3","client_id":"thunderbird","email":"alice@example.org"}`,
		"not-object":   `[1,2]`,
	}
	srv := httptest.NewServer(answers)
	t.Cleanup(srv.Close)
	v, err := NewIntrospection(IntrospectionOptions{URL: srv.URL, HTTPClient: srv.Client(), CacheTTL: -1,
		Issuer: "https://idp", Audience: "pop3", ClientIDs: []string{"mutt", "thunderbird"}, UsernameClaim: "email",
		Now: func() time.Time { return testNow }})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	for _, tok := range []string{"good", "aud-array", "exp-fraction", "nbf-skew"} {
		if got, err := v.Verify(ctx, tok); err != nil || got != "alice@example.org" {
			t.Errorf("Verify(%s) = %q, %v, want alice@example.org", tok, got, err)
		}
	}
	for _, tok := range []string{"evil", "wrong-iss", "no-iss", "wrong-aud", "aud-number", "no-aud", "wrong-client",
		"no-client", "no-claim", "claim-number", "unverified", "expired", "exp-string", "not-yet", "active-str"} {
		if got, err := v.Verify(ctx, tok); !errors.Is(err, ErrInvalidToken) {
			t.Errorf("Verify(%s) = %q, %v, want ErrInvalidToken", tok, got, err)
		}
	}
	if got, err := v.Verify(ctx, "not-object"); err == nil || errors.Is(err, ErrInvalidToken) {
		t.Errorf("Verify(not-object) = %q, %v, want a temporary error", got, err)
	}

	// Without the checks configured, the user is RFC 7662's "username".
	plain, err := NewIntrospection(IntrospectionOptions{URL: srv.URL, HTTPClient: srv.Client(), CacheTTL: -1,
		Now: func() time.Time { return testNow }})
	if err != nil {
		t.Fatal(err)
	}
	if got, err := plain.Verify(ctx, "evil"); err != nil || got != "bob" {
		t.Errorf("Verify(evil) without checks = %q, %v, want bob", got, err)
	}
}

// A username claim that describes the token, not a user, is refused by
// both constructors.
func TestUsernameClaimRefused(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "jwks.json")
	writeJWKS(t, path, newKeys(t))
	for _, claim := range []string{"aud", "client_id", "active", "exp", "email_verified"} {
		if _, err := NewIntrospection(IntrospectionOptions{URL: "https://idp.example.org/i", UsernameClaim: claim}); err == nil {
			t.Errorf("NewIntrospection(UsernameClaim %q) succeeded", claim)
		}
		if _, err := NewJWT(JWTOptions{JWKSFile: path, Issuer: "i", Audience: "a", UsernameClaim: claim}); err == nil {
			t.Errorf("NewJWT(UsernameClaim %q) succeeded", claim)
		}
	}
}

// ClientIDs restricts a JWT to tokens issued to those clients, by
// "client_id" (RFC 9068) or else "azp".
func TestJWTClientIDs(t *testing.T) {
	t.Parallel()
	keys := newKeys(t)
	v, _ := newTestJWT(t, keys, func(o *JWTOptions) { o.ClientIDs = []string{"thunderbird"} })
	ctx := context.Background()
	for _, tc := range []struct {
		extra map[string]any
		ok    bool
	}{
		{map[string]any{"client_id": "thunderbird"}, true},
		{map[string]any{"azp": "thunderbird"}, true},
		{map[string]any{"client_id": "other", "azp": "thunderbird"}, false},
		{map[string]any{"client_id": "other"}, false},
		{map[string]any{}, false},
	} {
		c := map[string]any{"iss": "https://idp.example.org", "aud": "postoffice", "email": "alice@example.org",
			"exp": testNow.Add(time.Hour).Unix()}
		maps.Copy(c, tc.extra)
		got, err := v.Verify(ctx, sign(t, keys[0], c))
		if tc.ok && (err != nil || got != "alice@example.org") {
			t.Errorf("Verify(%v) = %q, %v, want alice@example.org", tc.extra, got, err)
		}
		if !tc.ok && !errors.Is(err, ErrInvalidToken) {
			t.Errorf("Verify(%v) = %q, %v, want ErrInvalidToken", tc.extra, got, err)
		}
	}
}
