#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* Deeper nesting than this is an error (ntpd allows 5 levels; loops are caught by identity
 * before the depth limit is reached). */
#define MAX_INCLUDE_DEPTH 8
/* Longest interface name we accept (Linux IFNAMSIZ - 1). */
#define MAX_IFNAME 15

/* ------------------------------------------------------------------------------------ */
/* Allocation: every size is checked for overflow; failure is reported, never fatal.     */

static void *
alloc_array(void *old, size_t n, size_t size)
{
  if (size != 0 && n > SIZE_MAX / size)
    return NULL;
  size_t bytes = n * size;
  return realloc(old, bytes ? bytes : 1);
}

static char *
dup_str(const char *s)
{
  size_t n = strlen(s) + 1;
  char *d = alloc_array(NULL, n, 1);
  if (d)
    memcpy(d, s, n);
  return d;
}

/* Make room for `need` items in arr (capacity *cap). Returns the (maybe moved) array, or
 * NULL with arr untouched. */
static void *
grow(void *arr, size_t *cap, size_t need, size_t size)
{
  if (need <= *cap && arr)
    return arr;
  size_t ncap = *cap ? *cap : 8;
  while (ncap < need) {
    if (ncap > SIZE_MAX / 2)
      return NULL;
    ncap *= 2;
  }
  void *n = alloc_array(arr, ncap, size);
  if (n)
    *cap = ncap;
  return n;
}

/* The public struct plus the capacities of its arrays. */
typedef struct {
  CNF_Config pub; /* first member: a CNF_Config * converts back */
  size_t cap_assocs, cap_restricts, cap_interfaces, cap_keys;
} ConfigStore;

static ConfigStore *
store_of(CNF_Config *cfg)
{
  return (ConfigStore *)(void *)cfg;
}

/* ------------------------------------------------------------------------------------ */
/* Messages                                                                               */

/* Control characters from the input must not reach a log line. */
/* Store a message whose text was formatted by the caller (taken over and freed here). */
static void
list_add(CNF_MessageList *l, const char *file, int line, char *text)
{
  if (!text) {
    l->lost++;
    return;
  }
  MSG_Add(l, file, line, "%s", text);
  free(text);
}

/* ------------------------------------------------------------------------------------ */
/* Parser state                                                                           */

typedef struct {
  dev_t dev;
  ino_t ino;
} FileId;

typedef struct {
  CNF_Config *cfg;
  CNF_Errors *errs; /* may be NULL: errors are still counted */
  size_t n_errors;  /* errors found by this parse call */
  const char *file; /* name used in messages */
  int line;
  int depth; /* files/texts being read, 1 at top level */
  FileId open[MAX_INCLUDE_DEPTH + 1];
  int n_open;
  const char *top; /* top-level name, for end-of-parse checks */
  bool runtime;    /* runtime text: only CNF_DF_RUNTIME directives (CNF_ParseRuntimeText) */
} Parser;

/* One line's tokens and a cursor; `name` (the directive) prefixes every message. */
typedef struct {
  Parser *p;
  const char *name;
  char **tok;
  size_t n, i;
  bool failed; /* one error per line: the first one explains it */
} Args;

__attribute__((format(printf, 4, 0))) static void
vreport(Parser *p, bool error, const char *prefix, const char *fmt, va_list ap)
{
  va_list ap2;
  va_copy(ap2, ap);
  int body = vsnprintf(NULL, 0, fmt, ap2);
  va_end(ap2);
  size_t plen = prefix ? strlen(prefix) + 2 : 0;
  char *text = NULL;
  if (body >= 0)
    text = alloc_array(NULL, plen + (size_t)body + 1, 1);
  if (text) {
    if (prefix)
      snprintf(text, plen + 1, "%s: ", prefix);
    vsnprintf(text + plen, (size_t)body + 1, fmt, ap);
  }
  if (error)
    p->n_errors++;
  if (p->errs)
    list_add(error ? &p->errs->errors : &p->errs->warnings, p->file, p->line, text);
  else
    free(text);
}

__attribute__((format(printf, 2, 3))) static void
report(Parser *p, const char *fmt, ...)
{
  va_list ap;
  va_start(ap, fmt);
  vreport(p, true, NULL, fmt, ap);
  va_end(ap);
}

__attribute__((format(printf, 2, 3))) static void
report_warning(Parser *p, const char *fmt, ...)
{
  va_list ap;
  va_start(ap, fmt);
  vreport(p, false, NULL, fmt, ap);
  va_end(ap);
}

/* Report an error for the current line (only the first one) and return false. */
__attribute__((format(printf, 2, 3))) static bool
fail(Args *a, const char *fmt, ...)
{
  if (!a->failed) {
    va_list ap;
    va_start(ap, fmt);
    vreport(a->p, true, a->name, fmt, ap);
    va_end(ap);
  }
  a->failed = true;
  return false;
}

__attribute__((format(printf, 2, 3))) static void
warn(Args *a, const char *fmt, ...)
{
  va_list ap;
  va_start(ap, fmt);
  vreport(a->p, false, a->name, fmt, ap);
  va_end(ap);
}

static bool
fail_oom(Args *a)
{
  return fail(a, "out of memory");
}

/* ------------------------------------------------------------------------------------ */
/* Tokens and numbers                                                                     */

static char *
peek_tok(const Args *a)
{
  return a->i < a->n ? a->tok[a->i] : NULL;
}

static char *
next_tok(Args *a)
{
  return a->i < a->n ? a->tok[a->i++] : NULL;
}

static bool
at_end(const Args *a)
{
  return a->i >= a->n;
}

/* The next token, or an error naming what was expected. */
static char *
need_tok(Args *a, const char *what)
{
  char *t = next_tok(a);
  if (!t)
    fail(a, "missing %s", what);
  return t;
}

typedef enum { NUM_OK = 0, NUM_BAD, NUM_RANGE } NumStatus;

/* Decimal integer with an optional '-', nothing else. */
static NumStatus
parse_ll(const char *s, long long *out)
{
  const char *d = s[0] == '-' ? s + 1 : s;
  if (*d < '0' || *d > '9')
    return NUM_BAD;
  char *end;
  errno = 0;
  long long v = strtoll(s, &end, 10);
  if (*end != '\0')
    return NUM_BAD;
  if (errno == ERANGE)
    return NUM_RANGE;
  *out = v;
  return NUM_OK;
}

static NumStatus
parse_double(const char *s, double *out)
{
  const char *d = (s[0] == '-' || s[0] == '+') ? s + 1 : s;
  if ((*d < '0' || *d > '9') && *d != '.')
    return NUM_BAD;
  char *end;
  errno = 0;
  double v = strtod(s, &end);
  if (*end != '\0' || end == s)
    return NUM_BAD;
  if (errno == ERANGE || !isfinite(v))
    return NUM_RANGE;
  *out = v;
  return NUM_OK;
}

/* Next token as an integer in lo..hi; `what` names it in messages (NULL: the directive's
 * own argument). */
