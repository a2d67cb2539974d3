package kerberos

import (
	"fmt"

	"github.com/jcmturner/gokrb5/v8/credentials"
	"github.com/jcmturner/gokrb5/v8/messages"
	"github.com/jcmturner/gokrb5/v8/types"
)

// APReqFromCCache builds an AP-REQ (DER, RFC 4120 §5.5.1) for the service
// ticket of spn ("pop/host") held in the credential cache file at path,
// with a fresh authenticator carrying the RFC 4121 §4.1.1 checksum and no
// mutual-authentication request. Unlike Initiate it makes none of a
// careful client's checks: the ticket is used whether or not it has
// expired, and no KDC is asked for a new one. It exists for tests of the
// acceptor's refusals, which need what only a broken or hostile client
// sends (an expired ticket, as someone holding an old cache file could
// present); clients use Initiate. GSSToken frames the result for SASL
// GSSAPI; KPOP's sendauth sends it as it is.
func APReqFromCCache(path, spn string) ([]byte, error) {
	cc, err := credentials.LoadCCache(path)
	if err != nil {
		return nil, fmt.Errorf("kerberos: credential cache %s: %w", path, err)
	}
	for _, c := range cc.GetEntries() {
		if c.Server.PrincipalName.PrincipalNameString() != spn {
			continue
		}
		var tkt messages.Ticket
		if err := tkt.Unmarshal(c.Ticket); err != nil {
			return nil, fmt.Errorf("kerberos: ticket for %s: %w", spn, err)
		}
		auth, err := types.NewAuthenticator(cc.DefaultPrincipal.Realm, cc.DefaultPrincipal.PrincipalName)
		if err != nil {
			return nil, err
		}
		cks := make([]byte, 24)
		cks[0] = 16 // Lgth of the zero channel bindings
		auth.Cksum = types.Checksum{CksumType: gssChecksumType, Checksum: cks}
		req, err := messages.NewAPReq(tkt, c.Key, auth)
		if err != nil {
			return nil, err
		}
		return req.Marshal()
	}
	return nil, fmt.Errorf("kerberos: no ticket for %s in %s", spn, path)
}

// GSSToken frames an AP-REQ as the GSS-API initial context token of the
// Kerberos 5 mechanism (RFC 2743 §3.1, RFC 1964 §1.1), as SASL GSSAPI
// carries it.
func GSSToken(apreq []byte) []byte { return frameToken(tokAPReq, apreq) }
