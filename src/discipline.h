/* discipline: the NTP mitigation algorithms and the clock discipline (RFC 5905 sections 10
 * to 12, with ntpd's working constants): per-source clock filter, selection (intersection),
 * cluster, combine, the clock loop (a least-squares estimate of offset and frequency under
 * ntpd's step/panic rules) with system poll adjustment, the system variables we serve
 * (SYS_Vars, sysvars.h) and the drift file.
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
#define DSC_DELAY_HISTORY 64       /* samples whose lowest delay weighs the loop's points */
#define DSC_MAXDISP 16.0           /* s: dispersion of an empty stage, and its ceiling */
#define DSC_SGATE 3.0              /* popcorn spike gate, in units of peer jitter */
#define DSC_STEP_THRESHOLD 0.128   /* s: above this the clock is stepped, not slewed */
#define DSC_PANIC_THRESHOLD 1000.0 /* s: above this nothing is done (operator needed) */
#define DSC_STEPOUT                                                                           \
  900.0 /* s: a large offset must persist this long before a step (RFC WATCH) */
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
  double phi;   /* s/s: how fast a stage's dispersion grows (DSC_PHI; tinker dispersion) */
  /* the delays of the last DSC_DELAY_HISTORY samples (a ring): their lowest is the
   * reference a sample's excess delay is measured from (DSC_FilterMinDelay) */
  double delays[DSC_DELAY_HISTORY];
  int delays_next, delays_n;
} DSC_Filter;

typedef enum {
  DSC_FILTER_NEW = 0, /* a newer sample is now in use: run the selection */
  DSC_FILTER_OLD,     /* the best sample is not newer than the one in use: nothing to do */
  DSC_FILTER_SPIKE,   /* popcorn spike: the new best sample was suppressed */
  DSC_FILTER_EMPTY,   /* no valid stage */
} DSC_FilterResult;

/* An empty filter whose dispersion grows by phi s/s (DSC_PHI unless `tinker dispersion`). */
void DSC_FilterInit(DSC_Filter *f, double phi);
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
/* The lowest round-trip delay of the last DSC_DELAY_HISTORY samples (not only of the
 * stages): the eight stages span too little of a source's delay distribution to say which
 * samples are good (1e9 with none). */
double DSC_FilterMinDelay(const DSC_Filter *f);

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
  const DSC_Filter *filter; /* its clock filter (borrowed; NULL: none): every sample in it
                               feeds the loop's regression once the source survives */
} DSC_Candidate;

