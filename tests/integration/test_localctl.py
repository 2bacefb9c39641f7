"""The local control path: `ntpgated -s PATH` serves a Unix datagram socket created mode 0600
(root's), whose requests have the control key's rights without a key; `ntpgated --control
PATH CMD` asks it (`rv [NAMES]`, `:config LINE`). Root can deny and free a network without a
restart; an unprivileged user cannot even send; runtime-forbidden directives are refused;
the socket file goes away at exit."""

import os
import stat
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import ntpg  # noqa: E402


def control(sock, cmd, user=None):
    argv = [ntpg.DAEMON, "--control", sock, cmd]
    if user:
        argv = ["setpriv", "--reuid=%s" % user, "--regid=nogroup", "--clear-groups"] + argv
    p = subprocess.run(argv, capture_output=True, text=True, timeout=15)
    return p.returncode, p.stdout + p.stderr


def main(c, tmp):
    addr = ntpg.server_addr(1)
    sock = os.path.join(tmp, "ctl.sock")
    d = ntpg.Daemon(tmp, [addr], port=123, stratum=7, name="local")
    if not c.check("daemon with -s answers", d.start(more=["-s", sock])):
        c.info(d.all_output()[-400:])
        return
    st = os.stat(sock)
    c.check("socket is root's, mode 0600", stat.S_ISSOCK(st.st_mode) and st.st_uid == 0 and
            stat.S_IMODE(st.st_mode) == 0o600, oct(st.st_mode))
    rc, out = control(sock, "rv stratum,version")
    c.check("rv over the socket", rc == 0 and "stratum=7" in out and "ntpgated" in out, out)
    net = "127.78.%d" % (244 + ntpg.SALT)  # outside every file's own range
    victim = net + ".5"
    c.check("a client of %s is served before" % victim,
            ntpg.query(addr, 123, src=victim, timeout=1.0) is not None)
    rc, out = control(sock, ":config restrict %s.0 mask 255.255.255.0 noserve" % net)
    c.check(":config restrict ... noserve without a key", rc == 0 and "Succeeded" in out, out)
    c.check("the client is now refused",
            ntpg.query(addr, 123, src=victim, timeout=1.0) is None)
    rc, out = control(sock, ":config unrestrict %s.0 mask 255.255.255.0" % net)
    c.check(":config unrestrict frees it", rc == 0 and "Succeeded" in out, out)
    c.check("the client is served again, same process",
            ntpg.query(addr, 123, src=victim, timeout=1.0) is not None and d.alive())
    rc, out = control(sock, ":config logfile %s" % os.path.join(tmp, "x.log"))
    c.check("a directive that names a file is refused", rc == 1 and "cannot be changed" in out
            and not os.path.exists(os.path.join(tmp, "x.log")), out)
    os.chmod(tmp, 0o755)  # so that only the socket's own mode stands in the way
    rc, out = control(sock, "rv stratum", user="nobody")
    c.check("an unprivileged user cannot use the socket", rc == 2 and "Permission denied" in out,
            out)
    rc, _ = d.stop()
    c.check("SIGTERM exits 0", rc == 0, rc)
    c.check("the socket file is removed at exit", not os.path.exists(sock))


if __name__ == "__main__":
    ntpg.run(main, "local control socket")
