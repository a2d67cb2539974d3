package kerberos

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/jcmturner/gokrb5/v8/client"
	"github.com/jcmturner/gokrb5/v8/config"
	"github.com/jcmturner/gokrb5/v8/credentials"
	"github.com/jcmturner/gokrb5/v8/crypto"
	"github.com/jcmturner/gokrb5/v8/iana/flags"
	"github.com/jcmturner/gokrb5/v8/iana/keyusage"
	"github.com/jcmturner/gokrb5/v8/iana/nametype"
	"github.com/jcmturner/gokrb5/v8/keytab"
	"github.com/jcmturner/gokrb5/v8/messages"
	"github.com/jcmturner/gokrb5/v8/types"
)

// InitiatorOptions say where the client's credentials come from.
type InitiatorOptions struct {
	// Config is the krb5.conf to read (realms, KDCs, default realm). Empty
	// means $KRB5_CONFIG, else /etc/krb5.conf.
	Config string
	// CCache is the credential cache. Empty means $KRB5CCNAME, else
	// /tmp/krb5cc_<uid>, MIT's default. Only file caches ("FILE:path" or a
	// path) can be read; KEYRING:, KCM: and DIR: caches are refused with a
	// clear error.
	CCache string
	// Keytab and Principal ("user@REALM"), if both set, are used instead of
	// a credential cache: the client gets its own ticket from the KDC with
	// the keytab's key, as a service account running postoffice fetch from
	// cron would.
	Keytab    string
	Principal string
}

// InitiatorContext is the initiator's side of a GSS-API Kerberos context.
type InitiatorContext struct {
	// Client is the principal whose ticket was used.
	Client Principal

	sec         secContext
	sessionKey  types.EncryptionKey
	ctime       time.Time
	cusec       int
	established bool
}

// Initiate is GSS_Init_sec_context's first call for the target
// service@host (RFC 2743 §2.2.1): it gets a ticket for service/host from
// the credential cache or the KDC and returns the initial context token,
// an AP-REQ asking for mutual authentication, with a fresh subkey and the
// RFC 4121 §4.1.1 checksum (mutual, replay, sequence, confidentiality and
// integrity flags).
func Initiate(opts InitiatorOptions, service, host string) (*InitiatorContext, []byte, error) {
	cl, err := newClient(opts)
	if err != nil {
		return nil, nil, err
	}
	defer cl.Destroy()
	spn := service + "/" + host
	tkt, key, err := cl.GetServiceTicket(spn)
	if err != nil {
		return nil, nil, fmt.Errorf("kerberos: ticket for %s: %w", spn, err)
	}
	if !cfxEnctype(key.KeyType) {
		return nil, nil, fmt.Errorf("kerberos: ticket for %s has session key enctype %d; only AES enctypes are supported", spn, key.KeyType)
	}
	auth, err := types.NewAuthenticator(cl.Credentials.Domain(), cl.Credentials.CName())
	if err != nil {
		return nil, nil, err
	}
	et, err := crypto.GetEtype(key.KeyType)
	if err != nil {
		return nil, nil, err
	}
	if err := auth.GenerateSeqNumberAndSubKey(key.KeyType, et.GetKeyByteSize()); err != nil {
		return nil, nil, err
	}
	cks := make([]byte, 24)
	binary.LittleEndian.PutUint32(cks[0:4], 16) // Lgth: no channel bindings, Bnd all zero
	binary.LittleEndian.PutUint32(cks[20:24], gssMutualFlag|gssReplayFlag|gssSequenceFlag|gssConfFlag|gssIntegFlag)
	auth.Cksum = types.Checksum{CksumType: gssChecksumType, Checksum: cks}
	req, err := messages.NewAPReq(tkt, key, auth)
	if err != nil {
		return nil, nil, err
	}
	types.SetFlag(&req.APOptions, flags.APOptionMutualRequired)
	b, err := req.Marshal()
	if err != nil {
		return nil, nil, err
	}
	ctx := &InitiatorContext{
		Client:     Principal{Components: auth.CName.NameString, Realm: auth.CRealm},
		sessionKey: key,
		ctime:      auth.CTime,
		cusec:      auth.Cusec,
		sec: secContext{
			key:     auth.SubKey,
			sendSeq: uint64(uint32(auth.SeqNumber)),
		},
	}
	return ctx, frameToken(tokAPReq, b), nil
}

// Continue is GSS_Init_sec_context's second call: it checks the acceptor's
// AP-REP (RFC 4120 §3.2.5: its ctime and cusec must be ours) and takes its
// sequence number and, if it has one, its subkey (RFC 4121 §2).
func (c *InitiatorContext) Continue(token []byte) error {
	if c.established {
		return errors.New("kerberos: context already established")
	}
	id, msg, err := unframeToken(token)
	if err != nil {
		return fmt.Errorf("kerberos: server token: %w", err)
	}
	if id == tokKRBError {
		var ke messages.KRBError
		if err := ke.Unmarshal(msg); err == nil {
			return fmt.Errorf("kerberos: server refused the ticket: %w", ke)
		}
		return errors.New("kerberos: server sent a KRB-ERROR")
	}
	if id != tokAPRep {
		return fmt.Errorf("kerberos: server token is not an AP-REP (id %x)", id)
	}
	part, err := c.checkAPRep(msg)
	if err != nil {
		return err
	}
	c.sec.recvSeq = uint64(uint32(part.SequenceNumber))
	if part.Subkey.KeyType != 0 && len(part.Subkey.KeyValue) > 0 {
		if !cfxEnctype(part.Subkey.KeyType) {
			return fmt.Errorf("kerberos: acceptor subkey enctype %d is not supported", part.Subkey.KeyType)
		}
		c.sec.key = part.Subkey
		c.sec.acceptorSubkey = true
	}
	c.established = true
	return nil
}

