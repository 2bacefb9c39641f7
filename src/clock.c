#include "clock.h"

#include <stdint.h>
#include <stdlib.h>

struct CLK_Clock {
  bool no_adjust;
  int precision_log2;
};

/* Smallest non-zero step between successive reads of CLOCK_REALTIME, over a bounded number of
 * tries; this is what a client can hope to resolve from our timestamps. */
static double
measure_precision(void)
{
  double best = 1.0;
  for (int i = 0; i < 200; i++) {
    struct timespec a, b;
    clock_gettime(CLOCK_REALTIME, &a);
    int spins = 0;
    do {
      clock_gettime(CLOCK_REALTIME, &b);
    } while (b.tv_sec == a.tv_sec && b.tv_nsec == a.tv_nsec && ++spins < 1000);
    double d = NTT_TimespecDiff(&b, &a);
    if (d > 0 && d < best)
      best = d;
  }
  return best;
}

CLK_Clock *
CLK_CreateSystem(bool no_adjust)
{
  CLK_Clock *c = calloc(1, sizeof(*c));
  if (!c)
    return NULL;
  c->no_adjust = no_adjust;
  c->precision_log2 = NTT_PrecisionLog2(measure_precision());
  return c;
}

void
CLK_Destroy(CLK_Clock *c)
{
  free(c);
}

void
CLK_ReadNow(const CLK_Clock *c, NTT_Now *now)
{
  (void)c;
  struct timespec mono;
  clock_gettime(CLOCK_REALTIME, &now->real);
  clock_gettime(CLOCK_MONOTONIC, &mono);
  now->mono_ns = (int64_t)mono.tv_sec * 1000000000 + mono.tv_nsec;
}

int
CLK_PrecisionLog2(const CLK_Clock *c)
{
  return c->precision_log2;
}

bool
CLK_IsNoAdjust(const CLK_Clock *c)
{
  return c->no_adjust;
}

const char *
CLK_Name(const CLK_Clock *c)
{
  return c->no_adjust ? "system (no-adjust)" : "system";
}
