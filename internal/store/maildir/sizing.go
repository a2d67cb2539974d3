package maildir

import (
	"cmp"
	"context"
	"fmt"
	"sync"
)

// sizeAll sets the wire size of every file in fresh, or -1 for one that has
// vanished. Sizes trusted from W= cost nothing; the files that must be
// opened, when many, are sized by sizeWorkers goroutines: the work is
// system calls and, with a cold page cache, waiting for the disk.
//
// A file with a trusted W= equal to its S= (stored with CRLF line ends,
// as LMTP and SMTP deliver them) is read all the same while the budget of
// wireScanFiles files and wireScanOctets octets of one snapshot lasts, to
// find out whether it is the message's wire form (no line to dot-stuff):
// such a file is then sent as it is (msgFile.SendTo). New mail is usually
// retrieved right after this, so the read also brings the file into the
// page cache for it. Its listed size stays the W= (as without the read).
func (md *maildrop) sizeAll(ctx context.Context, fresh []found) error {
	var open []int // indexes into fresh of the files to open
	files, octets := wireScanFiles, int64(wireScanOctets)
	for i := range fresh {
		f := &fresh[i]
		w, ok := md.trustedSize(f)
		if !ok {
			open = append(open, i)
			continue
		}
		f.size = w
		if s, ok := sizeField(f.key, 'S'); ok && s == w && files > 0 && s <= octets {
			files--
			octets -= s
			f.scan = true
			open = append(open, i)
		}
	}
	if len(open) == 0 {
		return nil
	}
	var dirs [2]dirFD
	for i, sub := range []string{"new", "cur"} {
		d, err := md.box.sub(sub)
		if err != nil {
			return fmt.Errorf("maildir: size: %w", err)
		}
		dirs[i] = dirFDOf(d)
	}
	dirOf := func(f *found) dirFD {
		if f.sub == "cur" {
			return dirs[1]
		}
		return dirs[0]
	}
	if len(open) < 2*sizeWorkers {
		buf := make([]byte, 32<<10)
		for _, i := range open {
			if err := ctx.Err(); err != nil {
				return err
			}
			if err := md.size(dirOf(&fresh[i]), &fresh[i], buf); err != nil {
				return err
			}
		}
		return nil
	}
	var (
		wg    sync.WaitGroup
		next  = make(chan int, sizeWorkers)
		errMu sync.Mutex
		first error
	)
	for range sizeWorkers {
		wg.Go(func() {
			// Each worker opens files as the Maildir's owner, on a
			// thread of its own (safefs.Do).
			err := md.box.do(func() error {
				var buf []byte
				for i := range next {
					if buf == nil {
						buf = make([]byte, 32<<10)
					}
					if err := md.size(dirOf(&fresh[i]), &fresh[i], buf); err != nil {
						errMu.Lock()
						first = cmp.Or(first, err)
						errMu.Unlock()
					}
				}
				return nil
			})
			if err != nil {
				errMu.Lock()
				first = cmp.Or(first, err)
				errMu.Unlock()
				for range next {
				}
			}
		})
	}
	var err error
loop:
	for _, i := range open {
		select {
		case next <- i:
		case <-ctx.Done():
			err = ctx.Err()
			break loop
		}
	}
	close(next)
	wg.Wait()
	return cmp.Or(err, first)
}

// The budget of one snapshot for reading files it could size from their
// W= alone, to find the wire form (sizeAll).
const (
	wireScanFiles  = 512
	wireScanOctets = 64 << 20
)

// vsize returns Dovecot's W= of f: the ",W=<n>" field of its name, else the
// W field of its dovecot-uidlist record.
func vsize(f *found) (int64, bool) {
	if w, ok := sizeField(f.key, 'W'); ok {
		return w, true
	}
	if f.rec != nil && f.rec.vsize >= 0 {
		return f.rec.vsize, true
	}
	return 0, false
}

// trustedSize returns the size of f without opening it, as Dovecot does:
// its W=, unless Options.VerifySizeFields is set, f has no W=, or its
// directory entry does not say it is a regular file (a FIFO must be
// seen and left out; a symbolic link may point anywhere).
func (md *maildrop) trustedSize(f *found) (int64, bool) {
	if md.s.verifySizes || !f.regular {
		return 0, false
	}
	return vsize(f)
}

// size computes the wire size of f: RFC 1939 §11 and store.Message.Size, the
// octets in CRLF form plus the CRLF a server appends when the message does
// not end in a newline. Dovecot's W= (in the name or in dovecot-uidlist) is
// the CRLF size without that completion; when sizeAll could not trust it
// (see trustedSize), the file is opened and only its last octet read, to
// decide the completion. Without W= the whole file is read once, through
// buf. A file that vanished, or is not a regular file, gets size -1 and is
// left out.
func (md *maildrop) size(d dirFD, f *found, buf []byte) error {
	w, ok := vsize(f)
	if md.s.sizeHook != nil {
		md.s.sizeHook(f.key + f.info)
	}
	n, last, crlf, wire, stuff, gone, regular, err := d.sizeAt(f.key+f.info, !ok || f.scan, buf)
	switch {
	case err != nil:
		return fmt.Errorf("maildir: size: %w", err)
	case gone:
		f.size = -1
		return nil
	case !regular:
		md.s.log.Warn("maildir: ignoring non-regular file", "dir", md.dir, "name", f.key+f.info)
		f.size = -1
		return nil
	}
	if f.scan {
		// Trusted W= (sizeAll): the size stays what it says, and the
		// file is the wire form only if it is exactly that long.
		f.size = w
		f.wire = wire && n == w && crlf == w
		if f.wire {
			f.stuff = stuff
		}
		return nil
	}
	if !ok {
		w = crlf
		f.wire, f.stuff = wire, stuff
	}
	f.size = w + completion(n, last)
	return nil
}
