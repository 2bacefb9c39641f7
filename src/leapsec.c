/* leapsec: parse the leap-second list and answer questions about it. */
#include "leapsec.h"

#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "ntptime.h"

#define MAX_FILE (1u << 20)

typedef struct {
  const char *name;
  MSG_Errors *errs;
  bool failed;
} Ctx;

static void __attribute__((format(printf, 3, 4))) error(Ctx *c, int line, const char *fmt, ...)
{
  c->failed = true;
  if (!c->errs)
    return;
  va_list ap;
  va_start(ap, fmt);
  MSG_VAdd(&c->errs->errors, c->name, line, fmt, ap);
  va_end(ap);
}

static void
warning(Ctx *c, int line, const char *text)
{
  if (c->errs)
    MSG_Add(&c->errs->warnings, c->name, line, "%s", text);
}

/* An unsigned decimal number at *p (blanks before it skipped); false if there is none or it
 * does not fit. */
static bool
number(const char **p, const char *end, int64_t *out)
{
  const char *s = *p;
  while (s < end && (*s == ' ' || *s == '\t'))
    s++;
  if (s == end || !isdigit((unsigned char)*s))
    return false;
  int64_t v = 0;
  for (; s < end && isdigit((unsigned char)*s); s++) {
    if (v > (INT64_MAX - 9) / 10)
      return false;
    v = v * 10 + (*s - '0');
  }
  *p = s;
  *out = v;
  return true;
}

static bool
only_blanks_or_comment(const char *s, const char *end)
{
  while (s < end && (*s == ' ' || *s == '\t' || *s == '\r'))
    s++;
  return s == end || *s == '#';
}

/* The digits of [s, end), appended to the hash. */
static void
hash_digits(EVP_MD_CTX *md, const char *s, const char *end)
{
  for (; s < end; s++)
    if (isdigit((unsigned char)*s))
      EVP_DigestUpdate(md, s, 1);
}

/* "#h" words: five 32-bit hexadecimal numbers (leading zeros may be left out). */
static bool
parse_hash(const char *s, const char *end, uint8_t out[20])
{
  for (int w = 0; w < 5; w++) {
    while (s < end && (*s == ' ' || *s == '\t'))
      s++;
    const char *start = s;
    uint32_t v = 0;
    for (; s < end && isxdigit((unsigned char)*s) && s - start < 8; s++)
      v = v << 4 | (uint32_t)(isdigit((unsigned char)*s) ? *s - '0' : tolower(*s) - 'a' + 10);
    if (s == start || (s < end && isxdigit((unsigned char)*s)))
      return false;
    for (int i = 0; i < 4; i++)
      out[w * 4 + i] = (uint8_t)(v >> (24 - 8 * i));
  }
  return only_blanks_or_comment(s, end) && (s == end || *s != '#');
}

static int64_t
posix_of_ntp(int64_t ntp)
{
  return ntp - NTT_UNIX_OFFSET;
}

/* A data line "NTPSECONDS TAI [# comment]". */
static void
data_line(Ctx *c, LSC_List *l, int line, const char *s, const char *end)
{
  int64_t when, tai;
  const char *p = s;
  if (!number(&p, end, &when) || !number(&p, end, &tai) || !only_blanks_or_comment(p, end)) {
    error(c, line, "not a leap-second line (NTP seconds, then TAI-UTC)");
    return;
  }
  if (l->n == LSC_MAX_ENTRIES) {
    error(c, line, "more than %d entries", LSC_MAX_ENTRIES);
    return;
  }
  int64_t posix = posix_of_ntp(when);
  if (posix % 86400 != 0)
    error(c, line, "%" PRId64 " is not at 00:00:00 UTC", when);
  else if (l->n > 0 && posix <= l->e[l->n - 1].when)
    error(c, line, "%" PRId64 " is not later than the line before", when);
  else if (l->n > 0 && tai - l->e[l->n - 1].tai != 1 && tai - l->e[l->n - 1].tai != -1)
    error(c, line, "TAI-UTC changes from %d to %" PRId64 ", not by one second",
          l->e[l->n - 1].tai, tai);
  else if (tai > 1000)
    error(c, line, "TAI-UTC %" PRId64 " is out of range", tai);
  /* kept even when wrong (the list is dropped anyway), so that the next line is compared
   * with this one and one mistake gives one message */
  if (tai <= 1000)
    l->e[l->n++] = (LSC_Entry){.when = posix, .tai = (int)tai};
}

