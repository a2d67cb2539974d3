#!/usr/bin/env python3
"""Print the comparison table of bench/compare.sh from its results directory.

Each result is RESULTS/<case>.<server>.<run>.json, one `postoffice bench --json`
object; server is postoffice, dovecot or responder (the in-memory responder,
the generator's ceiling, run in the login and download cases). Rows show the
median over runs for each server, the ratio (always "how many times better
postoffice is": a rate divided by Dovecot's, a time or a memory size divided
into Dovecot's), the responder's median and postoffice's share of it, the
server CPU per session, and the errors of all runs. Then postoffice's share
of the responder run by run (the runs alternate, so run n of each met the
same neighbours), and the performance targets (docs/performance.md), met or
not; with --only, only the targets of the cases that ran.
"""
import glob
import json
import os
import statistics
import sys


def load(results):
    """data[case][server] is the list of results in run order (None for a
    run whose output is not JSON: a failed run)."""
    runs = {}
    for path in glob.glob(os.path.join(results, "*.json")):
        case, server, run, _ = os.path.basename(path).rsplit(".", 3)
        try:
            with open(path) as f:
                r = json.load(f)
        except (OSError, ValueError):
            r = None
        key = (0, int(run), "") if run.isdigit() else (1, 0, run)
        runs.setdefault(case, {}).setdefault(server, []).append((key, r))
    return {case: {server: [r for _, r in sorted(rs, key=lambda x: x[0])] for server, rs in servers.items()}
            for case, servers in runs.items()}


# metric: (label, getter, higher is better)
def rate(r):
    return r["sessions_per_s"]


def mbps(r):
    return r["mb_per_s"]


def p50(r):
    return r["latency_ms"]["p50"]


def rss(r):
    return r["memory"]["rss_per_session_kib"]


def pss(r):
    return r["memory"]["pss_per_session_kib"]


def cpu(r):
    return r.get("server_cpu_ms_per_session") or 0


def metric_for(case):
    if case.startswith("login"):
        return "sessions/s", rate, True
    if case.startswith(("download", "drain")):
        return "MB/s", mbps, True
    if case.startswith("top"):
        return "sessions/s", rate, True
    if case.startswith("bigbox"):
        return "ms to end of UIDL", p50, False
    if case.startswith("idle"):
        return "KiB PSS/session", pss, False
    return "?", rate, True


def median(rs, get):
    vals = []
    for r in rs or []:
        if r and r.get("sessions", 0) > 0:
            try:
                vals.append(get(r))
            except (KeyError, TypeError):
                pass
    return statistics.median(vals) if vals else None


def errors(rs):
    return sum((r or {}).get("errors", 0) for r in rs or []) + sum(1 for r in rs or [] if r is None)


def fmt(v, digits=1):
    if v is None:
        return "-"
    if v >= 100:
        return f"{v:.0f}"
    return f"{v:.{digits}f}"


def value(r, get):
    """get(r) of one verified run, or None."""
    if not r or r.get("sessions", 0) <= 0:
        return None
    try:
        return get(r)
    except (KeyError, TypeError):
        return None


def pct(v):
    return "-" if v is None else f"{100 * v:.0f}%"


