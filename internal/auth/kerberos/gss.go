package kerberos

import (
	"bytes"
	"crypto/hmac"
	"encoding/binary"
	"errors"
	"fmt"
	"net"

	"github.com/jcmturner/gokrb5/v8/crypto"
	"github.com/jcmturner/gokrb5/v8/iana/errorcode"
	"github.com/jcmturner/gokrb5/v8/iana/etypeID"
	"github.com/jcmturner/gokrb5/v8/iana/keyusage"
	"github.com/jcmturner/gokrb5/v8/types"
)

// GSS-API token ids of the Kerberos mechanism (RFC 1964 §1.1, RFC 4121
// §4.1).
var (
	tokAPReq    = [2]byte{0x01, 0x00}
	tokAPRep    = [2]byte{0x02, 0x00}
	tokKRBError = [2]byte{0x03, 0x00}
	tokWrap     = [2]byte{0x05, 0x04}
)

// krb5OID is the DER of 1.2.840.113554.1.2.2, the Kerberos 5 GSS-API
// mechanism (RFC 1964 §1).
var krb5OID = []byte{0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x12, 0x01, 0x02, 0x02}

const (
	// gssChecksumType is the authenticator checksum type of RFC 4121
	// §4.1.1: Lgth, Bnd, Flags (and delegation, which we ignore).
	gssChecksumType = 0x8003
	gssMutualFlag   = 2  // GSS_C_MUTUAL_FLAG
	gssReplayFlag   = 4  // GSS_C_REPLAY_FLAG
	gssSequenceFlag = 8  // GSS_C_SEQUENCE_FLAG
	gssConfFlag     = 16 // GSS_C_CONF_FLAG
	gssIntegFlag    = 32 // GSS_C_INTEG_FLAG
)

// Wrap token flags (RFC 4121 §4.2.2).
const (
	wrapSentByAcceptor = 0x01
	wrapSealed         = 0x02
	wrapAcceptorSubkey = 0x04
)

// maxToken bounds a GSS token we parse; the SASL layer bounds responses
// below this anyway.
const maxToken = 64 << 10

// frameToken puts the mechanism-independent header of RFC 2743 §3.1 around
// a Kerberos message: [APPLICATION 0] { OID, token id, message }.
func frameToken(id [2]byte, msg []byte) []byte {
	inner := make([]byte, 0, len(krb5OID)+2+len(msg))
	inner = append(inner, krb5OID...)
	inner = append(inner, id[:]...)
	inner = append(inner, msg...)
	out := []byte{0x60}
	out = appendDERLength(out, len(inner))
	return append(out, inner...)
}

func appendDERLength(b []byte, n int) []byte {
	switch {
	case n < 0x80:
		return append(b, byte(n))
	case n < 0x100:
		return append(b, 0x81, byte(n))
	case n < 0x10000:
		return append(b, 0x82, byte(n>>8), byte(n))
	default:
		return append(b, 0x83, byte(n>>16), byte(n>>8), byte(n))
	}
}

// unframeToken parses frameToken's output: the token id and the message.
func unframeToken(b []byte) (id [2]byte, msg []byte, err error) {
	if len(b) > maxToken {
		return id, nil, fmt.Errorf("GSS token of %d bytes is too long", len(b))
	}
	if len(b) < 2 || b[0] != 0x60 {
		return id, nil, errors.New("not a GSS-API initial context token")
	}
	n, rest, err := readDERLength(b[1:])
	if err != nil {
		return id, nil, err
	}
	if n != len(rest) {
		return id, nil, fmt.Errorf("GSS token length %d, have %d bytes", n, len(rest))
	}
	if !bytes.HasPrefix(rest, krb5OID) {
		return id, nil, errors.New("GSS token is not for the Kerberos 5 mechanism")
	}
	rest = rest[len(krb5OID):]
	if len(rest) < 2 {
		return id, nil, errors.New("GSS token too short")
	}
	copy(id[:], rest[:2])
	return id, rest[2:], nil
}

