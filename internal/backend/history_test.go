package backend

import (
	"bytes"
	"context"
	"crypto/md5"
	"crypto/tls"
	"encoding/hex"
	"net"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/postoffice-mail/postoffice/internal/ledger"
	"github.com/postoffice-mail/postoffice/internal/sasl"
	"github.com/postoffice-mail/postoffice/internal/store/maildir"
	"github.com/postoffice-mail/postoffice/pop3server"
)

// acceptAll is an RPOP policy that allows every client.
type acceptAll struct{}

func (acceptAll) Allow(net.Addr, string, string) error { return nil }

// The retrieval history records, for every login method, what POP3 lets
// the server know of the client: the login method (USER, APOP, the SASL
// mechanism, RPOP), the TLS version and the device; nothing pretends to
// name the client program.
func TestHistoryLoginMethod(t *testing.T) {
	t.Parallel()
	st, err := maildir.New(maildir.Options{Location: t.TempDir() + "/%u/Maildir", NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	if err := st.Deliver(context.Background(), "alice", bytes.NewBufferString("Subject: x\r\n\r\nhi\r\n")); err != nil {
		t.Fatal(err)
	}
	db := creds{"alice": "{PLAIN}tanstaaf"}
	mechs, err := sasl.New(sasl.Options{Users: db, Enabled: []string{"PLAIN"}, Secret: []byte("0123456789abcdef")})
	if err != nil {
		t.Fatal(err)
	}
	l := ledger.New(ledger.Options{Devices: true})
	b, err := New(Options{Users: db, Store: st, Ledger: l, SASL: mechs, APOP: true, RPOP: acceptAll{}})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	remote := &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 40000}
	conn := func(tlsOn bool) *pop3server.Conn {
		c := &pop3server.Conn{RemoteAddr: remote}
		if tlsOn {
			c.TLS = &tls.ConnectionState{Version: tls.VersionTLS13}
		}
		return c
	}
	retrieve := func(what string, mb pop3server.Mailbox, err error) {
		t.Helper()
		if err != nil {
			t.Fatalf("%s: %v", what, err)
		}
		mb.(pop3server.RetrievalObserver).Retrieved(0)
		mb.Close()
	}

	s, _ := b.NewSession(ctx, conn(true))
	mb, err := s.Login(ctx, "alice#laptop", "tanstaaf")
	retrieve("USER/PASS", mb, err)

	s, _ = b.NewSession(ctx, conn(false))
	sum := md5.Sum([]byte("<1.2@example.org>tanstaaf"))
	mb, err = s.(pop3server.APOPSession).APOP(ctx, "alice", "<1.2@example.org>", hex.EncodeToString(sum[:]))
	retrieve("APOP", mb, err)

	s, _ = b.NewSession(ctx, conn(true))
	ex, err := s.(pop3server.SASLSession).StartSASL(ctx, "plain")
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := ex.Next(ctx, []byte("\x00alice\x00tanstaaf")); err != nil {
		t.Fatal(err)
	}
	mb, err = ex.Login(ctx)
	retrieve("AUTH PLAIN", mb, err)

	s, _ = b.NewSession(ctx, conn(false))
	mb, err = s.(pop3server.RPOPSession).RPOP(ctx, "alice", "alice")
	retrieve("RPOP", mb, err)

	evs, err := l.History(ctx, st, "alice", time.Time{})
	if err != nil {
		t.Fatal(err)
	}
	type row struct{ Device, Remote, TLS, Mech string }
	var got []row
	for _, e := range evs {
		got = append(got, row{e.Device, e.Remote, e.TLS, e.Mech})
	}
	want := []row{
		{Device: "laptop", Remote: "127.0.0.1", TLS: "TLS 1.3", Mech: "USER"},
		{Remote: "127.0.0.1", Mech: "APOP"},
		{Remote: "127.0.0.1", TLS: "TLS 1.3", Mech: "PLAIN"},
		{Remote: "127.0.0.1", Mech: "RPOP"},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("history (-want +got):\n%s", diff)
	}
}
