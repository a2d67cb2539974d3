package kerberos

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/jcmturner/gofork/encoding/asn1"
	"github.com/jcmturner/gokrb5/v8/asn1tools"
	"github.com/jcmturner/gokrb5/v8/crypto"
	"github.com/jcmturner/gokrb5/v8/iana/asnAppTag"
	"github.com/jcmturner/gokrb5/v8/iana/errorcode"
	"github.com/jcmturner/gokrb5/v8/iana/flags"
	"github.com/jcmturner/gokrb5/v8/iana/keyusage"
	"github.com/jcmturner/gokrb5/v8/iana/msgtype"
	"github.com/jcmturner/gokrb5/v8/keytab"
	"github.com/jcmturner/gokrb5/v8/messages"
	"github.com/jcmturner/gokrb5/v8/types"
)

var (
	// ErrRefused is wrapped by every error that means the client's
	// credentials were not accepted: a ticket for another service, an
	// expired ticket, a wrong key, a replay, a broken token. Callers answer
	// it as a failed login and log the detail.
	ErrRefused = errors.New("kerberos: credentials refused")
	// ErrNoUser means the principal maps to no local user.
	ErrNoUser = errors.New("kerberos: principal maps to no local user")
)

// DefaultClockSkew is the largest difference between the client's clock and
// ours that an authenticator may show, and how long after its end a ticket
// is still taken: MIT's and RFC 4120 §1.6's customary five minutes.
const DefaultClockSkew = 5 * time.Minute

// maxReplayEntries bounds the replay cache. Each entry needs a valid
// authenticator, so filling it takes tickets from the KDC; when it is full
// of unexpired entries, new logins fail (temporarily) rather than let a
// replay through.
const maxReplayEntries = 1 << 17

// AcceptorOptions configure NewAcceptor.
type AcceptorOptions struct {
	// Keytab is the keytab file holding the service principal's keys.
	// Required.
	Keytab string
	// Service is the service name of the principal, "pop" for POP3
	// (RFC 4752 §3 uses the GSSAPI service name; Dovecot and Cyrus use
	// "pop"). Empty means "pop".
	Service string
	// Realm is the realm of the service principal. Empty means the realm
	// of the keytab's first Service/... entry.
	Realm string
	// Hostname, if set, is the only host part the ticket may name
	// (compared without regard to case). Empty accepts a ticket for any
	// Service/host principal of Realm the keytab has a key for, as
	// Dovecot's auth_gssapi_hostname = "$ALL" does: a server known under
	// several DNS names then needs one principal per name in its keytab.
	Hostname string
	// MaxClockSkew is the tolerated clock difference; zero means
	// DefaultClockSkew.
	MaxClockSkew time.Duration
}

// Acceptor verifies AP-REQs for one service principal. It is safe for
// concurrent use.
type Acceptor struct {
	opts AcceptorOptions
	kt   *keytab.Keytab

	mu     sync.Mutex
	replay map[[32]byte]time.Time // authenticator digest -> when it may be forgotten
}

// NewAcceptor loads the keytab and checks that it holds at least one key of
// a principal the options accept.
func NewAcceptor(opts AcceptorOptions) (*Acceptor, error) {
	if opts.Keytab == "" {
		return nil, errors.New("kerberos: no keytab configured")
	}
	if opts.Service == "" {
		opts.Service = "pop"
	}
	if opts.MaxClockSkew <= 0 {
		opts.MaxClockSkew = DefaultClockSkew
	}
	b, err := os.ReadFile(opts.Keytab)
	if err != nil {
		return nil, fmt.Errorf("kerberos: keytab: %w", err)
	}
	kt := keytab.New()
	if err := kt.Unmarshal(b); err != nil {
		return nil, fmt.Errorf("kerberos: keytab %s: %w", opts.Keytab, err)
	}
	a := &Acceptor{opts: opts, kt: kt, replay: make(map[[32]byte]time.Time)}
	if a.opts.Realm == "" {
		for _, e := range kt.Entries {
			if len(e.Principal.Components) == 2 && e.Principal.Components[0] == opts.Service {
				a.opts.Realm = e.Principal.Realm
				break
			}
		}
	}
	if len(a.Principals()) == 0 {
		want := opts.Service + "/" + orAny(opts.Hostname) + "@" + orAny(opts.Realm)
		have := strings.Join(keytabPrincipals(kt), ", ")
		if have == "" {
			have = "none"
		}
		return nil, fmt.Errorf("kerberos: keytab %s has no key for %s (it has: %s)", opts.Keytab, want, have)
	}
	return a, nil
}

func orAny(s string) string {
	if s == "" {
		return "*"
	}
	return s
}

func keytabPrincipals(kt *keytab.Keytab) []string {
	var out []string
	for _, e := range kt.Entries {
		p := e.Principal.String()
		if !slices.Contains(out, p) {
			out = append(out, p)
		}
	}
	return out
}

