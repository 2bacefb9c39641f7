#!/bin/sh
# make deb: build dist/ntpgate_VERSION_ARCH.deb with debhelper (dpkg-buildpackage -b) from a
# clean copy of the tree, so the work tree gets no debian/ build litter.
#   scripts/build-deb.sh [OUTDIR]        default OUTDIR: dist/
#   NTPG_DEB_VERSION=V scripts/build-deb.sh   build as version V (a changelog entry is added
#                                             to the copy; the package test uses it for an upgrade)
set -eu
top=$(cd "$(dirname "$0")/.." && pwd)
out=${1:-$top/dist}
work=$top/build-deb
rm -rf "$work"
mkdir -p "$work/src" "$out"
out=$(cd "$out" && pwd)

# Tracked files and new ones git does not ignore (no build directories, no .peers).
if git -C "$top" rev-parse --git-dir >/dev/null 2>&1; then
  (cd "$top" && git ls-files -co --exclude-standard) | while IFS= read -r f; do
    [ -f "$top/$f" ] && printf '%s\n' "$f"
  done >"$work/files"
  tar -C "$top" -cf - -T "$work/files" | tar -C "$work/src" -xf -
else
  (cd "$top" && tar --exclude='./build*' --exclude=./.peers --exclude=./dist -cf - .) |
    (cd "$work/src" && tar -xf -)
fi

if [ -n "${NTPG_DEB_VERSION:-}" ]; then
  {
    printf 'ntpgate (%s) unstable; urgency=medium\n\n' "$NTPG_DEB_VERSION"
    printf '  * Rebuilt as %s.\n\n' "$NTPG_DEB_VERSION"
    printf ' -- ntpgate developers <ntpgate-devel@lists.ntpgate.invalid>  %s\n\n' "$(date -R)"
    cat "$work/src/debian/changelog"
  } >"$work/changelog.new"
  mv "$work/changelog.new" "$work/src/debian/changelog"
fi

cd "$work/src"
DEB_BUILD_OPTIONS="parallel=$(nproc) ${DEB_BUILD_OPTIONS:-}" \
  dpkg-buildpackage -b -us -uc >"$work/build.log" 2>&1 || {
  tail -40 "$work/build.log" >&2
  echo "build-deb: dpkg-buildpackage failed (full log: $work/build.log)" >&2
  exit 1
}
version=$(dpkg-parsechangelog -S Version)
arch=$(dpkg --print-architecture)
mv "$work/ntpgate_${version}_${arch}.deb" "$out/"
echo "$out/ntpgate_${version}_${arch}.deb"
