/* sysvars: the system variables our replies carry (RFC 5905 section 11: leap, stratum,
 * precision, reference ID and time, root delay and dispersion). One plain value shared by
 * the modules that produce it (discipline, client, runtime), serve it (server) and show it
 * (control), so that none of them has to include another for it. No functions. */
#ifndef NTPG_SYSVARS_H
#define NTPG_SYSVARS_H

#include <stdint.h>

#include "ntptime.h"

/* Published by the main thread as a whole value. */
typedef struct {
  uint8_t leap;     /* PKT_LEAP_*; PKT_LEAP_UNSYNC while not synchronized */
  uint8_t stratum;  /* 1..15 synchronized; 16 = unsynchronized (sent as 0) */
  int8_t precision; /* log2 s */
  uint32_t refid;
  NTT_Stamp ref_ts;  /* when the clock was last set or corrected */
  double root_delay; /* s */
  double root_disp;  /* s, at update_mono_ns; grows by phi per second after it */
  int64_t update_mono_ns;
  double phi; /* s/s: that growth (tinker dispersion); 0 (unset): PHI, 15e-6 */
} SYS_Vars;

#endif
