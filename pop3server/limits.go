package pop3server

import (
	"net"
	"time"
)

// LoginLimiter slows down and refuses password guessing across
// connections. The engine calls BeforeLogin before every credential check
// (PASS, APOP, each AUTH), LoginFailed after a credential failure and
// LoginSucceeded after a login. It uses only standard types, so an
// implementation need not import this package; *ratelimit.Limiter
// (internal/ratelimit) is one. Its methods are called from many sessions at
// once and must not block: the engine does the waiting.
type LoginLimiter interface {
	// BeforeLogin is asked before the credentials of user (empty for SASL,
	// whose user is not known yet) from remote are checked. The engine
	// waits delay before checking; with refuse it checks nothing, answers
	// -ERR [SYS/TEMP] and closes the connection. until is the earliest
	// time a retry may succeed, for the log.
	BeforeLogin(remote net.Addr, user string) (delay time.Duration, refuse bool, until time.Time)
	// LoginFailed records a credential failure ([AUTH]). password is the
	// PASS argument, nil when the engine never sees the password (APOP,
	// SASL). banned reports that this failure started a ban of the client
	// until until; the engine logs "client banned" then.
	LoginFailed(remote net.Addr, user string, password []byte) (banned bool, until time.Time)
	// LoginSucceeded records a successful login.
	LoginSucceeded(remote net.Addr, user string)
}

// Defaults of the limits in Options.
const (
	// DefaultPreLoginTimeout: clients send USER or AUTH right after the
	// greeting, and a mobile link that stalls for a minute before login
	// costs only a reconnect. Exchange's unauthenticated timer is 60 s.
	DefaultPreLoginTimeout = time.Minute
	// DefaultWriteTimeout: a client that takes less than 32 KiB of a
	// reply in this long is dropped: a floor of about 270 octets/s. It is
	// shorter than the idle timeout because a client that stops reading
	// holds the maildrop lock.
	DefaultWriteTimeout = 2 * time.Minute
	// DefaultMaxLoginCommands: a real client needs fewer than 15 commands
	// to log in (CAPA, STLS, CAPA, UTF8, and three attempts of USER+PASS or
	// AUTH); more is an attacker or a broken client.
	DefaultMaxLoginCommands = 50
	// DefaultMaxBadCommands: Dovecot's pop3 closes after 20 bad commands.
	// Only unknown and misplaced commands and syntax errors count
	// (Options.MaxBadCommands), so a real client stays far below it.
	DefaultMaxBadCommands = 20
	// After login the default command cap scales with the maildrop:
	// baseCommands plus commandsPerMessage for each message, so a client
	// can LIST, UIDL, TOP, RETR and DELE every message one by one twice.
	baseCommands       = 1000
	commandsPerMessage = 10
)
