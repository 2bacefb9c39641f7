"""Does a systemd unit's SystemCallFilter= allow every system call that the daemon's own
seccomp allow-list (the quoted names in src/sandbox.c's lists) allows? The groups are
expanded with `systemd-analyze syscall-filter`. Prints the missing calls; exit 1 if any."""
import re
import subprocess
import sys


def expand(name, seen=None):
    if not name.startswith("@"):
        return {name}
    out = subprocess.run(["systemd-analyze", "syscall-filter", name],
                         capture_output=True, text=True, check=True).stdout
    calls = set()
    for line in out.splitlines()[1:]:
        line = line.strip()
        if line and not line.startswith("#"):
            calls |= expand(line)
    return calls


def unit_filter(path):
    allowed, denied = set(), set()
    for line in open(path):
        m = re.match(r"\s*SystemCallFilter=(~?)(.*)", line)
        if not m:
            continue
        names = set()
        for word in m.group(2).split():
            names |= expand(word)
        (denied if m.group(1) else allowed).update(names)
    return allowed - denied


def seccomp_list(path):
    text = open(path).read()
    return set(re.findall(r'^\s+"([a-z0-9_]+)",', text, re.M))


unit = unit_filter(sys.argv[1])
ours = seccomp_list(sys.argv[2])
missing = sorted(ours - unit)
print("seccomp list: %d calls, unit allows %d; missing from the unit: %s"
      % (len(ours), len(unit), " ".join(missing) or "none"))
sys.exit(1 if missing or not ours else 0)
