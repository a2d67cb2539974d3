//go:build !linux

package maildir

import (
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
)

// scanDir calls fn for every entry of the directory path, with the name
// valid only during the call, and its type. The file type comes from the
// directory entry, not a stat (a symbolic link is typeUnknown).
func scanDir(path string, fn func(name []byte, typ fileType)) error {
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
		t := typeSpecial
		switch m := e.Type(); {
		case m.IsRegular():
			t = typeRegular
		case m.IsDir():
			t = typeDir
		case m&fs.ModeSymlink != 0:
			t = typeUnknown
		}
		fn([]byte(e.Name()), t)
	}
	return nil
}
