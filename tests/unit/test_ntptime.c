/* Unit tests for ntptime: era handling around 2036, conversions, modular arithmetic. */
#include "ntptime.h"

#include <math.h>

#include "harness.h"

/* Unix times on either side of the 2036 era wrap (2036-02-07 06:28:16 UTC = 2085978496). */
#define ERA1_UNIX 2085978496LL
/* 2100-01-01 00:00:00 UTC (python3: calendar.timegm((2100,1,1,0,0,0))). */
#define Y2100_UNIX 4102444800LL
/* 1950-01-01 and 1980-01-01 00:00:00 UTC. */
#define Y1950_UNIX (-631152000LL)
#define Y1980_UNIX 315532800LL

/* Uniform-ish integer in [lo, hi] (hi - lo < 2^63). */
static int64_t
rng_range(int64_t lo, int64_t hi)
{
  return lo + (int64_t)(test_rng() % (uint64_t)(hi - lo + 1));
}

static struct timespec
ts_make(int64_t sec, long nsec)
{
  struct timespec ts;
  ts.tv_sec = (time_t)sec;
  ts.tv_nsec = nsec;
  return ts;
}

static NTT_Stamp
stamp_of(int64_t unix_sec, long nsec)
{
  struct timespec ts = ts_make(unix_sec, nsec);
  return NTT_FromTimespec(&ts);
}

static NTT_Stamp
stamp_make(uint32_t sec, uint32_t frac)
{
  return ((uint64_t)sec << 32) | frac;
}

static void
test_ntt_unix_epoch_is_ntp_offset(void)
{
  TEST_CHECK(stamp_of(0, 0) == stamp_make(2208988800U, 0));
}

static void
test_ntt_last_second_of_era0(void)
{
  TEST_CHECK(stamp_of(ERA1_UNIX - 1, 0) == stamp_make(0xffffffffU, 0));
}

static void
test_ntt_era1_starts_at_zero(void)
{
  TEST_CHECK(stamp_of(ERA1_UNIX, 0) == stamp_make(0, 0));
}

static void
test_ntt_first_second_after_era1_start(void)
{
  TEST_CHECK(stamp_of(ERA1_UNIX + 1, 0) == stamp_make(1, 0));
}

static void
test_ntt_year_2100_wraps_into_era1(void)
{
  /* 2100 is 6311433600 s after 1900; minus one era (2^32) leaves 2016466304. */
  TEST_CHECK(stamp_of(Y2100_UNIX, 0) == stamp_make(2016466304U, 0));
}

static void
test_ntt_half_second_fraction(void)
{
  TEST_CHECK(stamp_of(0, 500000000) == stamp_make(2208988800U, 0x80000000U));
}

static void
test_ntt_unnormalised_nsec_accepted(void)
{
  struct timespec neg = ts_make(1, -1), over = ts_make(0, 1999999999L);
  TEST_CHECK(NTT_FromTimespec(&neg) == stamp_of(0, 999999999L));
  TEST_CHECK(NTT_FromTimespec(&over) == stamp_of(1, 999999999L));
}

static void
check_to_timespec(NTT_Stamp s, int64_t pivot_unix, int64_t want_sec, long want_nsec)
{
  struct timespec pivot = ts_make(pivot_unix, 0), out;
  NTT_ToTimespec(s, &pivot, &out);
  TEST_EQ_INT(out.tv_sec, want_sec);
  TEST_EQ_INT(out.tv_nsec, want_nsec);
}

static void
test_ntt_to_timespec_around_2036_wrap(void)
{
  int64_t pivot = ERA1_UNIX - 1000;
  check_to_timespec(stamp_make(0xffffffffU, 0), pivot, ERA1_UNIX - 1, 0);
  check_to_timespec(stamp_make(0, 0), pivot, ERA1_UNIX, 0);
  check_to_timespec(stamp_make(1, 0), pivot, ERA1_UNIX + 1, 0);
}

static void
test_ntt_to_timespec_year_2100(void)
{
  check_to_timespec(stamp_of(Y2100_UNIX, 0), Y2100_UNIX - 86400, Y2100_UNIX, 0);
}

static void
test_ntt_to_timespec_1970(void)
{
  check_to_timespec(stamp_make(2208988800U, 0), 0, 0, 0);
}

static void
test_ntt_pivot_1950_gives_1900(void)
{
  /* Era offset 10 s is within 2^31 s of 1950 only in era 0: 1900-01-01 00:00:10. */
  check_to_timespec(stamp_make(10, 0), Y1950_UNIX, -NTT_UNIX_OFFSET + 10, 0);
}

static void
test_ntt_pivot_1980_gives_2036(void)
{
  /* The same era offset seen from 1980 is nearer to era 1: 2036-02-07 06:28:26. */
  check_to_timespec(stamp_make(10, 0), Y1980_UNIX, ERA1_UNIX + 10, 0);
}

