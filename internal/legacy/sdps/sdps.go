// Package sdps serves Demon Internet's Standard Dial-up POP3 Service (SDPS)
// multi-drop maildrops on the POP3 listeners: one maildrop for a whole
// host or domain, into which delivery puts the mail of every local part
// at that domain, each copy keeping the SMTP envelope it was delivered
// with.
//
// What is known of SDPS comes from Demon's technical page (no longer
// online) as fetchmail's documentation and source (pop3.c, transact.c)
// record it:
//   - "USER host" selects all the mail of the dial-up host; "USER
//     user@host" only the mail whose envelope recipient's local part is
//     user. We also take "user+host", the form of the same login for
//     clients that cannot send '@' (auth.LoginAlias). Every form logs in
//     with the drop's password: the drop is a user of the user database
//     named after the domain ("host.example"), and "john@host.example"
//     is not a user of its own.
//   - "*ENV n" answers with the envelope of message n; fetchmail takes
//     the sender from the 4th line and the recipient from the 5th, status
//     line included (pop3server.EnvelopeMailbox has the layout).
//   - RETR sends the message with a Return-Path header field in front;
//     delivery (internal/lmtp, postoffice deliver) already writes one.
//   - APOP was not implemented by Demon; here the "user@host" selection
//     is made for USER/PASS only, and any login method that names the
//     drop itself gets the whole drop with *ENV.
//
// The envelope is stored with the message, as the first two header
// fields delivery writes in front of every message it stores:
//
//	Return-Path: <sender>
//	Delivered-To: <recipient>
//
// with one copy per recipient, so each copy has one recipient. Only those
// two fields at the very top count: a Delivered-To further down was
// written by someone else (an earlier hop, or the sender) and says
// nothing about this delivery. A message without them (put into the
// Maildir by other means) has an unknown envelope: *ENV gives empty
// lines, and a "user@host" login does not show it.
//
// A "user@host" login reads the first lines of every message of the drop
// to find its recipients (at most MaxHeaderLine octets per line, two
// lines per message): its cost grows with the drop, unlike a whole-drop
// login, which reads nothing at login.
package sdps

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"

	"github.com/postoffice-mail/postoffice/internal/auth"
	"github.com/postoffice-mail/postoffice/pop3proto"
	"github.com/postoffice-mail/postoffice/pop3server"
)

// Domains is the set of SDPS domains (config [sdps] domains). Its zero
// value, and nil, hold none.
type Domains struct {
	set map[string]bool // lower case
}

// NewDomains returns the set of domains, compared without regard to
// ASCII case. A domain must be a host name: letters, digits, '-' and '.'.
func NewDomains(list []string) (*Domains, error) {
	d := &Domains{set: make(map[string]bool, len(list))}
	for _, name := range list {
		if !validDomain(name) {
			return nil, fmt.Errorf("sdps: %q is not a domain name", name)
		}
		d.set[strings.ToLower(name)] = true
	}
	return d, nil
}

func validDomain(h string) bool {
	if h == "" || len(h) > 253 || h[0] == '.' || h[len(h)-1] == '.' || h[0] == '-' || strings.Contains(h, "..") {
		return false
	}
	for i := 0; i < len(h); i++ {
		b := h[i]
		if !('a' <= b && b <= 'z' || 'A' <= b && b <= 'Z' || '0' <= b && b <= '9' || b == '-' || b == '.') {
			return false
		}
	}
	return true
}

// Has reports whether domain is an SDPS domain.
func (d *Domains) Has(domain string) bool {
	return d != nil && d.set[strings.ToLower(domain)]
}

// Split reads a login name: "host" is the whole drop of host (local ""),
// "john@host" and "john+host" the part of it for john. ok is false when
// the name names no SDPS domain. The drop is returned as configured case
// aside, in lower case: the user database name of the drop.
func (d *Domains) Split(login string) (drop, local string, ok bool) {
	if d.Has(login) {
		return strings.ToLower(login), "", true
	}
	name := login
	if alias, isAlias := auth.LoginAlias(login); isAlias {
		name = alias
	}
	i := strings.LastIndexByte(name, '@')
	if i <= 0 || !d.Has(name[i+1:]) {
		return "", "", false
	}
	return strings.ToLower(name[i+1:]), name[:i], true
}

// Drop returns the drop a recipient address delivers to: the domain of
// "anything@host" when host is an SDPS domain. The address as given stays
// the envelope recipient of the copy (its Delivered-To).
func (d *Domains) Drop(rcpt string) (string, bool) {
	i := strings.LastIndexByte(rcpt, '@')
	if i <= 0 || !d.Has(rcpt[i+1:]) {
		return "", false
	}
	return strings.ToLower(rcpt[i+1:]), true
}

