package maildir

import (
	"context"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
)

// Usage returns what user's maildrop holds: the octets stored (the S=
// field of each file name, which Deliver writes, else the file's size) and
// the number of messages in new/ and cur/, counted as Open lists them. It
// takes no lock, and a maildrop that does not exist yet is empty. Delivery
// quotas use it.
func (s *Store) Usage(ctx context.Context, user string) (octets int64, messages int, err error) {
	dir, err := s.Path(user)
	if err != nil {
		return 0, 0, err
	}
	for _, sub := range []string{"new", "cur"} {
		if err := ctx.Err(); err != nil {
			return 0, 0, err
		}
		subDir := filepath.Join(dir, sub)
		err := scanDir(subDir, func(name []byte, typ fileType) {
			if typ == typeDir || !usableName(name) {
				return
			}
			messages++
			key, _ := splitName(name)
			if size, ok := sizeField(string(key), 'S'); ok {
				octets += size
			} else if fi, err := os.Lstat(filepath.Join(subDir, string(name))); err == nil {
				octets += fi.Size()
			}
		})
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			return 0, 0, err
		}
	}
	return octets, messages, nil
}
