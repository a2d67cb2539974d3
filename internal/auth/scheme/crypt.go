package scheme

import (
	"crypto/subtle"
	"encoding/base64"
	"fmt"
	"strconv"
	"strings"

	"github.com/GehirnInc/crypt"
	"github.com/GehirnInc/crypt/md5_crypt"
	"github.com/GehirnInc/crypt/sha256_crypt"
	"github.com/GehirnInc/crypt/sha512_crypt"
	"golang.org/x/crypto/argon2"
	"golang.org/x/crypto/bcrypt"
)

// bcryptMaxPassword is how much of a password bcrypt uses. Dovecot's crypt()
// silently ignores the rest, and x/crypto refuses longer input, so Verify
// truncates to match Dovecot.
const bcryptMaxPassword = 72

// prepareCrypt implements {CRYPT}: a crypt(3) string whose algorithm is told
// by its prefix.
func prepareCrypt(raw []byte) (matchFunc, error) {
	s := string(raw)
	switch {
	case strings.HasPrefix(s, "$1$"), strings.HasPrefix(s, "$5$"), strings.HasPrefix(s, "$6$"):
		return prepareShaMD5Crypt(s)
	case strings.HasPrefix(s, "$2"):
		return prepareBcrypt(s)
	case s == "":
		// Dovecot: an empty crypt string never matches.
		return func(string) bool { return false }, nil
	case strings.HasPrefix(s, "$y$"), strings.HasPrefix(s, "$7$"), strings.HasPrefix(s, "$gy$"):
		return nil, fmt.Errorf("%w: yescrypt/scrypt crypt strings ($y$, $7$, $gy$)", ErrUnsupported)
	case strings.HasPrefix(s, "$argon2"):
		return nil, fmt.Errorf("%w: argon2 string under {CRYPT}; use {ARGON2I} or {ARGON2ID}", ErrUnsupported)
	case !strings.HasPrefix(s, "$"):
		return nil, fmt.Errorf("%w: traditional DES crypt (no $id$ prefix) is too weak and not supported; rehash the password", ErrUnsupported)
	}
	id, _, _ := strings.Cut(s[1:], "$")
	return nil, fmt.Errorf("%w: crypt algorithm $%.8q$", ErrUnsupported, id)
}

// onlyCrypt returns the preparer for a scheme that names one crypt
// algorithm, such as {SHA512-CRYPT}, refusing strings of another algorithm.
func onlyCrypt(prefix, name string) prepareFunc {
	return func(raw []byte) (matchFunc, error) {
		if !strings.HasPrefix(string(raw), prefix) {
			return nil, fmt.Errorf("%w: {%s} data does not start with %s", ErrMalformed, name, prefix)
		}
		return prepareCrypt(raw)
	}
}

// prepareMD5 implements Dovecot's {MD5}: MD5-CRYPT if the data starts with
// $1$, otherwise PLAIN-MD5.
func prepareMD5(raw []byte) (matchFunc, error) {
	if strings.HasPrefix(string(raw), "$1$") {
		return prepareShaMD5Crypt(string(raw))
	}
	info := schemeTable("PLAIN-MD5")
	md5raw, err := decode(info, info.enc, false, string(raw))
	if err != nil {
		return nil, fmt.Errorf("%w: {MD5} data is neither MD5-CRYPT nor PLAIN-MD5", ErrMalformed)
	}
	return info.prepare(md5raw)
}

// prepareShaMD5Crypt checks $1$, $5$ and $6$ strings with GehirnInc/crypt
// (glibc-compatible), after capping the rounds.
func prepareShaMD5Crypt(s string) (matchFunc, error) {
	var c crypt.Crypter
	switch s[:3] {
	case "$1$":
		c = md5_crypt.New()
	case "$5$":
		c = sha256_crypt.New()
	default:
		c = sha512_crypt.New()
	}
	// A valid string has a salt and a hash after the prefix (and rounds=).
	fields := strings.Split(s[3:], "$")
	hasRounds := strings.HasPrefix(fields[0], "rounds=")
	if len(fields) < 2 || (hasRounds && len(fields) < 3) {
		return nil, fmt.Errorf("%w: crypt string %.3s... has no salt or hash", ErrMalformed, s)
	}
	if s[:3] != "$1$" && hasRounds {
		n, err := strconv.ParseUint(strings.TrimPrefix(fields[0], "rounds="), 10, 64)
		if err != nil {
			return nil, fmt.Errorf("%w: crypt %s has a bad rounds= value", ErrMalformed, s[:3])
		}
		if n > MaxCryptRounds {
			return nil, fmt.Errorf("%w: crypt %s rounds=%d, limit %d", ErrTooExpensive, s[:3], n, MaxCryptRounds)
		}
	}
	// Recompute from the setting (everything before the last '$') rather
	// than with the library's Verify: that passes the whole string as the
	// salt and, after rounds=, takes "salt$hash" truncated to 16 bytes as
	// the salt, so a glibc hash with a shorter salt never matched.
	setting := []byte(s[:strings.LastIndexByte(s, '$')])
	return func(password string) bool {
		got, err := c.Generate([]byte(password), setting)
		return err == nil && subtle.ConstantTimeCompare([]byte(got), []byte(s)) == 1
	}, nil
}

