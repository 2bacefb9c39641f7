/* ntptime: NTP time formats (64-bit timestamps, 32-bit short format), era handling and the
 * pair of readings (real, monotonic) that the event loop hands to every pure core as `now`.
 * Pure: nothing here reads a clock. */
#ifndef NTPG_NTPTIME_H
#define NTPG_NTPTIME_H

#include <stdbool.h>
#include <stdint.h>
#include <time.h>

/* On-wire timestamp: era-relative seconds since 1900 in the high 32 bits, binary fraction low.
 */
typedef uint64_t NTT_Stamp;
/* On-wire short format: 16.16 unsigned seconds (root delay, root dispersion). */
typedef uint32_t NTT_Short;

/* Seconds from 1900-01-01 (NTP era 0) to 1970-01-01 (Unix epoch). */
#define NTT_UNIX_OFFSET 2208988800LL
/* Era 1 begins at Unix time 2085978496 (2036-02-07 06:28:16 UTC). */
#define NTT_ERA_SECONDS 4294967296LL

/* One reading of both clocks, taken once per wakeup (or from the kernel RX timestamp). */
typedef struct {
  struct timespec real; /* CLOCK_REALTIME (or simulated) */
  int64_t mono_ns;      /* CLOCK_MONOTONIC in ns: rate limits and timers use only this */
} NTT_Now;

/* Unix time -> on-wire timestamp (wraps into the right era; exact to the nanosecond's 2^-32).
 */
NTT_Stamp NTT_FromTimespec(const struct timespec *ts);
/* On-wire timestamp -> Unix time, choosing the era that puts it within +-2^31 s of `pivot`. */
void NTT_ToTimespec(NTT_Stamp s, const struct timespec *pivot, struct timespec *out);
/* Signed difference a - b in seconds, computed modulo 2^64 (correct across era boundaries
 * while |a - b| < 68 years). */
double NTT_Diff(NTT_Stamp a, NTT_Stamp b);
/* Add a signed number of seconds to a timestamp (modular). */
NTT_Stamp NTT_Add(NTT_Stamp s, double seconds);
/* Seconds <-> short format; negative input becomes 0, too large saturates at 0xffffffff. */
NTT_Short NTT_ShortFromDouble(double seconds);
double NTT_ShortToDouble(NTT_Short s);
/* Timespec difference a - b in seconds. */
double NTT_TimespecDiff(const struct timespec *a, const struct timespec *b);
/* log2 of a precision in seconds, rounded up (e.g. 1e-6 s -> -19), as sent in the header. */
int NTT_PrecisionLog2(double seconds);

#endif
