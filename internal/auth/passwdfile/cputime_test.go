package passwdfile

import "time"

// wallCost returns the wall-clock time f takes.
func wallCost(f func()) time.Duration {
	start := time.Now()
	f()
	return time.Since(start)
}
