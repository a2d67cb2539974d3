package pop4

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"mime"
	"mime/multipart"
	"net/textproto"
	"slices"
	"strconv"
	"strings"

	"github.com/postoffice-mail/postoffice/internal/store"
	"github.com/postoffice-mail/postoffice/pop3server"
)

// maxListed bounds the message numbers of one MOVE or COPY.
const maxListed = 100

// copyMsgs runs "COPY n[,m...] folder" and "MOVE n[,m...] folder". Every
// number is checked before anything is copied; each copy is durable
// before the next (DeliverFolder); MOVE then marks the messages deleted.
// A failure in the middle leaves the copies made so far and marks
// nothing.
func (e *Extension) copyMsgs(ctx context.Context, s *pop3server.ExtensionSession, user, folder, args string, move bool) error {
	nums, target, found := strings.Cut(args, " ")
	if !found || nums == "" || target == "" {
		kw := map[bool]string{true: "MOVE", false: "COPY"}[move]
		return s.Bad("-ERR " + kw + " needs message numbers and a folder: send " + kw + " n[,m...] folder")
	}
	if move && within(folder, target) && within(target, folder) {
		s.Reply("-ERR Cannot move messages into the folder they are in: choose another folder")
		return nil
	}
	parts := strings.Split(nums, ",")
	if len(parts) > maxListed {
		return s.Bad("-ERR Too many message numbers, at most 100 at once: send them in several commands")
	}
	var idx []int
	for _, p := range parts {
		i, ok, err := s.Message(p)
		if !ok {
			return err
		}
		if !slices.Contains(idx, i) {
			idx = append(idx, i)
		}
	}
	mb := s.Mailbox()
	for _, i := range idx {
		r, err := mb.Open(ctx, i)
		if err != nil {
			var pe *pop3server.Error
			if errors.As(err, &pe) {
				s.Reply("-ERR [" + string(pe.Code) + "] " + pe.Text)
				return nil
			}
			e.log.Error("pop4 opening message failed", "conn", s.Conn().ID, "msg", i+1, "err", err)
			s.Reply("-ERR [SYS/TEMP] Cannot read the message now; try again in a few minutes, and tell the administrator if it persists")
			return nil
		}
		err = e.folders.DeliverFolder(ctx, user, target, r)
		r.Close()
		if err != nil {
			e.storeError(s, err)
			return nil
		}
	}
	if move {
		for _, i := range idx {
			s.MarkDeleted(i)
		}
		s.Reply("+OK Messages moved; removed from this folder at QUIT")
		return nil
	}
	s.Reply("+OK Messages copied")
	return nil
}

// part runs "PART n section": the MIME part of message n that section
// names, numbered as IMAP numbers body parts (RFC 3501 §6.4.5): "1" is
// the first part of a multipart message, "2.1" the first part inside the
// second; a message that is not multipart has one part, "1", its body.
// The reply body is the part's MIME header, its fields sorted, then an
// empty line and the part's content as stored (still in its
// Content-Transfer-Encoding).
func (e *Extension) part(ctx context.Context, s *pop3server.ExtensionSession, args string) error {
	num, section, found := strings.Cut(args, " ")
	if !found || section == "" {
		return s.Bad("-ERR PART needs a message number and a part number: send PART n section, such as PART 1 2.1")
	}
	path, ok := parseSection(section)
	if !ok {
		return s.Bad("-ERR Invalid part number: use numbers from 1 to 9999 joined by dots, such as 2.1")
	}
	i, ok, err := s.Message(num)
	if !ok {
		return err
	}
	r, err := s.Mailbox().Open(ctx, i)
	if err != nil {
		var pe *pop3server.Error
		if errors.As(err, &pe) {
			s.Reply("-ERR [" + string(pe.Code) + "] " + pe.Text)
			return nil
		}
		e.log.Error("pop4 opening message failed", "conn", s.Conn().ID, "msg", i+1, "err", err)
		s.Reply("-ERR [SYS/TEMP] Cannot read the message now; try again in a few minutes, and tell the administrator if it persists")
		return nil
	}
	defer r.Close()
	hdr, body, err := findPart(bufio.NewReader(r), path)
	if err != nil {
		s.Reply("-ERR No such part in this message: use 1 for a message that is not multipart, or check its MIME structure with RETR")
		return nil
	}
	s.Reply("+OK Part follows")
	var h strings.Builder
	for _, k := range slices.Sorted(keys(hdr)) {
		for _, v := range hdr[k] {
			fmt.Fprintf(&h, "%s: %s\r\n", k, v)
		}
	}
	h.WriteString("\r\n")
	return s.WriteBody(io.MultiReader(strings.NewReader(h.String()), body))
}

func keys(h textproto.MIMEHeader) func(func(string) bool) {
	return func(yield func(string) bool) {
		for k := range h {
			if !yield(k) {
				return
			}
		}
	}
}

