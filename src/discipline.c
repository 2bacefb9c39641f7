#include "discipline.h"

#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "packet.h"

#define FILTER_SPIKE_DISP 1.5    /* s: the spike gate works only on a warmed-up filter */
#define LOOP_PLL 16.0            /* PLL time constant multiplier (ntpd CLOCK_PLL) */
#define LOOP_AVG 8.0             /* averaging constant for jitter and wander */
#define LOOP_FLL (17 + LOOP_AVG) /* FLL gain reference (ntpd: MAXPOLL + AVG) */
#define LOOP_ALLAN 1500.0        /* s: compromise Allan intercept; the FLL works above half */
#define LOOP_LIMIT 30            /* poll-adjust counter limit */
#define LOOP_PGATE 4.0           /* poll-adjust gate, in units of clock jitter */

double
DSC_Seconds(int64_t mono_ns)
{
  return (double)mono_ns / 1e9;
}

static double
sq(double x)
{
  return x * x;
}

static double
clamp(double x, double lo, double hi)
{
  return x < lo ? lo : (x > hi ? hi : x);
}

/* ==================================================================================== */
/* Clock filter                                                                          */

void
DSC_FilterInit(DSC_Filter *f)
{
  memset(f, 0, sizeof(*f));
  for (int i = 0; i < DSC_NSTAGE; i++)
    f->stage[i] = (DSC_Stage){0.0, DSC_MAXDISP, DSC_MAXDISP, 0.0};
}

/* Age every stage by PHI since the last shift, then put the new one in the oldest's place. */
static void
filter_shift(DSC_Filter *f, const DSC_Stage *s)
{
  double dt = s->t - f->update_t;
  if (f->update_t > 0 && dt > 0) {
    for (int i = 0; i < DSC_NSTAGE; i++)
      f->stage[i].disp = fmin(f->stage[i].disp + DSC_PHI * dt, DSC_MAXDISP);
  }
  f->update_t = s->t;
  f->stage[f->next] = *s;
  f->next = (f->next + 1) % DSC_NSTAGE;
}

static double
sort_key(const DSC_Stage *s)
{
  return s->disp >= DSC_MAXDISP ? 1e9 : s->delay;
}

/* Does stage a sort after stage b? By delay; on equal delay the newer sample first (as
 * ntpd, whose scan starts at the newest stage): on a fast path every delay clamps to the
 * same floor, and preferring old samples would freeze the filter on its first sample. */
static bool
after(const DSC_Stage *a, const DSC_Stage *b)
{
  double ka = sort_key(a), kb = sort_key(b);
  return ka > kb || (ka == kb && a->t < b->t);
}

/* Stage indices in increasing delay (newer first on ties); empty stages last. */
static void
filter_order(const DSC_Filter *f, int ord[DSC_NSTAGE])
{
  for (int i = 0; i < DSC_NSTAGE; i++) {
    int j = i;
    ord[i] = i;
    while (j > 0 && after(&f->stage[ord[j - 1]], &f->stage[i])) {
      ord[j] = ord[j - 1];
      j--;
    }
    ord[j] = i;
  }
}

static DSC_FilterResult
filter_evaluate(DSC_Filter *f, int poll, int precision_log2)
{
  int ord[DSC_NSTAGE], m = 0;
  filter_order(f, ord);
  double disp = 0.0;
  for (int i = DSC_NSTAGE - 1; i >= 0; i--) {
    disp = 0.5 * (disp + f->stage[ord[i]].disp);
    if (f->stage[ord[i]].disp < DSC_MAXDISP)
      m++;
  }
  f->disp = disp;
  f->valid = m;
  if (m == 0)
    return DSC_FILTER_EMPTY;
  const DSC_Stage *best = &f->stage[ord[0]];
  double prev_jit = f->jitter, jit = 0.0;
  for (int i = 1; i < m; i++)
    jit += sq(f->stage[ord[i]].offset - best->offset);
  jit = fmax(m > 1 ? sqrt(jit / (m - 1)) : 0.0, ldexp(1.0, precision_log2));
  f->jitter = jit;
  /* Popcorn spike: a sudden jump, well beyond the jitter seen so far (the jitter including
   * the jump itself would always let it through), soon after the last sample used. */
  if (f->have_peer && f->disp < FILTER_SPIKE_DISP && best->disp < FILTER_SPIKE_DISP &&
      fabs(best->offset - f->offset) > DSC_SGATE * prev_jit &&
      best->t - f->epoch < 2.0 * ldexp(1.0, poll))
    return DSC_FILTER_SPIKE;
  if (f->have_peer && best->t <= f->epoch)
    return DSC_FILTER_OLD;
  f->offset = best->offset;
  f->delay = best->delay;
  f->epoch = best->t;
  f->have_peer = true;
  return DSC_FILTER_NEW;
}

