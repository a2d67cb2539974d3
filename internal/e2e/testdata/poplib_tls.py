#!/usr/bin/env python3
"""Drive a POP3 server over TLS with Python's poplib; print what it saw as JSON.

usage: poplib_tls.py MODE HOST PORT USER PASSWORD CAFILE
MODE: stls (POP3, then stls()), ssl (POP3_SSL), apop (POP3_SSL, then apop()).
The context trusts CAFILE only and checks the host name (an IP address here).
"""
import base64
import json
import poplib
import ssl
import sys

mode, host, port, user, password, cafile = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4], sys.argv[5], sys.argv[6]
ctx = ssl.create_default_context(cafile=cafile)
out = {}
if mode == "stls":
    p = poplib.POP3(host, port, timeout=30)
    out["capa_before"] = sorted(p.capa().keys())
    out["stls"] = p.stls(context=ctx).decode()
else:
    p = poplib.POP3_SSL(host, port, timeout=30, context=ctx)
out["welcome"] = p.getwelcome().decode()
out["tls_version"] = p.sock.version()
out["capa"] = sorted(p.capa().keys())
if mode == "apop":
    out["login"] = p.apop(user, password).decode()
else:
    p.user(user)
    out["login"] = p.pass_(password).decode()
out["stat"] = list(p.stat())
out["retr"] = []
for n in range(1, out["stat"][0] + 1):
    resp, lines, octets = p.retr(n)
    out["retr"].append(base64.b64encode(b"".join(l + b"\r\n" for l in lines)).decode())
    p.dele(n)
out["quit"] = p.quit().decode()
json.dump(out, sys.stdout)
