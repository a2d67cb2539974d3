package sasl

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha1"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/xdg-go/scram"

	"github.com/postoffice-mail/postoffice/internal/auth"
	"github.com/postoffice-mail/postoffice/internal/auth/scheme"
)

// scramIterations is the iteration count of derived and decoy credentials,
// Dovecot's default (RFC 5802 §5.1 and RFC 7677 §4 ask for at least 4096).
const scramIterations = 4096

// scramSaltLen is the length of derived and decoy salts (Dovecot's).
const scramSaltLen = 16

// bindings returns the channel bindings usable on cs, preferred first:
// tls-exporter (RFC 9266) where crypto/tls allows the exporter (TLS 1.3, or
// TLS 1.2 with Extended Master Secret), then tls-server-end-point (RFC 5929
// §4) when the server certificate is known and its signature hash defines
// the binding.
func (m *Mechanisms) bindings(cs *tls.ConnectionState) []scram.ChannelBinding {
	if cs == nil || !cs.HandshakeComplete {
		return nil
	}
	var out []scram.ChannelBinding
	if cb, ok := exporterBinding(cs); ok {
		out = append(out, cb)
	}
	if m.opts.ServerCertificate != nil {
		if cert := m.opts.ServerCertificate(cs); cert != nil {
			// xdg-go/scram hashes PeerCertificates[0] (the client's view); give
			// it the server's own certificate so both ends hash alike.
			view := &tls.ConnectionState{PeerCertificates: []*x509.Certificate{cert}}
			if cb, err := scram.NewTLSServerEndpointBinding(view); err == nil && cb.IsSupported() {
				out = append(out, cb)
			}
		}
	}
	return out
}

// exporterBinding returns the tls-exporter binding of cs. crypto/tls refuses
// the exporter without TLS 1.3 or Extended Master Secret (unless
// GODEBUG=tlsunsafeekm=1 is set, which must not be). A ConnectionState not
// made by crypto/tls has no exporter at all and makes ExportKeyingMaterial
// call a nil function; that counts as "no binding".
func exporterBinding(cs *tls.ConnectionState) (cb scram.ChannelBinding, ok bool) {
	defer func() {
		if recover() != nil {
			cb, ok = scram.ChannelBinding{}, false
		}
	}()
	cb, err := scram.NewTLSExporterBinding(cs)
	return cb, err == nil && cb.IsSupported()
}

// scramServer is SCRAM-SHA-1/-256 and their -PLUS variants (RFC 5802,
// RFC 7677) over xdg-go/scram. It reads the GS2 header itself first, to pick
// the channel binding the client asked for and to enforce RFC 5802 §6.
type scramServer struct {
	m      *Mechanisms
	name   string // mechanism
	base   string // SCRAM-SHA-1 or SCRAM-SHA-256
	hashFn scram.HashGeneratorFcn
	plus   bool
	cs     *tls.ConnectionState

	step    int // 0 want client-first, 1 want client-final
	conv    *scram.ServerConversation
	ctx     context.Context // for the credential lookup
	tempErr error           // a temporary failure of the lookup
	decoy   bool
	u       auth.User
}

func newSCRAM(m *Mechanisms, name string, cs *tls.ConnectionState) *scramServer {
	s := &scramServer{m: m, name: name, cs: cs, plus: strings.HasSuffix(name, "-PLUS")}
	s.base = strings.TrimSuffix(name, "-PLUS")
	if s.base == ScramSHA1 {
		s.hashFn = scram.SHA1
	} else {
		s.hashFn = scram.SHA256
	}
	return s
}

func (s *scramServer) user() auth.User { return s.u }

func (s *scramServer) next(ctx context.Context, response []byte) ([]byte, bool, error) {
	s.ctx = ctx
	switch s.step {
	case 0:
		if response == nil {
			return []byte{}, false, nil // ask for the client-first message
		}
		s.step = 1
		return s.first(response)
	default:
		return s.final(response)
	}
}

