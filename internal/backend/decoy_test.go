package backend

import (
	"bufio"
	"crypto/hmac"
	"crypto/pbkdf2"
	"crypto/sha256"
	"encoding/base64"
	"fmt"
	"strings"
	"testing"
	"time"
)

// Through the engine and a real passwd-file whose SCRAM-SHA-256 users are
// stored with 10,000 iterations, an unknown name's first SCRAM challenge
// carries i=10000 and a salt as long as a real user's, and the same salt at
// a second attempt.
func TestSCRAMUnknownUserChallenge(t *testing.T) {
	t.Parallel()
	entry := func(pw string) string {
		salt := []byte("0123456789abcdefghijklmn") // 24 bytes
		salted, err := pbkdf2.Key(sha256.New, pw, salt, 10000, sha256.Size)
		if err != nil {
			t.Fatal(err)
		}
		mac := hmac.New(sha256.New, salted)
		mac.Write([]byte("Client Key"))
		stored := sha256.Sum256(mac.Sum(nil))
		mac = hmac.New(sha256.New, salted)
		mac.Write([]byte("Server Key"))
		b64 := base64.StdEncoding.EncodeToString
		return fmt.Sprintf("{SCRAM-SHA-256}10000,%s,%s,%s", b64(salt), b64(stored[:]), b64(mac.Sum(nil)))
	}
	dial, _ := limitedServer(t, "alice@example.org:"+entry("a")+"\nbob@example.org:"+entry("b")+"\n", nil)
	// challenge returns the attributes of the server-first message.
	challenge := func(user string) map[string]string {
		t.Helper()
		nc := dial("203.0.113.9:1", "203.0.113.9:1")
		nc.SetDeadline(time.Now().Add(30 * time.Second))
		br := bufio.NewReader(nc)
		if _, err := br.ReadString('\n'); err != nil { // greeting
			t.Fatal(err)
		}
		first := base64.StdEncoding.EncodeToString([]byte("n,,n=" + user + ",r=abcdefghijklmnop"))
		if _, err := nc.Write([]byte("AUTH SCRAM-SHA-256 " + first + "\r\n")); err != nil {
			t.Fatal(err)
		}
		line, err := br.ReadString('\n')
		if err != nil {
			t.Fatal(err)
		}
		b64, ok := strings.CutPrefix(strings.TrimRight(line, "\r\n"), "+ ")
		if !ok {
			t.Fatalf("AUTH for %q answered %q, want a challenge", user, line)
		}
		msg, err := base64.StdEncoding.DecodeString(b64)
		if err != nil {
			t.Fatal(err)
		}
		attrs := make(map[string]string)
		for _, f := range strings.Split(string(msg), ",") {
			k, v, _ := strings.Cut(f, "=")
			attrs[k] = v
		}
		nc.Write([]byte("*\r\n"))
		return attrs
	}
	known, unknown := challenge("alice@example.org"), challenge("ghost@example.org")
	if known["i"] != "10000" {
		t.Fatalf("known user's challenge has i=%s, want the stored 10000", known["i"])
	}
	if unknown["i"] != known["i"] || len(unknown["s"]) != len(known["s"]) {
		t.Errorf("unknown user's challenge has i=%s s=%s; a known user's i=%s s=%s", unknown["i"], unknown["s"], known["i"], known["s"])
	}
	if again := challenge("ghost@example.org"); again["s"] != unknown["s"] {
		t.Errorf("unknown user's salt changed between attempts: %s, then %s", unknown["s"], again["s"])
	}
}
