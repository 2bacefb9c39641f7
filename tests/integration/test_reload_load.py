"""Reload and log rotation under load: two serving threads answer a steady stream of queries
(one unrestricted source, and a `limited kod` flood whose KoDs the serving threads log) while
the log is rotated the way logrotate does it (rename, then SIGHUP) and the configuration
alternates between two strata, ten times. The daemon must keep answering, every reload must
take effect (the stratum in the replies follows the file), every rotation must leave the
earlier lines in the renamed file and the new ones in a new file, and SIGTERM must exit 0.

Against the ThreadSanitizer build (`make test-tsan`, TSAN_OPTIONS halt_on_error=1 exitcode=66)
a race between a serving thread's log line and the reopen ends the daemon with status 66 and
a report on its stderr, which fails the run (the harness fails any daemon with a sanitizer
report)."""

import os
import re
import signal
import socket
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import ntpg  # noqa: E402

ROTATIONS = 10
STRATA = (6, 8)
KOD_LINE = re.compile(r"sent \S+ to 127\.78\.")


def extra():
    return ["threads 2", "restrict default limited kod", "restrict %s" % ntpg.source_addr(1),
            "discard average 3 minimum 2"]


def flood(addr, stop, sent):
    """KoD-drawing load from 16 limited sources, bounded in count and time."""
    socks = []
    for k in range(2, 18):
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.bind((ntpg.source_addr(k), 0))
        s.setblocking(False)
        socks.append(s)
    deadline = time.monotonic() + 120
    try:
        for i in range(2000000):
            if stop.is_set() or time.monotonic() > deadline:
                break
            s = socks[i % len(socks)]
            try:
                s.sendto(ntpg.client_request(), (addr, 123))
                sent[0] += 1
            except (BlockingIOError, OSError):
                pass
            if i % 32 == 31:
                for t in socks:  # drain the KoDs so the sockets never fill up
                    ntpg.recv_all(t)
                time.sleep(0.005)  # pacing (at most ~6000/s), not synchronization
    finally:
        for s in socks:
            s.close()


def main(c, tmp):
    addr = ntpg.server_addr(1)
    probe = ntpg.source_addr(1)
    d = ntpg.Daemon(tmp, [addr], port=123, stratum=STRATA[0], name="reload",
                    extra=extra(), probe_src=probe)
    if not c.check("daemon with 2 threads answers", d.start()):
        return
    stop = threading.Event()
    sent = [0]
    th = threading.Thread(target=flood, args=(addr, stop, sent), daemon=True)
    th.start()
    answered = asked = 0
    follows = 0
    kept_lines = 0
    logged = 0
    try:
        c.check("the serving threads log KoDs under the flood",
                ntpg.wait_until(lambda: KOD_LINE.search(d.log_text()), 10),
                why=d.log_diag())
        for n in range(1, ROTATIONS + 1):
            # a serving thread's KoD line in the file about to be rotated (best effort: the
            # global KoD limit allows one a second, the log limit 10 per thread)
            logged += bool(ntpg.wait_until(lambda: KOD_LINE.search(d.log_text()), 2))
            stratum = STRATA[n % 2]
            d.write_config(stratum=stratum)
            rotated = "%s.%d" % (d.log, n)
            os.rename(d.log, rotated)
            d.send_signal(signal.SIGHUP)
            done = ntpg.wait_until(lambda: "configuration reloaded" in d.log_text(), 15)
            if not c.check("rotation %d: SIGHUP re-created the log and reloaded" % n, done,
                           why="alive %s; %s" % (d.alive(), d.log_diag())):
                break
            kept_lines += ("SIGHUP: reloading" in ntpg.read_text(rotated))

            def follows_file():
                r = ntpg.query(addr, 123, src=probe, timeout=0.5)
                return r is not None and r["reply"]["stratum"] == stratum
            ok = ntpg.wait_until(follows_file, 5)
            follows += bool(ok)
            for _ in range(20):  # a query lost in a full receive queue is asked again
                asked += 1
                answered += ntpg.barrier(addr, 123, probe, timeout=3.0)[0]
    finally:
        stop.set()
        th.join(5)
    c.info("flood: %d requests sent; probe: %d of %d answered; %d of %d rotated files had a "
           "KoD line from a serving thread" % (sent[0], answered, asked, logged, ROTATIONS))
    c.check("every reload took effect: replies carry the new stratum (%d of %d)" % (
        follows, ROTATIONS), follows == ROTATIONS)
    c.check("each rotated file holds the lines up to its SIGHUP (%d of %d)" % (
        kept_lines, ROTATIONS), kept_lines == ROTATIONS)
    c.check("the unrestricted source was answered throughout (%d of %d, each within 3 tries)"
            % (answered, asked),
            asked > 0 and answered == asked)
    c.check("the flood drew KoDs while reloading", sent[0] > 0 and d.alive(),
            "sent %d, alive %s, rc %s" % (sent[0], d.alive(), d.rc))
    rc, took = d.stop()
    c.check("SIGTERM exits 0", rc == 0, "rc %s after %.2f s; %s" % (
        rc, took, d.stderr_text()[-600:]))
    rep = d.sanitizer_report()
    c.check("no sanitizer report", not rep, rep)


if __name__ == "__main__":
    ntpg.run(main, "reload and log rotation under load")
