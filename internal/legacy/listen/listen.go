// Package listen is the accept loop the legacy listeners (KPOP, POP2/POP1)
// share: accept, and on a transient failure (a timeout, EMFILE and the
// like) wait and try again instead of spinning or giving up the listener.
// The POP3 engine has its own, since it imports nothing outside
// internal/wire.
package listen

import (
	"errors"
	"log/slog"
	"net"
	"time"
)

// Loop accepts connections on l and hands each to serve, until closed
// reports true (it then returns nil) or Accept fails for good (it returns
// that error). After a transient failure it waits 5 ms, doubling up to
// 1 s, and logs the failure as name.
func Loop(l net.Listener, closed func() bool, log *slog.Logger, name string, serve func(net.Conn)) error {
	var delay time.Duration
	for {
		nc, err := l.Accept()
		if err != nil {
			if closed() {
				return nil
			}
			if transient(err) {
				delay = min(max(2*delay, 5*time.Millisecond), time.Second)
				log.Warn(name+" accept failed", "err", err, "retry_in", delay)
				time.Sleep(delay)
				continue
			}
			return err
		}
		delay = 0
		serve(nc)
	}
}

// transient reports accept errors worth retrying: timeouts, and errors that
// say they are temporary (EMFILE, ENFILE, ECONNABORTED).
func transient(err error) bool {
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return true
	}
	var t interface{ Temporary() bool }
	return errors.As(err, &t) && t.Temporary()
}
