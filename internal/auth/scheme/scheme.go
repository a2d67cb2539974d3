// Package scheme owns Dovecot's password schemes: it verifies and produces the
// "{SCHEME}data" strings Dovecot keeps in a passdb (passwd-file, SQL, LDAP),
// so postoffice can serve the user databases a site already has.
//
// Supported for verification: PLAIN, CLEAR, CLEARTEXT, PLAIN-TRUNC, CRYPT
// (auto-detecting $1$, $5$, $6$ and $2a$/$2b$/$2y$ strings), MD5 (MD5-CRYPT or
// PLAIN-MD5), MD5-CRYPT, SHA256-CRYPT, SHA512-CRYPT, BLF-CRYPT, ARGON2I,
// ARGON2ID, SHA, SHA1, SHA256, SHA512, SSHA, SSHA256, SSHA512, SMD5,
// PLAIN-MD5, LDAP-MD5, CRAM-MD5, HMAC-MD5, PBKDF2, SCRAM-SHA-1 and
// SCRAM-SHA-256, each with Dovecot's ".b64", ".base64" and ".hex" encoding
// suffixes. Check tells whether an entry is usable without the hashing work.
// Hash produces entries for new users (DefaultNewScheme unless told
// otherwise). ParseSCRAM and PlaintextEquivalent hand out the secrets that
// the challenge-response mechanisms (SCRAM, APOP) need.
//
// Implementation notes:
//   - The formats follow Dovecot 2.3 (src/lib-auth/password-scheme*.c); every
//     scheme is tested against hashes made by "doveadm pw", and Hash output is
//     checked with "doveadm pw -t" when Dovecot is installed.
//   - Every comparison of secret material is constant-time (crypto/subtle or
//     the library's own).
//   - Work parameters read from a stored hash are capped (MaxCryptRounds,
//     MaxBcryptCost, MaxArgon2Memory, MaxArgon2Passes, MaxArgon2Work,
//     MaxIterations) so one hostile passdb line cannot burn minutes of CPU;
//     beyond a cap Verify refuses with ErrTooExpensive.
//   - Traditional DES crypt, yescrypt, DIGEST-MD5 (which needs the user name),
//     PLAIN-MD4, LANMAN, NTLM, OTP, SKEY and RPA are refused with
//     ErrUnsupported.
//   - There is no package-level mutable state.
package scheme

import (
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
)

// DefaultNewScheme is the scheme Hash should be given for new users.
const DefaultNewScheme = "SHA512-CRYPT"

// DovecotDefaultScheme is Dovecot's default_pass_scheme: the scheme of a stored
// password that carries no {SCHEME} prefix.
const DovecotDefaultScheme = "CRYPT"

// Caps on the work parameters Verify accepts from a stored hash. Beyond them
// Verify returns ErrTooExpensive without doing the work. They are well above
// what Dovecot and common tools generate; an entry at a cap costs at most
// about 1.5 s of one core (measured on an AMD EPYC with BenchmarkVerifyAtCaps:
// SHA512-CRYPT 0.27 s, BLF-CRYPT 0.95 s, ARGON2ID 1.5 s and 256 MiB,
// PBKDF2 0.19 s, SCRAM-SHA-256 0.16 s).
const (
	MaxCryptRounds  = 1_000_000 // SHA256-CRYPT, SHA512-CRYPT rounds= (default 5000)
	MaxBcryptCost   = 14        // BLF-CRYPT cost (doveadm uses 5, x/crypto 10)
	MaxArgon2Memory = 256 << 10 // ARGON2I/ARGON2ID m= in KiB (256 MiB; Dovecot uses 32-64 MiB)
	MaxArgon2Passes = 16        // ARGON2I/ARGON2ID t=
	MaxArgon2Work   = 1 << 19   // m*t in KiB passes (Dovecot's defaults are under 200,000)
	MaxArgon2Lanes  = 16        // ARGON2I/ARGON2ID p=
	MaxIterations   = 1_000_000 // PBKDF2 rounds and SCRAM iteration count
	// MaxPasswordLen bounds the candidate password; no protocol postoffice
	// speaks carries a longer one.
	MaxPasswordLen = 4096
)

