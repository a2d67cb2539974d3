// Package privdrop gets postoffice from root to an unprivileged user once
// its sockets are open: it takes listening sockets from systemd socket
// activation (sd_listen_fds(3): LISTEN_PID, LISTEN_FDS, LISTEN_FDNAMES;
// no libsystemd), and DropTo switches the whole process to another user
// and group for good.
//
// Implementation notes:
//   - Activated checks LISTEN_PID against our pid, so sockets meant for a
//     parent are never taken, and unsets the three variables so that no
//     child process takes them either. Descriptors from 3 on are marked
//     close-on-exec.
//   - DropTo sets the supplementary groups, then the gid, then the uid
//     (setuid(2) as root sets the real, effective and saved ids). Go's
//     syscall.Setuid and Setgid apply to every thread of the process on
//     Linux since Go 1.16. It then checks that the ids changed and that
//     setuid(0) and setgid(0) fail: root cannot be regained.
//   - Everything that needs root must happen before DropTo: binding ports
//     below 1024, reading a TLS key readable only by root. A certificate
//     reloaded later must be readable by the target user.
package privdrop