DSC_FilterResult
DSC_FilterAdd(DSC_Filter *f, double offset, double delay, double disp, double t, int poll,
              int precision_log2)
{
  DSC_Stage s = {offset, delay, fmax(disp, ldexp(1.0, precision_log2)), t};
  filter_shift(f, &s);
  return filter_evaluate(f, poll, precision_log2);
}

void
DSC_FilterAddDummy(DSC_Filter *f, double t, int precision_log2)
{
  DSC_Stage s = {0.0, DSC_MAXDISP, DSC_MAXDISP, t};
  filter_shift(f, &s);
  (void)filter_evaluate(f, 31, precision_log2); /* no spike gate; peer values stay */
}

void
DSC_FilterAdjust(DSC_Filter *f, double slewed)
{
  for (int i = 0; i < DSC_NSTAGE; i++)
    f->stage[i].offset -= slewed;
  f->offset -= slewed;
}

double
DSC_FilterDispAt(const DSC_Filter *f, double now)
{
  double age = now - f->update_t;
  return fmin(f->disp + (age > 0 ? DSC_PHI * age : 0.0), DSC_MAXDISP);
}

/* ==================================================================================== */
/* Selection, cluster, combine                                                           */

void
DSC_DefaultSelectParams(DSC_SelectParams *p)
{
  *p = (DSC_SelectParams){.minsane = 1,
                          .minclock = 3,
                          .maxclock = 10,
                          .maxdist = 1.5,
                          .mindist = 0.001,
                          .floor = 1,
                          .ceiling = 15};
}

void
DSC_SelectParamsFromTos(const CNF_Tos *tos, DSC_SelectParams *p)
{
  *p = (DSC_SelectParams){.minsane = tos->minsane,
                          .minclock = tos->minclock,
                          .maxclock = tos->maxclock,
                          .maxdist = tos->maxdist,
                          .mindist = tos->mindist,
                          .floor = tos->floor,
                          .ceiling = tos->ceiling};
}

double
DSC_RootDistance(const DSC_Candidate *c, const DSC_SelectParams *p)
{
  double d = (c->root_delay + c->delay) / 2.0 + c->root_disp + c->disp + c->jitter;
  return fmax(d, p->mindist);
}

enum {
  UNFIT_OK = 0,
  UNFIT_NOSELECT,
  UNFIT_UNREACHABLE,
  UNFIT_NO_SAMPLE,
  UNFIT_STRATUM,
  UNFIT_DISTANCE,
};

int
DSC_Unfit(const DSC_Candidate *c, const DSC_SelectParams *p)
{
  if (c->noselect)
    return UNFIT_NOSELECT;
  if (!c->reachable)
    return UNFIT_UNREACHABLE;
  if (c->epoch <= 0 || c->disp >= DSC_MAXDISP)
    return UNFIT_NO_SAMPLE;
  if (c->leap == PKT_LEAP_UNSYNC || c->stratum < p->floor || c->stratum >= p->ceiling)
    return UNFIT_STRATUM;
  if (DSC_RootDistance(c, p) >= p->maxdist + DSC_PHI * ldexp(1.0, c->poll))
    return UNFIT_DISTANCE;
  return UNFIT_OK;
}

const char *
DSC_UnfitName(int reason)
{
  static const char *const names[] = {"fit",       "noselect", "unreachable",
                                      "no-sample", "stratum",  "distance"};
  return reason >= 0 && reason <= UNFIT_DISTANCE ? names[reason] : "unknown";
}

typedef struct {
  double val;
  int type; /* -1 lower end, +1 upper end */
} Endpoint;

static int
cmp_endpoint(const void *a, const void *b)
{
  const Endpoint *x = a, *y = b;
  if (x->val != y->val)
    return x->val < y->val ? -1 : 1;
  return x->type - y->type; /* a lower end before an upper end at the same value */
}

/* The intersection interval shared by nfit - f sources for the smallest f (the variant of
 * Marzullo's algorithm in ntpd's clock_select, on endpoints only). */
