"""Faults the daemon must survive: a receive queue that overflows while the daemon is stopped
(SIGSTOP; the kernel drops what does not fit, the daemon then drains the rest and serves on),
and a log file that disappears (it keeps serving; SIGHUP re-creates the log)."""

import os
import signal
import socket
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import ntpg  # noqa: E402

STRATUM = 6


def main(c, tmp):
    addr = ntpg.server_addr(1)
    src = ntpg.source_addr(1)
    d = ntpg.Daemon(tmp, [addr], port=123, stratum=STRATUM, name="faults")
    if not c.check("daemon answers", d.start()):
        return

    c.section("full receive queue")
    os.kill(d.pid, signal.SIGSTOP)
    sent = 0
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.bind((ntpg.source_addr(2), 0))
            s.setblocking(False)
            deadline = time.monotonic() + 3.0
            while sent < 20000 and time.monotonic() < deadline:
                try:
                    s.sendto(ntpg.client_request(), (addr, 123))
                    sent += 1
                except BlockingIOError:
                    time.sleep(0.001)
    finally:
        os.kill(d.pid, signal.SIGCONT)
    c.info("sent %d requests while the daemon was stopped" % sent)
    ok = ntpg.wait_until(lambda: ntpg.query(addr, 123, src=src, timeout=0.5) is not None, 10.0)
    c.check("after the overflow the daemon answers again", ok)
    st = d.stats() or {}
    c.check("it read part of the flood (the rest was dropped by the kernel)",
            0 < st.get("received", 0) <= sent + 50, "received %s of %d" % (st.get("received"),
                                                                          sent))

    c.section("log file removed")
    os.unlink(d.log)
    ok = all(ntpg.query(addr, 123, src=src, timeout=1.0) is not None for _ in range(5))
    c.check("serves with its log file gone", ok)
    d.send_signal(signal.SIGHUP)
    ok = ntpg.wait_until(lambda: os.path.exists(d.log) and "reloaded" in d.log_text(), 5.0)
    c.check("SIGHUP re-creates the log file and logs the reload", ok, d.log_text()[-300:])
    c.check("still answers after the reload", ntpg.query(addr, 123, src=src, timeout=1.0)
            is not None)
    rc, _ = d.stop()
    c.check("SIGTERM exits 0", rc == 0, rc)
    rep = d.sanitizer_report()
    c.check("no sanitizer report", not rep, rep)


if __name__ == "__main__":
    ntpg.run(main, "faults: full receive queue, vanished log file")