// Errors returned (wrapped) by Verify, Hash and ParseSCRAM; test with errors.Is.
var (
	// ErrUnknownScheme means the {SCHEME} name is not one Dovecot knows.
	ErrUnknownScheme = errors.New("scheme: unknown password scheme")
	// ErrUnsupported means the scheme exists in Dovecot but postoffice
	// does not implement it (or refuses it as too weak).
	ErrUnsupported = errors.New("scheme: unsupported password scheme")
	// ErrMalformed means the stored data does not parse for its scheme.
	ErrMalformed = errors.New("scheme: malformed stored password")
	// ErrTooExpensive means the stored hash asks for more work than the caps allow.
	ErrTooExpensive = errors.New("scheme: stored password exceeds work limits")
	// ErrPasswordTooLong means the candidate password exceeds MaxPasswordLen.
	ErrPasswordTooLong = errors.New("scheme: password too long")
)

// pwEncoding is how a scheme's raw bytes are written after the {SCHEME} prefix.
type pwEncoding int

const (
	encNone pwEncoding = iota
	encBase64
	encHex
)

// prepareFunc parses the decoded raw stored data, checks it against the work
// caps and returns the function that tests a password against it. The
// expensive work happens only in the returned matchFunc, so Check can reject
// unusable data without doing it.
type prepareFunc func(raw []byte) (matchFunc, error)

// matchFunc reports whether password matches, comparing in constant time.
type matchFunc func(password string) bool

type schemeInfo struct {
	name    string     // canonical upper-case name
	enc     pwEncoding // default encoding
	rawLen  int        // fixed decoded length, 0 if variable
	prepare prepareFunc
	// plain is set for the schemes whose raw data is the plaintext.
	plain bool
}

// lookup returns the scheme for a name such as "SHA256" or "ssha.HEX" and the
// encoding of its data (whether the suffix was explicit), as Dovecot's
// password_scheme_lookup does. Names are case-insensitive.
func lookup(name string) (info *schemeInfo, enc pwEncoding, explicit bool, err error) {
	base, suffix, hasSuffix := strings.Cut(name, ".")
	info = schemeTable(strings.ToUpper(base))
	if info == nil {
		return nil, 0, false, fmt.Errorf("%w %q", ErrUnknownScheme, name)
	}
	if info.prepare == nil {
		return nil, 0, false, fmt.Errorf("%w %q", ErrUnsupported, name)
	}
	if !hasSuffix {
		return info, info.enc, false, nil
	}
	switch strings.ToLower(suffix) {
	case "b64", "base64":
		return info, encBase64, true, nil
	case "hex":
		return info, encHex, true, nil
	}
	// Dovecot treats an unknown encoding as an unknown scheme.
	return nil, 0, false, fmt.Errorf("%w %q (encoding suffix)", ErrUnknownScheme, name)
}

