# bench/postgres.sh: the --postgres part of bench/compare.sh, sourced by it
# once postoffice (Maildir) and Dovecot listen and the Maildirs are seeded.
# It starts a PostgreSQL cluster, copies the seeded Maildirs into it with
# postoffice migrate, starts two postoffice servers on it, and runs login,
# download and bigbox (warm) against postoffice on Maildir, Dovecot, one
# PostgreSQL server ("pg") and both ("pg2": the generator's concurrency
# split between the two servers, run at once, rates summed).

PGBIN=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)
[ -x "$PGBIN/initdb" ] || die "PostgreSQL is missing: apt-get install postgresql"
PGDIR="$WORK/pg"
mkdir -p "$PGDIR/run"
AS_PG=()
if [ "$ROOT" = 1 ]; then
	chown -R postgres:postgres "$PGDIR"
	AS_PG=(runuser -u postgres --)
fi
say "starting PostgreSQL ($PGBIN)"
"${AS_PG[@]}" "$PGBIN/initdb" -D "$PGDIR/data" -U postgres --auth=trust >"$PGDIR/initdb.log" 2>&1 || die "initdb failed: $PGDIR/initdb.log"
"${AS_PG[@]}" taskset -c 0 "$PGBIN/pg_ctl" -D "$PGDIR/data" -l "$PGDIR/log" -w -t 60 \
	-o "-c listen_addresses='' -c unix_socket_directories=$PGDIR/run -c max_connections=200 -c shared_buffers=256MB" start >&2
PG_STOP="${AS_PG[*]} $PGBIN/pg_ctl -D $PGDIR/data -m immediate stop"
DSN="host=$PGDIR/run user=postgres dbname=postgres sslmode=disable"

PG_PORT=$(freeport) PG2_PORT=$(freeport)
for n in pg pg2b; do
	port=$PG_PORT
	[ "$n" = pg2b ] && port=$PG2_PORT
	cat >"$WORK/$n.toml" <<EOT
[pop3]
listen = ["127.0.0.1:$port"]
auth_fail_delay = "0s"

[auth]
passwd_file = "$SEED/passwd"

[mail]
location = "$DSN"

[limits]
max_connections = 0
max_connections_per_ip = 0
EOT
done
"$PO" db migrate --config "$WORK/pg.toml" >&2
# Only the maildrops the cases below read: users.txt and bigbox. The copy
# runs without waiting for each commit's WAL flush (synchronous_commit=off,
# a runtime parameter pgx passes from the DSN): it is the fixture, not what
# is measured; the servers commit durably.
cut -d: -f1 "$SEED/users.txt" "$SEED/bigbox.txt" | grep -F -x -f - <(cut -d: -f1 "$SEED/passwd") |
	while read -r u; do grep "^$u:" "$SEED/passwd"; done >"$WORK/pg-passwd"
say "copying $(wc -l <"$WORK/pg-passwd") maildrops into PostgreSQL (postoffice migrate)"
t0=$(date +%s.%N)
"$PO" migrate copy --quiet --from "maildir:$PO_MAIL/%u/Maildir" --to "$DSN synchronous_commit=off" --passwd-file "$WORK/pg-passwd" \
	--config "$WORK/pg.toml" 2>"$WORK/migrate.log" >&2 || die "postoffice migrate failed: $WORK/migrate.log"
say "  copied in $(python3 -c "print(round($(date +%s.%N) - $t0, 1))") s"
"${SCHED[@]}" taskset -c 0 "$PO" serve --config "$WORK/pg.toml" 2>>"$WORK/pg.log" &
PG_PID=$!
PIDS+=("$PG_PID")
"${SCHED[@]}" taskset -c 0 "$PO" serve --config "$WORK/pg2b.toml" 2>>"$WORK/pg2b.log" &
PG2_PID=$!
PIDS+=("$PG2_PID")
waitport "$PG_PORT"
waitport "$PG2_PORT"

