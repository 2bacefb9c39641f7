"""The local control path: `ntpgated -s PATH` serves a Unix SOCK_SEQPACKET socket created
mode 0600 (root's), whose requests have the control key's rights without a key; `ntpgated
--control PATH CMD` asks it (`rv [NAMES]`, `:config LINE`) over a connection. Root can deny
and free a network without a restart; an unprivileged user cannot even connect, and is
refused by the daemon (SO_PEERCRED) even when the socket's mode would let it; another local
process cannot inject a forged answer (the old client listened on a predictable,
world-writable path and believed any sender); the client does not believe a socket served by
another user; runtime-forbidden directives are refused; the socket file goes away at exit,
also after -u and -i (the privileged cleaner removes it)."""

import os
import pwd
import signal
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


# Run as nobody: forge a mode 6 READVAR answer "stratum=1, refid=EVIL" with the sequence
# number the client uses (its pid), and send it to every place the client could be reached
# at: the old client's reply socket /tmp/ntpgated-ctl.PID (world-writable). Waits at most
# 3 s for that path; prints what it managed.
ATTACKER = r"""
import os, socket, struct, sys, time
pid = int(sys.argv[1])
path = "/tmp/ntpgated-ctl.%d" % pid
data = b"stratum=1, refid=EVIL"
pad = data + b"\0" * (-len(data) % 4)
forged = struct.pack("!BBHHHHH", 0x16, 0x82, pid & 0xffff, 0, 0, 0, len(data)) + pad
deadline = time.monotonic() + 3
sent = 0
while time.monotonic() < deadline and not sent:
    if os.path.exists(path):
        s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        for _ in range(5):
            try:
                s.sendto(forged, path)
                sent += 1
            except OSError as e:
                print("send: %s" % e)
        break
    time.sleep(0.01)
print("forged answers sent: %d" % sent)
"""

# Run as nobody: a fake daemon at sys.argv[1] that answers one request with a forged
# "stratum=1, refid=EVIL" (as a connected SOCK_SEQPACKET server, the client's protocol).
FAKE = r"""
import socket, struct, sys
srv = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
srv.bind(sys.argv[1])
srv.listen(1)
print("ready", flush=True)
srv.settimeout(10)
try:
    conn, _ = srv.accept()
    req = conn.recv(1024)
    seq = struct.unpack("!H", req[2:4])[0]
    data = b"stratum=1, refid=EVIL"
    pad = data + b"\0" * (-len(data) % 4)
    conn.send(struct.pack("!BBHHHHH", 0x16, 0x82, seq, 0, 0, 0, len(data)) + pad)
    conn.close()
except OSError as e:
    print("fake: %s" % e)
"""


def as_nobody(argv):
    return ["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups"] + argv


def section_forged_reply(c, d, sock):
    """The proof of concept: while the daemon is slow (SIGSTOPped here), another local user
    sends the waiting client a forged answer."""
    c.section("a forged answer from another local process")
    os.kill(d.pid, signal.SIGSTOP)
    try:
        client = subprocess.Popen([ntpg.DAEMON, "--control", sock, "rv stratum,refid"],
                                  stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        attacker = subprocess.run(as_nobody([ntpg.PYTHON, "-c", ATTACKER, str(client.pid)]),
                                  capture_output=True, text=True, timeout=15)
    finally:
        os.kill(d.pid, signal.SIGCONT)
    out, _ = client.communicate(timeout=15)
    c.info("attacker: " + (attacker.stdout + attacker.stderr).strip())
    c.check("the client does not believe a forged answer", "EVIL" not in out, out)
    c.check("it gets the daemon's own answer", client.returncode == 0 and "stratum=7" in out,
            out)


def section_peercred(c, d, sock, tmp):
    c.section("SO_PEERCRED: who may ask, who may answer")
    os.chmod(sock, 0o666)  # an operator's mistake: the file mode no longer stands in the way
    rc, out = control(sock, "rv stratum", user="nobody")
    os.chmod(sock, 0o600)
    c.check("with the socket mode 0666, an unprivileged user is still not answered",
            rc != 0 and "stratum=" not in out, "rc %d: %s" % (rc, out.strip()))
    c.check("the daemon says whom it refused", ntpg.wait_until(
        lambda: "local control: refused uid 65534" in d.log_text(), 3.0),
        why=d.log_text()[-300:])
    fakedir = os.path.join(tmp, "nobodys")
    os.mkdir(fakedir)
    os.chown(fakedir, pwd.getpwnam("nobody").pw_uid, -1)
    fake = os.path.join(fakedir, "fake.sock")
    f = subprocess.Popen(as_nobody([ntpg.PYTHON, "-c", FAKE, fake]), stdout=subprocess.PIPE,
                         stderr=subprocess.STDOUT, text=True)
    ready = f.stdout.readline().strip() == "ready"
    rc, out = control(fake, "rv stratum,refid")
    try:
        f.kill()
        f.wait(timeout=5)
    except OSError:
        pass
    c.check("root's client does not believe a socket served by another user",
            ready and rc == 2 and "EVIL" not in out, "rc %d: %s" % (rc, out.strip()))


def section_confined(c, tmp, addr):
    """With -u and -i the daemon answers root's client as nobody, and the socket file (in a
    root-owned directory, outside the jail) is removed at exit by the cleaner."""
    c.section("-s with -u nobody -i DIR")
    os.chmod(tmp, 0o755)
    jail = os.path.join(tmp, "jail")
    os.makedirs(jail, exist_ok=True)
    sock = os.path.join(tmp, "confined.sock")
    d = ntpg.Daemon(tmp, [addr], port=123, stratum=7, name="confined")
    if not c.check("daemon with -s -u nobody -i DIR serves",
                   d.start(more=["-s", sock, "-u", "nobody", "-i", jail])):
        c.info(d.all_output()[-400:])
        return
    rc, out = control(sock, "rv stratum")
    c.check("rv answered by the daemon running as nobody", rc == 0 and "stratum=7" in out, out)
    rc, _ = d.stop()
    err = d.all_output()  # sanitizer build: LeakSanitizer cannot read /proc in the chroot
    lsan_chroot = (ntpg.SANITIZE and rc == 1 and "Can't open /proc" in err
                   and "ERROR: AddressSanitizer" not in err and "runtime error" not in err)
    c.check("SIGTERM exits 0", rc == 0 or lsan_chroot, rc)
    c.check("the socket file is removed at exit (by the cleaner)", not os.path.exists(sock))


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
    section_forged_reply(c, d, sock)
    section_peercred(c, d, sock, tmp)
    c.check("the daemon still serves", d.alive() and ntpg.query(addr, 123, timeout=1.0))
    rc, _ = d.stop()
    c.check("SIGTERM exits 0", rc == 0, rc)
    c.check("the socket file is removed at exit", not os.path.exists(sock))
    section_confined(c, tmp, addr)


if __name__ == "__main__":
    ntpg.run(main, "local control socket")
