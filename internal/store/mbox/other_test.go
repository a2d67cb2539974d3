//go:build !linux

package mbox

import (
	"errors"
	"testing"
)

// Off Linux the store refuses to start, with the reason and what to use
// instead, rather than lock mailboxes in a way that may not exclude other
// programs or this server's other sessions. (Its other tests need Linux.)
func TestNewRefusedOffLinux(t *testing.T) {
	_, err := New(Options{Location: "mbox:/var/mail/%u"})
	if !errors.Is(err, errNoOFDLocks) {
		t.Fatalf("New = %v, want errNoOFDLocks", err)
	}
}
