//go:build !linux

package maildir

import (
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/postoffice-mail/postoffice/internal/store/safefs"
)

// scanDir calls fn for every entry of the directory name in parent (not
// followed if it is a symbolic link), with the name valid only during the
// call, and its type. The file type comes from the directory entry, not a
// stat (a symbolic link is typeUnknown).
func scanDir(parent *safefs.Dir, name string, fn func(name []byte, typ fileType)) error {
	path := filepath.Join(parent.Path(), name)
	sd, err := parent.OpenDir(name)
	if err != nil {
		return err
	}
	d := os.NewFile(uintptr(sd.FD()), path) // d owns the descriptor now
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
