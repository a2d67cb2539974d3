// Package e2e holds end-to-end tests of the postoffice binary: it is built
// once, run as a real process on loopback with a passwd-file and Maildirs,
// and driven by real POP3 clients (Python's poplib, Perl's Net::POP3, curl,
// fetchmail, mpop, getmail, openssl s_client), fed over LMTP by swaks and
// by a real Postfix, compared with a real Dovecot on the same client
// invocations and Maildirs (a takeover keeps the UIDLs Dovecot showed),
// run beside Dovecot's IMAP on the same Maildir under a mixed load
// (imaplib, poplib, LMTP), and killed with kill -9. Tests whose peer is not installed skip with a
// message naming the Debian package; .ci/run installs them.
package e2e
