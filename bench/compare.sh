#!/usr/bin/env bash
# bench/compare.sh: postoffice against Dovecot on this machine, same
# Maildirs, same load generator, same invocation, with the in-memory
# responder as the ceiling; docs/performance.md has the method, the
# targets and the results.
#
#   bench/compare.sh [--quick] [--runs N] [--only CASES] [--crlf] [--no-sendfile] [--keep]
#                    [--drop-caches] [--postoffice BIN] [--postgres] [--sched-batch]
#
# --only CASES runs only the cases whose names start with one of the
# comma-separated prefixes (after the warm-up), e.g. --only download,login-c8;
# the case names are login-cN, login-tls-cN, download-c8, download-tls-c8,
# top-c8, drain-c8, bigbox-{warm,noindex,cold}, bigboxw-{...}, idle-N and
# idle-tls-N. The 100,000-message bigbox maildrops and the idle users are
# seeded only when a selected case needs them.
#
# --crlf seeds the Maildirs with CRLF line ends, as an LMTP delivery that
# keeps the wire form or Dovecot with mail_save_crlf = yes stores them,
# instead of LF as Postfix's local and virtual delivery write (the
# default): the same messages, so that the two runs measure each server's
# path for messages already stored in wire form against the LF one.
#
# --no-sendfile runs postoffice with pop3.sendfile = false: messages stored
# in wire form are read and written instead of sent with sendfile(2). With
# --crlf that is a server whose conversion costs no more than a copy: the
# most a server reading its messages from files can do here
# (docs/performance.md).
#
# --postgres is the scale-out comparison (docs/scale-out.md): beside the
# Maildir server and Dovecot, a postoffice on PostgreSQL ("pg": a throwaway
# cluster started here, on CPU 0 with the servers, fsync on, the seeded
# Maildirs copied into it with postoffice migrate) and two postoffice
# processes sharing that database ("pg2": the generator's sessions split
# between them, their rates summed), on login, download (at 4 and 8
# sessions in flight; PG_DL_C="..." sets others) and bigbox (warm) only;
# then a summary of the medians and exit. It takes no --only.
#
# --sched-batch starts every server (not PostgreSQL, not the generator)
# under SCHED_BATCH (chrt --batch 0): a woken server then waits for the
# task on its CPU to block or for the scheduler's tick instead of
# preempting it. With --postgres it shows what the server's wake-ups cost
# on the core it shares with the database (docs/scale-out.md).
#
# Each server is pinned to CPU 0 and the generator (postoffice bench) to
# CPU 1 with taskset. Every case runs --runs times (default 3; 1 with
# --quick), each run against every server in turn: postoffice, Dovecot
# and, for login and download, the responder (postoffice bench responder:
# the seeded messages in memory, already in wire form, any login
# accepted), so that a noisy neighbour hits all of them alike. The table
# shows the medians, the ratio postoffice/Dovecot (for times and memory:
# Dovecot/postoffice, so that above 1 always means postoffice is better)
# and postoffice's share of the responder. See docs/performance.md.
#
# Needs: dovecot-core and dovecot-pop3d (installed with apt-get when run as
# root and missing), taskset (util-linux), python3 (the table), go (to build
# postoffice unless --postoffice is given).
set -euo pipefail

QUICK=0 RUNS="" KEEP=0 DROP=0 PO_BIN="" POSTGRES=0 ONLY="" CRLF=0 SCHED=() SENDFILE=true
while [ $# -gt 0 ]; do
	case "$1" in
	--quick) QUICK=1 ;;
	--runs) RUNS="$2"; shift ;;
	--only) ONLY="${2:?--only needs CASES, e.g. download,login-c8}"; shift ;;
	--crlf) CRLF=1 ;;
	--no-sendfile) SENDFILE=false ;;
	--keep) KEEP=1 ;;
	--drop-caches) DROP=1 ;; # root only: also bigbox with a cold page cache (slow)
	--postoffice) PO_BIN="$2"; shift ;;
	--postgres) POSTGRES=1 ;;
	--sched-batch) SCHED=(chrt --batch 0) ;;
	-h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d'; exit 0 ;;
	*) echo "compare.sh: unknown option $1" >&2; exit 2 ;;
	esac
	shift
done

