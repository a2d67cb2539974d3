package sasl

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/postoffice-mail/postoffice/internal/auth"
	"github.com/postoffice-mail/postoffice/internal/auth/scheme"
)

// cramServer is CRAM-MD5 (RFC 2195): the server sends a unique
// "<random.timestamp@hostname>", the client answers "user SP hexdigest",
// digest = HMAC-MD5(password, challenge).
type cramServer struct {
	m         *Mechanisms
	challenge []byte // nil until sent
	u         auth.User
}

func newCRAMMD5(m *Mechanisms) *cramServer { return &cramServer{m: m} }

func (s *cramServer) next(ctx context.Context, response []byte) ([]byte, bool, error) {
	if s.challenge == nil {
		if response != nil {
			// RFC 2195 has no initial response.
			return nil, false, fmt.Errorf("%w: CRAM-MD5 takes no initial response", ErrMalformed)
		}
		var r [8]byte
		rand.Read(r[:])
		s.challenge = fmt.Appendf(nil, "<%d.%d@%s>", binary.BigEndian.Uint64(r[:])>>1, time.Now().Unix(), s.m.opts.Hostname)
		return s.challenge, false, nil
	}
	// RFC 2195 §2: the user name, a space, 32 lower-case hex digits. The
	// user name may itself contain spaces, so split at the last one.
	i := bytes.LastIndexByte(response, ' ')
	if i <= 0 || len(response)-i-1 != 32 {
		return nil, false, fmt.Errorf("%w: CRAM-MD5 response is not \"user digest\"", ErrMalformed)
	}
	digest := make([]byte, 16)
	if _, err := hex.Decode(digest, bytes.ToLower(response[i+1:])); err != nil {
		return nil, false, fmt.Errorf("%w: CRAM-MD5 digest is not hex", ErrMalformed)
	}
	username := string(response[:i])
	if err := identify(ctx, username); err != nil {
		return nil, false, err
	}

	u, stored, err := s.m.creds.Credentials(ctx, username)
	if errors.Is(err, auth.ErrUnknownUser) {
		// Spend the same work on a made-up entry.
		scheme.CRAMMD5Digest("{PLAIN}"+strconv.Quote(username), s.challenge)
		return nil, false, fmt.Errorf("%w: unknown user", ErrAuthFailed)
	}
	if err != nil {
		return nil, false, err
	}
	want, err := scheme.CRAMMD5Digest(stored, s.challenge)
	if err != nil {
		// The stored scheme cannot serve CRAM-MD5 (or is broken).
		return nil, false, fmt.Errorf("%w: stored credentials cannot serve CRAM-MD5: %w", ErrAuthFailed, err)
	}
	if !hmac.Equal(want, digest) {
		return nil, false, fmt.Errorf("%w: wrong digest", ErrAuthFailed)
	}
	s.u = u
	return nil, true, nil
}

func (s *cramServer) user() auth.User { return s.u }
