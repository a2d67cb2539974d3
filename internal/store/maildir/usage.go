package maildir

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
)

// Usage returns what user's maildrop holds: the octets stored (the S=
// field of each file name, which Deliver writes, else the file's size) and
// the number of messages in new/ and cur/. It takes no lock, and a maildrop
// that does not exist yet is empty. Delivery quotas use it.
func (s *Store) Usage(ctx context.Context, user string) (octets int64, messages int, err error) {
	dir, err := s.Path(user)
	if err != nil {
		return 0, 0, err
	}
	for _, sub := range []string{"new", "cur"} {
		if err := ctx.Err(); err != nil {
			return 0, 0, err
		}
		es, err := os.ReadDir(filepath.Join(dir, sub))
		if errors.Is(err, os.ErrNotExist) {
			continue
		}
		if err != nil {
			return 0, 0, err
		}
		for _, e := range es {
			name := e.Name()
			if strings.HasPrefix(name, ".") || e.IsDir() {
				continue
			}
			messages++
			if size, ok := sizeField(baseName(name), 'S'); ok {
				octets += size
			} else if fi, err := e.Info(); err == nil {
				octets += fi.Size()
			}
		}
	}
	return octets, messages, nil
}
