package scheme

import (
	"crypto/rand"
	"encoding/base64"
	"fmt"
	"strings"

	"github.com/GehirnInc/crypt/sha256_crypt"
	"github.com/GehirnInc/crypt/sha512_crypt"
	"golang.org/x/crypto/argon2"
	"golang.org/x/crypto/bcrypt"
)

// Parameters Hash uses for new entries.
const (
	hashBcryptCost    = bcrypt.DefaultCost // 10
	hashArgon2Memory  = 64 << 10           // KiB, libsodium's and Dovecot's ARGON2ID default
	hashArgon2Passes  = 3
	hashArgon2Lanes   = 1
	hashArgon2KeyLen  = 32
	hashSaltLen       = 16 // bytes of salt for ARGON2ID, SSHA*, SCRAM
	hashPBKDF2Rounds  = 5000
	hashPBKDF2SaltLen = 16 // characters, as Dovecot
)

// HashSchemes returns the schemes Hash accepts, DefaultNewScheme first
// (CLEAR, CLEARTEXT and HMAC-MD5 are accepted too, as aliases).
func HashSchemes() []string {
	return []string{
		"SHA512-CRYPT", "SHA256-CRYPT", "BLF-CRYPT", "ARGON2ID", "ARGON2I",
		"SSHA512", "SSHA256", "PBKDF2", "SCRAM-SHA-256", "SCRAM-SHA-1",
		"CRAM-MD5", "PLAIN",
	}
}

// Hash returns password in the named scheme as "{SCHEME}data", with a fresh
// random salt, in the form Dovecot writes and accepts. Scheme names are
// case-insensitive; see HashSchemes. PLAIN (also CLEAR, CLEARTEXT) is written
// as {PLAIN.B64} when the password holds a byte that a passwd-file line
// cannot carry (':', a control character). CRAM-MD5 (also HMAC-MD5) and PLAIN
// are plaintext-equivalent: anyone who reads them can log in.
func Hash(scheme, password string) (string, error) {
	if len(password) > MaxPasswordLen {
		return "", ErrPasswordTooLong
	}
	name := strings.ToUpper(scheme)
	switch name {
	case "SHA512-CRYPT":
		s, err := sha512_crypt.New().Generate([]byte(password), nil)
		if err != nil {
			return "", fmt.Errorf("scheme: SHA512-CRYPT: %w", err)
		}
		return "{SHA512-CRYPT}" + s, nil
	case "SHA256-CRYPT":
		s, err := sha256_crypt.New().Generate([]byte(password), nil)
		if err != nil {
			return "", fmt.Errorf("scheme: SHA256-CRYPT: %w", err)
		}
		return "{SHA256-CRYPT}" + s, nil
	case "BLF-CRYPT":
		if len(password) > bcryptMaxPassword {
			return "", fmt.Errorf("scheme: BLF-CRYPT uses only the first %d bytes of a password; choose another scheme for a longer one", bcryptMaxPassword)
		}
		b, err := bcrypt.GenerateFromPassword([]byte(password), hashBcryptCost)
		if err != nil {
			return "", fmt.Errorf("scheme: BLF-CRYPT: %w", err)
		}
		return "{BLF-CRYPT}" + string(b), nil
	case "ARGON2ID", "ARGON2I":
		salt := randomBytes(hashSaltLen)
		var key []byte
		variant := "argon2id"
		if name == "ARGON2I" {
			variant = "argon2i"
			key = argon2.Key([]byte(password), salt, hashArgon2Passes, hashArgon2Memory, hashArgon2Lanes, hashArgon2KeyLen)
		} else {
			key = argon2.IDKey([]byte(password), salt, hashArgon2Passes, hashArgon2Memory, hashArgon2Lanes, hashArgon2KeyLen)
		}
		return fmt.Sprintf("{%s}$%s$v=19$m=%d,t=%d,p=%d$%s$%s", name, variant,
			hashArgon2Memory, hashArgon2Passes, hashArgon2Lanes,
			base64.RawStdEncoding.EncodeToString(salt), base64.RawStdEncoding.EncodeToString(key)), nil
	case "SSHA512", "SSHA256":
		h := sha512Salted()
		if name == "SSHA256" {
			h = sha256Salted()
		}
		salt := randomBytes(hashSaltLen)
		h.Write([]byte(password))
		h.Write(salt)
		return "{" + name + "}" + base64.StdEncoding.EncodeToString(append(h.Sum(nil), salt...)), nil
	case "PBKDF2":
		salt := randomSaltChars(hashPBKDF2SaltLen)
		key, err := pbkdf2SHA1(password, salt, hashPBKDF2Rounds)
		if err != nil {
			return "", err
		}
		return fmt.Sprintf("{PBKDF2}$1$%s$%d$%x", salt, hashPBKDF2Rounds, key), nil
	case "SCRAM-SHA-256", "SCRAM-SHA-1":
		h := scramSHA256
		if name == "SCRAM-SHA-1" {
			h = scramSHA1
		}
		salt := randomBytes(hashSaltLen)
		storedKey, serverKey, err := scramKeys(h, password, salt, scramIterations)
		if err != nil {
			return "", err
		}
		enc := base64.StdEncoding.EncodeToString
		return fmt.Sprintf("{%s}%d,%s,%s,%s", name, scramIterations, enc(salt), enc(storedKey), enc(serverKey)), nil
	case "CRAM-MD5", "HMAC-MD5":
		return fmt.Sprintf("{%s}%x", name, cramMD5Context(password)), nil
	case "PLAIN", "CLEAR", "CLEARTEXT":
		if strings.ContainsFunc(password, func(r rune) bool { return r == ':' || r < 0x20 || r == 0x7f }) {
			return "{" + name + ".B64}" + base64.StdEncoding.EncodeToString([]byte(password)), nil
		}
		return "{" + name + "}" + password, nil
	}
	if schemeTable(name) != nil {
		return "", fmt.Errorf("%w for new passwords: %q (use one of %s)", ErrUnsupported, scheme, strings.Join(HashSchemes(), ", "))
	}
	return "", fmt.Errorf("%w %q", ErrUnknownScheme, scheme)
}

// randomBytes returns n bytes from crypto/rand, which never fails.
func randomBytes(n int) []byte {
	b := make([]byte, n)
	rand.Read(b)
	return b
}

// saltChars is Dovecot's salt alphabet (password_generate_salt).
const saltChars = "./0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"

// randomSaltChars returns n characters of saltChars chosen uniformly.
func randomSaltChars(n int) string {
	b := randomBytes(n)
	for i := range b {
		b[i] = saltChars[b[i]&63] // len(saltChars) == 64
	}
	return string(b)
}
