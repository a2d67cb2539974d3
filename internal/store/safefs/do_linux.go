//go:build linux

package safefs

import (
	"fmt"
	"os"
	"runtime"

	"golang.org/x/sys/unix"
)

// Do runs fn as o: when the process runs as root (effective uid 0) and o
// is a known user other than root, fn runs on an OS thread of its own
// whose file-system uid and gid are o's and whose only supplementary group
// is o's gid. Files fn makes belong to o, and the kernel refuses fn what o
// could not do (changing the file-system uid from 0 also drops
// CAP_DAC_OVERRIDE and the other file capabilities, capabilities(7)).
// A group unknown or 0 is refused, as Dovecot's first_valid_gid = 1 does.
// Otherwise, in a process that already dropped its privileges or for a
// maildrop owned by root, fn runs as it is.
//
// setuid(2) in Go changes every thread of the process; setfsuid(2),
// setfsgid(2) and setgroups(2) made as raw system calls change only the
// calling thread, so fn runs on a goroutine locked to its thread. The ids
// are put back afterwards; if that fails the goroutine ends still locked,
// and the Go runtime then ends the thread instead of reusing it. A panic
// in fn is raised again in the caller.
func Do(o Owner, fn func() error) error {
	if o.UID <= 0 || os.Geteuid() != 0 {
		return fn()
	}
	// Dovecot's first_valid_gid = 1: a mail owner in group root would
	// reach what that group may read.
	gid := o.GID
	if gid <= 0 {
		return fmt.Errorf("safefs: uid %d: group %d refused (unknown or root)", o.UID, gid)
	}
	type result struct {
		err   error
		panic any
	}
	done := make(chan result, 1)
	go func() {
		runtime.LockOSThread()
		var r result
		restored := false
		defer func() {
			if restored {
				runtime.UnlockOSThread()
			}
			done <- r
		}()
		groups, err := unix.Getgroups()
		if err != nil {
			r.err = fmt.Errorf("safefs: getgroups: %w", err)
			restored = true
			return
		}
		if err := switchTo(o.UID, gid); err != nil {
			r.err = err
			restored = restore(groups) == nil
			return
		}
		func() {
			defer func() { r.panic = recover() }()
			r.err = fn()
		}()
		restored = restore(groups) == nil
	}()
	r := <-done
	if r.panic != nil {
		panic(r.panic)
	}
	return r.err
}

// switchTo gives the calling thread the file-system ids uid and gid, with
// gid as its only supplementary group, and checks that they took.
func switchTo(uid, gid int) error {
	if err := unix.Setgroups([]int{gid}); err != nil {
		return fmt.Errorf("safefs: setgroups: %w", err)
	}
	unix.SetfsgidRetGid(gid)
	unix.SetfsuidRetUid(uid)
	// setfsuid and setfsgid report no failure; an invalid id (-1) changes
	// nothing and returns the current one.
	if g, _ := unix.SetfsgidRetGid(-1); g != gid {
		return fmt.Errorf("safefs: setfsgid %d did not take (%d)", gid, g)
	}
	if u, _ := unix.SetfsuidRetUid(-1); u != uid {
		return fmt.Errorf("safefs: setfsuid %d did not take (%d)", uid, u)
	}
	return nil
}

// restore gives the calling thread back the process's ids and the
// supplementary groups it had.
func restore(groups []int) error {
	unix.SetfsuidRetUid(os.Geteuid())
	unix.SetfsgidRetGid(os.Getegid())
	if u, _ := unix.SetfsuidRetUid(-1); u != os.Geteuid() {
		return fmt.Errorf("safefs: fsuid not restored")
	}
	if g, _ := unix.SetfsgidRetGid(-1); g != os.Getegid() {
		return fmt.Errorf("safefs: fsgid not restored")
	}
	return unix.Setgroups(groups)
}
