package mbox

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/postoffice-mail/postoffice/internal/store"
	"github.com/postoffice-mail/postoffice/internal/store/safefs"
)

// errLockTimeout is wrapped by a lock that could not be had in time.
var errLockTimeout = fmt.Errorf("mbox: mailbox locked by another program: %w", store.ErrInUse)

// poll calls try with a growing pause (1 ms to 100 ms) until it succeeds,
// fails, ctx ends or deadline passes.
func poll(ctx context.Context, deadline time.Time, try func() (bool, error)) error {
	pause := time.Millisecond
	for {
		ok, err := try()
		if ok || err != nil {
			return err
		}
		if time.Now().After(deadline) {
			return errLockTimeout
		}
		t := time.NewTimer(pause)
		select {
		case <-ctx.Done():
			t.Stop()
			return ctx.Err()
		case <-t.C:
		}
		pause = min(pause*2, 100*time.Millisecond)
	}
}

// dotlock is a held "<mbox>.lock" file.
type dotlock struct {
	dir  *safefs.Dir
	name string
	st   unix.Stat_t
}

// takeDotlock makes name in dir, the dot-locking protocol of Postfix
// (dotlock in mailbox_delivery_lock), procmail and mutt: a file of our own
// made with O_CREAT|O_EXCL holding our pid and host name (as mutt's does),
// then link(2)ed to name, which fails if name exists. The link makes the
// lock appear whole, so no one ever sees an empty lock of a process killed
// before it wrote its pid (it also works on NFSv2, where O_EXCL does not).
//
// An existing lock older than staleAge (by its change time) is removed,
// as procmail and Postfix remove a stale lock (Postfix: stale_lock_time);
// one that names a process of this host that no longer exists is removed
// at once, so that a killed server does not block its own mailbox for
// minutes. The lock is made as the process, not as the mail owner: a
// spool such as Debian's /var/mail (root:mail, mode 2775) lets only root
// and the group mail make files in it, which is why Postfix's local(8)
// and Dovecot (mail_privileged_group) take this lock with privileges too.
// Nothing is followed: O_EXCL fails on a symbolic link, and a stale link
// is unlinked, never its target.
func takeDotlock(ctx context.Context, dir *safefs.Dir, name string, staleAge time.Duration, deadline time.Time, owner safefs.Owner) (*dotlock, error) {
	host, _ := os.Hostname()
	content := fmt.Sprintf("%d %s\n", os.Getpid(), host)
	var dl *dotlock
	// The lock is written under a name of its own and then linked to name
	// (the link(2) protocol of Postfix's dot_lockfile and procmail), so the
	// lock appears with its pid and host already in it: a process killed
	// between creating an empty lock and writing it would otherwise leave
	// a lock no one can tell is stale until staleAge has passed.
	create := func() error {
		var rnd [8]byte
		rand.Read(rnd[:])
		tmp := fmt.Sprintf("%s.%s.%d.%x", name, host, os.Getpid(), rnd)
		fd, st, err := dir.OpenFD(tmp, unix.O_WRONLY|unix.O_CREAT|unix.O_EXCL, 0o644)
		if err != nil {
			return err
		}
		defer dir.Remove(tmp)
		_, werr := unix.Write(fd, []byte(content))
		unix.Close(fd)
		if werr != nil {
			return werr
		}
		if err := dir.Link(tmp, dir, name); err != nil {
			return err
		}
		dl = &dotlock{dir: dir, name: name, st: st}
		return nil
	}
	err := poll(ctx, deadline, func() (bool, error) {
		err := create()
		if errors.Is(err, fs.ErrPermission) && owner.UID > 0 {
			// A spool the process cannot write but the owner can
			// (a home directory when running as a mail user).
			err = safefs.Do(owner, create)
		}
		if err == nil {
			return true, nil
		}
		if !errors.Is(err, fs.ErrExist) {
			return false, fmt.Errorf("mbox: dotlock: %w", err)
		}
		st, err := dir.Lstat(name)
		if err != nil {
			return false, nil // gone meanwhile: try again at once
		}
		if stale(dir, name, st, staleAge) {
			dir.Remove(name)
		}
		return false, nil
	})
	if err != nil {
		return nil, err
	}
	return dl, nil
}

// stale reports whether the existing lock name may be broken.
func stale(dir *safefs.Dir, name string, st unix.Stat_t, staleAge time.Duration) bool {
	ctime := time.Unix(st.Ctim.Unix())
	if time.Since(ctime) > staleAge {
		return true
	}
	if st.Mode&unix.S_IFMT != unix.S_IFREG || st.Size > 256 {
		return false
	}
	fd, _, err := dir.OpenFD(name, unix.O_RDONLY|unix.O_NONBLOCK, 0)
	if err != nil {
		return false
	}
	var b [256]byte
	n, _ := unix.Read(fd, b[:])
	unix.Close(fd)
	f := strings.Fields(string(b[:max(n, 0)]))
	if len(f) != 2 {
		return false
	}
	host, _ := os.Hostname()
	pid, err := strconv.Atoi(f[0])
	if err != nil || pid <= 0 || f[1] != host {
		return false
	}
	// kill(pid, 0): ESRCH means no such process on this host.
	return unix.Kill(pid, 0) == unix.ESRCH
}

// release removes the lock if it is still ours (same inode).
func (d *dotlock) release() {
	if d == nil {
		return
	}
	if st, err := d.dir.Lstat(d.name); err == nil && st.Ino == d.st.Ino && st.Dev == d.st.Dev {
		d.dir.Remove(d.name)
	}
}

// sessionLock takes flock(LOCK_EX|LOCK_NB) on fd: postoffice's own lock
// between POP3 sessions (store.ErrInUse when held). flock belongs to the
// open file description, so it refuses a second session of this process
// too, and the kernel drops it when the holder dies.
func sessionLock(fd int) error {
	err := unix.Flock(fd, unix.LOCK_EX|unix.LOCK_NB)
	if errors.Is(err, unix.EWOULDBLOCK) {
		return store.ErrInUse
	}
	if err != nil {
		return fmt.Errorf("mbox: session lock: %w", err)
	}
	return nil
}