static bool
intersect(const DSC_Candidate *c, const size_t *fit, const double *lam, size_t nfit,
          double *low, double *high)
{
  Endpoint ep[2 * DSC_MAX_CANDIDATES];
  size_t ne = 0;
  for (size_t i = 0; i < nfit; i++) {
    ep[ne++] = (Endpoint){c[fit[i]].offset - lam[i], -1};
    ep[ne++] = (Endpoint){c[fit[i]].offset + lam[i], +1};
  }
  qsort(ep, ne, sizeof(ep[0]), cmp_endpoint);
  for (size_t allow = 0; 2 * allow < nfit; allow++) {
    long need = (long)(nfit - allow), n = 0;
    for (size_t i = 0; i < ne; i++) {
      *low = ep[i].val;
      n -= ep[i].type;
      if (n >= need)
        break;
    }
    n = 0;
    for (size_t j = ne; j-- > 0;) {
      *high = ep[j].val;
      n += ep[j].type;
      if (n >= need)
        break;
    }
    if (*high >= *low)
      return true;
  }
  return false;
}

/* Selection jitter of survivor i against the others. */
static double
selection_jitter(const DSC_Candidate *c, const size_t *sv, size_t ns, size_t i)
{
  if (ns < 2)
    return 0.0;
  double sum = 0.0;
  for (size_t j = 0; j < ns; j++)
    sum += sq(c[sv[i]].offset - c[sv[j]].offset);
  return sqrt(sum / (double)(ns - 1));
}

/* Prune the survivor with the largest selection jitter while that exceeds the smallest
 * peer jitter and more than minclock remain (RFC 5905 11.2.2). Never prunes a prefer peer. */
static size_t
cluster(const DSC_Candidate *c, size_t *sv, size_t ns, const DSC_SelectParams *p,
        DSC_Selection *out)
{
  while (ns > (size_t)(p->minclock > 1 ? p->minclock : 1)) {
    size_t worst = 0;
    double max_sel = -1.0, min_peer = 1e9;
    for (size_t i = 0; i < ns; i++) {
      double sj = selection_jitter(c, sv, ns, i);
      if (sj > max_sel) {
        max_sel = sj;
        worst = i;
      }
      min_peer = fmin(min_peer, c[sv[i]].jitter);
    }
    if (max_sel <= min_peer || c[sv[worst]].prefer)
      break;
    out->state[sv[worst]] = DSC_SEL_OUTLIER;
    memmove(sv + worst, sv + worst + 1, (ns - worst - 1) * sizeof(*sv));
    ns--;
  }
  return ns;
}

/* Sort truechimers by the cluster metric: stratum first, then root distance. */
static void
sort_by_metric(const DSC_Candidate *c, size_t *sv, double *metric, size_t ns)
{
  for (size_t i = 1; i < ns; i++) {
    size_t v = sv[i];
    double m = metric[i];
    size_t j = i;
    while (j > 0 && metric[j - 1] > m) {
      sv[j] = sv[j - 1];
      metric[j] = metric[j - 1];
      j--;
    }
    sv[j] = v;
    metric[j] = m;
  }
  (void)c;
}

static size_t
choose_sys_peer(const DSC_Candidate *c, const size_t *sv, size_t ns, int prev_id)
{
  for (size_t i = 0; i < ns; i++)
    if (c[sv[i]].prefer)
      return i;
  for (size_t i = 0; i < ns; i++)
    if (c[sv[i]].id == prev_id)
      return i;
  return 0;
}

static void
combine(const DSC_Candidate *c, const size_t *sv, size_t ns, size_t sys,
        const DSC_SelectParams *p, DSC_Selection *out)
{
  double wsum = 0.0, osum = 0.0, jsum = 0.0;
  int add = 0, del = 0;
  for (size_t i = 0; i < ns; i++) {
    double w = 1.0 / DSC_RootDistance(&c[sv[i]], p);
    wsum += w;
    osum += w * c[sv[i]].offset;
    jsum += w * sq(c[sv[i]].offset - c[sv[sys]].offset);
    add += c[sv[i]].leap == PKT_LEAP_ADD;
    del += c[sv[i]].leap == PKT_LEAP_DEL;
  }
  out->offset = osum / wsum;
  out->sel_jitter = selection_jitter(c, sv, ns, sys);
  out->jitter = sqrt(sq(c[sv[sys]].jitter) + jsum / wsum);
  out->leap = 2 * add > (int)ns ? PKT_LEAP_ADD : (2 * del > (int)ns ? PKT_LEAP_DEL : 0);
}

