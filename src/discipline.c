#include "discipline.h"

#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "packet.h"

#define FILTER_SPIKE_DISP 1.5 /* s: the spike gate works only on a warmed-up filter */
#define LOOP_AVG 8.0          /* averaging constant for jitter and wander */
#define LOOP_LIMIT 30         /* poll-adjust counter limit */
#define LOOP_PGATE 4.0        /* poll-adjust gate, in units of clock jitter */
#define LOOP_OUTLIER 4.0 /* samples further than this many sd from the estimate count less */

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
DSC_FilterInit(DSC_Filter *f, double phi)
{
  memset(f, 0, sizeof(*f));
  f->phi = phi;
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
      f->stage[i].disp = fmin(f->stage[i].disp + f->phi * dt, DSC_MAXDISP);
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
  f->delays[f->delays_next] = delay;
  f->delays_next = (f->delays_next + 1) % DSC_DELAY_HISTORY;
  if (f->delays_n < DSC_DELAY_HISTORY)
    f->delays_n++;
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
  return fmin(f->disp + (age > 0 ? f->phi * age : 0.0), DSC_MAXDISP);
}

double
DSC_FilterMinDelay(const DSC_Filter *f)
{
  double m = 1e9;
  for (int i = 0; i < f->delays_n; i++)
    m = fmin(m, f->delays[i]);
  return m;
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
                          .ceiling = 15,
                          .phi = DSC_PHI};
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
                          .ceiling = tos->ceiling,
                          .phi = DSC_PHI};
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
  if (DSC_RootDistance(c, p) >= p->maxdist + p->phi * ldexp(1.0, c->poll))
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
                        .step_back = -1.0,
                        .panic = DSC_PANIC_THRESHOLD,
                        .panic_first_ok = false,
                        .stepout = DSC_STEPOUT,
                        .minpoll = CNF_DEFAULT_MINPOLL,
                        .maxpoll = CNF_DEFAULT_MAXPOLL,
                        .precision_log2 = -20,
                        .no_adjust = false};
}

void
DSC_LoopInit(DSC_Loop *l, const DSC_LoopParams *p, bool have_freq, double freq)
{
  memset(l, 0, sizeof(*l));
  l->p = *p;
  l->state = have_freq ? DSC_FSET : DSC_NSET;
  l->freq = have_freq ? clamp(freq, -DSC_MAXFREQ, DSC_MAXFREQ) : 0.0;
  l->prior_freq = l->freq;
  l->prior_sd = have_freq ? DSC_DRIFT_SD : DSC_MAXFREQ;
  l->freq_sd = l->prior_sd;
  l->tick_freq = l->freq;
  l->jitter = ldexp(1.0, p->precision_log2);
  l->poll = p->minpoll;
  l->epoch = -1.0;
  l->tick_t = -1.0;
}

static DSC_Point *
point(DSC_Loop *l, int k)
{
  return &l->pt[(l->first + k) % DSC_REG_MAX];
}

static void
drop_oldest(DSC_Loop *l, int k)
{
  l->first = (l->first + k) % DSC_REG_MAX;
  l->npt -= k;
}

/* Corrections applied to the clock by monotonic t (0 under no-adjust). For t before the
 * last tick, the filters have already moved the sample by the phase slewed since, so only
 * the frequency part in force is taken back out. */
static double
applied_at(const DSC_Loop *l, double t)
{
  if (l->p.no_adjust || l->tick_t < 0)
    return l->corr;
  if (t >= l->tick_t)
    return l->corr + (l->tick_freq + l->slew) * (t - l->tick_t);
  return l->corr - l->tick_freq * (l->tick_t - t);
}

static double
applied_now(const DSC_Loop *l, double t)
{
  if (l->p.no_adjust || l->tick_t < 0 || t <= l->tick_t)
    return l->corr;
  return l->corr + (l->tick_freq + l->slew) * (t - l->tick_t);
}

double
DSC_LoopOffset(const DSC_Loop *l, double t)
{
  if (l->npt == 0)
    return l->last_offset;
  return l->est_r + l->freq * (t - l->est_t) - applied_now(l, t);
}

/* Weighted least-squares line through points k0..npt-1: centroid (mt, mr), slope b, Sxx. */
typedef struct {
  double mt, mr, b, sxx, sw;
} Line;

