package maildir

import (
	"context"
	"io"

	"github.com/postoffice-mail/postoffice/internal/store"
	"os"
	"time"

	"fmt"
	"github.com/postoffice-mail/postoffice/internal/uidlfmt"
	"path/filepath"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// TestDovecotDefaultUIDLFormat pins the UIDL Dovecot 2.3 serves for a
// message without a P field. Its default pop3_uidl_format is %08Xu%08Xv,
// and var_expand's X modifier is printf("%llx"): lowercase hex. The first
// case is the value a live Dovecot 2.3.19 printed for UID 1 of a mailbox
// with UIDVALIDITY 1796662115 (0x6b16e363).
func TestDovecotDefaultUIDLFormat(t *testing.T) {
	t.Parallel()
	cases := []struct {
		uid, validity uint32
		want          string
	}{
		{1, 1796662115, "000000016b16e363"}, // seen live from Dovecot 2.3.19
		{1, 1700000000, "000000016553f100"},
		{0xabcdef, 0xfedcba98, "00abcdeffedcba98"},
		{0xfffffffe, 1, "fffffffe00000001"}, // Dovecot's highest UID
	}
	for _, c := range cases {
		path := filepath.Join(t.TempDir(), "dovecot-uidlist")
		const name = "1700000001.M1P1.mx.example.org,S=10,W=12"
		writeFile(t, path, fmt.Sprintf("3 V%d N%d G0123456789abcdef0123456789abcdef\n%d :%s\n",
			c.validity, uint64(c.uid)+1, c.uid, name))
		l, err := readUIDList(path)
		if err != nil {
			t.Fatalf("readUIDList(uid %d, V%d): %v", c.uid, c.validity, err)
		}
		rec, ok := l.recs[name]
		if !ok {
			t.Fatalf("uid %d: record not found", c.uid)
		}
		if got := l.uidl(rec, name, nil); got != c.want {
			t.Errorf("uidl(uid %d, V%d) = %q, want %q", c.uid, c.validity, got, c.want)
		}
	}
}

// TestDovecotPFieldVerbatim: a P field (pop3_save_uidl, or a migration
// tool) is what Dovecot served for that message, octet for octet: case and
// punctuation are kept, and an empty P means the base file name. The O
// field is the POP3 order, not a UIDL, and changes no UIDL.
func TestDovecotPFieldVerbatim(t *testing.T) {
	t.Parallel()
	s := newStoreOpts(t, Options{})
	const user = "pfield@example.org"
	dir := mustPath(t, s, user)
	names := []string{
		"1700000001.M1P1.mx.example.org,S=8",
		"1700000002.M2P1.mx.example.org,S=8",
		"1700000003.M3P1.mx.example.org,S=8",
		"1700000004.M4P1.mx.example.org,S=8",
	}
	for _, n := range names {
		writeFile(t, filepath.Join(dir, "cur", n+":2,S"), "x: y\n\nz\n")
	}
	writeFile(t, filepath.Join(dir, "dovecot-uidlist"),
		"3 V1796662115 N5 G0123456789abcdef0123456789abcdef\n"+
			"1 PUIDL-Mixed.Case_0A1b2C3d:x O2 :"+names[0]+"\n"+
			"2 P :"+names[1]+"\n"+
			"3 O1 :"+names[2]+"\n"+
			"4 W9 PAbCdEf0123456789 :"+names[3]+"\n")
	m := openMD(t, s, user)
	defer m.Close()
	want := []string{
		"000000036b16e363",           // O1
		"UIDL-Mixed.Case_0A1b2C3d:x", // O2
		names[1],                     // empty P: the base name
		"AbCdEf0123456789",
	}
	if diff := cmp.Diff(want, uidlsOf(m)); diff != "" {
		t.Errorf("UIDLs (-want +got):\n%s", diff)
	}
}

// TestRecordedDovecotUIDLKept: a Maildir whose index already recorded a
// UIDL for a message keeps serving it even where dovecot-uidlist would now
// give another (postoffice before the lowercase fix recorded
// "000000016B16E363"). Its clients have seen the recorded UIDL last; a
// second change would make them download everything once more.
func TestRecordedDovecotUIDLKept(t *testing.T) {
	t.Parallel()
	s := newStoreOpts(t, Options{})
	const user = "recorded@example.org"
	dir := mustPath(t, s, user)
	names := []string{"1700000001.M1P1.mx.example.org", "1700000002.M2P1.mx.example.org"}
	for _, n := range names {
		writeFile(t, filepath.Join(dir, "cur", n+":2,S"), "x: y\n\nz\n")
	}
	writeFile(t, filepath.Join(dir, "dovecot-uidlist"),
		"3 V1796662115 N3 G0123456789abcdef0123456789abcdef\n1 :"+names[0]+"\n2 :"+names[1]+"\n")
	if err := s.writeIndex(dir, []indexEntry{{key: names[0], sub: "cur", info: ":2,S", uidl: "000000016B16E363", size: 10}}); err != nil {
		t.Fatal(err)
	}
	m := openMD(t, s, user)
	defer m.Close()
	want := []string{"000000016B16E363", "000000026b16e363"}
	if diff := cmp.Diff(want, uidlsOf(m)); diff != "" {
		t.Errorf("UIDLs (-want +got):\n%s", diff)
	}
}

// TestUIDLFormatNewMail: with uidl_format "%08Xu%08Xv" the messages of
// dovecot-uidlist keep Dovecot's UIDLs (P still wins) and mail that
// arrives later continues Dovecot's numbering under its UIDVALIDITY, so
// the listing never changes shape; the UIDs given are never given again,
// even when the index is lost.
func TestUIDLFormatNewMail(t *testing.T) {
	t.Parallel()
	s := newStoreOpts(t, Options{UIDLFormat: uidlfmt.MustParse("%08Xu%08Xv")})
	const user = "fmt@example.org"
	dir := mustPath(t, s, user)
	names := []string{"1700000001.M1P1.mx.example.org", "1700000002.M2P1.mx.example.org"}
	for _, n := range names {
		writeFile(t, filepath.Join(dir, "cur", n+":2,S"), "x: y\n\nz\n")
	}
	writeFile(t, filepath.Join(dir, "dovecot-uidlist"),
		"3 V1796662115 N7 G0123456789abcdef0123456789abcdef\n5 :"+names[0]+"\n6 Pkept :"+names[1]+"\n")
	m := openMD(t, s, user)
	m.Close()
	deliverN(t, s, user, 2)
	m = openMD(t, s, user)
	want := []string{"000000056b16e363", "kept", "000000076b16e363", "000000086b16e363"}
	if diff := cmp.Diff(want, uidlsOf(m)); diff != "" {
		t.Errorf("UIDLs (-want +got):\n%s", diff)
	}
	m.Close()
	if err := os.Remove(filepath.Join(dir, indexName)); err != nil {
		t.Fatal(err)
	}
	deliverN(t, s, user, 1)
	m = openMD(t, s, user)
	defer m.Close()
	got := uidlsOf(m)
	seen := map[string]bool{}
	for _, u := range got {
		if seen[u] {
			t.Errorf("UIDL %q given twice after the index was lost: %q", u, got)
		}
		seen[u] = true
	}
	if got[0] != want[0] || got[1] != want[1] || seen["000000076b16e363"] || seen["000000086b16e363"] {
		t.Errorf("after the index was lost: %q, want Dovecot's kept and no UID reused", got)
	}
}

// TestUIDLFormatNoUIDList: a Maildir without dovecot-uidlist gets a
// UIDVALIDITY of its own (the time) and UIDs from 1.
func TestUIDLFormatNoUIDList(t *testing.T) {
	t.Parallel()
	s := newStoreOpts(t, Options{UIDLFormat: uidlfmt.MustParse("%v.%u")})
	s.now = func() time.Time { return time.Unix(1700000000, 0) }
	const user = "fresh@example.org"
	deliverN(t, s, user, 2)
	m := openMD(t, s, user)
	defer m.Close()
	want := []string{"1700000000.1", "1700000000.2"}
	if diff := cmp.Diff(want, uidlsOf(m)); diff != "" {
		t.Errorf("UIDLs (-want +got):\n%s", diff)
	}
}

// TestUIDLFormatFilenameGUID: %f is the file name without the info part
// (MAIL_FETCH_STORAGE_ID), %g the G field of dovecot-uidlist, else %f.
func TestUIDLFormatFilenameGUID(t *testing.T) {
	t.Parallel()
	s := newStoreOpts(t, Options{UIDLFormat: uidlfmt.MustParse("%g")})
	const user = "guid@example.org"
	dir := mustPath(t, s, user)
	names := []string{"1700000001.M1P1.mx.example.org,S=8", "1700000002.M2P1.mx.example.org,S=8"}
	for _, n := range names {
		writeFile(t, filepath.Join(dir, "cur", n+":2,S"), "x: y\n\nz\n")
	}
	writeFile(t, filepath.Join(dir, "dovecot-uidlist"),
		"3 V1796662115 N3 G0123456789abcdef0123456789abcdef\n1 G3a8e6f0b5e6a5c65d0120000b6a5d1e1 :"+names[0]+"\n2 :"+names[1]+"\n")
	m := openMD(t, s, user)
	defer m.Close()
	want := []string{"3a8e6f0b5e6a5c65d0120000b6a5d1e1", names[1]}
	if diff := cmp.Diff(want, uidlsOf(m)); diff != "" {
		t.Errorf("UIDLs (-want +got):\n%s", diff)
	}
	if _, err := New(Options{Location: t.TempDir(), UIDLFormat: uidlfmt.MustParse("%m")}); err == nil {
		t.Error("New with %m (mbox only) succeeded")
	}
}

// TestCourierSizeList: messages listed in Courier's courierpop3dsizelist
// keep the UIDL Courier's pop3d printed for them, for each format version
// of the file (as imap/pop3dserver.C of courier-libs reads and prints
// them); messages it does not list get postoffice's own.
func TestCourierSizeList(t *testing.T) {
	t.Parallel()
	names := []string{"1700000001.M1P1.mx.example.org,S=8", "1700000002.M2P1.mx.example.org,S=8", "1700000003.M3P1.mx.example.org"}
	cases := []struct {
		name, file string
		want       []string
	}{
		{"v3", "/3 3 1700000000\n" + names[0] + ":2,S 8 1:1700000000:0\n" + names[1] + " 8 2:1700000000:1\n",
			[]string{"UID1-1700000000", "UID2-1700000000"}},
		{"v2", "/2 12 1600000000\n" + names[0] + ":2,S 8 10:1600000000\n" + names[1] + " 8 11:1600000000\n",
			[]string{"UID10-1600000000", "UID11-1600000000"}},
		{"v1", "/1 3\n" + names[0] + " 8 1\n" + names[1] + ":2, 8 2\n",
			[]string{"UID1", "UID2"}},
		{"v0", names[0] + ":2,S 8\n" + names[1] + " 8\n",
			[]string{"1700000001.M1P1.mx.example.org,S=8", "1700000002.M2P1.mx.example.org,S=8"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			s := newStoreOpts(t, Options{})
			const user = "courier@example.org"
			dir := mustPath(t, s, user)
			for _, n := range names {
				writeFile(t, filepath.Join(dir, "cur", n+":2,S"), "x: y\n\nz\n")
			}
			writeFile(t, filepath.Join(dir, "courierpop3dsizelist"), c.file)
			m := openMD(t, s, user)
			defer m.Close()
			got := uidlsOf(m)
			want := append(c.want, deriveUIDL(names[2]))
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("UIDLs (-want +got):\n%s", diff)
			}
		})
	}
}

