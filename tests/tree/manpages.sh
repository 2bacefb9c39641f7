#!/bin/sh
# The manual pages stay true and clean:
#   1. mandoc(1) finds nothing to warn about in man/ntpgated.8 and man/ntpgate.conf.5;
#   2. ntpgate.conf(5) documents as directives (its `.It Ic NAME` items) exactly the directives
#      of docs/configuration.md's syntax blocks, and every directive the parser's table in
#      src/config.c accepts appears in it (as `Ic NAME`), and no other;
#   3. ntpgated(8) documents every option: each long option that `ntpgated --help` prints
#      (the binary named by NTPG_DAEMON; skipped with a SKIP line when it is unset), and each
#      short and long option of the getopt_long tables in src/main.c.
# Usage: sh tests/tree/manpages.sh [SRCDIR]
set -u
top=${1:-$(dirname "$0")/../..}
cd "$top" || exit 2
conf5=man/ntpgate.conf.5
daemon8=man/ntpgated.8
pass=0
failed=0
tmp=${TMPDIR:-/tmp}/manpages.$$
mkdir -m 700 "$tmp" || exit 2
trap 'rm -rf "$tmp"' EXIT
trap 'exit 2' INT TERM

ok() {
  echo "PASS $*"
  pass=$((pass + 1))
}
bad() {
  echo "FAIL $*"
  failed=$((failed + 1))
}

# --- 1. mandoc -T lint -W warning: any output is a failure ----------------------------------
if ! command -v mandoc >/dev/null 2>&1; then
  bad "mandoc is not installed: install the package mandoc (apt-get install mandoc)"
else
  for page in "$daemon8" "$conf5"; do
    if [ ! -f "$page" ]; then
      bad "$page does not exist"
      continue
    fi
    out=$(mandoc -T lint -W warning "$page" 2>&1)
    rc=$?
    if [ "$rc" -eq 0 ] && [ -z "$out" ]; then
      ok "mandoc -T lint -W warning $page: clean"
    else
      bad "mandoc -T lint -W warning $page (exit $rc):"
      printf '%s\n' "$out"
    fi
  done
fi

# Print the lines of sorted file $1 missing from sorted file $2, indented; true if none.
missing() {
  comm -23 "$1" "$2" >"$tmp/missing"
  sed 's/^/    /' "$tmp/missing"
  [ ! -s "$tmp/missing" ]
}

# --- 2. directives: ntpgate.conf(5), docs/configuration.md, src/config.c ---------------------
# The man page: every `.It Ic NAME ...` or `.It Xo Ic NAME` item is a directive (options and
# flags inside a directive are `.It Cm` items).
sed -n 's/^\.It \(Xo \)\{0,1\}Ic \([a-z][a-z0-9]*\).*/\2/p' "$conf5" 2>/dev/null |
  sort -u >"$tmp/man"
# docs/configuration.md: inside ```-fenced blocks, a line that starts in column 1 with a lower
# case word starts a directive (continuation lines are indented; error examples start with
# a path, comments with #).
awk '/^```/ { inblock = !inblock; next }
     inblock && /^[a-z][a-z0-9]*([[:blank:]]|$)/ { print $1 }' docs/configuration.md |
  sort -u >"$tmp/docs"
# src/config.c: the names in the parser's `directives[]` table.
awk '/^} directives\[\] = \{/ { on = 1; next } on && /^};/ { on = 0 } on' src/config.c |
  sed -n 's/^[[:blank:]]*{"\([a-z0-9]*\)",.*/\1/p' | sort -u >"$tmp/parser"

if [ ! -s "$tmp/man" ] || [ ! -s "$tmp/docs" ] || [ ! -s "$tmp/parser" ]; then
  bad "could not read the directive lists ($(wc -l <"$tmp/man") in $conf5," \
    "$(wc -l <"$tmp/docs") in docs/configuration.md, $(wc -l <"$tmp/parser") in src/config.c)"
