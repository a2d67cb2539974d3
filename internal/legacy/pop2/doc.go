// Package pop2 serves the Post Office Protocol's first two versions on one
// listener (port 109, "pop2" in /etc/services): POP2 (RFC 937) and POP1
// (RFC 918), over the same logins (internal/backend) and the same store as
// POP3. A session is one or the other, told apart by its first command:
// POP2 starts with HELO, POP1 with USER. Both send passwords in the clear
// and have no TLS: the listener is off unless configured, and a login from
// a non-loopback address is refused unless plaintext logins are allowed
// (Options.AllowPlaintextAuth, the POP3 listeners' rule).
//
// # POP2 (RFC 937)
//
// Replies start with '+' (success), '-' (failure), '#' (a message count)
// or '=' (a message length). The server greets with "+ POP2 ... ready".
//
//	HELO user password   log in; "#n", the messages in INBOX
//	FOLD name            select a folder; "#n" ("INBOX", or a Maildir++
//	                     folder: store.Folders); the deletions acknowledged
//	                     in the folder being left are committed first
//	READ [n]             make message n current (without n: the current
//	                     one) and answer its length "=ccc"; "=0" when there
//	                     is no such message (or it was deleted)
//	RETR                 send the current message: exactly ccc octets, CRLF
//	                     line ends, no reply line and no terminator; then
//	                     the client acknowledges:
//	ACKS                 received, keep it: the next message becomes
//	                     current, "=ccc" of it ("=0" past the end)
//	ACKD                 received, delete it: as ACKS, and the message is
//	                     removed when the folder is left (FOLD, QUIT)
//	NACK                 not received: the message stays current and is
//	                     kept, "=ccc" of it again
//	QUIT                 commit the deletions, "+ OK", close
//
// This is the sequence fetchmail's POP2 driver sends: HELO, FOLD when a
// folder is configured, then for each message READ n, RETR, and ACKS or
// ACKD; QUIT. It reads exactly ccc octets after RETR without a reply line.
//
// As in POP3 (RFC 1939 §6), a session that ends without QUIT (dropped,
// timed out, shut down) deletes nothing. RFC 937 does not say what NACK
// answers; "=ccc" of the same message lets a client retry with RETR.
//
// # POP1 (RFC 918)
//
// No copy of RFC 918 was at hand when this was written; what it holds was
// recovered from what RFC 937 says of it and from the era's descriptions:
// a whole mailbox is one unit, sent as one stream. The commands:
//
//	USER name, PASS pw   log in ("+" / "-")
//	RETR [mailbox]       "+ccc", the length of the mailbox's stream
//	                     (INBOX when no name, or the user's own name, is
//	                     given; else a folder)
//	RDEL [mailbox]       as RETR; the mailbox is emptied once the client
//	                     confirms with RCVD
//	RCEV                 send the stream: exactly ccc octets, no reply line
//	RCVD                 the client received it: "+"; after RDEL, the
//	                     messages sent are removed, durably, before "+"
//	NOOP                 "+"
//	QUIT                 "+", close; nothing is removed that RCVD did not
//	                     confirm
//
// The stream is the messages in the Unix mailbox layout of the time (an
// "mboxrd" file): each message preceded by a "From " line and followed by
// an empty line, lines beginning with ">*From " quoted with one more '>',
// CRLF line ends. Where RFC 918 said otherwise, clients of it have not been
// seen in decades; this is the part of the package that is a
// reconstruction rather than an implementation of a text.
//
// # Implementation notes
//   - Command lines are at most 512 octets; every loop is bounded by the
//     session's limits (Options.MaxBadCommands, three failed logins) and
//     every read by a deadline (PreLoginTimeout before login, IdleTimeout
//     after).
//   - A message whose octets differ from the length announced (changed on
//     disk under the lock: it should not happen) ends the session after
//     exactly the announced count, so a client never waits for octets that
//     will not come nor reads the next reply as message data.
//   - Deletions reach the store only through Maildrop.Commit (ACKD then
//     FOLD or QUIT; RDEL then RCVD); anything else deletes nothing.
package pop2
