"""Faults the daemon must survive: a receive queue that overflows while the daemon is stopped
(SIGSTOP; the kernel drops what does not fit, the daemon then drains the rest and serves on),
a log file that disappears (it keeps serving; SIGHUP re-creates the log), and sends the
kernel refuses with ENOBUFS or EAGAIN (injected with NTPG_TEST_SEND_FAULT: every N-th send
fails; the replies are lost and counted, the daemon serves on)."""

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

    for every, name in ((3, "ENOBUFS"), (4, "EAGAIN")):
        c.section("%s on every %d-th send" % (name, every))
        os.environ["NTPG_TEST_SEND_FAULT"] = str(every)
        try:
            f = ntpg.Daemon(tmp, [ntpg.server_addr(2)], port=123, stratum=STRATUM,
                            name="sendfault%d" % every)
            started = f.start()
        finally:
            del os.environ["NTPG_TEST_SEND_FAULT"]
        if not c.check("daemon with send faults starts", started):
            continue
        before = f.stats() or {}
        answered = sum(ntpg.query(ntpg.server_addr(2), 123, src=ntpg.source_addr(3),
                                  timeout=0.3) is not None for _ in range(30))
        after = f.stats() or {}
        dl = ntpg.stats_delta(before, after)
        c.info("answered %d of 30; delta replied %s send_errors %s" % (
            answered, dl.get("replied"), dl.get("send_errors")))
        c.check("some replies lost to the injected %s, the rest answered" % name,
                0 < answered < 30 and dl.get("send_errors", 0) > 0, answered)
        c.check("every request is counted: replied + send_errors = served",
                dl.get("replied", 0) + dl.get("send_errors", 0) == dl.get("served", 0),
                {k: dl.get(k) for k in ("served", "replied", "send_errors")})
        c.check("still answers afterwards", ntpg.wait_until(
            lambda: ntpg.query(ntpg.server_addr(2), 123, src=ntpg.source_addr(3),
                               timeout=0.3) is not None, 5.0))
        rc, _ = f.stop()
        c.check("SIGTERM exits 0", rc == 0, rc)


if __name__ == "__main__":
    ntpg.run(main, "faults: full receive queue, vanished log file")
