"""Mixed load on one Maildir served by Dovecot (IMAP) and postoffice (POP3, LMTP).

Driven by TestDovecotIMAPCoexistence. Three workers run at the same time,
each a loop of short sessions bounded in count and time:
  - lmtp:  delivers messages into postoffice (smtplib.LMTP), 1-3 a session;
  - imap:  sets and clears \\Seen, \\Flagged and keywords with UID STORE,
           and now and then marks one message \\Deleted and EXPUNGEs it;
  - pop3:  UIDL, LIST, TOP n 0, RETR (checked against TOP and LIST), DELE,
           then QUIT (or, one session in ten, a dropped connection, which
           must delete nothing).
A fourth thread keeps one IMAP session SELECTed and sends NOOP, so Dovecot
syncs under the others' feet. Every message carries "X-Test-Id: N".

After the load, a final phase: an IMAP session SELECTs the mailbox, a POP3
session deletes a few messages and QUITs, the IMAP session sends NOOP and
must see them expunged. Then both sides list what they have.

Usage: coexist_load.py IMAPADDR POP3ADDR LMTPADDR USER PASSWORD FIRST_IDS SEED MAX_OPS MAX_SECONDS
Prints one JSON object on stdout (see the end of main).
"""

import imaplib
import json
import poplib
import random
import re
import smtplib
import socket
import sys
import threading
import time

IMAP, POP, LMTP, USER, PASSWORD = sys.argv[1:6]
FIRST_IDS = int(sys.argv[6])
SEED = int(sys.argv[7])
MAX_OPS = int(sys.argv[8])
MAX_SECONDS = float(sys.argv[9])
TIMEOUT = 20

FLAGS = ["\\Seen", "\\Flagged", "$Label1", "Todo"]
FETCH_RE = re.compile(rb"UID (\d+) FLAGS \(([^)]*)\)")
ID_RE = re.compile(rb"X-Test-Id: (\d+)", re.I)

lock = threading.Lock()
state = {
    "delivered": [],       # ids accepted over LMTP (250)
    "imap_expunged": [],   # ids expunged over IMAP (tagged OK)
    "pop3_deleted": [],    # ids DELE'd in a session whose QUIT got +OK
    "flags": {},           # id -> flags the IMAP worker last set (sorted list)
    "errors": [],          # anything unexpected
    "ops": {"lmtp": 0, "imap_store": 0, "imap_expunge": 0, "imap_noop": 0,
            "pop3_retr": 0, "pop3_dele": 0, "pop3_quit": 0, "pop3_drop": 0, "pop3_in_use": 0,
            "pop3_gone": 0},
}
deadline = time.monotonic() + MAX_SECONDS
budget = [MAX_OPS]


def take_op():
    """One unit of the shared operation budget; False when spent or late."""
    with lock:
        if budget[0] <= 0 or time.monotonic() > deadline:
            return False
        budget[0] -= 1
        return True


def count(name, n=1):
    with lock:
        state["ops"][name] += n


def error(where, e):
    with lock:
        state["errors"].append("%s: %r" % (where, e))


def hostport(a):
    h, p = a.rsplit(":", 1)
    return h, int(p)


def message(n):
    return ("From: sender@example.net\r\nTo: %s\r\nSubject: coexistence %d\r\n"
            "X-Test-Id: %d\r\nMessage-ID: <%d@coexist.test>\r\n\r\n"
            "body of message %d\r\n%s" % (USER, n, n, n, n, "filler line\r\n" * (n % 7))).encode()


def lmtp_worker(rng):
    next_id = 1000
    h, p = hostport(LMTP)
    while take_op():
        try:
            c = smtplib.LMTP(h, p, timeout=TIMEOUT)
            try:
                for _ in range(rng.randint(1, 3)):
                    n = next_id
                    next_id += 1
                    refused = c.sendmail("sender@example.net", [USER], message(n))
                    if refused:
                        error("lmtp refused", refused)
                    else:
                        with lock:
                            state["delivered"].append(n)
                        count("lmtp")
            finally:
                c.quit()
        except Exception as e:
            error("lmtp", e)
        time.sleep(rng.uniform(0, 0.05))


def imap_login():
    h, p = hostport(IMAP)
    m = imaplib.IMAP4(h, p, timeout=TIMEOUT)
    m.login(USER, PASSWORD)
    typ, _ = m.select("INBOX")
    if typ != "OK":
        raise RuntimeError("SELECT: " + typ)
    return m


