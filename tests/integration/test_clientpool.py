"""`pool NAME` without NTS (docs/client.md): ntpgated resolves one name to several servers, in
a mount namespace whose /etc/hosts gives pool.test four addresses: two ntpgated servers, one
that refuses us (`restrict default noserve kod`: DENY) and one where nothing listens. One
association per address (never two for one address); the two servers are selected (`*` and
`+` in ntpq -p); the refusing member is replaced at its first DENY and the silent one after
ASC_UNREACH (10) unanswered polls, each logged with how long its address is struck; when the
name gives a fifth address, the next resolution (members are missing, so at most a minute
later) takes it, and neither struck address comes back with it: the refusing server hears
nothing more from us after its DENY."""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import ntpg  # noqa: E402

PROBE = ntpg.source_addr(31)
POLL = "iburst minpoll 1 maxpoll 1"


def A(k):
    return ntpg.server_addr(k)


def peers(d):
    """ntpq -p rows of d (split), keyed by remote address; and the raw output."""
    rc, out, err = ntpg.run_ntpq(d.listen[0], ["peers"])
    rows = {}
    for ln in out.splitlines():
        f = ln.split()
        if f and f[0].lstrip("*+-#x.o ").count(".") == 3:
            rows.setdefault(f[0].lstrip("*+-#x.o "), []).append(f)
    return rows, out


def main(c, tmp):
    live1, live2, deny, dead, late = A(1), A(2), A(3), A(4), A(5)
    servers = [ntpg.Daemon(tmp, [a], stratum=3, name="s%d" % k, probe_src=PROBE)
               for k, a in ((1, live1), (2, live2), (5, late))]
    refuser = ntpg.Daemon(tmp, [deny], stratum=3, name="deny", probe_src=PROBE, extra=[
        "restrict default noserve kod", "restrict %s" % PROBE])
    c.check("three servers and one that refuses start",
            all(s.start() for s in servers) and refuser.start())
    hosts = os.path.join(tmp, "hosts")
    ntpg.write_text(hosts, "".join("%s pool.test\n" % a for a in (deny, dead, live1, live2)))
    order, out = ntpg.resolve_in_hosts(hosts, "pool.test")
    c.check("in the namespace pool.test gives the four addresses",
            sorted(order) == sorted([deny, dead, live1, live2]), out)
    d = ntpg.HostsDaemon(hosts, tmp, [A(8)], stratum=None, name="client", probe_src=PROBE,
                         extra=["pool pool.test %s" % POLL])
    if not c.check("the client starts", d.start(), d.all_output()[-400:]):
        return

    c.section("one association per address; the servers are selected")

    def selected():
        rows, out = peers(d)
        tally = sorted(r[0][0][0] for a, r in rows.items() if a in (live1, live2))
        return (rows, out) if tally == ["*", "+"] else None
    got = ntpg.wait_until(selected, 30) or peers(d)
    c.check("ntpq -p: the two servers are the system peer and a candidate (`*`, `+`)",
            selected() is not None, got[1])
    rows, out = got
    c.check("no address has two associations", all(len(r) == 1 for r in rows.values()), out)

    c.section("the refusing and the silent member are replaced, their addresses struck")
    line = "pool member %s:123 replaced: it refused us (DENY/RSTR); the address is not taken " \
        "again for 1024 s" % deny
    c.check("log: %s" % line, ntpg.wait_until(lambda: line in d.log_text(), 15),
            d.log_text()[-600:])
    # the name gives a fifth address from now on: the next resolution takes it
    ntpg.write_text(hosts, "".join("%s pool.test\n" % a for a in (deny, dead, live1, live2,
                                                                   late)))
    line = "pool member %s:123 replaced: unreachable; the address is not taken again for " \
        "1024 s" % dead
    c.check("log: %s (after 10 polls)" % line, ntpg.wait_until(lambda: line in d.log_text(), 60),
            d.log_text()[-600:])
    rows, out = peers(d)
    c.check("ntpq -p lists neither replaced member", deny not in rows and dead not in rows, out)
    denied = (refuser.stats() or {}).get("kod_deny")
    c.check("the refusing server sent DENY", bool(denied), str(denied))

    c.section("the next resolution takes a new address, not the struck ones")
    got = ntpg.wait_until(lambda: (lambda r: r if late in r[0] else None)(peers(d)), 75)
    c.check("the fifth address joins within 75 s (the pool re-resolves every 60 s while "
            "members are missing)", got is not None, peers(d)[1])
    rows, out = got or peers(d)
    log = d.log_text()
    joined = log.find("pool member %s:123 (pool.test)" % late)
    c.check("it joined after both members were struck (a resolution that gave all five)",
            0 <= log.find(line) < joined, log[-800:])
    c.check("neither struck address came back with it", deny not in rows and dead not in rows,
            out)
    after = (refuser.stats() or {}).get("kod_deny")
    c.check("the refusing server got nothing from us since its DENY (kod_deny unchanged)",
            after == denied, "%s then %s" % (denied, after))
    rc, took = d.stop()
    c.check("the client exits cleanly", rc == 0, str(rc))
    for s in servers + [refuser]:
        s.stop()


if __name__ == "__main__":
    ntpg.run(main, "pool NAME: members, replacement, struck addresses")
