#include "config.h"
#include "confparse.h"

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

/* ------------------------------------------------------------------------------------ */
/* Allocation: every size is checked for overflow; failure is reported, never fatal.     */

void *
cnf_alloc_array(void *old, size_t n, size_t size)
{
  if (size != 0 && n > SIZE_MAX / size)
    return NULL;
  size_t bytes = n * size;
  return realloc(old, bytes ? bytes : 1);
}

char *
cnf_dup_str(const char *s)
{
  size_t n = strlen(s) + 1;
  char *d = cnf_alloc_array(NULL, n, 1);
  if (d)
    memcpy(d, s, n);
  return d;
}

/* Make room for `need` items in arr (capacity *cap). Returns the (maybe moved) array, or
 * NULL with arr untouched. */
void *
cnf_grow(void *arr, size_t *cap, size_t need, size_t size)
{
  if (need <= *cap && arr)
    return arr;
  size_t ncap = *cap ? *cap : 8;
  while (ncap < need) {
    if (ncap > SIZE_MAX / 2)
      return NULL;
    ncap *= 2;
  }
  void *n = cnf_alloc_array(arr, ncap, size);
  if (n)
    *cap = ncap;
  return n;
}

ConfigStore *
cnf_store_of(CNF_Config *cfg)
{
  return (ConfigStore *)(void *)cfg;
}

/* ------------------------------------------------------------------------------------ */
/* Messages                                                                               */

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
    text = cnf_alloc_array(NULL, plen + (size_t)body + 1, 1);
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

__attribute__((format(printf, 2, 3))) void
cnf_report(Parser *p, const char *fmt, ...)
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
__attribute__((format(printf, 2, 3))) bool
cnf_fail(Args *a, const char *fmt, ...)
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

__attribute__((format(printf, 2, 3))) void
cnf_warn(Args *a, const char *fmt, ...)
{
  va_list ap;
  va_start(ap, fmt);
  vreport(a->p, false, a->name, fmt, ap);
  va_end(ap);
}

bool
cnf_fail_oom(Args *a)
{
  return cnf_fail(a, "out of memory");
}

/* ------------------------------------------------------------------------------------ */
/* Tokens and numbers                                                                     */

char *
cnf_peek_tok(const Args *a)
{
  return a->i < a->n ? a->tok[a->i] : NULL;
}

char *
cnf_next_tok(Args *a)
{
  return a->i < a->n ? a->tok[a->i++] : NULL;
}

bool
cnf_at_end(const Args *a)
{
  return a->i >= a->n;
}

/* The next token, or an error naming what was expected. */
char *
cnf_need_tok(Args *a, const char *what)
{
  char *t = cnf_next_tok(a);
  if (!t)
    cnf_fail(a, "missing %s", what);
  return t;
}

/* Decimal integer with an optional '-', nothing else. */
NumStatus
cnf_parse_ll(const char *s, long long *out)
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
bool
cnf_arg_int(Args *a, const char *what, long long lo, long long hi, long long *out)
{
  const char *w = what ? what : "", *sp = what ? " " : "";
  const char *t = cnf_next_tok(a);
  if (!t)
    return what ? cnf_fail(a, "missing value for %s", what) : cnf_fail(a, "missing argument");
  long long v = 0;
  NumStatus st = cnf_parse_ll(t, &v);
  if (st == NUM_BAD)
    return cnf_fail(a, "%s%s'%.64s' is not a number", w, sp, t);
  if (st == NUM_RANGE || v < lo || v > hi)
    return cnf_fail(a, "%s%s%.64s is out of range %lld..%lld", w, sp, t, lo, hi);
  *out = v;
  return true;
}

bool
cnf_arg_double(Args *a, const char *what, double lo, double hi, double *out)
{
  const char *t = cnf_next_tok(a);
  if (!t)
    return cnf_fail(a, "missing value for %s", what);
  double v = 0;
  NumStatus st = parse_double(t, &v);
  if (st == NUM_BAD)
    return cnf_fail(a, "%s '%.64s' is not a number", what, t);
  if (st == NUM_RANGE || v < lo || v > hi)
    return cnf_fail(a, "%s %.64s is out of range %g..%g", what, t, lo, hi);
  *out = v;
  return true;
}

/* ------------------------------------------------------------------------------------ */
/* Addresses and names                                                                    */

/* Text that can only have been meant as a numeric address (so a failure to parse it is a
 * bad address, not a host name). */
bool
cnf_looks_numeric(const char *s)
{
  if (strchr(s, ':'))
    return true;
  return strspn(s, "0123456789.") == strlen(s);
}

bool
cnf_valid_hostname(const char *s)
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

const char *
cnf_family_name(int family)
{
  return family == ADR_INET6 ? "IPv6" : "IPv4";
}

/* "-4" / "-6" -> family; anything else -> ADR_NONE. */
int
cnf_family_flag(const char *t)
{
  if (t && strcmp(t, "-4") == 0)
    return ADR_INET4;
  if (t && strcmp(t, "-6") == 0)
    return ADR_INET6;
  return ADR_NONE;
}

