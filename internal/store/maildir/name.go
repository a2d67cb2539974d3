package maildir

import (
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync/atomic"
	"time"
)

// infoSep separates a Maildir file's base name from its info part
// ("<base>:2,<flags>"). Dovecot compiles it in as ':' (MAILDIR_INFO_SEP) and
// has no run-time option for another separator, so ';' is not accepted.
const infoSep = ':'

// baseName returns the key of a Maildir file name: everything before the
// info part. It stays the same when another agent moves the file from new/
// to cur/ or changes its flags.
func baseName(name string) string {
	if i := strings.IndexByte(name, infoSep); i >= 0 {
		return name[:i]
	}
	return name
}

// sizeField returns the value of the ",<c>=<n>" field of base (Dovecot's
// S= physical size and W= virtual, CRLF size), if it has one.
func sizeField(base string, c byte) (int64, bool) {
	for i := 0; i+3 <= len(base); i++ {
		i0 := strings.IndexByte(base[i:], ',')
		if i0 < 0 {
			return 0, false
		}
		i += i0
		if i+3 > len(base) {
			return 0, false
		}
		if base[i+1] != c || base[i+2] != '=' {
			continue
		}
		j := i + 3
		for j < len(base) && base[j] >= '0' && base[j] <= '9' {
			j++
		}
		if j == i+3 || (j < len(base) && base[j] != ',') {
			continue
		}
		n, err := strconv.ParseInt(base[i+3:j], 10, 64)
		if err != nil {
			return 0, false
		}
		return n, true
	}
	return 0, false
}

// compareNames orders Maildir names by delivery time: first the leading
// seconds, then the microseconds of the M<usec> part of the second field
// (Dovecot's and postoffice's "M<usec>P<pid>Q<n>", Postfix's
// "V<dev>I<inode>M<usec>"), then the whole names with runs of digits
// compared as numbers (P<pid>, Q<n>) and the rest bytewise. It returns -1, 0
// or 1.
func compareNames(a, b string) int {
	sa, ua := deliveryTime(a)
	sb, ub := deliveryTime(b)
	return compareTimed(a, sa, ua, b, sb, ub)
}

// compareTimed is compareNames with each name's deliveryTime already
// parsed, for sorting many names.
func compareTimed(a, sa, ua, b, sb, ub string) int {
	if c := cmpNum(sa, sb); c != 0 {
		return c
	}
	if c := cmpNum(ua, ub); c != 0 {
		return c
	}
	return compareNatural(a, b)
}

// deliveryTime returns the leading decimal seconds of a Maildir name and the
// digits after 'M' in its second field, each as a digit string without
// leading zeros ("" if absent).
func deliveryTime(name string) (secs, usec string) {
	n := digitRun(name)
	secs = strings.TrimLeft(name[:n], "0")
	rest := name[n:]
	if rest == "" || rest[0] != '.' {
		return secs, ""
	}
	field := rest[1:]
	if i := strings.IndexByte(field, '.'); i >= 0 {
		field = field[:i]
	}
	if i := strings.IndexByte(field, 'M'); i >= 0 {
		m := field[i+1:]
		usec = strings.TrimLeft(m[:digitRun(m)], "0")
	}
	return secs, usec
}

// cmpNum compares two decimal digit strings without leading zeros.
func cmpNum(x, y string) int {
	if len(x) != len(y) {
		if len(x) < len(y) {
			return -1
		}
		return 1
	}
	return strings.Compare(x, y)
}

// compareNatural compares runs of digits numerically and other octets
// bytewise.
func compareNatural(a, b string) int {
	for a != "" && b != "" {
		if isDigit(a[0]) && isDigit(b[0]) {
			na, nb := digitRun(a), digitRun(b)
			if c := cmpNum(strings.TrimLeft(a[:na], "0"), strings.TrimLeft(b[:nb], "0")); c != 0 {
				return c
			}
			a, b = a[na:], b[nb:]
			continue
		}
		if a[0] != b[0] {
			if a[0] < b[0] {
				return -1
			}
			return 1
		}
		a, b = a[1:], b[1:]
	}
	switch {
	case a == "" && b == "":
		return 0
	case a == "":
		return -1
	}
	return 1
}

func isDigit(c byte) bool { return c >= '0' && c <= '9' }

func digitRun(s string) int {
	i := 0
	for i < len(s) && isDigit(s[i]) {
		i++
	}
	return i
}

// deliveries counts deliveries in this process: the Q<n> of unique names.
// It is process-wide on purpose, like the pid beside it, so that two Stores
// in one process never produce the same name in the same microsecond.
var deliveries atomic.Uint64

// uniqueName returns a new Maildir base name in the standard form
// "<secs>.M<usec>P<pid>Q<n>.<host>" (https://cr.yp.to/proto/maildir.html).
func uniqueName(now time.Time, host string) string {
	q := deliveries.Add(1)
	return fmt.Sprintf("%d.M%dP%dQ%d.%s", now.Unix(), now.Nanosecond()/1000, os.Getpid(), q, host)
}

// safeHost makes a host name usable inside a Maildir name: '/' and ':' are
// written as \057 and \072 as the Maildir specification asks, ',' as \054
// so that it cannot be taken for a size field, and anything outside
// 0x21-0x7E is dropped.
func safeHost(h string) string {
	var b strings.Builder
	for i := 0; i < len(h); i++ {
		switch c := h[i]; {
		case c == '/':
			b.WriteString(`\057`)
		case c == ':':
			b.WriteString(`\072`)
		case c == ',':
			b.WriteString(`\054`)
		case c == '\\':
			b.WriteString(`\134`)
		case c > 0x20 && c < 0x7f:
			b.WriteByte(c)
		}
	}
	if b.Len() == 0 {
		return "localhost"
	}
	return b.String()
}

// fileType is the type of a directory entry, as the directory says.
type fileType uint8

const (
	typeUnknown fileType = iota // not said, or a symbolic link: open it to know
	typeRegular
	typeDir
	typeSpecial // FIFO, socket, device
)
