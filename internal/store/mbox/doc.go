// Package mbox is postoffice's store for Berkeley mbox files, one per user,
// as /var/mail holds them (location "mbox:/var/mail/%u"), shared with
// Postfix's local(8), procmail and mutt. It serves them as store.Maildrop
// snapshots to the POP3 engine (RFC 1939) and takes deliveries.
//
// # Format
//
// A message starts at a line beginning "From " that is the first line of
// the file or follows an empty line; that empty line separates messages
// and belongs to neither. Options.Format says how the writers quoted "From "
// lines: MboxO (default: Postfix's local(8) and procmail quote only lines
// starting "From ", so reading removes one '>' from lines starting
// ">From "; a message sent with a ">From " line therefore comes back with
// "From ", the one loss the format forces), or MboxRD (reversible: one '>'
// is removed from every ^>+From line). The quoting cannot be detected from
// the file, so it is configured, as in Dovecot and mutt. Content-Length
// (Solaris and SysV writers, which do not quote) is trusted only when the
// body it measures ends on an empty line followed by a From_ line or the
// end of the file, as mutt checks it; such a message is returned without
// un-escaping. A non-empty message delivered without a final newline is
// stored with one (the separator must start a line); its size, in CRLF
// form, is unchanged. A file that does not begin with a From_ line is
// refused with an error, never treated as empty.
//
// # Locks
//
// The locks other mail programs honour are those of Debian's Postfix
// (postconf -d mailbox_delivery_lock: "fcntl, dotlock"), taken in the
// order its local(8) takes them (src/global/mbox_open.c), as procmail and
// Dovecot do too: first the dotlock "<mbox>.lock" made with O_EXCL (see
// takeDotlock: broken after Options.StaleLockAge, 5 minutes, or at once
// when it names a dead process of this host), then an fcntl write lock on
// the whole file (as an open file description lock, which conflicts with
// the classic per-process fcntl locks of Postfix, procmail and mutt and
// also excludes goroutines of this process). The other order deadlocks
// with local(8) until one side times out. flock(2) is not taken: Debian's
// Postfix does not use it.
//
// A POP3 session does not hold those locks for its whole length, which
// would stop delivery for as long as a client stays connected. Like
// Dovecot and qpopper it holds them only while it reads the snapshot and
// while it commits. Between sessions, postoffice's own lock,
// flock(LOCK_EX|LOCK_NB) on ".<mbox>.postoffice-lock", gives
// store.ErrInUse to a second session; the kernel drops it when the holder
// dies. Between snapshot and commit the MTA may append mail: the snapshot
// knows its messages by byte offset, and appended mail lies after them and
// is kept. Another program may rewrite the file (mutt deleting or marking
// messages) or replace it: Maildrop.Open checks, for the message asked for,
// and Commit, for every message from the first deleted one on, that the
// file is the same inode, not shorter, and that the From_ line and header
// at the recorded offset still hash to the recorded key. If not, Open
// returns store.ErrNoMessage and Commit an error, and nothing is deleted.
//
// # Commit: in place, through a journal
//
// Commit rewrites the file in place rather than writing a new file and
// renaming it over the old one: a renamed file is a new inode, and a
// program waiting on the old one's fcntl lock (local(8), procmail) would
// then append to a file no longer in the spool, losing mail; this is why
// mbox tools rewrite in place. In place is made crash-safe by a journal,
// ".<mbox>.postoffice-journal" beside the mbox: it holds the complete new
// content of the file from the first deleted message on (the kept
// messages and any mail appended during the session), the offsets, the
// file's identity and a hash of old bytes that the rewrite never touches,
// under a SHA-256 trailer. It is written and fsynced (with its directory)
// before the mbox is touched; then the content is copied over the file,
// which is fsynced, truncated, fsynced, and the journal removed. Open,
// Commit and Deliver replay a journal they find, under the locks. Writing
// the journal's content at its offset and truncating can be repeated with
// the same result, so a crash during replay is replayed again; a journal
// without a valid trailer was never complete and the mbox was never
// touched, so it is discarded. Each commit is thus all or nothing. Mail
// that another program appended after a crash (once the dead process's
// dotlock was broken) is found past the old end, or past the new one if
// the file was already truncated, and kept. A kill test checks this.
//
// # Index, sizes and UIDLs
//
// ".<mbox>.postoffice-index", beside the mbox or in the directory that
// the location's INDEX= parameter names (Dovecot's INDEX=, e.g.
// "/var/mail/%u:INDEX=/var/lib/postoffice/mbox/%u"), records the file's
// device, inode, size and modification time, and for each message its
// offsets, its size in CRLF form after un-escaping (store.Message.Size),
// its key (SHA-256 of the From_ line and header, at most 64 KB) and its
// UIDL. It is replaced atomically (temporary file, fsync, rename,
// directory fsync) before Open returns whenever it changed, so a UIDL a
// client has seen is durable. When the file is unchanged Open does not
// read it; when it only grew (the last indexed message is still in place
// and a From_ line follows the indexed part) only the new part is read;
// otherwise the file is scanned again and each message keeps the UIDL of
// the indexed message with the same key (equal keys in order), so a
// rewrite by another program keeps the UIDLs.
//
// UIDLs (RFC 1939 §7) are "<stamp>.<n>": a per-index stamp (the time the
// index was made, in milliseconds, base 36) and a counter that only grows,
// so none is reused; a lost index gives new UIDLs (clients download again)
// but never old ones. When an index is first made, a message's X-UIDL
// header (written by qpopper and UW ipop3d) is kept as its UIDL if it is
// 1-70 characters of 0x21-0x7E and no other message has it, so clients of
// the old server see the same UIDLs; X-UIDL headers of mail that arrives
// later are ignored, since a sender wrote them.
//
// # UIDL schemes
//
// A site taking over an mbox from popa3d or Dovecot serves their UIDLs,
// computed from the header, to every message the index does not know yet,
// old mail at the first Open and new mail as it arrives, so clients
// download nothing again and the listing keeps its shape. X-UIDL headers
// are then ignored, as popa3d and Dovecot (pop3_reuse_xuidl = no) ignore
// them. Options.Popa3dUIDLs serves popa3d's (popa3dUIDL: an MD5 of a few
// header lines, 16 hex digits); Options.UIDLFormat a Dovecot
// pop3_uidl_format with %m, the header MD5 of Dovecot's mbox storage
// (headerMD5). Dovecot's %u and %v come from X-UID and X-IMAPbase headers
// that Dovecot writes into the mbox and postoffice does not: they are
// refused. The header is hashed as stored, at most its first 64 KB. A
// UIDL that is not valid (RFC 1939 §7) or that another message already
// has (popa3d gives two copies of one message the same UIDL) is replaced
// by one from the counter and logged.
//
// /var/mail is often root:mail, mode 2775: the mail owner cannot make
// files in it. The dotlock is then made as the process (root, as
// Postfix's local(8) and Dovecot with mail_privileged_group make theirs),
// and the index, session lock and journal are made as root with O_EXCL
// and handed to the owner with fchown; renames and unlinks in such a
// directory are done as root too. Everything else, opening the mbox and
// reading and writing files, is done as the owner (safefs.Do), and no
// symbolic link is followed below the location's line (safefs), as in the
// maildir store.
//
// # Delivery
//
// Deliver appends under the fcntl lock and the dotlock the way local(8)
// does: "From sender  date" (the sender from a leading Return-Path
// header, else MAILER-DAEMON), the message with the configured quoting, a
// final newline if missing, an empty line; then fsync. It returns only
// once the message is durable; on any error the file is truncated back to
// its old size.
package mbox
