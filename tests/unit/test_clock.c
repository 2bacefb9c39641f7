/* clock: the simulated driver takes an armed leap second at its own UTC midnight as the
 * kernel does, and true UTC repeats (or skips) a second at a configured true leap; the
 * null driver only records what it is asked. No test here touches the system clock. */
#include "clock.h"

#include <math.h>

#include "harness.h"

#define LEAP 1814400000LL /* 2027-07-01 00:00:00 UTC */

static CLK_Clock *
sim_before_leap(double seconds_before, int true_dir)
{
  double start = (double)LEAP - seconds_before, whole = floor(start);
  CLK_SimParams p = {
      .start = {.tv_sec = (time_t)whole, .tv_nsec = lround((start - whole) * 1e9)},
      .precision_log2 = -20,
      .true_leap = true_dir ? LEAP : 0,
      .true_leap_dir = true_dir};
  return CLK_CreateSimulated(&p);
}

static double
reading(const CLK_Clock *c)
{
  NTT_Now now;
  CLK_ReadNow(c, &now);
  return (double)now.real.tv_sec + now.real.tv_nsec * 1e-9;
}

static double
true_utc(const CLK_Clock *c)
{
  NTT_Now now;
  CLK_SimTrueNow(c, &now);
  return (double)now.real.tv_sec + now.real.tv_nsec * 1e-9;
}

/* Armed for the insertion true UTC makes: both repeat a second, the error stays 0. */
static void
test_clk_sim_leap_taken(void)
{
  CLK_Clock *c = sim_before_leap(10.5, 1);
  TEST_CHECK(CLK_SetLeap(c, 1));
  TEST_EQ_INT(CLK_GetLeap(c), 1);
  CLK_SimAdvance(c, 10.0); /* 0.5 s before midnight */
  TEST_CHECK(fabs(reading(c) - (LEAP - 0.5)) < 1e-6);
  TEST_CHECK(fabs(CLK_SimOffset(c)) < 1e-9);
  CLK_SimAdvance(c, 1.0); /* 0.5 s into the inserted second: both read 23:59:59.5 again */
  TEST_CHECK(fabs(true_utc(c) - (LEAP - 0.5)) < 1e-6);
  TEST_CHECK(fabs(reading(c) - (LEAP - 0.5)) < 1e-6);
  TEST_CHECK(fabs(CLK_SimOffset(c)) < 1e-9);
  CLK_SimAdvance(c, 1.0);
  TEST_CHECK(fabs(reading(c) - (LEAP + 0.5)) < 1e-6);
  CLK_Stats st;
  CLK_GetStats(c, &st);
  TEST_EQ_INT(st.leaps, 1);
  TEST_EQ_INT(st.leap, 1);    /* the flag stays until cleared, as in the kernel (TIME_WAIT) */
  CLK_SimAdvance(c, 86400.0); /* still set a day later: no second leap */
  CLK_GetStats(c, &st);
  TEST_EQ_INT(st.leaps, 1);
  TEST_CHECK(fabs(CLK_SimOffset(c)) < 1e-9);
  TEST_CHECK(CLK_SetLeap(c, 0));
  CLK_Destroy(c);
}

/* Not armed: after the true leap our clock is a second ahead of UTC. */
static void
test_clk_sim_leap_missed(void)
{
  CLK_Clock *c = sim_before_leap(10.0, 1);
  CLK_SimAdvance(c, 20.0);
  TEST_CHECK(fabs(CLK_SimOffset(c) - 1.0) < 1e-9);
  CLK_Destroy(c);
}

/* A deletion: the last second of the day is skipped by both. */
static void
test_clk_sim_leap_deleted(void)
{
  CLK_Clock *c = sim_before_leap(10.0, -1);
  TEST_CHECK(CLK_SetLeap(c, -1));
  CLK_SimAdvance(c, 9.5); /* 23:59:59.5 does not exist: both read 00:00:00.5 */
  TEST_CHECK(fabs(true_utc(c) - (LEAP + 0.5)) < 1e-6);
  TEST_CHECK(fabs(reading(c) - (LEAP + 0.5)) < 1e-6);
  TEST_CHECK(fabs(CLK_SimOffset(c)) < 1e-9);
  CLK_Destroy(c);
}

/* Disarmed before midnight: nothing happens. */
static void
test_clk_sim_leap_disarmed(void)
{
  CLK_Clock *c = sim_before_leap(10.0, 0);
  TEST_CHECK(CLK_SetLeap(c, 1));
  TEST_CHECK(CLK_SetLeap(c, 0));
  CLK_SimAdvance(c, 20.0);
  TEST_CHECK(fabs(CLK_SimOffset(c)) < 1e-9);
  CLK_Stats st;
  CLK_GetStats(c, &st);
  TEST_EQ_INT(st.leaps, 0);
  TEST_EQ_INT(st.leap_sets, 2);
  CLK_Destroy(c);
}

static void
test_clk_null_driver_records(void)
{
  CLK_Clock *c = CLK_CreateSystem(true); /* no-adjust: never calls adjtimex */
  TEST_CHECK(CLK_IsNoAdjust(c));
  TEST_CHECK(CLK_SetLeap(c, 1));
  TEST_CHECK(CLK_SetLeap(c, 1)); /* unchanged: not counted again */
  CLK_Stats st;
  CLK_GetStats(c, &st);
  TEST_EQ_INT(st.leap, 1);
  TEST_EQ_INT(st.leap_sets, 1);
  TEST_EQ_INT(st.failures, 0);
  CLK_Destroy(c);
}

TEST_MAIN(TEST_CASE(test_clk_sim_leap_taken), TEST_CASE(test_clk_sim_leap_missed),
          TEST_CASE(test_clk_sim_leap_deleted), TEST_CASE(test_clk_sim_leap_disarmed),
          TEST_CASE(test_clk_null_driver_records))
