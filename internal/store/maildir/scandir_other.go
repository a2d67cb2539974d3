//go:build !linux

package maildir

import (
	"fmt"
	"os"
	"path/filepath"
)

// scanDir calls fn for every entry of the directory path, with the name
// valid only during the call, and whether the entry is known to be a
// directory. The file type comes from the directory entry, not a stat.
func scanDir(path string, fn func(name []byte, isDir bool)) error {
	d, err := os.Open(path)
	if err != nil {
		return err
	}
	defer d.Close()
	ents, err := d.ReadDir(-1)
	if err != nil {
		return fmt.Errorf("maildir: read %s: %w", filepath.Base(path), err)
	}
	for _, e := range ents {
		fn([]byte(e.Name()), e.IsDir())
	}
	return nil
}