func readDERLength(b []byte) (int, []byte, error) {
	if len(b) == 0 {
		return 0, nil, errors.New("truncated DER length")
	}
	if b[0] < 0x80 {
		return int(b[0]), b[1:], nil
	}
	k := int(b[0] & 0x7f)
	if k == 0 || k > 3 || len(b) < 1+k {
		return 0, nil, errors.New("bad DER length")
	}
	n := 0
	for _, c := range b[1 : 1+k] {
		n = n<<8 | int(c)
	}
	return n, b[1+k:], nil
}

// cfxEnctype reports whether RFC 4121 tokens serve keys of this enctype.
func cfxEnctype(t int32) bool {
	switch t {
	case etypeID.AES128_CTS_HMAC_SHA1_96, etypeID.AES256_CTS_HMAC_SHA1_96,
		etypeID.AES128_CTS_HMAC_SHA256_128, etypeID.AES256_CTS_HMAC_SHA384_192:
		return true
	}
	return false
}

// secContext is an established GSS-API security context's per-message
// state (RFC 4121 §4.2).
type secContext struct {
	key            types.EncryptionKey
	acceptor       bool // we are the acceptor
	acceptorSubkey bool // the acceptor asserted a subkey: flag 0x04 both ways
	sendSeq        uint64
	recvSeq        uint64
}

func (c *secContext) usages() (send, recv uint32) {
	if c.acceptor {
		return keyusage.GSSAPI_ACCEPTOR_SEAL, keyusage.GSSAPI_INITIATOR_SEAL
	}
	return keyusage.GSSAPI_INITIATOR_SEAL, keyusage.GSSAPI_ACCEPTOR_SEAL
}

// wrap makes a Wrap token without confidentiality (conf_flag FALSE, as
// RFC 4752 §3.1 has it for the security-layer messages): header, payload,
// and the checksum of payload | header with EC and RRC zero, EC holding the
// checksum's length (RFC 4121 §4.2.4, §4.2.6.2).
func (c *secContext) wrap(payload []byte) ([]byte, error) {
	et, err := crypto.GetEtype(c.key.KeyType)
	if err != nil {
		return nil, err
	}
	send, _ := c.usages()
	var fl byte
	if c.acceptor {
		fl |= wrapSentByAcceptor
	}
	if c.acceptorSubkey {
		fl |= wrapAcceptorSubkey
	}
	hdr := wrapHeader(fl, 0, 0, c.sendSeq)
	sum, err := et.GetChecksumHash(c.key.KeyValue, append(append([]byte(nil), payload...), hdr...), send)
	if err != nil {
		return nil, err
	}
	c.sendSeq++
	out := wrapHeader(fl, uint16(len(sum)), 0, c.sendSeq-1)
	out = append(out, payload...)
	return append(out, sum...), nil
}

func wrapHeader(flags byte, ec, rrc uint16, seq uint64) []byte {
	h := make([]byte, 16)
	copy(h, tokWrap[:])
	h[2], h[3] = flags, 0xff
	binary.BigEndian.PutUint16(h[4:], ec)
	binary.BigEndian.PutUint16(h[6:], rrc)
	binary.BigEndian.PutUint64(h[8:], seq)
	return h
}

