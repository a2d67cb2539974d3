package scheme

import (
	"crypto/md5"
	"encoding"
	"encoding/binary"
	"fmt"
	"strings"
)

// CRAMMD5Digest returns the HMAC-MD5 of challenge keyed with the user's
// password (RFC 2195, RFC 2104), computed from what the passdb stores: a
// plaintext-equivalent entry ({PLAIN}, {CLEAR}, {CLEARTEXT}), or a
// {CRAM-MD5} / {HMAC-MD5} entry, which holds the HMAC-MD5 context Dovecot
// stores (the MD5 states after the outer and inner key blocks), so the
// password itself is never needed. A CRAM-MD5 server compares the result with
// the client's digest in constant time. Any other scheme is ErrUnsupported;
// bad data is ErrMalformed.
func CRAMMD5Digest(stored string, challenge []byte) ([]byte, error) {
	if plain, ok := PlaintextEquivalent(stored); ok {
		return hmacMD5FromContext(cramMD5Context(plain), challenge), nil
	}
	if !strings.HasPrefix(stored, "{") {
		return nil, fmt.Errorf("%w: CRAM-MD5 needs a {SCHEME} prefix", ErrUnsupported)
	}
	name, data := split(stored, "")
	info, enc, explicit, err := lookup(name)
	if err != nil {
		return nil, err
	}
	if info.name != "CRAM-MD5" && info.name != "HMAC-MD5" {
		return nil, fmt.Errorf("%w: {%s} cannot serve CRAM-MD5", ErrUnsupported, name)
	}
	raw, err := decode(info, enc, explicit, data)
	if err != nil {
		return nil, err
	}
	return hmacMD5FromContext(raw, challenge), nil
}

// hmacMD5FromContext finishes HMAC-MD5 over msg from a 32-byte context as
// cramMD5Context lays it out: outer state, then inner state, each four
// little-endian words. The states are loaded into crypto/md5 through its
// documented BinaryUnmarshaler ("md5\x01", four big-endian words, a 64-byte
// buffer, the big-endian byte count), as if one 64-byte block had been
// absorbed.
func hmacMD5FromContext(ctx, msg []byte) []byte {
	inner := md5FromState(ctx[16:32])
	inner.Write(msg)
	outer := md5FromState(ctx[0:16])
	outer.Write(inner.Sum(nil))
	return outer.Sum(nil)
}

// md5FromState returns an MD5 hash that has absorbed one block and whose
// chaining state is the four little-endian words in st.
func md5FromState(st []byte) interface {
	Write([]byte) (int, error)
	Sum([]byte) []byte
} {
	b := make([]byte, 0, 4+16+md5.BlockSize+8)
	b = append(b, "md5\x01"...)
	for i := range 4 {
		b = binary.BigEndian.AppendUint32(b, binary.LittleEndian.Uint32(st[4*i:]))
	}
	b = append(b, make([]byte, md5.BlockSize)...)
	b = binary.BigEndian.AppendUint64(b, md5.BlockSize)
	h := md5.New()
	if err := h.(encoding.BinaryUnmarshaler).UnmarshalBinary(b); err != nil {
		// The standard library's format changed; fail loudly in tests.
		panic("scheme: unexpected crypto/md5 state encoding: " + err.Error())
	}
	return h
}
