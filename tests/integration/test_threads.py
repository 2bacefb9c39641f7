"""One port, several serving threads (SO_REUSEPORT): with `threads 4` every request from
many sources and source ports is answered correctly and the kernel spreads them over the
threads; per-client rate limits hold across threads, because every thread checks the one
shared (sharded) monitor table: a client whose packets land on several threads gets no more
than its single-thread allowance. Also: a second daemon cannot take the same address."""

import os
import socket
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import ntpg  # noqa: E402

THREADS = 4
STRATUM = 6


def flood_from_ports(addr, src, n, timeout=1.0):
    """n requests from src, each from its own socket (its own source port, so SO_REUSEPORT
    hashes them over the threads), all sent within a few ms. Returns the replies."""
    socks = []
    reqs = []
    for _ in range(n):
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.bind((src, 0))
        s.settimeout(timeout)
        socks.append(s)
        reqs.append(ntpg.client_request(vn=4))
    for s, r in zip(socks, reqs):
        s.sendto(r, (addr, 123))
    replies = []
    deadline = time.monotonic() + timeout
    for s, r in zip(socks, reqs):
        s.settimeout(max(0.01, deadline - time.monotonic()))
        try:
            data = s.recv(2048)
            replies.append((r, data))
        except socket.timeout:
            pass
        s.close()
    return replies


def section_spread(c, tmp):
    c.section("%d threads answer every client" % THREADS)
    addr = ntpg.server_addr(1)
    d = ntpg.Daemon(tmp, [addr], port=123, stratum=STRATUM, name="spread",
                    extra=["threads %d" % THREADS])
    if not c.check("daemon with %d threads answers" % THREADS, d.start()):
        return
    c.check("log says %d serving threads" % THREADS,
            "%d serving threads" % THREADS in d.log_text(), d.log_text()[-300:])
    good = total = 0
    for k in range(1, 21):
        for r, data in flood_from_ports(addr, ntpg.source_addr(k), 10):
            total += 1
            rep = ntpg.decode(data)
            good += bool(rep and rep["mode"] == 4 and rep["stratum"] == STRATUM and
                         data[24:32] == r[40:48] and len(data) == 48)
    c.check("200 requests from 20 sources x 10 ports: every one answered correctly",
            good == 200 and total == 200, "%d good of %d answered" % (good, total))
    st = d.stats() or {}
    per = [st.get("thread%d_received" % i, 0) for i in range(THREADS)]
    c.info("per-thread received: %s" % per)
    c.check("the kernel spread the requests over more than one thread",
            sum(1 for x in per if x > 0) >= 2, per)
    c.check("per-thread counters add up to the total", sum(per) == st.get("received"),
            "%s vs %s" % (sum(per), st.get("received")))
    second = ntpg.Daemon(tmp, [addr], port=123, stratum=STRATUM, name="second",
                         extra=["threads %d" % THREADS])
    second.start(wait=False)
    rc = second.wait_exit(10)
    c.check("a second daemon on the same address refuses to start (no silent sharing)",
            rc not in (None, 0) and "Address already in use" in second.all_output(),
            "rc %s: %s" % (rc, second.all_output()[-200:]))
    rc, _ = d.stop()
    c.check("SIGTERM exits 0", rc == 0, rc)


def section_limits(c, tmp):
    c.section("rate limits hold across threads")
    addr = ntpg.server_addr(2)
    d = ntpg.Daemon(tmp, [addr], port=123, stratum=STRATUM, name="limits",
                    extra=["threads %d" % THREADS, "restrict default limited",
                           "discard average 3 minimum 2 leak 0"])
    if not c.check("daemon with %d threads and `limited` answers" % THREADS,
                   d.start(wait=True)):
        return
    # ntpd's algorithm: a source's first packet is served, a second one less than 0.5 s
    # later is a violation. 40 packets in a few ms from one address over many ports hit
    # several threads; one shared record means exactly one answer in total.
    src = ntpg.source_addr(25)
    replies = flood_from_ports(addr, src, 40)
    st = d.stats() or {}
    per = [st.get("thread%d_received" % i, 0) for i in range(THREADS)]
    c.info("per-thread received: %s" % per)
    c.check("the flood reached more than one thread", sum(1 for x in per if x > 0) >= 2, per)
    c.check("one address over many ports and threads: one answer (the single-thread "
            "allowance), the rest limited", len(replies) == 1 and
            st.get("dropped_limited", 0) == 39,
            "%d answers, dropped_limited %s" % (len(replies), st.get("dropped_limited")))
    c.check("mon_entries: one record for the address", st.get("mon_entries") is not None and
            st.get("mon_entries") <= 2, st.get("mon_entries"))
    d.stop()


def main(c, tmp):
    section_spread(c, tmp)
    section_limits(c, tmp)


if __name__ == "__main__":
    ntpg.run(main, "threads: SO_REUSEPORT serving and shared limits")
