#!/usr/bin/env bash
# Installs what ntpgate's build and tests need on Debian 12, and nothing the machine already has.
# Peers that conflict as system packages (chrony, ntpsec's ntpd/ntpq) are unpacked side by side
# into .peers/ (git-ignored) and run from there; they are never installed as services.
# It says what it is about to install before it runs apt-get. With NTPG_NO_DEPS=1 in the
# environment (`make check DEPS=no` sets it) it installs and downloads nothing: it only lists
# what is missing, and the build or the tests then fail where they need it.
# Usage: scripts/deps.sh [build|test]   (default: test = everything)
set -eu
cd "$(dirname "$0")/.."
what=${1:-test}

build_pkgs="cmake make gcc clang pkg-config libssl-dev libcap-dev libseccomp-dev libclang-rt-14-dev util-linux"
test_pkgs="python3 ntpsec-ntpdig python3-ntp python3-ntplib python3-cryptography tshark iproute2 openssl
           libcap2 libedit2 libgnutls30 libnettle8 libseccomp2 libbsd0 libssl3 valgrind
           debhelper dpkg-dev lintian mandoc mmdebstrap systemd gnuplot-nox ntpsec-ntpviz prometheus"
pkgs=$build_pkgs
[ "$what" = test ] && pkgs="$build_pkgs $test_pkgs"

missing=""
for p in $pkgs; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing="$missing $p"
done

no_deps=${NTPG_NO_DEPS:-0}
if [ "$no_deps" = 1 ]; then
  [ -z "$missing" ] || echo "deps: NTPG_NO_DEPS=1, not installing these missing packages:$missing"
  if [ "$what" = test ] && { [ ! -x .peers/root/usr/sbin/chronyd ] || [ ! -x .peers/root/usr/sbin/ntpd ]; }; then
    echo "deps: NTPG_NO_DEPS=1, not unpacking the peers (chrony, ntpsec) into .peers/"
  fi
  exit 0
fi

SUDO=""
[ "$(id -u)" = 0 ] || SUDO="sudo"
if [ -n "$missing" ]; then
  echo "deps: about to install with apt-get (skip with NTPG_NO_DEPS=1 or make ... DEPS=no):$missing"
  export DEBIAN_FRONTEND=noninteractive
  echo "wireshark-common wireshark-common/install-setuid boolean false" | $SUDO debconf-set-selections
  $SUDO apt-get update -qq
  # shellcheck disable=SC2086
  $SUDO apt-get install -y -qq --no-install-recommends $missing >/dev/null
fi

[ "$what" = test ] || exit 0

# Side-by-side peers: chrony (chronyd) and ntpsec (ntpd, ntpq), unpacked, never installed.
peers=.peers
if [ ! -x "$peers/root/usr/sbin/chronyd" ] || [ ! -x "$peers/root/usr/sbin/ntpd" ]; then
  echo "deps: about to download chrony and ntpsec with apt-get download and unpack them into $peers/"
  mkdir -p "$peers/debs" "$peers/root"
  (cd "$peers/debs" && apt-get download chrony ntpsec >/dev/null 2>&1) || {
    $SUDO apt-get update -qq
    (cd "$peers/debs" && apt-get download chrony ntpsec >/dev/null)
  }
  for d in "$peers"/debs/*.deb; do dpkg-deb -x "$d" "$peers/root"; done
fi
echo "deps: ok"
