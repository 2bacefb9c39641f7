/* discipline: the NTP mitigation algorithms and the clock discipline (RFC 5905 sections 10
 * to 12, with ntpd's working constants): per-source clock filter, selection (intersection),
 * cluster, combine, the hybrid PLL/FLL loop with step/panic handling and system poll
 * adjustment, the system variables we serve (SYS_Vars, sysvars.h) and the drift file.
 *
 * The algorithms are pure functions of their inputs and of `now` (monotonic seconds; see
 * DSC_Seconds); they never read a clock, log or allocate. DSC_System is the thin stateful
 * glue the daemon uses: it runs selection and the loop on a snapshot of candidates and
 * applies the result through the clock driver it was given (CLK_StepBy, CLK_SetFrequency).
 * The drift-file readers/writers at the end are the only I/O here.
 *
 * Units: seconds and s/s throughout. An offset is "true time minus our clock" (as measured
 * by NTP): a positive offset means our clock is behind. A frequency is the correction we
 * apply (s/s); a clock that gains 50 ppm is corrected with -50e-6. */
#ifndef NTPG_DISCIPLINE_H
#define NTPG_DISCIPLINE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "clock.h"
#include "config.h"
#include "ntptime.h"
#include "sysvars.h"

#define DSC_PHI 15e-6              /* s/s: dispersion growth (frequency tolerance) */
#define DSC_NSTAGE 8               /* clock filter stages */
#define DSC_MAXDISP 16.0           /* s: dispersion of an empty stage, and its ceiling */
#define DSC_SGATE 3.0              /* popcorn spike gate, in units of peer jitter */
#define DSC_STEP_THRESHOLD 0.128   /* s: above this the clock is stepped, not slewed */
#define DSC_PANIC_THRESHOLD 1000.0 /* s: above this nothing is done (operator needed) */
#define DSC_STEPOUT                                                                           \
  900.0 /* s: a large offset must persist this long before a step; also                       \
           the time the FREQ state measures the frequency (RFC WATCH) */
#define DSC_MAX_CANDIDATES 64
#define DSC_MAXFREQ 500e-6 /* s/s */

/* Monotonic nanoseconds (NTT_Now.mono_ns) as the seconds every function here takes. */
double DSC_Seconds(int64_t mono_ns);

/* ------------------------------------------------------------------------------------ */
/* Clock filter (RFC 5905 10; one per association)                                       */

typedef struct {
  double offset, delay, disp; /* s; disp as of `t` */
  double t;                   /* monotonic s when the sample was taken (0: empty stage) */
} DSC_Stage;

/* A value type the association embeds. Fields are read-only for callers. */
typedef struct {
  DSC_Stage stage[DSC_NSTAGE]; /* ring; `next` is the oldest */
  int next;
  double update_t; /* when the stages' dispersions were last aged */
  int valid;       /* stages holding a real sample (disp < DSC_MAXDISP) */
  /* peer values (valid when have_peer) */
  bool have_peer;
  double offset, delay, jitter;
  double disp;  /* peer dispersion, as of update_t */
  double epoch; /* monotonic s of the sample in use */
} DSC_Filter;

typedef enum {
  DSC_FILTER_NEW = 0, /* a newer sample is now in use: run the selection */
  DSC_FILTER_OLD,     /* the best sample is not newer than the one in use: nothing to do */
  DSC_FILTER_SPIKE,   /* popcorn spike: the new best sample was suppressed */
  DSC_FILTER_EMPTY,   /* no valid stage */
} DSC_FilterResult;

void DSC_FilterInit(DSC_Filter *f);
/* Shift in a sample taken at t; poll is the association's poll exponent (spike gate),
 * precision_log2 our clock's precision (jitter floor). */
DSC_FilterResult DSC_FilterAdd(DSC_Filter *f, double offset, double delay, double disp,
                               double t, int poll, int precision_log2);
/* An unanswered poll: shift in the empty tuple so stale samples age out. */
void DSC_FilterAddDummy(DSC_Filter *f, double t, int precision_log2);
/* Our clock was slewed by `slewed` s since the samples were taken: move every stored offset
 * by -slewed so that old stages still describe the clock as it is now (chrony does the same;
 * without it the filter's oldest-but-best sample misleads the loop while it slews). */