/* Sources that could take part: answering, selectable, synchronized, stratum in range. */
static size_t
count_voters(const DSC_Candidate *c, size_t n, const DSC_SelectParams *p)
{
  size_t v = 0;
  for (size_t i = 0; i < n; i++)
    v += c[i].reachable && !c[i].noselect && c[i].leap != PKT_LEAP_UNSYNC &&
         c[i].stratum >= p->floor && c[i].stratum < p->ceiling;
  return v;
}

/* The fit candidates and their root distances. */
static size_t
collect_fit(const DSC_Candidate *c, size_t n, const DSC_SelectParams *p, size_t *fit,
            double *lam, DSC_Selection *out)
{
  size_t nfit = 0;
  for (size_t i = 0; i < n; i++) {
    out->state[i] = DSC_SEL_UNFIT;
    if (DSC_Unfit(&c[i], p) != UNFIT_OK)
      continue;
    fit[nfit] = i;
    lam[nfit++] = DSC_RootDistance(&c[i], p);
  }
  return nfit;
}

DSC_SelectStatus
DSC_Select(const DSC_Candidate *c, size_t n, const DSC_SelectParams *p, int prev_id,
           DSC_Selection *out)
{
  size_t fit[DSC_MAX_CANDIDATES], sv[DSC_MAX_CANDIDATES], ns = 0;
  double lam[DSC_MAX_CANDIDATES], metric[DSC_MAX_CANDIDATES];
  memset(out, 0, sizeof(*out));
  out->n = n < DSC_MAX_CANDIDATES ? n : DSC_MAX_CANDIDATES;
  out->sys_id = -1;
  size_t nfit = collect_fit(c, out->n, p, fit, lam, out);
  if (nfit == 0)
    return out->status = DSC_NO_CANDIDATES;
  if (!intersect(c, fit, lam, nfit, &out->low, &out->high)) {
    for (size_t i = 0; i < nfit; i++)
      out->state[fit[i]] = DSC_SEL_FALSETICKER;
    return out->status = DSC_NO_MAJORITY;
  }
  for (size_t i = 0; i < nfit; i++) {
    const DSC_Candidate *k = &c[fit[i]];
    bool inside = k->offset + lam[i] >= out->low && k->offset - lam[i] <= out->high;
    if (!inside && !k->truechimer) {
      out->state[fit[i]] = DSC_SEL_FALSETICKER;
      continue;
    }
    metric[ns] = k->stratum * p->maxdist + lam[i];
    sv[ns++] = fit[i];
  }
  if (ns < (size_t)(p->minsane > 0 ? p->minsane : 1))
    return out->status = DSC_TOO_FEW;
  /* The truechimers must be a majority of every usable source, warming-up ones included:
   * otherwise the first source to fill its filter (a falseticker, perhaps) would win. */
  if (2 * ns <= count_voters(c, out->n, p))
    return out->status = DSC_NO_MAJORITY;
  sort_by_metric(c, sv, metric, ns);
  for (size_t i = 0; i < ns; i++)
    out->state[sv[i]] = (int)i < p->maxclock ? DSC_SEL_SURVIVOR : DSC_SEL_EXCESS;
  if (p->maxclock > 0 && ns > (size_t)p->maxclock)
    ns = (size_t)p->maxclock;
  ns = cluster(c, sv, ns, p, out);
  size_t sys = choose_sys_peer(c, sv, ns, prev_id);
  combine(c, sv, ns, sys, p, out);
  out->sys = sv[sys];
  out->sys_id = c[sv[sys]].id;
  out->survivors = ns;
  out->state[sv[sys]] = DSC_SEL_SYSPEER;
  return out->status = DSC_OK;
}

const char *
DSC_SelectStatusName(DSC_SelectStatus s)
{
  switch (s) {
    case DSC_OK:
      return "ok";
    case DSC_NO_CANDIDATES:
      return "no-candidates";
    case DSC_NO_MAJORITY:
      return "no-majority";
    case DSC_TOO_FEW:
      return "too-few";
  }
  return "unknown";
}

/* ==================================================================================== */
/* Clock discipline loop                                                                 */

void
DSC_DefaultLoopParams(DSC_LoopParams *p)
{
  *p = (DSC_LoopParams){.step_threshold = DSC_STEP_THRESHOLD,
                        .panic = DSC_PANIC_THRESHOLD,
                        .panic_first_ok = false,
                        .stepout = DSC_STEPOUT,
                        .minpoll = CNF_DEFAULT_MINPOLL,
                        .maxpoll = CNF_DEFAULT_MAXPOLL,
                        .precision_log2 = -20};
}

