"""Configurations from the field (issue 13 item 7): `ntpgated -t` over every ntp.conf in
tests/fixtures/field/ (the default files of Debian, Ubuntu, FreeBSD, RHEL/CentOS for ntpd and
NTPsec, the NTP pool's server recommendations, NTPsec's examples; sources in the README there).

Each one must load (exit 0, "configuration OK") with nothing but warnings, every message
"FILE:LINE: warning: reason" (or "FILE: warning: ..." for a whole file). Then the refusals:
the same files with a directive added that ntpgate cannot honour (broadcastclient, NTS on a
peer line, a smear interval longer than a day) must fail with FILE:LINE and the reason, and a control
character is an error at its line. No daemon is started and no address is used: -t only reads
the files (includes and keys files named in them may be missing; that is a warning)."""

import os
import re
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import ntpg  # noqa: E402

FIELD = os.path.join(ntpg.SRC, "tests", "fixtures", "field")


def check_config(path):
    """rc, the message lines of `ntpgated -t -c path`, stdout."""
    rc, out, err = ntpg.run_tool([ntpg.DAEMON, "-t", "-c", path], timeout=30)
    return rc, [ln for ln in err.splitlines() if ln.strip()], out


# (fixture, line number, text the warning at that line must contain)
EXPECTED_WARNINGS = [
    ("pool-server.conf", 22, "rlimit: accepted for compatibility; it has no effect here"),
    ("ubuntu-ntpsec.conf", 21, "pool: option 'preempt' has no effect here"),
    ("rhel6-client.conf", 27, "includefile: cannot open '/etc/ntp/crypto/pw'"),
    ("debian-ntp.conf", 8, "statistics: 'clockstats' is accepted; ntpgated writes no "
                           "clockstats records"),
    ("debian-ntp.conf", 11, "filegen: 'clockstats' is accepted; ntpgated writes no "
                            "clockstats records"),
    ("ntpsec-log.conf", 47, "logconfig: accepted for compatibility"),
]

# (line added at the end, the reason the error must give)
REFUSALS = [
    ("broadcastclient", "broadcastclient: not supported: broadcast mode is not supported"),
    ("leapsmearinterval 90000", "leapsmearinterval: 90000 is out of range 0..86400"),
    ("peer time.cloudflare.com nts", "peer: NTS is for 'server' and 'pool' lines"),
    ("server time.cloudflare.com noval", "server: 'ca' and 'noval' apply to NTS sources only"),
    ("crypto", "crypto: not supported: Autokey is not supported"),
    ("\vrestrict default", "control character 0x0b at column 1"),
]


def main(c, tmp):
    if ntpg.STANDIN:
        c.skip("all", "these checks are for ntpgated only")
        return
    fixtures = sorted(f for f in os.listdir(FIELD) if f.endswith(".conf"))
    c.check("tests/fixtures/field/ holds the field configurations (at least 8)",
            len(fixtures) >= 8, ", ".join(fixtures))
    readme = ntpg.read_text(os.path.join(FIELD, "README.md"))
    c.check("... and its README names the source of each",
            all(f in readme for f in fixtures),
            [f for f in fixtures if f not in readme])
    where = re.compile(r"^(?P<file>[^:]+)(:(?P<line>\d+))?: (?P<warn>warning: )?(?P<text>.*)$")
    seen = {}
    c.section("ntpgated -t over each field configuration")
    for f in fixtures:
        path = os.path.join(FIELD, f)
        rc, msgs, out = check_config(path)
        errors = [m for m in msgs if not (where.match(m) and where.match(m).group("warn"))]
        c.check("%s: loads (exit 0, 'configuration OK'), warnings only" % f,
                rc == 0 and "configuration OK" in out and not errors,
                "rc %s; %s" % (rc, " | ".join(errors[:3] or msgs[:3])))
        for m in msgs:
            mm = where.match(m)
            if mm and mm.group("line"):
                seen[(f, int(mm.group("line")))] = mm.group("text")
    for f, line, text in EXPECTED_WARNINGS:
        got = seen.get((f, line), "")
        c.check("%s:%d: warning says %r" % (f, line, text), text in got, got or "no message")

    # NTPsec's own commented example of an NTS source, uncommented, loads as it is
    text = ntpg.read_text(os.path.join(FIELD, "debian-ntpsec.conf"))
    path = ntpg.write_text(os.path.join(tmp, "nts.conf"),
                           text.replace("# server time.cloudflare.com nts",
                                        "server time.cloudflare.com nts"))
    rc, msgs, out = check_config(path)
    c.check("debian-ntpsec.conf with its `server time.cloudflare.com nts` line uncommented "
            "loads", "\nserver time.cloudflare.com nts" in ntpg.read_text(path) and rc == 0 and
            "configuration OK" in out, "rc %s; %s" % (rc, " | ".join(msgs[:3])))

    c.section("directives ntpgate cannot honour are refused with FILE:LINE and a reason")
    base = ntpg.read_text(os.path.join(FIELD, "debian-ntp.conf"))
    nlines = base.count("\n")
    for extra, reason in REFUSALS:
        path = ntpg.write_text(os.path.join(tmp, "refuse.conf"), base + extra + "\n")
        rc, msgs, out = check_config(path)
        want = "%s:%d: %s" % (path, nlines + 1, reason)
        c.check("debian-ntp.conf + %r: exit 2, %r" % (extra, want[len(tmp) + 1:]),
                rc == 2 and any(m.startswith(want) for m in msgs) and
                "configuration OK" not in out,
                "rc %s; %s" % (rc, " | ".join(m for m in msgs if "warning" not in m)[:300]))


if __name__ == "__main__":
    ntpg.run(main)
