/* ntptime: NTP timestamp and short-format arithmetic. Pure: no clock is read here. */
#include "ntptime.h"

#include <math.h>

#define NS_PER_S 1000000000LL
#define FRAC_SCALE 4294967296.0 /* 2^32: one second in timestamp units */
#define SHORT_SCALE 65536.0     /* 2^16: one second in short-format units */
#define HALF_ERA 2147483648LL   /* 2^31 */
#define SIGN_BIT64 (UINT64_C(1) << 63)

/* Split a timespec into whole seconds and 0 <= ns < 1e9, so that callers may hand in a
 * tv_nsec that is negative or past a second (e.g. after their own arithmetic). */
static void
normalise(const struct timespec *ts, int64_t *sec, int64_t *nsec)
{
  int64_t s = (int64_t)ts->tv_sec, ns = (int64_t)ts->tv_nsec;

  s += ns / NS_PER_S;
  ns %= NS_PER_S;
  if (ns < 0) {
    ns += NS_PER_S;
    s--;
  }
  *sec = s;
  *nsec = ns;
}

/* Nanoseconds -> 2^-32 units, rounded to nearest; ns < 1e9 keeps the result below 2^32. */
static uint32_t
frac_from_ns(int64_t ns)
{
  return (uint32_t)((((uint64_t)ns << 32) + (uint64_t)(NS_PER_S / 2)) / (uint64_t)NS_PER_S);
}

/* 2^-32 units -> nanoseconds, rounded to nearest; may return exactly 1e9 (caller carries). */
static int64_t
ns_from_frac(uint32_t frac)
{
  return (int64_t)(((uint64_t)frac * (uint64_t)NS_PER_S + (UINT64_C(1) << 31)) >> 32);
}

NTT_Stamp
NTT_FromTimespec(const struct timespec *ts)
{
  int64_t sec, ns;

  normalise(ts, &sec, &ns);
  /* Taking the seconds modulo 2^32 is exactly what puts a date into its era. */
  uint32_t era_sec = (uint32_t)(uint64_t)(sec + NTT_UNIX_OFFSET);
  return ((uint64_t)era_sec << 32) | frac_from_ns(ns);
}

void
NTT_ToTimespec(NTT_Stamp s, const struct timespec *pivot, struct timespec *out)
{
  int64_t pivot_ntp = (int64_t)pivot->tv_sec + NTT_UNIX_OFFSET;
  uint32_t era_sec = (uint32_t)(s >> 32);
  /* Signed distance from the pivot's era offset, in [-2^31, 2^31): the nearest era wins.
   * Done by hand because casting a uint32 above INT32_MAX to int32 is not portable. */
  int64_t dist = (int64_t)(uint32_t)(era_sec - (uint32_t)(uint64_t)pivot_ntp);
  if (dist >= HALF_ERA)
    dist -= NTT_ERA_SECONDS;

  int64_t sec = pivot_ntp + dist - NTT_UNIX_OFFSET;
  int64_t ns = ns_from_frac((uint32_t)s);
  if (ns == NS_PER_S) {
    sec++;
    ns = 0;
  }
  out->tv_sec = (time_t)sec;
  out->tv_nsec = (long)ns;
}

double
NTT_Diff(NTT_Stamp a, NTT_Stamp b)
{
  uint64_t d = a - b;

  /* Reinterpret the modular difference as signed without relying on an out-of-range cast. */
  if (d & SIGN_BIT64)
    return -(double)(UINT64_C(0) - d) / FRAC_SCALE;
  return (double)d / FRAC_SCALE;
}

NTT_Stamp
NTT_Add(NTT_Stamp s, double seconds)
{
  if (!isfinite(seconds))
    return s;
  /* Whole seconds and fraction separately: seconds * 2^32 would overflow int64 for spans near
   * 68 years, and only the seconds modulo 2^32 matter on the wire anyway. */
  double whole = floor(seconds);
  double frac = seconds - whole; /* in [0, 1) */
  double whole_mod = fmod(whole, FRAC_SCALE);
  if (whole_mod < 0)
    whole_mod += FRAC_SCALE;
  uint64_t delta = ((uint64_t)whole_mod << 32) + (uint64_t)llround(frac * FRAC_SCALE);
  return s + delta;
}

NTT_Short
NTT_ShortFromDouble(double seconds)
{
  if (!(seconds > 0.0)) /* negative, zero and NaN */
    return 0;
  double units = round(seconds * SHORT_SCALE);
  if (units >= 4294967295.0)
    return 0xffffffffU;
  return (NTT_Short)units;
}

double
NTT_ShortToDouble(NTT_Short s)
{
  return s / SHORT_SCALE;
}

double
NTT_TimespecDiff(const struct timespec *a, const struct timespec *b)
{
  /* Integer differences first so that large tv_sec values do not eat the nanoseconds. */
  int64_t dsec = (int64_t)a->tv_sec - (int64_t)b->tv_sec;
  int64_t dns = (int64_t)a->tv_nsec - (int64_t)b->tv_nsec;
  return (double)dsec + (double)dns / (double)NS_PER_S;
}

int
NTT_PrecisionLog2(double seconds)
{
  /* The header field is an int8; anything outside clamps to its ends. A non-positive
   * precision is the limit of ever finer clocks, so it clamps low. */
  if (!(seconds > 0.0))
    return INT8_MIN;
  if (isinf(seconds))
    return INT8_MAX;

  int exp;
  double mant = frexp(seconds, &exp); /* seconds = mant * 2^exp, 0.5 <= mant < 1 */
  int log2_up = mant == 0.5 ? exp - 1 : exp;
  if (log2_up < INT8_MIN)
    return INT8_MIN;
  if (log2_up > INT8_MAX)
    return INT8_MAX;
  return log2_up;
}
