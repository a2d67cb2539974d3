package maildir

import (
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// Seeds for these targets also live in testdata/fuzz/<Target>/: names as
// Dovecot, Courier, Postfix and postoffice write them, and hostile ones.
var nameSeeds = []string{
	"1700000000.M123456P4242Q1.mx.example.org",
	"1700000000.M123456P4242.mx.example.org,S=1234,W=1260:2,S",
	"1700000000.V803I2a6M5P9.host:2,RS",
	"1700000000.123_4.host,S=00012,W=:2,",
	",S=99999999999999999999999,W=-1",
	"..:2,S",
	"x,S=5,,W=7:2,S:2,T",
	"host\\072.name,S=1",
	"",
}

// FuzzFileName checks the Maildir file-name helpers: the key/info split,
// the S= and W= size fields, delivery-time extraction and derived UIDLs.
func FuzzFileName(f *testing.F) {
	for _, s := range nameSeeds {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, name string) {
		key, info := splitName([]byte(name))
		if string(key)+string(info) != name {
			t.Fatalf("splitName(%q) = %q + %q, not the name", name, key, info)
		}
		if baseName(name) != string(key) || strings.IndexByte(string(key), infoSep) >= 0 {
			t.Fatalf("baseName(%q) = %q, splitName key %q", name, baseName(name), key)
		}
		if len(info) > 0 && info[0] != infoSep {
			t.Fatalf("splitName(%q) info %q does not start with %q", name, info, infoSep)
		}
		if usableName([]byte(name)) && (name == "" || name[0] == '.' || strings.ContainsAny(name, "\r\n")) {
			t.Fatalf("usableName(%q) = true", name)
		}
		for _, c := range []byte{'S', 'W'} {
			n, ok := sizeField(string(key), c)
			if ok && (n < 0 || !strings.Contains(string(key), ","+string(c)+"=")) {
				t.Fatalf("sizeField(%q, %c) = %d, true", key, c, n)
			}
			if !ok && n != 0 {
				t.Fatalf("sizeField(%q, %c) = %d, false", key, c, n)
			}
		}
		secs, usec := deliveryTime(name)
		for _, d := range []string{secs, usec} {
			if strings.HasPrefix(d, "0") || strings.Trim(d, "0123456789") != "" {
				t.Fatalf("deliveryTime(%q) = %q, %q: not digits without leading zeros", name, secs, usec)
			}
		}
		if c := compareNames(name, name); c != 0 {
			t.Fatalf("compareNames(%q, itself) = %d", name, c)
		}
		if u := deriveUIDL(string(key)); !validUIDL(u) || len(u) != 20 {
			t.Fatalf("deriveUIDL(%q) = %q: not a valid 20-character UIDL", key, u)
		}
	})
}

// FuzzCompareNames checks that compareNames is a consistent order (sorting
// depends on it): antisymmetric and transitive.
func FuzzCompareNames(f *testing.F) {
	f.Add("1700000000.M5P1.h", "1700000000.M40P1.h", "1700000001.M1P1.h")
	f.Add("a01", "a1", "a001b")
	f.Add("9.M9", "10.M1", "10")
	f.Fuzz(func(t *testing.T, a, b, c string) {
		ab, ba := compareNames(a, b), compareNames(b, a)
		if ab != -ba || ab < -1 || ab > 1 {
			t.Fatalf("compareNames(%q, %q) = %d but reversed %d", a, b, ab, ba)
		}
		bc, ac := compareNames(b, c), compareNames(a, c)
		if ab <= 0 && bc <= 0 && ac > 0 {
			t.Fatalf("not transitive: %q <= %q <= %q but compareNames(a, c) = %d", a, b, c, ac)
		}
		if ab == 0 && bc == 0 && ac != 0 {
			t.Fatalf("equality not transitive: %q, %q, %q", a, b, c)
		}
	})
}

// FuzzUniqueName checks that any host name gives a usable new file name
// without size fields or info part.
func FuzzUniqueName(f *testing.F) {
	for _, h := range []string{"mx.example.org", "a/b:c,d\\e", "", "\x00\xff", "host,S=12"} {
		f.Add(h, int64(1700000000123456789))
	}
	f.Fuzz(func(t *testing.T, host string, nanos int64) {
		h := safeHost(host)
		if h == "" || strings.ContainsAny(h, "/:,") || strings.IndexFunc(h, func(r rune) bool { return r <= 0x20 || r >= 0x7f }) >= 0 {
			t.Fatalf("safeHost(%q) = %q", host, h)
		}
		now := time.Unix(0, nanos)
		name := uniqueName(now, h)
		if !usableName([]byte(name)) || baseName(name) != name {
			t.Fatalf("uniqueName(%q) = %q: not a usable key", h, name)
		}
		if _, ok := sizeField(name, 'S'); ok {
			t.Fatalf("uniqueName(%q) = %q has a size field", h, name)
		}
		if _, ok := sizeField(name, 'W'); ok {
			t.Fatalf("uniqueName(%q) = %q has a size field", h, name)
		}
	})
}

