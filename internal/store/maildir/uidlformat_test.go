package maildir

import (
	"fmt"
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
		if got := l.uidl(rec, name); got != c.want {
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
