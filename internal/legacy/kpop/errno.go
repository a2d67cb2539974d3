package kpop

import "syscall"

// syscallEMFILE is the error of Accept when the process is out of file
// descriptors: a pause, not the end of the listener.
var syscallEMFILE = syscall.EMFILE
