#!/usr/bin/env bash
# bench/fetch.sh: postoffice fetch against mpop and fetchmail, the same
# maildrop on the same server (postoffice serve on loopback), plain and
# implicit TLS; docs/performance.md has the method and the results.
#
#   bench/fetch.sh [--runs N] [--messages N] [--keep] [--postoffice BIN]
#                  [--baseline BIN] [--fetchers "po mpop fetchmail"]
#
# The server is pinned to CPU 0, each fetcher (and what it delivers
# through) to CPU 1 with taskset. Every run fetches the whole maildrop
# (default 1,000 realistic messages, about 66 MB) with keep on into an
# empty Maildir with an empty UIDL state; the runs alternate the three
# fetchers so that a noisy neighbour hits them alike, and the table shows
# the median wall, user and system time of --runs runs (default 7) and the
# ratio to postoffice fetch (above 1: postoffice is faster).
#
# --baseline BIN adds the "fetch" of another postoffice binary (say, an
# older version) as a fourth fetcher, "base"; --fetchers picks the
# fetchers to run (default all).
#
# Every fetcher delivers durably, each the way its users run it:
#   postoffice fetch  target maildir: (tmp/, fsync, link to new/, fsync)
#   mpop              delivery maildir (its built-in Maildir writer)
#   fetchmail         --lmtp to postoffice's LMTP listener, which writes
#                     the Maildir with fsyncs before its 250 (fetchmail
#                     has no Maildir writer: an MDA or an SMTP/LMTP server)
#
# Needs: mpop, fetchmail (Debian packages; installed with apt-get when run
# as root and missing), taskset, python3, go (unless --postoffice).
set -euo pipefail

RUNS=7 MSGS=1000 KEEP=0 PO_BIN="" BASE_BIN="" FETCHERS="po mpop fetchmail"
while [ $# -gt 0 ]; do
	case "$1" in
	--runs) RUNS="$2"; shift ;;
	--messages) MSGS="$2"; shift ;;
	--keep) KEEP=1 ;;
	--postoffice) PO_BIN="$2"; shift ;;
	--baseline) BASE_BIN="$2"; shift ;;
	--fetchers) FETCHERS="$2"; shift ;;
	-h|--help) sed -n '2,31p' "$0"; exit 0 ;;
	*) echo "fetch.sh: unknown option $1" >&2; exit 2 ;;
	esac
	shift
done
say() { printf '%s %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { say "fetch.sh: $*"; exit 1; }

for c in mpop fetchmail; do
	if ! command -v "$c" >/dev/null; then
		[ "$(id -u)" = 0 ] || die "$c is missing: sudo apt-get install mpop fetchmail"
		DEBIAN_FRONTEND=noninteractive apt-get install -y mpop fetchmail >&2
	fi
done
for c in taskset python3; do command -v "$c" >/dev/null || die "$c is missing"; done
[ "$(nproc)" -ge 2 ] || die "needs at least 2 CPUs (server on CPU 0, fetchers on CPU 1)"

HERE="$(cd "$(dirname "$0")" && pwd)"
WORK="$(mktemp -d /tmp/postoffice-fetch.XXXXXX)"
PIDS=()
cleanup() {
	for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
	for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
	if [ "$KEEP" = 1 ]; then say "kept $WORK"; else rm -rf "$WORK"; fi
}
trap cleanup EXIT

[ -n "$BASE_BIN" ] && FETCHERS="$FETCHERS base"
if [ -z "$PO_BIN" ]; then
	say "building postoffice"
	(cd "$HERE/.." && go build -o "$WORK/postoffice" ./cmd/postoffice)
	PO_BIN="$WORK/postoffice"
fi
PO="$PO_BIN"

say "seeding 1 user x $MSGS realistic messages"
"$PO" bench seed --maildir "$WORK/seed" --users 1 --messages "$MSGS" >&2
IFS=: read -r USER PASS <"$WORK/seed/users.txt"
freeport() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
PORT=$(freeport) TLS_PORT=$(freeport) LMTP_PORT=$(freeport) DUMMY_PORT=$(freeport)

# The server, CPU 0.
cat >"$WORK/server.toml" <<EOF
[pop3]
listen = ["127.0.0.1:$PORT"]
listen_tls = ["127.0.0.1:$TLS_PORT"]
auth_fail_delay = "0s"
[tls]
cert = "$WORK/seed/cert.pem"
key = "$WORK/seed/key.pem"
[auth]
passwd_file = "$WORK/seed/passwd"
[mail]
location = "maildir:$WORK/seed/mail/%u/Maildir"
EOF
taskset -c 0 "$PO" serve --config "$WORK/server.toml" 2>>"$WORK/server.log" &
PIDS+=($!)

# fetchmail's LMTP target, CPU 1 with the fetchers: a second postoffice
# with one user, "dest", whose Maildir is emptied before each run.
printf 'dest@localhost:{PLAIN}x::::::\n' >"$WORK/dest.passwd"
cat >"$WORK/dest.toml" <<EOF
[pop3]
listen = ["127.0.0.1:$DUMMY_PORT"]
[auth]
passwd_file = "$WORK/dest.passwd"
[mail]
location = "maildir:$WORK/dest/%u/Maildir"
[lmtp]
listen = ["127.0.0.1:$LMTP_PORT"]
EOF
taskset -c 1 "$PO" serve --config "$WORK/dest.toml" 2>>"$WORK/dest.log" &
PIDS+=($!)
for i in $(seq 1 100); do
	python3 -c "import socket,sys; [socket.create_connection(('127.0.0.1',p),1).close() for p in ($PORT,$TLS_PORT,$LMTP_PORT)]" 2>/dev/null && break
	sleep 0.1
done

# fetch MODE WHO: one run of fetcher WHO (po, mpop, fetchmail) over MODE
# (plain, tls) into a fresh Maildir; prints "wall user sys messages".
fetch() {
	local mode=$1 who=$2 d="$WORK/run"
	rm -rf "$d" "$WORK/dest"
	mkdir -p "$d/Maildir/tmp" "$d/Maildir/new" "$d/Maildir/cur"
	local port=$PORT
	[ "$mode" = tls ] && port=$TLS_PORT
	case "$who" in
	po|base)
		local tls=none ca=""
		[ "$mode" = tls ] && tls=implicit ca="ca_file = \"$WORK/seed/cert.pem\""
		cat >"$d/fetch.toml" <<EOF
[[account]]
name = "bench"
server = "127.0.0.1:$port"
tls = "$tls"
$ca
auth = "user"
user = "$USER"
password = "$PASS"
keep = true
target = "maildir:$d/Maildir"
state_dir = "$d/state"
EOF
		local bin=$PO
		[ "$who" = base ] && bin=$BASE_BIN
		CMD=("$bin" fetch --quiet --config "$d/fetch.toml") ;;
	mpop)
		local tls="tls off"
		[ "$mode" = tls ] && tls="tls on