// unwrap checks a Wrap token from the peer and returns its payload. Both
// kinds are taken: with confidentiality (decrypted, RFC 4121 §4.2.4) and
// without (checksum verified). A rotated token (RRC, §4.2.5) is turned
// back first. The sequence number is not enforced: in SASL GSSAPI each
// side sends one token per context, and a token from another context fails
// its checksum under this context's key.
func (c *secContext) unwrap(tok []byte) ([]byte, error) {
	if len(tok) < 16 || len(tok) > maxToken {
		return nil, errors.New("wrap token has a bad length")
	}
	if tok[0] != tokWrap[0] || tok[1] != tokWrap[1] || tok[3] != 0xff {
		return nil, errors.New("not an RFC 4121 wrap token")
	}
	fl := tok[2]
	if (fl&wrapSentByAcceptor != 0) == c.acceptor {
		return nil, errors.New("wrap token has the wrong direction")
	}
	if c.acceptorSubkey && fl&wrapAcceptorSubkey == 0 {
		return nil, errors.New("wrap token lacks the acceptor subkey flag")
	}
	ec := int(binary.BigEndian.Uint16(tok[4:6]))
	rrc := int(binary.BigEndian.Uint16(tok[6:8]))
	seq := binary.BigEndian.Uint64(tok[8:16])
	data := append([]byte(nil), tok[16:]...)
	if len(data) > 0 && rrc%len(data) != 0 {
		r := rrc % len(data)
		data = append(data[r:], data[:r]...)
	}
	_, recv := c.usages()
	if fl&wrapSealed != 0 {
		pt, err := crypto.DecryptMessage(data, c.key, recv)
		if err != nil {
			return nil, fmt.Errorf("sealed wrap token: %w", err)
		}
		// plaintext | EC filler octets | a copy of the header (RRC zero).
		if len(pt) < 16+ec {
			return nil, errors.New("sealed wrap token too short")
		}
		if !bytes.Equal(pt[len(pt)-16:], wrapHeader(fl, uint16(ec), 0, seq)) {
			return nil, errors.New("sealed wrap token: header mismatch")
		}
		return pt[:len(pt)-16-ec], nil
	}
	if ec > len(data) {
		return nil, errors.New("wrap token checksum length exceeds the token")
	}
	et, err := crypto.GetEtype(c.key.KeyType)
	if err != nil {
		return nil, err
	}
	payload, sum := data[:len(data)-ec], data[len(data)-ec:]
	want, err := et.GetChecksumHash(c.key.KeyValue, append(append([]byte(nil), payload...), wrapHeader(fl, 0, 0, seq)...), recv)
	if err != nil {
		return nil, err
	}
	if !hmac.Equal(want, sum) {
		return nil, errors.New("wrap token checksum mismatch")
	}
	return payload, nil
}

// AcceptorContext is the acceptor's side of a GSS-API Kerberos context.
type AcceptorContext struct {
	Accepted
	sec secContext
}

// AcceptGSS is GSS_Accept_sec_context for one initial context token
// (RFC 2743 §2.2.2, RFC 4121 §4.1): it verifies the AP-REQ inside and
// returns the context and the output token, the framed AP-REP when the
// client asked for mutual authentication, else nil. The context is then
// complete: the Kerberos mechanism needs no further round trip.
func (a *Acceptor) AcceptGSS(token []byte, remote net.Addr) (*AcceptorContext, []byte, error) {
	id, msg, err := unframeToken(token)
	if err != nil {
		return nil, nil, a.refuse(errorcode.KRB_AP_ERR_MSG_TYPE, "malformed GSS token", err)
	}
	if id != tokAPReq {
		return nil, nil, a.refuse(errorcode.KRB_AP_ERR_MSG_TYPE, "GSS token is not an AP-REQ", fmt.Errorf("token id %x", id))
	}
	acc, err := a.Accept(msg, remote)
	if err != nil {
		return nil, nil, err
	}
	if !acc.hasGSSCks {
		return nil, nil, a.refuse(errorcode.KRB_AP_ERR_INAPP_CKSUM, "AP-REQ lacks the GSS checksum", errors.New("authenticator checksum is not of type 0x8003"))
	}
	if !cfxEnctype(acc.key.KeyType) {
		return nil, nil, a.refuse(errorcode.KDC_ERR_ETYPE_NOSUPP, "enctype not supported", fmt.Errorf("context key enctype %d has no RFC 4121 tokens here", acc.key.KeyType))
	}
	ctx := &AcceptorContext{Accepted: *acc, sec: secContext{key: acc.key, acceptor: true, sendSeq: acc.sendSeq, recvSeq: acc.recvSeq}}
	var out []byte
	if acc.APRep != nil {
		out = frameToken(tokAPRep, acc.APRep)
	}
	return ctx, out, nil
}

// Wrap is GSS_Wrap without confidentiality.
func (c *AcceptorContext) Wrap(payload []byte) ([]byte, error) { return c.sec.wrap(payload) }

// Unwrap is GSS_Unwrap.
func (c *AcceptorContext) Unwrap(token []byte) ([]byte, error) { return c.sec.unwrap(token) }
