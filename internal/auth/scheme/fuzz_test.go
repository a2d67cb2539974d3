package scheme

import (
	"encoding/base64"
	"errors"
	"strings"
	"testing"

	"golang.org/x/crypto/argon2"
)

// FuzzVerify checks that Verify never panics and that it agrees with Check:
// an entry Check accepts never gives Verify an error, and one it refuses
// always does. Seeds are the doveadm vectors (argon2 ones replaced by cheap
// parameters so the fuzzer keeps its speed) and the malformed entries of
// TestVerifyErrors.
func FuzzVerify(f *testing.F) {
	for _, v := range readVectors(f) {
		if strings.HasPrefix(v.scheme, "ARGON2") {
			continue
		}
		f.Add(v.enc, v.pass, DovecotDefaultScheme)
	}
	salt := []byte("saltsaltsalt")
	key := argon2.IDKey([]byte("pw"), salt, 1, 64, 1, 16)
	f.Add("{ARGON2ID}$argon2id$v=19$m=64,t=1,p=1$"+base64.RawStdEncoding.EncodeToString(salt)+"$"+
		base64.RawStdEncoding.EncodeToString(key), "pw", "")
	for _, s := range []string{
		"{SHA512-CRYPT}$6$rounds=2000000$salt$hash", "{PLAIN-TRUNC}5-Corre", "EFKaDOlPzU7bk",
		"{CRYPT}$2x$05$O/cX8JIqHe1lEsHPKwZ9X.7tIf.R4TJ3D/M/Ht2q7mwzPgDTRPc3i", "{SHA256.xyz}x",
		"{SCRAM-SHA-256}4096,AAAA,AAAA,AAAA", "{PBKDF2}$1$salt$10$875be15eb50c152dfb7b34b1e22a4b5e8e5d6f0a",
		"{MD5}not-md5", "{", "{}", "$1$", "$1$$", "{CRYPT}$5$rounds=1000$", "{SSHA.hex}00",
	} {
		f.Add(s, "Correct horse 9", "CRYPT")
		f.Add(s, "", "PLAIN")
	}
	f.Fuzz(func(t *testing.T, stored, password, defaultScheme string) {
		ok, err := Verify(stored, password, defaultScheme)
		if ok && err != nil {
			t.Fatalf("Verify(%q, %q, %q) = true, %v", stored, password, defaultScheme, err)
		}
		if errors.Is(err, ErrPasswordTooLong) {
			return
		}
		if cerr := Check(stored, defaultScheme); (cerr == nil) != (err == nil) {
			t.Fatalf("Check(%q, %q) = %v but Verify = %v, %v", stored, defaultScheme, cerr, ok, err)
		}
		if err != nil && !strings.HasPrefix(err.Error(), "scheme: ") {
			t.Fatalf("Verify(%q) error %q lacks the scheme: prefix", stored, err)
		}
		if plain, ok := PlaintextEquivalent(stored); ok {
			if match, err := Verify(stored, plain, defaultScheme); (!match || err != nil) && len(plain) <= MaxPasswordLen {
				t.Fatalf("PlaintextEquivalent(%q) = %q, but Verify with it = %v, %v", stored, plain, match, err)
			}
		}
	})
}