// Principals lists the keytab's principals this acceptor takes tickets
// for, in keytab order.
func (a *Acceptor) Principals() []string {
	var out []string
	for _, e := range a.kt.Entries {
		c := e.Principal.Components
		if len(c) != 2 || !a.accepts(c[0], c[1], e.Principal.Realm) {
			continue
		}
		p := e.Principal.String()
		if !slices.Contains(out, p) {
			out = append(out, p)
		}
	}
	return out
}

// Realm is the service principal's realm.
func (a *Acceptor) Realm() string { return a.opts.Realm }

func (a *Acceptor) accepts(service, host, realm string) bool {
	return service == a.opts.Service && realm == a.opts.Realm &&
		(a.opts.Hostname == "" || strings.EqualFold(host, a.opts.Hostname))
}

// Principal is a Kerberos principal name: components and realm.
type Principal struct {
	Components []string
	Realm      string
}

// String is the principal in the usual "a/b@REALM" form.
func (p Principal) String() string { return strings.Join(p.Components, "/") + "@" + p.Realm }

// Accepted is the outcome of a verified AP-REQ.
type Accepted struct {
	// Client is the authenticated client principal.
	Client Principal
	// APRep is the DER AP-REP to send when the client asked for mutual
	// authentication, else nil.
	APRep []byte

	key       types.EncryptionKey // the context key: the initiator's subkey, else the session key
	gssFlags  uint32              // from the RFC 4121 §4.1.1 checksum, 0 without one
	recvSeq   uint64              // the initiator's first sequence number
	sendSeq   uint64              // ours
	hasGSSCks bool
}

// Accept verifies an AP-REQ (DER, as RFC 4120 §5.5.1 encodes it) that came
// from remote, refuses a replay and, if the client asked for mutual
// authentication, builds the AP-REP. An error wrapping ErrRefused is the
// client's fault; it is a *KRBError the caller may send back as is (for
// sendauth). Other errors are ours (a full replay cache).
func (a *Acceptor) Accept(apreq []byte, remote net.Addr) (*Accepted, error) {
	var req messages.APReq
	if err := req.Unmarshal(apreq); err != nil {
		return nil, a.refuse(errorcode.KRB_AP_ERR_MSG_TYPE, "not an AP-REQ", err)
	}
	sn := req.Ticket.SName.NameString
	if len(sn) != 2 || !a.accepts(sn[0], sn[1], req.Ticket.Realm) {
		return nil, a.refuse(errorcode.KRB_AP_ERR_NOT_US, "ticket for another service",
			fmt.Errorf("ticket is for %s@%s", strings.Join(sn, "/"), req.Ticket.Realm))
	}
	if types.IsFlagSet(&req.APOptions, flags.APOptionUseSessionKey) {
		return nil, a.refuse(errorcode.KRB_AP_ERR_METHOD, "user-to-user tickets are not accepted", errors.New("use-session-key"))
	}
	var addr types.HostAddress
	if ip := addrIP(remote); ip.IsValid() {
		addr = types.HostAddressFromNetIP(net.IP(ip.AsSlice()))
	}
	ok, err := req.Verify(a.kt, a.opts.MaxClockSkew, addr, nil)
	if err != nil || !ok {
		if err == nil {
			err = errors.New("ticket not valid now")
		}
		var ke messages.KRBError
		if errors.As(err, &ke) {
			return nil, a.refuse(ke.ErrorCode, ke.EText, err)
		}
		return nil, a.refuse(errorcode.KRB_AP_ERR_BAD_INTEGRITY, "ticket not accepted", err)
	}
	if err := a.checkReplay(req.EncryptedAuthenticator.Cipher, time.Now()); err != nil {
		return nil, err
	}
	auth := req.Authenticator
	acc := &Accepted{
		Client:  Principal{Components: slices.Clone(auth.CName.NameString), Realm: auth.CRealm},
		key:     req.Ticket.DecryptedEncPart.Key,
		recvSeq: uint64(uint32(auth.SeqNumber)),
	}
	if auth.SubKey.KeyType != 0 && len(auth.SubKey.KeyValue) > 0 {
		acc.key = auth.SubKey
	}
	mutual := types.IsFlagSet(&req.APOptions, flags.APOptionMutualRequired)
	if auth.Cksum.CksumType == gssChecksumType && len(auth.Cksum.Checksum) >= 24 {
		acc.hasGSSCks = true
		acc.gssFlags = binary.LittleEndian.Uint32(auth.Cksum.Checksum[20:24])
		mutual = mutual || acc.gssFlags&gssMutualFlag != 0
	}
	if !mutual {
		// RFC 4121 §4.2.6 leaves it open; MIT's acceptor then starts its own
		// sequence numbers where the initiator's start.
		acc.sendSeq = acc.recvSeq
		return acc, nil
	}
	acc.sendSeq = randomSeq()
	rep, err := buildAPRep(req.Ticket.DecryptedEncPart.Key, auth, acc.sendSeq)
	if err != nil {
		return nil, fmt.Errorf("kerberos: AP-REP: %w", err)
	}
	acc.APRep = rep
	return acc, nil
}

