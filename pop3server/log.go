package pop3server

import (
	"context"
	"log/slog"
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
	c := h.c
	nr := slog.NewRecord(r.Time, r.Level, r.Message, r.PC)
	conn, remote := slog.String("conn", c.info.ID), slog.String("remote", addrString(c.info.RemoteAddr))
	if c.state == stateTransaction {
		nr.AddAttrs(conn, remote, slog.String("user", c.user))
	} else {
		nr.AddAttrs(conn, remote)
	}
	r.Attrs(func(a slog.Attr) bool {
		nr.AddAttrs(a)
		return true
	})
	return h.h.Handle(ctx, nr)
}

// attrs returns the session's attributes as they are now.
func (h *sessionHandler) attrs() []slog.Attr {
	c := h.c
	as := []slog.Attr{slog.String("conn", c.info.ID), slog.String("remote", addrString(c.info.RemoteAddr))}
	if c.state == stateTransaction {
		as = append(as, slog.String("user", c.user))
	}
	return as
}

// WithAttrs and WithGroup fix the session's attributes as they are now.
func (h *sessionHandler) WithAttrs(as []slog.Attr) slog.Handler {
	return h.h.WithAttrs(append(h.attrs(), as...))
}

func (h *sessionHandler) WithGroup(name string) slog.Handler {
	return h.h.WithAttrs(h.attrs()).WithGroup(name)
}