if [ "$QUICK" = 1 ]; then
	# One run of each, small: a smoke test of the whole comparison.
	USERS=8 MSGS=10 BIGBOX=5000 IDLE=100 IDLE_PO_BIG=1000 DUR=1s LOGIN_C="8" DL_C=8
	DC_LIMIT=400 RUNS=${RUNS:-1}
else
	USERS=64 MSGS=50 BIGBOX=100000 IDLE=500 IDLE_PO_BIG=10000 DUR=4s LOGIN_C="8 64" DL_C=8
	DC_LIMIT=2500 RUNS=${RUNS:-3}
fi
DRAIN_USERS=8

say() { printf '%s %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { say "compare.sh: $*"; exit 1; }

# --- prerequisites -----------------------------------------------------------
ROOT=0; [ "$(id -u)" = 0 ] && ROOT=1
if ! command -v dovecot >/dev/null || [ ! -x /usr/lib/dovecot/pop3 ]; then
	if [ "$ROOT" = 1 ]; then
		say "installing dovecot-core dovecot-pop3d"
		# dovecot-pop3d conflicts with popa3d: install Dovecot alone.
		DEBIAN_FRONTEND=noninteractive apt-get install -y dovecot-core dovecot-pop3d >&2 ||
			{ apt-get update >&2 && DEBIAN_FRONTEND=noninteractive apt-get install -y dovecot-core dovecot-pop3d >&2; }
	else
		die "Dovecot is missing: run as root to install it, or: sudo apt-get install dovecot-core dovecot-pop3d"
	fi
fi
for c in taskset python3; do command -v "$c" >/dev/null || die "$c is missing (apt-get install util-linux python3)"; done
[ "$(nproc)" -ge 2 ] || die "needs at least 2 CPUs (server on CPU 0, generator on CPU 1)"
# Each idle logged-in postoffice session holds two descriptors (the socket
# and the maildrop's lock file; the Maildir's directories go back after a
# second without input and are reopened, checked to be the same, at the
# next command): 10,000 sessions need more than the 20,000 hard limit
# some machines have. As root, raise the hard limit too (this needs
# CAP_SYS_RESOURCE, which some containers drop); the servers and the
# generator started below inherit it.
if [ "$ROOT" = 1 ] && [ "$(ulimit -Hn)" != unlimited ] && [ "$(ulimit -Hn)" -lt 65536 ]; then
	{ ulimit -Hn 65536 && ulimit -n 65536; } 2>/dev/null ||
		say "could not raise the hard open-file limit $(ulimit -Hn) to 65536 (no CAP_SYS_RESOURCE?)"
fi
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
# A session holds one more in its first second (the Maildir's directory):
# 2,000 descriptors are kept for the sessions still in it as the case
# fills.
FDS_PER_SESSION=2 FDS_SPARE=2100
if [ "$(ulimit -n)" != unlimited ] && [ "$(ulimit -n)" -lt $((FDS_PER_SESSION * IDLE_PO_BIG + FDS_SPARE)) ]; then
	IDLE_PO_BIG=$((($(ulimit -n) - FDS_SPARE) / FDS_PER_SESSION / 100 * 100))
	say "open-file limit $(ulimit -n): holding only $IDLE_PO_BIG postoffice idle sessions ($FDS_PER_SESSION descriptors each)"
fi

# --- the cases ---------------------------------------------------------------
ALL_CASES=()
for c in $LOGIN_C; do ALL_CASES+=("login-c$c"); done
for c in $LOGIN_C; do ALL_CASES+=("login-tls-c$c"); done
ALL_CASES+=("download-c$DL_C" "download-tls-c$DL_C" "top-c$DL_C" "drain-c$DRAIN_USERS")
for box in bigbox bigboxw; do
	ALL_CASES+=("$box-warm" "$box-noindex")
	if [ "$ROOT" = 1 ] && [ "$DROP" = 1 ]; then ALL_CASES+=("$box-cold"); fi
done
ALL_CASES+=("idle-$IDLE" "idle-tls-$IDLE" "idle-$IDLE_PO_BIG")
# want CASE: whether CASE runs (every case without --only).
want() {
	[ -z "$ONLY" ] && return 0
	local p
	for p in ${ONLY//,/ }; do
		[[ $1 == "$p"* ]] && return 0
	done
	return 1
}
# want_any CASE...: whether one of them runs.
want_any() {
	local c
	for c in "$@"; do want "$c" && return 0; done
	return 1
}
if [ -n "$ONLY" ]; then
	[ "$POSTGRES" = 1 ] && die "--only does not apply to --postgres, which runs its own cases"
	for p in ${ONLY//,/ }; do
		hit=0
		for c in "${ALL_CASES[@]}"; do [[ $c == "$p"* ]] && hit=1; done
		[ "$hit" = 1 ] || die "--only: no case starts with \"$p\"; the cases here are: ${ALL_CASES[*]}"
	done
fi
NEED_BIGBOX=0 NEED_BIGBOXW=0
if [ "$POSTGRES" = 1 ] || want_any bigbox-warm bigbox-noindex bigbox-cold; then NEED_BIGBOX=1; fi
if [ "$POSTGRES" = 0 ] && want_any bigboxw-warm bigboxw-noindex bigboxw-cold; then NEED_BIGBOXW=1; fi
# Users with empty maildrops for idle: each session needs its own (locks).
IDLE_USERS=0
if [ "$POSTGRES" = 0 ]; then
	want_any "idle-$IDLE" "idle-tls-$IDLE" && IDLE_USERS=$IDLE
	want "idle-$IDLE_PO_BIG" && IDLE_USERS=$((IDLE_PO_BIG > IDLE ? IDLE_PO_BIG : IDLE))
fi

HERE="$(cd "$(dirname "$0")" && pwd)"
WORK="$(mktemp -d /tmp/postoffice-compare.XXXXXX)"
chmod 755 "$WORK" # Dovecot's unprivileged processes reach their Maildirs through it
PIDS=()
PG_STOP=""
cleanup() {
	[ -n "$PG_STOP" ] && $PG_STOP >/dev/null 2>&1
	for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
	for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
	if [ "$KEEP" = 1 ]; then say "kept $WORK"; else rm -rf "$WORK"; fi
}
trap cleanup EXIT

if [ -z "$PO_BIN" ]; then
	say "building postoffice"
	(cd "$HERE/.." && go build -o "$WORK/postoffice" ./cmd/postoffice)
	PO_BIN="$WORK/postoffice"
fi
PO="$PO_BIN"
GEN=(taskset -c 1 "$PO" bench)

# --- seed: identical Maildirs for both servers -------------------------------
SEED="$WORK/seed"
SEED_ARGS=()
[ "$CRLF" = 1 ] && SEED_ARGS+=(--crlf)
BIGBOX_ARGS=()
[ "$NEED_BIGBOX" = 1 ] && BIGBOX_ARGS=(--bigbox "$BIGBOX" --bigbox-size-dist fixed:2048)
what="$USERS users x $MSGS messages"
[ "$NEED_BIGBOX" = 1 ] && what+=", bigbox $BIGBOX"
[ "$NEED_BIGBOXW" = 1 ] && what+=", bigboxw $BIGBOX (with S=/W=)"
[ "$IDLE_USERS" -gt 0 ] && what+=", $IDLE_USERS idle users"
if [ "$CRLF" = 1 ]; then what+=", CRLF line ends"; else what+=", LF line ends"; fi
say "seeding $what"
"$PO" bench seed --maildir "$SEED" --users "$USERS" --messages "$MSGS" "${BIGBOX_ARGS[@]}" "${SEED_ARGS[@]}" >&2
if [ "$NEED_BIGBOXW" = 1 ]; then
	"$PO" bench seed --maildir "$WORK/seedw" --users 0 --bigbox "$BIGBOX" --bigbox-name bigboxw \
		--bigbox-size-dist fixed:2048 --with-sizes "${SEED_ARGS[@]}" >&2
	mv "$WORK/seedw/mail/bigboxw" "$SEED/mail/"
	cat "$WORK/seedw/passwd" >>"$SEED/passwd"
	cp "$WORK/seedw/bigboxw.txt" "$SEED/"
	rm -rf "$WORK/seedw"
fi
head -n "$DRAIN_USERS" "$SEED/users.txt" >"$SEED/drain.txt"
if [ "$IDLE_USERS" -gt 0 ]; then
	for i in $(seq 1 "$IDLE_USERS"); do
		u=$(printf 'idle%05d' "$i")
		printf '%s:{PLAIN}%s::::::\n' "$u" bench-password >>"$SEED/passwd"
		printf '%s:%s\n' "$u" bench-password >>"$SEED/idle.txt"
	done
	head -n "$IDLE" "$SEED/idle.txt" >"$SEED/idle-small.txt"
fi
chmod 644 "$SEED/passwd" "$SEED/cert.pem"
# Pristine copies of the drain maildrops, restored before every drain run.
if want "drain-c$DRAIN_USERS"; then
	mkdir -p "$WORK/pristine"
	cut -d: -f1 "$SEED/drain.txt" | while read -r u; do cp -a "$SEED/mail/$u" "$WORK/pristine/"; done
fi

PO_MAIL="$WORK/po/mail" DC_MAIL="$WORK/dc/mail"
mkdir -p "$WORK/po" "$WORK/dc"
say "copying the Maildirs for each server"
cp -a "$SEED/mail" "$PO_MAIL"
cp -a "$SEED/mail" "$DC_MAIL"

# --- postoffice ----------------------------------------------------------------
freeport() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
PO_PORT=$(freeport) PO_TLS_PORT=$(freeport) DC_PORT=$(freeport) DC_TLS_PORT=$(freeport)
cat >"$WORK/po/postoffice.toml" <<EOF
[pop3]
listen = ["127.0.0.1:$PO_PORT"]
listen_tls = ["127.0.0.1:$PO_TLS_PORT"]
auth_fail_delay = "0s"
sendfile = $SENDFILE

[tls]
cert = "$SEED/cert.pem"
key = "$SEED/key.pem"

[auth]
passwd_file = "$SEED/passwd"

[mail]
location = "maildir:$PO_MAIL/%u/Maildir"

# Like Dovecot's limits above: no cap on connections, in all or per IP
# (every session comes from 127.0.0.1; the defaults, 2000 and 20, would
# refuse most of login-c64 and of the idle cases).
[limits]
max_connections = 0
max_connections_per_ip = 0
EOF
start_po() {
	"${SCHED[@]}" taskset -c 0 "$PO" serve --config "$WORK/po/postoffice.toml" 2>>"$WORK/po/log" &
	PO_PID=$!
	PIDS+=("$PO_PID")
}
start_po

# --- Dovecot -------------------------------------------------------------------
mkdir -p "$WORK/dc/run" "$WORK/dc/state"
if [ "$ROOT" = 1 ]; then
	# As root, the way internal/testutil/dovecot runs it: logins as dovenull,
	# mail processes as vmail.
	id vmail >/dev/null 2>&1 || useradd --system --no-create-home --shell /usr/sbin/nologin vmail
	MAIL_UID=$(id -u vmail) MAIL_GID=$(id -g vmail)
	chown -R vmail:vmail "$DC_MAIL"
	USERS_CONF="default_login_user = dovenull
default_internal_user = dovecot
mail_uid = $MAIL_UID
mail_gid = $MAIL_GID"
else
	# As the invoking user: every Dovecot process runs as that user.
	MAIL_UID=$(id -u) MAIL_GID=$(id -g)
	USERS_CONF="default_login_user = $(id -un)
default_internal_user = $(id -un)
service pop3-login {
  chroot =
}
service anvil {
  chroot =
}"
fi
cat >"$WORK/dc/dovecot.conf" <<EOF
base_dir = $WORK/dc/run
state_dir = $WORK/dc/state
log_path = $WORK/dc/dovecot.log
protocols = pop3
listen = 127.0.0.1
$USERS_CONF
first_valid_uid = $MAIL_UID
first_valid_gid = $MAIL_GID
mail_location = maildir:$DC_MAIL/%u/Maildir
disable_plaintext_auth = no
auth_mechanisms = plain login
auth_failure_delay = 0
ssl = yes
ssl_cert = <$SEED/cert.pem
ssl_key = <$SEED/key.pem
default_process_limit = $DC_LIMIT
default_client_limit = $((DC_LIMIT * 4))
default_vsz_limit = 1G
protocol pop3 {
  mail_max_userip_connections = $DC_LIMIT
}
passdb {
  driver = passwd-file
  args = $SEED/passwd
}
userdb {
  driver = static
  args = uid=$MAIL_UID gid=$MAIL_GID home=$DC_MAIL/%u
}
service pop3-login {
  inet_listener pop3 {
    address = 127.0.0.1
    port = $DC_PORT
  }
  inet_listener pop3s {
    address = 127.0.0.1
    port = $DC_TLS_PORT
    ssl = yes
  }
}
service anvil {
  client_limit = $((DC_LIMIT * 3))
}
EOF
"${SCHED[@]}" taskset -c 0 dovecot -F -c "$WORK/dc/dovecot.conf" 2>"$WORK/dc/stderr" &
DC_PID=$!
PIDS+=("$DC_PID")

# --- the responder -------------------------------------------------------------
# The generator's ceiling: postoffice bench responder, each user seeing its
# own seeded messages (read at its first login, then held in memory in wire
# form: CRLF, dot-stuffed, whatever the line ends of the seed), any login
# accepted. Two processes, plain and implicit TLS with the servers'
# certificate, pinned like the servers. It runs in the login and download
# cases only: it has no maildrops to drain, its UIDL of a big maildrop is a
# list in memory, not an index, and its memory is not a server's, so
# drain, bigbox and idle would compare nothing; top is left out because no
# target needs it (add responder to its server list to measure it).
RESP_PORT="" RESP_TLS_PORT="" RESP_PID="" RESP_TLS_PID=""
if [ "$POSTGRES" = 0 ]; then
	RESP_PORT=$(freeport) RESP_TLS_PORT=$(freeport)
	RESP=("$PO" bench responder --maildir "$SEED/mail/user00001/Maildir" --mail-root "$SEED/mail")
	"${SCHED[@]}" taskset -c 0 "${RESP[@]}" --addr "127.0.0.1:$RESP_PORT" >"$WORK/responder.log" 2>&1 &
	RESP_PID=$!
	PIDS+=("$RESP_PID")
	"${SCHED[@]}" taskset -c 0 "${RESP[@]}" --addr "127.0.0.1:$RESP_TLS_PORT" --tls --cert "$SEED/cert.pem" --key "$SEED/key.pem" \
		>"$WORK/responder-tls.log" 2>&1 &
	RESP_TLS_PID=$!
	PIDS+=("$RESP_TLS_PID")
fi

waitport() {
	for _ in $(seq 100); do
		if (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; then return 0; fi
		sleep 0.1
	done
	die "nothing listens on port $1 (see $WORK/po/log, $WORK/dc/dovecot.log, $WORK/responder*.log)"
}
for p in "$PO_PORT" "$PO_TLS_PORT" "$DC_PORT" "$DC_TLS_PORT" $RESP_PORT $RESP_TLS_PORT; do waitport "$p"; done
say "postoffice pid $PO_PID on $PO_PORT/$PO_TLS_PORT, dovecot pid $DC_PID on $DC_PORT/$DC_TLS_PORT"
[ -n "$RESP_PID" ] && say "responder pids $RESP_PID/$RESP_TLS_PID on $RESP_PORT/$RESP_TLS_PORT"

RES="$WORK/results"
mkdir -p "$RES"

# run CASE SERVER RUN bench-args...: one generator run, its JSON kept.
# SERVER is postoffice, dovecot, responder, or (with --postgres) pg or pg2b.
run() {
	local case=$1 server=$2 n=$3
	shift 3
	local port=$PO_PORT tlsport=$PO_TLS_PORT pid=$PO_PID
	if [ "$server" = dovecot ]; then port=$DC_PORT tlsport=$DC_TLS_PORT pid=$DC_PID; fi
	if [ "$server" = responder ]; then
		port=$RESP_PORT tlsport=$RESP_TLS_PORT pid=$RESP_PID
		# Plain and TLS are two processes: the CPU is the one addressed.
		[[ "$*" == *@TLSPORT@* ]] && pid=$RESP_TLS_PID
	fi
	# shellcheck disable=SC2153 # PG_* are set by postgres.sh, which uses them
	if [ "$server" = pg ]; then port=$PG_PORT tlsport=$PG_PORT pid=$PG_PID; fi
	if [ "$server" = pg2b ]; then port=$PG2_PORT tlsport=$PG2_PORT pid=$PG2_PID; fi
	local args=("$@") i
	for i in "${!args[@]}"; do
		args[i]=${args[i]//@PORT@/$port}
		args[i]=${args[i]//@TLSPORT@/$tlsport}
	done
	if ! "${GEN[@]}" --json --server-pid "$pid" --timeout 60s "${args[@]}" >"$RES/$case.$server.$n.json" 2>"$RES/$case.$server.$n.err"; then
		say "  $case $server run $n failed: $(tail -n 2 "$RES/$case.$server.$n.err")"
	fi
}

# alternate CASE "SERVER..." bench-args...: RUNS rounds, each running the
# case once against every SERVER in turn (postoffice, dovecot, responder),
# so that a noisy neighbour hits them alike; nothing unless --only selects
# CASE.
alternate() {
	local case=$1 servers=$2 n s
	shift 2
	want "$case" || return 0
	say "$case"
	for n in $(seq 1 "$RUNS"); do
		for s in $servers; do
			run "$case" "$s" "$n" "$@"
		done
	done
}
SERVERS="postoffice dovecot"
WITH_RESP="postoffice dovecot responder"

PLAIN=(--addr 127.0.0.1:@PORT@)
TLS=(--addr 127.0.0.1:@TLSPORT@ --tls implicit --cacert "$SEED/cert.pem")
U=(--users "$SEED/users.txt")

if [ "$POSTGRES" = 1 ]; then
	# shellcheck source=bench/postgres.sh
	. "$HERE/postgres.sh"
	exit 0
fi

# Warm every server up once: Dovecot builds its indexes and moves new/ to
# cur/; postoffice builds its index; the responder reads each user's
# messages into memory. The timed runs are warm.
say "warming up"
RESP_PLAIN_CASES=("download-c$DL_C") RESP_TLS_CASES=("download-tls-c$DL_C")
for c in $LOGIN_C; do RESP_PLAIN_CASES+=("login-c$c") RESP_TLS_CASES+=("login-tls-c$c"); done
for s in $SERVERS; do
	run warmup "$s" 1 "${PLAIN[@]}" "${U[@]}" --scenario download --concurrency 8 --sessions "$USERS"
done
if want_any "${RESP_PLAIN_CASES[@]}"; then
	run warmup responder 1 "${PLAIN[@]}" "${U[@]}" --scenario download --concurrency 8 --sessions "$USERS"
fi
if want_any "${RESP_TLS_CASES[@]}"; then
	# The TLS responder is a process of its own, with its own messages.
	run warmup-tls responder 1 "${TLS[@]}" "${U[@]}" --scenario download --concurrency 8 --sessions "$USERS"
fi

for c in $LOGIN_C; do
	alternate "login-c$c" "$WITH_RESP" "${PLAIN[@]}" "${U[@]}" --scenario login --concurrency "$c" --duration "$DUR"
	alternate "login-tls-c$c" "$WITH_RESP" "${TLS[@]}" "${U[@]}" --scenario login --concurrency "$c" --duration "$DUR"
done
alternate "download-c$DL_C" "$WITH_RESP" "${PLAIN[@]}" "${U[@]}" --scenario download --concurrency "$DL_C" --duration "$DUR"
alternate "download-tls-c$DL_C" "$WITH_RESP" "${TLS[@]}" "${U[@]}" --scenario download --concurrency "$DL_C" --duration "$DUR"
alternate "top-c$DL_C" "$SERVERS" "${PLAIN[@]}" "${U[@]}" --scenario top --concurrency "$DL_C" --duration "$DUR"

restore_drain() {
	cut -d: -f1 "$SEED/drain.txt" | while read -r u; do
		rm -rf "${PO_MAIL:?}/$u" "${DC_MAIL:?}/$u"
		cp -a "$WORK/pristine/$u" "$PO_MAIL/"
		cp -a "$WORK/pristine/$u" "$DC_MAIL/"
		if [ "$ROOT" = 1 ]; then chown -R vmail:vmail "$DC_MAIL/$u"; fi
	done
}
if want "drain-c$DRAIN_USERS"; then
	say "drain-c$DRAIN_USERS"
	for n in $(seq 1 "$RUNS"); do
		for s in $SERVERS; do
			restore_drain
			run "drain-c$DRAIN_USERS" "$s" "$n" "${PLAIN[@]}" --users "$SEED/drain.txt" --scenario drain --concurrency "$DRAIN_USERS"
		done
	done
fi

# Bigbox: warm is a session after one that built the indexes; noindex is
# the first session after removing every index (postoffice-index and its
# lock file; dovecot.index*, dovecot-uidlist), with the files in the page
# cache; cold is the same after also dropping the page cache (root and
# --drop-caches only: on a slow virtual disk it takes minutes). Dovecot moved the messages to cur/ in its
# first session; postoffice never moves them.
cold() { # cold SERVER USER
	local dir=$PO_MAIL/$2/Maildir
	if [ "$1" = dovecot ]; then
		dir=$DC_MAIL/$2/Maildir
		rm -f "$dir"/dovecot.index* "$dir"/dovecot-uidlist "$dir"/dovecot-keywords
	else
		rm -f "$dir/postoffice-index" "$dir/postoffice-pop3.lock"
	fi
	if [ "$ROOT" = 1 ] && [ "$DROP" = 1 ]; then
		sync
		echo 3 >/proc/sys/vm/drop_caches
	fi
}
for box in bigbox bigboxw; do
	want_any "$box-warm" "$box-noindex" "$box-cold" || continue
	B=(--users "$SEED/$box.txt" --scenario bigbox)
	for s in $SERVERS; do run "warmup-$box" "$s" 1 "${PLAIN[@]}" "${B[@]}" --sessions 1; done
	alternate "$box-warm" "$SERVERS" "${PLAIN[@]}" "${B[@]}" --sessions 3
	if want "$box-noindex"; then
		say "$box-noindex"
		for n in $(seq 1 "$RUNS"); do
			for s in $SERVERS; do
				DROP=0 cold "$s" "$box"
				run "$box-noindex" "$s" "$n" "${PLAIN[@]}" "${B[@]}" --sessions 1
			done
		done
	fi
	if [ "$ROOT" = 1 ] && [ "$DROP" = 1 ] && want "$box-cold"; then
		say "$box-cold"
		for n in $(seq 1 "$RUNS"); do
			for s in $SERVERS; do
				cold "$s" "$box"
				run "$box-cold" "$s" "$n" "${PLAIN[@]}" "${B[@]}" --sessions 1
			done
		done
	fi
done

# Idle: N logged-in sessions held; the server's memory (RSS and PSS of the
# server process and all its descendants) before and with them. postoffice
# is restarted before each run: a Go process keeps the heap it grew in
# earlier scenarios, which would hide what the sessions take.
restart_po() {
	kill "$PO_PID"
	wait "$PO_PID" 2>/dev/null || true
	start_po
	waitport "$PO_PORT"
	waitport "$PO_TLS_PORT"
	sleep 1
}
idle() { # idle CASE N USERS-FILE bench-args...
	local case=$1 n=$2 users=$3
	shift 3
	want "$case" || return 0
	say "$case"
	for r in $(seq 1 "$RUNS"); do
		restart_po
		run "$case" postoffice "$r" "$@" --users "$users" --scenario idle --sessions "$n" --concurrency 16
		[ "$n" -le "$IDLE" ] && run "$case" dovecot "$r" "$@" --users "$users" --scenario idle --sessions "$n" --concurrency 8
	done
	return 0
}
idle "idle-$IDLE" "$IDLE" "$SEED/idle-small.txt" "${PLAIN[@]}"
idle "idle-tls-$IDLE" "$IDLE" "$SEED/idle-small.txt" "${TLS[@]}"
idle "idle-$IDLE_PO_BIG" "$IDLE_PO_BIG" "$SEED/idle.txt" "${PLAIN[@]}"

if grep -q 'Error\|Fatal\|Panic' "$WORK/dc/dovecot.log" 2>/dev/null; then
	say "dovecot logged errors:"
	grep 'Error\|Fatal\|Panic' "$WORK/dc/dovecot.log" | sort | uniq -c | sort -rn | head -5 >&2
fi
python3 "$HERE/table.py" "$RES" --quick="$QUICK" --runs="$RUNS" --root="$ROOT" --drop="$DROP" --only="$ONLY" --crlf="$CRLF" --sendfile="$SENDFILE"
