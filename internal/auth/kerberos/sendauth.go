package kerberos

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
)

// sendauthVersion is the protocol version string krb5_sendauth sends first
// (MIT krb5 lib/krb5/krb/sendauth.c).
const sendauthVersion = "KRB5_SENDAUTH_V1.0"

// Answers to the version strings (recvauth.c): 0 accepts, 1 refuses the
// sendauth version, 2 the application version.
const (
	sendauthOK             = 0
	sendauthBadAuthVersion = 1
	sendauthBadAppVersion  = 2
)

// maxSendauthMessage bounds one length-prefixed message: a version string
// or an AP-REQ (whose ticket may carry a PAC of a few kilobytes).
const maxSendauthMessage = 64 << 10

// ErrSendauthVersion means the client spoke another sendauth or
// application version.
var ErrSendauthVersion = errors.New("kerberos: sendauth version mismatch")

// RecvAuth is the server side of the sendauth exchange, as MIT's
// krb5_recvauth runs it (lib/krb5/krb/recvauth.c):
//
//	C: len "KRB5_SENDAUTH_V1.0\0"  len appVersion "\0"
//	S: one octet: 0 ok, 1 bad sendauth version, 2 bad application version
//	C: len AP-REQ
//	S: len 0 (accepted), or len KRB-ERROR and the end
//	S: len AP-REP, when the AP-REQ asked for mutual authentication
//
// Every len is a 4-octet big-endian count (krb5_write_message). A refused
// AP-REQ gets its KRB-ERROR and the error, which wraps ErrRefused. The
// caller sets deadlines on rw.
func (a *Acceptor) RecvAuth(rw io.ReadWriter, appVersion string, remote net.Addr) (*Accepted, error) {
	v, err := readMessage(rw)
	if err != nil {
		return nil, fmt.Errorf("kerberos: sendauth version: %w", err)
	}
	app, err := readMessage(rw)
	if err != nil {
		return nil, fmt.Errorf("kerberos: sendauth application version: %w", err)
	}
	answer := byte(sendauthOK)
	switch {
	case string(bytes.TrimSuffix(v, []byte{0})) != sendauthVersion:
		answer = sendauthBadAuthVersion
	case string(bytes.TrimSuffix(app, []byte{0})) != appVersion:
		answer = sendauthBadAppVersion
	}
	if _, err := rw.Write([]byte{answer}); err != nil {
		return nil, err
	}
	if answer != sendauthOK {
		return nil, fmt.Errorf("%w: client sent %q, %q", ErrSendauthVersion, bytes.TrimSuffix(v, []byte{0}), bytes.TrimSuffix(app, []byte{0}))
	}
	req, err := readMessage(rw)
	if err != nil {
		return nil, fmt.Errorf("kerberos: sendauth AP-REQ: %w", err)
	}
	acc, err := a.Accept(req, remote)
	if err != nil {
		var ke *KRBError
		if errors.As(err, &ke) {
			if b, merr := ke.Marshal(); merr == nil {
				writeMessage(rw, b)
			}
		}
		return nil, err
	}
	if err := writeMessage(rw, nil); err != nil {
		return nil, err
	}
	if acc.APRep != nil {
		if err := writeMessage(rw, acc.APRep); err != nil {
			return nil, err
		}
	}
	return acc, nil
}

func readMessage(r io.Reader) ([]byte, error) {
	var n [4]byte
	if _, err := io.ReadFull(r, n[:]); err != nil {
		return nil, err
	}
	l := binary.BigEndian.Uint32(n[:])
	if l > maxSendauthMessage {
		return nil, fmt.Errorf("message of %d bytes exceeds %d", l, maxSendauthMessage)
	}
	b := make([]byte, l)
	if _, err := io.ReadFull(r, b); err != nil {
		return nil, err
	}
	return b, nil
}

func writeMessage(w io.Writer, b []byte) error {
	msg := make([]byte, 4, 4+len(b))
	binary.BigEndian.PutUint32(msg, uint32(len(b)))
	_, err := w.Write(append(msg, b...))
	return err
}
