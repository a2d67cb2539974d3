package pop3server

// Growing the session's stack where it is shallow.
//
// A goroutine starts with a small stack (2 KiB, or the runtime's average
// use) and the runtime doubles it when a call needs more: it allocates
// the larger stack, then walks every frame to copy it and adjust its
// pointers, so a doubling costs in proportion to the depth it happens at.
// A session's greeting (the first reply's write) and its login (the
// backend's credential check, the maildrop's open, the "logged in" line)
// are deep, and they grew the stack there: in a login-only load (postoffice
// bench --scenario login) the copies took 9% of the server's CPU.
//
// So the stack is grown ahead, each time to the size the next step
// needs, by a call whose frame is that large, made where the stack is
// shallow: to 4 KiB when the session starts (the greeting needs it) and
// to 8 KiB before a login (beforeLogin, which every login method passes).
// No session's stack ends larger than it did: every session reached 4 KiB
// at its greeting, and a login 16 KiB (8 since internal/ledger reads its
// state without encoding/json's recursive decoder). A connection that waits
// before logging in keeps the 4 KiB it had; the garbage collector still
// shrinks the stack of a session waiting for its client (wait.go), so an
// idle session's memory does not change.
//
// The sizes were found by counting the runtime's growths
// (runtime.morestack) under that load: with a Maildir, a passwd-file and
// the ledger, a login no longer grows the stack past 8 KiB once it has
// it. A path that needs more (a TLS handshake, a SASL exchange, another
// store) grows it as before.

// Frame sizes of growStartStack and growLoginStack: what the stack holds
// below them, their frame and the runtime's guard (928 octets on
// linux/amd64) fit in 4 and 8 KiB, and not in half that.
const (
	startStack = 2560
	loginStack = 5 << 10
)

// growStartStack grows the stack to 4 KiB, what the greeting needs. It is
// not inlined, so its frame is its own and the growth happens at its call.
//
//go:noinline
func growStartStack() {
	var buf [startStack]byte
	touchStack(buf[:])
}

// growLoginStack grows the stack to 8 KiB, what a login needs.
//
//go:noinline
func growLoginStack() {
	var buf [loginStack]byte
	touchStack(buf[:])
}

// touchStack uses buf, so the compiler keeps the frame that holds it.
//
//go:noinline
func touchStack(buf []byte) { buf[0] = 1 }
