package maildir

import (
	"context"
	"errors"
	"io/fs"
)

// Usage returns what user's maildrop holds: the octets stored (the S=
// field of each file name, which Deliver writes, else the file's size) and
// the number of messages in new/ and cur/, counted as Open lists them. It
// takes no lock, and a maildrop that does not exist yet is empty. Delivery
// quotas use it.
func (s *Store) Usage(ctx context.Context, user string) (octets int64, messages int, err error) {
	b, err := s.openBox(user, false)
	if errors.Is(err, fs.ErrNotExist) {
		return 0, 0, nil
	}
	if err != nil {
		return 0, 0, err
	}
	defer b.close()
	err = b.do(func() error {
		for _, sub := range []string{"new", "cur"} {
			if err := ctx.Err(); err != nil {
				return err
			}
			var sizeless []string
			err := scanDir(b.dir, sub, func(name []byte, typ fileType) {
				if typ == typeDir || !usableName(name) {
					return
				}
				messages++
				key, _ := splitName(name)
				if size, ok := sizeField(string(key), 'S'); ok {
					octets += size
				} else {
					sizeless = append(sizeless, string(name))
				}
			})
			if errors.Is(err, fs.ErrNotExist) {
				continue
			}
			if err != nil {
				return err
			}
			if len(sizeless) > 0 {
				d, err := b.sub(sub)
				if err != nil {
					return err
				}
				for _, name := range sizeless {
					if st, err := d.Lstat(name); err == nil {
						octets += st.Size
					}
				}
			}
		}
		return nil
	})
	if err != nil {
		return 0, 0, err
	}
	return octets, messages, nil
}
