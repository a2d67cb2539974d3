package sasl

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"testing"

	gosasl "github.com/emersion/go-sasl"
	"github.com/xdg-go/scram"
)

// fuzzNonce fixes both SCRAM nonces so transcript seeds reach the proof.
const (
	fuzzClientNonce = "fyko+d2lbbFgONRv9qkxdawL"
	fuzzServerNonce = "3rfcNHYJY1ZVvWVs7j"
)

var (
	fuzzTLSOnce sync.Once
	fuzzTLS     tls.ConnectionState
)

// FuzzMechanisms feeds up to three responses to every mechanism, with and
// without TLS and with and without an initial response, and checks that
// nothing panics and every error is ErrAuthFailed or ErrMalformed (the fake
// database never fails). Seeds in testdata/fuzz/FuzzMechanisms are real
// exchanges; regenerate them with PO_WRITE_FUZZ_SEEDS=1 go test -run
// TestWriteFuzzSeeds.
func FuzzMechanisms(f *testing.F) {
	f.Add(uint8(5), false, false, []byte("\x00alice\x00secret"), []byte{}, []byte{})
	f.Add(uint8(8), false, false, []byte("n,,\x01auth=Bearer forged\x01\x01"), []byte{}, []byte{})
	m := newMechs(f, func(o *Options) {
		o.ServerCertificate = serverCert
		o.GSSAPI, o.GSSAPIMapper = testAcceptor(f)
	})
	m.scramNonce = func() string { return fuzzServerNonce }
	f.Fuzz(func(t *testing.T, mech uint8, useTLS, initial bool, r1, r2, r3 []byte) {
		var cs *tls.ConnectionState
		if useTLS {
			fuzzTLSOnce.Do(func() { fuzzTLS, _ = tlsPair(t, tls.VersionTLS13, true) })
			cs = &fuzzTLS
		}
		name := known[int(mech)%len(known)]
		ctx := context.Background()
		s, err := m.Start(ctx, name, cs)
		if err != nil {
			if !errors.Is(err, ErrUnavailable) {
				t.Fatalf("Start(%s) = %v", name, err)
			}
			return
		}
		responses := [][]byte{r1, r2, r3}
		if !initial {
			responses = append([][]byte{nil}, responses...)
		}
		for _, r := range responses {
			_, done, err := s.Next(ctx, r)
			if err != nil {
				if !errors.Is(err, ErrAuthFailed) && !errors.Is(err, ErrMalformed) {
					t.Fatalf("%s: error %v is neither ErrAuthFailed nor ErrMalformed", name, err)
				}
				return
			}
			if done {
				if s.User().Name == "" {
					t.Fatalf("%s: done without a user", name)
				}
				return
			}
		}
	})
}

// TestWriteFuzzSeeds records successful and failing exchanges as seeds.
func TestWriteFuzzSeeds(t *testing.T) {
	if os.Getenv("PO_WRITE_FUZZ_SEEDS") == "" {
		t.Skip("set PO_WRITE_FUZZ_SEEDS=1 to regenerate testdata/fuzz/FuzzMechanisms")
	}
	m := newMechs(t, func(o *Options) { o.ServerCertificate = serverCert })
	m.scramNonce = func() string { return fuzzServerNonce }
	idx := func(name string) uint8 {
		for i, k := range known {
			if k == name {
				return uint8(i)
			}
		}
		t.Fatalf("no mechanism %s", name)
		return 0
	}
	scramC := func(mech, user, pass string) gosasl.Client {
		h := scram.SHA256
		if mech == ScramSHA1 {
			h = scram.SHA1
		}
		c, err := h.NewClient(user, pass, "")
		if err != nil {
			t.Fatal(err)
		}
		c.WithNonceGenerator(func() string { return fuzzClientNonce })
		return &scramClient{mech: mech, conv: c.NewConversation()}
	}
	dir := filepath.Join("testdata", "fuzz", "FuzzMechanisms")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	n := 0
	record := func(label, mech string, c gosasl.Client) {
		ctx := context.Background()
		s, err := m.Start(ctx, mech, nil)
		if err != nil {
			t.Fatal(err)
		}
		_, ir, _ := c.Start()
		var rs [][]byte
		resp := ir
		for range 4 {
			rs = append(rs, resp)
			ch, done, err := s.Next(ctx, resp)
			if err != nil || done {
				break
			}
			if resp, err = c.Next(ch); err != nil {
				resp = []byte{0x01}
			}
			if resp == nil {
				resp = []byte{}
			}
		}
		initial := rs[0] != nil
		if !initial {
			rs = rs[1:]
		}
		for len(rs) < 3 {
			rs = append(rs, []byte{})
		}
		body := fmt.Sprintf("go test fuzz v1\nuint8(%d)\nbool(false)\nbool(%v)\n[]byte(%q)\n[]byte(%q)\n[]byte(%q)\n",
			idx(mech), initial, rs[0], rs[1], rs[2])
		n++
		if err := os.WriteFile(filepath.Join(dir, fmt.Sprintf("seed-%02d-%s", n, label)), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	record("plain", Plain, gosasl.NewPlainClient("", "alice", "secret"))
	record("plain-wrong", Plain, gosasl.NewPlainClient("", "alice", "wrong"))
	record("login", Login, gosasl.NewLoginClient("alice", "secret"))
	record("login-noir", Login, &loginNoIR{"alice", "secret"})
	record("cram", CramMD5, &cramClient{"erin", "secret"})
	record("scram-sha-256", ScramSHA256, scramC(ScramSHA256, "bob", "secret"))
	record("scram-sha-256-plain", ScramSHA256, scramC(ScramSHA256, "alice", "secret"))
	record("scram-sha-256-unknown", ScramSHA256, scramC(ScramSHA256, "nobody", "secret"))
	record("scram-sha-1", ScramSHA1, scramC(ScramSHA1, "carol", "secret"))
	record("oauthbearer", OAuthBearer, gosasl.NewOAuthBearerClient(&gosasl.OAuthBearerOptions{Username: "alice", Token: "token-for-alice", Host: "pop.example.org", Port: 995}))
	record("oauthbearer-bad", OAuthBearer, gosasl.NewOAuthBearerClient(&gosasl.OAuthBearerOptions{Username: "alice", Token: "forged"}))
	record("xoauth2", XOAuth2, &xoauth2Client{"alice", "token-for-alice"})
	record("xoauth2-bad", XOAuth2, &xoauth2Client{"alice", "forged"})
	// EXTERNAL and -PLUS need TLS; a seed each, by hand.
	write := func(label string, mech string, initial bool, r1, r2 string) {
		n++
		body := fmt.Sprintf("go test fuzz v1\nuint8(%d)\nbool(true)\nbool(%v)\n[]byte(%q)\n[]byte(%q)\n[]byte(\"\")\n", idx(mech), initial, r1, r2)
		if err := os.WriteFile(filepath.Join(dir, fmt.Sprintf("seed-%02d-%s", n, label)), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("external", External, true, "", "")
	write("external-noir", External, false, "alice", "")
	write("scram-plus", ScramSHA256Plus, true, "p=tls-exporter,,n=bob,r="+fuzzClientNonce, "c=cD10bHMtZXhwb3J0ZXIsLAAAAA==,r="+fuzzClientNonce+fuzzServerNonce+",p=AAAA")
	write("scram-downgrade", ScramSHA256, true, "y,,n=bob,r="+fuzzClientNonce, "")
}
