//go:build unix

package pgtest

import (
	"os"
	"syscall"
)

// newSession puts the watchdog in a session of its own, so that a terminal's
// ^C, which kills the test binary, does not kill the watchdog before it has
// stopped the cluster.
func newSession() *syscall.SysProcAttr { return &syscall.SysProcAttr{Setsid: true} }

func owner(fi os.FileInfo) (uid, gid int) {
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		return int(st.Uid), int(st.Gid)
	}
	return -1, -1
}