// schemeTable maps an upper-case scheme name to its description. Schemes that
// Dovecot knows but postoffice does not implement have a nil prepare.
func schemeTable(name string) *schemeInfo {
	switch name {
	case "PLAIN", "CLEAR", "CLEARTEXT":
		return &schemeInfo{name: name, enc: encNone, prepare: preparePlain, plain: true}
	case "PLAIN-TRUNC":
		return &schemeInfo{name: name, enc: encNone, prepare: preparePlainTrunc}
	case "CRYPT":
		return &schemeInfo{name: name, enc: encNone, prepare: prepareCrypt}
	case "MD5":
		return &schemeInfo{name: name, enc: encNone, prepare: prepareMD5}
	case "MD5-CRYPT":
		return &schemeInfo{name: name, enc: encNone, prepare: onlyCrypt("$1$", name)}
	case "SHA256-CRYPT":
		return &schemeInfo{name: name, enc: encNone, prepare: onlyCrypt("$5$", name)}
	case "SHA512-CRYPT":
		return &schemeInfo{name: name, enc: encNone, prepare: onlyCrypt("$6$", name)}
	case "BLF-CRYPT":
		return &schemeInfo{name: name, enc: encNone, prepare: onlyCrypt("$2", name)}
	case "ARGON2I":
		return &schemeInfo{name: name, enc: encNone, prepare: argon2Preparer("argon2i")}
	case "ARGON2ID":
		return &schemeInfo{name: name, enc: encNone, prepare: argon2Preparer("argon2id")}
	case "SHA", "SHA1":
		return &schemeInfo{name: name, enc: encBase64, rawLen: 20, prepare: digestPreparer(sha1Sum)}
	case "SHA256":
		return &schemeInfo{name: name, enc: encBase64, rawLen: 32, prepare: digestPreparer(sha256Sum)}
	case "SHA512":
		return &schemeInfo{name: name, enc: encBase64, rawLen: 64, prepare: digestPreparer(sha512Sum)}
	case "SMD5":
		return &schemeInfo{name: name, enc: encBase64, prepare: saltedPreparer(md5Salted)}
	case "SSHA":
		return &schemeInfo{name: name, enc: encBase64, prepare: saltedPreparer(sha1Salted)}
	case "SSHA256":
		return &schemeInfo{name: name, enc: encBase64, prepare: saltedPreparer(sha256Salted)}
	case "SSHA512":
		return &schemeInfo{name: name, enc: encBase64, prepare: saltedPreparer(sha512Salted)}
	case "PLAIN-MD5":
		return &schemeInfo{name: name, enc: encHex, rawLen: 16, prepare: digestPreparer(md5Sum)}
	case "LDAP-MD5":
		return &schemeInfo{name: name, enc: encBase64, rawLen: 16, prepare: digestPreparer(md5Sum)}
	case "CRAM-MD5", "HMAC-MD5":
		return &schemeInfo{name: name, enc: encHex, rawLen: cramContextLen, prepare: prepareCRAMMD5}
	case "PBKDF2":
		return &schemeInfo{name: name, enc: encNone, prepare: preparePBKDF2}
	case "SCRAM-SHA-1":
		return &schemeInfo{name: name, enc: encNone, prepare: scramPreparer(scramSHA1)}
	case "SCRAM-SHA-256":
		return &schemeInfo{name: name, enc: encNone, prepare: scramPreparer(scramSHA256)}
	case "DES-CRYPT", "DIGEST-MD5", "PLAIN-MD4", "LANMAN", "NTLM", "OTP", "SKEY", "RPA":
		return &schemeInfo{name: name}
	}
	return nil
}

// Name returns the scheme of a stored password, upper case and without an
// encoding suffix (".b64", ".HEX"): "SHA512-CRYPT" for
// "{SHA512-CRYPT}$6$...", defaultScheme for a hash without a prefix (but
// "MD5-CRYPT" for a bare "$1$" string, as Verify reads it).
func Name(stored, defaultScheme string) string {
	name, _ := split(stored, defaultScheme)
	name, _, _ = strings.Cut(name, ".")
	return strings.ToUpper(name)
}

// split separates "{SCHEME}data" into its parts. A string without a
// well-formed prefix gets defaultScheme, except that a bare "$1$" string is
// always MD5-CRYPT, as in Dovecot's password_get_scheme.
func split(stored, defaultScheme string) (name, data string) {
	if strings.HasPrefix(stored, "{") {
		if end := strings.IndexByte(stored, '}'); end > 0 {
			return stored[1:end], stored[end+1:]
		}
	}
	if strings.HasPrefix(stored, "$1$") {
		return "MD5-CRYPT", stored
	}
	return defaultScheme, stored
}

