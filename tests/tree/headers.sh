#!/bin/sh
# Header coupling and API shape kept by issue 13 item 10: the system variables live in
# src/sysvars.h, so the discipline does not include the decision core (server.h) and the
# client does not include the control protocol (control.h); the shed table's "answer this
# dropped packet?" call says what it returns (SHD_Answer, not SHD_Drop); WRK_SumCounters adds
# the counters field by field under a compile-time size check, not as an array of words.
set -u
top=${1:-$(dirname "$0")/../..}
cd "$top" || exit 2
pass=0 fail=0
check() { # name, shell condition
  if eval "$2"; then echo "PASS $1"; pass=$((pass + 1)); else echo "FAIL $1"; fail=$((fail + 1)); fi
}
includes() { grep -q "^#include \"$2\"" "src/$1"; }
check "src/sysvars.h defines SYS_Vars" "grep -q '} SYS_Vars;' src/sysvars.h"
check "src/discipline.h does not include server.h" "! includes discipline.h server.h"
check "src/discipline.h includes sysvars.h" "includes discipline.h sysvars.h"
check "src/client.h includes neither control.h nor server.h" \
  "! includes client.h control.h && ! includes client.h server.h"
check "no SHD_Drop left (renamed SHD_Answer)" \
  "! grep -rq --exclude-dir=tree 'SHD_Drop' src tests fuzz bench docs 2>/dev/null && grep -q 'bool SHD_Answer(' src/shed.h"
check "WRK_SumCounters has a static size check and no cast to an array of words" \
  "grep -q '_Static_assert(sizeof(WRK_Counters)' src/worker.c && ! grep -q '(const uint64_t \*)(const void \*)&w->counters' src/worker.c"
echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]
