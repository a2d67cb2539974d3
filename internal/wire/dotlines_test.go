package wire

import (
	"slices"
	"testing"
)

// TestDotLines feeds messages to DotLines in pieces of every size, so that
// a line's LF and its "." fall in different writes, and checks the
// offsets and the bound.
func TestDotLines(t *testing.T) {
	for _, tc := range []struct {
		msg  string
		max  int
		offs []int64
		many bool
	}{
		{"", 4, nil, false},
		{"a\r\nb\r\n", 4, nil, false},
		{".\r\n", 4, []int64{0}, false},
		{"a\r\n.b\r\n..\r\nc.\r\n.\r\n", 4, []int64{3, 7, 15}, false},
		{".\r\n.\r\n.\r\n", 2, []int64{0, 3}, true},
	} {
		for piece := 1; piece <= len(tc.msg)+1; piece++ {
			d := DotLines{Max: tc.max}
			for off := 0; off < len(tc.msg); off += piece {
				d.Write([]byte(tc.msg[off:min(off+piece, len(tc.msg))]))
			}
			if d.Many() != tc.many || !slices.Equal(d.Offsets(), tc.offs) {
				t.Errorf("%q in pieces of %d: offsets %v many %v, want %v %v", tc.msg, piece, d.Offsets(), d.Many(), tc.offs, tc.many)
			}
		}
	}
}
