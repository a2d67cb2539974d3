//go:build !linux

package maildir

import (
	"errors"

	"github.com/postoffice-mail/postoffice/internal/store/safefs"
)

// statDir is not implemented off Linux: without stamps every Open reads the
// directories, which is always correct.
func statDir(d *safefs.Dir, name string) (dirStamp, error) {
	return dirStamp{}, errors.New("maildir: no directory stamps on this system")
}