# pair CASE RUN CONCURRENCY bench-args...: the two PostgreSQL servers at
# once, half the concurrency each; kept as CASE.pg2.RUN.json and
# CASE.pg2b.RUN.json, summed in the summary.
pair() {
	local case=$1 n=$2 c=$3
	shift 3
	local half=$(((c + 1) / 2))
	# Each server gets its own half of the users: one user's sessions on
	# both at once would only meet [IN-USE].
	run "$case" pg "x$n" "$@" --users "$SEED/users-a.txt" --concurrency "$half" &
	local a=$!
	run "$case" pg2b "$n" "$@" --users "$SEED/users-b.txt" --concurrency "$half"
	wait "$a"
	mv "$RES/$case.pg.x$n.json" "$RES/$case.pg2.$n.json"
}
four() { # four CASE CONCURRENCY bench-args...
	local case=$1 c=$2
	shift 2
	say "$case"
	for n in $(seq 1 "$RUNS"); do
		run "$case" postoffice "$n" "$@" --concurrency "$c"
		run "$case" dovecot "$n" "$@" --concurrency "$c"
		run "$case" pg "$n" "$@" --concurrency "$c"
		pair "$case" "$n" "$c" "$@"
	done
}

PG_DL_C="${PG_DL_C:-4 $DL_C}"
awk 'NR % 2 == 1' "$SEED/users.txt" >"$SEED/users-a.txt"
awk 'NR % 2 == 0' "$SEED/users.txt" >"$SEED/users-b.txt"
say "warming up"
for s in postoffice dovecot pg pg2b; do
	run warmup "$s" 1 "${PLAIN[@]}" "${U[@]}" --scenario download --concurrency 8 --sessions "$USERS"
done
for c in $LOGIN_C; do
	four "login-c$c" "$c" "${PLAIN[@]}" "${U[@]}" --scenario login --duration "$DUR"
done
# Download at two concurrencies: here PostgreSQL shares CPU 0 with the
# server, and what it costs per session grows with the sessions in flight
# (docs/scale-out.md), so one figure would hide the curve.
for c in $PG_DL_C; do
	four "download-c$c" "$c" "${PLAIN[@]}" "${U[@]}" --scenario download --duration "$DUR"
done
B=(--users "$SEED/bigbox.txt" --scenario bigbox)
for s in postoffice dovecot pg; do run warmup-bigbox "$s" 1 "${PLAIN[@]}" "${B[@]}" --sessions 1; done
say "bigbox-warm"
for n in $(seq 1 "$RUNS"); do
	for s in postoffice dovecot pg; do run bigbox-warm "$s" "$n" "${PLAIN[@]}" "${B[@]}" --sessions 3 --concurrency 1; done
done

python3 - "$RES" <<'PY'
import glob, json, os, statistics, sys
res = sys.argv[1]
data = {}
for p in glob.glob(os.path.join(res, "*.json")):
    case, server, run, _ = os.path.basename(p).rsplit(".", 3)
    try:
        r = json.load(open(p))
    except (OSError, ValueError):
        continue
    data.setdefault(case, {}).setdefault(server, {})[run] = r
def get(case, r):
    if case.startswith("login"): return r["sessions_per_s"]
    if case.startswith("download"): return r["mb_per_s"]
    return r["latency_ms"]["p50"]
rows = []
for case in sorted(data):
    if case.startswith("warmup"): continue
    unit = "sessions/s" if case.startswith("login") else "MB/s" if case.startswith("download") else "ms login to end of UIDL (p50)"
    med = {}
    for server, runs in data[case].items():
        if server == "pg2b": continue
        vals = []
        for run, r in runs.items():
            v = get(case, r)
            if server == "pg2":
                b = data[case].get("pg2b", {}).get(run)
                if b is None: continue
                v += get(case, b)
            vals.append(v)
        if vals: med[server] = statistics.median(vals)
    errs = sum(r.get("errors", 0) for s in data[case].values() for r in s.values())
    print(f"{case:16} {unit:30} " + "  ".join(f"{s} {med[s]:.1f}" for s in ("dovecot", "postoffice", "pg", "pg2") if s in med) + f"  errors {errs}")
    if "dovecot" in med and "pg" in med and med["dovecot"]:
        x = med["pg"] / med["dovecot"] if not case.startswith("bigbox") else med["dovecot"] / med["pg"]
        print(f"{'':16} pg/dovecot x{x:.1f}" + (f"  pg2/dovecot x{med['pg2']/med['dovecot']:.1f}" if "pg2" in med else ""))
PY