// prepareBcrypt checks $2a$, $2b$ and $2y$ strings (Dovecot's BLF-CRYPT).
func prepareBcrypt(s string) (matchFunc, error) {
	// $2x$ is crypt_blowfish's compatibility mode for its old sign-extension
	// bug; x/crypto computes the correct algorithm, so it would not match.
	if len(s) < 4 || s[3] != '$' || (s[2] != 'a' && s[2] != 'b' && s[2] != 'y') {
		return nil, fmt.Errorf("%w: bcrypt variant %.4q (want $2a$, $2b$ or $2y$)", ErrUnsupported, s)
	}
	cost, err := bcrypt.Cost([]byte(s))
	if err != nil {
		return nil, fmt.Errorf("%w: bcrypt: %v", ErrMalformed, err)
	}
	if cost > MaxBcryptCost {
		return nil, fmt.Errorf("%w: bcrypt cost %d, limit %d", ErrTooExpensive, cost, MaxBcryptCost)
	}
	return func(password string) bool {
		if len(password) > bcryptMaxPassword {
			password = password[:bcryptMaxPassword]
		}
		// CompareHashAndPassword compares in constant time.
		return bcrypt.CompareHashAndPassword([]byte(s), []byte(password)) == nil
	}, nil
}

// argon2Params is a parsed PHC string as libsodium writes it:
// $argon2id$v=19$m=65536,t=3,p=1$<salt>$<hash>, base64 without padding.
type argon2Params struct {
	variant      string
	memory, time uint32
	lanes        uint8
	salt, hash   []byte
}

func parseArgon2(s string) (argon2Params, error) {
	var p argon2Params
	bad := func(what string) (argon2Params, error) {
		return argon2Params{}, fmt.Errorf("%w: argon2 string: %s", ErrMalformed, what)
	}
	f := strings.Split(s, "$")
	if len(f) != 6 || f[0] != "" {
		return bad("want $variant$v=19$m=,t=,p=$salt$hash")
	}
	p.variant = f[1]
	if f[2] != "v=19" {
		return argon2Params{}, fmt.Errorf("%w: argon2 version %q (only v=19 is implemented)", ErrUnsupported, f[2])
	}
	var seen [3]bool
	for kv := range strings.SplitSeq(f[3], ",") {
		k, v, ok := strings.Cut(kv, "=")
		if !ok {
			return bad("parameter without =")
		}
		n, err := strconv.ParseUint(v, 10, 32)
		if err != nil {
			return bad("parameter " + k + " is not a number")
		}
		switch k {
		case "m":
			p.memory, seen[0] = uint32(n), true
		case "t":
			p.time, seen[1] = uint32(n), true
		case "p":
			if n > MaxArgon2Lanes {
				return argon2Params{}, fmt.Errorf("%w: argon2 p=%d, limit %d", ErrTooExpensive, n, MaxArgon2Lanes)
			}
			p.lanes, seen[2] = uint8(n), true
		default:
			return bad("unknown parameter " + k)
		}
	}
	if !seen[0] || !seen[1] || !seen[2] || p.time < 1 || p.lanes < 1 || p.memory < 8*uint32(p.lanes) {
		return bad("m, t and p must be present and m >= 8*p, t >= 1, p >= 1")
	}
	var err error
	if p.salt, err = base64.RawStdEncoding.Strict().DecodeString(f[4]); err != nil || len(p.salt) < 8 || len(p.salt) > 1024 {
		return bad("salt must be 8-1024 bytes of unpadded base64")
	}
	if p.hash, err = base64.RawStdEncoding.Strict().DecodeString(f[5]); err != nil || len(p.hash) < 4 || len(p.hash) > 1024 {
		return bad("hash must be 4-1024 bytes of unpadded base64")
	}
	switch {
	case p.memory > MaxArgon2Memory:
		return argon2Params{}, fmt.Errorf("%w: argon2 m=%d KiB, limit %d", ErrTooExpensive, p.memory, MaxArgon2Memory)
	case p.time > MaxArgon2Passes:
		return argon2Params{}, fmt.Errorf("%w: argon2 t=%d, limit %d", ErrTooExpensive, p.time, MaxArgon2Passes)
	case uint64(p.memory)*uint64(p.time) > MaxArgon2Work:
		return argon2Params{}, fmt.Errorf("%w: argon2 m*t=%d, limit %d", ErrTooExpensive, uint64(p.memory)*uint64(p.time), MaxArgon2Work)
	}
	return p, nil
}

// argon2Preparer returns the preparer for {ARGON2I} ("argon2i") or
// {ARGON2ID} ("argon2id"), whose data is libsodium's crypto_pwhash_str.
func argon2Preparer(variant string) prepareFunc {
	return func(raw []byte) (matchFunc, error) {
		p, err := parseArgon2(string(raw))
		if err != nil {
			return nil, err
		}
		if p.variant != variant {
			return nil, fmt.Errorf("%w: {%s} data is $%.10q$", ErrMalformed, strings.ToUpper(variant), p.variant)
		}
		return func(password string) bool {
			var got []byte
			if variant == "argon2i" {
				got = argon2.Key([]byte(password), p.salt, p.time, p.memory, p.lanes, uint32(len(p.hash)))
			} else {
				got = argon2.IDKey([]byte(password), p.salt, p.time, p.memory, p.lanes, uint32(len(p.hash)))
			}
			return subtle.ConstantTimeCompare(got, p.hash) == 1
		}, nil
	}
}
