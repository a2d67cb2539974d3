package pop3server

import (
	"context"
	"crypto/tls"
	"io"
	"net"
	"syscall"
	"time"

	"github.com/postoffice-mail/postoffice/pop3proto"
)

// Backend makes one Session per connection.
//
// The contract between the engine and a backend, for every method below:
//   - The engine owns the protocol: states, deletion marks, framing, every
//     byte on the wire. A backend never touches the connection.
//   - A credential failure is ErrAuthFailed (returned or wrapped), or an
//     *Error with pop3proto.CodeAuth for a text of the backend's choosing.
//     The engine answers [AUTH] after Options.AuthFailDelay and counts it.
//   - An *Error is what the client should see; its Code decides what the
//     engine does (see Error): another code is sent as is, no code means a
//     malformed request (a bad command).
//   - Any other error is logged and answered [SYS/TEMP]. The engine
//     interprets no other error value: storage errors (a missing file, a
//     lock held elsewhere) are the backend's to translate into [SYS/PERM],
//     [IN-USE] and so on.
//   - Optional features are add-on interfaces of the Session, found by type
//     assertion (APOPSession, SASLSession); CAPA and the greeting follow
//     them. A SASLSession with no mechanisms offers no SASL, so one session
//     type serves with SASL on or off.
type Backend interface {
	// NewSession is called when a client connects, before the greeting. An
	// error refuses the connection with -ERR [SYS/TEMP].
	NewSession(ctx context.Context, c *Conn) (Session, error)
}

// Session is the backend's side of one connection in the AUTHORIZATION
// state (RFC 1939 §4). Its errors follow the contract of Backend.
type Session interface {
	// Login checks a USER/PASS pair and, on success, opens the user's
	// maildrop under an exclusive lock. Wrong credentials are
	// ErrAuthFailed; a busy maildrop an *Error with pop3proto.CodeInUse
	// (RFC 2449 §8.1.2); a refused login another *Error with its code.
	Login(ctx context.Context, username, password string) (Mailbox, error)
	// Close is called once when the connection ends, after the mailbox (if
	// any) has been closed.
	Close() error
}

// Mailbox is an opened, locked maildrop: the TRANSACTION state.
type Mailbox interface {
	// Messages returns the snapshot taken at login; message n of the
	// session is Messages()[n-1]. It must not change during the session.
	Messages() []pop3proto.MessageInfo
	// Open returns the stored bytes of message i (0-based). Line ends may be
	// LF or CRLF; the engine converts them and dot-stuffs.
	Open(ctx context.Context, i int) (io.ReadCloser, error)
	// Commit removes the listed messages (0-based, ascending) durably. It is
	// called only for QUIT in TRANSACTION (the UPDATE state, RFC 1939 §6).
	Commit(ctx context.Context, deleted []int) error
	// Close releases the maildrop. It deletes nothing.
	Close() error
}

// WireReader is an add-on of the reader Mailbox.Open returns, for a
// message stored in its wire form (RFC 1939 §3: CRLF line ends and a final
// CRLF): Wire reports that, with the message's size in octets (its LIST
// size, stuffing excluded). Once Wire has said so, Read gives the message
// as it goes on the wire, a "." added before each line that starts with
// one, and RETR sends it as it is, without the converter (unless a client
// workaround rewrites messages, in which case Wire is not called).
type WireReader interface {
	Wire() (size int64, ok bool)
}

// SocketSender is an add-on of a WireReader that sends its octets to a
// socket itself, without copying them through the server (sendfile(2)):
// SendTo sends at most max octets from where reading stopped to the
// socket rc and reports how many; the connection's write deadline bounds
// its waits. The engine uses it on plain TCP connections; over TLS it
// reads the octets and encrypts them. An error matching
// errors.ErrUnsupported with nothing sent makes the engine read them
// instead.
type SocketSender interface {
	SendTo(rc syscall.RawConn, max int64) (int64, error)
}

// Idler is an add-on a Mailbox implements to give back, while the session
// waits for its client, the descriptors it can open again (a Maildir's
// directories): the engine calls Idle once a logged-in session on a plain
// connection has waited IdleRelease without input, and the mailbox
// reopens what it needs at its next call. Sessions that pause between
// commands for less than that (a download) keep them.
type Idler interface {
	Idle()
}

// IdleRelease is how long a logged-in session waits for input before its
// Mailbox's Idle is called.
const IdleRelease = time.Second

// RetrievalObserver is an add-on a Mailbox implements to learn which
// messages RETR sent whole (to the engine's writer, dot-stuffed and
// terminated): for expiry after retrieval (RFC 2449 §6.7) and retrieval
// history. TOP and a RETR cut short do not count.
type RetrievalObserver interface {
	Retrieved(i int)
}

