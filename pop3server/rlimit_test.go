package pop3server_test

import (
	"syscall"
	"testing"
)

// raiseFileLimit makes sure the process may hold n open files, or skips.
func raiseFileLimit(t *testing.T, n uint64) {
	t.Helper()
	var rl syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &rl); err != nil {
		t.Skipf("getrlimit: %v", err)
	}
	if uint64(rl.Cur) >= n {
		return
	}
	old := rl
	if uint64(rl.Max) >= n {
		setRlim(&rl.Cur, n)
	} else {
		setRlim(&rl.Cur, n) // raising the hard limit works as root only
		setRlim(&rl.Max, n)
	}
	if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &rl); err != nil {
		t.Skipf("need %d open files, RLIMIT_NOFILE is %d/%d and cannot be raised: %v", n, old.Cur, old.Max, err)
	}
	t.Cleanup(func() { syscall.Setrlimit(syscall.RLIMIT_NOFILE, &old) })
}

// setRlim sets a limit of syscall.Rlimit, whose fields are uint64 on Linux
// and int64 on the BSDs.
func setRlim[T int64 | uint64](p *T, v uint64) { *p = T(v) }