static void
test_ntt_to_timespec_fraction_carries(void)
{
  /* 0xffffffff * 2^-32 s rounds to a full second: must carry, not give tv_nsec = 1e9. */
  check_to_timespec(stamp_make(2208988800U, 0xffffffffU), 0, 1, 0);
}

static void
test_ntt_nanoseconds_roundtrip_exactly(void)
{
  static const long ns[] = {0, 1, 2, 3, 499999999, 500000000, 500000001, 999999998, 999999999};
  for (size_t i = 0; i < sizeof(ns) / sizeof(ns[0]); i++)
    check_to_timespec(stamp_of(1700000000, ns[i]), 1700000000, 1700000000, ns[i]);
}

static void
test_ntt_roundtrip_within_half_era_of_pivot(void)
{
  /* Property: any time within +-(2^31 - 1) s of the pivot comes back exactly, for pivots
   * spread from 1900 to beyond 2100. */
  test_rng_state = harness_seed;
  for (int i = 0; i < 20000; i++) {
    int64_t pivot = rng_range(-NTT_UNIX_OFFSET, 3 * NTT_ERA_SECONDS);
    int64_t sec = pivot + rng_range(-2147483647LL, 2147483647LL);
    long nsec = (long)rng_range(0, 999999999);
    check_to_timespec(stamp_of(sec, nsec), pivot, sec, nsec);
  }
}

static void
test_ntt_diff_across_wrap_small_positive(void)
{
  NTT_Stamp after = stamp_of(ERA1_UNIX + 1, 0), before = stamp_of(ERA1_UNIX - 1, 0);
  TEST_NEAR(NTT_Diff(after, before), 2.0, 1e-9);
}

static void
test_ntt_diff_across_wrap_small_negative(void)
{
  NTT_Stamp after = stamp_of(ERA1_UNIX, 250000000), before = stamp_of(ERA1_UNIX - 1, 0);
  TEST_NEAR(NTT_Diff(before, after), -1.25, 1e-9);
}

static void
test_ntt_diff_resolves_one_fraction_unit(void)
{
  NTT_Stamp a = stamp_make(5, 1), b = stamp_make(5, 0);
  TEST_NEAR(NTT_Diff(a, b), 1.0 / 4294967296.0, 1e-15);
  TEST_NEAR(NTT_Diff(b, a), -1.0 / 4294967296.0, 1e-15);
}

static void
test_ntt_diff_extremes_of_signed_range(void)
{
  /* a - b = 2^63 units is the most negative value; 2^63 - 1 the most positive. */
  TEST_NEAR(NTT_Diff(UINT64_C(1) << 63, 0), -2147483648.0, 1e-6);
  TEST_NEAR(NTT_Diff((UINT64_C(1) << 63) - 1, 0), 2147483648.0, 1e-6);
}

static void
test_ntt_add_across_wrap(void)
{
  NTT_Stamp s = NTT_Add(stamp_of(ERA1_UNIX - 1, 0), 1.5);
  TEST_CHECK(s == stamp_make(0, 0x80000000U));
}

static void
test_ntt_add_negative_across_wrap(void)
{
  NTT_Stamp s = NTT_Add(stamp_make(0, 0x40000000U), -0.5);
  TEST_CHECK(s == stamp_make(0xffffffffU, 0xc0000000U));
}

static void
test_ntt_add_then_diff_recovers_offset(void)
{
  test_rng_state = harness_seed ^ 0xadd;
  for (int i = 0; i < 10000; i++) {
    NTT_Stamp s = test_rng();
    double secs = (double)rng_range(-2000000000LL, 2000000000LL) +
                  (double)(test_rng() >> 11) / 9007199254740992.0;
    /* Large offsets lose sub-ns digits in the double itself; allow 1 us there. */
    TEST_NEAR(NTT_Diff(NTT_Add(s, secs), s), secs, 1e-6);
  }
}

static void
test_ntt_add_non_finite_leaves_stamp(void)
{
  NTT_Stamp s = stamp_make(123, 456);
  TEST_CHECK(NTT_Add(s, NAN) == s);
  TEST_CHECK(NTT_Add(s, INFINITY) == s);
  TEST_CHECK(NTT_Add(s, -INFINITY) == s);
}

static void
test_ntt_short_roundtrip(void)
{
  TEST_EQ_INT(NTT_ShortFromDouble(1.5), 0x00018000);
  TEST_NEAR(NTT_ShortToDouble(0x00018000), 1.5, 0);
  TEST_EQ_INT(NTT_ShortFromDouble(1.0 / 65536.0), 1);
  TEST_NEAR(NTT_ShortToDouble(0xffffffffU), 65535.0 + 65535.0 / 65536.0, 0);
}

static void
test_ntt_short_saturates_when_too_large(void)
{
  TEST_EQ_INT(NTT_ShortFromDouble(65536.0), 0xffffffffU);
  TEST_EQ_INT(NTT_ShortFromDouble(65535.99999999), 0xffffffffU);
  TEST_EQ_INT(NTT_ShortFromDouble(1e300), 0xffffffffU);
  TEST_EQ_INT(NTT_ShortFromDouble(INFINITY), 0xffffffffU);
}