typedef struct {
  int minsane;    /* survivors needed to discipline (tos minsane), default 1 */
  int minclock;   /* cluster stops pruning at this many (tos minclock), default 3 */
  int maxclock;   /* at most this many candidates enter the cluster, default 10 */
  double maxdist; /* s, root distance above which a source is unfit, default 1.5 */
  double mindist; /* s, floor of the root distance, default 0.001 */
  int floor;      /* strata below this are unfit, default 1 */
  int ceiling;    /* strata at or above this are unfit, default 15 */
  double phi;     /* s/s, dispersion growth (tinker dispersion), default DSC_PHI */
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
/* Clock discipline loop                                                                 */
/*                                                                                       */
/* ntpd's step and panic rules and states, with the frequency and phase estimated as      */
/* chrony does: every accepted update adds a point (sample time, raw offset) to a          */
/* least-squares regression, where the raw offset is the measured offset plus every        */
/* correction applied to the clock so far (what the offset would be had we never touched  */
/* it). The slope is the frequency correction, the line at `now` minus the corrections    */
/* applied is the current offset estimate. Nothing waits for a stepout: the estimate is    */
/* used from the first update and refined by every one after it (docs/client.md).          */

typedef enum {
  DSC_NSET = 0, /* never set, no drift file */
  DSC_FSET,     /* frequency from the drift file, time not yet set */
  DSC_SPIK,     /* a large offset was seen in SYNC: waiting for the stepout */
  DSC_FREQ,     /* frequency still uncertain (standard error above 1 ppm); updates are used */
  DSC_SYNC,     /* normal operation */
} DSC_State;

typedef struct {
  double step_threshold; /* s, default 0.128; 0 = never step (always slew): a forward step
                            (our clock behind), and a backward one unless step_back >= 0 */
  double step_back;      /* s, threshold of a backward step (our clock ahead); < 0 (default):
                            step_threshold; 0 = never step back (tinker stepback) */
  double panic;          /* s, default 1000; 0 = no limit */
  bool panic_first_ok;   /* the first update may exceed the panic limit (ntpd -g) */
  double stepout;        /* s, default 900: a large offset must persist this long */
  int minpoll, maxpoll;  /* system poll range (log2 s), default 6..10 */
  int precision_log2;    /* our clock's precision, default -20 */
  bool no_adjust;        /* the driver applies nothing (-x): corrections are not counted */
} DSC_LoopParams;

#define DSC_REG_MAX 512       /* regression points kept */
#define DSC_SAMPLE_SD 100e-6  /* s: noise floor of a sample at its source's lowest delay */
#define DSC_DRIFT_SD 1e-6     /* s/s: assumed error of a drift file's frequency */
#define DSC_FREQ_SYNC_SD 1e-6 /* s/s: FREQ becomes SYNC below this standard error */

typedef struct {
  double t; /* monotonic s of the sample */
  double r; /* raw offset: measured offset + corrections applied to the clock by then */
  double w; /* weight, 1/s^2: samples above their source's lowest delay count less */
} DSC_Point;

/* The loop state: a value type; fields are read-only for callers. */
typedef struct {
  DSC_LoopParams p;
  DSC_State state;
  double freq;        /* frequency correction, s/s (the regression slope) */
  double freq_sd;     /* its standard error, s/s */
  double residual;    /* current offset estimate still to be slewed, as of tick_t, s */
  double last_offset; /* offset estimate right after the last accepted update, s */
  double epoch;       /* monotonic s of the last accepted update (-1: none) */
  double jitter;      /* clock jitter: RMS of the updates' innovations, s */
  double wander;      /* RMS of frequency changes, s/s */
  int poll;           /* system poll exponent */
  int count;          /* poll-adjust counter */
  bool updated;       /* at least one update was accepted */
  double tick_t;      /* monotonic s of the last DSC_LoopTick (-1: none yet) */
  double tick_freq;   /* frequency part of the rate in force since tick_t, s/s */
  double slew;        /* phase part of the rate in force since tick_t, s/s */
  double slewed;      /* phase slewed between the last two ticks, s (0 with no_adjust) */
  double corr;        /* correction applied to the clock up to tick_t (steps included), s */
  double prior_freq, prior_sd; /* what is known of the frequency without the points */
  double scale;                /* the points' variance scale from the last fit's residuals */
  DSC_Point pt[DSC_REG_MAX];   /* ring, oldest first from `first` */
  int first, npt;
  double est_t, est_r; /* the line: raw offset est_r + freq * (t - est_t) (npt > 0) */
} DSC_Loop;

typedef enum {
  DSC_LOOP_SLEW = 0, /* offset accepted: the estimate is slewed out by DSC_LoopTick */
  DSC_LOOP_STEP,     /* the caller must step the clock by the offset, then DSC_LoopStepped */
  DSC_LOOP_SPIKE,    /* a large offset, ignored until it persists for the stepout */
  DSC_LOOP_PANIC,    /* beyond the panic threshold: nothing done, operator needed */
} DSC_LoopAction;

void DSC_DefaultLoopParams(DSC_LoopParams *p);
/* Start in NSET, or in FSET with the frequency from a drift file when have_freq. */
void DSC_LoopInit(DSC_Loop *l, const DSC_LoopParams *p, bool have_freq, double freq);
/* The system peer has a new filter output: the combined offset of samples taken at
 * (monotonic) t, as stored by the clock filters (moved by every phase slew DSC_LoopTick
 * reported). Decides step, spike or panic by ntpd's rules (on what the estimate did not
 * already predict), adjusts the poll; the estimate itself comes from DSC_LoopAddSample. */
DSC_LoopAction DSC_LoopUpdate(DSC_Loop *l, double offset, double t);
/* One sample of a surviving source, as stored by its clock filter, with its standard
 * deviation sd (s): a point of the regression. Ignored (false) before the first update,
 * while a spike waits for the stepout, or when it is further than the step threshold from
 * the estimate. */
bool DSC_LoopAddSample(DSC_Loop *l, double offset, double t, double sd);
/* The driver stepped the clock by `step` s after DSC_LOOP_STEP. */
void DSC_LoopStepped(DSC_Loop *l, double step);
/* The estimate of the clock's offset at monotonic t (true time minus our clock), s. */
double DSC_LoopOffset(const DSC_Loop *l, double t);
/* The frequency (s/s, within +-DSC_MAXFREQ) to run the clock at from t until the next tick:
 * the loop frequency plus a slice of the estimated offset. Call about once a second. */
double DSC_LoopTick(DSC_Loop *l, double t);
const char *DSC_StateName(DSC_State s);
const char *DSC_LoopActionName(DSC_LoopAction a);

/* ------------------------------------------------------------------------------------ */
/* Huff-n'-puff (ntpd's `tinker huffpuff`)                                               */
/*                                                                                       */
/* Congestion on one direction of a path lengthens the round trip and shifts the offset by */
/* half the extra delay. The filter keeps the lowest round-trip delay (root delay included) */
/* seen over a span, in slots of DSC_HUFF_SLOT seconds, and moves an offset towards zero by */
/* half of the delay in excess of that minimum: the sign of the offset says which way the  */
/* congestion went, as ntpd assumes. DSC_System keeps one per source (ntpd one for the     */
/* system peer): every sample fed to the loop, and the combined offset by the system       */
/* peer's window.                                                                          */

#define DSC_HUFF_SLOT 900.0 /* s: one slot of the window (ntpd's HUFFPUFF) */
#define DSC_HUFF_MAX 96     /* slots: a day */

typedef struct {
  double min[DSC_HUFF_MAX]; /* lowest delay seen in each slot (1e9: none) */
  int n, cur;               /* slots in use (0: off), the current one */
  double slot_t;            /* monotonic s when the current slot began (-1: no sample yet) */
} DSC_HuffPuff;

/* span s (0: off) is rounded up to whole slots, at most DSC_HUFF_MAX. */
void DSC_HuffInit(DSC_HuffPuff *h, double span);
/* Note a sample of round-trip delay `delay` taken at monotonic t and return its offset
 * corrected; the offset unchanged when off. */
double DSC_HuffCorrect(DSC_HuffPuff *h, double offset, double delay, double t);

/* ------------------------------------------------------------------------------------ */
/* The system: selection + loop + what we serve                                          */

typedef struct {
  DSC_SelectParams select;
  DSC_LoopParams loop;
  double unsync_after; /* s without a system peer before we report loss of sync, 300 */
  double huffpuff;     /* s: huff-n'-puff span (tinker huffpuff); 0: off, the default */
} DSC_Params;

typedef struct DSC_System DSC_System;

typedef enum {
  DSC_EV_NONE = 0,     /* selection ran; no new sample from the system peer */
  DSC_EV_NO_SELECTION, /* no system peer (see DSC_Selection.status) */
  DSC_EV_SPIKE,        /* the loop saw a spike and is waiting for the stepout */
  DSC_EV_SLEW,         /* the clock is being slewed */
  DSC_EV_STEP,         /* the clock was stepped by DSC_GetStepped: call ASC_AfterStep on
                          every association and read the time again */
  DSC_EV_STEP_FAILED,  /* the driver refused the step */
  DSC_EV_PANIC,        /* offset beyond the panic threshold: clock untouched; the caller
                          logs and (ntpd practice) exits */
} DSC_Event;

void DSC_DefaultParams(DSC_Params *p);
/* tos and tinker values, and the poll range of the associations (the widest
 * minpoll..maxpoll). */
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
/* The current estimate of the clock's offset (true time minus our clock), s: what ntpq's
 * `offset` shows. Under no-adjust (-x) it is the system clock's own error. */
double DSC_GetOffset(const DSC_System *s, const NTT_Now *now);
/* What the last DSC_EV_STEP moved the clock by (0 when the driver applies nothing). */
double DSC_GetStepped(const DSC_System *s);
const DSC_Loop *DSC_GetLoop(const DSC_System *s);
const char *DSC_EventName(DSC_Event e);

/* The variables our replies carry, from the last system peer: stratum + 1, refid of the
 * peer, accumulated root delay/dispersion, leap of the survivors' vote. Returns false (and
 * leaves out untouched) on loss of sync: never synchronized, stepped and not yet resynced,
 * no system peer for unsync_after seconds, or the last offset beyond the step threshold
 * (with the null driver the system clock is not being corrected; there 0.128 s at most, even
 * with a larger or disabled step threshold). The caller then falls
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
