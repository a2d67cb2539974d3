package privdrop

import (
	"errors"
	"fmt"
	"os"
	"os/user"
	"strconv"
	"syscall"
)

// DropTo switches the process to userName and groupName (names or numeric
// ids; an empty group means the user's primary group), with the user's
// supplementary groups. It refuses a target of uid 0 or gid 0. Called by a
// process that is not root, it succeeds only if it already runs as that
// user and group, so the same configuration works under a systemd unit
// with User= set.
func DropTo(userName, groupName string) error {
	uid, gid, groups, err := lookup(userName, groupName)
	if err != nil {
		return err
	}
	if uid == 0 || gid == 0 {
		return fmt.Errorf("privdrop: refusing to run as root (user %q, group %q)", userName, groupName)
	}
	if os.Geteuid() != 0 {
		if os.Getuid() == uid && os.Geteuid() == uid && os.Getgid() == gid && os.Getegid() == gid {
			return nil
		}
		return fmt.Errorf("privdrop: cannot switch to %s:%s: not running as root (uid %d)", userName, groupName, os.Geteuid())
	}
	if err := syscall.Setgroups(groups); err != nil {
		return fmt.Errorf("privdrop: setgroups: %w", err)
	}
	if err := syscall.Setgid(gid); err != nil {
		return fmt.Errorf("privdrop: setgid %d: %w", gid, err)
	}
	if err := syscall.Setuid(uid); err != nil {
		return fmt.Errorf("privdrop: setuid %d: %w", uid, err)
	}
	return verify(uid, gid)
}

// verify checks that the process runs as uid and gid and cannot become
// root again.
func verify(uid, gid int) error {
	if os.Getuid() != uid || os.Geteuid() != uid || os.Getgid() != gid || os.Getegid() != gid {
		return fmt.Errorf("privdrop: ids are uid %d/%d gid %d/%d after the switch, want %d and %d",
			os.Getuid(), os.Geteuid(), os.Getgid(), os.Getegid(), uid, gid)
	}
	if err := syscall.Setuid(0); err == nil {
		return errors.New("privdrop: setuid(0) succeeded after dropping privileges")
	}
	if err := syscall.Setgid(0); err == nil {
		return errors.New("privdrop: setgid(0) succeeded after dropping privileges")
	}
	return nil
}

// lookup resolves the user and group to ids and the supplementary groups.
func lookup(userName, groupName string) (uid, gid int, groups []int, err error) {
	if userName == "" {
		return 0, 0, nil, errors.New("privdrop: no user given")
	}
	u, err := user.Lookup(userName)
	if err != nil {
		if _, numErr := strconv.Atoi(userName); numErr != nil {
			return 0, 0, nil, fmt.Errorf("privdrop: %w", err)
		}
		if u, err = user.LookupId(userName); err != nil {
			return 0, 0, nil, fmt.Errorf("privdrop: %w", err)
		}
	}
	if uid, err = strconv.Atoi(u.Uid); err != nil {
		return 0, 0, nil, fmt.Errorf("privdrop: user %q: uid %q", userName, u.Uid)
	}
	gidStr := u.Gid
	if groupName != "" {
		g, err := user.LookupGroup(groupName)
		if err != nil {
			if _, numErr := strconv.Atoi(groupName); numErr != nil {
				return 0, 0, nil, fmt.Errorf("privdrop: %w", err)
			}
			if g, err = user.LookupGroupId(groupName); err != nil {
				return 0, 0, nil, fmt.Errorf("privdrop: %w", err)
			}
		}
		gidStr = g.Gid
	}
	if gid, err = strconv.Atoi(gidStr); err != nil {
		return 0, 0, nil, fmt.Errorf("privdrop: group %q: gid %q", groupName, gidStr)
	}
	groups = []int{gid}
	ids, _ := u.GroupIds()
	for _, s := range ids {
		if g, err := strconv.Atoi(s); err == nil && g != gid && g != 0 {
			groups = append(groups, g)
		}
	}
	return uid, gid, groups, nil
}
