#include "statsfile.h"

#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#define DAY_S 86400

static const char *const kind_names[STF_KIND_COUNT] = {
    [STF_LOOPSTATS] = "loopstats",     [STF_PEERSTATS] = "peerstats",
    [STF_SYSSTATS] = "sysstats",       [STF_PROTOSTATS] = "protostats",
    [STF_CLOCKSTATS] = "clockstats",   [STF_RAWSTATS] = "rawstats",
    [STF_CRYPTOSTATS] = "cryptostats", [STF_TIMINGSTATS] = "timingstats",
    [STF_USESTATS] = "usestats",
};

static const char *const type_names[] = {
    [STF_TYPE_NONE] = "none",   [STF_TYPE_DAY] = "day",   [STF_TYPE_WEEK] = "week",
    [STF_TYPE_MONTH] = "month", [STF_TYPE_YEAR] = "year",
};

const char *
STF_KindName(STF_Kind k)
{
  return (unsigned)k < STF_KIND_COUNT ? kind_names[k] : "?";
}

bool
STF_KindByName(const char *name, STF_Kind *out)
{
  for (int i = 0; i < STF_KIND_COUNT; i++)
    if (strcmp(kind_names[i], name) == 0) {
      *out = (STF_Kind)i;
      return true;
    }
  return false;
}

bool
STF_KindWritten(STF_Kind k)
{
  return k <= STF_PROTOSTATS;
}

const char *
STF_TypeName(STF_Type t)
{
  return (unsigned)t <= STF_TYPE_YEAR ? type_names[t] : "?";
}

bool
STF_TypeByName(const char *name, STF_Type *out)
{
  for (int i = 0; i <= STF_TYPE_YEAR; i++)
    if (strcmp(type_names[i], name) == 0) {
      *out = (STF_Type)i;
      return true;
    }
  return false;
}

/* ---- calendar (proleptic Gregorian, days since 1970-01-01) ---- */

static int64_t
floor_div(int64_t a, int64_t b)
{
  int64_t q = a / b;
  return (a % b != 0 && (a < 0) != (b < 0)) ? q - 1 : q;
}

static int64_t
days_from_civil(int64_t y, int m, int d)
{
  y -= m <= 2;
  int64_t era = floor_div(y, 400);
  int64_t yoe = y - era * 400;
  int64_t doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
  int64_t doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
  return era * 146097 + doe - 719468;
}

static void
civil_from_days(int64_t z, int64_t *y, int *m, int *d)
{
  z += 719468;
  int64_t era = floor_div(z, 146097);
  int64_t doe = z - era * 146097;
  int64_t yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
  int64_t doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
  int64_t mp = (5 * doy + 2) / 153;
  *d = (int)(doy - (153 * mp + 2) / 5 + 1);
  *m = (int)(mp < 10 ? mp + 3 : mp - 9);
  *y = yoe + era * 400 + (*m <= 2);
}

/* ISO weekday 1 (Monday) .. 7 of a day number; 1970-01-01 was a Thursday. */
static int
iso_weekday(int64_t days)
{
  int64_t r = days + 3 - floor_div(days + 3, 7) * 7; /* 0 = Monday */
  return (int)r + 1;
}

/* Monday of ISO week 1 of ISO year y: the week holding 4 January. */
static int64_t
iso_year_start(int64_t y)
{
  int64_t jan4 = days_from_civil(y, 1, 4);
  return jan4 - (iso_weekday(jan4) - 1);
}

/* ---- lines ---- */

size_t
STF_FormatStamp(const struct timespec *t, char *buf, size_t size)
{
  int64_t days = floor_div((int64_t)t->tv_sec, DAY_S);
  int64_t sec = (int64_t)t->tv_sec - days * DAY_S;
  /* truncated to the millisecond, so that a second never reads as 86400.000 */
  long ms = t->tv_nsec / 1000000;
  int n = snprintf(buf, size, "%" PRId64 " %" PRId64 ".%03ld", days + STF_MJD_1970, sec, ms);
  return n < 0 ? 0 : (size_t)n;
}