/* Parse "ADDR" or "ADDR/PREFIX". prefix is -1 without a "/". Errors are reported. */
bool
cnf_parse_addr_prefix(Args *a, const char *t, NetAddr *addr, int *prefix)
{
  if (!strchr(t, '/')) {
    *prefix = -1;
    if (ADR_Parse(t, addr))
      return true;
    return cnf_fail(a, "bad address '%.64s'", t);
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
      return cnf_fail(a, "bad prefix length in '%.64s'", t);
  }
  return cnf_fail(a, "bad address '%.64s'", t);
}

bool
cnf_check_family(Args *a, const char *t, const NetAddr *addr, int family)
{
  if (family == ADR_NONE || addr->family == family)
    return true;
  return cnf_fail(a, "'%.64s' is not an %s address", t, cnf_family_name(family));
}

/* ------------------------------------------------------------------------------------ */
/* Option tables: `name [value]` pairs written into a struct                              */

void *
cnf_field(void *base, size_t offset)
{
  return (char *)base + offset;
}

/* "P/Q" with P in lo..hi and Q in lo..hi2. */
static bool
opt_pair(Args *a, const CNF_Option *o, void *target)
{
  const char *t = cnf_next_tok(a);
  if (!t)
    return cnf_fail(a, "missing value for %s", o->name);
  const char *slash = strchr(t, '/');
  long long v1 = 0, v2 = 0;
  char first[24];
  size_t l1 = slash ? (size_t)(slash - t) : 0;
  if (!slash || l1 >= sizeof(first))
    return cnf_fail(a, "%s '%.64s' is not of the form N/M", o->name, t);
  memcpy(first, t, l1);
  first[l1] = '\0';
  if (cnf_parse_ll(first, &v1) != NUM_OK || cnf_parse_ll(slash + 1, &v2) != NUM_OK)
    return cnf_fail(a, "%s '%.64s' is not of the form N/M", o->name, t);
  if (v1 < o->lo || v1 > o->hi || v2 < o->lo || v2 > o->hi2)
    return cnf_fail(a, "%s %.64s is out of range %g..%g/%g..%g", o->name, t, o->lo, o->hi,
                    o->lo, o->hi2);
  *(int *)cnf_field(target, o->offset) = (int)v1;
  *(int *)cnf_field(target, o->offset2) = (int)v2;
  return true;
}

static bool
opt_value(Args *a, const CNF_Option *o, void *target)
{
  long long v = 0;
  double d = 0;
  switch (o->kind) {
    case CNF_OK_FLAG:
      *(unsigned *)cnf_field(target, o->offset) |= o->bits;
      return true;
    case CNF_OK_DBL:
      if (!cnf_arg_double(a, o->name, o->lo, o->hi, &d))
        return false;
      *(double *)cnf_field(target, o->offset) = d;
      return true;
    case CNF_OK_PAIR:
      return opt_pair(a, o, target);
    default:
      break;
  }
  if (!cnf_arg_int(a, o->name, (long long)o->lo, (long long)o->hi, &v))
    return false;
  if (o->clamp > 0 && v > o->clamp) {
    cnf_warn(a, "%s %lld is above %g; using %g", o->name, v, o->clamp, o->clamp);
    v = (long long)o->clamp;
  }
  if (o->kind == CNF_OK_INT)
    *(int *)cnf_field(target, o->offset) = (int)v;
  else if (o->kind == CNF_OK_U16)
    *(uint16_t *)cnf_field(target, o->offset) = (uint16_t)v;
  else if (o->kind == CNF_OK_U32)
    *(uint32_t *)cnf_field(target, o->offset) = (uint32_t)v;
  else
    *(CNF_MruSize *)cnf_field(target, o->offset) = (CNF_MruSize){o->bits != 0, (uint32_t)v};
  return true;
}

/* Parse options of group g (confdirs.h) up to the end of the line. seen (may be NULL) gets
 * bit i for table row i. */
