// Package pop3proto is the vocabulary the POP3 client (package pop3) and
// the POP3 server engine (package pop3server) share, defined once for both:
//   - the response codes of RFC 2449 §8 and RFC 3206 (Code), which the
//     server writes in brackets at the start of a -ERR reply and the
//     client reads back;
//   - MessageInfo, one message of a maildrop as LIST and UIDL describe it
//     (RFC 1939 §5, §7), which a server backend hands the engine.
//
// It plays the part of go-imap v2's root package imap, which holds the
// types imapclient and imapserver share. Here the short name pop3 already
// belongs to the client, as it does in most Go POP3 libraries, so the
// shared words have a package of their own, named as net/textproto and
// protobuf's proto are: for the protocol, with no implementation in it.
// It imports nothing, so the internal stores may use MessageInfo as well
// without depending on the engine.
package pop3proto

// Code is a response code (RFC 2449 §8) without its brackets: levels
// separated by "/", such as "SYS/TEMP". A server may send codes not listed
// here, and sub-levels of listed ones ("SYS/TEMP/DISK"); a client ignores
// levels it does not know.
type Code string

// The response codes of RFC 2449 §8 and RFC 3206.
const (
	CodeInUse      Code = "IN-USE"      // maildrop locked by another session (RFC 2449 §8.1.2)
	CodeLoginDelay Code = "LOGIN-DELAY" // logged in too recently (RFC 2449 §8.1.1)
	CodeAuth       Code = "AUTH"        // credentials rejected (RFC 3206 §5)
	CodeSysTemp    Code = "SYS/TEMP"    // transient failure, retry later (RFC 3206 §4)
	CodeSysPerm    Code = "SYS/PERM"    // permanent failure (RFC 3206 §4)
)

// MessageInfo is one message of a maildrop snapshot: what LIST (its size)
// and UIDL (its unique id) report for it. Its message number is its
// position in the snapshot plus one.
type MessageInfo struct {
	// Size is the octet count RETR sends: the message in CRLF form,
	// before dot-stuffing (RFC 1939 §11: LIST must give the exact size).
	Size int64
	// UID is the unique id UIDL lists: 1-70 characters of 0x21-0x7E,
	// unique in the maildrop and stable across sessions (RFC 1939 §7).
	UID string
}
