"""NTS CPU per answer against plain NTP, for ntpgated and chronyd in the same run (docs/nts.md,
docs/performance.md). Run by `make bench-nts` inside a private network namespace.

Each server (one serving thread; chronyd is single-threaded) gets its certificate from a CA
made here. chronyd -Q with `nts` and `ntsdumpdir` does NTS-KE with it and leaves its keys and
cookies in the dump file; from those, 8 NTS requests are prebuilt (one cookie each: a server
accepts a cookie any number of times, only the client must not reuse one). Then the same
closed-loop client sends COUNT plain requests and COUNT NTS requests, checks every reply (an
NTS reply must carry an authenticator that verifies under the S2C key for the first few, and
the same length for all), and reads the server's CPU time (every thread's
/proc/PID/task/TID/schedstat)
before and after each phase. CPU per answer is that difference over the answers; the ratio is
NTS over plain. Then KE_COUNT NTS-KE handshakes one after another (TCP_NODELAY, TLS 1.3 with ALPN ntske/1,
the certificate verified against the run's CA, a request for NTPv4 and AES-SIV-CMAC-256, the
response read to its end and checked for 8 cookies): the server's CPU time per handshake and
the handshakes per second the one client got. Both servers have a P-256 certificate from the
same kind of CA. Prints one line per server and a machine-readable last line."""

import os
import socket
import struct
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "tests", "integration"))
import ntpg  # noqa: E402
import test_nts  # noqa: E402

COUNT = int(os.environ.get("NTS_BENCH_COUNT", "20000"))
CHECK = 16  # replies fully verified per phase (in the one-at-a-time runs)
WINDOWS = (1, 32)  # requests in flight: one at a time (a wakeup per request), bursts of 32
WINDOW = 1
KE_COUNT = int(os.environ.get("NTS_BENCH_KE_COUNT", "400"))
# The client sets TCP_NODELAY, as ntpgated's own NTS-KE client does: with Nagle's algorithm
# its request, written right after its TLS Finished, waits for the server's delayed ACK
# (40 ms), and the rate is the client's stall, not the server's. NTS_BENCH_NAGLE=1: leave it on.
NAGLE = bool(os.environ.get("NTS_BENCH_NAGLE"))


def cpu(pid):
    """CPU seconds of every thread of pid and of its child processes, recursively
    (schedstat: nanoseconds, not clock ticks). chronyd does NTS-KE in a helper process of
    its own (ntsprocesses, default 1), which counts too."""
    total = 0
    try:
        tasks = os.listdir("/proc/%d/task" % pid)
    except OSError:  # a process that just ended
        return 0
    for t in tasks:
        try:
            total += int(open("/proc/%d/task/%s/schedstat" % (pid, t)).read().split()[0])
            kids = open("/proc/%d/task/%s/children" % (pid, t)).read().split()
        except OSError:  # a thread that just ended
            continue
        total += sum(cpu(int(k)) * 1e9 for k in kids)
    return total / 1e9


def fetch_keys(tmp, p, addr, port, kport):
    dd = os.path.join(tmp, "q-%s" % addr)
    os.makedirs(dd, exist_ok=True)
    conf = ntpg.write_text(os.path.join(dd, "c.conf"), "\n".join([
        "server %s port %d iburst nts ntsport %d minpoll -2 maxpoll -2" % (addr, port, kport),
        "ntstrustedcerts %s" % p("ca.pem"), "nosystemcert", "pidfile %s/p" % dd,
        "driftfile %s/drift" % dd, "cmdport 0", "logdir %s" % dd, "ntsdumpdir %s" % dd]) + "\n")
    rc, out, err = ntpg.run_tool([ntpg.CHRONYD, "-Q", "-u", "root", "-t", "4", "-f", conf], 15)
    lines = open(os.path.join(dd, addr + ".nts")).read().split("\n")
    w = lines[4].split()
    return bytes.fromhex(w[3]), bytes.fromhex(w[2]), [bytes.fromhex(x) for x in lines[5:] if x]


def run_phase(addr, port, pid, packets, check):
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.settimeout(1.0)
    s.connect((addr, port))
    lost, c0, t0 = 0, cpu(pid), time.monotonic()
    lens = set()
    for base in range(0, COUNT, WINDOW):  # a burst of WINDOW requests, then their replies
        burst = range(base, min(base + WINDOW, COUNT))
        for i in burst:
            s.send(packets[i % len(packets)])
        for i in burst:
            try:
                r = s.recv(2048)
            except socket.timeout:
                lost += 1
                continue
            lens.add(len(r))
            if i < CHECK and WINDOW == 1 and not check(i % len(packets), r):
                raise SystemExit("bad reply from %s: %s" % (addr, r[:64].hex()))
    c1, t1 = cpu(pid), time.monotonic()
    s.close()
    n = COUNT - lost
    return {"cpu_us": (c1 - c0) / max(n, 1) * 1e6, "answers": n, "lost": lost,
            "rate": n / (t1 - t0), "lens": sorted(lens)}


