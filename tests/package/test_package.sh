#!/bin/sh
# The Debian package, end to end (make test-package, part of make check):
#   build dist/ntpgate_VERSION_ARCH.deb and a rebuilt newer version; lintian passes both;
#   the unit's exposure (systemd-analyze security) is at most 2.5 and `systemd-analyze
#   verify` finds nothing; in a throwaway Debian 12 root made by mmdebstrap: install (user,
#   conffile, enabled unit, man pages), `ntpgated -t` on the shipped configuration, the
#   installed binary serving from it (as the ntpgate user with only the unit's capabilities,
#   in a network namespace of its own, never touching the clock), upgrade keeping the edited
#   configuration, drift file and keys, removal (stops the unit) and purge (state gone).
# Tools it needs are installed by scripts/deps.sh; a missing one is a failure, never a skip.
set -u
top=$(cd "$(dirname "$0")/../.." && pwd)
cd "$top" || exit 2
work=$top/build-pkgtest
pass=0
fail=0
ok() { pass=$((pass + 1)); echo "PASS $*"; }
bad() { fail=$((fail + 1)); echo "FAIL $*"; }
check() { # check NAME COMMAND...: pass if the command succeeds
  name=$1
  shift
  if "$@" >"$work/last.log" 2>&1; then ok "$name"; else
    bad "$name"
    sed 's/^/    /' "$work/last.log" | tail -20
  fi
}
finish() {
  [ -n "${root:-}" ] && [ -d "$root" ] && rm -rf "$root"
  echo "$pass passed, $fail failed"
  [ "$fail" = 0 ]
  exit $?
}

rm -rf "$work"
mkdir -p "$work"
for tool in dpkg-buildpackage lintian mmdebstrap systemd-analyze mandoc setpriv unshare python3; do
  command -v "$tool" >/dev/null || { bad "tool $tool missing (scripts/deps.sh installs it)"; finish; }
done
arch=$(dpkg --print-architecture)

# 1. Build: the version of debian/changelog, and a newer one for the upgrade.
v1=$(dpkg-parsechangelog -l debian/changelog -S Version)
v2="$v1+upgradetest1"
deb1=$(scripts/build-deb.sh "$top/dist" | tail -n 1)
check "make deb builds dist/ntpgate_${v1}_${arch}.deb" test -f "$top/dist/ntpgate_${v1}_${arch}.deb"
deb2=$(NTPG_DEB_VERSION=$v2 DEB_BUILD_OPTIONS=nocheck scripts/build-deb.sh "$work" | tail -n 1)
[ -f "$deb1" ] && [ -f "$deb2" ] || { bad "package build"; finish; }

# 2. lintian, errors and warnings both fail.
check "lintian --fail-on error,warning $(basename "$deb1")" lintian --fail-on error,warning "$deb1"

# 3. The unit as packaged: exposure and verify (in the root below, where it is installed).
mkdir -p "$work/x"
dpkg-deb -x "$deb1" "$work/x"
unit=$work/x/lib/systemd/system/ntpgated.service
check "the package ships lib/systemd/system/ntpgated.service" test -f "$unit"
systemd-analyze security --offline=true "$unit" >"$work/security.txt" 2>&1
exposure=$(sed -n 's/.*Overall exposure level for ntpgated.service: \([0-9.]*\).*/\1/p' "$work/security.txt")
echo "    systemd-analyze security: exposure ${exposure:-?}"
check "unit exposure ${exposure:-?} <= 2.5" awk -v e="${exposure:-99}" 'BEGIN { exit !(e <= 2.5) }'

# The unit's system-call filter must allow what the daemon's own seccomp list allows.
check "SystemCallFilter= covers the daemon's seccomp allow-list" \
  python3 "$top/tests/package/unit_syscalls.py" "$unit" "$top/src/sandbox.c"

# 4. A throwaway Debian 12 root with systemd (for verify) and adduser.
root=$work/root
if ! mmdebstrap --variant=minbase --include=systemd,adduser,procps,logrotate bookworm "$root" \
  >"$work/mmdebstrap.log" 2>&1; then
  bad "mmdebstrap could not make a Debian 12 root (log: $work/mmdebstrap.log)"
  tail -5 "$work/mmdebstrap.log"
  finish
