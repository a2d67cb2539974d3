#!/usr/bin/env bash
# Builds the .deb, installs it on this machine, and checks that it works as
# installed: the binary, the default configuration (postoffice check), the
# systemd units (systemd-analyze verify, when present), then a server run
# from the installed binary with a test configuration in a temp directory,
# a message delivered with "postoffice deliver" and read back over POP3 with
# curl, and finally removal (dpkg --purge).
#
#   packaging/test-deb.sh            (as root, on Debian or Ubuntu)
#
# Safe on a development machine: it refuses to run when a postoffice package
# or an /etc/postoffice is already there, works in temp directories, stops
# the server it started, and removes the package and whatever its
# postinstall created (the postoffice user, /var/vmail, the spool) unless
# they existed before.
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
say() { echo "test-deb: $*"; }
fail() {
	echo "test-deb: FAIL: $*" >&2
	exit 1
}

[ "$(id -u)" = 0 ] || fail "needs root (dpkg -i)"
command -v dpkg >/dev/null || fail "needs dpkg (Debian or Ubuntu)"
command -v curl >/dev/null || fail "needs curl (apt-get install curl)"
if dpkg-query -W -f='${Status}' postoffice 2>/dev/null | grep -q "ok installed"; then
	fail "a postoffice package is installed already; this test would remove it"
fi
[ ! -e /etc/postoffice ] || fail "/etc/postoffice exists; this test would change a site's configuration"

had_user=false had_vmail=false had_spool=false had_run=false
getent passwd postoffice >/dev/null && had_user=true
[ -e /var/vmail ] && had_vmail=true
[ -e /var/spool/postoffice ] && had_spool=true
[ -e /run/postoffice ] && had_run=true

tmp=$(mktemp -d)
server_pid=
installed=false
cleanup() {
	status=$?
	if [ -n "$server_pid" ]; then
		kill "$server_pid" 2>/dev/null || true
		wait "$server_pid" 2>/dev/null || true
	fi
	if $installed; then
		dpkg --purge postoffice >/dev/null 2>&1 || true
	fi
	rm -f /etc/postoffice/users
	rmdir /etc/postoffice 2>/dev/null || true
	$had_run || rm -rf /run/postoffice
	$had_spool || rmdir /var/spool/postoffice 2>/dev/null || true
	$had_vmail || rmdir /var/vmail 2>/dev/null || true
	if ! $had_user && getent passwd postoffice >/dev/null; then
		userdel postoffice 2>/dev/null || true
		getent group postoffice >/dev/null && groupdel postoffice 2>/dev/null || true
	fi
	if [ $status -ne 0 ] && [ -f "$tmp/serve.log" ]; then
		echo "test-deb: server log:" >&2
		cat "$tmp/serve.log" >&2
	fi
	rm -rf "$tmp"
	exit $status
}
trap cleanup EXIT

say "building the packages"
PKG_VERSION=${PKG_VERSION:-0.0.0} "$repo/packaging/build-packages.sh" "$tmp/pkg" >"$tmp/build.log" 2>&1 ||
	{ cat "$tmp/build.log" >&2; fail "build-packages.sh"; }
deb=$(ls "$tmp"/pkg/postoffice_*.deb)
ls "$tmp"/pkg/postoffice-*.rpm >/dev/null || fail "no .rpm was built"

say "dpkg -i $(basename "$deb")"
installed=true
dpkg -i "$deb" >"$tmp/dpkg.log" 2>&1 || { cat "$tmp/dpkg.log" >&2; fail "dpkg -i"; }

po=/usr/sbin/postoffice
[ -x $po ] || fail "$po is not installed"
$po version
getent passwd postoffice >/dev/null || fail "postinstall did not create the postoffice user"
[ "$(stat -c %U:%G:%a /etc/postoffice/users)" = root:postoffice:640 ] ||
	fail "/etc/postoffice/users: want root:postoffice mode 640, have $(stat -c %U:%G:%a /etc/postoffice/users)"
dpkg-query -W -f='${Conffiles}\n' postoffice | grep -q /etc/postoffice/postoffice.toml ||
	fail "/etc/postoffice/postoffice.toml is not a conffile"

say "postoffice check on the installed configuration"
$po check --config /etc/postoffice/postoffice.toml || fail "check refuses the configuration the package installs"

if command -v systemd-analyze >/dev/null; then
	say "systemd-analyze verify"
	# --man=no: the Documentation= pages are checked by no one offline.
	(cd /usr/lib/systemd/system && systemd-analyze verify --man=no postoffice.service \
		postoffice-pop3.socket postoffice-pop3s.socket postoffice-lmtp.socket) ||
		fail "systemd-analyze verify"
else
	say "systemd-analyze is absent (apt-get install systemd): units not verified"
fi

say "serving a test maildrop with the installed binary"
cat >"$tmp/test.toml" <<TOML
[pop3]
listen = ["127.0.0.1:0"]
[auth]
passwd_file = "$tmp/users"
[mail]
location = "maildir:$tmp/vmail/%d/%n/Maildir"
TOML
: >"$tmp/users"
password=$($po user add --passwd-file "$tmp/users" alice@example.org | sed -n 's/^alice@example.org password: //p')
[ -n "$password" ] || fail "postoffice user add printed no password"
printf 'From: bob@example.org\r\nSubject: packaged\r\n\r\nhello from the package test\r\n' |
	$po deliver --config "$tmp/test.toml" -u alice@example.org || fail "postoffice deliver"

$po serve --config "$tmp/test.toml" >"$tmp/serve.log" 2>&1 &
server_pid=$!
addr=
for _ in $(seq 100); do
	addr=$(sed -n 's/.*msg=listening addr=\(127\.0\.0\.1:[0-9]*\).*/\1/p' "$tmp/serve.log" | head -1)
	[ -n "$addr" ] && break
	kill -0 "$server_pid" 2>/dev/null || fail "the server exited"
	sleep 0.1
done
[ -n "$addr" ] || fail "the server did not log its address within 10 s"

say "curl pop3://$addr/1"
got=$(curl -sS --max-time 20 --user "alice@example.org:$password" "pop3://$addr/1") || fail "curl"
grep -q "hello from the package test" <<<"$got" || fail "RETR 1 did not return the delivered message: $got"

kill "$server_pid"
wait "$server_pid" || true
server_pid=

say "dpkg --purge postoffice"
dpkg --purge postoffice >"$tmp/dpkg.log" 2>&1 || { cat "$tmp/dpkg.log" >&2; fail "dpkg --purge"; }
installed=false
[ ! -e $po ] || fail "$po is still there after dpkg --purge"
say "ok"