void
DSC_LoopInit(DSC_Loop *l, const DSC_LoopParams *p, bool have_freq, double freq)
{
  memset(l, 0, sizeof(*l));
  l->p = *p;
  l->state = have_freq ? DSC_FSET : DSC_NSET;
  l->freq = have_freq ? clamp(freq, -DSC_MAXFREQ, DSC_MAXFREQ) : 0.0;
  l->jitter = ldexp(1.0, p->precision_log2);
  l->poll = p->minpoll;
  l->epoch = -1.0;
  l->tick_t = -1.0;
}

/* ntpd's rstclock: enter a state with `offset` as the phase still to slew. */
static void
loop_reset(DSC_Loop *l, DSC_State state, double offset, double t)
{
  if (state == DSC_FREQ && l->state != DSC_FREQ)
    memset(l->fit, 0, sizeof(l->fit));
  l->state = state;
  l->residual = offset;
  l->last_offset = offset;
  l->epoch = t;
  if (l->tick_t >= 0 && t > l->tick_t)
    l->tick_t = t; /* the slew since the last tick is already in the measured offset */
}

static void
loop_set_freq(DSC_Loop *l, double freq)
{
  double old = l->freq;
  l->freq = clamp(freq, -DSC_MAXFREQ, DSC_MAXFREQ);
  l->wander = sqrt(sq(l->wander) + (sq(l->freq - old) - sq(l->wander)) / LOOP_AVG);
}

static void
loop_adjust_poll(DSC_Loop *l, double offset)
{
  if (fabs(offset) < LOOP_PGATE * l->jitter) {
    l->count += l->poll;
    if (l->count > LOOP_LIMIT) {
      l->count = LOOP_LIMIT;
      if (l->poll < l->p.maxpoll) {
        l->count = 0;
        l->poll++;
      }
    }
  } else {
    l->count -= 2 * l->poll;
    if (l->count < -LOOP_LIMIT) {
      l->count = -LOOP_LIMIT;
      if (l->poll > l->p.minpoll) {
        l->count = 0;
        l->poll--;
      }
    }
  }
}

/* Hybrid PLL/FLL frequency update in SYNC (ntpd's local_clock): the PLL integrates over at
 * most one poll interval; the FLL contributes only above half the Allan intercept. */
static void
loop_pll_fll(DSC_Loop *l, double offset, double mu)
{
  double poll_s = ldexp(1.0, l->poll), fll = 0.0;
  if (poll_s > LOOP_ALLAN / 2)
    fll = (offset - l->residual) / (fmax(mu, LOOP_ALLAN) * (LOOP_FLL - l->poll));
  double gain = 4.0 * LOOP_PLL * poll_s;
  double pll = offset * fmin(mu, poll_s) / (gain * gain);
  loop_set_freq(l, l->freq + fll + pll);
}

static DSC_LoopAction
loop_large_offset(DSC_Loop *l, double mu, double t)
{
  switch (l->state) {
    case DSC_SYNC:
      l->state = DSC_SPIK;
      return DSC_LOOP_SPIKE;
    case DSC_SPIK:
      if (mu < l->p.stepout)
        return DSC_LOOP_SPIKE;
      break;
    case DSC_FREQ:
      if (mu < l->p.stepout)
        return DSC_LOOP_IGNORE;
      break;
    case DSC_NSET:
    case DSC_FSET:
      break;
  }
  /* After the very first step the frequency is still unknown: measure it (FREQ). */
  loop_reset(l, l->state == DSC_NSET ? DSC_FREQ : DSC_SYNC, 0.0, t);
  l->transient = l->transient_slew = l->transient_t = 0.0;
  l->jitter = ldexp(1.0, l->p.precision_log2);
  l->count = 0;
  l->poll = l->p.minpoll;
  l->updated = true;
  return DSC_LOOP_STEP;
}

void
DSC_LoopObserve(DSC_Loop *l, int id, double offset, double t)
{
  if (l->state != DSC_FREQ || id < 0 || id >= DSC_MAX_CANDIDATES)
    return;
  DSC_FreqFit *f = &l->fit[id];
  double x = t - l->epoch;
  if (x <= 0 || (f->n > 0 && t <= f->last_t))
    return;
  f->n += 1;
  f->st += x;
  f->so += offset;
  f->stt += x * x;
  f->sto += x * offset;
  f->last_t = t;
}

/* The frequency error seen in FREQ state (s/s, the slope of offset over time) and the
 * offset it implies at t: pooled within-source least squares when the observations span
 * enough time, else the two-point estimate of RFC 5905 from the combined offset. The phase
 * is not slewed in FREQ, so the slope is the clock's own. */
