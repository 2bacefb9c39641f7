"""The daemon's command-line and signal contract: -t on good and bad configs (every error as
FILE:LINE: reason, with the right line numbers), --version, --help, refusing to start on a bad
config (exit 2), the pidfile written and removed, SIGHUP reload (a good config takes effect, a
bad one is logged with file:line and the old one stays), SIGUSR1 counters, SIGTERM and SIGINT
exit 0 promptly with the counters logged at exit."""

import os
import re
import signal
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import ntpg  # noqa: E402

PROMPT = 3.0  # seconds a SIGTERM/SIGINT exit may take, sanitizer build included
ERR_RE = re.compile(r"^(?P<file>.+?):(?P<line>\d+): (?P<reason>\S.*)$")


def bad_config(addr):
    """A config with four bad lines among good ones; returns (text, {line: what is wrong})."""
    lines = [
        "# test_cli: bad lines are 3, 6, 8 and 9",          # 1
        "interface listen %s" % addr,                         # 2
        "no_such_directive 1 2 3",                            # 3 unknown directive
        "server %s" % ntpg.LOCAL_CLOCK,                       # 4
        "",                                                   # 5
        "fudge %s stratum 99" % ntpg.LOCAL_CLOCK,             # 6 stratum out of range
        "# a comment",                                        # 7
        "port 99999",                                         # 8 port out of range
        "server",                                             # 9 missing address
        "",                                                   # 10
    ]
    return "\n".join(lines) + "\n", {3: "unknown directive", 6: "stratum 99",
                                     8: "port 99999", 9: "server without address"}


def project_version():
    text = ntpg.read_text(os.path.join(ntpg.SRC, "CMakeLists.txt"))
    m = re.search(r"project\(\s*ntpgate\s+VERSION\s+([0-9.]+)", text)
    return m.group(1) if m else None


def error_lines(text, path):
    """{line number: reason} for every `FILE:LINE: reason` line naming path; plus the lines
    that look like FILE:LINE errors for some other file name."""
    found, other = {}, []
    for line in text.splitlines():
        m = ERR_RE.match(line.strip())
        if not m:
            continue
        if m.group("file") in (path, os.path.basename(path), os.path.realpath(path)):
            found[int(m.group("line"))] = m.group("reason")
        else:
            other.append(line.strip())
    return found, other


def check_errors_reported(c, label, text, path, expected):
    found, other = error_lines(text, path)
    for line, what in sorted(expected.items()):
        c.check("%s: error reported as %s:%d (%s)" % (label, os.path.basename(path), line, what),
                line in found, found.get(line, ""),
                why="not found in: %r" % text[-600:])
    extra = {k: v for k, v in found.items() if k not in expected}
    c.check("%s: no errors blamed on good lines" % label, not extra and not other,
            why="extra: %s %s" % (extra, other))


def section_check_mode(c, tmp, addr):
    c.section("-t, --version, --help, bad config at start")
    good = ntpg.Daemon(tmp, [addr], port=123, stratum=7, name="good")
    rc, out, err = ntpg.run_tool([ntpg.DAEMON, "-t", "-c", good.conf], 30)
    c.check("-t on a good config exits 0", rc == 0, "rc %s" % rc,
            why="stdout %r stderr %r" % (out[-300:], err[-300:]))

    text, expected = bad_config(addr)
    bad = ntpg.write_text(os.path.join(tmp, "bad.conf"), text)
    rc, out, err = ntpg.run_tool([ntpg.DAEMON, "-t", "-c", bad], 30)
    c.check("-t on a config with bad lines exits 2", rc == 2, "rc %s" % rc)
    c.info("-t stderr: " + " | ".join(err.strip().splitlines()[:8]))
    check_errors_reported(c, "-t", err, bad, expected)

    rc, out, err = ntpg.run_tool([ntpg.DAEMON, "--version"], 30)
    version = project_version()
    c.check("--version exits 0 and prints %s" % version, rc == 0 and version
            and version in out + err, "rc %s output %r" % (rc, (out + err).strip()[:80]))
    rc, out, err = ntpg.run_tool([ntpg.DAEMON, "--help"], 30)
    c.check("--help exits 0 and prints usage", rc == 0 and "-c" in out + err and "-t" in out +
            err, "rc %s, %d lines" % (rc, len((out + err).splitlines())))

    d = ntpg.Daemon(tmp, [addr], port=123, stratum=7, name="refuse")
    d.write_config(text=text)
    d.start(wait=False)
    rc = d.wait_exit(20)
    c.check("daemon refuses to start on a bad config (exit 2)", rc == 2, "rc %s" % rc)
    if rc is None:
        d.stop(signal.SIGKILL, 5)
    c.check("refused start names the bad lines (stderr or log)",
            "%s:3:" % d.conf in d.stderr_text() + d.log_text()
            or "refuse.conf:3:" in d.stderr_text() + d.log_text(),
            why="stderr %r log %r" % (d.stderr_text()[-300:], d.log_text()[-300:]))
    c.check("nothing answers after a refused start", ntpg.query(addr, 123, timeout=0.3) is None)


