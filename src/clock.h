/* clock: the only module that reads the system clock, and (through a driver) the only one that
 * may ever change it. Drivers: "system" reads CLOCK_REALTIME/CLOCK_MONOTONIC; in no-adjust
 * mode (-x, the default in every test) every adjustment is computed and recorded but never
 * applied. A simulated driver for tests arrives with the clock discipline. */
#ifndef NTPG_CLOCK_H
#define NTPG_CLOCK_H

#include <stdbool.h>

#include "ntptime.h"

typedef struct CLK_Clock CLK_Clock;

/* The system clock. no_adjust: never call a clock-modifying syscall. */
CLK_Clock *CLK_CreateSystem(bool no_adjust);
void CLK_Destroy(CLK_Clock *c);
/* Read real and monotonic time together. */
void CLK_ReadNow(const CLK_Clock *c, NTT_Now *now);
/* Measured precision of reading the clock, as a log2 of seconds (header field value). */
int CLK_PrecisionLog2(const CLK_Clock *c);
bool CLK_IsNoAdjust(const CLK_Clock *c);
const char *CLK_Name(const CLK_Clock *c);

#endif
