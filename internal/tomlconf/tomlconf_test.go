package tomlconf

import (
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

type duration struct{ time.Duration }

func (d *duration) UnmarshalText(b []byte) (err error) {
	d.Duration, err = time.ParseDuration(string(b))
	return err
}

type conf struct {
	Top  int `toml:"top"`
	Pop3 struct {
		Listen []string `toml:"listen"`
		Idle   duration `toml:"idle"`
	} `toml:"pop3"`
	Account []struct {
		Name string `toml:"name"`
	} `toml:"account"`
}

// Decode reports a syntax or type error with its line, and an unknown key
// as the first problem of the File, at its line; the caller's problems
// follow in the order added, each placed at its key or the nearest
// enclosing table set in the file.
func TestDecode(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct{ data, want string }{
		{"top = 1\n[pop3\n", "f.toml:3: expected"},
		{"top = \"one\"\n", "f.toml: "},
		{"[pop3]\nidle = \"soon\"\n", "f.toml:2: "},
	} {
		var c conf
		f, err := Decode("f.toml", []byte(tt.data), &c)
		if err == nil || f != nil || len(err.Error()) < len(tt.want) || err.Error()[:len(tt.want)] != tt.want {
			t.Errorf("Decode(%q) = %v, %v, want an error starting %q", tt.data, f, err, tt.want)
		}
	}

	data := `top = 1
bogus = 2

[pop3]
listen = ["127.0.0.1:110"]
idle = "10m"
lisen = ["x"]

[[account]]
name = "a"
[[account]]
nmae = "b"
[[account]]
name = "c"
nmae = "c"
`
	var c conf
	f, err := Decode("f.toml", []byte(data), &c)
	if err != nil {
		t.Fatalf("Decode: %v", err)
	}
	if c.Pop3.Idle.Duration != 10*time.Minute || len(c.Account) != 3 || c.Account[0].Name != "a" {
		t.Errorf("Decode: %+v", c)
	}
	f.Bad("pop3.idle", "%v is too short", c.Pop3.Idle.Duration)
	f.Bad("pop3.greeting", "missing")
	f.Bad("account.1.name", "required")
	f.Bad("mail.location", "is required")
	f.Add("f.toml: no mail")
	want := []string{
		"f.toml:2: bogus: unknown key",
		"f.toml:7: pop3.lisen: unknown key",
		"f.toml:12: account.1.nmae: unknown key",
		"f.toml:15: account.2.nmae: unknown key",
		"f.toml:6: pop3.idle: 10m0s is too short",
		"f.toml:4: pop3.greeting: missing",
		"f.toml:11: account.1.name: required",
		"f.toml: mail.location: is required",
		"f.toml: no mail",
	}
	if diff := cmp.Diff(want, f.Problems()); diff != "" {
		t.Errorf("Problems (-want +got):\n%s", diff)
	}
	if got := f.Line("account.1"); got != 11 {
		t.Errorf("Line(account.1) = %d, want 11", got)
	}
	if got := f.Line("account.3"); got != 0 {
		t.Errorf("Line(account.3) = %d, want 0", got)
	}
}

// A file with nothing wrong has no problems.
func TestDecodeClean(t *testing.T) {
	t.Parallel()
	var c conf
	f, err := Decode("f.toml", []byte("top = 1\n"), &c)
	if err != nil || f.Problems() != nil {
		t.Fatalf("Decode = %v, problems %q; want none", err, f.Problems())
	}
}
