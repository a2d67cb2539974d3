package maildir

import (
	"bufio"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"

	"github.com/postoffice-mail/postoffice/internal/store/safefs"
	"github.com/postoffice-mail/postoffice/internal/uidlfmt"
)

// uidlistRec is what we take from one dovecot-uidlist record.
type uidlistRec struct {
	uid      uint32
	pop3UIDL string // P field; hasP says whether it was present
	hasP     bool
	vsize    int64 // W field, -1 if absent
	order    uint32
	hasOrder bool   // O field (POP3 order) present
	guid     string // G field, "" if absent
}

// dovecotUIDList is a parsed dovecot-uidlist file.
type dovecotUIDList struct {
	uidValidity uint32
	nextUID     uint32                // N of the header (version 3) or its third field (version 1); 0 if absent
	recs        map[string]uidlistRec // by base name
}

// readUIDList reads Dovecot's dovecot-uidlist (src/lib-storage/index/maildir/
// maildir-uidlist.c). Version 3, Dovecot 1.1 and later:
//
//	3 V<uidvalidity> N<nextuid> G<guid>
//	<uid> [<key><value> ...] :<filename>
//
// where the record keys are S (physical size), W (virtual size), P (POP3
// UIDL; empty means the base file name), O (POP3 order) and G (GUID).
// Version 1 (Dovecot 1.0, Courier's courierimapuiddb) is
//
//	1 <uidvalidity> <nextuid>
//	<uid> <filename>
//
// The file name may carry the info part; it is cut at ':'. A missing file is
// (nil, nil). Lines that do not parse are skipped: the messages they name
// simply get our own UIDL.
func readUIDList(path string) (*dovecotUIDList, error) {
	d, err := safefs.OpenTop(filepath.Dir(path))
	if err != nil {
		return nil, err
	}
	defer d.Close()
	return readUIDListAt(d, filepath.Base(path))
}