bool
cnf_parse_options(Args *a, CNF_OptGroup g, void *target, uint32_t *seen)
{
  size_t n;
  const CNF_Option *tab = CNF_Options(g, &n);
  const char *t;
  while ((t = cnf_next_tok(a))) {
    size_t i = 0;
    while (i < n && strcmp(tab[i].name, t) != 0)
      i++;
    if (i == n)
      return cnf_fail(a, "unknown option '%.64s'", t);
    if (tab[i].flags & CNF_OF_REFUSED)
      return cnf_fail(a, "option '%s' is not supported: %s", tab[i].name, tab[i].doc);
    if (tab[i].flags & CNF_OF_NOEFFECT) {
      if (tab[i].kind != CNF_OK_FLAG && !cnf_next_tok(a))
        return cnf_fail(a, "missing value for %s", tab[i].name);
      cnf_warn(a, "option '%s' has no effect here: %s", tab[i].name, tab[i].doc);
      continue;
    }
    if (!opt_value(a, &tab[i], target))
      return false;
    if (seen && i < 32)
      *seen |= 1u << i;
  }
  return true;
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
    return cnf_dup_str(path);
  size_t dl = (size_t)(slash - base) + 1, pl = strlen(path);
  if (pl > SIZE_MAX - dl - 1)
    return NULL;
  char *out = cnf_alloc_array(NULL, dl + pl + 1, 1);
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

void
cnf_include(Args *a, int unused)
{
  (void)unused;
  Parser *p = a->p;
  const char *t = cnf_need_tok(a, "file name"), *why = NULL;
  if (!t)
    return;
  char *path = relative_path(p->file, t);
  if (!path)
    return (void)cnf_fail_oom(a);
  FileId id;
  FILE *f = open_config(path, &id, &why);
  if (!f) /* ntpd warns and goes on; so do we, loudly */
    cnf_warn(a, "cannot open '%s': %s; skipped", path, why);
  else if (already_open(p, id))
    cnf_fail(a, "include loop: '%s' is already being read", path);
  else if (p->depth >= MAX_INCLUDE_DEPTH || p->n_open >= MAX_INCLUDE_DEPTH)
    cnf_fail(a, "includes nested deeper than %d levels", MAX_INCLUDE_DEPTH);
  else
    parse_included(p, path, f, id);
  if (f)
    fclose(f);
  free(path);
}

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
  char **v = cnf_grow(t->v, &t->cap, t->n + 1, sizeof(*v));
  if (!v) {
    cnf_report(p, "out of memory");
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
        cnf_report(p, "unterminated quoted string");
        return false;
      }
      start = s;
      *end = '\0';
      s = end + 1;
      if (*s != '\0' && !is_blank(*s)) {
        cnf_report(p, "missing space after quoted string");
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
    cnf_report(p, "unknown directive '%.64s'", t->v[0]);
    return;
  }
  Args a = {.p = p, .name = d->name, .tok = t->v, .n = t->n, .i = 1};
  if (p->runtime && !(d->flags & CNF_DF_RUNTIME)) {
    cnf_fail(&a,
             "'%s' cannot be changed at runtime (only restrict, unrestrict, delrestrict, "
             "discard and mru can)",
             d->name);
    return;
  }
  if (d->status == CNF_DS_NOEFFECT) {
    cnf_warn(&a, "accepted for compatibility; it has no effect here: %s", d->why);
    return;
  }
  if (d->status == CNF_DS_REFUSED || !cnf_run_handler(&a, d->id)) {
    cnf_fail(&a, "not supported: %s", d->why ? d->why : "no handler");
    return;
  }
  if (!a.failed && a.i < a.n)
    cnf_fail(&a, "unexpected '%.64s'", a.tok[a.i]);
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
    cnf_report(p, "line contains a NUL byte");
    return;
  }
  if (len > 0 && line[len - 1] == '\n') {
    line[--len] = '\0';
    if (len > 0 && line[len - 1] == '\r')
      line[--len] = '\0';
  }
  const char *cc = control_char(line, len);
  if (cc) {
    cnf_report(p,
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
    cnf_report(p, "cannot read: %s", strerror(errno ? errno : EIO));
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
    char *b = cnf_grow(buf, &cap, len + 1, 1);
    if (!b) {
      cnf_report(p, "out of memory");
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
    cnf_report(&p, "cannot open: %s", why);
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
  CNF_ApplyDefaults(CNF_OG_TINKER, &c->tinker);
  c->port = CNF_NTP_PORT;
  c->sw = (CNF_Switches){
      .auth = true, .kernel = true, .monitor = true, .ntp = true, .stats = true};
  for (int i = 0; i < STF_KIND_COUNT; i++)
    c->filegen[i] = (CNF_FileGen){.type = STF_TYPE_DAY, .link = true};
  c->nts = (CNF_Nts){.aead = CNF_NTS_AEAD_AES_SIV_CMAC_256, .port = CNF_NTS_KE_PORT};
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
  free(cfg->leapfile);
  free(cfg->logfile);
  free(cfg->pidfile);
  free(cfg->keysfile);
  free(cfg->statsdir);
  for (int i = 0; i < STF_KIND_COUNT; i++)
    free(cfg->filegen[i].file);
  free(cfg->nts.cert);
  free(cfg->nts.key);
  free(cfg->nts.ca);
  free(cfg->nts.cookie);
  free(cfg->nts.ciphersuites);
  free(cfg->nts.ecdhcurves);
  free(cnf_store_of(cfg));
}

bool
CNF_IsTrustedKey(const CNF_Config *cfg, uint32_t key)
{
  for (size_t i = 0; i < cfg->n_trusted_keys; i++)
    if (key >= cfg->trusted_keys[i].lo && key <= cfg->trusted_keys[i].hi)
      return true;
  return false;
}