def section_pidfile_and_signals(c, tmp, addr, src):
    c.section("pidfile, SIGUSR1 counters, SIGTERM")
    d = ntpg.Daemon(tmp, [addr], port=123, stratum=7, name="pid", pidfile=True)
    if not c.check("daemon with -p answers", d.start(),
                   why="rc %s stderr %r" % (d.rc, d.stderr_text()[-300:])):
        return
    pid_text = ntpg.read_text(d.pidfile).strip()
    c.check("pidfile holds the daemon's pid", pid_text == str(d.pid),
            "pidfile %r, pid %d" % (pid_text, d.pid))

    if d.is_ntpgated:
        s0 = d.stats()
        n_good, n_bad = 5, 3
        answered = sum(1 for _ in range(n_good) if ntpg.query(addr, 123, src=src, timeout=2.0))
        for vn, mode in [(4, 7), (4, 4), (0, 3)][:n_bad]:  # mode 7, a response, version 0
            with ntpg.udp_socket(ntpg.family_of(addr), src) as s:
                s.sendto(ntpg.build_packet(vn=vn, mode=mode), (addr, 123))
        ntpg.query(addr, 123, src=src, timeout=2.0)  # barrier: the bad ones are handled
        s1 = d.stats()
        if c.check("SIGUSR1 logs `stats:` counters", s0 is not None and s1 is not None,
                   why=d.log_diag()):
            names = sorted(s1)
            c.info("counters: " + ", ".join(names))
            c.check("counters include received, replied and dropped_*",
                    "received" in s1 and "replied" in s1
                    and any(k.startswith("dropped_") for k in s1))
            delta = ntpg.stats_delta(s0, s1)
            c.check("%d good queries answered" % n_good, answered == n_good, answered)
            c.check("received grew by %d" % (n_good + n_bad + 1),
                    delta.get("received") == n_good + n_bad + 1, delta.get("received"))
            c.check("replied grew by %d" % (n_good + 1), delta.get("replied") == n_good + 1,
                    delta.get("replied"))
            c.check("dropped_* grew by %d" % n_bad, ntpg.dropped_total(delta) == n_bad,
                    {k: v for k, v in delta.items() if k.startswith("dropped") and v})
    else:
        c.skip("SIGUSR1 counters", "the %s stand-in has no stats: lines" % d.kind)

    size = len(d.log_text())
    rc, took = d.stop(signal.SIGTERM)
    c.check("SIGTERM exits 0 within %.0f s" % PROMPT, rc == 0 and took < PROMPT,
            "rc %s after %.2f s" % (rc, took))
    c.check("pidfile removed at exit", not os.path.exists(d.pidfile))
    if d.is_ntpgated:
        tail = ntpg.parse_stats(d.log_text()[size:])
        c.check("counters logged at exit", "received" in tail and "replied" in tail,
                why=d.log_diag(size))
    rep = d.sanitizer_report()
    c.check("no sanitizer report", not rep, rep)

    d = ntpg.Daemon(tmp, [addr], port=123, stratum=7, name="int")
    if c.check("second daemon answers", d.start(), why="rc %s" % d.rc):
        rc, took = d.stop(signal.SIGINT)
        c.check("SIGINT exits 0 within %.0f s" % PROMPT, rc == 0 and took < PROMPT,
                "rc %s after %.2f s" % (rc, took))


def stratum_seen(addr, src):
    r = ntpg.query(addr, 123, src=src, timeout=1.0)
    return r["reply"]["stratum"] if r else None