static double
measured_slope(const DSC_Loop *l, double offset, double mu, double t, double *phase)
{
  double sxx = 0.0, sxy = 0.0, x = t - l->epoch, psum = 0.0;
  int sources = 0;
  for (int i = 0; i < DSC_MAX_CANDIDATES; i++) {
    const DSC_FreqFit *f = &l->fit[i];
    if (f->n < 2)
      continue;
    sxx += f->stt - f->st * f->st / f->n;
    sxy += f->sto - f->st * f->so / f->n;
  }
  *phase = offset;
  /* at least the spread of two samples half a stepout apart */
  if (!(sxx > sq(l->p.stepout / 2) / 2))
    return (offset - l->residual) / mu;
  double slope = sxy / sxx;
  for (int i = 0; i < DSC_MAX_CANDIDATES; i++) {
    const DSC_FreqFit *f = &l->fit[i];
    if (f->n < 2)
      continue;
    psum += f->so / f->n + slope * (x - f->st / f->n);
    sources++;
  }
  *phase = psum / sources;
  return slope;
}

DSC_LoopAction
DSC_LoopUpdate(DSC_Loop *l, double offset, double t)
{
  if (l->p.panic > 0 && fabs(offset) > l->p.panic && !(l->p.panic_first_ok && !l->updated))
    return DSC_LOOP_PANIC;
  double mu = l->epoch >= 0 ? t - l->epoch : 0.0;
  if (l->p.step_threshold > 0 && fabs(offset) > l->p.step_threshold)
    return loop_large_offset(l, mu, t);
  l->updated = true;
  switch (l->state) {
    case DSC_NSET: /* phase only; the frequency is measured over the stepout */
      loop_reset(l, DSC_FREQ, offset, t);
      return DSC_LOOP_SLEW;
    case DSC_FSET: /* frequency from the drift file: phase only this time */
      loop_reset(l, DSC_SYNC, offset, t);
      return DSC_LOOP_SLEW;
    case DSC_FREQ:
      if (mu < l->p.stepout)
        return DSC_LOOP_IGNORE;
      l->transient_drift = measured_slope(l, offset, mu, t, &l->transient);
      l->transient_t = t;
      loop_set_freq(l, l->freq + l->transient_drift);
      l->transient_tau = LOOP_PLL * ldexp(1.0, l->p.minpoll);
      loop_reset(l, DSC_SYNC, 0.0, t);
      return DSC_LOOP_FREQ_SET;
    case DSC_SPIK:
    case DSC_SYNC:
      break;
  }
  /* the loop sees the offset net of the transient still being slewed out */
  double inn = offset - l->transient;
  double d = fmax(fabs(inn - l->last_offset), ldexp(1.0, l->p.precision_log2));
  l->jitter = sqrt(sq(l->jitter) + (sq(d) - sq(l->jitter)) / LOOP_AVG);
  loop_pll_fll(l, inn, mu);
  loop_reset(l, DSC_SYNC, inn, t);
  loop_adjust_poll(l, inn);
  return DSC_LOOP_SLEW;
}

double
DSC_LoopTick(DSC_Loop *l, double t)
{
  /* What the previous rates actually slewed since the last tick comes off the phases. */
  l->slewed = 0.0;
  if (l->tick_t >= 0 && t > l->tick_t) {
    l->residual -= l->slew * (t - l->tick_t);
    l->transient -= l->transient_slew * (t - l->tick_t);
    l->slewed = (l->slew + l->transient_slew) * (t - l->tick_t);
  }
  l->tick_t = t;
  l->slew = l->transient_slew = 0.0;
  if (l->transient_t > 0 && t > l->transient_t) /* the old frequency ran until now */
    l->transient += l->transient_drift * (t - l->transient_t);
  l->transient_t = 0.0;
  if (fabs(l->transient) < 1e-9)
    l->transient = 0.0;
  /* FREQ measures the clock's own frequency: leave the phase alone meanwhile */
  if (l->state != DSC_FREQ) {
    l->slew = l->residual / (LOOP_PLL * ldexp(1.0, l->poll));
    if (l->transient != 0.0)
      l->transient_slew = l->transient / l->transient_tau;
  }
  double want = l->slew + l->transient_slew;
  double total = clamp(l->freq + want, -DSC_MAXFREQ, DSC_MAXFREQ);
  if (want != 0.0 && total - l->freq != want) { /* scale both down to the limit */
    double k = (total - l->freq) / want;
    l->slew *= k;
    l->transient_slew *= k;
  }
  return total;
}

