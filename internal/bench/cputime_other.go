//go:build !unix

package bench

import "time"

// cpuTime is not measured on this system: the generator's own CPU is
// reported as zero.
func cpuTime() time.Duration { return 0 }
