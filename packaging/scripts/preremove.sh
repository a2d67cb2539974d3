#!/bin/sh
# postoffice package: before removal. deb passes "remove" (or "upgrade");
# rpm passes the number of versions left after this one goes (0: removal).
# On an upgrade the server keeps running until postinstall restarts it.
set -e
case "$1" in
remove | 0) ;;
*) exit 0 ;;
esac
if [ -d /run/systemd/system ]; then
	systemctl disable --now postoffice.service postoffice-pop3.socket \
		postoffice-pop3s.socket postoffice-lmtp.socket >/dev/null 2>&1 || true
fi
