package pop4

import (
	"bufio"
	"context"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/postoffice-mail/postoffice/internal/auth"
	"github.com/postoffice-mail/postoffice/internal/backend"
	"github.com/postoffice-mail/postoffice/internal/store/maildir"
	"github.com/postoffice-mail/postoffice/pop3server"
)

type users struct{}

func (users) Authenticate(ctx context.Context, name, pass string) (auth.User, error) {
	if name == "ann" && pass == "secret" {
		return auth.User{Name: "ann"}, nil
	}
	return auth.User{}, auth.ErrFailed
}

func (users) Lookup(ctx context.Context, name string) (auth.User, error) {
	return auth.User{}, auth.ErrUnknownUser
}

const multi = "Subject: m\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=b1\r\n\r\n" +
	"preamble\r\n--b1\r\nContent-Type: text/plain\r\n\r\nhello\r\n" +
	"--b1\r\nContent-Type: multipart/alternative; boundary=b2\r\n\r\n" +
	"--b2\r\nContent-Type: text/html\r\n\r\n<p>hi</p>\r\n--b2--\r\n--b1--\r\n"

func serve(t *testing.T, pop4 bool) (*maildir.Store, func(script ...string)) {
	t.Helper()
	st, err := maildir.New(maildir.Options{Location: t.TempDir() + "/%u/Maildir", NoSync: true, Hostname: "test"})
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range []string{"Subject: plain\r\n\r\n.body\r\n", multi} {
		if err := st.Deliver(context.Background(), "ann", strings.NewReader(m)); err != nil {
			t.Fatal(err)
		}
	}
	b, err := backend.New(backend.Options{Users: users{}, Store: st})
	if err != nil {
		t.Fatal(err)
	}
	opts := pop3server.Options{Backend: b, AuthFailDelay: -1, Implementation: "test"}
	if pop4 {
		x, err := New(Options{Folders: st})
		if err != nil {
			t.Fatal(err)
		}
		opts.Extension, opts.Greeting = x, Greeting
	}
	srv, err := pop3server.New(opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Close() })
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve(l)
	return st, func(script ...string) {
		t.Helper()
		nc, err := net.Dial("tcp", l.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		defer nc.Close()
		nc.SetDeadline(time.Now().Add(30 * time.Second)) // a safety net, not an assertion
		br := bufio.NewReader(nc)
		greet, _ := br.ReadString('\n')
		if pop4 != strings.Contains(greet, "POP4 rev") {
			t.Errorf("greeting %q, POP4 on: %v", greet, pop4)
		}
		for i := 0; i < len(script); i += 2 {
			io.WriteString(nc, script[i]+"\r\n")
			want := script[i+1]
			got := make([]byte, len(want))
			if _, err := io.ReadFull(br, got); err != nil || string(got) != want {
				t.Fatalf("C: %s\nS: got %q, %v\nwant %q", script[i], got, err, want)
			}
		}
	}
}

