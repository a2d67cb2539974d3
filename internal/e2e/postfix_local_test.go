//go:build linux

package e2e

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/postoffice-mail/postoffice/internal/store/mbox"
)

// postfixLocalMainCf has Postfix's local(8) deliver mail for example.org
// to UNIX mailboxes in {{spool}} (mail_spool_directory, home_mailbox
// empty, no mailbox_command), locking as Debian's Postfix does (fcntl,
// then a dotlock); no DNS, its own queue, data directory and log file.
const postfixLocalMainCf = `compatibility_level = 3.6
queue_directory = {{dir}}/queue
data_directory = {{dir}}/data
mail_owner = postfix
setgid_group = postdrop
inet_interfaces = 127.0.0.1
inet_protocols = ipv4
myhostname = mx.postoffice.test
mydomain = postoffice.test
myorigin = example.org
mydestination = example.org
local_transport = local
local_recipient_maps = proxy:unix:passwd.byname
mail_spool_directory = {{spool}}
home_mailbox =
mailbox_command =
mailbox_delivery_lock = fcntl, dotlock
default_transport = error:no relaying from this test instance
relay_domains =
relayhost =
mynetworks = 127.0.0.0/8
smtp_dns_support_level = disabled
smtputf8_enable = no
alias_maps =
alias_database =
biff = no
maillog_file = {{dir}}/maillog
maillog_file_prefixes = {{dir}}
syslog_name = postfix-postoffice-test
`

