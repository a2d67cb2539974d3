package mbox

import (
	"os/user"
	"strconv"

	"github.com/postoffice-mail/postoffice/internal/store/safefs"
)

// systemOwner returns the uid and gid of the system user called name, the
// owner of a new mbox <spool>/<name> when the user database gives none:
// /var/mail/<login> belongs to <login>, as Postfix's local(8), procmail
// and popa3d take it. The owner of the spool directory (root on Debian,
// root:mail 2775) would make a mailbox that local(8), delivering as the
// user, cannot open, and every message to it would bounce. ok is false
// when there is no such user (a virtual one), or the name is root's.
func systemOwner(name string) (o safefs.Owner, ok bool) {
	u, err := user.Lookup(name)
	if err != nil {
		return o, false
	}
	uid, err1 := strconv.Atoi(u.Uid)
	gid, err2 := strconv.Atoi(u.Gid)
	if err1 != nil || err2 != nil || uid <= 0 {
		return o, false
	}
	return safefs.Owner{UID: uid, GID: gid}, true
}
