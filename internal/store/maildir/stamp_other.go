//go:build !linux

package maildir

import "errors"

// statDir is not implemented off Linux: without stamps every Open reads the
// directories, which is always correct.
func statDir(path string) (dirStamp, error) {
	return dirStamp{}, errors.New("maildir: no directory stamps on this system")
}