// first checks the GS2 header, builds the conversation and answers the
// client-first message.
func (s *scramServer) first(msg []byte) ([]byte, bool, error) {
	flag, _, ok := bytes.Cut(msg, []byte(","))
	if !ok {
		return nil, false, fmt.Errorf("%w: %s: no GS2 header", ErrMalformed, s.name)
	}
	binds := s.m.bindings(s.cs)
	var cb scram.ChannelBinding
	switch {
	case string(flag) == "n" || string(flag) == "y":
		if s.plus {
			// RFC 5802 §6: a client choosing -PLUS must use "p".
			return nil, false, fmt.Errorf("%w: %s without channel binding", ErrMalformed, s.name)
		}
		plusOffered := slices.Contains(s.m.Available(s.cs), s.base+"-PLUS")
		if string(flag) == "y" && plusOffered {
			// RFC 5802 §6: the client supports channel binding but did not
			// see -PLUS, which we advertised: a downgrade.
			return nil, false, fmt.Errorf("%w: %s: client reports no channel binding offered, but %s-PLUS was (downgrade)", ErrAuthFailed, s.name, s.base)
		}
		if plusOffered && len(binds) > 0 {
			// Let xdg-go/scram apply the same downgrade rule.
			s.conv = s.server().NewConversationWithChannelBinding(binds[0])
		} else {
			s.conv = s.server().NewConversation()
		}
	case bytes.HasPrefix(flag, []byte("p=")):
		if !s.plus {
			return nil, false, fmt.Errorf("%w: %s with channel binding (use -PLUS)", ErrMalformed, s.name)
		}
		typ := scram.ChannelBindingType(flag[2:])
		for _, b := range binds {
			if b.Type == typ {
				cb = b
			}
		}
		if !cb.IsSupported() {
			return nil, false, fmt.Errorf("%w: %s: channel binding type %q not available", ErrAuthFailed, s.name, typ)
		}
		s.conv = s.server().NewConversationWithChannelBindingRequired(cb)
	default:
		return nil, false, fmt.Errorf("%w: %s: bad GS2 channel binding flag", ErrMalformed, s.name)
	}

	serverFirst, err := s.conv.Step(string(msg))
	if s.tempErr != nil {
		return nil, false, s.tempErr
	}
	if err != nil {
		return nil, false, s.mapErr(serverFirst)
	}
	if a := s.conv.AuthzID(); a != "" && a != s.conv.Username() {
		return nil, false, fmt.Errorf("%w: %s: authorization identity differs from the user", ErrAuthFailed, s.name)
	}
	return []byte(serverFirst), false, nil
}

// final checks the client-final message and its proof.
func (s *scramServer) final(msg []byte) ([]byte, bool, error) {
	serverFinal, err := s.conv.Step(string(msg))
	if err != nil {
		return nil, false, s.mapErr(serverFinal)
	}
	if s.decoy || !s.conv.Valid() {
		return nil, false, fmt.Errorf("%w: %s: invalid proof", ErrAuthFailed, s.name)
	}
	return []byte(serverFinal), true, nil
}

// mapErr turns a failed xdg-go/scram step into our error by the "e=" server
// error it reports: none (or an encoding error) for what did not parse, a
// value for what parsed but failed. xdg-go's error text is not kept: it may
// quote the message (proof included) or the channel binding data.
func (s *scramServer) mapErr(serverErr string) error {
	switch serverErr {
	case "", scram.ErrInvalidEncoding, scram.ErrInvalidUsernameEncoding:
		return fmt.Errorf("%w: %s: message does not parse", ErrMalformed, s.name)
	}
	// e=other-error here is a nonce that is not ours or a proof of the wrong
	// length: a failed attempt, not a syntax error.
	return fmt.Errorf("%w: %s: %s", ErrAuthFailed, s.name, serverErr)
}

// server returns an xdg-go/scram server whose credential lookup uses this
// exchange's context.
func (s *scramServer) server() *scram.Server {
	srv, _ := s.hashFn.NewServer(s.lookup) // never fails
	if s.m.scramNonce != nil {
		srv.WithNonceGenerator(s.m.scramNonce)
	}
	return srv
}

// lookup is the scram.CredentialLookup: the stored {SCRAM-*} entry of the
// mechanism's hash, credentials derived from a plaintext-equivalent entry, or
// decoys for an unknown user or an unusable entry, so that nothing about the
// user shows before the proof.
func (s *scramServer) lookup(username string) (scram.StoredCredentials, error) {
	if err := identify(s.ctx, username); err != nil {
		s.tempErr = err
		return scram.StoredCredentials{}, err
	}
	u, stored, err := s.m.creds.Credentials(s.ctx, username)
	switch {
	case errors.Is(err, auth.ErrUnknownUser):
		return s.decoyCredentials(s.canonical(username), "unknown user")
	case err != nil:
		s.tempErr = err
		return scram.StoredCredentials{}, err
	}
	if iter, salt, storedKey, serverKey, hash, err := scheme.ParseSCRAM(stored); err == nil {
		if "SCRAM-"+hash == s.base {
			s.u = u
			return scram.StoredCredentials{
				KeyFactors: scram.KeyFactors{Salt: string(salt), Iters: iter},
				StoredKey:  storedKey,
				ServerKey:  serverKey,
			}, nil
		}
		return s.decoyCredentials(u.Name, "stored SCRAM entry has another hash")
	}
	if plain, ok := scheme.PlaintextEquivalent(stored); ok {
		creds, err := s.derive(username, u.Name, plain)
		if err != nil {
			return s.decoyCredentials(u.Name, "password cannot be prepared")
		}
		s.u = u
		return creds, nil
	}
	return s.decoyCredentials(u.Name, "stored scheme cannot serve SCRAM")
}

