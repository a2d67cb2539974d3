//go:build !linux

package privdrop

import "errors"

// DropTo is only implemented on Linux; elsewhere run postoffice as the
// target user from the start (e.g. a service manager's user setting).
func DropTo(userName, groupName string) error {
	return errors.New("privdrop: dropping privileges is only supported on Linux")
}
