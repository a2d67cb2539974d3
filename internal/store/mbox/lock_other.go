//go:build !linux

package mbox

import (
	"context"
	"fmt"
	"runtime"
	"time"
)

// errNoOFDLocks is why the store refuses to run off Linux. Its mailbox
// lock must conflict both with the classic fcntl(F_SETLK) locks of other
// programs (Postfix's local(8), procmail, mutt) and with a lock this
// process takes through another descriptor. Linux's open file description
// locks (F_OFD_SETLK) do both; a classic lock does neither within one
// process (and any close of the file drops it), and how flock(2) and
// fcntl(2) locks interact differs between systems. Rather than lock an
// mbox wrongly, New fails; Maildirs need none of this.
var errNoOFDLocks = fmt.Errorf("mbox: the mbox store needs Linux's open file description locks (F_OFD_SETLK) to lock mailboxes safely, and %s has none: use Maildir (mail.location = \"maildir:...\") on this system", runtime.GOOS)

func checkLocking() error { return errNoOFDLocks }

func fcntlLock(ctx context.Context, fd int, deadline time.Time) error { return errNoOFDLocks }

func fcntlUnlock(fd int) {}
