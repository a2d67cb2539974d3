// Package kerberos is postoffice's Kerberos 5 layer: it is the only package
// that imports github.com/jcmturner/gokrb5 (keytabs, tickets, AP-REQ
// decryption and the checks of RFC 4120 §3.2.3, credential caches and the
// KDC client), and it writes what that library lacks.
//
// What is written here, with its source:
//
//   - The acceptor: a keytab's service principal (service/host@REALM) takes
//     an AP-REQ (RFC 4120 §3.2), checks that the ticket is for that service,
//     decrypts and verifies it with gokrb5, refuses a replayed authenticator
//     (RFC 4120 §3.2.3, with its own bounded replay cache instead of the
//     library's process-wide one) and builds the AP-REP (RFC 4120 §3.2.4,
//     §5.5.2) that mutual authentication asks for.
//   - The GSS-API Kerberos mechanism's token framing (RFC 2743 §3.1,
//     RFC 1964 §1.1: the mechanism OID and a two-octet token id around the
//     AP-REQ, AP-REP or KRB-ERROR), the authenticator checksum carrying the
//     GSS flags (RFC 4121 §4.1.1), and the per-message Wrap tokens of
//     RFC 4121 §4.2.6.2 with and without confidentiality, so that the SASL
//     GSSAPI mechanism (RFC 4752, in internal/sasl and pop3) can exchange
//     its security-layer messages. Only the enctypes RFC 4121 tokens serve
//     are accepted (aes128/aes256-cts-hmac-sha1-96 of RFC 3962 and the
//     SHA-2 ones of RFC 8009): DES is gone from MIT Kerberos and RC4 and
//     DES3 are deprecated by RFC 8429, and their RFC 1964/4757 tokens are
//     not implemented.
//   - The initiator, for postoffice's own client: a ticket for
//     service/host from the user's credential cache (or from a keytab
//     through the KDC named in krb5.conf), the AP-REQ with the GSS checksum
//     and a subkey, and the check of the server's AP-REP.
//   - The sendauth exchange of MIT krb5's krb5_sendauth/krb5_recvauth
//     (lib/krb5/krb/sendauth.c, recvauth.c), which KPOP runs before the POP3
//     greeting: length-prefixed version strings, a one-octet answer, the
//     AP-REQ, an empty message or a KRB-ERROR, and the AP-REP.
//   - The mapping of a client principal to a local user name.
//
// Kerberos 4 (and with it KPOP's original krb_sendauth of 1990) is not
// implemented: it has been withdrawn from MIT Kerberos since release 1.8
// and its DES-based tickets are broken.
package kerberos
