package pop3server

import "fmt"

// Response codes (RFC 2449 §8, RFC 3206). The engine writes them inside
// brackets at the start of the -ERR text.
const (
	CodeInUse      = "IN-USE"      // maildrop locked by another session (RFC 2449 §8.1.2)
	CodeLoginDelay = "LOGIN-DELAY" // logged in too recently (RFC 2449 §8.1.1)
	CodeAuth       = "AUTH"        // credentials rejected (RFC 3206 §5)
	CodeSysTemp    = "SYS/TEMP"    // transient failure, retry later (RFC 3206 §4)
	CodeSysPerm    = "SYS/PERM"    // permanent failure (RFC 3206 §4)
)

// Error is a failure a backend wants the client to see. Code is one of the
// Code constants or empty; Text must not reveal paths, configuration or
// other internals. Err, if set, is logged and never sent.
type Error struct {
	Code string
	Text string
	Err  error
}

func (e *Error) Error() string {
	s := e.Text
	if e.Code != "" {
		s = "[" + e.Code + "] " + s
	}
	if e.Err != nil {
		s += ": " + e.Err.Error()
	}
	return s
}

func (e *Error) Unwrap() error { return e.Err }

// reply is the -ERR line for e.
func (e *Error) reply() string {
	if e.Code != "" {
		return fmt.Sprintf("-ERR [%s] %s", e.Code, e.Text)
	}
	return "-ERR " + e.Text
}
