"""Leap seconds with the real daemon (-x, synchronized to its local clock): a `leapfile` list
with a leap at the coming UTC midnight makes replies announce it (LI 1, seen raw and by
ntpdig), ntpq's rv shows tai, leapsec and expire as ntpd does, the log says the leap is only
announced because the clock is not adjusted; a SIGHUP with a list without that leap clears
LI; a damaged list (SHA-1 mismatch) is refused with FILE:LINE and the old list stays; an
expired list is a warning that -t shows too. Across-the-leap behaviour (the kernel flag, the
second repeated, the time right after it) runs on the simulated clock: test_runtime, test_clock."""

import hashlib
import os
import re
import signal
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import ntpg  # noqa: E402
import test_control as tc  # noqa: E402

NTP_UNIX = 2208988800
DAY = 86400


def leap_list(leaps, expires, sign=True, tamper=False):
    """A leap-seconds.list: 1 Jan 1972 (10 s) plus one entry per POSIX time in leaps."""
    lines = ["#$\t%d" % (NTP_UNIX + 1700000000), "#@\t%d" % (NTP_UNIX + expires),
             "%d\t10\t# 1 Jan 1972" % (NTP_UNIX + 63072000)]
    lines += ["%d\t%d" % (NTP_UNIX + t, 11 + i) for i, t in enumerate(leaps)]
    digits = "".join(re.sub(r"\D", "", l.split("#")[0] if not l.startswith("#") else l[2:])
                     for l in lines)
    h = hashlib.sha1(digits.encode()).hexdigest()
    if tamper:  # the update time changed after signing: only the SHA-1 can tell
        lines[0] = "#$\t%d" % (NTP_UNIX + 1700000001)
    if sign:
        lines.append("#h\t" + " ".join(h[i:i + 8] for i in range(0, 40, 8)))
    return "\n".join(["#", "# test list"] + lines) + "\n"


def li_of(d):
    r = ntpg.query(d.query_addr(), 123, timeout=1.0)
    return None if r is None else r["reply"]["li"]


def main(c, tmp):
    now = int(time.time())
    midnight = (now // DAY + 1) * DAY
    path = os.path.join(tmp, "leap-seconds.list")
    ntpg.write_text(path, leap_list([midnight], midnight + 200 * DAY))
    addr = ntpg.server_addr(1)
    d = ntpg.Daemon(tmp, [addr], stratum=5, name="leap",
                    extra=["leapfile %s" % path, "restrict 127.0.0.0 mask 255.0.0.0"])
    c.check("starts with a leapfile", d.start(), d.log_diag())
    c.check("LI 1 (second inserted) announced: the leap is at the coming midnight",
            li_of(d) == 1)
    rc, out, err = ntpg.run_tool([ntpg.NTPDIG, "-j", "-t", "2", addr], 15)
    j = ntpg.parse_ntpdig_json(out)
    leap = j.get("leap") if j else None
    c.check("ntpdig sees the leap indicator (leap: add-leap)", leap == "add-leap",
            "%s %s" % (out.strip()[-300:], err[-200:]))
    rc, out, err, text = tc.run_ntpq(addr, ["rv 0 tai,leapsec,expire,leap"])
    want_leap = time.strftime("%Y%m%d%H%M", time.gmtime(midnight))
    want_exp = time.strftime("%Y%m%d%H%M", time.gmtime(midnight + 200 * DAY))
    c.check("ntpq rv: tai=10 (before the leap), leapsec=%s, expire=%s, leap=01" % (
        want_leap, want_exp),
        "tai=10" in out and "leapsec=%s" % want_leap in out and "expire=%s" % want_exp in out
        and re.search(r"leap=0?1\b", out) is not None, text + "\n" + out + err)
    c.check("the log says the leap is announced only (-x)",
            ntpg.wait_until(lambda: "announced only" in d.log_text(), 5), d.log_diag())

    # A damaged list on SIGHUP: refused with FILE:LINE, the old one stays in force.
    ntpg.write_text(path, leap_list([midnight], midnight + 200 * DAY, tamper=True))
    mark = len(d.log_text())
    d.send_signal(signal.SIGHUP)
    c.check("SIGHUP with a damaged list: refused at its #h line, old list kept (LI 1)",
            ntpg.wait_until(lambda: re.search(r"leap-seconds\.list:\d+: the #h SHA-1 does "
                                              r"not match", d.log_text()[mark:]), 5)
            and li_of(d) == 1, d.log_diag(mark))

    # A list without that leap: the announcement ends.
    ntpg.write_text(path, leap_list([], midnight + 200 * DAY))
    d.send_signal(signal.SIGHUP)
    c.check("SIGHUP with a list without the leap: LI 0",
            ntpg.wait_until(lambda: li_of(d) == 0, 5))
    rc, out, err, text = tc.run_ntpq(addr, ["rv 0 tai,leapsec"])
    c.check("ntpq rv after the reload: tai=10 and no leapsec (the list has no leap)",
            "tai=10" in out and "leapsec=" not in out, text + "\n" + out + err)
    rc, took = d.stop()
    c.check("exits 0", rc == 0)

    # An expired list: a warning (with -t too), still used.
    ntpg.write_text(path, leap_list([midnight], now - DAY))
    rc, out, err = ntpg.run_tool([ntpg.DAEMON, "-t", "-c", d.conf], 15)
    c.check("-t: an expired list is a warning naming the file, and the config is OK",
            rc == 0 and "%s: warning: leap-second list expired" % path in err, out + err)


if __name__ == "__main__":
    ntpg.run(main, "leap seconds")
