package kerberos

// GSSClient is the initiator as the pop3 package's GSSContext interface
// wants it: the first InitSecContext gets the ticket and returns the
// AP-REQ, the second checks the AP-REP.
type GSSClient struct {
	opts          InitiatorOptions
	service, host string
	ctx           *InitiatorContext
}

// NewGSSClient returns a context for service/host (say "pop",
// "mail.example.org") with the credentials opts name.
func NewGSSClient(opts InitiatorOptions, service, host string) *GSSClient {
	return &GSSClient{opts: opts, service: service, host: host}
}

// InitSecContext implements pop3.GSSContext.
func (g *GSSClient) InitSecContext(token []byte) ([]byte, bool, error) {
	if g.ctx == nil {
		c, out, err := Initiate(g.opts, g.service, g.host)
		if err != nil {
			return nil, false, err
		}
		g.ctx = c
		return out, false, nil
	}
	return nil, true, g.ctx.Continue(token)
}

// Wrap implements pop3.GSSContext.
func (g *GSSClient) Wrap(msg []byte) ([]byte, error) { return g.ctx.Wrap(msg) }

// Unwrap implements pop3.GSSContext.
func (g *GSSClient) Unwrap(token []byte) ([]byte, error) { return g.ctx.Unwrap(token) }
