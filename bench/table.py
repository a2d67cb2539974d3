#!/usr/bin/env python3
"""Print the comparison table of bench/compare.sh from its results directory.

Each result is RESULTS/<case>.<server>.<run>.json, one `postoffice bench --json`
object. Rows show the median over runs for each server, the ratio (always
"how many times better postoffice is": a rate divided by Dovecot's, a time or
a memory size divided into Dovecot's), the server CPU per session, and the
errors of all runs. Then the performance targets (docs/performance.md), met or
not.
"""
import glob
import json
import os
import statistics
import sys


def load(results):
    data = {}
    for path in glob.glob(os.path.join(results, "*.json")):
        case, server, _run, _ = os.path.basename(path).rsplit(".", 3)
        try:
            with open(path) as f:
                r = json.load(f)
        except (OSError, ValueError):
            r = None
        data.setdefault(case, {}).setdefault(server, []).append(r)
    return data


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


def main():
    results = sys.argv[1]
    opts = dict(a[2:].split("=", 1) for a in sys.argv[2:] if a.startswith("--"))
    data = load(results)
    order = ["login-c8", "login-c16", "login-c64", "login-tls-c8", "login-tls-c16", "login-tls-c64",
             "download-c8", "download-tls-c8", "top-c8", "drain-c8",
             "bigbox-warm", "bigbox-noindex", "bigbox-cold", "bigboxw-warm", "bigboxw-noindex", "bigboxw-cold"]
    order += sorted(c for c in data if c.startswith("idle"))
    cases = [c for c in order if c in data]
    ratios = {}
    lines = []
    hdr = f"| {'scenario':<16} | {'metric':<17} | {'postoffice':>10} | {'dovecot':>9} | {'ratio':>6} | {'CPU ms/session po':>17} | {'dovecot':>8} | {'errors po/dc':>12} |"
    lines.append(hdr)
    lines.append("|" + "|".join("-" * (len(c)) for c in hdr.split("|")[1:-1]) + "|")
    for case in cases:
        label, get, higher = metric_for(case)
        po, dc = data[case].get("postoffice"), data[case].get("dovecot")
        mp, md = median(po, get), median(dc, get)
        ratio = None
        if mp and md:
            ratio = mp / md if higher else md / mp
        ratios[case] = (mp, md, ratio)
        cp = median(po, lambda r: r.get("server_cpu_ms_per_session") or 0)
        cd = median(dc, lambda r: r.get("server_cpu_ms_per_session") or 0)
        lines.append(f"| {case:<16} | {label:<17} | {fmt(mp):>10} | {fmt(md):>9} | {fmt(ratio, 2) + 'x' if ratio else '-':>6} | "
                     f"{fmt(cp, 3):>17} | {fmt(cd, 3):>8} | {str(errors(po)) + '/' + str(errors(dc)):>12} |")
        if case.startswith("idle"):
            pp, pd = median(po, rss), median(dc, rss)
            lines.append(f"| {'  (RSS)':<16} | {'KiB RSS/session':<17} | {fmt(pp):>10} | {fmt(pd):>9} | "
                         f"{fmt(pd / pp, 2) + 'x' if pp and pd else '-':>6} | {'':>17} | {'':>8} | {'':>12} |")
    print("\n".join(lines))

    # The generator's ceiling: the in-memory responder.
    print()
    for case, label, get in (("download-c8", "MB/s", mbps), ("login-c8", "sessions/s", rate)):
        resp = median(data.get(case, {}).get("responder"), get)
        po = median(data.get(case, {}).get("postoffice"), get)
        if resp:
            share = f"{100 * po / resp:.0f}%" if po else "-"
            print(f"responder {case}: {fmt(resp)} {label}; postoffice reaches {share} of it")

    # The performance targets of docs/performance.md.
    def r(case):
        return ratios.get(case, (None, None, None))

    print("\nperformance targets:")
    checks = []
    for c in ("8", "64", "16"):
        if f"login-c{c}" in ratios:
            checks.append((f"login plain c={c} >= 10x Dovecot", r(f"login-c{c}")[2], 10))
        if f"login-tls-c{c}" in ratios:
            checks.append((f"login TLS c={c} >= 3x Dovecot", r(f"login-tls-c{c}")[2], 3))
    checks.append(("download plain >= 5x Dovecot", r("download-c8")[2], 5))
    checks.append(("download TLS >= 4x Dovecot", r("download-tls-c8")[2], 4))
    for case, name in (("bigbox", "without sizes"), ("bigboxw", "with W=")):
        for kind in ("cold", "noindex"):
            mp, md, _ = r(f"{case}-{kind}")
            checks.append((f"bigbox {kind} {name} <= Dovecot's", (md / mp) if mp and md else None, 1))
    for case in ("bigbox-warm", "bigboxw-warm"):
        mp = r(case)[0]
        checks.append((f"{case} <= 100 ms", (100 / mp) if mp else None, 1))
    for case, limit in (("idle-", 32), ("idle-tls-", 96)):
        for c in ratios:
            if c.startswith(case) and (case != "idle-" or not c.startswith("idle-tls")):
                mp = median(data[c].get("postoffice"), rss)
                ok = all(x and x.get("errors") == 0 and x.get("sessions", 0) > 0 for x in data[c].get("postoffice") or [None])
                checks.append((f"{c} <= {limit} KiB RSS/session, all held (postoffice {fmt(mp)})",
                               (limit / max(mp, 0.1)) if mp is not None and ok else None if mp is None else 0, 1))
    resp = median(data.get("download-c8", {}).get("responder"), mbps)
    po = median(data.get("download-c8", {}).get("postoffice"), mbps)
    checks.append(("download >= 50% of the responder", (po / resp) if po and resp else None, 0.5))
    for name, value, want in checks:
        state = "n/a" if value is None else ("met" if value >= want else "NOT met")
        print(f"  {state:<7} {name}" + ("" if value is None else f" ({value:.2f} vs {want})"))


if __name__ == "__main__":
    main()
