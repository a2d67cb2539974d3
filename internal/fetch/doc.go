// Package fetch is the mail fetcher behind "postoffice fetch": it reads
// [[account]] tables from a TOML file, retrieves new mail from each POP3
// server (RFC 1939, with the extensions of RFC 2449 and RFC 5034 through
// package pop3) and delivers it to a Maildir, an mboxrd file, an MDA
// command or an LMTP (RFC 2033) or SMTP (RFC 5321) server through
// internal/lmtp, keeping a per-account UIDL state.
//
// Implementation notes:
//   - The order per message is: RETR (or TOP n 0) streamed into the target,
//     the target's delivery durable (Maildir: tmp/, fsync, link into new/,
//     directory fsync; mbox: fsync; MDA: exit 0; LMTP/SMTP: 250 for the
//     recipient after the message), then the UIDL recorded in
//     the state journal and fsynced, then DELE if the policy says so. A kill
//     at any instant therefore loses nothing (RFC 1939 §6: DELE takes
//     effect only at QUIT, so an uncommitted DELE is simply sent again next
//     run).
//   - Messages go in batches of up to 64 (or 32 MiB of LIST sizes): the
//     batch's RETRs are pipelined (RFC 2449 §6.6, when the server lists
//     PIPELINING), and for a Maildir target the batch is committed as a
//     group: its files fsynced together, linked into new/, new/ fsynced
//     once, the batch's records appended with one fsync, then its DELEs
//     pipelined. The order above holds for every message; a kill costs at
//     most the batch in flight fetched again, never a duplicate, as the
//     Maildir names (below) make delivery idempotent. A target that cannot
//     tell a repeated delivery (mbox, MDA, LMTP, SMTP) has each message
//     recorded as soon as it is delivered, so a kill delivers at most the
//     one message in flight twice; only its DELEs are batched.
//   - A message fetched in part (TOP n 0: headers_only, oversize =
//     "truncate") is recorded as partial and never DELEd: the copy on the
//     server is its only whole one. headers_only with keep = false or
//     delete_after_days is a config error.
//   - A Maildir delivery is named after SHA-256(account, UIDL) and the
//     header digest (headerHash), and a name with both in new/ or cur/ (any
//     flags) counts as delivered: a Maildir target never gets a duplicate.
//   - Servers may reuse UIDLs despite RFC 1939 §7. Each record holds the
//     LIST size and header digest; before a DELE of a message recorded in
//     an earlier session, before a Maildir copy with the UIDL is taken as
//     delivered, and when LIST gives another size, TOP n 0 confirms the
//     header (see recorded). A mismatch is fetched as new, never deleted.
//   - The state is a snapshot plus an append-only journal (see State): one
//     fsynced append per message or batch, one atomic rewrite per session, so 100,000
//     UIDLs cost no per-message rewrite. Entries whose UIDL is no longer on
//     the server are pruned after each complete UIDL listing.
//   - A server whose UIDLs share none with a state of more than
//     MinMigrationState entries (with keep = true) has changed its UIDLs; the
//     run stops with ExitDataErr rather than fetch everything again.
//   - A message an LMTP/SMTP target refuses for good (5xx to MAIL or after
//     DATA) is recorded as rejected: never fetched again, never deleted.
//   - Message bodies stream from the socket to the target; none is held whole
//     in memory. CRLF line ends become LF for the local formats.
package fetch