// canonical is the name an unknown user's decoy salt is keyed by: the user
// database's canonical spelling (auth.SCRAMDecoyDB), so that every spelling
// it looks up as one name gets one salt, as a stored user's spellings all
// get the stored salt. A database without that method is taken to look
// names up exactly as given.
func (s *scramServer) canonical(username string) string {
	if db, ok := s.m.creds.(auth.SCRAMDecoyDB); ok {
		return db.CanonicalName(username)
	}
	return username
}

// salt is the salt of derived and decoy credentials, n bytes: HMAC-SHA-256
// keyed with Options.Secret over the base mechanism and the user's canonical
// name, so it is stable per user for the life of the key and the same for
// -PLUS and plain. A salt longer than one HMAC output (a decoy copying long
// stored salts) continues with HMACs that also cover a block counter, the
// counter mode of NIST SP 800-108; the first block covers the name alone.
// n is bounded by the longest salt a stored entry can hold, so is the loop.
func (s *scramServer) salt(canonical string, n int) string {
	out := make([]byte, 0, n+sha256.Size)
	for block := uint32(0); len(out) < n; block++ {
		mac := hmac.New(sha256.New, s.m.opts.Secret)
		mac.Write([]byte(s.base))
		mac.Write([]byte{0})
		mac.Write([]byte(canonical))
		if block > 0 {
			mac.Write(binary.BigEndian.AppendUint32([]byte{0}, block))
		}
		out = mac.Sum(out)
	}
	return string(out[:n])
}

// derive computes SCRAM credentials from a plaintext password, SASLprep'd as
// the client does (RFC 5802 §5.1), or as is where SASLprep refuses it, with
// Dovecot's iteration count and salt length and the salt of the user's
// canonical name.
func (s *scramServer) derive(username, canonical, password string) (scram.StoredCredentials, error) {
	c, err := s.hashFn.NewClient(username, password, "")
	if err != nil {
		c, err = s.hashFn.NewClientUnprepped(username, password, "")
		if err != nil {
			return scram.StoredCredentials{}, err
		}
	}
	return c.GetStoredCredentialsWithError(scram.KeyFactors{Salt: s.salt(canonical, scramSaltLen), Iters: scramIterations})
}

// decoyCredentials returns credentials no password matches for the user
// whose canonical name is canonical, shaped like and costing what the most
// common credentials of the user database cost for this mechanism's hash
// (auth.SCRAMDecoyDB.DominantSCRAM), so that neither the server-first
// message (i=, the salt's length) nor the time to it tells an unknown name
// from most real users:
//   - dominant stored {SCRAM-*} keys: their iteration count and salt length,
//     random keys, and no key derivation, since serving a stored entry costs
//     none;
//   - dominant plaintext-equivalent passwords, no user that can serve the
//     hash, or a database that does not say: what a derived entry has and
//     costs, one PBKDF2 of a random password.
//
// The salt is keyed by the canonical name (salt), so it is the same at
// every attempt. Users of a rarer kind than the dominant one still differ
// from an unknown name in i= or in time; hiding them too would mean giving
// every user the same parameters.
func (s *scramServer) decoyCredentials(canonical, why string) (scram.StoredCredentials, error) {
	s.decoy = true
	s.m.log.Debug("sasl scram decoy credentials", "mech", s.name, "reason", why)
	p := auth.SCRAMParams{Derived: true}
	if db, ok := s.m.creds.(auth.SCRAMDecoyDB); ok {
		if dp, ok := db.DominantSCRAM(s.ctx, strings.TrimPrefix(s.base, "SCRAM-")); ok {
			p = dp
		}
	}
	if p.Derived {
		return s.derive(canonical, canonical, rand.Text())
	}
	size := sha256.Size
	if s.base == ScramSHA1 {
		size = sha1.Size
	}
	storedKey, serverKey := make([]byte, size), make([]byte, size)
	rand.Read(storedKey)
	rand.Read(serverKey)
	return scram.StoredCredentials{
		KeyFactors: scram.KeyFactors{Salt: s.salt(canonical, p.SaltLen), Iters: p.Iterations},
		StoredKey:  storedKey,
		ServerKey:  serverKey,
	}, nil
}
