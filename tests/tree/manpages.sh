#!/bin/sh
# The manual pages stay true and clean:
#   1. mandoc(1) finds nothing to warn about in man/ntpgated.8 and man/ntpgate.conf.5;
#   2. ntpgate.conf(5) documents every directive of the parser's table (`directives[]` in
#      src/confdirs.c) under the outcome the table gives it, and docs/configuration.md's
#      table of every directive says the same:
#      - the directives that work are the `.It Ic NAME` items before `.Sh COMPATIBILITY`:
#        exactly the table's WORKS rows and docs' "works" rows, and every directive of docs'
#        syntax blocks is one of them;
#      - those accepted with a warning are the `.It Ic NAME` items of `.Ss Accepted with a
#        warning` under `.Sh COMPATIBILITY`: exactly the NOEFFECT rows and docs' "no effect";
#      - those refused are the `.It Ic NAME` items of `.Ss Refused`: exactly the REFUSED rows
#        and docs' "refused".
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

# --- 2. directives: ntpgate.conf(5), docs/configuration.md, src/confdirs.c -----------------
# The man page: every `.It Ic NAME ...` or `.It Xo Ic NAME` item names a directive (options
# and flags inside a directive are `.It Cm` items). Items before `.Sh COMPATIBILITY` are the
# working directives; inside it, each `.Ss` heading starts a list of its own.
items() { # $1: "works", or the .Ss heading inside COMPATIBILITY
  awk -v want="$1" '
    /^\.Sh / { sec = $2; sub_ = ""; next }
    /^\.Ss / { sub_ = substr($0, 5); next }
    /^\.It (Xo )?Ic [a-z]/ {
      name = ($2 == "Xo") ? $4 : $3
      if (want == "works" ? sec != "COMPATIBILITY" : (sec == "COMPATIBILITY" && sub_ == want))
        print name
    }' "$conf5" 2>/dev/null | sort -u
}
items works >"$tmp/man"
items "Accepted with a warning" >"$tmp/man_noeffect"
items "Refused" >"$tmp/man_refused"
# docs/configuration.md: inside ```-fenced blocks, a line that starts in column 1 with a lower
# case word starts a directive (continuation lines are indented; error examples start with
# a path, comments with #).
awk '/^```/ { inblock = !inblock; next }
     inblock && /^[a-z][a-z0-9]*([[:blank:]]|$)/ { print $1 }' docs/configuration.md |
  sort -u >"$tmp/docs"
# docs/configuration.md's table of every directive: "| `NAME` | IN | OUTCOME | WHY |".
awk -F'|' '/^## Every directive/ { on = 1; next } on && /^## / { on = 0 }
     on && $2 ~ /^ `[a-z0-9]+` $/ {
       name = $2; gsub(/[ `]/, "", name); out = $4; gsub(/^ +| +$/, "", out)
       print out "|" name }' docs/configuration.md >"$tmp/docstable"
sed -n 's/^works|//p' "$tmp/docstable" | sort -u >"$tmp/docs_WORKS"
sed -n 's/^no effect (warning)|//p' "$tmp/docstable" | sort -u >"$tmp/docs_NOEFFECT"
sed -n 's/^refused (error)|//p' "$tmp/docstable" | sort -u >"$tmp/docs_REFUSED"
# src/confdirs.c: the rows of the parser's `directives[]` table, WORKS("name", ...),
# NOEFFECT("name", ...) or REFUSED("name", ...); a row may be split over lines, so the table
# is joined into one line first.
awk '/^static const CNF_Directive directives\[\] = \{/ { on = 1; next }
     on && /^};/ { on = 0 } on' src/confdirs.c | tr '\n' ' ' |
  grep -Eo '(WORKS|NOEFFECT|REFUSED)\([[:blank:]]*"[a-z0-9]+"' |
  tr -d '("[:blank:]' >"$tmp/table"
for kind in WORKS NOEFFECT REFUSED; do
  sed -n "s/^$kind//p" "$tmp/table" | sort -u >"$tmp/parser_$kind"
done
sed 's/^[A-Z]*//' "$tmp/table" | sort -u >"$tmp/parser"

# Compare sorted lists $1 and $2, named $3 and $4; PASS or FAIL with the differences.
same() {
  missing "$1" "$2" >"$tmp/only1" && x=0 || x=1
  missing "$2" "$1" >"$tmp/only2" && y=0 || y=1
  if [ "$x" -eq 0 ] && [ "$y" -eq 0 ]; then
    ok "$3 and $4: the same $(wc -l <"$1") directives"
  else
    bad "$3 and $4 differ:"
    [ "$x" -eq 0 ] || { echo "  only in $3:" && cat "$tmp/only1"; }
    [ "$y" -eq 0 ] || { echo "  only in $4:" && cat "$tmp/only2"; }
  fi
}

unread=""
for f in man man_noeffect man_refused docs docs_WORKS docs_NOEFFECT docs_REFUSED \
  parser_WORKS parser_NOEFFECT parser_REFUSED; do
  [ -s "$tmp/$f" ] || unread="$unread $f"
done
if [ -n "$unread" ]; then
  bad "could not read these directive lists (see the comments of this script):$unread"
else
  page="$conf5 (.It Ic before COMPATIBILITY)"
  same "$tmp/parser_WORKS" "$tmp/man" "src/confdirs.c (WORKS rows)" "$page"
  same "$tmp/docs_WORKS" "$tmp/man" "docs/configuration.md (works)" "$page"
  if missing "$tmp/docs" "$tmp/man" >"$tmp/report"; then
    ok "each of the $(wc -l <"$tmp/docs") directives of docs/configuration.md's syntax" \
      "blocks is an item of $conf5"
  else
    bad "directives of docs/configuration.md's syntax blocks that are no item of $page:"
    cat "$tmp/report"
  fi
  page="$conf5 (COMPATIBILITY, Accepted with a warning)"
  same "$tmp/parser_NOEFFECT" "$tmp/man_noeffect" "src/confdirs.c (NOEFFECT rows)" "$page"
  same "$tmp/docs_NOEFFECT" "$tmp/man_noeffect" "docs/configuration.md (no effect)" "$page"
  page="$conf5 (COMPATIBILITY, Refused)"
  same "$tmp/parser_REFUSED" "$tmp/man_refused" "src/confdirs.c (REFUSED rows)" "$page"
  same "$tmp/docs_REFUSED" "$tmp/man_refused" "docs/configuration.md (refused)" "$page"
  # No directive under two outcomes, and no item the table does not know (a misspelling).
  cat "$tmp/man" "$tmp/man_noeffect" "$tmp/man_refused" | sort >"$tmp/man_all"
  if [ -n "$(uniq -d "$tmp/man_all")" ]; then
    bad "directives listed under more than one outcome in $conf5:"
    uniq -d "$tmp/man_all" | sed 's/^/    /'
  elif missing "$tmp/man_all" "$tmp/parser" >"$tmp/report"; then
    ok "every directive item of $conf5 is in the table of src/confdirs.c"
  else
    bad "directive items of $conf5 that src/confdirs.c does not know:"
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
