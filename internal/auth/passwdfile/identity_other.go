//go:build !linux

package passwdfile

import "io/fs"

// identity tells whether the file changed. Off Linux it is the size and the
// modification time only.
type identity struct {
	size  int64
	mtime int64 // nanoseconds
}

func identityOf(fi fs.FileInfo) identity {
	return identity{size: fi.Size(), mtime: fi.ModTime().UnixNano()}
}