// decode turns the stored data into raw bytes following Dovecot's
// password_decode: for fixed-length schemes without an explicit suffix the
// encoding is guessed from the length (hex if it is twice the raw length).
func decode(info *schemeInfo, enc pwEncoding, explicit bool, data string) ([]byte, error) {
	guessed := false
	if enc != encNone && info.rawLen != 0 && !explicit {
		guessed = true
		enc = encBase64
		if len(data) == 2*info.rawLen {
			enc = encHex
		}
	}
	var raw []byte
	switch enc {
	case encNone:
		raw = []byte(data)
	case encHex:
		b, err := hex.DecodeString(data)
		if err == nil {
			raw = b
			break
		}
		if !guessed {
			return nil, fmt.Errorf("%w: {%s} data is not valid hex", ErrMalformed, info.name)
		}
		// Some lengths are both; Dovecot falls back to base64 too.
		fallthrough
	case encBase64:
		b, err := decodeBase64(data)
		if err != nil {
			return nil, fmt.Errorf("%w: {%s} data is not valid base64", ErrMalformed, info.name)
		}
		raw = b
	}
	if info.rawLen != 0 && len(raw) != info.rawLen {
		return nil, fmt.Errorf("%w: {%s} data is %d bytes, want %d", ErrMalformed, info.name, len(raw), info.rawLen)
	}
	return raw, nil
}

// decodeBase64 accepts standard base64 with or without padding.
func decodeBase64(s string) ([]byte, error) {
	if strings.HasSuffix(s, "=") || len(s)%4 == 0 {
		return base64.StdEncoding.Strict().DecodeString(s)
	}
	return base64.RawStdEncoding.Strict().DecodeString(s)
}

// Verify reports whether password matches the stored password, which is
// "{SCHEME}data" or, without a prefix, data in defaultScheme (Dovecot's
// default is DovecotDefaultScheme, "CRYPT"). A mismatch is (false, nil); an
// error means the stored entry cannot be used (unknown or unsupported scheme,
// malformed data, work beyond the caps) or the password is longer than
// MaxPasswordLen, and then the result is always false.
func Verify(stored, password, defaultScheme string) (bool, error) {
	if len(password) > MaxPasswordLen {
		return false, ErrPasswordTooLong
	}
	match, err := prepare(stored, defaultScheme)
	if err != nil {
		return false, err
	}
	return match(password), nil
}

// Check reports whether stored is usable by Verify, without a password and
// without the hashing work: it returns the error Verify would return for any
// password, or nil. A passdb loader calls it to report a bad entry early.
func Check(stored, defaultScheme string) error {
	_, err := prepare(stored, defaultScheme)
	return err
}

// prepare parses stored, checks it against the caps and returns its matcher:
// everything Verify does before the hashing work, and all that Check does.
func prepare(stored, defaultScheme string) (matchFunc, error) {
	name, data := split(stored, defaultScheme)
	if name == "" {
		return nil, fmt.Errorf("%w: empty scheme name", ErrUnknownScheme)
	}
	info, enc, explicit, err := lookup(name)
	if err != nil {
		return nil, err
	}
	raw, err := decode(info, enc, explicit, data)
	if err != nil {
		return nil, err
	}
	return info.prepare(raw)
}

// PlaintextEquivalent returns the plaintext held by a PLAIN, CLEAR or
// CLEARTEXT entry (with any encoding suffix), which APOP and CRAM-MD5 need.
// ok is false for every other scheme, including entries without a prefix.
func PlaintextEquivalent(stored string) (plain string, ok bool) {
	if !strings.HasPrefix(stored, "{") {
		return "", false
	}
	name, data := split(stored, "")
	info, enc, explicit, err := lookup(name)
	if err != nil || !info.plain {
		return "", false
	}
	raw, err := decode(info, enc, explicit, data)
	if err != nil {
		return "", false
	}
	return string(raw), true
}
