package pop3server

import (
	"context"
	"log/slog"
	"runtime"
	"sync/atomic"
	"time"
)

// sessionHandler puts a session's attributes in front of each of its log
// records: conn and remote, and user once logged in. It does what
// Logger.With did, without the handler copy with preformatted attributes
// that With makes per connection: about 450 octets a session, which counts
// against the idle-memory target in docs/performance.md.
// fail2ban's filter depends on conn and remote coming first. It reads the
// session's state, so only the session's goroutine may log through it.
type sessionHandler struct {
	h slog.Handler // the server's
	c *conn
}

func newSessionLogger(h slog.Handler, c *conn) *slog.Logger {
	return slog.New(&sessionHandler{h: h, c: c})
}

func (h *sessionHandler) Enabled(ctx context.Context, l slog.Level) bool {
	return h.h.Enabled(ctx, l)
}

func (h *sessionHandler) Handle(ctx context.Context, r slog.Record) error {
	nr := slog.NewRecord(r.Time, r.Level, r.Message, r.PC)
	h.c.addSessionAttrs(&nr)
	r.Attrs(func(a slog.Attr) bool {
		nr.AddAttrs(a)
		return true
	})
	return h.h.Handle(ctx, nr)
}

// sessionAttrs puts the session's attributes, as they are now, in a and
// returns them: conn and remote, and user once logged in.
func (c *conn) sessionAttrs(a *[3]slog.Attr) []slog.Attr {
	a[0], a[1] = slog.String("conn", c.info.ID), slog.String("remote", addrString(c.info.RemoteAddr))
	if c.state == stateTransaction {
		a[2] = slog.String("user", c.user)
		return a[:3]
	}
	return a[:2]
}

// addSessionAttrs adds the session's attributes, as they are now, to r.
func (c *conn) addSessionAttrs(r *slog.Record) {
	var a [3]slog.Attr
	r.AddAttrs(c.sessionAttrs(&a)...)
}

// attrs returns the session's attributes as they are now.
func (h *sessionHandler) attrs() []slog.Attr {
	return h.c.sessionAttrs(new([3]slog.Attr))
}

// WithAttrs and WithGroup fix the session's attributes as they are now.
func (h *sessionHandler) WithAttrs(as []slog.Attr) slog.Handler {
	return h.h.WithAttrs(append(h.attrs(), as...))
}

func (h *sessionHandler) WithGroup(name string) slog.Handler {
	return h.h.WithAttrs(h.attrs()).WithGroup(name)
}

// The lines every session writes.
//
// A login session writes two lines, "logged in" and "disconnected", and
// through Logger.Info each cost, besides the formatting and the write:
// runtime.Callers for the record's source position, whether or not the
// handler prints it; the attributes boxed in interfaces; and the record
// built twice (Logger.Info's, then Handle's with the session's attributes
// in front), each spilling past the five attributes a record holds
// inline. logAttrs builds the one record the handler gets, with the same
// attributes in the same order, and takes the source position of its call
// site once: a call site has one program counter, so the position a
// handler with AddSource prints is the one Logger.Info would have given.

// logSite is the cached program counter of one logAttrs call site.
type logSite struct{ pc atomic.Uintptr }

// caller returns the program counter of the call to logAttrs, as
// Logger.Info's runtime.Callers gives that of its caller: the frames
// skipped are runtime.Callers, caller and logAttrs.
func (s *logSite) caller() uintptr {
	if pc := s.pc.Load(); pc != 0 {
		return pc
	}
	var pcs [1]uintptr
	runtime.Callers(3, pcs[:])
	s.pc.Store(pcs[0])
	return pcs[0]
}

// logAttrs logs msg at level with the session's attributes and then
// attrs, as c.log.LogAttrs(context.Background(), level, msg, attrs...)
// would.
func (c *conn) logAttrs(site *logSite, level slog.Level, msg string, attrs ...slog.Attr) {
	ctx := context.Background()
	sh, ok := c.log.Handler().(*sessionHandler)
	if !ok {
		c.log.LogAttrs(ctx, level, msg, attrs...)
		return
	}
	if !sh.h.Enabled(ctx, level) {
		return
	}
	r := slog.NewRecord(time.Now(), level, msg, site.caller())
	c.addSessionAttrs(&r)
	r.AddAttrs(attrs...)
	sh.h.Handle(ctx, r)
}
