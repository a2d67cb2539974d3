package lmtp

import (
	"context"
	"errors"
	"fmt"

	"github.com/emersion/go-smtp"

	"github.com/postoffice-mail/postoffice/internal/store"
)

// Quota limits what one user's maildrop may hold. Zero fields mean no limit.
// It is enforced at delivery only (RCPT, DATA and the LDA), never on the
// POP3 side: a user over quota still reads and deletes mail as usual.
type Quota struct {
	Bytes    int64 // stored octets (Maildir S= sizes)
	Messages int   // messages in new/ and cur/
	// Permanent makes an over-quota reply 552 5.2.2 (the MTA bounces)
	// instead of 452 4.2.2 (the MTA retries later), RFC 3463 X.2.2.
	Permanent bool
}

// Enabled reports whether q limits anything.
func (q Quota) Enabled() bool { return q.Bytes > 0 || q.Messages > 0 }

// ErrOverQuota is returned by CheckQuota when a delivery would exceed the
// user's quota.
var ErrOverQuota = errors.New("lmtp: mailbox over quota")

// usager is a store that reports a maildrop's usage itself.
type usager interface {
	Usage(ctx context.Context, user string) (octets int64, messages int, err error)
}

// canMeasure reports whether CheckQuota can measure st's maildrops.
func canMeasure(st store.Store) bool {
	_, ok := st.(usager)
	return ok
}

// CheckQuota returns ErrOverQuota when storing size more octets as one more
// message would take user over q. Other errors are temporary.
func CheckQuota(ctx context.Context, st store.Store, q Quota, user string, size int64) error {
	if !q.Enabled() {
		return nil
	}
	s, ok := st.(usager)
	if !ok {
		return errors.New("lmtp: quota: the store cannot report usage")
	}
	used, n, err := s.Usage(ctx, user)
	if err != nil {
		return fmt.Errorf("lmtp: quota: %w", err)
	}
	if (q.Bytes > 0 && used+size > q.Bytes) || (q.Messages > 0 && n+1 > q.Messages) {
		return ErrOverQuota
	}
	return nil
}

// quotaReply is the reply for an over-quota recipient.
func quotaReply(q Quota) *smtp.SMTPError {
	if q.Permanent {
		return &smtp.SMTPError{Code: 552, EnhancedCode: smtp.EnhancedCode{5, 2, 2}, Message: "Mailbox is full"}
	}
	return &smtp.SMTPError{Code: 452, EnhancedCode: smtp.EnhancedCode{4, 2, 2}, Message: "Mailbox is full, try again later"}
}
