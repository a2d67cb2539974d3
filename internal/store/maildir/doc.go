// Package maildir is postoffice's Maildir store: it owns the on-disk
// maildrops (https://cr.yp.to/proto/maildir.html) that Postfix, Dovecot or
// postoffice itself delivered, and serves them as store.Maildrop snapshots
// to the POP3 engine. It can take over a Maildir from Dovecot's POP3 service
// without clients seeing new UIDLs or downloading their mail again.
//
// # Locations and user names
//
// Options.Location is a Dovecot-style template ("/var/vmail/%d/%n/Maildir",
// "~/Maildir"): %u is the full user name, %n its local part, %d its domain
// (empty when there is none), %h or a leading ~ the home directory from
// Options.Home, %% a '%'; %{user}, %{username}, %{domain} and %{home} are
// accepted too. User names are "user", "user@domain" or Demon's
// "user+domain", which means user@domain. Each part is validated before any
// path is built (no '/', '\', control characters, leading '.'), so no name
// can leave the template's directory. The Maildir (cur/, new/, tmp/, mode
// 0700) is created on first Open or Deliver.
//
// # Symbolic links and the mail owner
//
// A Maildir in a home directory is writable by its user, and a server run
// as root must not be turned against other files through it. The location
// is cut at a line: above it is the administrator's part, opened as any
// path, links and all (an administrator may link /var/vmail elsewhere):
// the template's fixed prefix up to the component holding its first
// variable, or, for "~/..." or "%h/...", the home directory from the user
// database. Below it nothing is followed: every directory down to the
// Maildir and the Maildir itself, tmp/, new/ and cur/, and every file in
// them, is opened relative to its parent's descriptor with O_NOFOLLOW, and
// checked with fstat on the open descriptor (internal/store/safefs). A
// message that is a link is left out like a FIFO; a lock file or index
// that is one refuses Open; a tmp/, new/ or cur/ that is one refuses Open
// or Deliver and is never swept; the index's temporary file is removed and
// made again with O_EXCL; unlink, link and rename act on the entry, never
// on what it points to.
//
// A process running as root also does every file operation in a maildrop
// (Open, lock, index, Commit, the tmp/ sweep, Deliver) as the maildrop's
// owner, as Dovecot's mail processes run as the user: Options.Owner's uid
// and gid (the passwd-file's fields) where set, else the Maildir's owner,
// or for a Maildir not made yet the owner of the deepest directory of its
// path that exists. safefs.Do switches the file-system ids of one locked
// thread, so the kernel refuses what that user could not do, hard links
// to root's files included, and what is made belongs to the user. A
// process that dropped its privileges, and a maildrop owned by root, work
// as they are.
//
// # Delivery
//
// Deliver writes tmp/<secs>.M<usec>P<pid>Q<n>.<host>, counting the size and
// the CRLF size as it writes, fsyncs the file, links it into new/ as
// "<name>,S=<size>,W=<crlf size>" (Dovecot's fields), removes the tmp name
// and fsyncs new/. It returns nil only then; on any error it removes what it
// wrote, so new/ never holds a partial message. Deliveries take no lock, as
// Maildir intends.
//
// # Sessions
//
// Open takes flock(LOCK_EX|LOCK_NB) on postoffice-pop3.lock in the Maildir
// (RFC 1939 §4: exclusive access to the maildrop). A held lock gives
// store.ErrInUse. flock belongs to the open file description, so it also
// refuses a second session in the same process, and the kernel drops it
// when the holder dies, even by SIGKILL: there are no stale locks. The lock
// only excludes other postoffice sessions; Dovecot's own processes do not
// see it, which is why a message that moved is looked up again (below).
//
// The snapshot lists the messages of new/ and cur/ (tmp/, dot-files and
// subfolders such as .Sent are ignored). A message's key is its file name
// without the info part (from the first ':'), so a file that another agent
// moves from new/ to cur/ or whose flags change keeps its identity.
// Mail delivered during a session is not in the snapshot (RFC 1939 §4).
//
// When a message's file is not where the snapshot says (RETR, or the
// unlink of Commit), new/ and cur/ are read again to find it by its key.
// A file another agent renames while they are read may be missed under
// both names (POSIX leaves this unspecified), so a message is taken for
// removed only when a settled reading missed it: one that started and
// ended with the same directory stamps, after a first one that missed it
// too (relocate.go). Commit never leaves a deleted message behind on a
// guess: a message still unfound after the bounded readings is reported
// as an error, not as removed. The snapshot at Open follows the same rule
// for a message the index lists and the reading missed: it is dropped
// from the index, with its UIDL, only when a settled reading missed it
// too; a message the readings never settle on is left out of that
// session only and keeps its index line and UIDL for the next (scan in
// snapshot.go).
//
// postoffice does not rename files or set flags: reading a message does not
// set \Seen or move it to cur/, like Dovecot with pop3_no_flag_updates=yes.
// Commit (RFC 1939 §6, the UPDATE state) unlinks the deleted files, fsyncs
// the directories and rewrites the index; Close deletes nothing.
//
// # Index, sizes and UIDLs
//
// postoffice-index in the Maildir caches, for each key, its UIDL, its
// wire size (store.Message.Size) and where the file was (new/ or cur/, and
// its info part), in first-seen order; it is replaced atomically (temporary
// file, fsync, rename, directory fsync) before Open returns whenever it
// changed, so a UIDL a client has seen is durable. (On a full disk or
// quota, ENOSPC or EDQUOT, Open serves the session from the directories
// without it and records no stamps, so the next Open reads them again: the
// UIDLs it would record come from the file names and dovecot-uidlist,
// which give the same ones again.) Open reads the index and
// the two directories (no stat per file), keeps indexed messages that still
// exist in index order, appends the others in delivery order (their names
// compared with digit runs as numbers: seconds, then M<usec>, P<pid>,
// Q<n>), and drops vanished ones. When neither directory changed since the
// index was written, Open skips reading them: the lock file records a stamp
// of each (device, inode, modification and change time in nanoseconds,
// taken before reading it, and only once both times are two seconds old,
// Dovecot's rule against changes within one clock tick) and the checksum of
// the index it goes with; matching stamps make the index the snapshot. See
// dirstate.go. Files older than 36 hours in tmp/ are removed by Open at most
// every six hours (the time is kept in the lock file too). A corrupt index
// (bad checksum, count, or line) is logged and rebuilt.
//
// # Device views and history
//
// internal/ledger keeps two more files in the Maildir through
// store.StateFiles, under the same lock: postoffice-devices (JSON: the
// devices, their deletions and retrievals, and each message's first
// complete RETR) is replaced atomically as the index is;
// postoffice-history (one JSON line per retrieval, deletion, removal or
// storm) is appended to and fsynced when the session ends. Both are
// named "postoffice-" plus a lower-case word, opened without following
// links, as the Maildir's owner. A message's delivery time (Delivered)
// is the leading seconds of its file name.
//
// # Sizes and W=
//
// A message is sized once, when it is first indexed. The ",W=<n>" field of
// its name (Dovecot's CRLF size; or the W field of its dovecot-uidlist
// record) is trusted as Dovecot trusts it: the file is not opened, so a
// Maildir of 100,000 Dovecot-named messages is indexed from its directory
// listing alone, and LIST shows the sizes Dovecot showed the same clients.
// W= does not count the CRLF a server appends to a message without a final
// newline, so such a message is listed at W and sent as W+2 octets (RFC
// 1939 §3: the terminating line must follow a CRLF), exactly what Dovecot
// lists and sends. SMTP and LMTP deliveries always end in CRLF; only an
// IMAP APPEND or a script can store a message without it. Deliver writes no
// W= for such a message, so postoffice's own deliveries are always exact.
// Options.VerifySizeFields (config: [mail] verify_size_fields = true) makes
// every size exact: the last octet of each W= file is read once, when it
// is first indexed, to add the completion. A file is opened anyway when its
// directory entry does not say it is a regular file (a FIFO or a symbolic
// link is left out). A name without a usable W= is read whole through
// a CRLF counter and sized exactly; many such files are sized 32 at a time
// with plain system calls, because with a cold page cache the work is
// waiting for the disk.
//
// A message's UIDL (RFC 1939 §7) is derived from its key: the first 15
// octets of SHA-256(key), base64url without padding, 20 characters. Maildir
// names are unique and not reused, so neither are UIDLs, and a lost index
// gives the same UIDLs again.
//
// Migration from Dovecot: when the Maildir has a dovecot-uidlist (version 3,
// or 1), a message it lists keeps the UIDL Dovecot's POP3 server showed for
// it: the record's P field if present (an empty P means the base file name),
// else Dovecot 2.3's default pop3_uidl_format %08Xu%08Xv, the UID and the
// UIDVALIDITY as 8 lowercase hex digits each ("000000016b16e363": Dovecot's
// X modifier prints with "%llx", not printf's uppercase %X). Its W field
// stands in for a missing W= in the name. Such messages come first, in
// Dovecot's POP3 order (O field, then UID). The UIDLs are recorded in
// postoffice-index the first time they are seen and never change
// afterwards, even where an earlier version recorded another form (the
// uppercase one): the clients have seen that one last. A UIDL that is not 1-70
// characters of 0x21-0x7E, or that another message already has, is replaced
// by a derived one and logged. pop3_reuse_xuidl and a CONTROL= directory
// elsewhere are not followed.
//
// # UIDL formats
//
// A Dovecot site that set another pop3_uidl_format sets the same template
// in Options.UIDLFormat (config: [mail] uidl_format; package uidlfmt
// expands it as Dovecot 2.3's var_expand does). A message listed in
// dovecot-uidlist then gets the template with its UID (%u), the file's
// UIDVALIDITY (%v), its file name without the info part (%f) and its G
// field, else that file name (%g), as Dovecot's maildir storage gives
// them; a P field still wins. Mail that dovecot-uidlist does not list
// (delivered after the takeover) gets the same template, so the listing
// keeps one shape: a format with %u or %v continues dovecot-uidlist's
// numbering (its N, or past its highest UID) under its UIDVALIDITY, or,
// without a dovecot-uidlist, numbers from 1 under a UIDVALIDITY taken
// from the clock. The UIDVALIDITY and next UID are kept in
// postoffice-uids, written durably before any UIDL made from them is
// recorded, so no UID is given twice; dovecot-uidlist itself is never
// written. Losing postoffice-index then gives the unlisted messages new
// UIDs (their clients download them again), never old ones. A UIDL that
// another message already has (a Dovecot still delivering on the Maildir
// numbers its own mail) is replaced by a derived one and logged. Without
// a format the behaviour above is unchanged.
//
// Migration from Courier: when the Maildir has Courier-IMAP's
// courierpop3dsizelist (format versions /3, /2, /1 and the headerless
// version 0, as Courier's imap/pop3dserver.C reads them; taken from that
// source), a message it lists and dovecot-uidlist does not keeps the UIDL
// Courier's pop3d printed: "UID<uid>-<uidvalidity>", "UID<uid>" for
// version 1, and for version 0 the file name up to the info part with
// octets outside 0x21-0x7E and ' " + written as "+XX". Courier gives mail
// it has not listed yet a new UID; postoffice gives such mail its own
// UIDL (the format's, or a derived one).
package maildir
