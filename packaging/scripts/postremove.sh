#!/bin/sh
# postoffice package: after removal. Mail, the passwd-file and the
# postoffice user stay: removing a package must never lose mail or let a
# later user inherit the uid that owns it.
set -e
if [ -d /run/systemd/system ]; then
	systemctl daemon-reload >/dev/null 2>&1 || true
fi