else
  echo "directives in docs/configuration.md but not in $conf5 (.It Ic):" >"$tmp/report"
  missing "$tmp/docs" "$tmp/man" >>"$tmp/report" && a=0 || a=1
  echo "directives in $conf5 (.It Ic) but not in docs/configuration.md:" >>"$tmp/report"
  missing "$tmp/man" "$tmp/docs" >>"$tmp/report" && b=0 || b=1
  if [ "$a" -eq 0 ] && [ "$b" -eq 0 ]; then
    ok "$conf5 and docs/configuration.md document the same $(wc -l <"$tmp/man") directives"
  else
    bad "$conf5 and docs/configuration.md document different directives"
    cat "$tmp/report"
  fi

  # Every directive the parser accepts is named in the page (`Ic NAME`, in a list item or in
  # the text, as the compatibility-only ones are), and every directive item is accepted.
  : >"$tmp/undocumented"
  while read -r name; do
    grep -Eq "(^\.|[[:blank:]])Ic $name([[:blank:]]|$)" "$conf5" ||
      echo "$name" >>"$tmp/undocumented"
  done <"$tmp/parser"
  if [ -s "$tmp/undocumented" ]; then
    bad "directives accepted by src/config.c but not in $conf5:"
    sed 's/^/    /' "$tmp/undocumented"
  else
    ok "every one of the $(wc -l <"$tmp/parser") directives of src/config.c is in $conf5"
  fi
  if missing "$tmp/man" "$tmp/parser" >"$tmp/report"; then
    ok "every directive item of $conf5 is accepted by src/config.c"
  else
    bad "directive items of $conf5 that src/config.c does not accept:"
    cat "$tmp/report"
  fi
fi

# --- 3. options: ntpgated --help, src/main.c, ntpgated(8) ------------------------------------
# In the page an option is written `Fl -NAME` or `Fl \-NAME` (long) and `.It Fl X` (short).
sed 's/\\-/-/g' "$daemon8" >"$tmp/page8" 2>/dev/null
# Long options named in file $2 (one per line), each looked for in the page; $1 says whence.
check_long() {
  : >"$tmp/absent"
  while read -r opt; do
    grep -Eq "(^\.|[[:blank:]])Fl -$opt([[:blank:]]|$)" "$tmp/page8" ||
      echo "--$opt" >>"$tmp/absent"
  done <"$2"
  if [ ! -s "$2" ]; then
    bad "no long options found in $1"
  elif [ -s "$tmp/absent" ]; then
    bad "long options of $1 missing from $daemon8:"
    sed 's/^/    /' "$tmp/absent"
  else
    ok "$daemon8 documents the $(wc -l <"$2") long options of $1"
  fi
}

if [ -z "${NTPG_DAEMON:-}" ]; then
  echo "SKIP ntpgated --help against $daemon8: NTPG_DAEMON is not set"
elif ! "$NTPG_DAEMON" --help >"$tmp/help" 2>&1; then
  bad "$NTPG_DAEMON --help failed:"
  sed 's/^/    /' "$tmp/help"
else
  tr -cs 'a-z0-9-' '\n' <"$tmp/help" | sed -n 's/^--\([a-z][a-z0-9-]*\)$/\1/p' |
    sort -u >"$tmp/helplong"
  check_long "ntpgated --help" "$tmp/helplong"
fi

# The getopt_long tables of src/main.c: {"NAME", ...} rows and the short option string.
sed -n 's/.*{"\([a-z][a-z0-9-]*\)", *[a-z]*_argument.*/\1/p' src/main.c |
  sort -u >"$tmp/srclong"
check_long "src/main.c" "$tmp/srclong"
short=$(sed -n 's/.*getopt_long([^"]*"\([^"]*\)".*/\1/p' src/main.c | tr -d ':')
if [ -z "$short" ]; then
  bad "no getopt_long option string found in src/main.c"
else
  absent=""
  rest=$short
  while [ -n "$rest" ]; do
    rem=${rest#?}
    c=${rest%"$rem"}
    rest=$rem
    grep -Eq "^\.It Fl $c([[:blank:]]|$)" "$tmp/page8" || absent="$absent -$c"
  done
  if [ -n "$absent" ]; then
    bad "short options of src/main.c without an item in $daemon8:$absent"
  else
    ok "$daemon8 has an item for each short option of src/main.c (-$short)"
  fi
fi

echo "$pass passed, $failed failed"
[ "$failed" -eq 0 ]
