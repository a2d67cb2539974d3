//go:build !linux

package passwdfile

import "time"

// cost returns the wall-clock time f takes (thread CPU time is measured on
// Linux only).
func cost(f func()) time.Duration { return wallCost(f) }