func (c *InitiatorContext) checkAPRep(msg []byte) (*messages.EncAPRepPart, error) {
	var rep messages.APRep
	if err := rep.Unmarshal(msg); err != nil {
		return nil, fmt.Errorf("kerberos: AP-REP: %w", err)
	}
	pt, err := crypto.DecryptEncPart(rep.EncPart, c.sessionKey, keyusage.AP_REP_ENCPART)
	if err != nil {
		return nil, fmt.Errorf("kerberos: AP-REP does not decrypt under the session key: %w", err)
	}
	var part messages.EncAPRepPart
	if err := part.Unmarshal(pt); err != nil {
		return nil, fmt.Errorf("kerberos: AP-REP: %w", err)
	}
	if !part.CTime.Equal(c.ctime.Truncate(time.Second)) || part.Cusec != c.cusec {
		return nil, errors.New("kerberos: AP-REP does not answer our authenticator")
	}
	return &part, nil
}

// Established reports whether the AP-REP was checked.
func (c *InitiatorContext) Established() bool { return c.established }

// Wrap is GSS_Wrap without confidentiality.
func (c *InitiatorContext) Wrap(payload []byte) ([]byte, error) { return c.sec.wrap(payload) }

// Unwrap is GSS_Unwrap.
func (c *InitiatorContext) Unwrap(token []byte) ([]byte, error) { return c.sec.unwrap(token) }

// newClient makes the gokrb5 client of opts.
func newClient(opts InitiatorOptions) (*client.Client, error) {
	cfgPath := opts.Config
	if cfgPath == "" {
		cfgPath = os.Getenv("KRB5_CONFIG")
	}
	if cfgPath == "" {
		cfgPath = "/etc/krb5.conf"
	}
	// MIT allows a colon-separated list; the first file is the main one.
	cfgPath, _, _ = strings.Cut(cfgPath, ":")
	cfg, err := config.Load(cfgPath)
	if err != nil {
		return nil, fmt.Errorf("kerberos: krb5.conf %s: %w", cfgPath, err)
	}
	settings := []func(*client.Settings){client.DisablePAFXFAST(true), client.Logger(log.New(io.Discard, "", 0))}
	if opts.Keytab != "" || opts.Principal != "" {
		if opts.Keytab == "" || opts.Principal == "" {
			return nil, errors.New("kerberos: a keytab login needs both the keytab and the principal")
		}
		kt, err := keytab.Load(opts.Keytab)
		if err != nil {
			return nil, fmt.Errorf("kerberos: keytab %s: %w", opts.Keytab, err)
		}
		name, realm, ok := strings.Cut(opts.Principal, "@")
		if !ok {
			realm = cfg.LibDefaults.DefaultRealm
		}
		cl := client.NewWithKeytab(name, realm, kt, cfg, settings...)
		if err := cl.Login(); err != nil {
			cl.Destroy()
			return nil, fmt.Errorf("kerberos: login as %s with keytab %s: %w", opts.Principal, opts.Keytab, err)
		}
		return cl, nil
	}
	path, err := ccachePath(opts.CCache)
	if err != nil {
		return nil, err
	}
	cc, err := credentials.LoadCCache(path)
	if err != nil {
		return nil, fmt.Errorf("kerberos: credential cache %s (run kinit first): %w", path, err)
	}
	// An expired ticket-granting ticket would go to the KDC, which
	// refuses it, and gokrb5 reports that as "no valid existing session":
	// say what the user has to do instead (a service ticket never
	// outlives the TGT it came from, so none in the cache can help).
	tgs := types.PrincipalName{NameType: nametype.KRB_NT_SRV_INST, NameString: []string{"krbtgt", cc.DefaultPrincipal.Realm}}
	if tgt, ok := cc.GetEntry(tgs); ok && !tgt.EndTime.IsZero() && time.Now().After(tgt.EndTime) {
		return nil, fmt.Errorf("kerberos: the ticket of %s in credential cache %s expired at %s: run kinit again",
			cc.DefaultPrincipal.PrincipalName.PrincipalNameString(), path, tgt.EndTime.Local().Format(time.RFC3339))
	}
	cl, err := client.NewFromCCache(cc, cfg, settings...)
	if err != nil {
		return nil, fmt.Errorf("kerberos: credential cache %s: %w", path, err)
	}
	return cl, nil
}

// ccachePath resolves a credential cache name to a file path.
func ccachePath(name string) (string, error) {
	if name == "" {
		name = os.Getenv("KRB5CCNAME")
	}
	if name == "" {
		return "/tmp/krb5cc_" + strconv.Itoa(os.Getuid()), nil
	}
	typ, rest, ok := strings.Cut(name, ":")
	if !ok || strings.HasPrefix(name, "/") {
		return name, nil
	}
	if strings.EqualFold(typ, "FILE") {
		return rest, nil
	}
	return "", fmt.Errorf("kerberos: credential cache %q: only FILE: caches can be read; set KRB5CCNAME=FILE:/tmp/krb5cc_%d and kinit again", name, os.Getuid())
}
