package fetch

import (
	"strings"
	"testing"
)

// copyLF turns every CRLF into LF, also one whose CR ends a full read
// buffer (a line longer than 64 KiB) and whose LF starts the next.
func TestCopyLF(t *testing.T) {
	t.Parallel()
	long := strings.Repeat("x", 64<<10-1)
	tests := []struct {
		in, want string
		mboxrd   bool
		endsNL   bool
	}{
		{"a\r\nb\r\n", "a\nb\n", false, true},
		{"a\r\nb", "a\nb", false, false},
		{"a\rb\r\n", "a\rb\n", false, true},
		{long + "\r\nend\r\n", long + "\nend\n", false, true},
		{long + "\rx\r\n", long + "\rx\n", false, true},
		{long + "\r", long + "\r", false, false},
		{"From a\r\n>From b\r\nx From c\r\n", ">From a\n>>From b\nx From c\n", true, true},
	}
	for _, tt := range tests {
		var b strings.Builder
		nl, err := copyLF(&b, strings.NewReader(tt.in), tt.mboxrd)
		if err != nil || b.String() != tt.want || nl != tt.endsNL {
			t.Errorf("copyLF(%.20q…%q) = %.20q…%q, %v, %v; want %.20q…%q, %v", tt.in, tail(tt.in), b.String(), tail(b.String()), nl, err, tt.want, tail(tt.want), tt.endsNL)
		}
	}
}

func tail(s string) string { return s[max(0, len(s)-8):] }
