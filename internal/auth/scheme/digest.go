package scheme

import (
	"crypto/md5"
	"crypto/sha1"
	"crypto/sha256"
	"crypto/sha512"
	"crypto/subtle"
	"encoding"
	"encoding/binary"
	"fmt"
	"hash"
)

// preparePlain compares a plaintext entry in constant time (for equal lengths).
func preparePlain(raw []byte) (matchFunc, error) {
	return func(password string) bool {
		return subtle.ConstantTimeCompare(raw, []byte(password)) == 1
	}, nil
}

// preparePlainTrunc implements {PLAIN-TRUNC}: "<n>-<password>", where a stored
// password of exactly n bytes may have been truncated from a longer one, so
// any password it is a prefix of matches.
func preparePlainTrunc(raw []byte) (matchFunc, error) {
	i, n := 0, 0
	for ; i < len(raw) && raw[i] >= '0' && raw[i] <= '9'; i++ {
		if n > MaxPasswordLen {
			return nil, fmt.Errorf("%w: {PLAIN-TRUNC} length too large", ErrMalformed)
		}
		n = n*10 + int(raw[i]-'0')
	}
	if i == 0 || i == len(raw) || raw[i] != '-' {
		return nil, fmt.Errorf("%w: {PLAIN-TRUNC} data lacks the <length>- prefix", ErrMalformed)
	}
	stored := raw[i+1:]
	return func(password string) bool {
		if len(stored) == n && len(password) >= n {
			return subtle.ConstantTimeCompare(stored, []byte(password[:n])) == 1
		}
		return subtle.ConstantTimeCompare(stored, []byte(password)) == 1
	}, nil
}

func md5Sum(p []byte) []byte    { s := md5.Sum(p); return s[:] }
func sha1Sum(p []byte) []byte   { s := sha1.Sum(p); return s[:] }
func sha256Sum(p []byte) []byte { s := sha256.Sum256(p); return s[:] }
func sha512Sum(p []byte) []byte { s := sha512.Sum512(p); return s[:] }

// digestPreparer returns the preparer for an unsalted digest of the password
// ({SHA256}, {PLAIN-MD5}, ...). decode has already checked the length.
func digestPreparer(sum func([]byte) []byte) prepareFunc {
	return func(raw []byte) (matchFunc, error) {
		return func(password string) bool {
			return subtle.ConstantTimeCompare(sum([]byte(password)), raw) == 1
		}, nil
	}
}

func md5Salted() hash.Hash    { return md5.New() }
func sha1Salted() hash.Hash   { return sha1.New() }
func sha256Salted() hash.Hash { return sha256.New() }
func sha512Salted() hash.Hash { return sha512.New() }

// saltedPreparer returns the preparer for {SSHA*}/{SMD5}: raw is
// H(password || salt) || salt, with a salt of any non-zero length.
func saltedPreparer(newHash func() hash.Hash) prepareFunc {
	return func(raw []byte) (matchFunc, error) {
		size := newHash().Size()
		if len(raw) <= size {
			return nil, fmt.Errorf("%w: salted digest is %d bytes, want more than %d", ErrMalformed, len(raw), size)
		}
		return func(password string) bool {
			h := newHash()
			h.Write([]byte(password))
			h.Write(raw[size:])
			return subtle.ConstantTimeCompare(h.Sum(nil), raw[:size]) == 1
		}, nil
	}
}

// cramContextLen is Dovecot's CRAM_MD5_CONTEXTLEN.
const cramContextLen = 32

// cramMD5Context computes what Dovecot stores for {CRAM-MD5} and {HMAC-MD5}
// (hmac_md5_get_cram_context): the MD5 chaining state after HMAC-MD5 has
// absorbed the key block, outer context first, then inner, each as the four
// 32-bit words a, b, c, d in little-endian byte order. The HMAC key is the
// password, or its MD5 digest if it is longer than the 64-byte block
// (RFC 2104 §2).
func cramMD5Context(password string) []byte {
	key := []byte(password)
	if len(key) > md5.BlockSize {
		key = md5Sum(key)
	}
	var ipad, opad [md5.BlockSize]byte
	copy(ipad[:], key)
	copy(opad[:], key)
	for i := range ipad {
		ipad[i] ^= 0x36
		opad[i] ^= 0x5c
	}
	out := make([]byte, 0, cramContextLen)
	out = appendMD5State(out, opad[:])
	out = appendMD5State(out, ipad[:])
	return out
}

// appendMD5State appends the little-endian MD5 state after one block. It
// reads the state through crypto/md5's documented BinaryMarshaler, whose
// layout is "md5\x01" followed by the four state words big-endian.
func appendMD5State(out, block []byte) []byte {
	h := md5.New()
	h.Write(block)
	st, err := h.(encoding.BinaryMarshaler).MarshalBinary()
	if err != nil || len(st) < 4+16 || string(st[:4]) != "md5\x01" {
		// The standard library's format changed; fail loudly in tests.
		panic("scheme: unexpected crypto/md5 state encoding")
	}
	for i := range 4 {
		out = binary.LittleEndian.AppendUint32(out, binary.BigEndian.Uint32(st[4+4*i:]))
	}
	return out
}

// prepareCRAMMD5 recomputes the HMAC-MD5 context from the password.
func prepareCRAMMD5(raw []byte) (matchFunc, error) {
	return func(password string) bool {
		return subtle.ConstantTimeCompare(cramMD5Context(password), raw) == 1
	}, nil
}