def main():
    results = sys.argv[1]
    opts = dict(a[2:].split("=", 1) for a in sys.argv[2:] if a.startswith("--") and "=" in a)
    only = [p for p in opts.get("only", "").split(",") if p]

    def selected(case):
        return not only or any(case.startswith(p) for p in only)

    data = load(results)
    order = ["login-c8", "login-c16", "login-c64", "login-tls-c8", "login-tls-c16", "login-tls-c64",
             "download-c8", "download-tls-c8", "top-c8", "drain-c8",
             "bigbox-warm", "bigbox-noindex", "bigbox-cold", "bigboxw-warm", "bigboxw-noindex", "bigboxw-cold"]
    order += sorted(c for c in data if c.startswith("idle"))
    cases = [c for c in order if c in data]
    ratios = {}
    shares = {}
    lines = []
    if opts.get("crlf") == "1":
        lines.append("Maildirs seeded with CRLF line ends (--crlf).\n")
    if opts.get("sendfile") == "false":
        lines.append("postoffice with pop3.sendfile = false (--no-sendfile).\n")
    hdr = (f"| {'scenario':<16} | {'metric':<17} | {'postoffice':>10} | {'dovecot':>9} | {'ratio':>6} | "
           f"{'responder':>9} | {'% of responder':>14} | {'CPU ms/session po':>17} | {'dovecot':>8} | {'responder':>9} | "
           f"{'errors po/dc/rs':>15} |")
    lines.append(hdr)
    lines.append("|" + "|".join("-" * (len(c)) for c in hdr.split("|")[1:-1]) + "|")
    for case in cases:
        label, get, higher = metric_for(case)
        po, dc, rs = data[case].get("postoffice"), data[case].get("dovecot"), data[case].get("responder")
        mp, md, mr = median(po, get), median(dc, get), median(rs, get)
        ratio = None
        if mp and md:
            ratio = mp / md if higher else md / mp
        ratios[case] = (mp, md, ratio)
        # postoffice's share of the ceiling: rates only (the responder runs
        # in the login and download cases, all rates).
        share = mp / mr if mp and mr and higher else None
        shares[case] = share
        cp, cd, cr = median(po, cpu), median(dc, cpu), median(rs, cpu)
        errs = f"{errors(po)}/{errors(dc)}/" + (str(errors(rs)) if rs else "-")
        lines.append(f"| {case:<16} | {label:<17} | {fmt(mp):>10} | {fmt(md):>9} | {fmt(ratio, 2) + 'x' if ratio else '-':>6} | "
                     f"{fmt(mr):>9} | {pct(share):>14} | {fmt(cp, 3):>17} | {fmt(cd, 3):>8} | {fmt(cr, 3) if rs else '-':>9} | "
                     f"{errs:>15} |")
        if case.startswith("idle"):
            pp, pd = median(po, rss), median(dc, rss)
            lines.append(f"| {'  (RSS)':<16} | {'KiB RSS/session':<17} | {fmt(pp):>10} | {fmt(pd):>9} | "
                         f"{fmt(pd / pp, 2) + 'x' if pp and pd else '-':>6} | {'':>9} | {'':>14} | {'':>17} | {'':>8} | "
                         f"{'':>9} | {'':>15} |")
    print("\n".join(lines))

    # postoffice's share of the responder run by run: run n of each server
    # ran back to back, so the pairs met the same load from neighbours.
    pairs = []
    for case in cases:
        label, get, higher = metric_for(case)
        po, rs = data[case].get("postoffice") or [], data[case].get("responder") or []
        if not rs or not higher:
            continue
        per = []
        for a, b in zip(po, rs):
            va, vb = value(a, get), value(b, get)
            per.append(pct(va / vb) if va is not None and vb else "-")
        pairs.append(f"  {case:<16} {' '.join(per)}")
    if pairs:
        print("\npostoffice's share of the responder, run by run:")
        print("\n".join(pairs))

    # The performance targets of docs/performance.md.
    def r(case):
        return ratios.get(case, (None, None, None))

    print("\nperformance targets:")
    checks = []  # (case, name, value, want)
    for c in ("8", "64", "16"):
        if f"login-c{c}" in ratios:
            checks.append((f"login-c{c}", f"login plain c={c} >= 10x Dovecot", r(f"login-c{c}")[2], 10))
        if f"login-tls-c{c}" in ratios:
            checks.append((f"login-tls-c{c}", f"login TLS c={c} >= 3x Dovecot", r(f"login-tls-c{c}")[2], 3))
    for c in ("8", "64", "16"):
        if f"login-c{c}" in ratios:
            checks.append((f"login-c{c}", f"login plain c={c} >= 80% of the responder", shares.get(f"login-c{c}"), 0.8))
    checks.append(("download-c8", "download plain >= 5x Dovecot", r("download-c8")[2], 5))
    checks.append(("download-tls-c8", "download TLS >= 4x Dovecot", r("download-tls-c8")[2], 4))
    checks.append(("download-c8", "download plain >= 80% of the responder", shares.get("download-c8"), 0.8))
    checks.append(("download-tls-c8", "download TLS >= 80% of the responder", shares.get("download-tls-c8"), 0.8))
    for case, name in (("bigbox", "without sizes"), ("bigboxw", "with W=")):
        for kind in ("cold", "noindex"):
            mp, md, _ = r(f"{case}-{kind}")
            checks.append((f"{case}-{kind}", f"bigbox {kind} {name} <= Dovecot's", (md / mp) if mp and md else None, 1))
    for case in ("bigbox-warm", "bigboxw-warm"):
        mp = r(case)[0]
        checks.append((case, f"{case} <= 100 ms", (100 / mp) if mp else None, 1))
    for case, limit in (("idle-", 32), ("idle-tls-", 96)):
        for c in ratios:
            if c.startswith(case) and (case != "idle-" or not c.startswith("idle-tls")):
                mp = median(data[c].get("postoffice"), rss)
                ok = all(x and x.get("errors") == 0 and x.get("sessions", 0) > 0 for x in data[c].get("postoffice") or [None])
                checks.append((c, f"{c} <= {limit} KiB RSS/session, all held (postoffice {fmt(mp)})",
                               (limit / max(mp, 0.1)) if mp is not None and ok else None if mp is None else 0, 1))
    for case, name, value_, want in checks:
        if not selected(case):
            continue
        state = "n/a" if value_ is None else ("met" if value_ >= want else "NOT met")
        print(f"  {state:<7} {name}" + ("" if value_ is None else f" ({value_:.2f} vs {want})"))


if __name__ == "__main__":
    main()