static Line
fit_line(DSC_Loop *l, int k0)
{
  Line f = {0};
  double t0 = point(l, l->npt - 1)->t, sxr = 0;
  for (int k = k0; k < l->npt; k++) {
    const DSC_Point *q = point(l, k);
    f.sw += q->w;
    f.mt += q->w * (q->t - t0);
    f.mr += q->w * q->r;
  }
  f.mt /= f.sw;
  f.mr /= f.sw;
  for (int k = k0; k < l->npt; k++) {
    const DSC_Point *q = point(l, k);
    double dx = q->t - t0 - f.mt;
    f.sxx += q->w * dx * dx;
    sxr += q->w * dx * (q->r - f.mr);
  }
  f.b = f.sxx > 0 ? sxr / f.sxx : 0.0;
  f.mt += t0;
  return f;
}

static double
residual(const Line *f, const DSC_Point *q)
{
  return q->r - f->mr - f->b * (q->t - f->mt);
}

/* Wald-Wolfowitz runs test on the signs of the residuals: false when there are too few
 * runs for noise around a line (the clock's frequency changed within the window). */
static bool
runs_ok(DSC_Loop *l)
{
  Line f = fit_line(l, 0);
  int n = l->npt, pos = 0, runs = 0, last = 0;
  for (int k = 0; k < n; k++) {
    int sign = residual(&f, point(l, k)) >= 0 ? 1 : -1;
    pos += sign > 0;
    runs += sign != last;
    last = sign;
  }
  int neg = n - pos;
  if (pos == 0 || neg == 0)
    return false;
  double mu = 2.0 * pos * neg / n + 1.0;
  double var = (mu - 1.0) * (mu - 2.0) / (n - 1.0);
  return var <= 0 || (runs - mu) / sqrt(var) > -2.33; /* 1 % one-sided */
}

/* Fit the line through the points, blended with the prior frequency: the slope is the
 * precision-weighted mean of the prior and the least-squares slope, and the line passes
 * through the points' weighted centroid. Older points go first while the runs test fails. */
static void
loop_fit(DSC_Loop *l)
{
  while (l->npt >= 16 && !runs_ok(l))
    drop_oldest(l, l->npt / 4);
  int n = l->npt;
  Line f = fit_line(l, 0);
  double chi2 = 0;
  for (int k = 0; k < n; k++)
    chi2 += point(l, k)->w * sq(residual(&f, point(l, k)));
  /* the points' weights are their assumed variances; the residuals scale them up once
   * there are enough to say something (never down: a few points can agree by chance) */
  double scale = n > 3 ? fmax(chi2 / (n - 2), 1.0) : 1.0;
  l->scale = scale;
  double wp = 1.0 / sq(l->prior_sd), wd = f.sxx / scale;
  double old = l->freq;
  l->freq = clamp((wp * l->prior_freq + wd * f.b) / (wp + wd), -DSC_MAXFREQ, DSC_MAXFREQ);
  l->freq_sd = 1.0 / sqrt(wp + wd);
  l->est_t = f.mt;
  l->est_r = f.mr;
  l->wander = sqrt(sq(l->wander) + (sq(l->freq - old) - sq(l->wander)) / LOOP_AVG);
}

static void
loop_add_point(DSC_Loop *l, double offset, double t, double sd)
{
  if (l->npt == DSC_REG_MAX)
    drop_oldest(l, 1);
  *point(l, l->npt) = (DSC_Point){t, offset + applied_at(l, t), 1.0 / sq(sd)};
  l->npt++;
  loop_fit(l);
}

/* Forget the points (the clock jumped for a reason we do not know): keep what the frequency
 * was as the prior, with no more confidence than a drift file. */
static void
loop_forget(DSC_Loop *l)
{
  l->prior_freq = l->freq;
  l->prior_sd = fmax(l->freq_sd, DSC_DRIFT_SD);
  l->freq_sd = l->prior_sd;
  l->npt = l->first = 0;
}

/* What an offset measured at t says beyond the estimate (the offset itself before any). */
static double
innovation(const DSC_Loop *l, double offset, double t)
{
  if (l->npt == 0)
    return offset - l->last_offset;
  return offset - (DSC_LoopOffset(l, t) + applied_now(l, t) - applied_at(l, t));
}

