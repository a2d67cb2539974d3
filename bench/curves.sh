#!/usr/bin/env bash
# bench/curves.sh: how postoffice's costs grow, each curve from one run
# (docs/performance.md, "Cost curves"):
#   login    session latency and server CPU per login against concurrency
#   list     time to the end of UIDL against maildrop size (,W= names)
#   memory   PSS and RSS per idle logged-in session against sessions held
#   download MB/s against message size
#
#   bench/curves.sh [--quick] [--max-box N] [--keep] [--postoffice BIN] [--out DIR]
#
# The server (postoffice serve) is pinned to CPU 0 and the generator
# (postoffice bench) to CPU 1. Each point is one `postoffice bench --json`
# run; `postoffice bench curve` turns the points of a curve into a
# Markdown table (printed), a JSON file and an SVG plot in --out (default
# bench/curves/). Bounds: every run by --duration or --sessions and
# --timeout; the list curve's biggest maildrop by --max-box (default
# 1,000,000; it needs about 4.5 GB of disk for 1,000,000 files of 200
# octets, and is skipped with a message when less than 10 GB is free);
# the memory curve by the descriptor limit (two per session).
set -euo pipefail

QUICK=0 MAXBOX=1000000 KEEP=0 PO_BIN="" OUT=""
while [ $# -gt 0 ]; do
	case "$1" in
	--quick) QUICK=1 ;;
	--max-box) MAXBOX="$2"; shift ;;
	--keep) KEEP=1 ;;
	--postoffice) PO_BIN="$2"; shift ;;
	--out) OUT="$2"; shift ;;
	-h|--help) sed -n '2,21p' "$0"; exit 0 ;;
	*) echo "curves.sh: unknown option $1" >&2; exit 2 ;;
	esac
	shift
