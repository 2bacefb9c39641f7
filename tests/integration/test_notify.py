"""Readiness for a service manager (the unit is Type=notify): with NOTIFY_SOCKET set, the
daemon sends READY=1 only once it answers time requests, RELOADING=1 (with MONOTONIC_USEC)
and READY=1 around a SIGHUP reload (also a refused one), and STOPPING=1 on SIGTERM; an
abstract socket name (@...) works as a path does; an unusable NOTIFY_SOCKET is logged and the
daemon still serves. The socket here stands in for systemd's, which is what sd_notify(3)
specifies: one datagram of KEY=VALUE lines."""

import os
import signal
import socket
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import ntpg  # noqa: E402


def listener(name):
    s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    s.bind("\0" + name[1:] if name.startswith("@") else name)
    s.settimeout(0.1)
    return s


def messages(sock, want, timeout):
    """Datagrams received until one contains `want` (a KEY=VALUE line) or timeout."""
    got = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            got.append(sock.recv(4096).decode("utf-8", "replace"))
        except socket.timeout:
            continue
        if want in got[-1].split("\n"):
            break
    return got


def start(d, name):
    os.environ["NOTIFY_SOCKET"] = name
    try:
        d.start(wait=False)
    finally:
        del os.environ["NOTIFY_SOCKET"]


def lifecycle(c, tmp, name, k):
    sock = listener(name if name.startswith("@") else os.path.join(tmp, name))
    addr = ntpg.server_addr(k)
    d = ntpg.Daemon(tmp, [addr], name="n%d" % k)
    start(d, name if name.startswith("@") else os.path.join(tmp, name))
    got = messages(sock, "READY=1", 15)
    ready = bool(got) and "READY=1" in got[-1].split("\n")
    c.check("%s: READY=1 arrives" % name, ready, repr(got))
    # Ready means serving: the very first request after READY=1 is answered.
    reply = ntpg.query(addr, 123, timeout=1.0) if ready else None
    c.check("%s: answers at once after READY=1" % name, reply is not None)
    c.check("%s: nothing before READY=1 claims readiness" % name,
            all("READY=1" not in m for m in got[:-1]), repr(got))

    d.send_signal(signal.SIGHUP)
    got = messages(sock, "READY=1", 10)
    lines = [m.split("\n") for m in got]
    reloading = [i for i, m in enumerate(lines) if "RELOADING=1" in m]
    c.check("%s: SIGHUP sends RELOADING=1 then READY=1" % name,
            bool(reloading) and "READY=1" in lines[-1] and reloading[0] < len(lines) - 1,
            repr(got))
    c.check("%s: RELOADING=1 carries MONOTONIC_USEC" % name,
            bool(reloading) and any(x.startswith("MONOTONIC_USEC=") and x[15:].isdigit()
                                    for x in lines[reloading[0]]), repr(got))

    d.write_config(text="no_such_directive\n")  # a refused reload still ends with READY=1
    d.send_signal(signal.SIGHUP)
    got = messages(sock, "READY=1", 10)
    c.check("%s: a refused reload also ends with READY=1" % name,
            bool(got) and "READY=1" in got[-1].split("\n"), repr(got))
    c.check("%s: still serving after the refused reload" % name,
            ntpg.query(addr, 123, timeout=1.0) is not None)

    d.send_signal(signal.SIGTERM)
    got = messages(sock, "STOPPING=1", 10)
    c.check("%s: SIGTERM sends STOPPING=1" % name,
            bool(got) and "STOPPING=1" in got[-1].split("\n"), repr(got))
    c.check("%s: exits 0" % name, d.stop()[0] == 0)
    sock.close()


def main(c, tmp):
    lifecycle(c, tmp, "notify.sock", 1)
    lifecycle(c, tmp, "@ntpgate-test-notify-%d-%d" % (os.getpid(), ntpg.SALT), 2)

    addr = ntpg.server_addr(3)
    d = ntpg.Daemon(tmp, [addr], name="bad")
    start(d, "relative/not-a-socket")
    c.check("unusable NOTIFY_SOCKET: the daemon still serves", d.wait_ready(15))
    c.check("unusable NOTIFY_SOCKET: logged",
            "readiness notification off" in d.all_output(), d.log_diag())
    c.check("unusable NOTIFY_SOCKET: exits 0", d.stop()[0] == 0)


if __name__ == "__main__":
    ntpg.run(main, "readiness notification (sd_notify)")
