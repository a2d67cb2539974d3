package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/postoffice-mail/postoffice/internal/auth"
	"github.com/postoffice-mail/postoffice/internal/config"
	"github.com/postoffice-mail/postoffice/internal/lmtp"
	"github.com/postoffice-mail/postoffice/internal/store"
	"github.com/postoffice-mail/postoffice/internal/sysexits"
)

const defaultConfig = "/etc/postoffice/postoffice.toml"

// runDeliver is the local delivery agent: one message on stdin into one
// user's maildrop. It exits with a sysexits code, which is its interface,
// as MTAs read it (Postfix's mailbox_command and pipe(8), Exim's pipe
// transport): 67 (no such user), 65 (message too large) and 73 (maildrop
// unusable, permanent quota) bounce; 75 (store or user database failure,
// quota) defers; 64 is a bad command line and 78 an unusable config.
func runDeliver(args []string, stdout, stderr io.Writer) error {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := deliverMain(ctx, args, os.Stdin, stderr)
	stop()
	if code != sysexits.OK {
		return exitError{code: code} // deliverMain has said why
	}
	return nil
}

// deliverMain does the work of runDeliver and returns the exit code.
func deliverMain(ctx context.Context, args []string, stdin io.Reader, stderr io.Writer) int {
	fs := newFlagSet("deliver", stderr)
	user := fs.String("u", "", "deliver to `USER` (required)")
	cfgPath := fs.String("config", defaultConfig, "configuration `file` (TOML)")
	from := fs.String("f", "", "envelope `SENDER` for Return-Path (empty: <>)")
	rcpt := fs.String("a", "", "recipient `ADDRESS` for Delivered-To (default: USER)")
	fs.Usage = func() {
		fmt.Fprintln(stderr, "usage: postoffice deliver -u USER [--config FILE] [-f SENDER] [-a ADDRESS] < message")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return sysexits.OK
		}
		return sysexits.Usage
	}
	fail := func(code int, format string, a ...any) int {
		fmt.Fprintf(stderr, "postoffice deliver: "+format+"\n", a...)
		return code
	}
	if fs.NArg() > 0 {
		return fail(sysexits.Usage, "unexpected arguments: %s", strings.Join(fs.Args(), " "))
	}
	if *user == "" {
		return fail(sysexits.Usage, "-u USER is required")
	}
	cfg, err := config.Load(*cfgPath)
	if err != nil {
		return fail(sysexits.Config, "%v", err)
	}
	// The store serve and LMTP deliver into, with every [mail] option.
	a := newApp(cfg, stderr)
	defer a.close()
	if errs := a.build(partStore); errs != nil {
		var be *buildError
		if errors.As(errs[0], &be) && be.part == partUsers {
			return fail(sysexits.TempFail, "%v", errs[0]) // perhaps being rewritten
		}
		return fail(sysexits.Config, "%v", errs[0])
	}
	log, users, st := a.log, a.users, a.store
	u, err := lmtp.Resolve(ctx, users, *user, cfg.LMTP.RecipientDelimiter)
	switch {
	case errors.Is(err, auth.ErrUnknownUser):
		return fail(sysexits.NoUser, "unknown user %q", *user)
	case err != nil:
		return fail(sysexits.TempFail, "looking up %q: %v", *user, err)
	}
	if *rcpt == "" {
		*rcpt = *user
	}

	// Quota: a full maildrop is refused before reading the message; the
	// message's own size is checked against what is left as it streams.
	quota := lmtp.Quota(cfg.Quota)
	limit := cfg.LMTP.MaxMessageSize
	switch err := lmtp.CheckQuota(ctx, st, quota, u.Name, 0); {
	case errors.Is(err, lmtp.ErrOverQuota):
		return overQuota(quota, u.Name, stderr)
	case err != nil:
		return fail(sysexits.TempFail, "%v", err)
	}

	br := bufio.NewReaderSize(stdin, 64<<10)
	skipFromLine(br)
	eol := "\n"
	if peek, _ := br.Peek(br.Size()); bytes.Contains(peek, []byte("\r\n")) ||
		(len(peek) > 0 && !bytes.Contains(peek, []byte("\n")) && bytes.HasSuffix(peek, []byte("\r"))) {
		eol = "\r\n"
	}
	hdr := lmtp.Header(*from, *rcpt, eol)
	body := &limitReader{r: br, n: limit}
	if quota.Bytes > 0 {
		body.quota = func(n int64) error { return lmtp.CheckQuota(ctx, st, quota, u.Name, int64(len(hdr))+n) }
	}
	msg := io.MultiReader(strings.NewReader(hdr), body)
	err = st.Deliver(ctx, u.Name, msg)
	switch {
	case errors.Is(body.quotaErr, lmtp.ErrOverQuota):
		return overQuota(quota, u.Name, stderr)
	case body.quotaErr != nil:
		return fail(sysexits.TempFail, "%v", body.quotaErr)
	case err == nil:
		log.Info("delivered", "user", u.Name, "size", body.read)
		return sysexits.OK
	case body.over:
		return fail(sysexits.DataErr, "message larger than lmtp.max_message_size (%d octets)", cfg.LMTP.MaxMessageSize)
	case errors.Is(err, store.ErrNoUser):
		return fail(sysexits.CantCreat, "no maildrop for %q: %v", u.Name, err)
	default:
		log.Error("delivery failed", "user", u.Name, "err", err)
		return fail(sysexits.TempFail, "delivery to %q failed: %v", u.Name, err)
	}
}

// skipFromLine drops an mbox "From " envelope line that some MTAs put in
// front of a piped message (as Dovecot's LDA does).
func skipFromLine(br *bufio.Reader) {
	if p, _ := br.Peek(5); string(p) == "From " {
		for {
			if _, err := br.ReadSlice('\n'); !errors.Is(err, bufio.ErrBufferFull) {
				return
			}
		}
	}
}

// errTooBig aborts a delivery that exceeds the size limit.
var errTooBig = errors.New("message too big")

// overQuota reports a delivery refused for quota: permanent quotas bounce,
// others defer.
func overQuota(q lmtp.Quota, user string, stderr io.Writer) int {
	fmt.Fprintf(stderr, "postoffice deliver: mailbox of %q is full\n", user)
	if q.Permanent {
		return sysexits.CantCreat
	}
	return sysexits.TempFail
}

// limitReader fails once more than n octets were read and, when quota is
// set, checks the quota with the message's size at its end.
type limitReader struct {
	r        io.Reader
	n        int64
	read     int64
	over     bool
	quota    func(size int64) error
	quotaErr error
}

func (l *limitReader) Read(p []byte) (int, error) {
	n, err := l.r.Read(p)
	l.read += int64(n)
	if l.read > l.n {
		l.over = true
		return 0, errTooBig
	}
	if err == io.EOF && l.quota != nil {
		// The whole message is in the store's tmp/ now, not yet visible:
		// failing here makes the store remove it.
		if l.quotaErr = l.quota(l.read); l.quotaErr != nil {
			return n, l.quotaErr
		}
	}
	return n, err
}