static DSC_State
settled_state(const DSC_Loop *l)
{
  return l->freq_sd <= DSC_FREQ_SYNC_SD ? DSC_SYNC : DSC_FREQ;
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

/* The step threshold for an offset of this sign (0: never step that way). */
static double
step_limit(const DSC_LoopParams *p, double offset)
{
  return offset < 0 && p->step_back >= 0 ? p->step_back : p->step_threshold;
}

/* Is this innovation beyond the step threshold in its direction? */
static bool
beyond_step(const DSC_LoopParams *p, double inn)
{
  double lim = step_limit(p, inn);
  return lim > 0 && fabs(inn) > lim;
}

/* A large offset (ntpd's rules): at the first update step at once; in SYNC a single one is a
 * spike, stepped only if it persists for the stepout. */
static DSC_LoopAction
loop_large_offset(DSC_Loop *l, double offset, double mu, double t)
{
  switch (l->state) {
    case DSC_SYNC:
    case DSC_FREQ:
      l->state = DSC_SPIK;
      return DSC_LOOP_SPIKE;
    case DSC_SPIK:
      if (mu < l->p.stepout)
        return DSC_LOOP_SPIKE;
      loop_forget(l); /* the old points describe a clock we no longer have */
      break;
    case DSC_NSET:
    case DSC_FSET:
      break;
  }
  l->state = settled_state(l);
  l->updated = true;
  l->epoch = t;
  l->count = 0;
  l->poll = l->p.minpoll;
  l->last_offset = offset;
  return DSC_LOOP_STEP;
}

DSC_LoopAction
DSC_LoopUpdate(DSC_Loop *l, double offset, double t)
{
  if (l->p.panic > 0 && fabs(offset) > l->p.panic && !(l->p.panic_first_ok && !l->updated))
    return DSC_LOOP_PANIC;
  double mu = l->epoch >= 0 ? t - l->epoch : 0.0;
  double inn = innovation(l, offset, t);
  if (beyond_step(&l->p, inn))
    return loop_large_offset(l, offset, mu, t);
  bool first = !l->updated;
  l->updated = true;
  l->epoch = t;
  l->state = settled_state(l);
  if (first) {
    l->last_offset = offset;
    return DSC_LOOP_SLEW;
  }
  double d = fmax(fabs(inn), ldexp(1.0, l->p.precision_log2));
  l->jitter = sqrt(sq(l->jitter) + (sq(d) - sq(l->jitter)) / LOOP_AVG);
  loop_adjust_poll(l, inn);
  return DSC_LOOP_SLEW;
}

bool
DSC_LoopAddSample(DSC_Loop *l, double offset, double t, double sd)
{
  if (!l->updated || l->state == DSC_SPIK)
    return false;
  double inn = innovation(l, offset, t);
  if (beyond_step(&l->p, inn))
    return false;
  inn = fabs(inn);
  sd = fmax(sd, ldexp(1.0, l->p.precision_log2));
  /* a popcorn spike counts less the further it is from the estimate (more than LOOP_OUTLIER
   * of its own standard deviations); a lasting change still moves the line, and the runs
   * test sees it */
  double k = l->npt >= 8 ? inn / (sd * sqrt(l->scale)) : 0.0;
  if (k > LOOP_OUTLIER)
    sd *= k / LOOP_OUTLIER;
  loop_add_point(l, offset, t, sd);
  l->state = settled_state(l);
  l->last_offset = DSC_LoopOffset(l, t);
  return true;
}

void
DSC_LoopStepped(DSC_Loop *l, double step)
{
  if (!l->p.no_adjust) {
    l->corr += step;
    l->last_offset -= step;
  }
}

double
DSC_LoopTick(DSC_Loop *l, double t)
{
  /* account for what the rates in force since the last tick applied */
  l->slewed = 0.0;
  if (l->tick_t >= 0 && t > l->tick_t && !l->p.no_adjust) {
    l->corr += (l->tick_freq + l->slew) * (t - l->tick_t);
    l->slewed = l->slew * (t - l->tick_t);
  }
  if (l->tick_t < 0 || t > l->tick_t)
    l->tick_t = t;
  /* slew the estimated offset out over about one poll interval */
  l->residual = l->npt > 0 ? DSC_LoopOffset(l, t) : 0.0;
  double tau = fmax(ldexp(1.0, l->poll), 16.0);
  double total = clamp(l->freq + l->residual / tau, -DSC_MAXFREQ, DSC_MAXFREQ);
  l->tick_freq = l->freq;
  l->slew = total - l->freq;
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
  static const char *const names[] = {"slew", "step", "spike", "panic"};
  return (unsigned)a <= DSC_LOOP_PANIC ? names[a] : "?";
}
/* ==================================================================================== */
/* Huff-n'-puff                                                                          */

void
DSC_HuffInit(DSC_HuffPuff *h, double span)
{
  memset(h, 0, sizeof(*h));
  h->n = span > 0 ? (int)fmin(ceil(span / DSC_HUFF_SLOT), DSC_HUFF_MAX) : 0;
  for (int i = 0; i < DSC_HUFF_MAX; i++)
    h->min[i] = 1e9;
  h->slot_t = -1.0;
}

/* Open new slots up to t, forgetting what the slots they replace held. */
static void
huff_advance(DSC_HuffPuff *h, double t)
{
  if (h->slot_t < 0 || t - h->slot_t >= h->n * DSC_HUFF_SLOT) {
    for (int i = 0; i < h->n; i++)
      h->min[i] = 1e9;
    h->slot_t = t;
    return;
  }
  while (t - h->slot_t >= DSC_HUFF_SLOT) {
    h->cur = (h->cur + 1) % h->n;
    h->min[h->cur] = 1e9;
    h->slot_t += DSC_HUFF_SLOT;
  }
}

double
DSC_HuffCorrect(DSC_HuffPuff *h, double offset, double delay, double t)
{
  if (h->n == 0)
    return offset;
  huff_advance(h, t);
  h->min[h->cur] = fmin(h->min[h->cur], delay);
  double lowest = 1e9;
  for (int i = 0; i < h->n; i++)
    lowest = fmin(lowest, h->min[i]);
  double half = (delay - lowest) / 2.0;
  return offset > 0 ? offset - half : offset + half;
}

/* ==================================================================================== */
/* The system                                                                            */

struct DSC_System {
  DSC_Params p;
  double fed_t[DSC_MAX_CANDIDATES]; /* per candidate id: newest sample fed to the loop */
  CLK_Clock *clk;                   /* borrowed */
  DSC_Loop loop;
  int sys_id;         /* current system peer, -1 none */
  double last_epoch;  /* sample epoch of the system peer last fed to the loop */
  double lost_t;      /* when the system peer was lost (sys_id < 0) */
  bool synced;        /* an update was accepted since start / the last step */
  SYS_Vars served;    /* what replies carry while synced (precision set on output) */
  double last_offset; /* the offset estimate after the last accepted update */
  double stepped;     /* what the last step moved the clock by */
  DSC_HuffPuff huff[DSC_MAX_CANDIDATES]; /* per candidate id: tinker huffpuff (n 0: off) */
};

void
DSC_DefaultParams(DSC_Params *p)
{
  DSC_DefaultSelectParams(&p->select);
  DSC_DefaultLoopParams(&p->loop);
  p->unsync_after = 300.0; /* ntpd NTP_ORPHWAIT: how long the system runs free */
  p->huffpuff = 0.0;       /* off, as in ntpd */
}

void
DSC_ParamsFromConfig(const CNF_Config *cfg, DSC_Params *p)
{
  DSC_DefaultParams(p);
  DSC_SelectParamsFromTos(&cfg->tos, &p->select);
  const CNF_Tinker *tk = &cfg->tinker;
  p->select.phi = tk->dispersion * 1e-6;
  p->loop.step_threshold = tk->stepfwd;
  p->loop.step_back = tk->stepback;
  p->loop.panic = tk->panic;
  p->loop.stepout = tk->stepout;
  p->huffpuff = tk->huffpuff;
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
  DSC_LoopParams lp = p->loop;
  lp.no_adjust = !CLK_AppliesCorrections(clk);
  DSC_LoopInit(&s->loop, &lp, have_freq, freq);
  for (int i = 0; i < DSC_MAX_CANDIDATES; i++)
    DSC_HuffInit(&s->huff[i], p->huffpuff);
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
  double disp =
      peer->disp + s->p.select.phi * (age > 0 ? age : 0) + sel->jitter + fabs(sel->offset);
  s->served = (SYS_Vars){
      .leap = sel->leap,
      .stratum = (uint8_t)(peer->stratum >= 15 ? 16 : peer->stratum + 1),
      .refid = peer->peer_refid,
      .ref_ts = NTT_FromTimespec(&now->real),
      .root_delay = peer->root_delay + peer->delay,
      .root_disp = peer->root_disp + fmax(s->p.select.mindist, disp),
      .update_mono_ns = now->mono_ns,
      .phi = s->p.select.phi,
  };
  s->last_offset = s->loop.last_offset;
  s->synced = true;
}

static DSC_Event
run_loop(DSC_System *s, const DSC_Candidate *peer, const DSC_Selection *sel,
         const NTT_Now *now)
{
  double offset = sel->offset;
  if (peer->id >= 0 && peer->id < DSC_MAX_CANDIDATES) /* huff-n'-puff, by the system peer */
    offset = DSC_HuffCorrect(&s->huff[peer->id], offset, peer->root_delay + peer->delay,
                             peer->epoch);
  switch (DSC_LoopUpdate(&s->loop, offset, peer->epoch)) {
    case DSC_LOOP_PANIC:
      return DSC_EV_PANIC;
    case DSC_LOOP_SPIKE:
      return DSC_EV_SPIKE;
    case DSC_LOOP_STEP:
      s->synced = false;
      s->stepped = 0.0;
      if (!CLK_StepBy(s->clk, sel->offset))
        return DSC_EV_STEP_FAILED;
      DSC_LoopStepped(&s->loop, sel->offset);
      s->stepped = s->loop.p.no_adjust ? 0.0 : sel->offset;
      s->last_offset = s->loop.last_offset;
      return DSC_EV_STEP;
    case DSC_LOOP_SLEW:
      break;
  }
  record_served(s, peer, sel, now);
  return DSC_EV_SLEW; /* the next DSC_Tick applies it */
}

/* Every sample of a surviving source not yet fed, oldest first, weighted by how far its
 * delay is above the lowest delay of the source's last DSC_DELAY_HISTORY samples (half the
 * excess bounds its error). Measured against the eight stages only, the reference moved
 * with every poll and the weights said little (bench/timequality.sh, docs/client.md). */
static void
feed_samples(DSC_System *s, const DSC_Candidate *c)
{
  const DSC_Filter *f = c->filter;
  if (!f || c->id < 0 || c->id >= DSC_MAX_CANDIDATES)
    return;
  double min_delay = DSC_FilterMinDelay(f);
  for (int i = 0; i < DSC_NSTAGE; i++) {
    const DSC_Stage *st = &f->stage[(f->next + i) % DSC_NSTAGE]; /* oldest first */
    if (st->disp >= DSC_MAXDISP || st->t <= s->fed_t[c->id])
      continue;
    double sd = sqrt(sq(DSC_SAMPLE_SD) + sq((st->delay - min_delay) / 2));
    double offset =
        DSC_HuffCorrect(&s->huff[c->id], st->offset, c->root_delay + st->delay, st->t);
    DSC_LoopAddSample(&s->loop, offset, st->t, sd);
    s->fed_t[c->id] = st->t;
  }
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
  const DSC_Candidate *peer = &c[sel->sys];
  s->sys_id = sel->sys_id;
  DSC_Event ev = DSC_EV_NONE;
  if (peer->epoch > s->last_epoch) {
    s->last_epoch = peer->epoch;
    ev = run_loop(s, peer, sel, now);
  }
  /* after a step the caller first moves the filters; their samples come in next time */
  if (ev == DSC_EV_NONE || ev == DSC_EV_SLEW) {
    for (size_t i = 0; i < sel->n; i++)
      if (sel->state[i] == DSC_SEL_SURVIVOR || sel->state[i] == DSC_SEL_SYSPEER)
        feed_samples(s, &c[i]);
    if (s->synced)
      s->last_offset = s->loop.last_offset;
  }
  return ev;
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

double
DSC_GetOffset(const DSC_System *s, const NTT_Now *now)
{
  return DSC_LoopOffset(&s->loop, DSC_Seconds(now->mono_ns));
}

double
DSC_GetStepped(const DSC_System *s)
{
  return s->stepped;
}

const DSC_Loop *
DSC_GetLoop(const DSC_System *s)
{
  return &s->loop;
}

const char *
DSC_EventName(DSC_Event e)
{
  static const char *const names[] = {"none", "no-selection", "spike", "slew",
                                      "step", "step-failed",  "panic"};
  return (unsigned)e <= DSC_EV_PANIC ? names[e] : "?";
}

bool
DSC_GetServerSystem(const DSC_System *s, const NTT_Now *now, int8_t precision, SYS_Vars *out)
{
  if (!s->synced ||
      (s->sys_id < 0 && DSC_Seconds(now->mono_ns) - s->lost_t > s->p.unsync_after))
    return false;
  if (beyond_step(&s->loop.p, s->last_offset))
    return false;
  /* under no-adjust nothing ever corrects the system clock: whatever `tinker step` allows,
   * we do not claim it while it is further off than ntpd's step threshold */
  if (s->loop.p.no_adjust && fabs(s->last_offset) > DSC_STEP_THRESHOLD)
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