def section_reload(c, tmp, addr, src):
    c.section("SIGHUP reload")
    d = ntpg.Daemon(tmp, [addr], port=123, stratum=7, name="hup")
    if not d.is_ntpgated:
        c.skip("SIGHUP reload", "the %s stand-in exits on SIGHUP" % d.kind)
        return
    if not c.check("daemon with stratum 7 answers", d.start(), why="rc %s" % d.rc):
        return
    r = ntpg.run_ntpdig(addr)
    c.check("ntpdig sees stratum 7", r.get("stratum") == 7, r.get("stratum", r.get("error")))

    d.write_config(stratum=9)
    d.send_signal(signal.SIGHUP)
    got = ntpg.wait_until(lambda: stratum_seen(addr, src) == 9, 10, 0.05)
    c.check("after SIGHUP with stratum 9, raw queries see 9", got, stratum_seen(addr, src))
    r = ntpg.run_ntpdig(addr)
    c.check("ntpdig sees stratum 9 after reload", r.get("stratum") == 9,
            r.get("stratum", r.get("error")))

    good = d.config_text(stratum=11).splitlines()
    bad_line = len(good) + 2
    text = "\n".join(good + ["# the next line is bad", "no_such_directive here"]) + "\n"
    d.write_config(text=text)
    size = len(d.log_text())
    d.send_signal(signal.SIGHUP)
    marks = ("%s:%d:" % (d.conf, bad_line), "%s:%d:" % (os.path.basename(d.conf), bad_line))
    logged = ntpg.wait_until(lambda: any(m in d.log_text()[size:] for m in marks), 10, 0.05)
    c.check("bad reload logged with %s:%d" % (os.path.basename(d.conf), bad_line), logged,
            why=d.log_diag(size))
    c.check("daemon still running after a bad reload", d.alive(), why="rc %s" % d.rc)
    c.check("after a bad reload raw queries still see stratum 9 (not 11)",
            stratum_seen(addr, src) == 9, stratum_seen(addr, src))
    r = ntpg.run_ntpdig(addr)
    c.check("ntpdig still sees stratum 9 after a bad reload", r.get("stratum") == 9,
            r.get("stratum", r.get("error")))

    rc, took = d.stop()
    c.check("SIGTERM after reloads exits 0", rc == 0, "rc %s after %.2f s" % (rc, took))
    rep = d.sanitizer_report()
    c.check("no sanitizer report", not rep, rep)


def section_usr1_vs_config(c, tmp, addr):
    """SIGUSR1 reads the monitor table's statistics while :config resizes the table (mru
    maxdepth back and forth): the read must not meet a resize (issue 13 item E). A race
    test: 400 resizes under a stream of SIGUSR1; a use-after-free shows as a crash or (in
    the sanitizer build) a report."""
    import threading
    import time
    import test_control as tc
    c.section("SIGUSR1 during :config resizing the monitor table (400 resizes)")
    keyfile = tc.write_keys(tmp)
    d = ntpg.Daemon(tmp, [addr], name="usr1", extra=[
        "keys %s" % keyfile, "trustedkey 1", "controlkey 1", "threads 2",
        "mru maxdepth 4000"])
    if not d.start():
        c.check("daemon with the control key starts", False, d.stderr_text()[-300:])
        return
    box = tc.Box(c, d, None)
    net = "127.78.%d" % (232 + ntpg.SALT)  # outside every file's 127.78.<test> range
    socks = [box.sock("%s.%d" % (net, 100 + k)) for k in range(100)]
    stop = []

    def usr1():
        for _ in range(800):  # bounded: at most 800 signals, one every 5 ms
            if stop or not d.send_signal(signal.SIGUSR1):
                return
            time.sleep(0.005)

    th = threading.Thread(target=usr1)
    th.start()
    ok = 0
    try:
        for i in range(400):  # at most 150/s from 100 sources: within the mode 6 limits
            t0 = time.monotonic()
            text = "mru maxdepth %d" % (8000 if i % 2 else 300)
            got = box.ask(socks[i % 100], tc.ctl(8, text, seq=100 + i, key=tc.KEY1), 3.0)
            ok += "Config Succeeded" in tc.reply_text(got)
            time.sleep(max(0.0, 1 / 150 - (time.monotonic() - t0)))
            if not d.alive():
                break
    finally:
        stop.append(True)
        th.join(10)
    for sk in socks:
        sk.close()
    st = d.stats()
    c.check("all 400 :config resizes applied while SIGUSR1 kept reading the table",
            ok == 400, "%d applied" % ok)
    c.check("the daemon is alive and its counters still read (mon_capacity %s)" % (
        st.get("mon_capacity") if st else None), d.alive() and st is not None and
        st.get("mon_capacity", 0) > 0, d.stderr_text()[-300:])
    rc, took = d.stop()
    c.check("SIGTERM exits 0", rc == 0, "rc %s" % rc)
    rep = d.sanitizer_report()
    tsan = [ln for ln in d.all_output().splitlines() if "WARNING: ThreadSanitizer" in ln]
    c.check("no sanitizer report (ThreadSanitizer included, for a -fsanitize=thread build)",
            not rep and not tsan, rep or tsan[:1])


def main(c, tmp):
    addr = ntpg.server_addr(1)
    src = ntpg.source_addr(1)
    if ntpg.STANDIN:
        c.skip("-t, --version, --help, refusing a bad config", "ntpgated options; stand-in %s"
               % ntpg.STANDIN)
    else:
        section_check_mode(c, tmp, addr)
    section_pidfile_and_signals(c, tmp, addr, src)
    section_reload(c, tmp, addr, src)
    if not ntpg.STANDIN:
        section_usr1_vs_config(c, tmp, addr)


if __name__ == "__main__":
    ntpg.run(main)