/* "#$ NTP" or "#@ NTP". */
static bool
stamp_line(Ctx *c, int line, const char *s, const char *end, const char *what, int64_t *out)
{
  int64_t v;
  const char *p = s;
  if (!number(&p, end, &v) || !only_blanks_or_comment(p, end)) {
    error(c, line, "%s line without a time in NTP seconds", what);
    return false;
  }
  *out = posix_of_ntp(v);
  return true;
}

bool
LSC_Parse(LSC_List *l, const char *name, const char *text, size_t len, MSG_Errors *errs)
{
  Ctx c = {.name = name, .errs = errs};
  memset(l, 0, sizeof(*l));
  EVP_MD_CTX *md = EVP_MD_CTX_new();
  if (!md || !EVP_DigestInit_ex(md, EVP_sha1(), NULL)) {
    EVP_MD_CTX_free(md);
    error(&c, 0, "cannot compute SHA-1");
    return false;
  }
  uint8_t want[20];
  int hash_line = 0;
  bool have_expiry = false;
  const char *s = text, *end = text + len;
  for (int line = 1; s < end; line++) {
    const char *eol = memchr(s, '\n', (size_t)(end - s));
    if (!eol)
      eol = end;
    if (memchr(s, '\0', (size_t)(eol - s)))
      error(&c, line, "line contains a NUL octet");
    else if (eol - s >= 2 && s[0] == '#' && s[1] == '$') {
      hash_digits(md, s + 2, eol);
      stamp_line(&c, line, s + 2, eol, "#$", &l->updated);
    } else if (eol - s >= 2 && s[0] == '#' && s[1] == '@') {
      hash_digits(md, s + 2, eol);
      have_expiry = stamp_line(&c, line, s + 2, eol, "#@", &l->expires) || have_expiry;
    } else if (eol - s >= 2 && s[0] == '#' && s[1] == 'h') {
      if (hash_line)
        error(&c, line, "a second #h line");
      else if (!parse_hash(s + 2, eol, want))
        error(&c, line, "#h line is not five hexadecimal words");
      hash_line = line;
    } else if (!only_blanks_or_comment(s, eol)) {
      const char *hash = memchr(s, '#', (size_t)(eol - s));
      hash_digits(md, s, hash ? hash : eol);
      data_line(&c, l, line, s, eol);
    }
    s = eol < end ? eol + 1 : end;
  }
  uint8_t got[20];
  unsigned got_len = 0;
  bool digest_ok = EVP_DigestFinal_ex(md, got, &got_len) && got_len == 20;
  EVP_MD_CTX_free(md);
  if (!c.failed && hash_line) {
    if (!digest_ok || memcmp(got, want, 20) != 0)
      error(&c, hash_line, "the #h SHA-1 does not match the list (damaged or edited file)");
    else
      l->hashed = true;
  } else if (!c.failed) {
    warning(&c, 0, "no #h line: the list's integrity cannot be checked");
  }
  if (!have_expiry && !c.failed)
    error(&c, 0, "no #@ line: the list has no expiry date");
  if (l->n == 0 && !c.failed)
    error(&c, 0, "no leap-second entries");
  if (c.failed)
    memset(l, 0, sizeof(*l));
  return !c.failed;
}

