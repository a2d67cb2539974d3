// Package sasl is postoffice's server-side SASL mechanism table (RFC 4422):
// it decides which mechanisms a connection may use and runs one exchange at a
// time over the user database (internal/auth) and the token verifiers
// (internal/auth/oauth). It owns no framing: the POP3 engine does the RFC 5034
// base64 lines and hands this package decoded responses.
//
// Mechanisms and the RFCs they follow:
//
//	SCRAM-SHA-256-PLUS, SCRAM-SHA-1-PLUS  RFC 5802, RFC 7677; channel binding
//	                                      tls-exporter (RFC 9266) or
//	                                      tls-server-end-point (RFC 5929)
//	SCRAM-SHA-256, SCRAM-SHA-1            RFC 5802, RFC 7677
//	CRAM-MD5                              RFC 2195 (HMAC-MD5, RFC 2104)
//	PLAIN                                 RFC 4616
//	LOGIN                                 draft-murchison-sasl-login
//	OAUTHBEARER                           RFC 7628 (tokens: RFC 7519, RFC 7662)
//	XOAUTH2                               Google's XOAUTH2 protocol
//	EXTERNAL                              RFC 4422 Appendix A, TLS client certificate
//
// What each mechanism needs from the stored password (auth.CredentialDB
// returns it as "{SCHEME}data"):
//
//	mechanism        stored scheme that serves it
//	---------        ----------------------------
//	PLAIN, LOGIN     any scheme auth.DB.Authenticate verifies (auth.DB is enough)
//	CRAM-MD5         {PLAIN}/{CLEAR}/{CLEARTEXT}, or {CRAM-MD5}/{HMAC-MD5}
//	                 (Dovecot's HMAC-MD5 context); needs auth.CredentialDB
//	SCRAM-SHA-1[-PLUS]    {SCRAM-SHA-1} or a plaintext-equivalent scheme
//	SCRAM-SHA-256[-PLUS]  {SCRAM-SHA-256} or a plaintext-equivalent scheme
//	                 (both SCRAM families need auth.CredentialDB)
//	OAUTHBEARER, XOAUTH2  none: a valid token (Options.OAuth) for a user that
//	                 auth.DB.Lookup finds
//	EXTERNAL         none: a verified client certificate naming a user that
//	                 auth.DB.Lookup finds
//
// A user whose stored scheme cannot serve a challenge-response mechanism (a
// {SHA512-CRYPT} entry asked for SCRAM) fails that mechanism exactly as a
// wrong password does; PLAIN and LOGIN still work for them.
//
// Implementation notes:
//   - Errors: ErrAuthFailed covers a wrong password, an unknown user, an
//     unusable stored scheme, a bad token and a wrong channel binding alike;
//     ErrMalformed is a message that does not parse (or breaks the mechanism's
//     rules); ErrUnavailable is a mechanism not usable on this connection.
//     Anything else is a temporary failure (database or token endpoint down).
//     Errors wrap these with a reason for the log, never a password, token,
//     digest or proof.
//   - SCRAM does not reveal whether a user exists (xdg-go/scram would answer
//     e=unknown-user): unknown users and users whose stored scheme cannot
//     serve SCRAM get decoy credentials, so the exchange fails only at the
//     proof. A decoy copies the most common kind of credentials of the user
//     database for the mechanism's hash (auth.SCRAMDecoyDB): stored keys'
//     iteration count and salt length, with random keys and no key
//     derivation, as serving a stored entry costs none; or, when most users
//     have plaintext-equivalent passwords, what a derived entry has (4096
//     iterations, 16-byte salt) and costs (one PBKDF2). So neither i=, nor
//     the salt's length, nor the time to the server-first message tells an
//     unknown name from most users. Its salt is HMAC-SHA-256(Options.Secret,
//     mechanism, canonical name), the same at every attempt and for every
//     spelling the database looks up as one name; Secret is random per
//     process unless the caller sets one (see Options.Secret).
//   - Channel binding (RFC 5802 §6): a -PLUS mechanism requires the client's
//     "p=" flag with a type this connection supports; a non-PLUS SCRAM whose
//     client sends "y" while the -PLUS variant is advertised on this
//     connection fails (downgrade). tls-exporter needs TLS 1.3 or TLS 1.2 with
//     Extended Master Secret (RFC 9266 §3; crypto/tls refuses the exporter
//     otherwise). tls-server-end-point needs Options.ServerCertificate,
//     because crypto/tls does not tell a server which certificate it sent.
//     tls-unique is not offered (RFC 9266 §4: insecure, undefined for TLS 1.3).
//   - go-sasl's OAUTHBEARER server indexes an empty response after a failed
//     token; this package answers the client's post-failure message itself
//     and never hands it to go-sasl.
//   - Each exchange is used by one goroutine at a time; Mechanisms is safe for
//     concurrent use. There is no package-level mutable state.
package sasl
