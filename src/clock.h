/* clock: the only module that reads the system clock, and (through a driver) the only one that
 * may ever change it. One interface, three drivers:
 *   real       reads CLOCK_REALTIME/CLOCK_MONOTONIC and applies steps and frequency changes
 *              with clock_adjtime(2). Created only by CLK_CreateSystem(false), i.e. outside
 *              no-adjust mode; no test ever creates it.
 *   null       (no-adjust, -x, the default in every test) reads the system clock like the
 *              real driver, records every adjustment it is asked for (CLK_GetStats) and
 *              applies none.
 *   simulated  (tests only) a virtual clock with an initial offset and a frequency error
 *              that the discipline steers; simulated true time moves only when the test calls
 *              CLK_SimAdvance, so hours run in milliseconds.
 *
 * Conventions: an offset is "true time minus our clock" as NTP measures it, so CLK_StepBy(c,
 * x) adds x seconds to the clock. A frequency correction is dimensionless (s/s, 1e-6 = 1
 * ppm): the clock then runs at (1 + intrinsic error + correction) times true rate.
 *
 * Threads: CLK_ReadNow and the const accessors may be called from any thread at once for the
 * system drivers; the adjusting calls belong to the thread that runs the discipline. */
#ifndef NTPG_CLOCK_H
#define NTPG_CLOCK_H

#include <stdbool.h>
#include <stdint.h>

#include "ntptime.h"

typedef struct CLK_Clock CLK_Clock;

#define CLK_MAX_FREQ                                                                          \
  500e-6 /* s/s: the largest correction any driver accepts (kernel limit)                     \
          */

/* The system clock: the real driver, or the null driver when no_adjust (never calls a
 * clock-modifying syscall). */
CLK_Clock *CLK_CreateSystem(bool no_adjust);
void CLK_Destroy(CLK_Clock *c);
/* Read real and monotonic time together. */
void CLK_ReadNow(const CLK_Clock *c, NTT_Now *now);
/* Measured precision of reading the clock, as a log2 of seconds (header field value). */
int CLK_PrecisionLog2(const CLK_Clock *c);
/* True for the null driver (and the simulated one, which never touches the system). */
bool CLK_IsNoAdjust(const CLK_Clock *c);
/* False only for the null driver: steps and frequencies asked of it change no clock, so the
 * discipline must not count them as corrections (the simulated driver applies them). */
bool CLK_AppliesCorrections(const CLK_Clock *c);
const char *CLK_Name(const CLK_Clock *c);

/* Step the clock by `offset` seconds (added to the clock). False if the driver failed. */
bool CLK_StepBy(CLK_Clock *c, double offset);
/* Set the frequency correction (s/s), clamped to +-CLK_MAX_FREQ. False if the driver failed.
 */
bool CLK_SetFrequency(CLK_Clock *c, double freq);
/* The correction last set (0 until the first CLK_SetFrequency). */
double CLK_GetFrequency(const CLK_Clock *c);

/* A leap second, as the kernel takes it (STA_INS / STA_DEL): dir +1 arms the insertion of
 * a second at the end of the current UTC day, -1 the deletion of its last second, 0 disarms.
 * The real driver sets the kernel's status bits (keeping the others); the null driver only
 * records the request; the simulated driver takes the leap itself when its clock reaches
 * the next UTC midnight (steps back one second for an insertion, forward for a deletion).
 * As in the kernel, the flag stays set after the leap and no other leap is taken until it
 * has been cleared (CLK_SetLeap(c, 0)).
 * False if the driver failed. */
bool CLK_SetLeap(CLK_Clock *c, int dir);
/* The leap last armed (0: none). */
int CLK_GetLeap(const CLK_Clock *c);

/* What was asked of a driver: what the null driver would have done. */
typedef struct {
  unsigned steps;     /* CLK_StepBy calls */
  double stepped;     /* their sum, s */
  unsigned freq_sets; /* CLK_SetFrequency calls */
  double freq;        /* the last correction, s/s */
  unsigned failures;  /* driver calls that failed (real driver only) */
  int leap;           /* the leap armed: +1 insert, -1 delete, 0 none */
  unsigned leap_sets; /* CLK_SetLeap calls that changed it */
  unsigned leaps;     /* leaps the simulated driver took */
} CLK_Stats;
void CLK_GetStats(const CLK_Clock *c, CLK_Stats *out);

/* ---- simulated driver (tests) ---- */
typedef struct {
  struct timespec start; /* true time at creation */
  double offset;         /* our clock minus true time at creation, s */
  double freq_error;     /* intrinsic frequency error, s/s (+50e-6: gains 50 us per s) */
  int precision_log2;    /* reported precision, e.g. -20 */
  int64_t true_leap;     /* POSIX time of a leap in true UTC (00:00:00 after it), 0: none */
  int true_leap_dir;     /* +1 a second inserted before true_leap, -1 deleted */
} CLK_SimParams;

CLK_Clock *CLK_CreateSimulated(const CLK_SimParams *p);
/* Let `seconds` (>= 0) of true time pass; the clock gains (error + correction) * seconds. */
void CLK_SimAdvance(CLK_Clock *c, double seconds);
/* Our clock minus true time now, s (the quantity a discipline drives to zero). */
double CLK_SimOffset(const CLK_Clock *c);
/* The true time now (real part: UTC as POSIX time, so after a true leap it has repeated or
 * skipped a second) and the monotonic time (true elapsed since creation). */
void CLK_SimTrueNow(const CLK_Clock *c, NTT_Now *now);
/* True seconds elapsed since creation. */
double CLK_SimElapsed(const CLK_Clock *c);

#endif