def ke_phase(name, p, addr, kport, pid):
    """KE_COUNT sequential NTS-KE handshakes from 16 source addresses (so the per-address
    limits of neither server are what is measured): server CPU per handshake, client rate."""
    ctx = test_nts.tls_ctx(p("ca.pem"))
    bad, c0, t0 = 0, cpu(pid), time.monotonic()
    for i in range(KE_COUNT):
        recs, err = test_nts.ke(addr, kport, None, src=ntpg.source_addr(1 + i % 16), ctx=ctx,
                                nodelay=not NAGLE)
        bad += len([1 for t, _ in recs if t == 5]) != 8
    c1, t1 = cpu(pid), time.monotonic()
    n = KE_COUNT - bad
    if bad:
        raise SystemExit("%s: %d of %d NTS-KE handshakes gave no 8 cookies" % (name, bad, KE_COUNT))
    us, rate = (c1 - c0) / n * 1e6, n / (t1 - t0)
    print("%-9s NTS-KE: %d handshakes, %.0f us server CPU each (%.0f/s per core), %.0f/s "
          "reached by one client" % (name, n, us, 1e6 / us, rate), flush=True)
    return [us, rate]


def bench(tmp, p, name, addr, port, kport, pid):
    c2s, s2c, cookies = fetch_keys(tmp, p, addr, port, kport)
    clients, nts_pkts = [], []
    for ck in cookies:
        n = test_nts.Nts.__new__(test_nts.Nts)
        n.c2s, n.s2c, n.cookie = c2s, s2c, ck
        nts_pkts.append(n.request())
        clients.append(n)
    plain = [bytes([0x23]) + bytes(39) + os.urandom(8) for _ in range(8)]
    ok_plain = lambda i, r: r[0] & 7 == 4 and r[24:32] == plain[i][40:48]  # noqa: E731
    ok_nts = lambda i, r: clients[i].open_reply(r)[0] == "ok"  # noqa: E731
    global WINDOW
    out = []
    for WINDOW in WINDOWS:
        run_phase(addr, port, pid, plain, ok_plain)  # warm-up
        a = run_phase(addr, port, pid, plain, ok_plain)
        b = run_phase(addr, port, pid, nts_pkts, ok_nts)
        ratio = b["cpu_us"] / a["cpu_us"] if a["cpu_us"] > 0 else float("nan")
        print("%-9s window %2d: plain %.2f us/answer (%d answers, %.0f/s)  NTS %.2f us/answer "
              "(%d answers, %.0f/s, reply %s octets, request %d)  ratio %.2f" % (
                  name, WINDOW, a["cpu_us"], a["answers"], a["rate"], b["cpu_us"],
                  b["answers"], b["rate"], b["lens"], len(nts_pkts[0]), ratio), flush=True)
        out += [a["cpu_us"], b["cpu_us"], ratio]
    return out + ke_phase(name, p, addr, kport, pid)


def main():
    tmp = os.path.join(os.environ.get("TMPDIR", "/tmp"), "ntpg-bench-nts-%d" % os.getpid())
    os.makedirs(tmp)
    ours, theirs, port, kport = "127.90.0.1", "127.90.0.2", 123, 4460
    p = test_nts.make_pki(tmp, ours)
    os.makedirs(os.path.join(tmp, "c"))
    pc = test_nts.make_pki(os.path.join(tmp, "c"), theirs)
    d = ntpg.Daemon(tmp, [ours], port=port, name="ntpgated", extra=[
        "threads 1", "nts enable cert %s key %s" % (p("srv.pem"), p("srv.key")),
        "nts port %d" % kport])
    c = ntpg.Daemon(tmp, [theirs], port=port, name="chronyd", kind="chronyd", extra=[
        "ntsservercert %s" % pc("srv.pem"), "ntsserverkey %s" % pc("srv.key"),
        "ntsport %d" % (kport + 1), "ntsdumpdir %s" % tmp])
    try:
        if not d.start() or not c.start():
            raise SystemExit("a server did not start")
        rows = [bench(tmp, p, "ntpgated", ours, port, kport, d.pid),
                bench(tmp, pc, "chronyd", theirs, port, kport + 1, c.pid)]
    finally:
        d.stop()
        c.stop()
    kv = ["count=%d" % COUNT, "ke_count=%d" % KE_COUNT, "nagle=%d" % NAGLE]
    for (name, r) in (("ntpgated", rows[0]), ("chronyd", rows[1])):
        for j, w in enumerate(WINDOWS):
            kv += ["%s_w%d_plain_us=%.2f" % (name, w, r[3 * j]),
                   "%s_w%d_nts_us=%.2f" % (name, w, r[3 * j + 1]),
                   "%s_w%d_ratio=%.2f" % (name, w, r[3 * j + 2])]
    for j, w in enumerate(WINDOWS):
        kv.append("w%d_nts_ours_over_chronyd=%.2f" % (w, rows[0][3 * j + 1] / rows[1][3 * j + 1]))
    k = 3 * len(WINDOWS)
    for (name, r) in (("ntpgated", rows[0]), ("chronyd", rows[1])):
        kv += ["%s_ke_us=%.0f" % (name, r[k]), "%s_ke_rate=%.0f" % (name, r[k + 1])]
    kv.append("ke_cpu_ours_over_chronyd=%.2f" % (rows[0][k] / rows[1][k]))
    print(" ".join(kv))


if __name__ == "__main__":
    main()