done
say() { printf '%s %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { say "curves.sh: $*"; exit 1; }
for c in taskset python3; do command -v "$c" >/dev/null || die "$c is missing"; done
[ "$(nproc)" -ge 2 ] || die "needs at least 2 CPUs (server on CPU 0, generator on CPU 1)"

HERE="$(cd "$(dirname "$0")" && pwd)"
OUT="${OUT:-$HERE/curves}"
mkdir -p "$OUT"
WORK="$(mktemp -d /tmp/postoffice-curves.XXXXXX)"
PO_PID=""
cleanup() {
	[ -n "$PO_PID" ] && { kill "$PO_PID" 2>/dev/null || true; wait "$PO_PID" 2>/dev/null || true; }
	if [ "$KEEP" = 1 ]; then say "kept $WORK"; else rm -rf "$WORK"; fi
}
trap cleanup EXIT

if [ -z "$PO_BIN" ]; then
	say "building postoffice"
	(cd "$HERE/.." && go build -o "$WORK/postoffice" ./cmd/postoffice)
	PO_BIN="$WORK/postoffice"
fi
PO="$PO_BIN"
GEN=(taskset -c 1 "$PO" bench --json --timeout 120s)

if [ "$QUICK" = 1 ]; then
	LOGIN_C="1 10 100" BOXES="10 1000" IDLE_N="100 1000" SIZES="1024 1048576" DUR=1s
	MAXBOX=$((MAXBOX < 1000 ? MAXBOX : 1000))
else
	LOGIN_C="1 2 5 10 20 50 100 200 500 1000" BOXES="10 100 1000 10000 100000 1000000"
	IDLE_N="100 200 500 1000 2000 5000 10000"
	SIZES="1024 4096 16384 65536 262144 1048576 4194304 16777216 52428800" DUR=3s
fi
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
NOFILE=$(ulimit -n)

# --- seed: one mail tree, one passwd ------------------------------------------
MAIL="$WORK/mail" PASSWD="$WORK/passwd"
mkdir -p "$MAIL"
: >"$PASSWD"
# seed NAME AS ARGS...: postoffice bench seed into its own directory, then
# its users into the shared tree; with AS not empty, its one user00001 is
# renamed AS.
seed() {
	local name=$1 as=$2
	shift 2
	local d="$WORK/seed-$name"
	"$PO" bench seed --maildir "$d" "$@" >/dev/null
	if [ -n "$as" ]; then
		mv "$d/mail/user00001" "$d/mail/$as"
		sed -i "s/^user00001:/$as:/" "$d/passwd"
	fi
	for u in "$d"/mail/*; do
		[ -e "$u" ] || continue
		mv "$u" "$MAIL/"
	done
	cat "$d/passwd" >>"$PASSWD"
	rm -rf "$d"
}
say "seeding: 1,000 login users"
seed login "" --users 1000 --messages 1 --size-dist fixed:1024
grep -o '^[^:]*' "$PASSWD" | sed 's/$/:bench-password/' >"$WORK/login.txt"
for s in $SIZES; do
	say "seeding: download user of $s-octet messages"
	n=$((64 * 1048576 / s)); n=$((n < 1 ? 1 : n > 500 ? 500 : n))
	seed "dl$s" "dl$s" --users 1 --messages "$n" --size-dist "fixed:$s" --seed "$s"
	echo "dl$s:bench-password" >"$WORK/dl$s.txt"
done
FREE_KB=$(df -Pk "$WORK" | awk 'NR==2 {print $4}')
for b in $BOXES; do
	[ "$b" -le "$MAXBOX" ] || continue
	if [ "$b" -ge 1000000 ] && [ "$FREE_KB" -lt $((10 * 1048576)) ]; then
		say "skipping the $b-message maildrop: less than 10 GB free"; continue
	fi
	say "seeding: maildrop of $b messages (,W= names, 200 octets each)"
	seed "box$b" "" --users 0 --bigbox "$b" --bigbox-name "box$b" --bigbox-size-dist fixed:200 --with-sizes
	echo "box$b:bench-password" >"$WORK/box$b.txt"
done
MAXIDLE=0
for n in $IDLE_N; do MAXIDLE=$n; done
for i in $(seq 1 "$MAXIDLE"); do
	printf 'idle%05d:{PLAIN}bench-password::::::\n' "$i" >>"$PASSWD"
	printf 'idle%05d:bench-password\n' "$i" >>"$WORK/idle.txt"
done

# --- the server ----------------------------------------------------------------------
PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
cat >"$WORK/postoffice.toml" <<EOF
[pop3]
listen = ["127.0.0.1:$PORT"]
auth_fail_delay = "0s"
[auth]
passwd_file = "$PASSWD"
[mail]
location = "maildir:$MAIL/%u/Maildir"
[limits]
max_connections = 0
max_connections_per_ip = 0
EOF
# start: a fresh server (a Go process keeps the heap an earlier run grew,
# so every memory point and every curve starts from a new one).
start() {
	if [ -n "$PO_PID" ]; then kill "$PO_PID"; wait "$PO_PID" 2>/dev/null || true; fi
	taskset -c 0 "$PO" serve --config "$WORK/postoffice.toml" 2>>"$WORK/server.log" &
	PO_PID=$!
	for _ in $(seq 100); do
		if (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null; then return 0; fi
		sleep 0.1
	done
	die "the server did not start (see $WORK/server.log)"
}
RES="$WORK/results"
mkdir -p "$RES"
# point CURVE X ARGS...: one generator run, kept as RES/CURVE/X.json.
point() {
	local curve=$1 x=$2
	shift 2
	mkdir -p "$RES/$curve"
	if ! "${GEN[@]}" --addr "127.0.0.1:$PORT" --server-pid "$PO_PID" "$@" >"$RES/$curve/$x.json" 2>"$RES/$curve/$x.err"; then
		say "  $curve $x: $(tail -n 2 "$RES/$curve/$x.err")"
	fi
}
# curve CURVE ARGS...: the table, JSON and SVG of CURVE's points.
curve() {
	local c=$1
	shift
	local pts=()
	for f in "$RES/$c"/*.json; do pts+=("$(basename "$f" .json)=$f"); done
	echo
	echo "### $c"
	"$PO" bench curve --json "$OUT/$c.json" --svg "$OUT/$c.svg" "$@" "${pts[@]}"
}

start
# One untimed run first: the server's first logins read the passwd-file and
# grow its pools, which is not what the curve is about.
point warmup 0 --users "$WORK/login.txt" --scenario login --concurrency 8 --duration 1s
say "login curve"
for c in $LOGIN_C; do
	point login "$c" --users "$WORK/login.txt" --scenario login --concurrency "$c" --duration "$DUR"
done
say "download curve"
for s in $SIZES; do
	point download "$s" --users "$WORK/dl$s.txt" --scenario download --concurrency 1 --duration "$DUR"
done
say "list curve"
for b in $BOXES; do
	[ -e "$WORK/box$b.txt" ] || continue
	# Five sessions one after the other: the first builds the index, the
	# median is a warm one.
	point list "$b" --users "$WORK/box$b.txt" --scenario bigbox --sessions 5
done
say "memory curve"
for n in $IDLE_N; do
	if [ "$NOFILE" != unlimited ] && [ $((2 * n + 100)) -gt "$NOFILE" ]; then
		# Two descriptors per session (socket, maildrop lock): hold as
		# many as the limit allows instead, and say so.
		n=$(((NOFILE - 100) / 2 / 100 * 100))
		say "  the open-file limit $NOFILE allows $n idle sessions, not more"
		[ -e "$RES/memory/$n.json" ] && continue
	fi
	start
	point memory "$n" --users "$WORK/idle.txt" --scenario idle --sessions "$n" --concurrency 50 --hold 2s
done

{
	echo "Cost curves, $(date -u '+%Y-%m-%d %H:%M UTC'), $(nproc) CPUs, load $(cut -d' ' -f1-3 /proc/loadavg)"
	curve login --name "login against concurrency" --x-label concurrency --y-label ms --metric latency_p50_ms --metric latency_p99_ms --metric server_cpu_ms --log-y
	curve list --name "list (end of UIDL) against maildrop size" --x-label messages --y-label ms --metric latency_p50_ms --log-y
	curve memory --name "memory per idle session against sessions" --x-label sessions --y-label KiB --metric pss_kib --metric rss_kib
	curve download --name "download against message size" --x-label "message size (octets)" --metric mb_per_s
} | tee "$OUT/curves.md"
