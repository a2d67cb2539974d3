package dovecot

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
)

// AddConfig appends settings to dovecot.conf ("pop3_uidl_format = %g")
// and reloads Dovecot with SIGHUP. Sessions started after the reload use
// them; the caller waits for what it needs to see (a reload takes a
// moment), bounded in time.
func (d *Server) AddConfig(t testing.TB, settings string) {
	t.Helper()
	p := filepath.Join(d.Dir, "dovecot.conf")
	f, err := os.OpenFile(p, os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		t.Fatal(err)
	}
	_, err = f.WriteString("\n" + settings + "\n")
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(filepath.Join(d.Dir, "run", "master.pid"))
	if err != nil {
		t.Fatal(err)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		t.Fatal(err)
	}
	if err := syscall.Kill(pid, syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
}