// TestPostfixLocalMboxConcurrent runs Postfix's real local(8) and
// postoffice's POP3 sessions on one mbox at the same time: Postfix's
// sendmail submits 40 messages, one by one, to a system user the test
// creates (local(8) refuses to deliver as root), and local(8) appends
// them to <spool>/<user>, while POP3 sessions of postoffice (location
// mbox:<spool>/%u) retrieve and delete what they see, session after
// session. A message counts as taken when the QUIT of the session that
// deleted it said +OK (RFC 1939 §6). At the end every message was taken
// exactly once (none lost, none duplicated, none resurrected), Postfix
// logged 40 deliveries and no deferral, and the mbox parses and is
// empty. Root only (Postfix and the system user); the user and the spool
// are removed at the end.
func TestPostfixLocalMboxConcurrent(t *testing.T) {
	t.Parallel()
	postfix := need(t, "postfix", "postfix")
	sendmail := need(t, "sendmail", "postfix")
	if os.Geteuid() != 0 {
		t.Skip("needs root: Postfix starts as root and local(8) delivers as a system user")
	}
	for _, p := range []string{"useradd", "userdel"} {
		need(t, p, "passwd")
	}
	name := fmt.Sprintf("pflc%d", os.Getpid()%100000)
	exec.Command("userdel", name).Run() // a leftover of a killed run
	runCmd(t, "", "useradd", "-M", "-d", "/nonexistent", "-s", "/usr/sbin/nologin", name)
	t.Cleanup(func() { exec.Command("userdel", name).Run() })
	if _, err := user.Lookup(name); err != nil {
		t.Fatal(err)
	}

	// Not t.TempDir: Postfix's daemons and local(8), running as the
	// user, reach their directories through every parent.
	dir, err := os.MkdirTemp("", "postoffice-postfix-local-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	spool := filepath.Join(dir, "spool")
	conf := filepath.Join(dir, "conf")
	for _, d := range []string{conf, filepath.Join(dir, "queue"), filepath.Join(dir, "data"), spool} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	// A spool every user may create files in, as /var/mail with mode
	// 1777 (local(8) then delivers with the user's rights throughout).
	for p, mode := range map[string]os.FileMode{dir: 0o755, spool: 0o1777} {
		if err := os.Chmod(p, mode); err != nil {
			t.Fatal(err)
		}
	}
	if out, err := exec.Command("chown", "postfix", filepath.Join(dir, "data")).CombinedOutput(); err != nil {
		t.Fatalf("chown postfix: %v %s", err, out)
	}
	mainCf := strings.NewReplacer("{{dir}}", dir, "{{spool}}", spool).Replace(postfixLocalMainCf)
	if err := os.WriteFile(filepath.Join(conf, "main.cf"), []byte(mainCf), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(conf, "master.cf"), []byte(fmt.Sprintf(postfixMasterCf, freePort(t))), 0o644); err != nil {
		t.Fatal(err)
	}
	maillog := func() string { b, _ := os.ReadFile(filepath.Join(dir, "maillog")); return string(b) }
	if out, err := exec.Command(postfix, "-c", conf, "start").CombinedOutput(); err != nil {
		t.Fatalf("postfix start: %v\n%s\n%s", err, out, maillog())
	}
	t.Cleanup(func() {
		exec.Command(postfix, "-c", conf, "stop").Run()
		pid := filepath.Join(dir, "queue", "pid", "master.pid")
		for i := 0; i < 100; i++ {
			b, err := os.ReadFile(pid)
			if err != nil {
				return
			}
			var n int
			fmt.Sscan(strings.TrimSpace(string(b)), &n)
			if n == 0 || exec.Command("kill", "-0", fmt.Sprint(n)).Run() != nil {
				return
			}
			time.Sleep(100 * time.Millisecond)
		}
	})

	// postoffice on the spool.
	s := &site{t: t, dir: t.TempDir()}
	s.config = filepath.Join(s.dir, "postoffice.toml")
	passwd := filepath.Join(s.dir, "passwd")
	s.run(testPassword+"\n", "user", "add", "--passwd-file", passwd, "--password-stdin", name)
	if err := os.WriteFile(s.config, fmt.Appendf(nil, "[pop3]\nlisten = [\"127.0.0.1:0\"]\nauth_fail_delay = \"0s\"\n\n[auth]\npasswd_file = %q\n\n[mail]\nlocation = %q\n",
		passwd, "mbox:"+spool+"/%u"), 0o600); err != nil {
		t.Fatal(err)
	}
	srv := s.start()
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("postoffice log:\n%s", srv.log)
		}
	})

	const n = 40
	ctx, cancel := context.WithTimeout(context.Background(), 120*time.Second)
	defer cancel()
	var wg sync.WaitGroup
	submitErr := make(chan error, 1)
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := 0; i < n; i++ {
			msg := fmt.Sprintf("From: sender@example.net\nTo: %s@example.org\nMessage-ID: <pf-%d@example.net>\nSubject: local %d\n\nFrom the body of %d\nbye\n", name, i, i, i)
			cmd := exec.CommandContext(ctx, sendmail, "-C", conf, "-f", "sender@example.net", "-i", name+"@example.org")
			cmd.Stdin = strings.NewReader(msg)
			if out, err := cmd.CombinedOutput(); err != nil {
				submitErr <- fmt.Errorf("sendmail %d: %v: %s", i, err, out)
				return
			}
		}
	}()

	idRE := regexp.MustCompile(`(?m)^Message-ID: <pf-(\d+)@example\.net>\r$`)
	taken := map[string]int{}
	sessions, inUse := 0, 0
	for len(taken) < n && ctx.Err() == nil && sessions < 2000 {
		select {
		case err := <-submitErr:
			t.Fatalf("%v\nmaillog:\n%s", err, maillog())
		default:
		}
		sessions++
		c := srv.dial()
		c.cmd("USER "+name, "+OK")
		io.WriteString(c.nc, "PASS "+testPassword+"\r\n")
		if l := c.expect(""); strings.HasPrefix(l, "-ERR [IN-USE]") {
			// The session before this one ends just after its QUIT
			// reply, and local(8) may hold the mailbox locks for a
			// moment: a client tries again at its next poll.
			inUse++
			c.nc.Close()
			time.Sleep(20 * time.Millisecond)
			continue
		} else if !strings.HasPrefix(l, "+OK") {
			t.Fatalf("PASS: %q", l)
		}
		cnt := c.count()
		var got []string
		for i := 1; i <= cnt; i++ {
			m := c.retr(i)
			id := idRE.FindStringSubmatch(m)
			if id == nil || !strings.Contains(m, "\r\n>From the body") && !strings.Contains(m, "\r\nFrom the body") {
				t.Fatalf("message %d is not one the test sent: %q", i, m)
			}
			got = append(got, id[1])
			c.cmd(fmt.Sprintf("DELE %d", i), "+OK")
		}
		c.cmd("QUIT", "+OK")
		c.nc.Close()
		for _, id := range got {
			taken[id]++
		}
		if cnt == 0 {
			time.Sleep(50 * time.Millisecond)
		}
	}
	wg.Wait()
	select {
	case err := <-submitErr:
		t.Fatalf("%v\nmaillog:\n%s", err, maillog())
	default:
	}
	for i := 0; i < n; i++ {
		if c := taken[fmt.Sprint(i)]; c != 1 {
			t.Errorf("message %d taken %d times, want once", i, c)
		}
	}
	if len(taken) != n {
		t.Errorf("%d distinct messages taken, want %d", len(taken), n)
	}
	log := maillog()
	if got := strings.Count(log, "status=sent (delivered to mailbox)"); got != n {
		t.Errorf("Postfix logged %d deliveries to the mailbox, want %d", got, n)
	}
	if strings.Contains(log, "status=deferred") || strings.Contains(log, "status=bounced") {
		t.Errorf("Postfix deferred or bounced mail:\n%s", log)
	}
	// The mbox parses, and nothing is left in it.
	st, err := mbox.New(mbox.Options{Location: "mbox:" + spool + "/%u", NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	md, err := st.Open(context.Background(), name)
	if err != nil {
		t.Fatalf("the mbox after the run: %v", err)
	}
	if left := md.Messages(); len(left) != 0 {
		t.Errorf("%d messages left in the mbox, want 0", len(left))
	}
	md.Close()
	t.Logf("%d POP3 sessions (%d answered IN-USE) took %d messages while local(8) delivered them", sessions, inUse, len(taken))
	if t.Failed() {
		t.Logf("maillog:\n%s", log)
	}
}
