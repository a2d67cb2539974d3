// Package e2e holds end-to-end tests of the postoffice binary: it is built
// once, run as a real process on loopback with a passwd-file and Maildirs,
// and driven by real POP3 clients (Python's poplib, Perl's Net::POP3, curl)
// and by kill -9. Tests whose client is not installed skip with a message
// naming the Debian package; .ci/run installs them.
package e2e