def imap_list(m):
    """uid -> (id, set of flags without \\Recent) for every message."""
    typ, data = m.uid("SEARCH", None, "ALL")
    if typ != "OK":
        raise RuntimeError("UID SEARCH: %s %r" % (typ, data))
    if not data or not data[0].split():
        return {}
    typ, data = m.uid("FETCH", "1:*", "(UID FLAGS BODY.PEEK[HEADER.FIELDS (X-TEST-ID)])")
    if typ != "OK":
        raise RuntimeError("UID FETCH: %s %r" % (typ, data))
    out = {}
    for item in data:
        if not isinstance(item, tuple):
            continue  # a ")" or an unsolicited FETCH from another session
        f = FETCH_RE.search(item[0])
        i = ID_RE.search(item[1])
        if not f or not i:
            raise RuntimeError("unparsed FETCH item %r" % (item,))
        flags = set(x.decode() for x in f.group(2).split()) - {"\\Recent"}
        out[int(f.group(1))] = (int(i.group(1)), flags)
    return out


def imap_worker(rng):
    while take_op():
        try:
            m = imap_login()
            try:
                msgs = imap_list(m)
                uids = sorted(msgs)
                for uid in rng.sample(uids, min(len(uids), rng.randint(1, 4))):
                    pause(rng)
                    n, _ = msgs[uid]
                    flag = rng.choice(FLAGS)
                    op = rng.choice(["+FLAGS.SILENT", "-FLAGS.SILENT"])
                    # Only this worker sets flags, so its record is the
                    # flags each message must end with. A NO is a message
                    # POP3 deleted meanwhile.
                    typ, data = m.uid("STORE", str(uid), op, "(%s)" % flag)
                    if typ == "OK":
                        with lock:
                            cur = set(state["flags"].get(n, []))
                            if op[0] == "+":
                                cur.add(flag)
                            else:
                                cur.discard(flag)
                            state["flags"][n] = sorted(cur)
                            state["ops"]["imap_store"] += 1
                if uids and rng.random() < 0.3:
                    uid = rng.choice(uids)
                    n, _ = msgs[uid]
                    typ, _ = m.uid("STORE", str(uid), "+FLAGS.SILENT", "(\\Deleted)")
                    if typ == "OK":
                        typ, data = m.expunge()
                        if typ != "OK":
                            error("imap expunge", data)
                        else:
                            with lock:
                                state["imap_expunged"].append(n)
                            count("imap_expunge")
            finally:
                m.logout()
        except Exception as e:
            error("imap", e)
        time.sleep(rng.uniform(0, 0.05))


def imap_watcher(stop):
    try:
        m = imap_login()
        try:
            while not stop.is_set():
                typ, data = m.noop()
                if typ != "OK":
                    error("imap noop", data)
                count("imap_noop")
                stop.wait(0.1)
        finally:
            m.logout()
    except Exception as e:
        error("imap watcher", e)


def pop_login():
    """Logs in, waiting out [IN-USE]: after a dropped connection the server
    releases the maildrop once it reads the end of the connection, which
    can come after this worker's next login (RFC 2449 §8.1.1: the client
    may try again later). Bounded: 100 tries, 20 ms apart."""
    h, p = hostport(POP)
    for attempt in range(100):
        c = poplib.POP3(h, p, timeout=TIMEOUT)
        try:
            c.user(USER)
            c.pass_(PASSWORD)
            return c
        except poplib.error_proto as e:
            drop(c)
            if b"[IN-USE]" not in e.args[0] or attempt == 99:
                raise
            count("pop3_in_use")
            time.sleep(0.02)
        except Exception:
            drop(c)
            raise


def pop_id(c, i):
    """The X-Test-Id of message i, or None if it is gone (TOP answered -ERR)."""
    try:
        _, lines, _ = c.top(i, 0)
    except poplib.error_proto:
        return None
    for l in lines:
        mm = ID_RE.match(l)
        if mm:
            return int(mm.group(1))
    raise RuntimeError("message %d has no X-Test-Id: %r" % (i, lines))


def pause(rng):
    time.sleep(rng.uniform(0, 0.04))


def drop(c):
    """Ends a POP3 connection without QUIT. (Closing c.sock alone leaves
    the connection open: poplib's file object still refers to it.)"""
    if c is None:
        return
    try:
        c.sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass
    c.close()


