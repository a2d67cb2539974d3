//go:build !unix

package pgtest

import (
	"os"
	"syscall"
)

func newSession() *syscall.SysProcAttr { return nil }

func owner(os.FileInfo) (uid, gid int) { return -1, -1 }