// KRBError is a refusal the client may be shown: a KRB-ERROR (RFC 4120
// §5.9.1) with its code. It wraps ErrRefused and the detail.
type KRBError struct {
	Code   int32
	Text   string
	detail error
	realm  string
	sname  types.PrincipalName
}

func (e *KRBError) Error() string {
	return fmt.Sprintf("kerberos: credentials refused: %s: %v", e.Text, e.detail)
}

func (e *KRBError) Unwrap() []error { return []error{ErrRefused, e.detail} }

// Marshal encodes the KRB-ERROR message.
func (e *KRBError) Marshal() ([]byte, error) {
	m := messages.NewKRBError(e.sname, e.realm, e.Code, e.Text)
	return m.Marshal()
}

func (a *Acceptor) refuse(code int32, text string, detail error) error {
	sname := types.PrincipalName{NameType: 3, NameString: []string{a.opts.Service, a.opts.Hostname}}
	return &KRBError{Code: code, Text: text, detail: detail, realm: a.opts.Realm, sname: sname}
}

// checkReplay records an authenticator by the digest of its ciphertext,
// which only the holder of the session key could have made (RFC 4120
// §3.2.3 asks for a cache of the authenticators seen within the clock
// skew; MIT's replay cache also keys on a hash of the ciphertext).
func (a *Acceptor) checkReplay(cipher []byte, now time.Time) error {
	sum := sha256.Sum256(cipher)
	a.mu.Lock()
	defer a.mu.Unlock()
	if until, ok := a.replay[sum]; ok && now.Before(until) {
		return a.refuse(errorcode.KRB_AP_ERR_REPEAT, "request is a replay", errors.New("authenticator seen before"))
	}
	if len(a.replay) >= maxReplayEntries {
		for k, until := range a.replay {
			if !now.Before(until) {
				delete(a.replay, k)
			}
		}
		if len(a.replay) >= maxReplayEntries {
			return errors.New("kerberos: replay cache full")
		}
	}
	// An authenticator is refused as too old once the skew has passed
	// (either way round), so two skews cover every moment it is accepted.
	a.replay[sum] = now.Add(2*a.opts.MaxClockSkew + time.Second)
	return nil
}

func addrIP(a net.Addr) netip.Addr {
	switch v := a.(type) {
	case *net.TCPAddr:
		ip, _ := netip.AddrFromSlice(v.IP)
		return ip.Unmap()
	case nil:
		return netip.Addr{}
	}
	ap, err := netip.ParseAddrPort(a.String())
	if err != nil {
		return netip.Addr{}
	}
	return ap.Addr().Unmap()
}

// randomSeq is a sequence number for our side: 30 random bits, never 0 so
// that the optional field is always sent (RFC 4120 §5.5.2).
func randomSeq() uint64 {
	var b [4]byte
	for {
		rand.Read(b[:])
		if s := binary.BigEndian.Uint32(b[:]) & 0x3fffffff; s != 0 {
			return uint64(s)
		}
	}
}

// encAPRepPart is EncAPRepPart of RFC 4120 §5.5.2 with the fields we send.
type encAPRepPart struct {
	CTime          time.Time `asn1:"generalized,explicit,tag:0"`
	Cusec          int       `asn1:"explicit,tag:1"`
	SequenceNumber int64     `asn1:"optional,explicit,tag:3"`
}

// apRep is KRB_AP_REP of RFC 4120 §5.5.2.
type apRep struct {
	PVNO    int                 `asn1:"explicit,tag:0"`
	MsgType int                 `asn1:"explicit,tag:1"`
	EncPart types.EncryptedData `asn1:"explicit,tag:2"`
}

// buildAPRep makes the AP-REP: the authenticator's ctime and cusec and our
// sequence number, encrypted in the ticket's session key with key usage 12
// (RFC 4120 §5.5.2, §7.5.1). It carries no subkey, so both directions keep
// the initiator's subkey (RFC 4121 §2 then needs no AcceptorSubkey flag).
func buildAPRep(sessionKey types.EncryptionKey, auth types.Authenticator, seq uint64) ([]byte, error) {
	part, err := asn1.Marshal(encAPRepPart{CTime: auth.CTime, Cusec: auth.Cusec, SequenceNumber: int64(seq)})
	if err != nil {
		return nil, err
	}
	part = asn1tools.AddASNAppTag(part, asnAppTag.EncAPRepPart)
	ed, err := crypto.GetEncryptedData(part, sessionKey, keyusage.AP_REP_ENCPART, 0)
	if err != nil {
		return nil, err
	}
	b, err := asn1.Marshal(apRep{PVNO: 5, MsgType: msgtype.KRB_AP_REP, EncPart: ed})
	if err != nil {
		return nil, err
	}
	return asn1tools.AddASNAppTag(b, asnAppTag.APREP), nil
}
