//go:build unix && !linux

package safefs

// Do runs fn. Only Linux has per-thread file-system ids (see do_linux.go);
// elsewhere run postoffice as the mail user ([server] user) instead of
// root, so that the kernel protects what that user cannot reach.
func Do(o Owner, fn func() error) error { return fn() }
