package maildir

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"strconv"
	"strings"
	"syscall"

	"github.com/postoffice-mail/postoffice/internal/store/safefs"
)

// uidState is postoffice-uids: the UIDVALIDITY and the next UID that
// messages not listed in dovecot-uidlist get when the UIDL format uses %u
// or %v, so that a Maildir taken over from Dovecot keeps listing UIDLs of
// one shape: "postoffice-uids 1 V<uidvalidity> N<next uid>\n". It only
// grows: it is written, durably, before any UIDL made from it is recorded
// in the index or reaches a client, so no UID is given twice. UIDs are
// never written to dovecot-uidlist: a Dovecot still running on the
// Maildir gives its new mail UIDs of its own, and a UIDL that another
// message already has is replaced by a derived one (see addFresh).
type uidState struct {
	validity, next uint32
}

const uidsHeader = "postoffice-uids 1 "

// readUIDs reads postoffice-uids; a missing file is the zero state, a
// corrupt one an error (the UIDs it gave must not be given again).
func readUIDs(d *safefs.Dir) (uidState, error) {
	f, err := d.OpenFile(uidsName, os.O_RDONLY|syscall.O_NONBLOCK, 0)
	if errors.Is(err, fs.ErrNotExist) {
		return uidState{}, nil
	}
	if err != nil {
		return uidState{}, fmt.Errorf("maildir: %s: %w", uidsName, err)
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, 256))
	if err != nil {
		return uidState{}, fmt.Errorf("maildir: %s: %w", uidsName, err)
	}
	var st uidState
	s, ok := strings.CutPrefix(string(b), uidsHeader)
	s, nl := strings.CutSuffix(s, "\n")
	v, n, sp := strings.Cut(s, " ")
	if !ok || !nl || !sp || !strings.HasPrefix(v, "V") || !strings.HasPrefix(n, "N") {
		return uidState{}, fmt.Errorf("maildir: %s: corrupt", uidsName)
	}
	vv, err1 := strconv.ParseUint(v[1:], 10, 32)
	nn, err2 := strconv.ParseUint(n[1:], 10, 32)
	if err1 != nil || err2 != nil || vv == 0 {
		return uidState{}, fmt.Errorf("maildir: %s: corrupt", uidsName)
	}
	st.validity, st.next = uint32(vv), uint32(nn)
	return st, nil
}

// writeUIDs replaces postoffice-uids atomically and durably, as the index.
func (s *Store) writeUIDs(d *safefs.Dir, st uidState) error {
	tmp := uidsName + ".tmp"
	if err := d.Remove(tmp); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("maildir: %s: %w", uidsName, err)
	}
	f, err := d.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return fmt.Errorf("maildir: %s: %w", uidsName, err)
	}
	_, err = fmt.Fprintf(f, "%sV%d N%d\n", uidsHeader, st.validity, st.next)
	if err == nil && !s.noSync {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = d.Rename(tmp, d, uidsName)
	}
	if err != nil {
		d.Remove(tmp)
		return fmt.Errorf("maildir: %s: %w", uidsName, err)
	}
	return s.syncDir(d)
}