tls_host_override localhost
tls_starttls off
tls_trust_file $WORK/seed/cert.pem"
		cat >"$d/mpoprc" <<EOF
account bench
host 127.0.0.1
port $port
$tls
auth user
user $USER
password $PASS
keep on
delivery maildir $d/Maildir
uidls_file $d/mpop-uidls
EOF
		chmod 600 "$d/mpoprc"
		CMD=(mpop -q -C "$d/mpoprc" bench) ;;
	fetchmail)
		# Plain: no opportunistic STLS (sslproto ''); TLS: the seed's
		# certificate is for localhost.
		local tls="sslproto ''"
		[ "$mode" = tls ] && tls="ssl sslcertck sslcertfile $WORK/seed/cert.pem sslcommonname localhost"
		cat >"$d/fetchmailrc" <<EOF
set no bouncemail
poll localhost via 127.0.0.1 service $port protocol pop3 uidl auth password
  user "$USER" password "$PASS" is dest here
  keep $tls
  smtphost 127.0.0.1/$LMTP_PORT lmtp smtpname dest@localhost
EOF
		chmod 600 "$d/fetchmailrc"
		CMD=(env HOME="$d" FETCHMAILHOME="$d" fetchmail --silent -f "$d/fetchmailrc" -i "$d/fetchids") ;;
	esac
	python3 - "${CMD[@]}" <<'EOF'
import os, resource, subprocess, sys, time
t0 = time.monotonic()
p = subprocess.run(["taskset", "-c", "1"] + sys.argv[1:], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, timeout=600)
wall = time.monotonic() - t0
ru = resource.getrusage(resource.RUSAGE_CHILDREN)
if p.returncode not in (0,):
    sys.stderr.write(p.stderr.decode(errors="replace"))
    print("error", p.returncode); sys.exit(0)
print("%.3f %.3f %.3f" % (wall, ru.ru_utime, ru.ru_stime))
EOF
	local n
	n=$(find "$d/Maildir/new" "$d/Maildir/cur" "$WORK/dest" -type f -path '*/new/*' -o -type f -path '*/cur/*' 2>/dev/null | wc -l)
	echo "count $n"
}

RES="$WORK/results.txt"
: >"$RES"
for r in $(seq 1 "$RUNS"); do
	for mode in plain tls; do
		for who in $FETCHERS; do
			out=$(fetch "$mode" "$who")
			say "run $r $mode $who: $(echo $out)"
			echo "$mode $who $(echo $out)" >>"$RES"
		done
	done
done

python3 - "$RES" "$MSGS" <<'EOF'
import statistics, sys
rows = {}
bad = []
for line in open(sys.argv[1]):
    f = line.split()
    mode, who = f[0], f[1]
    if f[2] == "error" or int(f[-1]) != int(sys.argv[2]):
        bad.append(line.strip()); continue
    rows.setdefault((mode, who), []).append(tuple(map(float, f[2:5])))
names = {"po": "postoffice fetch", "mpop": "mpop", "fetchmail": "fetchmail (LMTP)", "base": "postoffice fetch (--baseline)"}
print("| mode | fetcher | wall s | user s | sys s | wall vs postoffice | runs |")
print("|---|---|---|---|---|---|---|")
for mode in ("plain", "tls"):
    base = None
    for who in ("po", "mpop", "fetchmail", "base"):
        v = rows.get((mode, who))
        if not v:
            continue
        w, u, s = (statistics.median(x[i] for x in v) for i in range(3))
        if who == "po": base = w
        ratio = f"{w / base:.2f}x" if base else "-"
        print(f"| {mode} | {names[who]} | {w:.2f} | {u:.2f} | {s:.2f} | {ratio} | {len(v)} |")
if bad:
    print("\nfailed or incomplete runs (counted out):")
    for b in bad: print("  " + b)
EOF
