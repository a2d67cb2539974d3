package maildir

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"syscall"
	"testing"

	"github.com/postoffice-mail/postoffice/internal/bench"
	"github.com/postoffice-mail/postoffice/internal/wire"
)

// BenchmarkMessageSource compares two ways to feed RETR's converter with
// a message stored with LF line ends: read(2) into a buffer, as the store
// does, and mmap(2) of the file, which saves the copy out of the page
// cache. The messages are 800 of bench seed's realistic ones, about 35 MB,
// each opened, fed to the converter and closed in turn, from the page
// cache. mmap(2) is slower (the mapping, its page faults and the unmapping
// cost more than the copy they save: 1,940 against 2,620 MB/s, medians of
// 5, on the development machine), and a file truncated under the mapping
// would fault the process; the store reads.
//
//	taskset -c 0 go test -run '^$' -bench MessageSource -count 5 ./internal/store/maildir/
func BenchmarkMessageSource(b *testing.B) {
	msgs, err := bench.GenerateMessages(800, "realistic", 1)
	if err != nil {
		b.Fatal(err)
	}
	dir := b.TempDir()
	var paths []string
	var total int64
	for i, m := range msgs {
		p := filepath.Join(dir, fmt.Sprintf("m%d", i))
		if err := os.WriteFile(p, m, 0o600); err != nil {
			b.Fatal(err)
		}
		paths = append(paths, p)
		total += int64(len(m))
	}
	bw := bufio.NewWriterSize(io.Discard, 128<<10)
	var dw wire.DotWriter
	buf := make([]byte, 64<<10)
	for _, tc := range []struct {
		name string
		send func(f *os.File, size int64) error
	}{
		{"read", func(f *os.File, size int64) error {
			for size > 0 {
				n, err := f.Read(buf[:min(int64(len(buf)), size)])
				if n == 0 {
					return err
				}
				dw.Write(buf[:n])
				size -= int64(n)
			}
			return nil
		}},
		{"mmap", func(f *os.File, size int64) error {
			m, err := syscall.Mmap(int(f.Fd()), 0, int(size), syscall.PROT_READ, syscall.MAP_SHARED)
			if err != nil {
				return err
			}
			dw.Write(m)
			return syscall.Munmap(m)
		}},
	} {
		b.Run(tc.name, func(b *testing.B) {
			b.SetBytes(total)
			for b.Loop() {
				for _, p := range paths {
					f, err := os.Open(p)
					if err != nil {
						b.Fatal(err)
					}
					st, err := f.Stat()
					if err != nil {
						b.Fatal(err)
					}
					dw.Reset(bw)
					if err := tc.send(f, st.Size()); err != nil {
						b.Fatal(err)
					}
					dw.Close()
					f.Close()
				}
			}
		})
	}
}
