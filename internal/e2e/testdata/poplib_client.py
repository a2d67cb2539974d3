#!/usr/bin/env python3
"""Drive postoffice with Python's poplib and print what it saw as JSON.

usage: poplib_client.py HOST PORT USER PASSWORD
Commands: user, pass_, stat, list, uidl, top, retr, dele, rset, dele, quit.
"""
import base64
import json
import poplib
import sys

host, port, user, password = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
out = {}
p = poplib.POP3(host, port, timeout=30)
out["welcome"] = p.getwelcome().decode()
out["capa"] = sorted(p.capa().keys())
p.user(user)
p.pass_(password)
out["stat"] = list(p.stat())
resp, lines, _ = p.list()
out["list"] = [l.decode() for l in lines]
out["list1"] = p.list(1).decode()
resp, lines, _ = p.uidl()
out["uidl"] = [l.decode() for l in lines]
out["uidl2"] = p.uidl(2).decode()
out["retr"] = {}
for n in range(1, out["stat"][0] + 1):
    resp, lines, octets = p.retr(n)
    body = b"".join(l + b"\r\n" for l in lines)
    out["retr"][str(n)] = {"resp": resp.decode(), "octets": octets, "body": base64.b64encode(body).decode()}
resp, lines, octets = p.top(1, 0)
out["top1"] = base64.b64encode(b"".join(l + b"\r\n" for l in lines)).decode()
p.dele(1)
out["stat_after_dele"] = list(p.stat())
p.rset()
out["stat_after_rset"] = list(p.stat())
p.dele(2)
out["quit"] = p.quit().decode()
print(json.dumps(out))
