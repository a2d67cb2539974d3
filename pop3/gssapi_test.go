package pop3

import (
	"bytes"
	"errors"
	"strings"
	"testing"
)

// fakeGSS is a GSS context whose tokens are plain strings: the AP-REQ is
// "apreq", the server's AP-REP must be "aprep", Wrap prefixes "W" and
// Unwrap wants it.
type fakeGSS struct{ calls int }

func (g *fakeGSS) InitSecContext(tok []byte) ([]byte, bool, error) {
	g.calls++
	if g.calls == 1 {
		return []byte("apreq"), false, nil
	}
	if string(tok) != "aprep" {
		return nil, false, errors.New("not an AP-REP")
	}
	return nil, true, nil
}

func (g *fakeGSS) Wrap(msg []byte) ([]byte, error) { return append([]byte("W"), msg...), nil }

func (g *fakeGSS) Unwrap(tok []byte) ([]byte, error) {
	if !bytes.HasPrefix(tok, []byte("W")) {
		return nil, errors.New("not wrapped")
	}
	return tok[1:], nil
}

func gssLogin(t *testing.T, script, authzid string) (*Client, error) {
	t.Helper()
	addr := fakeServer(t, script)
	ctx := testCtx(t)
	c, err := Dial(ctx, addr, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c, c.Authenticate(ctx, NewGSSAPIClient(&fakeGSS{}, authzid))
}

// RFC 4752 §3.1 as Dovecot runs it: AP-REQ, AP-REP answered with an empty
// response, then the wrapped offer (Dovecot offers every layer with a
// maximum of 0xFFFFFF), answered with "no security layer", maximum 0 and
// the authorization identity.
func TestGSSAPIExchange(t *testing.T) {
	t.Parallel()
	c, err := gssLogin(t, `
		S: +OK ready
		C: AUTH GSSAPI `+b64("apreq")+`
		S: + `+b64("aprep")+`
		C: 
		S: + `+b64("W\x07\xff\xff\xff")+`
		C: `+b64("W\x01\x00\x00\x00alice")+`
		S: +OK logged in
		C: QUIT
		S: +OK bye
	`, "alice")
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Quit(testCtx(t)); err != nil {
		t.Fatal(err)
	}
}

// A server that says +OK before the security-layer exchange never proved
// it holds the service key (RFC 4752 §3.1 asks for mutual authentication,
// and the AP-REP and the wrapped offer are the proof): an impostor could
// otherwise log the client in without seeing its ticket, and fetched mail
// would come from it. Even after a good AP-REP, a +OK without the
// exchange skipped the authorization identity the client asked for.
func TestGSSAPIServerNotVerified(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct{ name, script string }{
		{"ok after the AP-REQ", `
			S: +OK ready
			C: AUTH GSSAPI ` + b64("apreq") + `
			S: +OK welcome
			WAIT`},
		{"ok after the AP-REP", `
			S: +OK ready
			C: AUTH GSSAPI ` + b64("apreq") + `
			S: + ` + b64("aprep") + `
			C: 
			S: +OK welcome
			WAIT`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			c, err := gssLogin(t, tc.script, "")
			if !errors.Is(err, ErrServerNotVerified) {
				t.Fatalf("Authenticate = %v, want ErrServerNotVerified", err)
			}
			if err := c.Noop(testCtx(t)); err == nil {
				t.Error("client still usable after an unverified login")
			}
			c.Close()
		})
	}
}

// Offers the client cannot take, a bad AP-REP and a server that sends
// empty challenges without end are cancelled with "*".
func TestGSSAPIRefusedOffers(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct{ name, challenges, want string }{
		{"offer of 3 octets", "S: + " + b64("aprep") + "\nC: \nS: + " + b64("W\x01\x00\x00"), "3 octets"},
		{"offer without none", "S: + " + b64("aprep") + "\nC: \nS: + " + b64("W\x04\xff\xff\xff"), "insists on a security layer"},
		{"offer not wrapped", "S: + " + b64("aprep") + "\nC: \nS: + " + b64("\x01\x00\x00\x00"), "not wrapped"},
		{"bad AP-REP", "S: + " + b64("forged"), "not an AP-REP"},
		{"empty challenges", "S: + " + b64("aprep") + "\nC: \nS: + \nC: \nS: + ", "empty challenge"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			_, err := gssLogin(t, "S: +OK ready\nC: AUTH GSSAPI "+b64("apreq")+"\n"+tc.challenges+"\nC: *\nS: -ERR cancelled\n", "")
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Authenticate = %v, want an error with %q", err, tc.want)
			}
		})
	}
}
