package scheme

import (
	"encoding/base64"
	"fmt"
	"strings"
	"testing"

	"github.com/GehirnInc/crypt/sha512_crypt"
	"golang.org/x/crypto/argon2"
	"golang.org/x/crypto/bcrypt"
)

// BenchmarkVerify measures one Verify per doveadm vector (first password).
func BenchmarkVerify(b *testing.B) {
	for _, v := range readVectors(b) {
		if v.pass != "Correct horse 9" {
			continue
		}
		b.Run(strings.ReplaceAll(v.scheme, " ", "_"), func(b *testing.B) {
			for b.Loop() {
				if ok, err := Verify(v.enc, v.pass, ""); !ok || err != nil {
					b.Fatalf("Verify(%q) = %v, %v", v.enc, ok, err)
				}
			}
		})
	}
}

// BenchmarkVerifyAtCaps measures the worst a stored entry can cost: each
// work parameter at its cap. Run it with -benchtime=1x.
func BenchmarkVerifyAtCaps(b *testing.B) {
	const pw = "Correct horse 9"
	mk := map[string]func() string{
		"SHA512-CRYPT": func() string {
			s, err := sha512_crypt.New().Generate([]byte(pw), fmt.Appendf(nil, "$6$rounds=%d$abcdefgh", MaxCryptRounds))
			if err != nil {
				b.Fatal(err)
			}
			return "{SHA512-CRYPT}" + s
		},
		"BLF-CRYPT": func() string {
			s, err := bcrypt.GenerateFromPassword([]byte(pw), MaxBcryptCost)
			if err != nil {
				b.Fatal(err)
			}
			return "{BLF-CRYPT}" + string(s)
		},
		"ARGON2ID": func() string {
			salt := []byte("saltsaltsaltsalt")
			t := uint32(MaxArgon2Work / MaxArgon2Memory)
			k := argon2.IDKey([]byte(pw), salt, t, MaxArgon2Memory, 1, 32)
			return fmt.Sprintf("{ARGON2ID}$argon2id$v=19$m=%d,t=%d,p=1$%s$%s", MaxArgon2Memory, t,
				base64.RawStdEncoding.EncodeToString(salt), base64.RawStdEncoding.EncodeToString(k))
		},
		"PBKDF2": func() string {
			k, err := pbkdf2SHA1(pw, "saltsalt", MaxIterations)
			if err != nil {
				b.Fatal(err)
			}
			return fmt.Sprintf("{PBKDF2}$1$saltsalt$%d$%x", MaxIterations, k)
		},
		"SCRAM-SHA-256": func() string {
			salt := []byte("saltsaltsaltsalt")
			st, sv, err := scramKeys(scramSHA256, pw, salt, MaxIterations)
			if err != nil {
				b.Fatal(err)
			}
			e := base64.StdEncoding.EncodeToString
			return fmt.Sprintf("{SCRAM-SHA-256}%d,%s,%s,%s", MaxIterations, e(salt), e(st), e(sv))
		},
	}
	for name, f := range mk {
		b.Run(name, func(b *testing.B) {
			stored := f()
			for b.Loop() {
				if ok, err := Verify(stored, pw, ""); !ok || err != nil {
					b.Fatalf("Verify(%q) = %v, %v", stored, ok, err)
				}
			}
		})
	}
}