static void
test_ntt_short_negative_and_nan_give_zero(void)
{
  TEST_EQ_INT(NTT_ShortFromDouble(-1.0), 0);
  TEST_EQ_INT(NTT_ShortFromDouble(-INFINITY), 0);
  TEST_EQ_INT(NTT_ShortFromDouble(NAN), 0);
  TEST_EQ_INT(NTT_ShortFromDouble(0.0), 0);
}

static void
test_ntt_timespec_diff_borrows_nanoseconds(void)
{
  struct timespec a = ts_make(10, 100000000), b = ts_make(9, 900000000);
  TEST_NEAR(NTT_TimespecDiff(&a, &b), 0.2, 1e-12);
  TEST_NEAR(NTT_TimespecDiff(&b, &a), -0.2, 1e-12);
}

static void
test_ntt_timespec_diff_keeps_ns_at_large_seconds(void)
{
  struct timespec a = ts_make(Y2100_UNIX, 1), b = ts_make(Y2100_UNIX, 0);
  TEST_NEAR(NTT_TimespecDiff(&a, &b), 1e-9, 1e-15);
}

static void
test_ntt_precision_log2_rounds_up(void)
{
  TEST_EQ_INT(NTT_PrecisionLog2(1e-6), -19);
  TEST_EQ_INT(NTT_PrecisionLog2(1e-9), -29);
  TEST_EQ_INT(NTT_PrecisionLog2(0.75), 0);
  TEST_EQ_INT(NTT_PrecisionLog2(3.0), 2);
}

static void
test_ntt_precision_log2_exact_powers(void)
{
  TEST_EQ_INT(NTT_PrecisionLog2(1.0), 0);
  TEST_EQ_INT(NTT_PrecisionLog2(ldexp(1.0, -20)), -20);
  TEST_EQ_INT(NTT_PrecisionLog2(ldexp(1.0, 5)), 5);
}

static void
test_ntt_precision_log2_clamps_to_int8(void)
{
  TEST_EQ_INT(NTT_PrecisionLog2(0.0), -128);
  TEST_EQ_INT(NTT_PrecisionLog2(-1.0), -128);
  TEST_EQ_INT(NTT_PrecisionLog2(NAN), -128);
  TEST_EQ_INT(NTT_PrecisionLog2(1e-300), -128);
  TEST_EQ_INT(NTT_PrecisionLog2(1e300), 127);
  TEST_EQ_INT(NTT_PrecisionLog2(INFINITY), 127);
}

TEST_MAIN(TEST_CASE(test_ntt_unix_epoch_is_ntp_offset),
          TEST_CASE(test_ntt_last_second_of_era0), TEST_CASE(test_ntt_era1_starts_at_zero),
          TEST_CASE(test_ntt_first_second_after_era1_start),
          TEST_CASE(test_ntt_year_2100_wraps_into_era1),
          TEST_CASE(test_ntt_half_second_fraction),
          TEST_CASE(test_ntt_unnormalised_nsec_accepted),
          TEST_CASE(test_ntt_to_timespec_around_2036_wrap),
          TEST_CASE(test_ntt_to_timespec_year_2100), TEST_CASE(test_ntt_to_timespec_1970),
          TEST_CASE(test_ntt_pivot_1950_gives_1900), TEST_CASE(test_ntt_pivot_1980_gives_2036),
          TEST_CASE(test_ntt_to_timespec_fraction_carries),
          TEST_CASE(test_ntt_nanoseconds_roundtrip_exactly),
          TEST_CASE(test_ntt_roundtrip_within_half_era_of_pivot),
          TEST_CASE(test_ntt_diff_across_wrap_small_positive),
          TEST_CASE(test_ntt_diff_across_wrap_small_negative),
          TEST_CASE(test_ntt_diff_resolves_one_fraction_unit),
          TEST_CASE(test_ntt_diff_extremes_of_signed_range),
          TEST_CASE(test_ntt_add_across_wrap), TEST_CASE(test_ntt_add_negative_across_wrap),
          TEST_CASE(test_ntt_add_then_diff_recovers_offset),
          TEST_CASE(test_ntt_add_non_finite_leaves_stamp), TEST_CASE(test_ntt_short_roundtrip),
          TEST_CASE(test_ntt_short_saturates_when_too_large),
          TEST_CASE(test_ntt_short_negative_and_nan_give_zero),
          TEST_CASE(test_ntt_timespec_diff_borrows_nanoseconds),
          TEST_CASE(test_ntt_timespec_diff_keeps_ns_at_large_seconds),
          TEST_CASE(test_ntt_precision_log2_rounds_up),
          TEST_CASE(test_ntt_precision_log2_exact_powers),
          TEST_CASE(test_ntt_precision_log2_clamps_to_int8))
