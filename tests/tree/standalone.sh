#!/bin/sh
# The project stands alone: no source, test or document cites a file outside the repository
# (a working copy's private notes, another checkout, an absolute path of one machine). Cite
# RFC sections, ntpd's manuals or the project's own docs/ instead.
set -u
top=${1:-$(dirname "$0")/../..}
cd "$top" || exit 2
pattern='(\.\./shared/|shared/spec|/work/|(PROTOCOL|ACCESS-CONTROL|SECURITY)\.md)'
hits=$(grep -rnE "$pattern" src tests fuzz bench docs scripts etc README.md CMakeLists.txt Makefile \
  2>/dev/null | grep -v '^tests/tree/standalone\.sh:')
if [ -n "$hits" ]; then
  echo "files outside the repository are cited:"
  echo "$hits"
  echo "0 passed, 1 failed"
  exit 1
fi
echo "PASS no citation of files outside the repository"
echo "1 passed, 0 failed"