static bool
arg_int(Args *a, const char *what, long long lo, long long hi, long long *out)
{
  const char *w = what ? what : "", *sp = what ? " " : "";
  const char *t = next_tok(a);
  if (!t)
    return what ? fail(a, "missing value for %s", what) : fail(a, "missing argument");
  long long v = 0;
  NumStatus st = parse_ll(t, &v);
  if (st == NUM_BAD)
    return fail(a, "%s%s'%.64s' is not a number", w, sp, t);
  if (st == NUM_RANGE || v < lo || v > hi)
    return fail(a, "%s%s%.64s is out of range %lld..%lld", w, sp, t, lo, hi);
  *out = v;
  return true;
}

static bool
arg_double(Args *a, const char *what, double lo, double hi, double *out)
{
  const char *t = next_tok(a);
  if (!t)
    return fail(a, "missing value for %s", what);
  double v = 0;
  NumStatus st = parse_double(t, &v);
  if (st == NUM_BAD)
    return fail(a, "%s '%.64s' is not a number", what, t);
  if (st == NUM_RANGE || v < lo || v > hi)
    return fail(a, "%s %.64s is out of range %g..%g", what, t, lo, hi);
  *out = v;
  return true;
}

/* ------------------------------------------------------------------------------------ */
/* Addresses and names                                                                    */

/* Text that can only have been meant as a numeric address (so a failure to parse it is a
 * bad address, not a host name). */
static bool
looks_numeric(const char *s)
{
  if (strchr(s, ':'))
    return true;
  return strspn(s, "0123456789.") == strlen(s);
}