def pop_worker(rng):
    while take_op():
        c = None
        try:
            c = pop_login()
            _, listing, _ = c.list()
            sizes = {int(a): int(b) for a, b in (l.split() for l in listing)}
            _, uidls, _ = c.uidl()
            if len(uidls) != len(sizes):
                error("pop3", "UIDL has %d lines, LIST %d" % (len(uidls), len(sizes)))
            nums = sorted(sizes)
            for i in rng.sample(nums, min(len(nums), rng.randint(0, 3))):
                pause(rng)  # let IMAP move and flag files under the snapshot
                n = pop_id(c, i)
                if n is None:
                    count("pop3_gone")
                    continue
                try:
                    _, lines, octets = c.retr(i)
                except poplib.error_proto:
                    count("pop3_gone")  # expunged over IMAP since the snapshot
                    continue
                got = [int(mm.group(1)) for mm in map(ID_RE.match, lines) if mm]
                if got != [n]:
                    error("pop3 retr", "message %d: TOP says id %d, RETR %r" % (i, n, got))
                if octets != sizes[i]:
                    error("pop3 retr", "message %d (id %d): LIST %d octets, RETR %d" % (i, n, sizes[i], octets))
                count("pop3_retr")
            dele = []
            for i in rng.sample(nums, min(len(nums), rng.randint(0, 2))):
                pause(rng)
                n = pop_id(c, i)
                if n is None:
                    count("pop3_gone")
                    continue
                c.dele(i)
                dele.append(n)
            pause(rng)
            if rng.random() < 0.1:
                drop(c)  # RFC 1939 §6: a dropped session deletes nothing
                count("pop3_drop")
            else:
                c.quit()  # raises on -ERR
                with lock:
                    state["pop3_deleted"].extend(dele)
                count("pop3_dele", len(dele))
                count("pop3_quit")
        except Exception as e:
            error("pop3", e)
            drop(c)
        time.sleep(rng.uniform(0, 0.05))


def pop_final():
    """id -> UIDL of every message postoffice serves."""
    c = pop_login()
    try:
        _, uidls, _ = c.uidl()
        out = {}
        for l in uidls:
            i, u = l.split()
            n = pop_id(c, int(i))
            if n is None:
                raise RuntimeError("final TOP %s failed" % i)
            out[n] = u.decode()
        return out
    finally:
        c.quit()


def main():
    rng = random.Random(SEED)
    stop = threading.Event()
    watcher = threading.Thread(target=imap_watcher, args=(stop,))
    workers = [threading.Thread(target=f, args=(random.Random(rng.random()),))
               for f in (lmtp_worker, imap_worker, pop_worker)]
    watcher.start()
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    stop.set()
    watcher.join()

    # Final phase: a POP3 delete must show in a SELECTed IMAP session.
    final_deleted, noop_expunges = [], 0
    try:
        m = imap_login()
        try:
            c = pop_login()
            _, uidls, _ = c.uidl()
            nums = [int(l.split()[0]) for l in uidls]
            for i in random.Random(SEED).sample(nums, min(3, len(nums))):
                final_deleted.append(pop_id(c, i))
                c.dele(i)
            c.quit()
            state["pop3_deleted"].extend(final_deleted)
            typ, _ = m.noop()
            noop_expunges = len(m.untagged_responses.get("EXPUNGE", []))
            after = imap_list(m)
        finally:
            m.logout()
        final_imap_after_noop = sorted(n for n, _ in after.values())
    except Exception as e:
        error("final", e)
        final_imap_after_noop = []

    final_imap = {}
    try:
        m = imap_login()
        try:
            for _, (n, flags) in imap_list(m).items():
                if n in final_imap:
                    error("final imap", "id %d twice" % n)
                final_imap[n] = sorted(flags)
        finally:
            m.logout()
    except Exception as e:
        error("final imap", e)
    try:
        final_pop3 = pop_final()
    except Exception as e:
        error("final pop3", e)
        final_pop3 = {}

    json.dump({
        "initial": list(range(1, FIRST_IDS + 1)),
        "delivered": state["delivered"],
        "imap_expunged": state["imap_expunged"],
        "pop3_deleted": state["pop3_deleted"],
        "final_deleted": final_deleted,
        "noop_expunges": noop_expunges,
        "imap_after_noop": final_imap_after_noop,
        "flags": {str(k): v for k, v in state["flags"].items()},
        "final_imap": {str(k): v for k, v in final_imap.items()},
        "final_pop3": {str(k): v for k, v in final_pop3.items()},
        "errors": state["errors"],
        "ops": state["ops"],
    }, sys.stdout)


main()