/* The stamp, then the rest formatted by the caller into the remaining space. */
#define WITH_STAMP(t, buf, size, ...)                                                         \
  do {                                                                                        \
    size_t n_ = STF_FormatStamp(t, buf, size);                                                \
    int m_ = snprintf(n_ < size ? buf + n_ : NULL, n_ < size ? size - n_ : 0, __VA_ARGS__);   \
    return m_ < 0 ? 0 : n_ + (size_t)m_;                                                      \
  } while (0)

size_t
STF_FormatLoop(const struct timespec *t, const STF_Loop *r, char *buf, size_t size)
{
  WITH_STAMP(t, buf, size, " %.9f %.3f %.9f %.6f %d\n", r->offset, r->freq_ppm, r->jitter,
             r->wander_ppm, r->poll);
}

size_t
STF_FormatPeer(const struct timespec *t, const STF_Peer *r, char *buf, size_t size)
{
  WITH_STAMP(t, buf, size, " %s %x %.9f %.9f %.9f %.9f\n", r->addr, (unsigned)r->status,
             r->offset, r->delay, r->disp, r->jitter);
}

size_t
STF_FormatSys(const struct timespec *t, const STF_Sys *r, char *buf, size_t size)
{
  WITH_STAMP(t, buf, size,
             " %" PRIu64 " %" PRIu64 " %" PRIu64 " %" PRIu64 " %" PRIu64 " %" PRIu64
             " %" PRIu64 " %" PRIu64 " %" PRIu64 " %" PRIu64 " %" PRIu64 "\n",
             r->age, r->received, r->processed, r->newversion, r->oldversion, r->restricted,
             r->badlength, r->badauth, r->declined, r->limited, r->kodsent);
}

size_t
STF_FormatProto(const struct timespec *t, const STF_Proto *r, char *buf, size_t size)
{
  WITH_STAMP(t, buf, size, " %s %04x %02x %s\n", r->addr, (unsigned)r->status,
             (unsigned)r->code, r->event);
}

/* ---- generations ---- */

void
STF_Generation(STF_Type type, int64_t now, char *suffix, size_t size, int64_t *from,
               int64_t *until)
{
  int64_t days = floor_div(now, DAY_S), y;
  int m, d;
  civil_from_days(days, &y, &m, &d);
  switch (type) {
    case STF_TYPE_DAY:
      snprintf(suffix, size, ".%04" PRId64 "%02d%02d", y, m, d);
      *from = days * DAY_S;
      *until = (days + 1) * DAY_S;
      return;
    case STF_TYPE_WEEK: {
      int64_t iy = y + 1;
      while (iso_year_start(iy) > days)
        iy--;
      int64_t start = iso_year_start(iy);
      int64_t week = (days - start) / 7 + 1;
      snprintf(suffix, size, ".%04" PRId64 "w%02" PRId64, iy, week);
      *from = (start + (week - 1) * 7) * DAY_S;
      *until = (start + week * 7) * DAY_S;
      return;
    }
    case STF_TYPE_MONTH:
      snprintf(suffix, size, ".%04" PRId64 "%02d", y, m);
      *from = days_from_civil(y, m, 1) * DAY_S;
      *until = days_from_civil(m == 12 ? y + 1 : y, m == 12 ? 1 : m + 1, 1) * DAY_S;
      return;
    case STF_TYPE_YEAR:
      snprintf(suffix, size, ".%04" PRId64, y);
      *from = days_from_civil(y, 1, 1) * DAY_S;
      *until = days_from_civil(y + 1, 1, 1) * DAY_S;
      return;
    case STF_TYPE_NONE:
    default:
      if (size > 0)
        suffix[0] = '\0';
      *from = INT64_MIN;
      *until = INT64_MAX;
      return;
  }
}

bool
STF_FileName(const char *dir, const char *file, const char *suffix, char *buf, size_t size)
{
  size_t dl = strlen(dir);
  const char *sep = dl > 0 && dir[dl - 1] != '/' ? "/" : "";
  int n = snprintf(buf, size, "%s%s%s%s", dir, sep, file, suffix);
  return n >= 0 && (size_t)n < size;
}