void DSC_FilterAdjust(DSC_Filter *f, double slewed);
/* The peer dispersion aged to `now`. */
double DSC_FilterDispAt(const DSC_Filter *f, double now);

/* ------------------------------------------------------------------------------------ */
/* Selection, cluster, combine (RFC 5905 11.2)                                           */

/* One source as the selection sees it, built by the association (ASC_GetCandidate). */
typedef struct {
  int id; /* the caller's handle; reported back in DSC_Selection */
  double offset, delay, jitter;
  double disp;  /* peer dispersion aged to the selection's `now` */
  double epoch; /* monotonic s of the sample in use */
  double root_delay, root_disp;
  uint8_t stratum;     /* of the server (16: unsynchronized) */
  uint8_t leap;        /* PKT_LEAP_* of the server */
  uint32_t peer_refid; /* what we advertise as refid if this becomes the system peer */
  int poll;            /* association poll exponent */
  bool reachable;      /* reach register non-zero */
  bool noselect, prefer, truechimer; /* CNF_AO_NOSELECT / PREFER / TRUE */
} DSC_Candidate;

typedef struct {
  int minsane;    /* survivors needed to discipline (tos minsane), default 1 */
  int minclock;   /* cluster stops pruning at this many (tos minclock), default 3 */
  int maxclock;   /* at most this many candidates enter the cluster, default 10 */
  double maxdist; /* s, root distance above which a source is unfit, default 1.5 */
  double mindist; /* s, floor of the root distance, default 0.001 */
  int floor;      /* strata below this are unfit, default 1 */
  int ceiling;    /* strata at or above this are unfit, default 15 */
} DSC_SelectParams;

/* How the selection classified each candidate (ntpq's tally codes in brackets). */
typedef enum {
  DSC_SEL_UNFIT = 0,   /* [ ] failed a fitness test (see DSC_Unfit) */
  DSC_SEL_FALSETICKER, /* [x] outside the intersection */
  DSC_SEL_EXCESS,      /* [.] truechimer beyond maxclock */
  DSC_SEL_OUTLIER,     /* [-] pruned by the cluster algorithm */
  DSC_SEL_SURVIVOR,    /* [+] combined */
  DSC_SEL_SYSPEER,     /* [*] the system peer */
} DSC_SelState;

typedef enum {
  DSC_OK = 0,        /* a system peer was chosen */
  DSC_NO_CANDIDATES, /* no fit candidate */
  DSC_NO_MAJORITY,   /* no interval is shared by more than half of the candidates */
  DSC_TOO_FEW,       /* fewer truechimers than minsane */
} DSC_SelectStatus;

typedef struct {
  DSC_SelectStatus status;
  size_t n; /* candidates examined (at most DSC_MAX_CANDIDATES) */
  DSC_SelState state[DSC_MAX_CANDIDATES]; /* per candidate, in input order */
  size_t sys;                             /* index of the system peer (status DSC_OK) */
  int sys_id;                             /* its id */
  size_t survivors;
  double offset;     /* combined offset THETA */
  double jitter;     /* system jitter PSI = sqrt(peer jitter^2 + selection jitter^2) */
  double sel_jitter; /* selection jitter of the system peer */
  double low, high;  /* the intersection interval */
  uint8_t leap;      /* majority vote of the survivors */
} DSC_Selection;

void DSC_DefaultSelectParams(DSC_SelectParams *p);
void DSC_SelectParamsFromTos(const CNF_Tos *tos, DSC_SelectParams *p);
/* Root distance lambda of a candidate (its disp already aged to now). */
double DSC_RootDistance(const DSC_Candidate *c, const DSC_SelectParams *p);
/* Why a candidate cannot be selected: 0 if fit, else a nonzero reason (DSC_UnfitName). */
int DSC_Unfit(const DSC_Candidate *c, const DSC_SelectParams *p);
const char *DSC_UnfitName(int reason);
/* Selection, cluster and combine. prev_id: the current system peer (kept while it
 * survives, to avoid clock hopping), or -1. */
DSC_SelectStatus DSC_Select(const DSC_Candidate *c, size_t n, const DSC_SelectParams *p,
                            int prev_id, DSC_Selection *out);
const char *DSC_SelectStatusName(DSC_SelectStatus s);

