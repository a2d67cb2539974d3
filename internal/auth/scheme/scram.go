package scheme

import (
	"crypto/hmac"
	"crypto/pbkdf2"
	"crypto/sha1"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"hash"
	"strconv"
	"strings"
)

// scramMinIterations is Dovecot's AUTH_SCRAM_MIN_ITERATE_COUNT; RFC 5802 §5.1
// says the count SHOULD be at least 4096, and Dovecot refuses fewer.
const scramMinIterations = 4096

// scramIterations is what Hash writes (Dovecot's default too).
const scramIterations = 4096

type scramHash struct {
	name string // "SHA-1" or "SHA-256", as ParseSCRAM reports it
	new  func() hash.Hash
	size int
}

var (
	scramSHA1   = scramHash{"SHA-1", sha1.New, sha1.Size}
	scramSHA256 = scramHash{"SHA-256", sha256.New, sha256.Size}
)

// scramKeys derives StoredKey and ServerKey from a password (RFC 5802 §3).
// Like Dovecot, the password is used as is, without SASLprep.
func scramKeys(h scramHash, password string, salt []byte, iter int) (storedKey, serverKey []byte, err error) {
	salted, err := pbkdf2.Key(h.new, password, salt, iter, h.size)
	if err != nil {
		return nil, nil, fmt.Errorf("scheme: pbkdf2: %w", err)
	}
	mac := hmac.New(h.new, salted)
	mac.Write([]byte("Client Key"))
	clientKey := mac.Sum(nil)
	sh := h.new()
	sh.Write(clientKey)
	storedKey = sh.Sum(nil)
	mac = hmac.New(h.new, salted)
	mac.Write([]byte("Server Key"))
	serverKey = mac.Sum(nil)
	return storedKey, serverKey, nil
}

// parseSCRAMData parses Dovecot's "iter,base64salt,base64storedkey,base64serverkey".
func parseSCRAMData(h scramHash, data string) (iter int, salt, storedKey, serverKey []byte, err error) {
	bad := func(what string) (int, []byte, []byte, []byte, error) {
		return 0, nil, nil, nil, fmt.Errorf("%w: SCRAM-%s: %s", ErrMalformed, h.name, what)
	}
	f := strings.Split(data, ",")
	if len(f) != 4 {
		return bad("want iter,salt,storedkey,serverkey")
	}
	n, err := strconv.ParseUint(f[0], 10, 31)
	if err != nil || n < scramMinIterations {
		return bad(fmt.Sprintf("iteration count must be a number >= %d", scramMinIterations))
	}
	if n > MaxIterations {
		return 0, nil, nil, nil, fmt.Errorf("%w: SCRAM-%s iteration count %d, limit %d", ErrTooExpensive, h.name, n, MaxIterations)
	}
	if salt, err = base64.StdEncoding.Strict().DecodeString(f[1]); err != nil || len(salt) == 0 {
		return bad("salt is not base64")
	}
	if storedKey, err = base64.StdEncoding.Strict().DecodeString(f[2]); err != nil || len(storedKey) != h.size {
		return bad(fmt.Sprintf("stored key is not %d bytes of base64", h.size))
	}
	if serverKey, err = base64.StdEncoding.Strict().DecodeString(f[3]); err != nil || len(serverKey) != h.size {
		return bad(fmt.Sprintf("server key is not %d bytes of base64", h.size))
	}
	return int(n), salt, storedKey, serverKey, nil
}

// scramPreparer recomputes StoredKey from the password and compares, as
// Dovecot's scram_verify does (the ServerKey is not checked).
func scramPreparer(h scramHash) prepareFunc {
	return func(raw []byte) (matchFunc, error) {
		iter, salt, storedKey, _, err := parseSCRAMData(h, string(raw))
		if err != nil {
			return nil, err
		}
		return func(password string) bool {
			got, _, err := scramKeys(h, password, salt, iter)
			return err == nil && subtle.ConstantTimeCompare(got, storedKey) == 1
		}, nil
	}
}

// ParseSCRAM returns the SCRAM credentials in a {SCRAM-SHA-1} or
// {SCRAM-SHA-256} entry (encoding suffixes allowed), for a SASL SCRAM server:
// the iteration count, salt, StoredKey and ServerKey of RFC 5802 §3, and hash,
// "SHA-1" or "SHA-256". Any other scheme is an error.
func ParseSCRAM(stored string) (iter int, salt, storedKey, serverKey []byte, hash string, err error) {
	if !strings.HasPrefix(stored, "{") {
		return 0, nil, nil, nil, "", fmt.Errorf("%w: not a {SCRAM-*} entry", ErrMalformed)
	}
	name, data := split(stored, "")
	info, enc, explicit, err := lookup(name)
	if err != nil {
		return 0, nil, nil, nil, "", err
	}
	var h scramHash
	switch info.name {
	case "SCRAM-SHA-1":
		h = scramSHA1
	case "SCRAM-SHA-256":
		h = scramSHA256
	default:
		return 0, nil, nil, nil, "", fmt.Errorf("%w: {%s} is not a SCRAM scheme", ErrMalformed, name)
	}
	raw, err := decode(info, enc, explicit, data)
	if err != nil {
		return 0, nil, nil, nil, "", err
	}
	iter, salt, storedKey, serverKey, err = parseSCRAMData(h, string(raw))
	if err != nil {
		return 0, nil, nil, nil, "", err
	}
	return iter, salt, storedKey, serverKey, h.name, nil
}

// pbkdf2KeyLen is Dovecot's PBKDF2_KEY_SIZE_SHA1.
const pbkdf2KeyLen = 20

// preparePBKDF2 implements {PBKDF2}$1$salt$rounds$hex: PBKDF2-HMAC-SHA1 with
// the salt string used as is (not decoded) and a 20-byte key in hex.
func preparePBKDF2(raw []byte) (matchFunc, error) {
	s, ok := strings.CutPrefix(string(raw), "$1$")
	if !ok {
		return nil, fmt.Errorf("%w: {PBKDF2} data does not start with $1$", ErrMalformed)
	}
	f := strings.Split(s, "$")
	if len(f) != 3 {
		return nil, fmt.Errorf("%w: {PBKDF2} wants $1$salt$rounds$hash", ErrMalformed)
	}
	rounds, err := strconv.ParseUint(f[1], 10, 32)
	if err != nil || rounds == 0 {
		return nil, fmt.Errorf("%w: {PBKDF2} rounds is not a positive number", ErrMalformed)
	}
	if rounds > MaxIterations {
		return nil, fmt.Errorf("%w: {PBKDF2} rounds %d, limit %d", ErrTooExpensive, rounds, MaxIterations)
	}
	want, err := hex.DecodeString(f[2])
	if err != nil || len(want) != pbkdf2KeyLen {
		return nil, fmt.Errorf("%w: {PBKDF2} hash is not 160 bits of hex", ErrMalformed)
	}
	salt := f[0]
	return func(password string) bool {
		got, err := pbkdf2SHA1(password, salt, int(rounds))
		return err == nil && subtle.ConstantTimeCompare(got, want) == 1
	}, nil
}

// pbkdf2SHA1 is Dovecot's pbkdf_run: PBKDF2-HMAC-SHA1 over the salt string.
func pbkdf2SHA1(password, salt string, rounds int) ([]byte, error) {
	key, err := pbkdf2.Key(sha1.New, password, []byte(salt), rounds, pbkdf2KeyLen)
	if err != nil {
		return nil, fmt.Errorf("scheme: pbkdf2: %w", err)
	}
	return key, nil
}