// Wrap is the package's Wrap, so that *Domains is the multi-drop hook of
// internal/backend (backend.MultiDrop).
func (d *Domains) Wrap(ctx context.Context, m pop3server.Mailbox, local string) (pop3server.Mailbox, error) {
	return Wrap(ctx, m, local)
}

// MaxHeaderLine bounds each of the two envelope lines read from a message.
const MaxHeaderLine = 1000

// ReadEnvelope reads the envelope delivery stored in front of a message:
// a first header line "Return-Path: <sender>" and a second
// "Delivered-To: <recipient>" (names case-insensitive, LF or CRLF). ok is
// false when the message does not start so.
func ReadEnvelope(r io.Reader) (from, to string, ok bool) {
	br := bufio.NewReaderSize(io.LimitReader(r, 2*MaxHeaderLine), 2*MaxHeaderLine)
	from, ok1 := headerAddr(br, "Return-Path:")
	to, ok2 := headerAddr(br, "Delivered-To:")
	if !ok1 || !ok2 {
		return "", "", false
	}
	return from, to, true
}

// headerAddr reads one line and returns the address in its angle brackets
// if the line is the field name.
func headerAddr(br *bufio.Reader, name string) (string, bool) {
	line, err := br.ReadSlice('\n')
	if err != nil || len(line) > MaxHeaderLine {
		return "", false
	}
	s := strings.TrimRight(string(line), "\r\n")
	if len(s) < len(name) || !strings.EqualFold(s[:len(name)], name) {
		return "", false
	}
	s = strings.TrimSpace(s[len(name):])
	if !strings.HasPrefix(s, "<") || !strings.HasSuffix(s, ">") {
		return "", false
	}
	return s[1 : len(s)-1], true
}

// Wrap makes the mailbox an SDPS login sees of the drop m: all of it with
// envelopes (local ""), or only the messages whose envelope recipient's
// local part is local (compared without regard to ASCII case, as
// delivery compares recipients). Deleting through the selection deletes
// those messages of the drop.
func Wrap(ctx context.Context, m pop3server.Mailbox, local string) (pop3server.Mailbox, error) {
	if local == "" {
		return &mailbox{m: m, msgs: m.Messages()}, nil
	}
	all := m.Messages()
	sel := &mailbox{m: m}
	for i := range all {
		_, to, err := envelope(ctx, m, i)
		var pe *pop3server.Error
		if errors.As(err, &pe) {
			continue // vanished since the snapshot: not there to show
		}
		if err != nil {
			m.Close()
			return nil, &pop3server.Error{Code: pop3proto.CodeSysTemp, Text: "Cannot open the maildrop now; try again in a few minutes, and tell the administrator if it persists", Err: err}
		}
		if j := strings.LastIndexByte(to, '@'); j > 0 && strings.EqualFold(to[:j], local) {
			sel.idx = append(sel.idx, i)
			sel.msgs = append(sel.msgs, all[i])
		}
	}
	if sel.idx == nil {
		sel.idx = []int{} // a selection, even when empty
	}
	return sel, nil
}

// envelope reads the envelope of message i of m; an unknown one is "".
func envelope(ctx context.Context, m pop3server.Mailbox, i int) (string, string, error) {
	r, err := m.Open(ctx, i)
	if err != nil {
		return "", "", err
	}
	defer r.Close()
	from, to, _ := ReadEnvelope(r)
	return from, to, nil
}

// mailbox is a drop, whole (idx nil) or a selection of it.
type mailbox struct {
	m    pop3server.Mailbox
	idx  []int // the drop's index of each message shown; nil: all
	msgs []pop3proto.MessageInfo
}

var _ pop3server.EnvelopeMailbox = (*mailbox)(nil)

func (s *mailbox) drop(i int) int {
	if s.idx == nil {
		return i
	}
	return s.idx[i]
}

func (s *mailbox) Messages() []pop3proto.MessageInfo { return s.msgs }

func (s *mailbox) Open(ctx context.Context, i int) (io.ReadCloser, error) {
	return s.m.Open(ctx, s.drop(i))
}

func (s *mailbox) Envelope(ctx context.Context, i int) (string, string, error) {
	return envelope(ctx, s.m, s.drop(i))
}

// Commit deletes the drop's messages behind the selection's numbers, in
// the ascending order the contract asks for (the selection keeps the
// drop's order, so it stays ascending).
func (s *mailbox) Commit(ctx context.Context, deleted []int) error {
	d := make([]int, len(deleted))
	for k, i := range deleted {
		d[k] = s.drop(i)
	}
	slices.Sort(d)
	return s.m.Commit(ctx, d)
}

func (s *mailbox) Close() error { return s.m.Close() }
