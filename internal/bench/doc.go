// Package bench owns postoffice's load tools: a POP3 load generator that
// verifies every reply it counts, a seeder that writes realistic Maildirs
// and the passwd-files for postoffice and Dovecot, and a minimal in-memory
// POP3 responder that measures the generator's own ceiling. The
// `postoffice bench` subcommand and bench/compare.sh drive it; the
// method and the targets are in docs/performance.md.
//
// Implementation notes:
//   - The generator speaks POP3 (RFC 1939) through its own lean client
//     (client.go), not the pop3 package: the hot loop reads multi-line
//     bodies straight out of its buffer, counting un-stuffed octets without
//     copying them. BenchmarkClient compares the two against the responder.
//   - Nothing wrong counts as speed. A session counts only if every reply
//     was +OK where +OK was due, STAT agrees with the probe taken before the
//     run, UIDL lists as many messages as STAT, every RETR body un-stuffed is
//     exactly its LIST size and ends with the terminating ".", and every
//     TOP n 0 is the header and blank line only. Anything else is an error,
//     counted by kind and reported apart; its bytes are not counted.
//   - Every loop is bounded: by a session count, a duration, or both, and
//     every network read and write by a deadline.
//   - Message sizes are octets in CRLF form before dot-stuffing
//     (RFC 1939 §11), what LIST reports.
package bench
