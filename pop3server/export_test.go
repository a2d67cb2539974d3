package pop3server

// WaitState is what a session holds as it starts waiting for input.
type WaitState struct {
	LoggedIn bool
	ReadBuf  bool // a read buffer: the wait cannot be on the socket
	ReplyBuf bool // a reply buffer, small or large
}

// OnWait makes every session of s call f, in its own goroutine, as it
// starts waiting for input. Call it before serving.
func (s *Server) OnWait(f func(WaitState)) {
	s.testHookWait = func(c *conn) {
		f(WaitState{
			LoggedIn: c.state == stateTransaction,
			ReadBuf:  c.br != nil,
			ReplyBuf: c.small != nil || c.bw != nil || c.out.large != nil,
		})
	}
}

// RawWait reports whether sessions can wait for input on the socket here
// (unix); elsewhere they keep their read buffer.
const RawWait = rawWaitSupported