/* ------------------------------------------------------------------------------------ */
/* Clock discipline loop (RFC 5905 11.3, ntpd's hybrid PLL/FLL)                          */

typedef enum {
  DSC_NSET = 0, /* never set, no drift file */
  DSC_FSET,     /* frequency from the drift file, time not yet set */
  DSC_SPIK,     /* a large offset was seen in SYNC: waiting for the stepout */
  DSC_FREQ,     /* measuring the frequency directly (after the first step) */
  DSC_SYNC,     /* normal operation */
} DSC_State;

typedef struct {
  double step_threshold; /* s, default 0.128; 0 = never step (always slew) */
  double panic;          /* s, default 1000; 0 = no limit */
  bool panic_first_ok;   /* the first update may exceed the panic limit (ntpd -g) */
  double stepout;        /* s, default 900 */
  int minpoll, maxpoll;  /* system poll range (log2 s), default 6..10 */
  int precision_log2;    /* our clock's precision, default -20 */
} DSC_LoopParams;

/* Least-squares sums of one source's filtered offset against time since the loop epoch. */
typedef struct {
  double n, st, so, stt, sto, last_t;
} DSC_FreqFit;

/* The loop state: a value type; fields are read-only for callers. */
typedef struct {
  DSC_LoopParams p;
  DSC_State state;
  double freq;        /* frequency correction, s/s */
  double residual;    /* phase still to be slewed, s */
  double last_offset; /* offset of the last update */
  double epoch;       /* monotonic s of the last update that reset the state */
  double jitter;      /* clock jitter (RMS of offset differences), s */
  double wander;      /* RMS of frequency changes, s/s */
  int poll;           /* system poll exponent */
  int count;          /* poll-adjust counter */
  bool updated;       /* at least one update was accepted */
  double tick_t;      /* monotonic s of the last DSC_LoopTick (-1: none yet) */
  double slew;        /* phase slew rate in force since tick_t, s/s */
  /* The phase that built up while FREQ measured the frequency: slewed out on its own time
   * constant and kept out of the PLL, so removing it does not disturb the frequency. */
  double transient, transient_tau, transient_slew;
  double transient_t, transient_drift; /* transient is as of transient_t; it grows at
                                          transient_drift until the next tick applies the
                                          new frequency */
  double slewed;                       /* phase slewed between the last two ticks, s */
  DSC_FreqFit fit[DSC_MAX_CANDIDATES]; /* FREQ state, per source */
} DSC_Loop;

typedef enum {
  DSC_LOOP_IGNORE = 0, /* nothing changed (FREQ state before the stepout) */
  DSC_LOOP_SLEW,       /* offset accepted: the residual is slewed by DSC_LoopTick */
  DSC_LOOP_STEP,       /* the caller must step the clock by the offset */
  DSC_LOOP_SPIKE,      /* a large offset, ignored until it persists for the stepout */
  DSC_LOOP_PANIC,      /* beyond the panic threshold: nothing done, operator needed */
  DSC_LOOP_FREQ_SET,   /* FREQ ended: frequency set; the phase that built up meanwhile is
                          slewed out (transient). Stored samples predate the new frequency
                          and should be discarded. */
} DSC_LoopAction;

void DSC_DefaultLoopParams(DSC_LoopParams *p);
/* Start in NSET, or in FSET with the frequency from a drift file when have_freq. */
void DSC_LoopInit(DSC_Loop *l, const DSC_LoopParams *p, bool have_freq, double freq);
/* One update with the combined offset of samples taken at (monotonic) t. */
DSC_LoopAction DSC_LoopUpdate(DSC_Loop *l, double offset, double t);
/* In FREQ state: one source's filtered (offset, epoch), id < DSC_MAX_CANDIDATES. At the end
 * of the stepout the frequency is the pooled least-squares slope of these per-source series,
 * which is immune to the sources' samples being of different ages (the two-point estimate
 * of RFC 5905 mixes them and can be off by several ppm). Ignored in other states. */
void DSC_LoopObserve(DSC_Loop *l, int id, double offset, double t);
/* The frequency (s/s, within +-DSC_MAXFREQ) to run the clock at from t until the next tick:
 * the loop frequency plus a slice of the residual phase. Call about once a second. */