fi
cp "$deb1" "$deb2" "$root/tmp/"
in_root() { chroot "$root" "$@"; }

check "install $(basename "$deb1")" in_root dpkg -i "/tmp/$(basename "$deb1")"
check "system user ntpgate" in_root getent passwd ntpgate
check "/etc/ntpgate.conf is a conffile" \
  sh -c "chroot '$root' dpkg-query -W -f='\${Conffiles}' ntpgate | grep -q ' /etc/ntpgate.conf '"
check "unit enabled (multi-user.target.wants)" \
  test -L "$root/etc/systemd/system/multi-user.target.wants/ntpgated.service"
check "man pages installed" test -f "$root/usr/share/man/man8/ntpgated.8.gz" -a \
  -f "$root/usr/share/man/man5/ntpgate.conf.5.gz"
check "systemd-analyze verify" sh -c \
  "systemd-analyze verify --root='$root' --man=no /lib/systemd/system/ntpgated.service 2>&1 | tee /dev/stderr | grep -q . && exit 1 || exit 0"
check "ntpgated -t accepts the shipped configuration" in_root /usr/sbin/ntpgated -t -c /etc/ntpgate.conf

# 5. The installed binary serves from the shipped configuration: as the unit runs it (the
#    ntpgate user, CAP_NET_BIND_SERVICE only here: -x and no CAP_SYS_TIME), in a network
#    namespace of its own (loopback only; the pool names do not resolve there, so it answers
#    unsynchronized), queried on 127.0.0.1 and ::1.
check "installed daemon serves from the shipped configuration on loopback" \
  unshare -n sh -c "
    ip link set lo up
    setpriv --bounding-set -sys_time -- chroot '$root' setpriv --reuid=ntpgate --regid=ntpgate \
      --init-groups --inh-caps=+net_bind_service --ambient-caps=+net_bind_service \
      /usr/sbin/ntpgated -n -x -c /etc/ntpgate.conf >'$work/serve.log' 2>&1 &
    pid=\$!
    python3 '$top/tests/package/query.py' 127.0.0.1 ::1
    rc=\$?
    kill \$pid; wait \$pid
    exit \$rc"
grep 'octets' "$work/last.log" | sed 's/^/    /'
grep -q 'running' "$work/serve.log" || sed 's/^/    /' "$work/serve.log" | tail -10

# 6. Upgrade: an edited configuration, the drift file and a keys file survive.
echo "# edited by the operator" >>"$root/etc/ntpgate.conf"
echo "12.345" >"$root/var/lib/ntpgate/ntpgate.drift"
printf '1 SHA256 %s\n' 0123456789abcdef0123456789abcdef01234567 >"$root/etc/ntpgate.keys"
check "upgrade to $v2" in_root dpkg -i "/tmp/$(basename "$deb2")"
check "upgraded version is $v2" sh -c "chroot '$root' dpkg-query -W -f='\${Version}' ntpgate | grep -qx '$v2'"
check "upgrade keeps the edited configuration" grep -q "edited by the operator" "$root/etc/ntpgate.conf"
check "upgrade keeps the drift file" grep -qx "12.345" "$root/var/lib/ntpgate/ntpgate.drift"
check "upgrade keeps the keys file" test -s "$root/etc/ntpgate.keys"

# 7. Removal stops the unit (the maintainer script asks systemd, which is not running in the
#    root) and keeps configuration and state; purge removes both.
check "prerm stops ntpgated.service on removal" \
  grep -q "deb-systemd-invoke stop.*ntpgated.service" "$root/var/lib/dpkg/info/ntpgate.prerm"
check "remove" in_root dpkg -r ntpgate
check "remove deletes the binary" test ! -e "$root/usr/sbin/ntpgated"
check "remove keeps the configuration and state" test -f "$root/etc/ntpgate.conf" -a \
  -f "$root/var/lib/ntpgate/ntpgate.drift"
check "purge" in_root dpkg -P ntpgate
check "purge removes the configuration" test ! -e "$root/etc/ntpgate.conf"
check "purge removes the state directory" test ! -e "$root/var/lib/ntpgate"
check "purge removes the unit's enablement" \
  test ! -e "$root/etc/systemd/system/multi-user.target.wants/ntpgated.service"
finish
