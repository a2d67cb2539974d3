package maildir

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/postoffice-mail/postoffice/internal/testutil/dovecot"
	"github.com/postoffice-mail/postoffice/pop3"
)

// TestDovecotUIDLsLive serves one Maildir with a real Dovecot 2.3 (default
// pop3_uidl_format) and then with this store, and compares the UIDL
// listings line for line: message numbers, order and UIDLs. The
// dovecot-uidlist is written beforehand with a fixed UIDVALIDITY, P fields
// (verbatim, mixed case; empty meaning the base name) and O fields (POP3
// order), so Dovecot's own listing pins the format: UID 1 of UIDVALIDITY
// 1796662115 is 000000016b16e363, lowercase.
func TestDovecotUIDLsLive(t *testing.T) {
	t.Parallel()
	const user = "live"
	d := dovecot.Start(t, user)
	msgs := make([]string, 6)
	for i := range msgs {
		msgs[i] = fmt.Sprintf("Subject: message %d\n\nbody %d\n", i+1, i+1)
	}
	d.Deliver(t, user, msgs) // new/1700000000.M0P1.postoffice-test, ...
	name := func(i int) string { return fmt.Sprintf("%d.M%dP1.postoffice-test", 1700000000+i, i) }
	md := d.Maildir(user)
	uidlist := "3 V1796662115 N7 G0123456789abcdef0123456789abcdef\n" +
		"1 :" + name(0) + "\n" +
		"2 PUIDL-Mixed.Case_0A1b2C3d:x :" + name(1) + "\n" +
		"3 P :" + name(2) + "\n" +
		"4 O2 :" + name(3) + "\n" +
		"5 PAbCdEf O1 :" + name(4) + "\n" +
		"6 :" + name(5) + "\n"
	if err := os.WriteFile(filepath.Join(md, "dovecot-uidlist"), []byte(uidlist), 0o600); err != nil {
		t.Fatal(err)
	}
	d.Chown(t, user)

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c, err := pop3.Dial(ctx, d.Addr, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.Login(ctx, user, dovecot.Password); err != nil {
		t.Fatal(err)
	}
	uids, err := c.UIDL(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Quit(ctx); err != nil {
		t.Fatal(err)
	}
	var fromDovecot []string
	for _, u := range uids {
		fromDovecot = append(fromDovecot, fmt.Sprintf("%d %s", u.Num, u.UID))
	}
	want := []string{
		"1 AbCdEf",           // O1, P
		"2 000000046b16e363", // O2
		"3 000000016b16e363", // the value Dovecot 2.3.19 printed live
		"4 UIDL-Mixed.Case_0A1b2C3d:x",
		"5 " + name(2), // empty P
		"6 000000066b16e363",
	}
	if diff := cmp.Diff(want, fromDovecot); diff != "" {
		t.Fatalf("Dovecot's UIDL listing changed (-want +got):\n%s", diff)
	}
	d.Stop(t)

	s := newStoreOpts(t, Options{Location: filepath.Join(d.Dir, "mail", "%u", "Maildir"), NoSync: true})
	m := openMD(t, s, user)
	defer m.Close()
	var ours []string
	for i, u := range uidlsOf(m) {
		ours = append(ours, fmt.Sprintf("%d %s", i+1, u))
	}
	if diff := cmp.Diff(fromDovecot, ours); diff != "" {
		t.Errorf("UIDL listing: Dovecot (-) and this store (+) differ:\n%s", diff)
	}
}