// readUIDListAt is readUIDList of the file name in d, opened without
// following a link.
func readUIDListAt(d *safefs.Dir, name string) (*dovecotUIDList, error) {
	f, err := d.OpenFile(name, os.O_RDONLY|syscall.O_NONBLOCK, 0)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("maildir: %s: %w", uidlist, err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	if !sc.Scan() {
		if err := sc.Err(); err != nil {
			return nil, fmt.Errorf("maildir: %s: %w", uidlist, err)
		}
		return nil, fmt.Errorf("maildir: %s: empty", uidlist)
	}
	l := &dovecotUIDList{recs: make(map[string]uidlistRec)}
	hdr := strings.Fields(sc.Text())
	if len(hdr) == 0 {
		return nil, fmt.Errorf("maildir: %s: empty header", uidlist)
	}
	version := hdr[0]
	switch version {
	case "3":
		for _, f := range hdr[1:] {
			if f[0] == 'N' {
				if v, err := strconv.ParseUint(f[1:], 10, 32); err == nil {
					l.nextUID = uint32(v)
				}
			}
			if f[0] == 'V' {
				v, err := strconv.ParseUint(f[1:], 10, 32)
				if err != nil {
					return nil, fmt.Errorf("maildir: %s: bad uidvalidity %q", uidlist, f)
				}
				l.uidValidity = uint32(v)
			}
		}
	case "1":
		if len(hdr) < 3 {
			return nil, fmt.Errorf("maildir: %s: bad version 1 header", uidlist)
		}
		v, err := strconv.ParseUint(hdr[1], 10, 32)
		if err != nil {
			return nil, fmt.Errorf("maildir: %s: bad uidvalidity %q", uidlist, hdr[1])
		}
		l.uidValidity = uint32(v)
		if n, err := strconv.ParseUint(hdr[2], 10, 32); err == nil {
			l.nextUID = uint32(n)
		}
	default:
		return nil, fmt.Errorf("maildir: %s: unsupported version %q", uidlist, version)
	}
	if l.uidValidity == 0 {
		return nil, fmt.Errorf("maildir: %s: no uidvalidity", uidlist)
	}
	for sc.Scan() {
		line := sc.Text()
		var rec uidlistRec
		var name string
		var ok bool
		if version == "3" {
			rec, name, ok = parseUIDListV3(line)
		} else {
			rec, name, ok = parseUIDListV1(line)
		}
		if ok {
			l.recs[baseName(name)] = rec
		}
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("maildir: %s: %w", uidlist, err)
	}
	return l, nil
}

func parseUIDListV1(line string) (uidlistRec, string, bool) {
	uidStr, name, ok := strings.Cut(line, " ")
	uid, err := strconv.ParseUint(uidStr, 10, 32)
	if !ok || err != nil || uid == 0 || name == "" {
		return uidlistRec{}, "", false
	}
	return uidlistRec{uid: uint32(uid), vsize: -1}, name, true
}

func parseUIDListV3(line string) (uidlistRec, string, bool) {
	fields, name, ok := strings.Cut(line, " :")
	if !ok || name == "" || strings.ContainsRune(name, '/') {
		return uidlistRec{}, "", false
	}
	parts := strings.Fields(fields)
	if len(parts) == 0 {
		return uidlistRec{}, "", false
	}
	uid, err := strconv.ParseUint(parts[0], 10, 32)
	if err != nil || uid == 0 {
		return uidlistRec{}, "", false
	}
	rec := uidlistRec{uid: uint32(uid), vsize: -1}
	for _, p := range parts[1:] {
		switch v := p[1:]; p[0] {
		case 'P':
			rec.pop3UIDL, rec.hasP = v, true
		case 'W':
			if n, err := strconv.ParseInt(v, 10, 64); err == nil && n >= 0 {
				rec.vsize = n
			}
		case 'G':
			rec.guid = v
		case 'O':
			if n, err := strconv.ParseUint(v, 10, 32); err == nil {
				rec.order, rec.hasOrder = uint32(n), true
			}
		}
	}
	return rec, name, true
}

// uidl returns the UIDL Dovecot's POP3 server showed for the message with
// base name base: the P field verbatim if present (an empty P means the
// base name: maildir-mail.c, MAIL_FETCH_UIDL_BACKEND), else the default
// pop3_uidl_format of Dovecot 2.3, "%08Xu%08Xv".
//
// In that format X is not printf's %X: Dovecot's var_expand (src/lib/
// var-expand.c, m_str_hex) formats the value with "%llx", lowercase hex,
// and "08" pads it with zeros to 8 digits. So UID 1 of UIDVALIDITY
// 1796662115 is "000000016b16e363", as Dovecot 2.3.19 serves it. Serving
// the same digits in uppercase would be a different UIDL (RFC 1939 §7
// compares them as strings), and every client that kept mail on the server
// would download it all again.
//
// With a configured format (Options.UIDLFormat) the record's UID, the
// file's UIDVALIDITY, the base name as %f and the G field (else the base
// name, as maildir_mail_get_special does) as %g are expanded in it
// instead; the P field still wins, as in pop3_get_uid.
func (l *dovecotUIDList) uidl(rec uidlistRec, base string, f *uidlfmt.Format) string {
	if rec.hasP {
		if rec.pop3UIDL == "" {
			return base
		}
		return rec.pop3UIDL
	}
	if f != nil {
		guid := rec.guid
		if guid == "" {
			guid = base
		}
		return f.Expand(uidlfmt.Values{UID: rec.uid, UIDValidity: l.uidValidity, Filename: base, GUID: guid})
	}
	return fmt.Sprintf("%08x%08x", rec.uid, l.uidValidity)
}

// maxUID returns the highest UID of any record.
func (l *dovecotUIDList) maxUID() uint32 {
	var m uint32
	for _, r := range l.recs {
		m = max(m, r.uid)
	}
	return m
}
