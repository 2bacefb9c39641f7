"""Least privilege: the seccomp allow-list is on by default and a forbidden system call kills
the daemon (SIGSYS); under the filter the daemon still serves, reloads on SIGHUP and dumps
its counters; -u USER leaves no root uid and no capability (with -x); -i DIR chroots."""

import os
import pwd
import signal
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import ntpg  # noqa: E402

SANITIZE = os.environ.get("NTPG_SANITIZE", "OFF").upper() in ("ON", "1", "TRUE")


def status_fields(pid):
    out = {}
    for line in ntpg.read_text("/proc/%d/status" % pid).splitlines():
        k, _, v = line.partition(":")
        out[k] = v.strip()
    return out


def section_seccomp(c, tmp, addr, src):
    c.section("seccomp")
    d = ntpg.Daemon(tmp, [addr], port=123, stratum=7, name="sec")
    if not c.check("daemon starts and serves under the filter", d.start()):
        return
    log = d.log_text()
    if SANITIZE:
        c.check("sanitizer build says the filter is not available",
                "seccomp filter not available" in log, log[-300:])
    else:
        c.check("filter installed by default", "seccomp filter installed" in log, log[-300:])
        c.check("Seccomp mode 2 in /proc/PID/status",
                status_fields(d.pid).get("Seccomp") == "2", status_fields(d.pid).get("Seccomp"))
    d.write_config(stratum=9)
    d.send_signal(signal.SIGHUP)
    ok = ntpg.wait_until(lambda: (ntpg.query(addr, 123, src=src, timeout=0.3) or {})
                         .get("reply", {}).get("stratum") == 9, 5.0)
    c.check("SIGHUP reload works under the filter (stratum 7 -> 9)", ok)
    d.send_signal(signal.SIGUSR1)
    c.check("SIGUSR1 counters under the filter",
            ntpg.wait_until(lambda: "stats: served" in d.log_text(), 5.0))
    rc, _ = d.stop()
    c.check("SIGTERM exits 0 under the filter", rc == 0, rc)
    if SANITIZE:
        c.skip("forbidden system call kills the daemon", "no filter in sanitizer builds")
        return
    k = ntpg.Daemon(tmp, [addr], port=123, stratum=7, name="selftest")
    k.start(wait=False, more=["--seccomp-selftest"])
    rc = k.wait_exit(10)
    c.check("a forbidden system call kills the daemon with SIGSYS", rc == -signal.SIGSYS,
            "exit status %r; log %r" % (rc, k.log_text()[-300:]))
    c.check("it did not survive the call", "still alive" not in k.log_text())


def section_user(c, tmp, addr, src):
    c.section("-u USER")
    try:
        nobody = pwd.getpwnam("nobody")
    except KeyError:
        c.skip("-u nobody", "no user nobody")
        return
    d = ntpg.Daemon(tmp, [addr], port=123, stratum=7, name="user")
    os.chmod(tmp, 0o755)  # the log is opened before the switch; nothing needs writing after
    if not c.check("daemon with -u nobody serves", d.start(more=["-u", "nobody"])):
        c.info(d.all_output()[-500:])
        return
    st = status_fields(d.pid)
    uids = st.get("Uid", "").split()
    c.check("every uid is nobody's", uids and all(int(u) == nobody.pw_uid for u in uids), uids)
    gids = st.get("Gid", "").split()
    c.check("every gid is nobody's", gids and all(int(g) == nobody.pw_gid for g in gids), gids)
    c.check("no supplementary groups", st.get("Groups", "") == "", st.get("Groups"))
    c.check("no effective or permitted capability with -x",
            int(st.get("CapEff", "1"), 16) == 0 and int(st.get("CapPrm", "1"), 16) == 0,
            "CapEff %s CapPrm %s" % (st.get("CapEff"), st.get("CapPrm")))
    r = ntpg.query(addr, 123, src=src, timeout=1.0)
    c.check("still answers after dropping root", r is not None)
    d.stop()


def section_chroot(c, tmp, addr, src):
    c.section("-i DIR")
    root = os.path.join(tmp, "jail")
    os.mkdir(root)
    d = ntpg.Daemon(tmp, [addr], port=123, stratum=7, name="jail")
    if not c.check("daemon with -i DIR serves", d.start(more=["-i", root])):
        c.info(d.all_output()[-500:])
        return
    link = os.readlink("/proc/%d/root" % d.pid)
    c.check("its root directory is the jail", os.path.realpath(link) == os.path.realpath(root),
            link)
    d.stop()


def main(c, tmp):
    addr = ntpg.server_addr(1)
    src = ntpg.source_addr(1)
    section_seccomp(c, tmp, addr, src)
    section_user(c, tmp, addr, src)
    section_chroot(c, tmp, addr, src)


if __name__ == "__main__":
    ntpg.run(main, "least privilege: seccomp, -u, -i")
