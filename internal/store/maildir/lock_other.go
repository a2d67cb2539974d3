//go:build !unix

package maildir

import "errors"

var errLocked = errors.New("maildir: locked")

// tryLock is not implemented off Unix: the Maildir store needs flock.
func tryLock(fd uintptr) error {
	return errors.New("maildir: locking needs a Unix system")
}
