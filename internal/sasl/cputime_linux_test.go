package sasl

import (
	"time"

	"golang.org/x/sys/unix"
)

// cost returns the CPU time the process spends while f runs. The timing
// tests compare what a check costs, not how long the machine took to run
// it: the process's CPU time is not inflated when other test binaries or
// processes compete for the cores, as wall-clock time is. (Thread CPU time
// would miss work that a verification hands to another goroutine.) The
// tests that use it do not run in parallel with the rest of the package.
func cost(f func()) time.Duration {
	var before, after unix.Rusage
	if unix.Getrusage(unix.RUSAGE_SELF, &before) != nil {
		return wallCost(f)
	}
	f()
	if unix.Getrusage(unix.RUSAGE_SELF, &after) != nil {
		return wallCost(f)
	}
	cpu := func(r *unix.Rusage) time.Duration {
		return time.Duration(r.Utime.Nano() + r.Stime.Nano())
	}
	return cpu(&after) - cpu(&before)
}
