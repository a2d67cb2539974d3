package maildir

import (
	"bufio"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"strconv"
	"strings"
	"syscall"

	"github.com/postoffice-mail/postoffice/internal/store/safefs"
)

// readCourierList reads Courier-IMAP's courierpop3dsizelist, the file in
// which Courier's POP3 server (courier-libs, imap/pop3dserver.C) keeps each
// message's size and POP3 UID, and returns the UIDL Courier served for each
// message key (file name without the info part). The format was taken
// from that source, not from a running Courier. Its versions:
//
//	/3 <nextuid> <uidvalidity>        Courier with UTF-8 POP3 (current)
//	<filename> <size> <uid>:<uidvalidity>:<utf8>
//
//	/2 <nextuid> <uidvalidity>        Courier-IMAP 1.x to 4.x
//	<filename> <size> <uid>:<uidvalidity>
//
//	/1 <nextuid>                      older Courier-IMAP
//	<filename> <size> <uid>
//
//	<filename> <size>                 version 0: no header line
//
// print_uidl prints "UID<uid>-<uidvalidity>", or "UID<uid>" when the
// record has no UIDVALIDITY (version 1). A version 0 record has no UID:
// its UIDL is the file name up to the first ':', with every octet outside
// 0x21-0x7E and each of ' " + written as "+XX" (two uppercase hex
// digits). The file name is the last field but two, split at the last
// two spaces as Courier splits it, so it may hold spaces. Lines that do
// not parse are skipped, as Courier skips them. A missing file is
// (nil, nil).
func readCourierList(d *safefs.Dir) (map[string]string, error) {
	f, err := d.OpenFile(courier, os.O_RDONLY|syscall.O_NONBLOCK, 0)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("maildir: %s: %w", courier, err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 4096), 64<<10)
	out := make(map[string]string)
	first := true
	version := 0
	for sc.Scan() {
		line := sc.Text()
		if first {
			first = false
			if strings.HasPrefix(line, "/") {
				v, _, _ := strings.Cut(line[1:], " ")
				n, err := strconv.Atoi(v)
				if err != nil || n < 1 || n > 3 {
					return nil, fmt.Errorf("maildir: %s: unsupported version %q", courier, v)
				}
				version = n
				continue
			}
		}
		name, uidl, ok := parseCourierLine(line, version)
		if ok {
			out[name] = uidl
		}
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("maildir: %s: %w", courier, err)
	}
	return out, nil
}

// parseCourierLine parses one record of a version's file and returns the
// message key and its UIDL.
func parseCourierLine(line string, version int) (key, uidl string, ok bool) {
	if version == 0 {
		line += " 0" // Courier's own conversion of version 0 records
	}
	i := strings.LastIndexByte(line, ' ')
	if i < 0 {
		return "", "", false
	}
	j := strings.LastIndexByte(line[:i], ' ')
	if j <= 0 {
		return "", "", false
	}
	name, sizeStr, uidStr := line[:j], line[j+1:i], line[i+1:]
	if k := strings.LastIndexByte(name, '/'); k >= 0 {
		name = name[k+1:]
	}
	if _, err := strconv.ParseUint(sizeStr, 10, 64); err != nil || name == "" {
		return "", "", false
	}
	key, _, _ = strings.Cut(name, ":")
	if key == "" {
		return "", "", false
	}
	nStr, rest, _ := strings.Cut(uidStr, ":")
	n, err := strconv.ParseUint(nStr, 10, 64)
	if err != nil {
		return "", "", false
	}
	if n == 0 {
		return key, courierNameUIDL(key), true
	}
	vStr, _, _ := strings.Cut(rest, ":")
	var v uint64
	if vStr != "" {
		if v, err = strconv.ParseUint(vStr, 10, 64); err != nil {
			return "", "", false
		}
	}
	if v == 0 {
		return key, "UID" + strconv.FormatUint(n, 10), true
	}
	return key, "UID" + strconv.FormatUint(n, 10) + "-" + strconv.FormatUint(v, 10), true
}

// courierNameUIDL is Courier's version 0 UIDL of a message key.
func courierNameUIDL(key string) string {
	var b strings.Builder
	for i := 0; i < len(key); i++ {
		c := key[i]
		if c < 0x21 || c > 0x7e || c == '\'' || c == '"' || c == '+' {
			fmt.Fprintf(&b, "+%02X", c)
		} else {
			b.WriteByte(c)
		}
	}
	return b.String()
}