// parseSection parses "1", "2.1": at most 8 levels of numbers 1-9999.
func parseSection(s string) ([]int, bool) {
	levels := strings.Split(s, ".")
	if len(levels) > 8 {
		return nil, false
	}
	var path []int
	for _, l := range levels {
		n, err := strconv.Atoi(l)
		if err != nil || n < 1 || n > 9999 || len(l) > 4 {
			return nil, false
		}
		path = append(path, n)
	}
	return path, true
}

// findPart walks a message down path, streaming: only header blocks are
// held in memory (net/textproto bounds their size). A part that is itself
// a message/rfc822 is not entered: its parts are not numbered.
func findPart(r *bufio.Reader, path []int) (textproto.MIMEHeader, io.Reader, error) {
	hdr, err := textproto.NewReader(r).ReadMIMEHeader()
	if err != nil && !errors.Is(err, io.EOF) {
		return nil, nil, err
	}
	var body io.Reader = r
	for level, n := range path {
		mt, params, err := mime.ParseMediaType(hdr.Get("Content-Type"))
		if err != nil || !strings.HasPrefix(mt, "multipart/") || params["boundary"] == "" {
			if n != 1 || level != len(path)-1 {
				return nil, nil, errors.New("pop4: no such part")
			}
			// Not multipart: part 1 is the body; its MIME header is the
			// message's Content-* fields.
			ch := textproto.MIMEHeader{}
			for k, v := range hdr {
				if strings.HasPrefix(k, "Content-") {
					ch[k] = v
				}
			}
			return ch, body, nil
		}
		mr := multipart.NewReader(body, params["boundary"])
		var p *multipart.Part
		for range n {
			if p, err = mr.NextRawPart(); err != nil {
				return nil, nil, fmt.Errorf("pop4: no such part: %w", err)
			}
		}
		hdr, body = p.Header, p
	}
	return hdr, body, nil
}

// flag runs "FLAG n" (show the flags of message n) and "FLAG n flags"
// (set them): flags are Maildir info letters (D draft, F flagged, P
// passed, R replied, S seen, T trashed), "+letters" adds, "-letters"
// removes, "=letters" or bare letters replace, and "-" alone clears them all. The
// reply is "+OK " and the flags now set (possibly none).
func (e *Extension) flag(ctx context.Context, s *pop3server.ExtensionSession, args string) error {
	num, spec, _ := strings.Cut(args, " ")
	i, ok, err := s.Message(num)
	if !ok {
		return err
	}
	fl, ok := maildrop(s).(store.Flagged)
	if !ok {
		s.Reply("-ERR [SYS/PERM] This mailbox keeps no message flags: use the other commands, FLAG works on Maildir mailboxes only")
		return nil
	}
	have, err := fl.Flags(i)
	if err != nil {
		e.log.Error("pop4 reading flags failed", "conn", s.Conn().ID, "err", err)
		s.Reply("-ERR [SYS/TEMP] Cannot read the flags now; try again in a few minutes, and tell the administrator if it persists")
		return nil
	}
	if spec == "" {
		s.Reply(strings.TrimSpace("+OK " + have))
		return nil
	}
	want, ok := applyFlags(have, spec)
	if !ok {
		return s.Bad("-ERR Invalid flags: use letters among DFPRST after an optional +, - or =, or - alone to clear them")
	}
	if err := fl.SetFlags(ctx, i, want); err != nil {
		if errors.Is(err, store.ErrNoMessage) {
			s.Reply("-ERR [SYS/PERM] Message was removed by another program meanwhile; skip it, or QUIT and log in again for a fresh list")
			return nil
		}
		e.log.Error("pop4 setting flags failed", "conn", s.Conn().ID, "err", err)
		s.Reply("-ERR [SYS/TEMP] Cannot set the flags now; try again in a few minutes, and tell the administrator if it persists")
		return nil
	}
	s.Reply(strings.TrimSpace("+OK " + want))
	return nil
}

// applyFlags applies a FLAG argument to the flags have.
func applyFlags(have, spec string) (string, bool) {
	op := byte('=')
	if spec[0] == '+' || spec[0] == '-' || spec[0] == '=' {
		op, spec = spec[0], spec[1:]
	}
	if spec == "" && op != '-' {
		return "", false
	}
	for _, c := range []byte(spec) {
		if !strings.ContainsRune("DFPRST", rune(c)) {
			return "", false
		}
	}
	var out []byte
	switch op {
	case '=':
		out = []byte(spec)
	case '+':
		out = append([]byte(have), spec...)
	case '-':
		if spec == "" {
			return "", true
		}
		for _, c := range []byte(have) {
			if !strings.ContainsRune(spec, rune(c)) {
				out = append(out, c)
			}
		}
	}
	slices.Sort(out)
	return string(slices.Compact(out)), true
}