// ExpireMailbox is an add-on a Mailbox implements when the expiry policy
// depends on the user: CAPA in the TRANSACTION state then lists
// "EXPIRE" with Expire() ("NEVER" or a number of days), while
// Options.Expire (which may end in " USER") is what CAPA lists before
// login (RFC 2449 §6.7). An empty Expire() leaves Options.Expire.
type ExpireMailbox interface {
	Expire() string
}

// Conn is what a backend may know about a connection.
type Conn struct {
	ID string // unique per server process, for logs
	// RemoteAddr is the client's address: the one a PROXY protocol header
	// (from a trusted proxy) names, else the socket's peer.
	RemoteAddr net.Addr
	// RealRemoteAddr is the socket's peer: the load balancer's address
	// when the connection came through a PROXY protocol header, the same
	// as RemoteAddr otherwise (Dovecot's "real" remote IP).
	RealRemoteAddr net.Addr
	LocalAddr      net.Addr
	// TLS is the connection state when TLS is active, else nil. The engine
	// sets it after a STLS handshake, so a backend that kept the *Conn sees
	// it change.
	TLS *tls.ConnectionState
	// UTF8 is set once the client has issued UTF8 (RFC 6856 §2): user
	// names and passwords may then be UTF-8.
	UTF8 bool
}

// APOPSession is an add-on a Session implements to accept APOP (RFC 1939
// §7). When the Session has it, the engine puts a unique timestamp banner
// ("<pid.random@host>") in the greeting and accepts the APOP command. The
// engine has checked that digest is 32 hex digits. APOP is allowed where
// Options.AllowPlaintextAuth refuses USER/PASS.
type APOPSession interface {
	// APOP checks digest, the lower-case hex MD5 of timestamp followed by the
	// user's shared secret, and opens the maildrop as Login does. A wrong
	// digest is ErrAuthFailed.
	APOP(ctx context.Context, user, timestamp, digest string) (Mailbox, error)
}

// SASLSession is an add-on a Session implements to offer SASL AUTH
// (RFC 5034). CAPA lists "SASL" with Mechanisms(); the engine owns the
// framing (initial response, "=", "*", "+ " continuations, base64). An
// empty Mechanisms() means no SASL, as in go-smtp: CAPA lists no SASL and
// AUTH is an unknown command, as for a Session without SASLSession.
type SASLSession interface {
	// Mechanisms lists the upper-case mechanism names usable on this
	// connection now, in order of preference; empty for none. It is asked again after STLS
	// (Conn.TLS has changed), so -PLUS and EXTERNAL can depend on TLS. The
	// engine itself removes the plaintext mechanisms (PLAIN, LOGIN,
	// OAUTHBEARER, XOAUTH2) where Options.AllowPlaintextAuth forbids them.
	Mechanisms() []string
	// StartSASL begins an exchange with mech, one of Mechanisms(). Its
	// errors are treated as Next's are.
	StartSASL(ctx context.Context, mech string) (SASLExchange, error)
}

// SASLExchange is one SASL authentication in progress.
type SASLExchange interface {
	// Next takes the client's decoded response (nil when an AUTH command
	// carried no initial response; empty for "=" or an empty line) and
	// returns the next challenge. done reports success; a challenge that
	// comes with done is additional data the engine sends as "+ base64"
	// and whose empty reply it waits for. Errors follow the contract of
	// Backend: wrong credentials are ErrAuthFailed; a malformed client
	// message is an *Error without code, whose Text is sent at once (the
	// session goes on, counted as a bad command). The engine ends the
	// exchange after 10 challenges.
	Next(ctx context.Context, response []byte) (challenge []byte, done bool, err error)
	// Login is called once after Next reported done: it opens the
	// authenticated user's maildrop, with the same errors as Session.Login.
	Login(ctx context.Context) (Mailbox, error)
	// User is the authenticated user name, for the logs; valid after done.
	User() string
}

// directPeer returns the address of the peer at the other end of nc's
// socket. It unwraps connections that wrap another one and say so: a
// NetConn method (crypto/tls, the connection limiter) or a Raw method (the
// PROXY protocol connection of github.com/pires/go-proxyproto, whose own
// RemoteAddr is the address from the header). At most 8 layers are
// unwrapped.
func directPeer(nc net.Conn) net.Addr {
	for range 8 {
		switch w := nc.(type) {
		case interface{ Raw() net.Conn }:
			nc = w.Raw()
		case interface{ NetConn() net.Conn }:
			nc = w.NetConn()
		default:
			return nc.RemoteAddr()
		}
		if nc == nil {
			return nil
		}
	}
	return nc.RemoteAddr()
}
