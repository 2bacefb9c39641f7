#!/usr/bin/python3
"""Soak under attack (bounded, loopback only). One ntpgated with a public-server config
(`restrict default limited kod`, noquery) and a bounded monitor table is hit at once by:
  - legitimate clients: LEGIT addresses in 127.90.0.0/16, each polling every LEGIT_POLL s;
  - a spoofed-source flood: ntpload from FLOOD_SOURCES addresses in 127.100.0.0/10 at
    FLOOD_RATE requests/s (every address new to the monitor table until it wraps);
  - malformed datagrams (random bytes and cut-short headers) and mode 6/7 probes;
  - SIGHUP every RELOAD s.
It reports the legitimate clients' answered fraction, the peak RSS against the monitor
table's configured size, any reply longer than its request, and whether the daemon's
counters add up. `tests/integration/test_soak.py` runs a short version; run the long one with
    bench/soak.py -b build-bench -d 300
(builds are not made here: build ntpgated and ntpload first, e.g. `make` or bench/run.sh)."""

import argparse
import json
import os
import random
import re
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import time

NTP_EPOCH = 2208988800
SETPRIV = ["setpriv", "--bounding-set", "-sys_time", "--"]
STATS_RE = re.compile(r"stats:\s+([A-Za-z0-9_.-]+)\s+(-?\d+)\s*$")


def request(rng):
    t = time.time() + NTP_EPOCH
    return struct.pack("!BBbb", (4 << 3) | 3, 0, 6, -20) + bytes(36) + struct.pack(
        "!Q", (int(t) << 32) | rng.getrandbits(32))


def parse_stats(text):
    out = {}
    for line in text.splitlines():
        m = STATS_RE.search(line)
        if m:
            out[m.group(1)] = int(m.group(2))
    return out


def rss_kib(pid):
    try:
        with open("/proc/%d/status" % pid) as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return None


