//go:build unix

package safefs

// Owner is the user who owns a maildrop: its files are made and opened
// with these ids. A negative id is not known.
type Owner struct {
	UID, GID int
}

// OwnerOf returns the owner of d (its fstat uid and gid).
func OwnerOf(d *Dir) (Owner, error) {
	st, err := d.Stat()
	if err != nil {
		return Owner{-1, -1}, err
	}
	return Owner{UID: int(st.Uid), GID: int(st.Gid)}, nil
}

// Or returns o with each unknown (negative) id taken from p.
func (o Owner) Or(p Owner) Owner {
	if o.UID < 0 {
		o.UID = p.UID
	}
	if o.GID < 0 {
		o.GID = p.GID
	}
	return o
}