static bool
valid_hostname(const char *s)
{
  size_t len = strlen(s), label = 0;
  if (len == 0 || len > 253)
    return false;
  for (; *s; s++) {
    unsigned char c = (unsigned char)*s;
    if (c == '.') {
      if (label == 0)
        return false;
      label = 0;
      continue;
    }
    bool alnum = (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
    if (!alnum && c != '_' && !(c == '-' && label > 0))
      return false;
    if (++label > 63)
      return false;
  }
  return true;
}

static const char *
family_name(int family)
{
  return family == ADR_INET6 ? "IPv6" : "IPv4";
}

/* "-4" / "-6" -> family; anything else -> ADR_NONE. */
static int
family_flag(const char *t)
{
  if (t && strcmp(t, "-4") == 0)
    return ADR_INET4;
  if (t && strcmp(t, "-6") == 0)
    return ADR_INET6;
  return ADR_NONE;
}

/* Parse "ADDR" or "ADDR/PREFIX". prefix is -1 without a "/". Errors are reported. */
static bool
parse_addr_prefix(Args *a, const char *t, NetAddr *addr, int *prefix)
{
  if (!strchr(t, '/')) {
    *prefix = -1;
    if (ADR_Parse(t, addr))
      return true;
    return fail(a, "bad address '%.64s'", t);
  }
  if (ADR_ParsePrefix(t, addr, prefix))
    return true;
  char head[ADR_STRLEN];
  size_t hl = (size_t)(strchr(t, '/') - t);
  NetAddr tmp;
  if (hl < sizeof(head)) {
    memcpy(head, t, hl);
    head[hl] = '\0';
    if (ADR_Parse(head, &tmp))
      return fail(a, "bad prefix length in '%.64s'", t);
  }
  return fail(a, "bad address '%.64s'", t);
}

static bool
check_family(Args *a, const char *t, const NetAddr *addr, int family)
{
  if (family == ADR_NONE || addr->family == family)
    return true;
  return fail(a, "'%.64s' is not an %s address", t, family_name(family));
}

/* ------------------------------------------------------------------------------------ */
/* Option tables: `name [value]` pairs written into a struct                              */

static void *
field(void *base, size_t offset)
{
  return (char *)base + offset;
}

/* "P/Q" with P in lo..hi and Q in lo..hi2. */
static bool
opt_pair(Args *a, const CNF_Option *o, void *target)
{
  const char *t = next_tok(a);
  if (!t)
    return fail(a, "missing value for %s", o->name);
  const char *slash = strchr(t, '/');
  long long v1 = 0, v2 = 0;
  char first[24];
  size_t l1 = slash ? (size_t)(slash - t) : 0;
  if (!slash || l1 >= sizeof(first))
    return fail(a, "%s '%.64s' is not of the form N/M", o->name, t);
  memcpy(first, t, l1);
  first[l1] = '\0';
  if (parse_ll(first, &v1) != NUM_OK || parse_ll(slash + 1, &v2) != NUM_OK)
    return fail(a, "%s '%.64s' is not of the form N/M", o->name, t);
  if (v1 < o->lo || v1 > o->hi || v2 < o->lo || v2 > o->hi2)
    return fail(a, "%s %.64s is out of range %g..%g/%g..%g", o->name, t, o->lo, o->hi, o->lo,
                o->hi2);
  *(int *)field(target, o->offset) = (int)v1;
  *(int *)field(target, o->offset2) = (int)v2;
  return true;
}

static bool
opt_value(Args *a, const CNF_Option *o, void *target)
{
  long long v = 0;
  double d = 0;
  switch (o->kind) {
    case CNF_OK_FLAG:
      *(unsigned *)field(target, o->offset) |= o->bits;
      return true;
    case CNF_OK_DBL:
      if (!arg_double(a, o->name, o->lo, o->hi, &d))
        return false;
      *(double *)field(target, o->offset) = d;
      return true;
    case CNF_OK_PAIR:
      return opt_pair(a, o, target);
    default:
      break;
  }
  if (!arg_int(a, o->name, (long long)o->lo, (long long)o->hi, &v))
    return false;
  if (o->clamp > 0 && v > o->clamp) {
    warn(a, "%s %lld is above %g; using %g", o->name, v, o->clamp, o->clamp);
    v = (long long)o->clamp;
  }
  if (o->kind == CNF_OK_INT)
    *(int *)field(target, o->offset) = (int)v;
  else if (o->kind == CNF_OK_U16)
    *(uint16_t *)field(target, o->offset) = (uint16_t)v;
  else if (o->kind == CNF_OK_U32)
    *(uint32_t *)field(target, o->offset) = (uint32_t)v;
  else
    *(CNF_MruSize *)field(target, o->offset) = (CNF_MruSize){o->bits != 0, (uint32_t)v};
  return true;
}

/* Parse options of group g (confdirs.h) up to the end of the line. seen (may be NULL) gets
 * bit i for table row i. */
static bool
parse_options(Args *a, CNF_OptGroup g, void *target, uint32_t *seen)
{
  size_t n;
  const CNF_Option *tab = CNF_Options(g, &n);
  const char *t;
  while ((t = next_tok(a))) {
    size_t i = 0;
    while (i < n && strcmp(tab[i].name, t) != 0)
      i++;
    if (i == n)
      return fail(a, "unknown option '%.64s'", t);
    if (tab[i].flags & CNF_OF_REFUSED)
      return fail(a, "option '%s' is not supported: %s", tab[i].name, tab[i].doc);
    if (tab[i].flags & CNF_OF_NOEFFECT) {
      if (tab[i].kind != CNF_OK_FLAG && !next_tok(a))
        return fail(a, "missing value for %s", tab[i].name);
      warn(a, "option '%s' has no effect here: %s", tab[i].name, tab[i].doc);
      continue;
    }
    if (!opt_value(a, &tab[i], target))
      return false;
    if (seen && i < 32)
      *seen |= 1u << i;
  }
  return true;
}

#define N_ELEMS(x) (sizeof(x) / sizeof((x)[0]))

/* ------------------------------------------------------------------------------------ */
/* server / pool / peer, and the LOCAL clock                                              */

/* Rows 0 and 1 of the CNF_OG_ASSOC table are minpoll/maxpoll, rows 7..9 key, version and
 * port (confdirs.c). */
enum { SEEN_MINPOLL = 1u << 0, SEEN_MAXPOLL = 1u << 1 };
/* Options that mean nothing to the local clock (rows 7..9 and the burst flags). */
enum { SEEN_NET_ONLY = (1u << 7) | (1u << 8) | (1u << 9) };

/* Both given: they must be ordered. One given: move the other default out of its way. */
static bool
resolve_polls(Args *a, CNF_Assoc *s, uint32_t seen)
{
  if (s->minpoll <= s->maxpoll)
    return true;
  if ((seen & SEEN_MINPOLL) && (seen & SEEN_MAXPOLL))
    return fail(a, "minpoll %d is greater than maxpoll %d", s->minpoll, s->maxpoll);
  if (seen & SEEN_MINPOLL)
    s->maxpoll = s->minpoll;
  else
    s->minpoll = s->maxpoll;
  return true;
}

static bool
is_refclock(const NetAddr *addr)
{
  return addr->family == ADR_INET4 && addr->bytes[0] == 127 && addr->bytes[1] == 127;
}

/* 127.127.1.u -> unit u; other reference clocks are refused. */
static bool
local_unit(Args *a, const NetAddr *addr, int *unit)
{
  if (addr->bytes[2] != 1)
    return fail(a,
                "reference clock type %u is not supported (only the LOCAL driver, "
                "127.127.1.u)",
                addr->bytes[2]);
  if (addr->bytes[3] > 3)
    return fail(a, "local clock unit %u is out of range 0..3", addr->bytes[3]);
  *unit = addr->bytes[3];
  return true;
}

static void
add_local_clock(Args *a, const NetAddr *addr)
{
  CNF_LocalClock *lc = &a->p->cfg->local_clock;
  CNF_Assoc s = {0};
  uint32_t seen = 0;
  int unit = 0;
  CNF_ApplyDefaults(CNF_OG_ASSOC, &s);
  if (!local_unit(a, addr, &unit) || !parse_options(a, CNF_OG_ASSOC, &s, &seen) ||
      !resolve_polls(a, &s, seen))
    return;
  if (lc->configured)
    return (void)fail(a, "the local clock is already configured");
  if (lc->fudged && lc->unit != unit)
    return (void)fail(a, "127.127.1.%d does not match the fudged unit 127.127.1.%d", unit,
                      lc->unit);
  if ((seen & SEEN_NET_ONLY) || (s.options & (CNF_AO_IBURST | CNF_AO_BURST)))
    warn(a, "iburst, burst, key, version and port have no effect on the local clock");
  lc->configured = true;
  lc->unit = unit;
  lc->minpoll = s.minpoll;
  lc->maxpoll = s.maxpoll;
  lc->options = s.options & (CNF_AO_PREFER | CNF_AO_NOSELECT | CNF_AO_TRUE);
}

static bool
append_assoc(Args *a, const CNF_Assoc *s)
{
  CNF_Config *cfg = a->p->cfg;
  CNF_Assoc *arr =
      grow(cfg->assocs, &store_of(cfg)->cap_assocs, cfg->n_assocs + 1, sizeof(*arr));
  char *host = dup_str(s->host);
  if (!arr || !host) {
    if (arr)
      cfg->assocs = arr;
    free(host);
    return fail_oom(a);
  }
  cfg->assocs = arr;
  arr[cfg->n_assocs] = *s;
  arr[cfg->n_assocs++].host = host;
  return true;
}

/* The address or name of an association; false (reported) if it is neither. */
static bool
assoc_target(Args *a, CNF_Assoc *s, char *t)
{
  s->host = t; /* borrowed from the line until append_assoc copies it */
  if (ADR_Parse(t, &s->addr)) {
    s->numeric = true;
    if (!check_family(a, t, &s->addr, s->family))
      return false;
    if (ADR_IsMulticast(&s->addr))
      return fail(a, "multicast address '%.64s': broadcast and manycast are not supported", t);
    return true;
  }
  if (looks_numeric(t) || !valid_hostname(t))
    return fail(a, "bad address or host name '%.64s'", t);
  return true;
}

static void
d_assoc(Args *a, int type)
{
  CNF_Assoc s = {.type = (CNF_AssocType)type, .line = a->p->line};
  CNF_ApplyDefaults(CNF_OG_ASSOC, &s);
  char *t = need_tok(a, "address or host name");
  if (t && family_flag(t) != ADR_NONE) {
    s.family = family_flag(t);
    t = need_tok(a, "address or host name");
  }
  if (!t || !assoc_target(a, &s, t))
    return;
  if (s.numeric && is_refclock(&s.addr)) {
    if (type != CNF_SERVER)
      return (void)fail(a, "a reference clock address is only valid with 'server'");
    return add_local_clock(a, &s.addr);
  }
  uint32_t seen = 0;
  if (!parse_options(a, CNF_OG_ASSOC, &s, &seen) || !resolve_polls(a, &s, seen))
    return;
  s.addr.port = s.port;
  append_assoc(a, &s);
}

/* fudge 127.127.1.u [stratum N] [refid CODE] (time1/time2/flag1..4 accepted, no effect) */
static bool
fudge_option(Args *a, const char *opt, CNF_LocalClock *lc)
{
  long long v;
  if (strcmp(opt, "stratum") == 0) {
    if (!arg_int(a, "stratum", 0, 15, &v))
      return false;
    lc->stratum = (int)v;
    return true;
  }
  if (strcmp(opt, "refid") == 0) {
    const char *r = next_tok(a);
    if (!r)
      return fail(a, "missing value for refid");
    size_t len = strlen(r);
    if (len < 1 || len > 4 ||
        strspn(r, "!\"#$%&'()*+,-./0123456789:;<=>?@ABCDEFGHIJKLMNOPQRSTUV"
                  "WXYZ[\\]^_`abcdefghijklmnopqrstuvwxyz{|}~") != len)
      return fail(a, "refid '%.64s' must be 1 to 4 printable ASCII characters", r);
    memset(lc->refid, 0, sizeof(lc->refid));
    memcpy(lc->refid, r, len);
    return true;
  }
  static const char *const ignored[] = {"time1", "time2", "flag1", "flag2", "flag3", "flag4"};
  for (size_t i = 0; i < N_ELEMS(ignored); i++)
    if (strcmp(opt, ignored[i]) == 0) {
      if (!next_tok(a))
        return fail(a, "missing value for %s", opt);
      warn(a, "'%s' has no effect on the local clock", opt);
      return true;
    }
  return fail(a, "unknown option '%.64s'", opt);
}

static void
d_fudge(Args *a, int unused)
{
  (void)unused;
  CNF_LocalClock lc = a->p->cfg->local_clock;
  NetAddr addr;
  int unit = 0;
  const char *t = need_tok(a, "reference clock address");
  if (!t)
    return;
  if (!ADR_Parse(t, &addr) || !is_refclock(&addr))
    return (void)fail(a, "'%.64s' is not a reference clock address (127.127.t.u)", t);
  if (!local_unit(a, &addr, &unit))
    return;
  if ((lc.configured || lc.fudged) && lc.unit != unit)
    return (void)fail(a, "127.127.1.%d is not the configured local clock 127.127.1.%d", unit,
                      lc.unit);
  const char *opt;
  while ((opt = next_tok(a)))
    if (!fudge_option(a, opt, &lc))
      return;
  lc.fudged = true;
  lc.unit = unit;
  a->p->cfg->local_clock = lc;
}

/* ------------------------------------------------------------------------------------ */
/* restrict / unrestrict / delrestrict                                                    */

static const struct {
  const char *name;
  uint32_t flag, match;
} restrict_flags[] = {
    {"ignore", RST_IGNORE, 0},       {"kod", RST_KOD, 0},
    {"limited", RST_LIMITED, 0},     {"lowpriotrap", RST_LOWPRIOTRAP, 0},
    {"nomodify", RST_NOMODIFY, 0},   {"noquery", RST_NOQUERY, 0},
    {"nopeer", RST_NOPEER, 0},       {"noserve", RST_NOSERVE, 0},
    {"notrap", RST_NOTRAP, 0},       {"notrust", RST_NOTRUST, 0},
    {"ntpport", 0, RST_M_NTPPORT},   {"version", RST_VERSION, 0},
    {"nomrulist", RST_NOMRULIST, 0}, {"noepeer", RST_NOEPEER, 0},
    {"flake", RST_FLAKE, 0},         {"mssntp", RST_MSSNTP, 0},
};

static void
set_host_mask(CNF_Restrict *r)
{
  ADR_MaskFromPrefix(r->addr.family, ADR_Bits(&r->addr), &r->mask);
  r->prefix = ADR_Bits(&r->addr);
}

/* What a restrict line is about: default, source, ADDR[/P] or a host name. */
static bool
restrict_target(Args *a, CNF_Restrict *r, int family, char *t)
{
  r->family = family;
  if (strcmp(t, "default") == 0) {
    r->kind = CNF_RST_DEFAULT;
    r->prefix = 0;
    return true;
  }
  if (strcmp(t, "source") == 0) {
    if (family != ADR_NONE)
      return fail(a, "-4/-6 cannot be used with 'source'");
    r->kind = CNF_RST_SOURCE;
    r->match |= RST_M_SOURCE;
    return true;
  }
  if (!looks_numeric(t) && !strchr(t, '/') && valid_hostname(t)) {
    r->kind = CNF_RST_HOST;
    r->host = t; /* borrowed from the line until stored */
    return true;
  }
  r->kind = CNF_RST_ADDR;
  if (!parse_addr_prefix(a, t, &r->addr, &r->prefix) || !check_family(a, t, &r->addr, family))
    return false;
  r->family = r->addr.family;
  if (r->prefix < 0)
    set_host_mask(r);
  else
    ADR_MaskFromPrefix(r->family, r->prefix, &r->mask);
  return true;
}

/* `mask M` after an address (had_prefix: the address was written ADDR/PREFIX). */
static bool
restrict_mask(Args *a, CNF_Restrict *r, bool had_prefix)
{
  const char *m = next_tok(a);
  if (!m)
    return fail(a, "missing value for mask");
  if (r->kind == CNF_RST_HOST) {
    warn(a, "mask ignored for host name '%.64s'", r->host);
    return true;
  }
  if (r->kind != CNF_RST_ADDR)
    return fail(a, "mask is only valid after an address");
  if (had_prefix)
    return fail(a, "give either /prefix or mask, not both");
  NetAddr mask;
  if (!ADR_Parse(m, &mask))
    return fail(a, "bad mask '%.64s'", m);
  if (mask.family != r->family)
    return fail(a, "mask %.64s is not an %s mask", m, family_name(r->family));
  int prefix = ADR_PrefixFromMask(&mask);
  if (prefix < 0)
    return fail(a, "mask %.64s has holes", m);
  r->mask = mask;
  r->prefix = prefix;
  return true;
}

static bool
restrict_ippeerlimit(Args *a, CNF_Restrict *r)
{
  const char *t = next_tok(a);
  long long v = 0;
  if (!t)
    return fail(a, "missing value for ippeerlimit");
  NumStatus st = parse_ll(t, &v);
  if (st == NUM_BAD)
    return fail(a, "ippeerlimit '%.64s' is not a number", t);
  if (st == NUM_RANGE || v < -1 || v > 100) {
    warn(a, "ippeerlimit %.64s is out of range -1..100; using 0", t);
    v = 0;
  }
  r->ippeerlimit = (int)v;
  return true;
}

/* Flags (and ippeerlimit) to the end of the line. */
static bool
restrict_flag_list(Args *a, CNF_Restrict *r)
{
  const char *t;
  while ((t = next_tok(a))) {
    size_t i = 0;
    while (i < N_ELEMS(restrict_flags) && strcmp(restrict_flags[i].name, t) != 0)
      i++;
    if (i < N_ELEMS(restrict_flags)) {
      r->flags |= restrict_flags[i].flag;
      r->match |= restrict_flags[i].match;
    } else if (strcmp(t, "serverresponse") == 0) {
      const char *f = next_tok(a);
      if (!f || strcmp(f, "fuzz") != 0)
        return fail(a, "serverresponse must be followed by 'fuzz'");
      r->flags |= RST_FUZZ;
    } else if (strcmp(t, "ippeerlimit") == 0 && r->op == CNF_RST_ADD) {
      if (!restrict_ippeerlimit(a, r))
        return false;
    } else {
      return fail(a, "unknown flag '%.64s'", t);
    }
  }
  return true;
}

/* ntpd stores the address masked; so do we, but say so. */
static void
restrict_apply_mask(Args *a, CNF_Restrict *r)
{
  if (r->kind != CNF_RST_ADDR)
    return;
  NetAddr masked;
  ADR_ApplyMask(&r->addr, &r->mask, &masked);
  if (!ADR_Equal(&masked, &r->addr)) {
    char was[ADR_STRLEN], now[ADR_STRLEN];
    warn(a, "address %s has bits outside its /%d mask; using %s",
         ADR_Format(&r->addr, was, sizeof(was)), r->prefix,
         ADR_Format(&masked, now, sizeof(now)));
    r->addr = masked;
  }
}

static void
restrict_warnings(Args *a, const CNF_Restrict *r)
{
  if (r->op != CNF_RST_ADD)
    return;
  if ((r->flags & RST_KOD) && !(r->flags & RST_LIMITED))
    warn(a, "'kod' without 'limited' sends no RATE KoDs (only DENY, RSTR and CRYP)");
  if (r->flags & RST_MSSNTP)
    warn(a, "'mssntp' is accepted for compatibility and has no effect");
}

static bool
append_restrict(Args *a, const CNF_Restrict *r)
{
  CNF_Config *cfg = a->p->cfg;
  CNF_Restrict *arr =
      grow(cfg->restricts, &store_of(cfg)->cap_restricts, cfg->n_restricts + 1, sizeof(*arr));
  char *host = r->host ? dup_str(r->host) : NULL;
  if (!arr || (r->host && !host)) {
    if (arr)
      cfg->restricts = arr;
    free(host);
    return fail_oom(a);
  }
  cfg->restricts = arr;
  arr[cfg->n_restricts] = *r;
  arr[cfg->n_restricts++].host = host;
  return true;
}

/* `default` without -4/-6 is two entries, one per family. */
static void
store_restrict(Args *a, CNF_Restrict *r)
{
  if (r->kind != CNF_RST_DEFAULT) {
    append_restrict(a, r);
    return;
  }
  static const int families[] = {ADR_INET4, ADR_INET6};
  for (size_t i = 0; i < N_ELEMS(families); i++) {
    if (r->family != ADR_NONE && r->family != families[i])
      continue;
    CNF_Restrict one = *r;
    one.family = families[i];
    memset(&one.addr, 0, sizeof(one.addr));
    one.addr.family = (uint8_t)families[i];
    ADR_MaskFromPrefix(families[i], 0, &one.mask);
    if (!append_restrict(a, &one))
      return;
  }
}

/* Optional -4/-6, the target, then an optional `mask M`. */
static bool
restrict_head(Args *a, CNF_Restrict *r, bool mask_ok)
{
  char *t = need_tok(a, "address");
  int family = family_flag(t);
  if (t && family != ADR_NONE)
    t = need_tok(a, "address");
  if (!t || !restrict_target(a, r, family, t))
    return false;
  bool had_prefix = strchr(t, '/') != NULL;
  const char *m = peek_tok(a);
  if (!m || strcmp(m, "mask") != 0)
    return true;
  next_tok(a);
  if (!mask_ok)
    return fail(a, "mask cannot be used here");
  return restrict_mask(a, r, had_prefix);
}

/* restrict ... (op ADD) and unrestrict ... (op CLEAR, or DELETE without flags) */
static void
d_restrict(Args *a, int op)
{
  CNF_Restrict r = {
      .op = (CNF_RestrictOp)op, .ippeerlimit = -1, .prefix = -1, .line = a->p->line};
  if (!restrict_head(a, &r, true) || !restrict_flag_list(a, &r))
    return;
  if (r.op == CNF_RST_CLEAR && r.kind == CNF_RST_SOURCE)
    return (void)fail(a, "'source' cannot be used here");
  if (r.op == CNF_RST_CLEAR && r.flags == 0) /* ntpport only picks the entry */
    r.op = CNF_RST_DELETE;
  if (r.op == CNF_RST_DELETE && r.kind == CNF_RST_DEFAULT) {
    warn(a, "the default entries cannot be removed; this line has no effect");
    return;
  }
  restrict_apply_mask(a, &r);
  restrict_warnings(a, &r);
  store_restrict(a, &r);
}

/* delrestrict [-4|-6] ADDR [mask M] [ntpport] | delrestrict source ADDR */
static void
d_delrestrict(Args *a, int unused)
{
  (void)unused;
  CNF_Restrict r = {.op = CNF_RST_DELETE, .ippeerlimit = -1, .prefix = -1, .line = a->p->line};
  bool source = peek_tok(a) && strcmp(peek_tok(a), "source") == 0;
  if (source)
    next_tok(a);
  if (!restrict_head(a, &r, !source))
    return;
  if (r.kind == CNF_RST_DEFAULT)
    return (void)fail(a, "the default entries cannot be removed");
  if (r.kind == CNF_RST_SOURCE)
    return (void)fail(a, "missing address after 'source'");
  const char *t = next_tok(a);
  if (t && strcmp(t, "ntpport") == 0 && !source)
    r.match |= RST_M_NTPPORT;
  else if (t)
    return (void)fail(a, "unexpected '%.64s'", t);
  if (source)
    r.match |= RST_M_SOURCE;
  restrict_apply_mask(a, &r);
  store_restrict(a, &r);
}

/* ------------------------------------------------------------------------------------ */
/* discard, mru, tos                                                                      */

static void
d_discard(Args *a, int unused)
{
  (void)unused;
  CNF_Discard d = a->p->cfg->discard;
  if (at_end(a))
    return (void)fail(a, "missing argument");
  /* ntpd takes average 0..255, but the value is a poll exponent (it goes into KoD poll
   * fields): the table clamps it to 17 with a warning. */
  if (parse_options(a, CNF_OG_DISCARD, &d, NULL))
    a->p->cfg->discard = d;
}

static void
d_mru(Args *a, int unused)
{
  (void)unused;
  CNF_Mru m = a->p->cfg->mru;
  if (at_end(a))
    return (void)fail(a, "missing argument");
  if (parse_options(a, CNF_OG_MRU, &m, NULL))
    a->p->cfg->mru = m;
}

static void
d_tos(Args *a, int unused)
{
  (void)unused;
  CNF_Tos t = a->p->cfg->tos;
  if (at_end(a))
    return (void)fail(a, "missing argument");
  if (!parse_options(a, CNF_OG_TOS, &t, NULL))
    return;
  if (t.floor >= t.ceiling)
    return (void)fail(a, "floor %d must be below ceiling %d", t.floor, t.ceiling);
  if (t.minclock > t.maxclock)
    return (void)fail(a, "minclock %d is greater than maxclock %d", t.minclock, t.maxclock);
  if (t.kod_backoff > t.kod_backoff_max)
    return (void)fail(a, "kodbackoff %d is greater than kodbackoffmax %d", t.kod_backoff,
                      t.kod_backoff_max);
  a->p->cfg->tos = t;
}

/* ------------------------------------------------------------------------------------ */
/* interface, port, threads                                                               */

static bool
valid_ifname(const char *s)
{
  size_t len = strlen(s);
  return len >= 1 && len <= MAX_IFNAME &&
         strspn(s, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_.-:@*?") ==
             len;
}

static bool
interface_target(Args *a, CNF_Interface *in, char *t)
{
  static const struct {
    const char *name;
    CNF_IfMatch match;
  } words[] = {{"all", CNF_IFM_ALL},
               {"ipv4", CNF_IFM_IPV4},
               {"ipv6", CNF_IFM_IPV6},
               {"wildcard", CNF_IFM_WILDCARD}};
  for (size_t i = 0; i < N_ELEMS(words); i++)
    if (strcmp(t, words[i].name) == 0) {
      in->match = words[i].match;
      return true;
    }
  if (looks_numeric(t) || strchr(t, '/')) {
    in->match = CNF_IFM_ADDR;
    return parse_addr_prefix(a, t, &in->addr, &in->prefix);
  }
  if (!valid_ifname(t))
    return fail(a, "bad interface name '%.64s'", t);
  in->match = CNF_IFM_NAME;
  in->name = t; /* borrowed from the line until stored */
  return true;
}

static void
d_interface(Args *a, int unused)
{
  (void)unused;
  static const char *const actions[] = {"listen", "ignore", "drop"};
  CNF_Interface in = {.prefix = -1, .line = a->p->line};
  char *t = need_tok(a, "listen, ignore or drop");
  if (!t)
    return;
  size_t i = 0;
  while (i < N_ELEMS(actions) && strcmp(actions[i], t) != 0)
    i++;
  if (i == N_ELEMS(actions))
    return (void)fail(a, "'%.64s' is not listen, ignore or drop", t);
  in.action = (CNF_IfAction)i;
  if (!(t = need_tok(a, "interface")) || !interface_target(a, &in, t))
    return;
  CNF_Config *cfg = a->p->cfg;
  CNF_Interface *arr = grow(cfg->interfaces, &store_of(cfg)->cap_interfaces,
                            cfg->n_interfaces + 1, sizeof(*arr));
  char *name = in.name ? dup_str(in.name) : NULL;
  if (arr)
    cfg->interfaces = arr;
  if (!arr || (in.name && !name)) {
    free(name);
    return (void)fail_oom(a);
  }
  in.name = name;
  arr[cfg->n_interfaces++] = in;
}

static void
d_port(Args *a, int unused)
{
  (void)unused;
  long long v;
  if (arg_int(a, NULL, 1, 65535, &v))
    a->p->cfg->port = (uint16_t)v;
}

static void
d_threads(Args *a, int unused)
{
  (void)unused;
  long long v;
  if (arg_int(a, NULL, 0, CNF_MAX_THREADS, &v))
    a->p->cfg->threads = (int)v;
}

/* ------------------------------------------------------------------------------------ */
/* Files and keys                                                                         */

/* driftfile / logfile / pidfile / keys: arg is the offset of the char * in CNF_Config. */
static void
d_path(Args *a, int offset)
{
  const char *t = need_tok(a, "file name");
  if (!t)
    return;
  if (*t == '\0')
    return (void)fail(a, "empty file name");
  /* ntpd's driftfile takes an optional wander threshold. */
  if (offset == (int)offsetof(CNF_Config, driftfile) && !at_end(a)) {
    double d;
    if (!arg_double(a, "wander threshold", 0, 1e9, &d))
      return;
    warn(a, "the wander threshold is accepted for compatibility and has no effect");
  }
  char *copy = dup_str(t);
  if (!copy)
    return (void)fail_oom(a);
  char **slot = field(a->p->cfg, (size_t)offset);
  free(*slot);
  *slot = copy;
}

static void
d_keyid(Args *a, int offset)
{
  long long v;
  if (arg_int(a, NULL, 1, CNF_MAX_KEYID, &v))
    *(uint32_t *)field(a->p->cfg, (size_t)offset) = (uint32_t)v;
}

/* trustedkey tokens are re-split so that "(5", "...", "9)" and "( 5 ... 9 )" read alike. */
static char *
split_parens(Args *a)
{
  size_t len = 1;
  for (size_t i = a->i; i < a->n; i++) {
    size_t l = strlen(a->tok[i]);
    if (l > (SIZE_MAX - len - 1) / 3)
      return NULL;
    len += 3 * l + 1;
  }
  char *out = alloc_array(NULL, len, 1), *o = out;
  if (!out)
    return NULL;
  for (; a->i < a->n; a->i++) {
    for (const char *s = a->tok[a->i]; *s; s++) {
      if (*s == '(' || *s == ')') {
        *o++ = ' ';
        *o++ = *s;
        *o++ = ' ';
      } else {
        *o++ = *s;
      }
    }
    *o++ = ' ';
  }
  *o = '\0';
  return out;
}

static bool
key_number(Args *a, const char *t, long long *v)
{
  if (!t)
    return fail(a, "incomplete key range");
  NumStatus st = parse_ll(t, v);
  if (st == NUM_BAD)
    return fail(a, "'%.64s' is not a key number", t);
  if (st == NUM_RANGE || *v < 1 || *v > CNF_MAX_KEYID)
    return fail(a, "key %.64s is out of range 1..%d", t, CNF_MAX_KEYID);
  return true;
}

/* Parse "N" or "( N ... M )" starting at t; strtok_r state in *save. */
static bool
key_item(Args *a, const char *t, char **save, CNF_KeyRange *r)
{
  long long lo, hi;
  if (strcmp(t, "(") != 0) {
    if (!key_number(a, t, &lo))
      return false;
    *r = (CNF_KeyRange){(uint16_t)lo, (uint16_t)lo};
    return true;
  }
  if (!key_number(a, strtok_r(NULL, " ", save), &lo))
    return false;
  const char *dots = strtok_r(NULL, " ", save);
  if (!dots || strcmp(dots, "...") != 0)
    return fail(a, "a key range is written ( LOW ... HIGH )");
  if (!key_number(a, strtok_r(NULL, " ", save), &hi))
    return false;
  const char *close = strtok_r(NULL, " ", save);
  if (!close || strcmp(close, ")") != 0)
    return fail(a, "a key range is written ( LOW ... HIGH )");
  if (lo > hi)
    return fail(a, "key range %lld ... %lld is backwards", lo, hi);
  *r = (CNF_KeyRange){(uint16_t)lo, (uint16_t)hi};
  return true;
}

static bool
append_key(Args *a, CNF_KeyRange r)
{
  CNF_Config *cfg = a->p->cfg;
  CNF_KeyRange *arr =
      grow(cfg->trusted_keys, &store_of(cfg)->cap_keys, cfg->n_trusted_keys + 1, sizeof(*arr));
  if (!arr)
    return fail_oom(a);
  cfg->trusted_keys = arr;
  arr[cfg->n_trusted_keys++] = r;
  return true;
}

static void
d_trustedkey(Args *a, int unused)
{
  (void)unused;
  if (at_end(a))
    return (void)fail(a, "missing argument");
  char *text = split_parens(a), *save = NULL;
  if (!text)
    return (void)fail_oom(a);
  size_t before = a->p->cfg->n_trusted_keys;
  CNF_KeyRange r = {0, 0};
  for (char *t = strtok_r(text, " ", &save); t; t = strtok_r(NULL, " ", &save))
    if (!key_item(a, t, &save, &r) || !append_key(a, r))
      break;
  if (a->failed) /* all of the line or none of it */
    a->p->cfg->n_trusted_keys = before;
  free(text);
}

/* ------------------------------------------------------------------------------------ */
/* enable / disable, compatibility-only directives                                        */

static void
d_switch(Args *a, int on)
{
  static const struct {
    const char *name;
    size_t offset;
  } names[] = {
      {"auth", offsetof(CNF_Switches, auth)},
      {"bclient", offsetof(CNF_Switches, bclient)},
      {"calibrate", offsetof(CNF_Switches, calibrate)},
      {"kernel", offsetof(CNF_Switches, kernel)},
      {"monitor", offsetof(CNF_Switches, monitor)},
      {"ntp", offsetof(CNF_Switches, ntp)},
      {"stats", offsetof(CNF_Switches, stats)},
      {"mode7", offsetof(CNF_Switches, mode7)},
  };
  CNF_Switches sw = a->p->cfg->sw;
  const char *t;
  if (at_end(a))
    return (void)fail(a, "missing argument");
  while ((t = next_tok(a))) {
    size_t i = 0;
    while (i < N_ELEMS(names) && strcmp(names[i].name, t) != 0)
      i++;
    if (i == N_ELEMS(names))
      return (void)fail(a, "unknown flag '%.64s'", t);
    *(bool *)field(&sw, names[i].offset) = on != 0;
  }
  a->p->cfg->sw = sw;
}

/* ------------------------------------------------------------------------------------ */
/* Files, lines and includes                                                              */

static void parse_stream(Parser *p, FILE *f);

/* Open a config file: regular files only, never blocking on a FIFO. NULL with *why. */
static FILE *
open_config(const char *path, FileId *id, const char **why)
{
  int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
  struct stat st;
  if (fd < 0 || fstat(fd, &st) != 0) {
    *why = strerror(errno);
    if (fd >= 0)
      close(fd);
    return NULL;
  }
  if (!S_ISREG(st.st_mode)) {
    *why = "not a regular file";
    close(fd);
    return NULL;
  }
  FILE *f = fdopen(fd, "r");
  if (!f) {
    *why = strerror(errno);
    close(fd);
    return NULL;
  }
  *id = (FileId){st.st_dev, st.st_ino};
  return f;
}

/* path relative to the directory of `base` (unchanged if absolute or base has no '/'). */
static char *
relative_path(const char *base, const char *path)
{
  const char *slash = strrchr(base, '/');
  if (path[0] == '/' || !slash)
    return dup_str(path);
  size_t dl = (size_t)(slash - base) + 1, pl = strlen(path);
  if (pl > SIZE_MAX - dl - 1)
    return NULL;
  char *out = alloc_array(NULL, dl + pl + 1, 1);
  if (out) {
    memcpy(out, base, dl);
    memcpy(out + dl, path, pl + 1);
  }
  return out;
}

static bool
already_open(const Parser *p, FileId id)
{
  for (int i = 0; i < p->n_open; i++)
    if (p->open[i].dev == id.dev && p->open[i].ino == id.ino)
      return true;
  return false;
}

/* Read an opened include file with the parser's position saved around it. */
static void
parse_included(Parser *p, const char *name, FILE *f, FileId id)
{
  const char *saved_file = p->file;
  int saved_line = p->line;
  p->open[p->n_open++] = id;
  p->file = name;
  p->depth++;
  parse_stream(p, f);
  p->depth--;
  p->n_open--;
  p->file = saved_file;
  p->line = saved_line;
}

static void
d_include(Args *a, int unused)
{
  (void)unused;
  Parser *p = a->p;
  const char *t = need_tok(a, "file name"), *why = NULL;
  if (!t)
    return;
  char *path = relative_path(p->file, t);
  if (!path)
    return (void)fail_oom(a);
  FileId id;
  FILE *f = open_config(path, &id, &why);
  if (!f) /* ntpd warns and goes on; so do we, loudly */
    warn(a, "cannot open '%s': %s; skipped", path, why);
  else if (already_open(p, id))
    fail(a, "include loop: '%s' is already being read", path);
  else if (p->depth >= MAX_INCLUDE_DEPTH || p->n_open >= MAX_INCLUDE_DEPTH)
    fail(a, "includes nested deeper than %d levels", MAX_INCLUDE_DEPTH);
  else
    parse_included(p, path, f, id);
  if (f)
    fclose(f);
  free(path);
}

typedef void (*DirectiveFn)(Args *a, int arg);

/* The handler of each supported directive of confdirs.c's table, by its id. */
static const struct {
  DirectiveFn fn;
  int arg;
} handlers[CNF_D_COUNT] = {
    [CNF_D_SERVER] = {d_assoc, CNF_SERVER},
    [CNF_D_POOL] = {d_assoc, CNF_POOL},
    [CNF_D_PEER] = {d_assoc, CNF_PEER},
    [CNF_D_FUDGE] = {d_fudge, 0},
    [CNF_D_RESTRICT] = {d_restrict, CNF_RST_ADD},
    [CNF_D_UNRESTRICT] = {d_restrict, CNF_RST_CLEAR},
    [CNF_D_DELRESTRICT] = {d_delrestrict, 0},
    [CNF_D_DISCARD] = {d_discard, 0},
    [CNF_D_MRU] = {d_mru, 0},
    [CNF_D_INTERFACE] = {d_interface, 0},
    [CNF_D_PORT] = {d_port, 0},
    [CNF_D_THREADS] = {d_threads, 0},
    [CNF_D_DRIFTFILE] = {d_path, (int)offsetof(CNF_Config, driftfile)},
    [CNF_D_LOGFILE] = {d_path, (int)offsetof(CNF_Config, logfile)},
    [CNF_D_PIDFILE] = {d_path, (int)offsetof(CNF_Config, pidfile)},
    [CNF_D_KEYS] = {d_path, (int)offsetof(CNF_Config, keysfile)},
    [CNF_D_TRUSTEDKEY] = {d_trustedkey, 0},
    [CNF_D_CONTROLKEY] = {d_keyid, (int)offsetof(CNF_Config, control_key)},
    [CNF_D_REQUESTKEY] = {d_keyid, (int)offsetof(CNF_Config, request_key)},
    [CNF_D_TOS] = {d_tos, 0},
    [CNF_D_ENABLE] = {d_switch, 1},
    [CNF_D_DISABLE] = {d_switch, 0},
    [CNF_D_INCLUDEFILE] = {d_include, 0},
};

typedef struct {
  char **v;
  size_t n, cap;
} Tokens;

/* Blanks separate tokens. Other control characters never get here (parse_line). */
static bool
is_blank(char c)
{
  return c == ' ' || c == '\t';
}

static bool
push_token(Parser *p, Tokens *t, char *s)
{
  char **v = grow(t->v, &t->cap, t->n + 1, sizeof(*v));
  if (!v) {
    report(p, "out of memory");
    return false;
  }
  t->v = v;
  t->v[t->n++] = s;
  return true;
}

/* Split a line in place. '#' at the start of a token begins a comment; "..." quotes a token
 * (no escapes). False (reported) on a syntax error. */
static bool
tokenize(Parser *p, char *s, Tokens *t)
{
  t->n = 0;
  for (;;) {
    while (is_blank(*s))
      s++;
    if (*s == '\0' || *s == '#')
      return true;
    char *start = s;
    if (*s == '"') {
      char *end = strchr(++s, '"');
      if (!end) {
        report(p, "unterminated quoted string");
        return false;
      }
      start = s;
      *end = '\0';
      s = end + 1;
      if (*s != '\0' && !is_blank(*s)) {
        report(p, "missing space after quoted string");
        return false;
      }
    } else {
      while (*s && !is_blank(*s))
        s++;
      if (*s)
        *s++ = '\0';
    }
    if (!push_token(p, t, start))
      return false;
  }
}

static void
run_directive(Parser *p, Tokens *t)
{
  const CNF_Directive *d = CNF_FindDirective(t->v[0]);
  if (!d) {
    report(p, "unknown directive '%.64s'", t->v[0]);
    return;
  }
  Args a = {.p = p, .name = d->name, .tok = t->v, .n = t->n, .i = 1};
  if (p->runtime && !(d->flags & CNF_DF_RUNTIME)) {
    fail(&a,
         "'%s' cannot be changed at runtime (only restrict, unrestrict, delrestrict, "
         "discard and mru can)",
         d->name);
    return;
  }
  if (d->status == CNF_DS_NOEFFECT) {
    warn(&a, "accepted for compatibility; it has no effect here: %s", d->why);
    return;
  }
  if (d->status == CNF_DS_REFUSED || !handlers[d->id].fn) {
    fail(&a, "not supported: %s", d->why ? d->why : "no handler");
    return;
  }
  handlers[d->id].fn(&a, handlers[d->id].arg);
  if (!a.failed && a.i < a.n)
    fail(&a, "unexpected '%.64s'", a.tok[a.i]);
}

/* The first control character of a line (other than tab), or NULL. */
static const char *
control_char(const char *s, size_t len)
{
  for (size_t i = 0; i < len; i++) {
    unsigned char c = (unsigned char)s[i];
    if ((c < 0x20 && c != '\t') || c == 0x7f)
      return s + i;
  }
  return NULL;
}

/* One line of len bytes (may end in "\n" or "\r\n"); modified in place. */
static void
parse_line(Parser *p, char *line, size_t len, Tokens *t)
{
  if (memchr(line, '\0', len)) {
    report(p, "line contains a NUL byte");
    return;
  }
  if (len > 0 && line[len - 1] == '\n') {
    line[--len] = '\0';
    if (len > 0 && line[len - 1] == '\r')
      line[--len] = '\0';
  }
  const char *cc = control_char(line, len);
  if (cc) {
    report(p,
           "control character 0x%02x at column %zu: only tab and the newline that ends a "
           "line may appear; the line is ignored",
           (unsigned char)*cc, (size_t)(cc - line) + 1);
    return;
  }
  if (tokenize(p, line, t) && t->n > 0)
    run_directive(p, t);
}

static void
parse_stream(Parser *p, FILE *f)
{
  char *buf = NULL;
  size_t cap = 0;
  ssize_t n;
  Tokens t = {0};
  p->line = 0;
  errno = 0;
  while ((n = getline(&buf, &cap, f)) >= 0) {
    p->line++;
    parse_line(p, buf, (size_t)n, &t);
    errno = 0;
  }
  if (!feof(f) || errno != 0) {
    p->line++;
    report(p, "cannot read: %s", strerror(errno ? errno : EIO));
  }
  free(t.v);
  free(buf);
}

static void
parse_text(Parser *p, const char *text)
{
  char *buf = NULL;
  size_t cap = 0;
  Tokens t = {0};
  p->line = 0;
  while (*text) {
    const char *nl = strchr(text, '\n');
    size_t len = nl ? (size_t)(nl - text) + 1 : strlen(text); /* with its newline */
    p->line++;
    char *b = grow(buf, &cap, len + 1, 1);
    if (!b) {
      report(p, "out of memory");
    } else {
      buf = b;
      memcpy(buf, text, len);
      buf[len] = '\0';
      parse_line(p, buf, len, &t);
    }
    text += len;
  }
  free(t.v);
  free(buf);
}

/* Checks that need the whole configuration. */
static void
finish(Parser *p)
{
  const CNF_LocalClock *lc = &p->cfg->local_clock;
  p->file = p->top;
  p->line = 0;
  if (lc->fudged && !lc->configured)
    report_warning(p, "fudge 127.127.1.%d has no effect: no 'server 127.127.1.%d' line",
                   lc->unit, lc->unit);
}

bool
CNF_ParseFile(CNF_Config *cfg, const char *path, CNF_Errors *errs)
{
  Parser p = {.cfg = cfg, .errs = errs, .file = path, .top = path, .depth = 1};
  const char *why = NULL;
  FileId id;
  FILE *f = open_config(path, &id, &why);
  if (!f) {
    report(&p, "cannot open: %s", why);
    return false;
  }
  p.open[p.n_open++] = id;
  parse_stream(&p, f);
  fclose(f);
  finish(&p);
  return p.n_errors == 0;
}

static bool
parse_text_as(CNF_Config *cfg, const char *name, const char *text, bool runtime,
              CNF_Errors *errs)
{
  name = name ? name : "<text>";
  Parser p = {
      .cfg = cfg, .errs = errs, .file = name, .top = name, .depth = 1, .runtime = runtime};
  parse_text(&p, text ? text : "");
  finish(&p);
  return p.n_errors == 0;
}

bool
CNF_ParseText(CNF_Config *cfg, const char *name, const char *text, CNF_Errors *errs)
{
  return parse_text_as(cfg, name, text, false, errs);
}

bool
CNF_ParseRuntimeText(CNF_Config *cfg, const char *name, const char *text, CNF_Errors *errs)
{
  return parse_text_as(cfg, name, text, true, errs);
}

/* ------------------------------------------------------------------------------------ */
/* Create / destroy                                                                       */

CNF_Config *
CNF_Create(void)
{
  ConfigStore *s = calloc(1, sizeof(*s));
  if (!s)
    return NULL;
  CNF_Config *c = &s->pub;
  c->local_clock = (CNF_LocalClock){.minpoll = CNF_DEFAULT_MINPOLL,
                                    .maxpoll = CNF_DEFAULT_MAXPOLL,
                                    .stratum = CNF_LOCAL_DEFAULT_STRATUM,
                                    .refid = CNF_LOCAL_DEFAULT_REFID};
  CNF_ApplyDefaults(CNF_OG_DISCARD, &c->discard);
  CNF_ApplyDefaults(CNF_OG_MRU, &c->mru);
  CNF_ApplyDefaults(CNF_OG_TOS, &c->tos);
  c->port = CNF_NTP_PORT;
  c->sw = (CNF_Switches){.auth = true, .kernel = true, .monitor = true, .ntp = true};
  return c;
}

void
CNF_Destroy(CNF_Config *cfg)
{
  if (!cfg)
    return;
  for (size_t i = 0; i < cfg->n_assocs; i++)
    free(cfg->assocs[i].host);
  for (size_t i = 0; i < cfg->n_restricts; i++)
    free(cfg->restricts[i].host);
  for (size_t i = 0; i < cfg->n_interfaces; i++)
    free(cfg->interfaces[i].name);
  free(cfg->assocs);
  free(cfg->restricts);
  free(cfg->interfaces);
  free(cfg->trusted_keys);
  free(cfg->driftfile);
  free(cfg->logfile);
  free(cfg->pidfile);
  free(cfg->keysfile);
  free(store_of(cfg));
}

bool
CNF_IsTrustedKey(const CNF_Config *cfg, uint32_t key)
{
  for (size_t i = 0; i < cfg->n_trusted_keys; i++)
    if (key >= cfg->trusted_keys[i].lo && key <= cfg->trusted_keys[i].hi)
      return true;
  return false;
}
