#!/bin/sh
# postoffice package: after install or upgrade (deb: "configure" VERSION;
# rpm: the number of installed versions). Creates what the default
# configuration needs and never touches what a site already has: an
# existing user, passwd-file, /var/vmail or spool keeps its owner and mode.
set -e

if ! getent passwd postoffice >/dev/null; then
	if command -v useradd >/dev/null 2>&1; then
		useradd --system --user-group --home-dir /nonexistent --no-create-home \
			--shell /usr/sbin/nologin --comment "postoffice POP3 server" postoffice
	else
		adduser --system --group --home /nonexistent --no-create-home \
			--shell /usr/sbin/nologin --gecos "postoffice POP3 server" postoffice
	fi
fi

# The passwd-file holds password hashes: readable by the server's group,
# not by everyone. "postoffice user add" keeps the mode and owner.
if [ ! -e /etc/postoffice/users ]; then
	install -m 0640 -o root -g postoffice /dev/null /etc/postoffice/users
fi
[ -d /var/vmail ] || install -d -m 0750 -o postoffice -g postoffice /var/vmail
[ -d /var/spool/postoffice ] || install -d -m 0750 -o postoffice -g postoffice /var/spool/postoffice
# /run/postoffice holds the LMTP socket. Under systemd the socket unit and
# RuntimeDirectory= make it at each boot; make it now too, so that
# "postoffice check" and a server started by hand find it.
[ -d /run/postoffice ] || install -d -m 0755 -o postoffice -g postoffice /run/postoffice

if [ -d /run/systemd/system ]; then
	systemctl daemon-reload >/dev/null 2>&1 || true
	# An upgrade restarts a running server; a first install starts nothing,
	# since there are no users yet and the site has not chosen its TLS.
	if systemctl is-active --quiet postoffice.service; then
		systemctl try-restart postoffice.service || true
	fi
fi

cat <<'MSG'
postoffice: installed. Next steps (/usr/share/doc/postoffice/install.md):
  edit /etc/postoffice/postoffice.toml, add users with
    postoffice user add --config /etc/postoffice/postoffice.toml alice@example.org
  check:  postoffice check --config /etc/postoffice/postoffice.toml
  start:  systemctl enable --now postoffice-pop3.socket postoffice-lmtp.socket postoffice.service
MSG