double DSC_LoopTick(DSC_Loop *l, double t);
const char *DSC_StateName(DSC_State s);
const char *DSC_LoopActionName(DSC_LoopAction a);

/* ------------------------------------------------------------------------------------ */
/* The system: selection + loop + what we serve                                          */

typedef struct {
  DSC_SelectParams select;
  DSC_LoopParams loop;
  double unsync_after; /* s without a system peer before we report loss of sync, 300 */
} DSC_Params;

typedef struct DSC_System DSC_System;

typedef enum {
  DSC_EV_NONE = 0,     /* selection ran; no new sample from the system peer */
  DSC_EV_NO_SELECTION, /* no system peer (see DSC_Selection.status) */
  DSC_EV_IGNORED,      /* the loop ignored the update (FREQ wait) */
  DSC_EV_SPIKE,        /* the loop saw a spike and is waiting for the stepout */
  DSC_EV_SLEW,         /* the clock is being slewed */
  DSC_EV_STEP,         /* the clock was stepped: call ASC_ResetAfterStep on every association
                          and read the time again */
  DSC_EV_STEP_FAILED,  /* the driver refused the step */
  DSC_EV_PANIC,        /* offset beyond the panic threshold: clock untouched; the caller
                          logs and (ntpd practice) exits */
  DSC_EV_FREQ_SET,     /* the frequency was measured and set: call ASC_ResetAfterStep on
                          every association (its samples were taken at the old frequency) */
} DSC_Event;

void DSC_DefaultParams(DSC_Params *p);
/* tos values, and the poll range of the associations (the widest minpoll..maxpoll). */
void DSC_ParamsFromConfig(const CNF_Config *cfg, DSC_Params *p);
/* clk is borrowed for the life of the system. have_freq/freq: from the drift file. */
DSC_System *DSC_Create(const DSC_Params *p, CLK_Clock *clk, bool have_freq, double freq,
                       const NTT_Now *now);
void DSC_Destroy(DSC_System *s);
/* Run selection over a snapshot of every association's candidate; if the system peer has a
 * sample newer than the last one used, update the loop (stepping through the driver if
 * needed). sel may be NULL. */
DSC_Event DSC_Update(DSC_System *s, const DSC_Candidate *c, size_t n, const NTT_Now *now,
                     DSC_Selection *sel);
/* Once a second: slew (CLK_SetFrequency with loop frequency + phase slice). Returns the
 * phase slewed since the previous tick: pass it to ASC_AdjustOffsets of every association. */
double DSC_Tick(DSC_System *s, const NTT_Now *now);
/* The system poll exponent the associations should use (ASC_SetPoll). */
int DSC_GetPoll(const DSC_System *s);
double DSC_GetFrequency(const DSC_System *s);
const DSC_Loop *DSC_GetLoop(const DSC_System *s);
const char *DSC_EventName(DSC_Event e);

/* The variables our replies carry, from the last system peer: stratum + 1, refid of the
 * peer, accumulated root delay/dispersion, leap of the survivors' vote. Returns false (and
 * leaves out untouched) on loss of sync: never synchronized, stepped and not yet resynced,
 * no system peer for unsync_after seconds, or the last offset beyond the step threshold
 * (with the null driver the system clock is not being corrected). The caller then falls
 * back to SRV_SystemLocal (local clock / orphan) or SRV_SystemUnsynchronized (server.h). */
bool DSC_GetServerSystem(const DSC_System *s, const NTT_Now *now, int8_t precision,
                         SYS_Vars *out);

/* ------------------------------------------------------------------------------------ */
/* Drift file: one number, the frequency correction in ppm (ntpd format)                  */

/* Parse the text of a drift file; false if it is not one number within +-500 ppm. */
bool DSC_ParseDrift(const char *text, double *ppm);
/* Format ppm as the file's text ("%.3f\n"); returns the length as snprintf does. */
size_t DSC_FormatDrift(double ppm, char *buf, size_t size);
/* Read the drift file (at most 64 octets used); false if missing or invalid. */
bool DSC_ReadDriftFile(const char *path, double *ppm);
/* Write it atomically (PATH.tmp, then rename); false on any I/O error. */
bool DSC_WriteDriftFile(const char *path, double ppm);

#endif