class Legit:
    """Polite clients: each address asks once every `poll` s, from its own socket."""

    def __init__(self, server, n, poll, rng):
        self.server, self.poll, self.rng = server, poll, rng
        self.socks = []
        for i in range(n):
            s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            s.bind(("127.90.%d.%d" % (i // 250, 1 + i % 250), 0))
            s.setblocking(False)
            self.socks.append(s)
        self.next = [time.monotonic() + poll * rng.random() for _ in range(n)]
        self.pending = {}  # sock index -> (cookie, sent time)
        self.sent = self.answered = self.kod = self.late = 0
        self.longer = []

    def step(self, now):
        for i, s in enumerate(self.socks):
            while True:
                try:
                    data = s.recv(2048)
                except BlockingIOError:
                    break
                p = self.pending.pop(i, None)
                if p is None or len(data) < 48 or data[24:32] != p[0]:
                    continue
                if len(data) > 48:
                    self.longer.append(len(data))
                if data[1] == 0:
                    self.kod += 1
                else:
                    self.answered += 1
            if i in self.pending and now - self.pending[i][1] > 1.0:
                del self.pending[i]
                self.late += 1
            if now >= self.next[i]:
                self.next[i] = now + self.poll
                req = request(self.rng)
                try:
                    s.sendto(req, (self.server, 123))
                    self.sent += 1
                    self.pending[i] = (req[40:48], now)
                except OSError:
                    pass

    def close(self):
        for s in self.socks:
            s.close()


class Noise:
    """Malformed datagrams and mode 6/7 probes from random sources in 127.95.0.0/16."""

    def __init__(self, server, rng):
        self.server, self.rng = server, rng
        self.socks = []
        for i in range(64):
            s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            s.bind(("127.95.%d.%d" % (i // 250, 1 + i % 250), 0))
            s.setblocking(False)
            self.socks.append(s)
        self.sent = 0
        self.sizes = []  # (request, reply)
        self.recent = [[] for _ in self.socks]  # per socket: (sent time, datagram), unanswered

    def packet(self):
        r = self.rng.random()
        if r < 0.3:
            return bytes(self.rng.getrandbits(8) for _ in range(self.rng.randrange(0, 200)))
        if r < 0.5:
            return request(self.rng)[:self.rng.randrange(0, 48)]
        if r < 0.7:  # mode 6 readvar / readstat
            return struct.pack("!BBHHHHH", (2 << 3) | 6, self.rng.choice((1, 2, 10, 12)), 1,
                               0, 0, 0, 0)
        if r < 0.85:  # mode 7 monlist
            return struct.pack("!BBBB", (2 << 3) | 7, 0, 3, 42) + bytes(44)
        return struct.pack("!BBHHHHH", (2 << 3) | 6, 0x80 | 2, 1, 0, 0, 0, 0)  # a response

    def step(self, n):
        for _ in range(n):
            i = self.rng.randrange(len(self.socks))
            p = self.packet()
            try:
                self.socks[i].sendto(p, (self.server, 123))
                self.sent += 1
                self.recent[i].append((time.monotonic(), p))
            except OSError:
                pass
        now = time.monotonic()
        for i, s in enumerate(self.socks):
            self.recent[i] = [x for x in self.recent[i] if now - x[0] < 5.0]
            while True:
                try:
                    data = s.recv(4096)
                except BlockingIOError:
                    break
                self.sizes.append((self.answered(i, data), len(data)))

    def answered(self, i, reply):
        """The length of the request `reply` answers. A socket may have several requests
        outstanding (a reply read after the socket sent again), so the reply is matched by
        content: an NTP reply's origin is its request's transmit timestamp, a mode 6 response
        carries its request's opcode and sequence. Anything else is held against the longest
        request the socket sent in the last 5 s."""
        cands = self.recent[i]
        mode = reply[0] & 7 if reply else 0
        if 1 <= mode <= 5 and len(reply) >= 48:
            match = [x for x in cands if len(x[1]) >= 48 and x[1][40:48] == reply[24:32]]
        elif mode == 6 and len(reply) >= 4:
            match = [x for x in cands if len(x[1]) >= 4 and x[1][0] & 7 == 6 and
                     x[1][1] & 0x1f == reply[1] & 0x1f and x[1][2:4] == reply[2:4]]
        else:
            match = []
        if match:
            cands.remove(match[0])
            return len(match[0][1])
        return max((len(x[1]) for x in cands), default=0)

    def close(self):
        for s in self.socks:
            s.close()


def config_text(server, mru_entries):
    return "\n".join([
        "interface listen %s" % server,
        "server 127.127.1.0", "fudge 127.127.1.0 stratum 10",
        "restrict default kod limited nomodify nopeer noquery notrap",
        "restrict -6 default kod limited nomodify nopeer noquery notrap",
        "discard average 3 minimum 2 leak 4 kodlimit 1",
        "mru maxdepth %d mindepth 600 maxage 64" % mru_entries,
    ]) + "\n"


def soak(build, duration=20.0, server="127.74.0.1", legit=1000, legit_poll=8.0,
         flood_sources=1000000, flood_rate=20000, noise_rate=200, reload_every=3.0,
         mru_entries=65536, seed=1, tmp=None, log=print):
    """Run the soak; returns a dict of results (see the keys at the end)."""
    rng = random.Random(seed)
    tmp = tmp or tempfile.mkdtemp(prefix="ntpg-soak-")
    daemon = os.path.join(build, "ntpgated")
    ntpload = os.path.join(build, "ntpload")
    conf = os.path.join(tmp, "soak.conf")
    logf = os.path.join(tmp, "soak.log")
    with open(conf, "w") as f:
        f.write(config_text(server, mru_entries))
    d = subprocess.Popen(SETPRIV + [daemon, "-n", "-x", "-c", conf, "-l", logf],
                         stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    flood = None
    res = {"duration": duration}
    try:
        up = False
        for _ in range(200):
            if d.poll() is not None:
                break
            try:
                with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
                    s.bind(("127.90.255.1", 0))
                    s.settimeout(0.05)
                    s.sendto(request(rng), (server, 123))
                    s.recv(100)
                    up = True
                    break
            except OSError:
                time.sleep(0.05)
        if not up:
            raise RuntimeError("ntpgated did not answer within 10 s")
        rss0 = rss_kib(d.pid)
        flood = subprocess.Popen([ntpload, "-s", server, "-n", str(flood_sources), "-b",
                                  "127.100.0.1", "-r", str(flood_rate), "-d", str(duration),
                                  "-q"], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        lg = Legit(server, legit, legit_poll, rng)
        nz = Noise(server, rng)
        t0 = time.monotonic()
        next_reload = t0 + reload_every
        peak = rss0 or 0
        reloads = 0
        while time.monotonic() - t0 < duration and d.poll() is None:
            now = time.monotonic()
            lg.step(now)
            nz.step(max(1, int(noise_rate * 0.02)))
            if now >= next_reload:
                d.send_signal(signal.SIGHUP)
                reloads += 1
                next_reload = now + reload_every
            r = rss_kib(d.pid)
            peak = max(peak, r or 0)
            time.sleep(0.02)
        end = time.monotonic() + 1.5  # let the last answers arrive
        while time.monotonic() < end:
            lg.step(time.monotonic() - 1000)  # collect only, schedule nothing
            nz.step(0)
            time.sleep(0.05)
        fout, _ = flood.communicate(timeout=30)
        alive = d.poll() is None
        size0 = os.path.getsize(logf)
        if alive:
            d.send_signal(signal.SIGUSR1)
            time.sleep(1.0)
        with open(logf, errors="replace") as f:
            f.seek(size0)
            stats = parse_stats(f.read())
        lg.close()
        nz.close()
        ctl = stats.get("control_requests", 0)
        drops = sum(v for k, v in stats.items() if k.startswith("dropped_"))
        res.update({
            "alive": alive,
            "reloads": reloads,
            "legit_sent": lg.sent, "legit_answered": lg.answered, "legit_kod": lg.kod,
            "legit_fraction": lg.answered / lg.sent if lg.sent else 0.0,
            "noise_sent": nz.sent,
            "longer_than_request": [x for x in nz.sizes if x[1] > x[0]] + lg.longer,
            "rss_start_kib": rss0, "rss_peak_kib": peak,
            "mon_memory_bytes": stats.get("mon_memory_bytes"),
            "mon_entries": stats.get("mon_entries"),
            "mon_evictions": stats.get("mon_evictions"),
            "received": stats.get("received"), "replied": stats.get("replied"),
            "dropped": drops, "control_requests": ctl,
            # every datagram read: a reply the kernel took or failed to take, a drop by
            # reason, or a request for the control path
            "counters_consistent": stats.get("received") is not None and
            stats.get("received") == stats.get("replied", 0) + stats.get("send_errors", 0) +
            drops + ctl + stats.get("blocked_larger", 0),
            "blocked_larger": stats.get("blocked_larger"),
            "flood": fout.decode().strip(),
        })
        return res
    finally:
        if flood and flood.poll() is None:
            flood.kill()
            flood.wait()
        if d.poll() is None:
            d.terminate()
            try:
                d.wait(timeout=10)
            except subprocess.TimeoutExpired:
                d.kill()
                d.wait()


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("-b", "--build", default="build-bench")
    ap.add_argument("-d", "--duration", type=float, default=300)
    ap.add_argument("--legit", type=int, default=1000)
    ap.add_argument("--flood-rate", type=int, default=20000)
    ap.add_argument("--flood-sources", type=int, default=1000000)
    ap.add_argument("--mru", type=int, default=65536)
    a = ap.parse_args()
    r = soak(a.build, duration=a.duration, legit=a.legit, flood_rate=a.flood_rate,
             flood_sources=a.flood_sources, mru_entries=a.mru)
    print(json.dumps(r, indent=2))
    ok = r["alive"] and not r["longer_than_request"] and r["counters_consistent"]
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
