// Package e2e holds end-to-end tests of the postoffice binary: it is built
// once, run as a real process on loopback with a passwd-file and Maildirs,
// and driven by real POP3 clients (Python's poplib, Perl's Net::POP3, curl,
// fetchmail, mpop, getmail, openssl s_client), fed over LMTP by swaks and
// by a real Postfix, compared with a real Dovecot on the same client
// invocations and Maildirs (a takeover keeps the UIDLs Dovecot showed),
// and taking over from Dovecot on mbox and from popa3d (run inetd-style)
// with mpop and fetchmail watching, run beside Dovecot's IMAP on the same
// Maildir under a mixed load (imaplib, poplib, LMTP) and beside Postfix's
// local(8) on one mbox, and killed with kill -9. Tests whose peer is not
// installed skip with a message naming the Debian package; .ci/run
// installs them (popa3d, which conflicts with dovecot-pop3d, is unpacked
// and found through POSTOFFICE_POPA3D).
package e2e