const char *
DSC_StateName(DSC_State s)
{
  static const char *const names[] = {"NSET", "FSET", "SPIK", "FREQ", "SYNC"};
  return (unsigned)s <= DSC_SYNC ? names[s] : "?";
}

const char *
DSC_LoopActionName(DSC_LoopAction a)
{
  static const char *const names[] = {"ignore", "slew", "step", "spike", "panic", "freq-set"};
  return (unsigned)a <= DSC_LOOP_FREQ_SET ? names[a] : "?";
}
/* ==================================================================================== */
/* The system                                                                            */

struct DSC_System {
  DSC_Params p;
  CLK_Clock *clk; /* borrowed */
  DSC_Loop loop;
  int sys_id;        /* current system peer, -1 none */
  double last_epoch; /* sample epoch of the system peer last fed to the loop */
  double lost_t;     /* when the system peer was lost (sys_id < 0) */
  bool synced;       /* an update was accepted since start / the last step */
  SYS_Vars served;   /* what replies carry while synced (precision set on output) */
  double last_offset;
};

void
DSC_DefaultParams(DSC_Params *p)
{
  DSC_DefaultSelectParams(&p->select);
  DSC_DefaultLoopParams(&p->loop);
  p->unsync_after = 300.0; /* ntpd NTP_ORPHWAIT: how long the system runs free */
}

void
DSC_ParamsFromConfig(const CNF_Config *cfg, DSC_Params *p)
{
  DSC_DefaultParams(p);
  DSC_SelectParamsFromTos(&cfg->tos, &p->select);
  if (cfg->n_assocs == 0)
    return;
  p->loop.minpoll = CNF_MAX_POLL;
  p->loop.maxpoll = 0;
  for (size_t i = 0; i < cfg->n_assocs; i++) {
    if (cfg->assocs[i].minpoll < p->loop.minpoll)
      p->loop.minpoll = cfg->assocs[i].minpoll;
    if (cfg->assocs[i].maxpoll > p->loop.maxpoll)
      p->loop.maxpoll = cfg->assocs[i].maxpoll;
  }
}

DSC_System *
DSC_Create(const DSC_Params *p, CLK_Clock *clk, bool have_freq, double freq,
           const NTT_Now *now)
{
  DSC_System *s = calloc(1, sizeof(*s));
  if (!s)
    return NULL;
  s->p = *p;
  s->clk = clk;
  s->sys_id = -1;
  s->lost_t = DSC_Seconds(now->mono_ns);
  DSC_LoopInit(&s->loop, &p->loop, have_freq, freq);
  return s;
}

void
DSC_Destroy(DSC_System *s)
{
  free(s);
}

/* Record what replies carry after an accepted update (RFC 5905 11.2.3, ntpd clock_update). */
static void
record_served(DSC_System *s, const DSC_Candidate *peer, const DSC_Selection *sel,
              const NTT_Now *now)
{
  double age = DSC_Seconds(now->mono_ns) - peer->epoch;
  double disp = peer->disp + DSC_PHI * (age > 0 ? age : 0) + sel->jitter + fabs(sel->offset);
  s->served = (SYS_Vars){
      .leap = sel->leap,
      .stratum = (uint8_t)(peer->stratum >= 15 ? 16 : peer->stratum + 1),
      .refid = peer->peer_refid,
      .ref_ts = NTT_FromTimespec(&now->real),
      .root_delay = peer->root_delay + peer->delay,
      .root_disp = peer->root_disp + fmax(s->p.select.mindist, disp),
      .update_mono_ns = now->mono_ns,
  };
  s->last_offset = sel->offset;
  s->synced = true;
}

static DSC_Event
run_loop(DSC_System *s, const DSC_Candidate *peer, const DSC_Selection *sel,
         const NTT_Now *now)
{
  switch (DSC_LoopUpdate(&s->loop, sel->offset, peer->epoch)) {
    case DSC_LOOP_PANIC:
      return DSC_EV_PANIC;
    case DSC_LOOP_SPIKE:
      return DSC_EV_SPIKE;
    case DSC_LOOP_IGNORE:
      return DSC_EV_IGNORED;
    case DSC_LOOP_STEP:
      s->synced = false;
      s->loop.slew = s->loop.transient_slew = 0.0;
      if (!CLK_StepBy(s->clk, sel->offset))
        return DSC_EV_STEP_FAILED;
      s->last_offset = 0.0;
      return DSC_EV_STEP;
    case DSC_LOOP_FREQ_SET:
      record_served(s, peer, sel, now);
      return DSC_EV_FREQ_SET;
    case DSC_LOOP_SLEW:
      break;
  }
  record_served(s, peer, sel, now);
  return DSC_EV_SLEW; /* the next DSC_Tick applies it */
}

