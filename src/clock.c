#include "clock.h"

#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <sys/timex.h>

typedef enum { DRV_REAL = 0, DRV_NULL, DRV_SIM } DriverKind;

/* One small table per driver: the only place where the kinds differ. */
typedef struct {
  const char *name;
  void (*read_now)(const CLK_Clock *c, NTT_Now *now);
  bool (*step)(CLK_Clock *c, double offset);
  bool (*set_freq)(CLK_Clock *c, double freq);
  bool (*set_leap)(CLK_Clock *c, int dir);
} Driver;

struct CLK_Clock {
  const Driver *drv;
  DriverKind kind;
  int precision_log2;
  CLK_Stats stats;
  /* simulated driver only */
  struct timespec sim_start;
  double sim_elapsed;    /* true seconds since creation */
  double sim_offset;     /* our clock minus true time */
  double sim_error;      /* intrinsic frequency error */
  int64_t sim_true_leap; /* true UTC's leap (POSIX), and its direction */
  int sim_true_leap_dir;
  int64_t sim_leap_at; /* our clock takes the armed leap at this POSIX midnight */
  bool sim_leap_wait;  /* taken; like the kernel's TIME_WAIT, none again until disarmed */
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

static double
clamp_freq(double f)
{
  if (f > CLK_MAX_FREQ)
    return CLK_MAX_FREQ;
  return f < -CLK_MAX_FREQ ? -CLK_MAX_FREQ : f;
}

static struct timespec
timespec_add(struct timespec t, double seconds)
{
  double whole = floor(seconds);
  long ns = t.tv_nsec + lround((seconds - whole) * 1e9);
  t.tv_sec += (time_t)whole;
  while (ns >= 1000000000L) {
    ns -= 1000000000L;
    t.tv_sec++;
  }
  t.tv_nsec = ns;
  return t;
}

/* ---- system clock reading (real and null drivers) ---- */

static void
system_read_now(const CLK_Clock *c, NTT_Now *now)
{
  (void)c;
  struct timespec mono;
  clock_gettime(CLOCK_REALTIME, &now->real);
  clock_gettime(CLOCK_MONOTONIC, &mono);
  now->mono_ns = (int64_t)mono.tv_sec * 1000000000 + mono.tv_nsec;
}

/* ---- real driver: clock_adjtime(2). Reached only outside no-adjust mode. ---- */

static bool
real_step(CLK_Clock *c, double offset)
{
  (void)c;
  struct timex tx = {.modes = ADJ_SETOFFSET | ADJ_NANO};
  double whole = floor(offset);
  tx.time.tv_sec = (time_t)whole;
  tx.time.tv_usec = lround((offset - whole) * 1e9); /* ns with ADJ_NANO, in [0, 1e9) */
  if (tx.time.tv_usec >= 1000000000L) {
    tx.time.tv_usec -= 1000000000L;
    tx.time.tv_sec++;
  }
  return clock_adjtime(CLOCK_REALTIME, &tx) >= 0;
}

static bool
real_set_freq(CLK_Clock *c, double freq)
{
  (void)c;
  /* timex.freq is ppm with a 16-bit binary fraction */
  struct timex tx = {.modes = ADJ_FREQUENCY, .freq = lround(freq * 1e6 * 65536.0)};
  return clock_adjtime(CLOCK_REALTIME, &tx) >= 0;
}

static bool
real_set_leap(CLK_Clock *c, int dir)
{
  (void)c;
  struct timex tx = {.modes = 0};
  if (adjtimex(&tx) < 0)
    return false;
  int status = tx.status & ~(STA_INS | STA_DEL);
  status |= dir > 0 ? STA_INS : dir < 0 ? STA_DEL : 0;
  tx = (struct timex){.modes = ADJ_STATUS, .status = status};
  return adjtimex(&tx) >= 0;
}

/* ---- null driver: computes everything, touches nothing ---- */

static bool
null_step(CLK_Clock *c, double offset)
{
  (void)c;
  (void)offset;
  return true;
}

static bool
null_set_freq(CLK_Clock *c, double freq)
{
  (void)c;
  (void)freq;
  return true;
}

static bool
null_set_leap(CLK_Clock *c, int dir)
{
  (void)c;
  (void)dir;
  return true;
}

/* ---- simulated driver ---- */

/* The simulated clock's reading as POSIX seconds. */
static double
sim_reading(const CLK_Clock *c)
{
  return (double)c->sim_start.tv_sec + c->sim_start.tv_nsec * 1e-9 + c->sim_elapsed +
         c->sim_offset;
}

static bool
sim_set_leap(CLK_Clock *c, int dir)
{
  /* like the kernel: at the first UTC midnight of our own clock from now; once taken, no
   * other until the flag has been cleared */
  if (!dir)
    c->sim_leap_wait = false;
  c->sim_leap_at =
      dir && !c->sim_leap_wait ? ((int64_t)floor(sim_reading(c)) / 86400 + 1) * 86400 : 0;
  return true;
}

/* Take an armed leap once our clock has reached its midnight (the last second of the day
 * for a deletion). */
static void
sim_take_leap(CLK_Clock *c)
{
  int dir = c->stats.leap;
  if (!dir || !c->sim_leap_at || sim_reading(c) < (double)c->sim_leap_at - (dir < 0))
    return;
  c->sim_offset -= dir;
  c->stats.leaps++;
  c->sim_leap_at = 0;
  c->sim_leap_wait = true;
}

static void
sim_read_now(const CLK_Clock *c, NTT_Now *now)
{
  now->real = timespec_add(c->sim_start, c->sim_elapsed + c->sim_offset);
  now->mono_ns = (int64_t)llround(c->sim_elapsed * 1e9);
}

static bool
sim_step(CLK_Clock *c, double offset)
{
  c->sim_offset += offset;
  return true;
}

static bool
sim_set_freq(CLK_Clock *c, double freq)
{
  (void)c;
  (void)freq; /* stats.freq, set by the caller, is what CLK_SimAdvance applies */
  return true;
}

static const Driver real_driver = {"system", system_read_now, real_step, real_set_freq,
                                   real_set_leap};
static const Driver null_driver = {"system (no-adjust)", system_read_now, null_step,
                                   null_set_freq, null_set_leap};
static const Driver sim_driver = {"simulated", sim_read_now, sim_step, sim_set_freq,
                                  sim_set_leap};

CLK_Clock *
CLK_CreateSystem(bool no_adjust)
{
  CLK_Clock *c = calloc(1, sizeof(*c));
  if (!c)
    return NULL;
  c->kind = no_adjust ? DRV_NULL : DRV_REAL;
  c->drv = no_adjust ? &null_driver : &real_driver;
  c->precision_log2 = NTT_PrecisionLog2(measure_precision());
  return c;
}

CLK_Clock *
CLK_CreateSimulated(const CLK_SimParams *p)
{
  CLK_Clock *c = calloc(1, sizeof(*c));
  if (!c)
    return NULL;
  c->kind = DRV_SIM;
  c->drv = &sim_driver;
  c->precision_log2 = p->precision_log2;
  c->sim_start = p->start;
  c->sim_offset = p->offset;
  c->sim_error = p->freq_error;
  c->sim_true_leap = p->true_leap;
  c->sim_true_leap_dir = p->true_leap_dir;
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
  c->drv->read_now(c, now);
}

int
CLK_PrecisionLog2(const CLK_Clock *c)
{
  return c->precision_log2;
}

bool
CLK_IsNoAdjust(const CLK_Clock *c)
{
  return c->kind != DRV_REAL;
}

bool
CLK_AppliesCorrections(const CLK_Clock *c)
{
  return c->kind != DRV_NULL;
}

const char *
CLK_Name(const CLK_Clock *c)
{
  return c->drv->name;
}

bool
CLK_StepBy(CLK_Clock *c, double offset)
{
  c->stats.steps++;
  c->stats.stepped += offset;
  if (c->drv->step(c, offset))
    return true;
  c->stats.failures++;
  return false;
}

bool
CLK_SetFrequency(CLK_Clock *c, double freq)
{
  freq = clamp_freq(freq);
  c->stats.freq_sets++;
  if (!c->drv->set_freq(c, freq)) {
    c->stats.failures++;
    return false;
  }
  c->stats.freq = freq;
  return true;
}

double
CLK_GetFrequency(const CLK_Clock *c)
{
  return c->stats.freq;
}

bool
CLK_SetLeap(CLK_Clock *c, int dir)
{
  dir = dir > 0 ? 1 : dir < 0 ? -1 : 0;
  if (dir == c->stats.leap)
    return true;
  if (!c->drv->set_leap(c, dir)) {
    c->stats.failures++;
    return false;
  }
  c->stats.leap = dir;
  c->stats.leap_sets++;
  return true;
}

int
CLK_GetLeap(const CLK_Clock *c)
{
  return c->stats.leap;
}

void
CLK_GetStats(const CLK_Clock *c, CLK_Stats *out)
{
  *out = c->stats;
}

void
CLK_SimAdvance(CLK_Clock *c, double seconds)
{
  if (c->kind != DRV_SIM || !(seconds > 0))
    return;
  c->sim_elapsed += seconds;
  c->sim_offset += (c->sim_error + c->stats.freq) * seconds;
  sim_take_leap(c);
}

/* True UTC (POSIX) for a continuous count t: a second repeated after an insertion, skipped
 * before a deletion. */
static double
sim_true_posix(const CLK_Clock *c, double t)
{
  int dir = c->sim_true_leap_dir;
  if (!c->sim_true_leap || !dir || t < (double)c->sim_true_leap - (dir < 0))
    return t;
  return t - dir;
}

double
CLK_SimOffset(const CLK_Clock *c)
{
  /* against true UTC: a leap that true time took and we did not is an error of a second */
  double t = (double)c->sim_start.tv_sec + c->sim_elapsed;
  return c->sim_offset + (t - sim_true_posix(c, t));
}

void
CLK_SimTrueNow(const CLK_Clock *c, NTT_Now *now)
{
  double t = (double)c->sim_start.tv_sec + c->sim_elapsed;
  now->real = timespec_add(c->sim_start, sim_true_posix(c, t) - (double)c->sim_start.tv_sec);
  now->mono_ns = (int64_t)llround(c->sim_elapsed * 1e9);
}

double
CLK_SimElapsed(const CLK_Clock *c)
{
  return c->sim_elapsed;
}