bool
LSC_Load(LSC_List *l, const char *path, MSG_Errors *errs)
{
  memset(l, 0, sizeof(*l));
  FILE *f = fopen(path, "re");
  if (!f) {
    if (errs)
      MSG_Add(&errs->errors, path, 0, "cannot open: %s", strerror(errno));
    return false;
  }
  char *buf = malloc(MAX_FILE + 1);
  size_t n = buf ? fread(buf, 1, MAX_FILE + 1, f) : 0;
  bool read_error = ferror(f);
  fclose(f);
  bool ok = false;
  if (!buf || read_error || n > MAX_FILE) {
    if (errs)
      MSG_Add(&errs->errors, path, 0, "%s",
              !buf         ? "out of memory"
              : read_error ? "read error"
                           : "larger than 1 MiB");
  } else {
    ok = LSC_Parse(l, path, buf, n, errs);
  }
  free(buf);
  return ok;
}

LSC_Expiry
LSC_CheckExpiry(const LSC_List *l, int64_t now)
{
  if (now >= l->expires)
    return LSC_EXPIRY_PAST;
  if (l->expires - now <= (int64_t)LSC_EXPIRY_WARN * 86400)
    return LSC_EXPIRY_SOON;
  return LSC_EXPIRY_OK;
}

void
LSC_At(const LSC_List *l, int64_t now, LSC_State *s)
{
  memset(s, 0, sizeof(*s));
  for (size_t i = 0; i < l->n; i++) {
    if (l->e[i].when <= now) {
      s->tai = l->e[i].tai;
    } else if (i > 0 && !s->dir) {
      s->next = l->e[i].when;
      s->dir = l->e[i].tai - l->e[i - 1].tai;
    }
  }
  if (l->n > 1)
    s->last = l->e[l->n - 1].when;
}

int
LSC_LeapIndicator(int64_t next, int dir, int64_t now)
{
  if (!dir || now >= next || next - now > LSC_ANNOUNCE)
    return 0;
  return dir > 0 ? 1 : 2;
}

double
LSC_SmearOffset(int64_t next, int dir, double interval, double now)
{
  double start = (double)next - interval;
  if (!dir || interval <= 0 || now <= start || now >= (double)next)
    return 0.0;
  return -(double)dir * (now - start) / interval;
}

void
LSC_FormatStamp(int64_t posix, char buf[13])
{
  struct tm tm;
  time_t t = (time_t)posix;
  if (!gmtime_r(&t, &tm) || tm.tm_year + 1900 > 9999 || tm.tm_year + 1900 < 0) {
    memcpy(buf, "000000000000", 13);
    return;
  }
  char tmp[64];
  snprintf(tmp, sizeof(tmp), "%04u%02u%02u%02u%02u", (unsigned)(tm.tm_year + 1900) % 10000u,
           (unsigned)(tm.tm_mon + 1) % 100u, (unsigned)tm.tm_mday % 100u,
           (unsigned)tm.tm_hour % 100u, (unsigned)tm.tm_min % 100u);
  memcpy(buf, tmp, 12);
  buf[12] = '\0';
}

void
LSC_Decide(const LSC_List *l, int voted_li, int64_t now, double smear_interval,
           LSC_Decision *out)
{
  memset(out, 0, sizeof(*out));
  if (l && l->n > 0 && LSC_CheckExpiry(l, now) != LSC_EXPIRY_PAST) {
    LSC_State st;
    LSC_At(l, now, &st);
    out->from_list = true;
    out->li = LSC_LeapIndicator(st.next, st.dir, now);
    if (out->li) {
      out->leap = st.next;
      out->dir = st.dir;
    }
  } else if (voted_li == 1 || voted_li == 2) {
    out->li = voted_li;
    out->dir = voted_li == 1 ? 1 : -1;
    out->leap = (now / 86400 + 1) * 86400; /* leaps happen at the end of a UTC day */
  }
  out->arm = out->dir;
  if (out->li && smear_interval > 0) {
    out->smear = smear_interval;
    out->li = 0; /* a smearing server never announces the leap it hides */
  }
}
