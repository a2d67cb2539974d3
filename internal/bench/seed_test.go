package bench

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/postoffice-mail/postoffice/internal/store/maildir"
)

// A seed stored with CRLF line ends and one stored with LF, from the same
// seed value, hold the same messages: the CRLF files are the LF files with
// each LF made CRLF, their names' S= equals W=, and the responder (which
// reads them with LoadMaildir) and the Maildir store send and list them
// alike.
func TestSeedCRLFSameWire(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	lfDir, crlfDir := filepath.Join(dir, "lf"), filepath.Join(dir, "crlf")
	for _, d := range []struct {
		dir  string
		crlf float64
	}{{lfDir, 0}, {crlfDir, 1}} {
		if _, err := Seed(SeedOptions{Dir: d.dir, Users: 2, Messages: 40, WithSizes: true, CRLF: d.crlf, Seed: 11}); err != nil {
			t.Fatal(err)
		}
	}
	sizes := regexp.MustCompile(`,S=(\d+),W=(\d+)$`)
	for _, user := range []string{"user00001", "user00002"} {
		lfNames, crlfNames := seededNames(t, lfDir, user), seededNames(t, crlfDir, user)
		if len(lfNames) != 40 || len(crlfNames) != 40 {
			t.Fatalf("%s: %d LF and %d CRLF files, want 40 each", user, len(lfNames), len(crlfNames))
		}
		for i := range lfNames {
			lf, err := os.ReadFile(lfNames[i])
			if err != nil {
				t.Fatal(err)
			}
			crlf, err := os.ReadFile(crlfNames[i])
			if err != nil {
				t.Fatal(err)
			}
			if bytes.IndexByte(lf, '\r') >= 0 {
				t.Errorf("%s: LF message %d holds a CR", user, i)
			}
			if want := bytes.ReplaceAll(lf, []byte("\n"), []byte("\r\n")); !bytes.Equal(crlf, want) {
				t.Errorf("%s: CRLF message %d (%d octets) is not LF message %d with CRLF line ends (%d octets)", user, i, len(crlf), i, len(want))
			}
			ls, cs := sizes.FindStringSubmatch(lfNames[i]), sizes.FindStringSubmatch(crlfNames[i])
			if ls == nil || cs == nil {
				t.Fatalf("%s: names without S= and W=: %q, %q", user, lfNames[i], crlfNames[i])
			}
			if cs[1] != cs[2] || cs[1] != strconv.Itoa(len(crlf)) {
				t.Errorf("%s: CRLF message %d of %d octets named %q, want S=W=%d", user, i, len(crlf), filepath.Base(crlfNames[i]), len(crlf))
			}
			if ls[2] != cs[2] || ls[1] != strconv.Itoa(len(lf)) {
				t.Errorf("%s: LF message %d named %q, CRLF %q: want S=%d and the same W=", user, i, filepath.Base(lfNames[i]), filepath.Base(crlfNames[i]), len(lf))
			}
		}
	}

	// On the wire: the responder over each seed, every reply of a session
	// that lists and retrieves everything.
	lfWire, crlfWire := map[string][]string{}, map[string][]string{}
	for _, s := range []struct {
		root string
		out  map[string][]string
	}{{lfDir, lfWire}, {crlfDir, crlfWire}} {
		addr := startUsersResponder(t, filepath.Join(s.root, "mail"))
		for _, user := range []string{"user00001", "user00002"} {
			cmds := []string{"USER " + user, "PASS x", "STAT", "LIST", "UIDL"}
			for i := 1; i <= 40; i++ {
				cmds = append(cmds, fmt.Sprintf("RETR %d", i), fmt.Sprintf("TOP %d 0", i))
			}
			s.out[user] = rawSession(t, addr, append(cmds, "QUIT"))
		}
	}
	if diff := cmp.Diff(lfWire, crlfWire); diff != "" {
		t.Errorf("the responder sends the LF and the CRLF seed differently (-LF +CRLF):\n%.2000s", diff)
	}
	if r := lfWire["user00001"][3]; !strings.HasPrefix(r, "+OK 40 ") {
		t.Errorf("STAT of the LF seed = %q, want 40 messages (the responder did not read the seed)", r)
	}

	// The Maildir store lists the same sizes for both.
	var listed [2][]int64
	for k, root := range []string{lfDir, crlfDir} {
		st, err := maildir.New(maildir.Options{Location: root + "/mail/%u/Maildir", NoSync: true})
		if err != nil {
			t.Fatal(err)
		}
		md, err := st.Open(context.Background(), "user00001")
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range md.Messages() {
			listed[k] = append(listed[k], m.Size)
		}
		md.Close()
	}
	slices.Sort(listed[0])
	slices.Sort(listed[1])
	if diff := cmp.Diff(listed[0], listed[1]); diff != "" {
		t.Errorf("the Maildir store lists the LF and the CRLF seed with different sizes (-LF +CRLF):\n%s", diff)
	}
}

// seededNames returns the paths of user's seeded messages in name order.
func seededNames(t *testing.T, root, user string) []string {
	t.Helper()
	dir := filepath.Join(root, "mail", user, "Maildir", "new")
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range ents {
		names = append(names, filepath.Join(dir, e.Name()))
	}
	slices.Sort(names)
	return names
}

// startUsersResponder serves each user of root (<user>/Maildir) its own
// messages, as compare.sh runs it, until the test ends.
func startUsersResponder(t *testing.T, root string) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	r := NewResponder(nil, nil)
	r.ServeUsers(root)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- r.Serve(ctx, l) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("responder: %v", err)
		}
	})
	return l.Addr().String()
}

// rawSession sends cmds one at a time and returns each whole reply as sent
// (multi-line ones with their terminating line), the greeting first.
func rawSession(t *testing.T, addr string, cmds []string) []string {
	t.Helper()
	nc, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	nc.SetDeadline(time.Now().Add(30 * time.Second))
	br := bufio.NewReader(nc)
	greet, err := br.ReadString('\n')
	if err != nil {
		t.Fatal(err)
	}
	out := []string{greet}
	for _, c := range cmds {
		if _, err := fmt.Fprintf(nc, "%s\r\n", c); err != nil {
			t.Fatal(err)
		}
		out = append(out, readReply(br, c))
	}
	return out
}

// The seed directory is searchable by others whenever the passwd-file in
// it is readable by them (both as the umask allows), with or without a
// bigbox, so that a server reading the passwd-file as another user
// (Dovecot's auth process) reaches it; the Maildirs stay private.
func TestSeedDirReachable(t *testing.T) {
	t.Parallel()
	for _, bigbox := range []int{0, 5} {
		d := filepath.Join(t.TempDir(), "seed")
		if _, err := Seed(SeedOptions{Dir: d, Users: 1, Messages: 2, Bigbox: bigbox, SizeDist: "fixed:500"}); err != nil {
			t.Fatal(err)
		}
		mode := func(p string) os.FileMode {
			fi, err := os.Stat(p)
			if err != nil {
				t.Fatal(err)
			}
			return fi.Mode().Perm()
		}
		dir, passwd, mail := mode(d), mode(filepath.Join(d, "passwd")), mode(filepath.Join(d, "mail", "user00001"))
		if dir&0o001 == 0 && passwd&0o004 != 0 {
			t.Errorf("bigbox %d: the seed directory has mode %v and its passwd-file %v: others may read the file but not reach it", bigbox, dir, passwd)
		}
		if mail&0o077 != 0 {
			t.Errorf("bigbox %d: a Maildir has mode %v, want 0700", bigbox, mail)
		}
	}
}
