// Package wire is the POP3 line and message codec shared by the client
// (package pop3) and the server (package pop3server): a bounded line reader,
// the dot-stuffing message writer and its un-stuffing reader, the CRLF size
// of a stored message, and the TOP cut.
//
// RFC 1939 §3: lines end in CRLF; a multi-line response ends with a line
// holding a single "."; data lines starting with "." are byte-stuffed.
//
// Implementation notes:
//   - Messages stream: nothing here holds a whole message in memory.
//   - DotWriter sends exactly CRLFSize(message) octets before stuffing, so the
//     size LIST reports is the size RETR sends (RFC 1939 §11).
//   - LineReader never grows past its limit: an oversize line is consumed to
//     its end and reported as ErrLineTooLong, so the session stays in step.
//     ReadLineAtMost, for a server, reports an oversize line as soon as its
//     limit is passed and reads no further: a peer cannot make it wait for
//     the end of an endless line.
package wire
