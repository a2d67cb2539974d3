package maildir

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"slices"
	"strings"

	"github.com/postoffice-mail/postoffice/internal/store"
)

// Message flags (store.Flagged) are the Maildir info flags: a message
// named "key:2,FS" is flagged and seen. Setting them renames the file into
// cur/ with the new info part, as a Maildir reader does when it has shown
// a message (https://cr.yp.to/proto/maildir.html); the key, and so the
// UIDL, does not change. Flags outside "DFPRST" (Dovecot's keyword
// letters a-z, other experimental ones) found on a file are kept as they
// are when the flags are set.

var _ store.Flagged = (*maildrop)(nil)

// standardFlags are the flags a client may set, in Maildir order (ASCII).
const standardFlags = "DFPRST"

// infoFlags returns the flag letters of an info part (":2,FS"), or "" for
// an info part of another version.
func infoFlags(info string) string {
	f, ok := strings.CutPrefix(info, ":2,")
	if !ok {
		return ""
	}
	return f
}

// Flags implements store.Flagged: the standard flags of message i.
func (md *maildrop) Flags(i int) (string, error) {
	md.mu.Lock()
	defer md.mu.Unlock()
	if err := md.usable(); err != nil {
		return "", err
	}
	if i < 0 || i >= len(md.msgs) {
		return "", fmt.Errorf("maildir: no message %d", i)
	}
	var out []byte
	for _, c := range []byte(infoFlags(md.entry(i).info)) {
		if strings.IndexByte(standardFlags, c) >= 0 && !slices.Contains(out, c) {
			out = append(out, c)
		}
	}
	slices.Sort(out)
	return string(out), nil
}

// normalFlags checks flags and returns them sorted without duplicates.
func normalFlags(flags string) (string, error) {
	var out []byte
	for _, c := range []byte(flags) {
		if strings.IndexByte(standardFlags, c) < 0 {
			return "", fmt.Errorf("maildir: flag %q not one of %s", c, standardFlags)
		}
		if !slices.Contains(out, c) {
			out = append(out, c)
		}
	}
	slices.Sort(out)
	return string(out), nil
}

// SetFlags implements store.Flagged. The file moves to cur/ under its new
// name, by rename(2) (atomic: the message exists under exactly one name
// at every instant), and both directories are fsynced. A message moved by
// another agent since the snapshot is found again by its key; one that is
// gone is store.ErrNoMessage.
func (md *maildrop) SetFlags(ctx context.Context, i int, flags string) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	want, err := normalFlags(flags)
	if err != nil {
		return err
	}
	md.mu.Lock()
	defer md.mu.Unlock()
	if err := md.usable(); err != nil {
		return err
	}
	if i < 0 || i >= len(md.msgs) {
		return fmt.Errorf("maildir: no message %d", i)
	}
	return md.box.do(func() error {
		for attempt := 0; ; attempt++ {
			md.makeEntries()
			e := md.entries[i]
			if e.sub == "" {
				return store.ErrNoMessage
			}
			// Keep the letters we do not manage (keywords).
			var keep []byte
			for _, c := range []byte(infoFlags(e.info)) {
				if strings.IndexByte(standardFlags, c) < 0 && !slices.Contains(keep, c) {
					keep = append(keep, c)
				}
			}
			all := []byte(want)
			all = append(all, keep...)
			slices.Sort(all)
			info := ":2," + string(all)
			if e.sub == "cur" && e.info == info {
				return nil
			}
			from, err := md.box.sub(e.sub)
			if err != nil {
				return err
			}
			cur, err := md.box.sub("cur")
			if err != nil {
				return err
			}
			err = from.Rename(e.key+e.info, cur, e.key+info)
			if errors.Is(err, fs.ErrNotExist) && attempt < maxRelocate {
				if err := md.relocate(); err != nil {
					return err
				}
				continue
			}
			if err != nil {
				return fmt.Errorf("maildir: set flags: %w", err)
			}
			md.entries[i].sub, md.entries[i].info = "cur", info
			if err := md.s.syncDir(cur); err != nil {
				return err
			}
			if e.sub != "cur" {
				return md.s.syncDir(from)
			}
			return nil
		}
	})
}
