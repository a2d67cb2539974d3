// Package sysexits holds the exit statuses of BSD's sysexits.h that the
// postoffice commands return, so that every command means the same thing
// by the same number. MTAs read them: Postfix's pipe(8) and
// mailbox_command and Exim's pipe transport bounce a message on 64-69 and
// 76-78 other than 75, and defer it on 75 (EX_TEMPFAIL); mpop and fetchmail
// callers read them the same way.
package sysexits

// The statuses, with sysexits.h's names.
const (
	OK          = 0  // EX_OK: success
	Usage       = 64 // EX_USAGE: the command was used incorrectly
	DataErr     = 65 // EX_DATAERR: the input data was incorrect
	NoUser      = 67 // EX_NOUSER: addressee unknown
	Unavailable = 69 // EX_UNAVAILABLE: a service is unavailable
	Software    = 70 // EX_SOFTWARE: internal software error
	CantCreat   = 73 // EX_CANTCREAT: a (user) output file cannot be created
	IOErr       = 74 // EX_IOERR: an error occurred while doing I/O
	TempFail    = 75 // EX_TEMPFAIL: temporary failure; the caller should retry later
	NoPerm      = 77 // EX_NOPERM: permission denied
	Config      = 78 // EX_CONFIG: configuration error
)