func TestCourierNameUIDL(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]string{
		"1700000001.M1P1.host": "1700000001.M1P1.host",
		"a+b\"c'd e":           "a+2Bb+22c+27d+20e",
		"x\x01\x7f\xff":        "x+01+7F+FF",
	} {
		if got := courierNameUIDL(in); got != want {
			t.Errorf("courierNameUIDL(%q) = %q, want %q", in, got, want)
		}
	}
}

// TestSetUIDLs: UIDLs set by a migration are served from then on, across
// a rescan; an invalid or duplicate one changes nothing.
func TestSetUIDLs(t *testing.T) {
	t.Parallel()
	s := newStoreOpts(t, Options{})
	const user = "setuidl@example.org"
	deliverN(t, s, user, 3)
	set := func(m map[int]string) (int, error) {
		return s.SetUIDLs(context.Background(), user, func(i int, _ store.Message, open func() (io.ReadCloser, error)) (string, bool, error) {
			rc, err := open()
			if err != nil {
				return "", false, err
			}
			rc.Close()
			u, ok := m[i]
			return u, ok, nil
		})
	}
	if n, err := set(map[int]string{0: "old-1", 2: "old-3"}); err != nil || n != 2 {
		t.Fatalf("SetUIDLs = %d, %v", n, err)
	}
	if _, err := set(map[int]string{1: "old-1"}); err == nil {
		t.Error("SetUIDLs with a duplicate UIDL succeeded")
	}
	if _, err := set(map[int]string{1: "has space"}); err == nil {
		t.Error("SetUIDLs with an invalid UIDL succeeded")
	}
	deliverN(t, s, user, 1) // forces a rescan
	m := openMD(t, s, user)
	defer m.Close()
	got := uidlsOf(m)
	if len(got) != 4 || got[0] != "old-1" || got[2] != "old-3" || got[1] == "old-1" {
		t.Errorf("UIDLs after SetUIDLs and a delivery: %q", got)
	}
}