func TestPOP4Transcript(t *testing.T) {
	t.Parallel()
	st, run := serve(t, true)
	run(
		"CAPA", "+OK Capability list follows\r\nTOP\r\nUIDL\r\nUSER\r\nRESP-CODES\r\nAUTH-RESP-CODE\r\nPIPELINING\r\nUTF8 USER\r\nLANG\r\n"+Capability+"\r\nIMPLEMENTATION test\r\n.\r\n",
		"LFLD", "-ERR Unknown command: send CAPA for the commands this server supports\r\n", // TRANSACTION only
		"USER ann", "+OK\r\n",
		"PASS secret", "+OK Logged in, 2 messages\r\n",
		"LFLD", "+OK Folder list follows\r\nINBOX\r\n.\r\n",
		"CFLD Archive", "+OK Folder created\r\n",
		"CFLD Archive", "-ERR Folder exists: choose another name, or send SFLD to select it\r\n",
		"CFLD a.b", "-ERR Invalid folder name: use printable ASCII without ., \\ or %, with / between levels; INBOX cannot be created, renamed or deleted\r\n",
		"CFLD Lists", "+OK Folder created\r\n",
		"CFLD", "-ERR CFLD needs a folder name: send CFLD followed by the new folder's name\r\n",
		"MOVF Lists Archive", "+OK Folder renamed\r\n",
		"RENF Archive Old", "+OK Folder renamed\r\n",
		"RENF Nope X", "-ERR No such folder: send LFLD for the folder list\r\n",
		"RENF Old", "-ERR RENF needs a folder name and a new name: send RENF name newname\r\n",
		"LFLD", "+OK Folder list follows\r\nINBOX\r\nOld\r\nOld/Lists\r\n.\r\n",
		"PART 1 1", "+OK Part follows\r\n\r\n..body\r\n.\r\n",
		"PART 2 1", "+OK Part follows\r\nContent-Type: text/plain\r\n\r\nhello\r\n.\r\n",
		"PART 2 2.1", "+OK Part follows\r\nContent-Type: text/html\r\n\r\n<p>hi</p>\r\n.\r\n",
		"PART 2 3", "-ERR No such part in this message: use 1 for a message that is not multipart, or check its MIME structure with RETR\r\n",
		"PART 1 2", "-ERR No such part in this message: use 1 for a message that is not multipart, or check its MIME structure with RETR\r\n",
		"PART 2 x", "-ERR Invalid part number: use numbers from 1 to 9999 joined by dots, such as 2.1\r\n",
		"PART 9 1", "-ERR No such message: use a number from LIST\r\n",
		"FLAG 1", "+OK\r\n",
		"FLAG 1 +SF", "+OK FS\r\n",
		"FLAG 1 -F", "+OK S\r\n",
		"FLAG 1 =R", "+OK R\r\n",
		"FLAG 1 X", "-ERR Invalid flags: use letters among DFPRST after an optional +, - or =, or - alone to clear them\r\n",
		"FLAG 1 -", "+OK\r\n",
		"COPY 1 Old", "+OK Messages copied\r\n",
		"COPY 1 Nope", "-ERR No such folder: send LFLD for the folder list\r\n",
		"COPY x Old", "-ERR Invalid message number: use a number from LIST\r\n",
		"MOVE 2 Old/Lists", "+OK Messages moved; removed from this folder at QUIT\r\n",
		"MOVE 1 INBOX", "-ERR Cannot move messages into the folder they are in: choose another folder\r\n",
		"RETR 2", "-ERR Message already deleted in this session: send RSET to undo the deletions\r\n",
		"SFLD Old", "-ERR Messages marked deleted in this folder: QUIT to remove them or RSET first\r\n",
		"DFLD INBOX", "-ERR Folder is selected: send SFLD with another folder first\r\n",
		"QUIT", "+OK Logging out, messages deleted\r\n",
	)
	run(
		"USER ann", "+OK\r\n",
		"PASS secret", "+OK Logged in, 1 messages\r\n",
		"SFLD Old/Lists", "+OK Folder selected, 1 messages\r\n",
		"STAT", "+OK 1 "+itoa(len(multi))+"\r\n",
		"PART 1 1", "+OK Part follows\r\nContent-Type: text/plain\r\n\r\nhello\r\n.\r\n",
		"DFLD Old/Lists", "-ERR Folder is selected: send SFLD with another folder first\r\n",
		"RENF Old New", "-ERR Folder is selected: send SFLD with another folder first\r\n",
		"SFLD Old", "+OK Folder selected, 1 messages\r\n",
		"DFLD Old/Lists", "+OK Folder deleted\r\n",
		"DFLD Old/Lists", "-ERR No such folder: send LFLD for the folder list\r\n",
		"DELE 1", "+OK Message deleted\r\n",
		"SFLD inbox", "-ERR Messages marked deleted in this folder: QUIT to remove them or RSET first\r\n",
		"RSET", "+OK\r\n",
		"SFLD inbox", "+OK Folder selected, 1 messages\r\n",
		"QUIT", "+OK Logging out, messages deleted\r\n",
	)
	names, err := st.Folders(context.Background(), "ann")
	if err != nil || strings.Join(names, ",") != "INBOX,Old" {
		t.Errorf("Folders = %q, %v", names, err)
	}
}

// TestPOP4Off: without the extension none of it is reachable.
func TestPOP4Off(t *testing.T) {
	t.Parallel()
	_, run := serve(t, false)
	run(
		"CAPA", "+OK Capability list follows\r\nTOP\r\nUIDL\r\nUSER\r\nRESP-CODES\r\nAUTH-RESP-CODE\r\nPIPELINING\r\nUTF8 USER\r\nLANG\r\nIMPLEMENTATION test\r\n.\r\n",
		"USER ann", "+OK\r\n",
		"PASS secret", "+OK Logged in, 2 messages\r\n",
		"LFLD", "-ERR Unknown command: send CAPA for the commands this server supports\r\n",
		"SFLD Old", "-ERR Unknown command: send CAPA for the commands this server supports\r\n",
		"CFLD X", "-ERR Unknown command: send CAPA for the commands this server supports\r\n",
		"PART 1 1", "-ERR Unknown command: send CAPA for the commands this server supports\r\n",
		"FLAG 1", "-ERR Unknown command: send CAPA for the commands this server supports\r\n",
		"MOVE 1 X", "-ERR Unknown command: send CAPA for the commands this server supports\r\n",
		"QUIT", "+OK Logging out, messages deleted\r\n",
	)
}