DSC_Event
DSC_Update(DSC_System *s, const DSC_Candidate *c, size_t n, const NTT_Now *now,
           DSC_Selection *sel)
{
  DSC_Selection local;
  if (!sel)
    sel = &local;
  if (DSC_Select(c, n, &s->p.select, s->sys_id, sel) != DSC_OK) {
    if (s->sys_id >= 0)
      s->lost_t = DSC_Seconds(now->mono_ns);
    s->sys_id = -1;
    return DSC_EV_NO_SELECTION;
  }
  if (s->loop.state == DSC_FREQ)
    for (size_t i = 0; i < sel->n; i++)
      if (sel->state[i] == DSC_SEL_SURVIVOR || sel->state[i] == DSC_SEL_SYSPEER)
        DSC_LoopObserve(&s->loop, c[i].id, c[i].offset, c[i].epoch);
  const DSC_Candidate *peer = &c[sel->sys];
  s->sys_id = sel->sys_id;
  if (peer->epoch <= s->last_epoch)
    return DSC_EV_NONE;
  s->last_epoch = peer->epoch;
  return run_loop(s, peer, sel, now);
}

double
DSC_Tick(DSC_System *s, const NTT_Now *now)
{
  CLK_SetFrequency(s->clk, DSC_LoopTick(&s->loop, DSC_Seconds(now->mono_ns)));
  return s->loop.slewed;
}

int
DSC_GetPoll(const DSC_System *s)
{
  return s->loop.poll;
}

double
DSC_GetFrequency(const DSC_System *s)
{
  return s->loop.freq;
}

const DSC_Loop *
DSC_GetLoop(const DSC_System *s)
{
  return &s->loop;
}

const char *
DSC_EventName(DSC_Event e)
{
  static const char *const names[] = {"none", "no-selection", "ignored", "spike",   "slew",
                                      "step", "step-failed",  "panic",   "freq-set"};
  return (unsigned)e <= DSC_EV_FREQ_SET ? names[e] : "?";
}

bool
DSC_GetServerSystem(const DSC_System *s, const NTT_Now *now, int8_t precision, SYS_Vars *out)
{
  if (!s->synced ||
      (s->sys_id < 0 && DSC_Seconds(now->mono_ns) - s->lost_t > s->p.unsync_after))
    return false;
  double step = s->p.loop.step_threshold;
  if (step > 0 && fabs(s->last_offset) > step)
    return false;
  if (s->served.stratum >= 16)
    return false;
  *out = s->served;
  out->precision = precision;
  return true;
}

/* ==================================================================================== */
/* Drift file                                                                            */

bool
DSC_ParseDrift(const char *text, double *ppm)
{
  char *end;
  errno = 0;
  double v = strtod(text, &end);
  if (end == text || errno != 0 || !isfinite(v) || fabs(v) > DSC_MAXFREQ * 1e6)
    return false;
  while (*end == ' ' || *end == '\t' || *end == '\n' || *end == '\r')
    end++;
  if (*end != '\0')
    return false;
  *ppm = v;
  return true;
}

size_t
DSC_FormatDrift(double ppm, char *buf, size_t size)
{
  int n = snprintf(buf, size, "%.3f\n", clamp(ppm, -DSC_MAXFREQ * 1e6, DSC_MAXFREQ * 1e6));
  return n < 0 ? 0 : (size_t)n;
}

bool
DSC_ReadDriftFile(const char *path, double *ppm)
{
  char buf[65];
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0)
    return false;
  ssize_t n = read(fd, buf, sizeof(buf) - 1);
  close(fd);
  if (n <= 0)
    return false;
  buf[n] = '\0';
  return DSC_ParseDrift(buf, ppm);
}

bool
DSC_WriteDriftFile(const char *path, double ppm)
{
  char tmp[4096], text[64];
  size_t len = DSC_FormatDrift(ppm, text, sizeof(text));
  if (snprintf(tmp, sizeof(tmp), "%s.tmp", path) >= (int)sizeof(tmp))
    return false;
  int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0)
    return false;
  bool ok = write(fd, text, len) == (ssize_t)len;
  ok = (fsync(fd) == 0) && ok;
  ok = (close(fd) == 0) && ok;
  if (ok && rename(tmp, path) == 0)
    return true;
  unlink(tmp);
  return false;
}
