package tomlconf

import (
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestLines(t *testing.T) {
	data := `# a comment
top = 1

[pop3]   # trailing comment
listen = ["127.0.0.1:110",
  "[::1]:110"]
"quoted" = true

[auth.oauth]
issuer = "x"

[[account]]
host = "a"
[[account]] # second
host = "b"
user = "u"
listen = 3
`
	want := map[string]int{
		"top": 2, "pop3": 4, "pop3.listen": 5, "pop3.quoted": 7,
		"auth.oauth": 9, "auth.oauth.issuer": 10,
		"account.0": 12, "account.0.host": 13,
		"account.1": 14, "account.1.host": 15, "account.1.user": 16, "account.1.listen": 17,
	}
	if diff := cmp.Diff(want, Lines([]byte(data))); diff != "" {
		t.Errorf("Lines (-want +got):\n%s", diff)
	}
}
