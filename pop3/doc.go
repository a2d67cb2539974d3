// Package pop3 is the POP3 client of postoffice: it dials a server (plain,
// implicit TLS or STLS), reads capabilities, logs in (USER/PASS, APOP or
// SASL) and lists, retrieves and deletes messages, streaming every message
// body.
//
// It implements the client side of:
//   - RFC 1939, Post Office Protocol - Version 3
//   - RFC 2449, POP3 Extension Mechanism (CAPA, RESP-CODES, PIPELINING, ...)
//   - RFC 2595, Using TLS with IMAP, POP3 and ACAP (STLS)
//   - RFC 5034, The POP3 SASL Authentication Mechanism (AUTH), with the
//     mechanisms PLAIN (RFC 4616), LOGIN, CRAM-MD5 (RFC 2195), SCRAM-SHA-1
//     and SCRAM-SHA-256 (RFC 5802, RFC 7677) and their -PLUS variants with
//     channel binding (tls-exporter, RFC 9266; tls-server-end-point, RFC
//     5929), EXTERNAL (RFC 4422), OAUTHBEARER (RFC 7628) and XOAUTH2
//   - RFC 3206, The SYS and AUTH POP Response Codes
//   - RFC 8314, Cleartext Considered Obsolete (implicit TLS, port 995)
//
// A Client is safe for use by one goroutine at a time. Every method that
// talks to the server takes a context: its deadline and cancellation apply
// to the network I/O of that command (for Retr and Top, until the body is
// read or closed). A command interrupted half way, a reply that does not
// parse and a failed connection leave the Client broken: every later
// command returns the same error, and the only thing left to do is Close.
// A -ERR reply is an *Error and leaves the Client usable; its response
// code is compared with the constants of package pop3proto, the vocabulary
// this client and the server engine (pop3server) share.
//
// Implementation notes:
//   - Message bodies stream through wire.DotReader: no body is ever held
//     whole in memory and body lines have no length limit. Reply lines
//     (greeting, status, LIST, UIDL, CAPA, SASL challenges) are bounded by
//     a lenient limit of MaxReplyLine octets (RFC 1939 §3 and RFC 2449 §4
//     say 512; real servers send more). A line that passes the limit fails
//     the command with ErrProtocol at once and closes the connection: the
//     rest of the line is never read, so a server sending an endless line
//     costs at most MaxReplyLine octets and one read buffer.
//   - The body of Retr or Top must be read to its end or closed before the
//     next command; Close reads and discards the rest.
//   - Deletions happen only if Quit gets +OK (RFC 1939 §6): Close without
//     Quit, a dropped connection or a cancelled context delete nothing.
//   - The cached capabilities are dropped after STLS (RFC 2595 §4) and after
//     a successful login (RFC 2449 §5), so Capabilities asks again.
//   - Bytes the server sends after the +OK to STLS, before the TLS
//     handshake, fail the connection (a command injection, CVE-2021-22947).
//   - SCRAM is mutual: Authenticate fails (ErrServerNotVerified) when the
//     server's +OK comes without a valid server signature.
//   - The debug trace never contains the arguments of PASS, APOP or AUTH,
//     SASL responses or message data.
package pop3