// FuzzUIDListLine checks the dovecot-uidlist record parsers.
func FuzzUIDListLine(f *testing.F) {
	for _, s := range []string{
		"1 1700000000.M1P2.host",
		"6 :1700000006.M10P100.mx.example.org,S=1,W=1",
		"7 P W120 O3 :1700000007.M1P1.host",
		"8 Pabc W-5 Ox :name",
		"0 :zero",
		"9 :../../etc/passwd",
		"4294967296 :big",
		" :",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, line string) {
		for v, parse := range []func(string) (uidlistRec, string, bool){parseUIDListV1, parseUIDListV3} {
			rec, name, ok := parse(line)
			if !ok {
				continue
			}
			if rec.uid == 0 || name == "" || rec.vsize < -1 {
				t.Fatalf("parser %d: %q = %+v, %q", v, line, rec, name)
			}
			if v == 1 && strings.ContainsRune(name, '/') {
				t.Fatalf("parseUIDListV3(%q) accepted a name with '/': %q", line, name)
			}
		}
	})
}

// FuzzUserPath checks that no accepted login name can climb out of the
// directory a location template puts it in.
func FuzzUserPath(f *testing.F) {
	for _, s := range []string{"alice", "alice@example.org", "alice+example.org", "../x", "a@..", "a@b@c",
		"..@example.org", "a/b", "a\x00b", "a@.", "a+b@c", "\xff", "a@b/../../etc"} {
		f.Add(s)
	}
	tmpls := []string{"maildir:/var/vmail/%d/%n/Maildir", "/var/vmail/%u", "/srv/%{domain}/%{username}:LAYOUT=fs"}
	var locs []pathTemplate
	for _, s := range tmpls {
		l, err := parseLocation(s)
		if err != nil {
			f.Fatal(err)
		}
		locs = append(locs, l)
	}
	f.Fuzz(func(t *testing.T, u string) {
		n, err := parseUser(u)
		if err != nil {
			return
		}
		for i, l := range locs {
			p, err := l.expand(n, "/home/x")
			if err != nil {
				continue
			}
			base := map[int]string{0: "/var/vmail/", 1: "/var/vmail/", 2: "/srv/"}[i]
			if !strings.HasPrefix(p, base) || filepath.Clean(p) != p {
				t.Fatalf("user %q with %q gives %q, outside %s", u, tmpls[i], p, base)
			}
			for _, el := range strings.Split(p, "/") {
				if el == ".." || el == "." {
					t.Fatalf("user %q with %q gives %q", u, tmpls[i], p)
				}
			}
		}
	})
}

// FuzzIndexLine checks the index line parser against a plain reading of
// the format with strings.Cut (index.go): the same verdict, the same
// fields, and the line's length up to its first newline.
func FuzzIndexLine(f *testing.F) {
	for _, s := range []string{
		"eJ6rv1ZRSxZA3fd-feMq 2150 new 1795780175.V801I10000M29617.bench.example\n",
		"L3vn7Vpm8PatmEk3kKSC 2150 cur 1795780183.M29617P4000.bench.example,S=2111,W=2150:2,S\nnext\n",
		"0000000100000001 0 - name with spaces\n",
		"~! 1099511627776 x\n",
		"u 123456789012345678 new k\n",
		"u 1234567890123456789 new k\n",
		"u 2150 cur+ 1795780183.M29617P4000.bench.example,S=2150,W=2150:2,S\n", "u 1 -+ k\n", "u 1 new++ k\n", "u 1 +new k\n",
		"u 100 cur+0,17,99 k\n", "u 100 cur+17,17 k\n", "u 100 new+100 k\n", "u 9 new+1,,2 k\n",
		"u  new k\n", " 1 new k\n", "u 1 old k\n", "u 1 new :2,S\n", "u 1 new k", "u\x7f 1 new k\n",
	} {
		f.Add(s, false)
		f.Add(s, true)
	}
	f.Fuzz(func(t *testing.T, s string, v1 bool) {
		uidl, size, sub, wire, _, name, n, ok := indexLine(s, v1)
		// The reference: the line up to its newline, split at spaces.
		wok := false
		var wuidl, wsub, wname string
		var wsize int64
		var wwire bool
		if line, _, found := strings.Cut(s, "\n"); found {
			u, rest, _ := strings.Cut(line, " ")
			sz, rest, found := strings.Cut(rest, " ")
			var sizeOK bool
			wsize, sizeOK = atoi64(sz)
			wok = found && validUIDL(u) && sizeOK
			wuidl, wname = u, rest
			if !v1 {
				w, rest, found := strings.Cut(rest, " ")
				if k := strings.IndexByte(w, '+'); k > 0 {
					wwire = true
					if !validStuff(w[k+1:], wsize) {
						wok = false
					}
					w = w[:k]
				}
				switch w {
				case "new", "cur":
					wsub = w
				case "-":
				default:
					wok = false
				}
				wok = wok && found
				wname = rest
			}
			if baseName(wname) == "" || v1 && strings.Contains(wname, ":") {
				wok = false
			}
			if wok && n != len(line)+1 {
				t.Fatalf("indexLine(%q, %v) length %d, want %d", s, v1, n, len(line)+1)
			}
		}
		if ok != wok {
			t.Fatalf("indexLine(%q, %v) ok = %v, want %v", s, v1, ok, wok)
		}
		if ok && (uidl != wuidl || size != wsize || sub != wsub || wire != wwire || name != wname) {
			t.Fatalf("indexLine(%q, %v) = %q %d %q %v %q, want %q %d %q %v %q", s, v1, uidl, size, sub, wire, name, wuidl, wsize, wsub, wwire, wname)
		}
	})
}
