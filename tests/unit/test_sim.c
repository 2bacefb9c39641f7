/* Closed-loop simulation: associations + discipline + the simulated clock driver, against
 * simulated servers over a deterministic in-process network with delay jitter. Time is
 * accelerated: true time moves only in CLK_SimAdvance, so hours take milliseconds.
 * Seeded by the harness seed (-s); every figure printed is reproducible. SIM_TRACE=1 in the
 * environment prints every discipline update. */
#include "assoc.h"
#include "clock.h"
#include "config.h"
#include "discipline.h"

#include <math.h>

#include "harness.h"
#include "packet.h"
#include "rng.h"

#define MAX_SRV 6
#define MAX_QUEUE 256
#define MAX_LOG 4096
#ifndef SIM_MAXPOLL
#define SIM_MAXPOLL 6
#endif

typedef enum { SRV_SERVE = 0, SRV_DENY, SRV_RATE } SimMode;

/* One-way delays: base_delay + 0-1 ms uniform; or bench/timequality.py's scenarios, with no
 * base delay: 0-2 ms uniform, or exponential (mean 0.5 ms, at most 20 ms) with 2 % lost. */
typedef enum { SIM_JIT_1MS = 0, SIM_JIT_SYM, SIM_JIT_EXP } SimJitter;

typedef struct {
  NetAddr addr;
  double offset;     /* server clock minus true time, s */
  double base_delay; /* one-way, s */
  SimMode mode;
  int kod_poll;      /* poll field of the RATE KoDs */
  double mode_until; /* true s: the mode reverts to SERVE after this */
  int kods_left;     /* or after this many KoDs (when > 0) */
  size_t nreq;
  double req_t[MAX_LOG]; /* true arrival times of requests */
} SimServer;

typedef struct {
  double at; /* true s of delivery */
  bool to_client;
  int idx;
  size_t len;
  uint8_t buf[PKT_MAX_LEN];
} SimPacket;

typedef struct {
  CLK_Clock *clk;
  DSC_System *dsc;
  ASC_Assoc *asc[MAX_SRV];
  SimServer srv[MAX_SRV];
  int n;
  SimPacket q[MAX_QUEUE];
  int nq;
  RNG_State net, cookies, attacker;
  ASC_Random rnd;
  double next_tick;
  /* attacker: every `attack_every` s forge KoDs and stale replies to every association */
  double attack_every, next_attack;
  uint8_t last_reply[MAX_SRV][PKT_MAX_LEN];
  size_t last_reply_len[MAX_SRV];
  /* results */
  unsigned outcomes[ASC_OUTCOME_COUNT];
  unsigned steps;
  double step_t, first_step_t; /* the last step, the first */
  double last_big_t;           /* last true time |offset| >= 100 us after the step */
  double max_late;             /* max |offset| after `late_from` */
  double sum2_late;            /* sum of offset^2 after `late_from` */
  unsigned n_late, n_late_ok;
  double late_from;
  unsigned selections, false_selected, false_survived;
  int false_idx; /* index of the falseticker, -1 none */
  /* the system peer once selected: updates without one since */
  double first_sel_t;         /* true s of the first selection, -1 none yet */
  unsigned peer_lost;         /* selections run without a system peer after first_sel_t */
  double last_1ms_t;          /* last true time |offset| >= 1 ms (any time, step or not) */
  unsigned survived[MAX_SRV]; /* selections in which server i was combined */
  unsigned panics;            /* discipline updates refused for the panic threshold */
  double ret_extra;           /* s added to every reply's way back (one-way congestion) */
  SimJitter jitter;           /* the one-way delays' distribution */
} Sim;

static bool
sim_fill(void *ctx, void *buf, size_t len)
{
  RNG_State *r = ctx;
  uint8_t *p = buf;
  for (size_t i = 0; i < len; i++)
    p[i] = (uint8_t)RNG_Next(r);
  return true;
}

static double
uniform(RNG_State *r)
{
  return (double)(RNG_Next(r) >> 11) / 9007199254740992.0;
}

/* cfg (may be NULL: the defaults) gives the tos and tinker values, as the daemon; poll > 0
 * fixes every poll to it (minpoll = maxpoll), as the bench does. */
static void
sim_init_with(Sim *s, int n, double offset, double freq_error, const CNF_Config *cfg, int poll)
{
  memset(s, 0, sizeof(*s));
  CLK_SimParams cp = {.start = {1700000000, 0},
                      .offset = offset,
                      .freq_error = freq_error,
                      .precision_log2 = -20};
  s->clk = CLK_CreateSimulated(&cp);
  RNG_Init(&s->net, harness_seed);
  RNG_Init(&s->cookies, harness_seed + 1);
  RNG_Init(&s->attacker, harness_seed + 2);
  s->rnd = (ASC_Random){sim_fill, &s->cookies};
  s->n = n;
  s->false_idx = -1;
  s->late_from = 1e30;
  s->first_sel_t = -1;
  NTT_Now now;
  CLK_ReadNow(s->clk, &now);
  DSC_Params dp;
  if (cfg)
    DSC_ParamsFromConfig(cfg, &dp);
  else
    DSC_DefaultParams(&dp);
  dp.loop.maxpoll = SIM_MAXPOLL;
  if (poll > 0)
    dp.loop.minpoll = dp.loop.maxpoll = poll;
  s->dsc = DSC_Create(&dp, s->clk, false, 0.0, &now);
  for (int i = 0; i < n; i++) {
    char text[32];
    snprintf(text, sizeof(text), "192.0.2.%d", i + 1);
    ADR_Parse(text, &s->srv[i].addr);
    s->srv[i].addr.port = 123;
    s->srv[i].base_delay = 0.002 + 0.003 * i;
    ASC_Params ap;
    ASC_DefaultParams(&s->srv[i].addr, &ap);
    ap.options = CNF_AO_IBURST;
    ap.maxpoll = SIM_MAXPOLL;
    if (poll > 0)
      ap.minpoll = ap.maxpoll = poll;
    if (cfg) {
      ap.maxdist = cfg->tos.maxdist;
      ap.phi = cfg->tinker.dispersion * 1e-6;
    }
    s->asc[i] = ASC_Create(&ap, &now, &s->rnd);
  }
  s->next_tick = 1.0;
}

static void
sim_init(Sim *s, int n, double offset, double freq_error)
{
  sim_init_with(s, n, offset, freq_error, NULL, 0);
}

/* A simulation configured by text (tos and tinker lines), as the daemon would be. */
static Sim *
sim_new_config(int n, double offset, double freq_error, const char *text)
{
  Sim *s = calloc(1, sizeof(*s));
  CNF_Config *cfg = CNF_Create();
  TEST_CHECK(s && cfg && CNF_ParseText(cfg, "sim.conf", text, NULL));
  sim_init_with(s, n, offset, freq_error, cfg, 0);
  CNF_Destroy(cfg);
  return s;
}

static void
sim_free(Sim *s)
{
  for (int i = 0; i < s->n; i++)
    ASC_Destroy(s->asc[i]);
  DSC_Destroy(s->dsc);
  CLK_Destroy(s->clk);
}

static void
enqueue(Sim *s, double at, bool to_client, int idx, const uint8_t *buf, size_t len)
{
  if (s->nq >= MAX_QUEUE || !isfinite(at)) /* infinite: lost */
    return;
  SimPacket *p = &s->q[s->nq++];
  p->at = at;
  p->to_client = to_client;
  p->idx = idx;
  p->len = len;
  memcpy(p->buf, buf, len);
}

static double
one_way(Sim *s, int i)
{
  switch (s->jitter) {
    case SIM_JIT_SYM:
      return 0.002 * uniform(&s->net);
    case SIM_JIT_EXP:
      if (uniform(&s->net) < 0.02)
        return INFINITY;
      return fmin(-0.0005 * log(1.0 - uniform(&s->net)), 0.020);
    case SIM_JIT_1MS:
      break;
  }
  return s->srv[i].base_delay + 0.001 * uniform(&s->net); /* 1 ms of jitter */
}

/* A stratum-1 server whose clock is true time + offset, or a KoD in ntpd's format. */
static void
server_receive(Sim *s, int i, const uint8_t *buf, size_t len, double t)
{
  SimServer *sv = &s->srv[i];
  PKT_Header rq, h;
  if (!PKT_DecodeHeader(buf, len, &rq))
    return;
  if (sv->nreq < MAX_LOG)
    sv->req_t[sv->nreq] = t;
  sv->nreq++;
  bool kod = sv->mode != SRV_SERVE && (t < sv->mode_until || sv->kods_left > 0);
  if (kod && sv->kods_left > 0)
    sv->kods_left--;
  NTT_Now tn;
  CLK_SimTrueNow(s->clk, &tn);
  struct timespec st = tn.real;
  double proc = 50e-6;
  if (kod) {
    h = rq;
    h.leap = PKT_LEAP_UNSYNC;
    h.mode = PKT_MODE_SERVER;
    h.stratum = 0;
    h.poll = (int8_t)(sv->mode == SRV_RATE ? sv->kod_poll : rq.poll);
    h.refid = PKT_RefidFromCode(sv->mode == SRV_RATE ? "RATE" : "DENY");
    h.org_ts = h.rx_ts = h.tx_ts = rq.tx_ts;
  } else {
    NTT_Stamp now_srv = NTT_Add(NTT_FromTimespec(&st), sv->offset);
    h = (PKT_Header){.leap = 0,
                     .version = rq.version,
                     .mode = PKT_MODE_SERVER,
                     .stratum = 1,
                     .poll = rq.poll,
                     .precision = -20,
                     .root_delay = 0,
                     .root_disp = NTT_ShortFromDouble(0.0002),
                     .refid = PKT_RefidFromCode("GPS"),
                     .ref_ts = NTT_Add(now_srv, -8.0),
                     .org_ts = rq.tx_ts,
                     .rx_ts = now_srv,
                     .tx_ts = NTT_Add(now_srv, proc)};
  }
  uint8_t out[PKT_HEADER_LEN];
  PKT_EncodeHeader(&h, out);
  enqueue(s, t + proc + one_way(s, i) + s->ret_extra, true, i, out, sizeof(out));
}

static void
after_step(Sim *s, const NTT_Now *now)
{
  if (s->steps++ == 0)
    s->first_step_t = DSC_Seconds(now->mono_ns);
  s->step_t = DSC_Seconds(now->mono_ns);
  for (int i = 0; i < s->n; i++)
    ASC_AfterStep(s->asc[i], DSC_GetStepped(s->dsc));
}

/* Once a system peer has been selected, it must never be lost (issue: a reachable, steady
 * source was dropped for 30-40 s when the discipline changed state). */
static void
track_selection(Sim *s, const DSC_Selection *sel, const NTT_Now *now)
{
  if (sel->status == DSC_OK && s->first_sel_t < 0)
    s->first_sel_t = DSC_Seconds(now->mono_ns);
  else if (sel->status != DSC_OK && s->first_sel_t >= 0) {
    if (s->peer_lost++ == 0)
      printf("system peer lost at %.0f s: %s\n", DSC_Seconds(now->mono_ns),
             DSC_SelectStatusName(sel->status));
  }
}

static void
run_discipline(Sim *s, const NTT_Now *now)
{
  DSC_Candidate c[MAX_SRV];
  for (int i = 0; i < s->n; i++)
    ASC_GetCandidate(s->asc[i], now, i, &c[i]);
  DSC_Selection sel;
  DSC_Event ev = DSC_Update(s->dsc, c, (size_t)s->n, now, &sel);
  track_selection(s, &sel, now);
  if (ev == DSC_EV_PANIC)
    s->panics++;
  for (size_t i = 0; i < sel.n; i++)
    s->survived[i] += sel.state[i] >= DSC_SEL_SURVIVOR;
  if (sel.status == DSC_OK) {
    s->selections++;
    if (s->false_idx >= 0 && sel.sys_id == s->false_idx)
      s->false_selected++;
    /* while every filter is warming up, root distances are too wide to tell anyone apart */
    if (s->false_idx >= 0 && sel.state[s->false_idx] >= DSC_SEL_SURVIVOR &&
        DSC_Seconds(now->mono_ns) > 3600)
      s->false_survived++;
  }
  if (getenv("SIM_TRACE")) {
    const DSC_Loop *l = DSC_GetLoop(s->dsc);
    printf("t=%8.1f ev=%s sel=%s sys=%d off=%+.6f true=%+.6f st=%s f=%+.3fppm res=%+.6f "
           "poll=%d jit=%.6f\n",
           DSC_Seconds(now->mono_ns), DSC_EventName(ev), DSC_SelectStatusName(sel.status),
           sel.sys_id, sel.offset, -CLK_SimOffset(s->clk), DSC_StateName(l->state),
           l->freq * 1e6, l->residual, l->poll, l->jitter);
  }
  if (ev == DSC_EV_STEP)
    after_step(s, now);
  for (int i = 0; i < s->n; i++)
    ASC_SetPoll(s->asc[i], DSC_GetPoll(s->dsc), now);
}

static void
client_receive(Sim *s, int i, const uint8_t *buf, size_t len)
{
  NTT_Now now;
  CLK_ReadNow(s->clk, &now);
  ASC_Result res;
  ASC_Outcome o = ASC_ProcessReply(s->asc[i], buf, len, &s->srv[i].addr, &now, NULL, &res);
  s->outcomes[o]++;
  if (o == ASC_SAMPLE && len <= PKT_MAX_LEN) {
    memcpy(s->last_reply[i], buf, len);
    s->last_reply_len[i] = len;
  }
  if (o == ASC_SAMPLE) /* as the daemon: every accepted sample feeds the discipline */
    run_discipline(s, &now);
}

/* Off-path attacker: it knows the server addresses but not the cookies. */
static void
attack(Sim *s, double t)
{
  static const char *const codes[] = {"DENY", "RATE", "RSTR"};
  for (int i = 0; i < s->n; i++) {
    uint64_t r = RNG_Next(&s->attacker);
    PKT_Header h = {.leap = PKT_LEAP_UNSYNC,
                    .version = 4,
                    .mode = PKT_MODE_SERVER,
                    .poll = 17,
                    .refid = PKT_RefidFromCode(codes[r % 3])};
    h.org_ts = (r & 8) ? 0 : RNG_Next(&s->attacker); /* zero or guessed origin */
    h.rx_ts = h.tx_ts = h.org_ts;
    uint8_t out[PKT_HEADER_LEN];
    PKT_EncodeHeader(&h, out);
    enqueue(s, t + 0.0005 * (i + 1), true, i, out, sizeof(out));
    if (s->last_reply_len[i]) /* replay of the last genuine reply */
      enqueue(s, t + 0.0007 * (i + 1), true, i, s->last_reply[i], s->last_reply_len[i]);
  }
}

static void
deliver_due(Sim *s, double t)
{
  for (int k = 0; k < s->nq;) {
    if (s->q[k].at > t + 1e-12) {
      k++;
      continue;
    }
    SimPacket p = s->q[k];
    s->q[k] = s->q[--s->nq];
    if (p.to_client)
      client_receive(s, p.idx, p.buf, p.len);
    else
      server_receive(s, p.idx, p.buf, p.len, t);
  }
}

static void
poll_due(Sim *s)
{
  NTT_Now now;
  CLK_ReadNow(s->clk, &now);
  for (int i = 0; i < s->n; i++) {
    uint8_t out[PKT_MAX_LEN];
    size_t len;
    if (ASC_BuildRequest(s->asc[i], &now, NULL, &s->rnd, out, &len) == ASC_TX_SEND)
      enqueue(s, DSC_Seconds(now.mono_ns) + one_way(s, i), false, i, out, len);
  }
}

static double
next_event(const Sim *s)
{
  double t = s->next_tick;
  for (int i = 0; i < s->n; i++)
    t = fmin(t, (double)ASC_NextPollTime(s->asc[i]) / 1e9);
  for (int k = 0; k < s->nq; k++)
    t = fmin(t, s->q[k].at);
  if (s->attack_every > 0)
    t = fmin(t, s->next_attack);
  return t;
}

static void
track_offset(Sim *s, double t)
{
  double off = fabs(CLK_SimOffset(s->clk));
  if (s->steps > 0 && off >= 100e-6)
    s->last_big_t = t;
  if (off >= 1e-3)
    s->last_1ms_t = t;
  if (t >= s->late_from) {
    s->max_late = fmax(s->max_late, off);
    s->sum2_late += off * off;
    s->n_late++;
    s->n_late_ok += off < 100e-6;
  }
}

static void
sim_run(Sim *s, double until)
{
  for (;;) {
    double now = CLK_SimElapsed(s->clk);
    double t = next_event(s);
    if (t > until)
      break;
    /* never stall on rounding between ns timers and double time */
    CLK_SimAdvance(s->clk, t > now ? t - now : 1e-9);
    t = CLK_SimElapsed(s->clk);
    deliver_due(s, t);
    poll_due(s);
    if (s->attack_every > 0 && t >= s->next_attack) {
      attack(s, t);
      s->next_attack += s->attack_every;
    }
    if (t >= s->next_tick) {
      NTT_Now n;
      CLK_ReadNow(s->clk, &n);
      double slewed = DSC_Tick(s->dsc, &n);
      for (int i = 0; i < s->n; i++)
        ASC_AdjustOffsets(s->asc[i], slewed);
      track_offset(s, t);
      s->next_tick += 1.0;
    }
  }
}

static double
rms_late(const Sim *s)
{
  return s->n_late ? sqrt(s->sum2_late / s->n_late) : 0.0;
}

static void
report(const Sim *s, const char *name)
{
  printf("%s: step at %.0f s; last |offset| >= 100 us at %.0f s (%.2f h); last 2 h: "
         "rms %.1f us, max %.1f us, %.1f%% of seconds within 100 us; final offset %+.2f us; "
         "frequency %+.4f ppm (error %+.4f ppm); poll 2^%d\n",
         name, s->step_t, s->last_big_t, s->last_big_t / 3600, rms_late(s) * 1e6,
         s->max_late * 1e6, s->n_late ? 100.0 * s->n_late_ok / s->n_late : 0.0,
         -CLK_SimOffset(s->clk) * 1e6, DSC_GetFrequency(s->dsc) * 1e6,
         (DSC_GetFrequency(s->dsc) + 50e-6) * 1e6, DSC_GetPoll(s->dsc));
}

#define SIM_HOURS 12.0

static void
test_sim_three_servers_converge(void)
{
  Sim *s = calloc(1, sizeof(*s));
  sim_init(s, 3, 0.5, 50e-6);
  s->late_from = (SIM_HOURS - 2) * 3600;
  sim_run(s, SIM_HOURS * 3600);
  report(s, "three servers");
  CLK_Stats st;
  CLK_GetStats(s->clk, &st);
  TEST_EQ_INT(st.steps, 1);
  TEST_NEAR(st.stepped, -0.5, 0.005);
  TEST_CHECK(s->step_t < 20);
  TEST_EQ_INT(s->peer_lost, 0); /* never lost once selected, over 12 h */
  /* Converged. With the default seed (the scenario the suite runs) |offset| stays below
   * 100 us for the whole last 2 h; the looser bounds hold for every seed we swept
   * (docs/client.md). */
  TEST_CHECK(rms_late(s) < 200e-6);
  TEST_CHECK(s->max_late < 300e-6);
  if (harness_seed == 12345)
    TEST_CHECK(s->max_late < 100e-6);
  TEST_NEAR(DSC_GetFrequency(s->dsc), -50e-6, 0.25e-6);
  TEST_EQ_INT(s->outcomes[ASC_DROP_BOGUS_ORIGIN], 0);
  TEST_CHECK(s->outcomes[ASC_SAMPLE] > 100);
  NTT_Now now;
  CLK_ReadNow(s->clk, &now);
  SYS_Vars sys;
  TEST_CHECK(DSC_GetServerSystem(s->dsc, &now, -20, &sys));
  TEST_EQ_INT(sys.stratum, 2);
  TEST_EQ_INT(sys.leap, 0);
  TEST_CHECK(sys.root_delay > 0.004 && sys.root_delay < 0.03);
  sim_free(s);
  free(s);
}

static void
test_sim_falseticker_rejected(void)
{
  Sim *s = calloc(1, sizeof(*s));
  sim_init(s, 4, 0.5, 50e-6);
  s->srv[3].offset = 0.100;
  s->false_idx = 3;
  s->late_from = (SIM_HOURS - 2) * 3600;
  sim_run(s, SIM_HOURS * 3600);
  report(s, "three servers + falseticker");
  TEST_EQ_INT(s->peer_lost, 0); /* never lost once selected, over 12 h */
  TEST_CHECK(s->selections > 50);
  TEST_EQ_INT(s->false_selected, 0);
  TEST_EQ_INT(s->false_survived, 0); /* never combined once filters are warm */
  TEST_CHECK(rms_late(s) < 200e-6);
  TEST_CHECK(s->max_late < 300e-6);
  TEST_NEAR(DSC_GetFrequency(s->dsc), -50e-6, 0.25e-6);
  sim_free(s);
  free(s);
}

/* Cold start (issue 14): no drift file, the clock 0.5 s off and 50 ppm fast, three servers
 * with 1 ms of jitter. No stage waits for a stepout: the estimate is used from the first
 * update after the step. */
static void
test_sim_cold_start(void)
{
  Sim *s = calloc(1, sizeof(*s));
  sim_init(s, 3, 0.5, 50e-6);
  sim_run(s, 1800);
  double freq_30min = DSC_GetFrequency(s->dsc);
  double last_100us = s->last_big_t;
  s->late_from = 1800;
  sim_run(s, 3 * 3600);
  printf("cold start: step at %.0f s; |offset| < 1 ms from %.0f s, < 100 us from %.0f s on; "
         "frequency at 30 min %+.4f ppm; last 2.5 h: max %.1f us, rms %.1f us\n",
         s->step_t, s->last_1ms_t, s->last_big_t, freq_30min * 1e6, s->max_late * 1e6,
         rms_late(s) * 1e6);
  TEST_EQ_INT(s->steps, 1);
  TEST_CHECK(s->step_t < 20);
  TEST_CHECK(s->last_1ms_t < 300);     /* |offset| < 1 ms within 5 min, and stays */
  TEST_CHECK(last_100us < 1800);       /* < 100 us within 30 min ... */
  TEST_CHECK(s->max_late < 100e-6);    /* ... and stays there */
  TEST_NEAR(freq_30min, -50e-6, 1e-6); /* frequency within 1 ppm by then */
  TEST_EQ_INT(s->peer_lost, 0);
  sim_free(s);
  free(s);
}

/* Request gaps at a server, in s. */
static double
gap(const SimServer *sv, size_t k)
{
  return sv->req_t[k + 1] - sv->req_t[k];
}

static void
test_sim_deny_backoff_then_retry(void)
{
  Sim *s = calloc(1, sizeof(*s));
  sim_init(s, 4, 0.5, 50e-6);
  SimServer *d = &s->srv[3];
  d->mode = SRV_DENY;
  d->mode_until = 5000; /* refuses us for the first 5000 s, then serves */
  sim_run(s, 4 * 3600);
  /* first poll -> DENY; silent 1024 s; DENY again; 2048 s; DENY; 4096 s; then served */
  TEST_CHECK(d->nreq > 6);
  printf("deny: requests at the refusing server at");
  for (size_t k = 0; k < 5 && k < d->nreq; k++)
    printf(" %.0f", d->req_t[k]);
  printf(" s\n");
  TEST_NEAR(gap(d, 0), 1024, 2);
  TEST_NEAR(gap(d, 1), 2048, 2);
  TEST_NEAR(gap(d, 2), 4096, 2);
  TEST_CHECK(d->req_t[3] > 5000); /* retried after the back-off without a restart */
  ASC_Status st;
  ASC_GetStatus(s->asc[3], &st);
  TEST_CHECK(!st.denied);
  TEST_CHECK(st.reach != 0);
  TEST_EQ_INT(st.deny_count, 0); /* reset after good service */
  TEST_CHECK(s->outcomes[ASC_KOD_DENY] == 3);
  TEST_CHECK(fabs(CLK_SimOffset(s->clk)) < 1e-3);
  sim_free(s);
  free(s);
}

static void
test_sim_rate_raises_poll(void)
{
  Sim *s = calloc(1, sizeof(*s));
  sim_init(s, 3, 0.5, 50e-6);
  SimServer *r = &s->srv[2];
  r->mode = SRV_RATE;
  r->kod_poll = 8;
  r->kods_left = 1;
  sim_run(s, 1800);
  /* the first request got RATE(poll 8): the next request waits at least 2^8 s */
  TEST_CHECK(r->nreq >= 3);
  TEST_CHECK(gap(r, 0) >= 255.99);
  ASC_Status st;
  ASC_GetStatus(s->asc[2], &st);
  printf("rate: after RATE poll 8, next request %.0f s later; floor 2^%d\n", gap(r, 0),
         st.rate_floor);
  TEST_CHECK(st.rate_floor >= 7); /* may have decayed by a step after clean replies */
  /* a RATE asking for 2^17 is capped at 2^10 */
  r->mode = SRV_RATE;
  r->kod_poll = 17;
  r->kods_left = 1;
  size_t before = r->nreq;
  sim_run(s, 1800 + 3 * 3600);
  TEST_CHECK(r->nreq >= before + 2);
  TEST_NEAR(gap(r, before), 1024, 70);
  ASC_GetStatus(s->asc[2], &st);
  TEST_CHECK(st.rate_floor <= 10);
  TEST_EQ_INT(s->outcomes[ASC_KOD_RATE], 2);
  sim_free(s);
  free(s);
}

/* Two identical runs, one under attack: forged DENY/RATE/RSTR KoDs with zero or guessed
 * origins and replays of genuine replies, every 7 s to every association. */
static void
test_sim_spoofed_kod_changes_nothing(void)
{
  Sim *a = calloc(1, sizeof(*a)), *b = calloc(1, sizeof(*b));
  sim_init(a, 3, 0.5, 50e-6);
  sim_init(b, 3, 0.5, 50e-6);
  b->attack_every = 7.0;
  b->next_attack = 3.5;
  sim_run(a, 3 * 3600);
  sim_run(b, 3 * 3600);
  unsigned forged = b->outcomes[ASC_DROP_ZERO_ORIGIN] + b->outcomes[ASC_DROP_BOGUS_ORIGIN] +
                    b->outcomes[ASC_DROP_NOT_PENDING];
  printf("spoof: %u forged/replayed packets dropped; offsets %+.3f us vs %+.3f us\n", forged,
         -CLK_SimOffset(a->clk) * 1e6, -CLK_SimOffset(b->clk) * 1e6);
  TEST_CHECK(forged > 3000);
  TEST_EQ_INT(b->outcomes[ASC_KOD_DENY] + b->outcomes[ASC_KOD_RATE], 0);
  for (int i = 0; i < 3; i++) {
    TEST_EQ_INT(a->srv[i].nreq, b->srv[i].nreq);
    size_t n = a->srv[i].nreq < MAX_LOG ? a->srv[i].nreq : MAX_LOG;
    for (size_t k = 0; k < n; k++)
      if (fabs(a->srv[i].req_t[k] - b->srv[i].req_t[k]) > 1e-6) {
        TEST_CHECK(!"request schedule changed under attack");
        break;
      }
  }
  TEST_NEAR(CLK_SimOffset(a->clk), CLK_SimOffset(b->clk), 1e-8);
  sim_free(a);
  sim_free(b);
  free(a);
  free(b);
}

/* Replace association i by one made from a configuration text, as the daemon does. */
static void
sim_assoc_from_config(Sim *s, int i, const char *text)
{
  CNF_Config *cfg = CNF_Create();
  TEST_CHECK(cfg && CNF_ParseText(cfg, "sim.conf", text, NULL));
  if (!cfg || cfg->n_assocs != 1) {
    TEST_CHECK(!"one server line");
    CNF_Destroy(cfg);
    return;
  }
  NTT_Now now;
  CLK_ReadNow(s->clk, &now);
  ASC_Params ap;
  ASC_ParamsFromConfig(&cfg->assocs[0], &cfg->tos, &s->srv[i].addr, -20, &ap);
  ASC_Destroy(s->asc[i]);
  s->asc[i] = ASC_Create(&ap, &now, &s->rnd);
  CNF_Destroy(cfg);
}

/* True if every gap of server i's requests between true times from and to is an iburst gap
 * (2 s) or a poll of 2^3 s with its jitter (up to 1/16 shorter or longer), as the
 * integration tests read them off the wire. */
static bool
schedule_is_poll3(const SimServer *sv, double from, double to, int *ngaps)
{
  *ngaps = 0;
  for (size_t k = 0; k + 1 < sv->nreq && k + 1 < MAX_LOG; k++) {
    if (sv->req_t[k] < from || sv->req_t[k + 1] > to)
      continue;
    double g = gap(sv, k);
    (*ngaps)++;
    if (!((g >= 1.9 && g <= 2.3) || (g >= 7.4 && g <= 8.7)))
      return false;
  }
  return true;
}

/* The client timelines of tests/integration/test_cve_client.py and test_client.py, with
 * their configuration (`server ... iburst minpoll 3 maxpoll 3`, `tos kodbackoff 3
 * kodbackoffmax 4 kodratecap 4`; `tos kodbackoff 4 kodbackoffmax 5` for the DENY control),
 * on the simulated clock. The integration tests check on the real daemon that genuine KoDs
 * are obeyed (counters, log lines) and forged ones are not; the waits that follow (16 s after
 * a RATE, 8 s, 16 s, 16 s of silence after DENYs) are checked here in milliseconds. */
static void
test_sim_short_kod_timeline_from_config(void)
{
  static const char *const tos = "tos kodbackoff 3 kodbackoffmax 4 kodratecap 4\n";
  char text[256];
  Sim *s = calloc(1, sizeof(*s));
  sim_init(s, 4, 0.5, 50e-6);
  for (int i = 0; i < 4; i++) {
    char a[ADR_STRLEN];
    snprintf(text, sizeof(text), "server %s iburst minpoll 3 maxpoll 3\n%s",
             ADR_Format(&s->srv[i].addr, a, sizeof(a)),
             i == 3 ? "tos kodbackoff 4 kodbackoffmax 5\n" : tos);
    sim_assoc_from_config(s, i, text);
  }
  /* 24 s of plain service: the iburst (2 s apart), then polls of 2^3 s */
  sim_run(s, 24.0);
  int ngaps;
  TEST_CHECK(schedule_is_poll3(&s->srv[2], 0, 24, &ngaps));
  TEST_CHECK(ngaps >= 6);
  /* then: a RATE with poll 17 to 0, DENY to 1 (three times) and to 3 (once); 2 serves */
  s->srv[0].mode = SRV_RATE;
  s->srv[0].kod_poll = 17;
  s->srv[0].kods_left = 1;
  s->srv[1].mode = SRV_DENY;
  s->srv[1].kods_left = 3;
  s->srv[3].mode = SRV_DENY;
  s->srv[3].kods_left = 1;
  size_t r0 = s->srv[0].nreq, d1 = s->srv[1].nreq, d3 = s->srv[3].nreq;
  sim_run(s, 24.0 + 90.0);
  /* RATE(poll 17) is honoured, capped at 2^kodratecap = 16 s */
  TEST_CHECK(s->srv[0].nreq >= r0 + 2);
  double g_rate = s->srv[0].nreq >= r0 + 2 ? gap(&s->srv[0], r0) : 0;
  TEST_CHECK(g_rate >= 15.9 && g_rate <= 17.5);
  /* DENY: silent 2^max(poll, kodbackoff) = 8 s, then doubling to 2^kodbackoffmax = 16 s */
  TEST_CHECK(s->srv[1].nreq >= d1 + 4);
  double g1[3] = {0, 0, 0};
  for (int k = 0; k < 3 && s->srv[1].nreq >= d1 + (size_t)k + 2; k++)
    g1[k] = gap(&s->srv[1], d1 + (size_t)k);
  TEST_NEAR(g1[0], 8, 0.1);
  TEST_NEAR(g1[1], 16, 0.1);
  TEST_NEAR(g1[2], 16, 0.1);
  ASC_Status st;
  ASC_GetStatus(s->asc[1], &st);
  TEST_CHECK(!st.denied); /* served again after the back-off, without a restart */
  TEST_CHECK(st.reach != 0);
  /* the control's DENY with kodbackoff 4: 16 s of silence */
  TEST_CHECK(s->srv[3].nreq >= d3 + 2);
  double g3 = s->srv[3].nreq >= d3 + 2 ? gap(&s->srv[3], d3) : 0;
  TEST_NEAR(g3, 16, 0.1);
  /* the undisturbed one kept its schedule throughout */
  TEST_CHECK(schedule_is_poll3(&s->srv[2], 0, 24.0 + 90.0, &ngaps));
  printf("short kod timeline: RATE -> next request %.2f s; DENY x3 -> %.2f %.2f %.2f s; "
         "DENY (kodbackoff 4) -> %.2f s\n",
         g_rate, g1[0], g1[1], g1[2], g3);
  TEST_EQ_INT(s->outcomes[ASC_KOD_RATE], 1);
  TEST_EQ_INT(s->outcomes[ASC_KOD_DENY], 4);
  sim_free(s);
  free(s);
}

/* ---- tinker and tos, configured by text as the daemon is (docs/client.md) ---- */

static void
sim_done(Sim *s)
{
  sim_free(s);
  free(s);
}

/* tinker step: 0 never steps (the 0.5 s is slewed out at up to 500 ppm); stepback 0 refuses
 * only a backward step (our clock ahead), stepfwd 0 only a forward one. */
static void
test_sim_tinker_step(void)
{
  Sim *s = sim_new_config(3, 0.5, 50e-6, "tinker step 0\n");
  sim_run(s, 600);
  double at600 = CLK_SimOffset(s->clk);
  sim_run(s, 3600);
  printf("tinker step 0: 0.5 s ahead: %.3f s at 600 s, %+.1f us at 1 h, %u steps\n", at600,
         CLK_SimOffset(s->clk) * 1e6, s->steps);
  TEST_EQ_INT(s->steps, 0);
  TEST_CHECK(at600 < 0.3 && at600 > 0.1); /* slewing at most 500 ppm: never faster */
  TEST_CHECK(fabs(CLK_SimOffset(s->clk)) < 1e-3);
  TEST_EQ_INT(s->peer_lost, 0);
  sim_done(s);
  static const struct {
    const char *conf;
    double offset; /* the clock's error: > 0 ahead (a backward step) */
    unsigned steps;
  } cases[] = {{"tinker stepback 0\n", 0.5, 0},
               {"tinker stepback 0\n", -0.5, 1},
               {"tinker stepfwd 0\n", -0.5, 0},
               {"tinker stepfwd 0\n", 0.5, 1},
               {"tinker step 1\n", 0.5, 0},
               {"tinker step 0.3\n", 0.5, 1},
               {"tinker step 0 stepback 0.2\n", 0.5, 1}};
  for (size_t k = 0; k < sizeof(cases) / sizeof(cases[0]); k++) {
    s = sim_new_config(3, cases[k].offset, 0, cases[k].conf);
    sim_run(s, 300);
    if (s->steps != cases[k].steps)
      printf("%s with %+.1f s: %u steps\n", cases[k].conf, cases[k].offset, s->steps);
    TEST_EQ_INT(s->steps, cases[k].steps);
    sim_done(s);
  }
}

/* tinker panic: 2000 s off is refused by default (the clock untouched), accepted with 0. */
static void
test_sim_tinker_panic(void)
{
  Sim *s = sim_new_config(3, 2000, 0, "driftfile /nonexistent\n");
  sim_run(s, 300);
  TEST_EQ_INT(s->steps, 0);
  TEST_CHECK(s->panics > 0);
  TEST_NEAR(CLK_SimOffset(s->clk), 2000, 1e-3);
  sim_done(s);
  s = sim_new_config(3, 2000, 0, "tinker panic 0\n");
  sim_run(s, 300);
  printf("tinker panic 0: 2000 s ahead: %u step(s), %+.1f us at 300 s\n", s->steps,
         CLK_SimOffset(s->clk) * 1e6);
  TEST_EQ_INT(s->steps, 1);
  TEST_EQ_INT(s->panics, 0);
  TEST_CHECK(fabs(CLK_SimOffset(s->clk)) < 1e-3);
  sim_done(s);
}

/* tinker stepout: once synchronized, a lasting 0.5 s jump of every server is stepped only
 * after the stepout (900 s by default). */
static double
step_delay_after_jump(const char *conf)
{
  Sim *s = sim_new_config(3, 0, 0, conf);
  sim_run(s, 3600);
  TEST_EQ_INT(s->steps, 0);
  for (int i = 0; i < s->n; i++)
    s->srv[i].offset = 0.5;
  sim_run(s, 3600 + 7200);
  double d = s->steps >= 1 ? s->first_step_t - 3600 : -1;
  TEST_CHECK(s->steps >= 1);
  sim_done(s);
  return d;
}

static void
test_sim_tinker_stepout(void)
{
  double d900 = step_delay_after_jump("");
  double d2400 = step_delay_after_jump("tinker stepout 2400\n");
  double d60 = step_delay_after_jump("tinker stepout 60\n");
  printf("stepout: a lasting 0.5 s jump is stepped %.0f s after it (default 900), %.0f s "
         "(stepout 2400), %.0f s (stepout 60)\n",
         d900, d2400, d60);
  /* The stepout counts from the last update the loop accepted: the sample in use by the
   * system peer's clock filter, which may be up to 8 polls (of 64 s) older than the jump.
   * Until the filters hold only samples taken after it, an older, smaller one may still come
   * through and be accepted, which starts the count again; so the delays vary with the seed
   * (the exact rule is checked in test_discipline.c). */
  TEST_CHECK(d60 >= 0);
  TEST_CHECK(d900 >= 900 - 512);
  TEST_CHECK(d2400 >= 2400 - 512);
  TEST_CHECK(d2400 > d900 + 600);
}

/* tinker dispersion: what we serve grows at the configured rate, and starts higher (the
 * samples and the filter age faster too). */
static void
test_sim_tinker_dispersion(void)
{
  double disp[2], phi[2];
  const char *conf[2] = {"", "tinker dispersion 500\n"};
  for (int k = 0; k < 2; k++) {
    Sim *s = sim_new_config(3, 0, 0, conf[k]);
    sim_run(s, 1800);
    NTT_Now now;
    CLK_ReadNow(s->clk, &now);
    SYS_Vars sys;
    TEST_CHECK(DSC_GetServerSystem(s->dsc, &now, -20, &sys));
    disp[k] = sys.root_disp;
    phi[k] = sys.phi;
    sim_done(s);
  }
  printf("tinker dispersion: root dispersion served %.1f us at 15 ppm, %.1f us at 500 ppm\n",
         disp[0] * 1e6, disp[1] * 1e6);
  TEST_NEAR(phi[0], 15e-6, 1e-12);
  TEST_NEAR(phi[1], 500e-6, 1e-12);
  TEST_CHECK(disp[1] > disp[0] + 100e-6);
}

/* tos minsane 2 with one source: never synchronized; tos maxdist: the distant server
 * never takes part. */
static void
test_sim_tos_minsane_maxdist(void)
{
  Sim *s = sim_new_config(1, 0.5, 0, "tos minsane 2\n");
  sim_run(s, 1800);
  TEST_EQ_INT(s->selections, 0);
  TEST_EQ_INT(s->steps, 0);
  TEST_CHECK(s->outcomes[ASC_SAMPLE] > 20);
  sim_done(s);
  s = sim_new_config(1, 0.5, 0, "");
  sim_run(s, 1800);
  TEST_CHECK(s->selections > 20); /* the control: the same source alone is enough */
  sim_done(s);
  s = sim_new_config(3, 0, 0, "tos maxdist 0.02\n");
  s->srv[2].base_delay = 0.030; /* root distance about 31 ms */
  sim_run(s, 3600);
  printf("tos maxdist 0.02: combined %u / %u / %u times (one-way delays 2, 5, 30 ms)\n",
         s->survived[0], s->survived[1], s->survived[2]);
  TEST_CHECK(s->survived[0] > 20);
  TEST_EQ_INT(s->survived[2], 0);
  TEST_EQ_INT(s->peer_lost, 0);
  sim_done(s);
  s = sim_new_config(3, 0, 0, "");
  s->srv[2].base_delay = 0.030;
  sim_run(s, 3600);
  TEST_CHECK(s->survived[2] > 20); /* the control */
  sim_done(s);
}

/* tinker huffpuff: an hour of congestion on the way back from every server (10 ms more
 * each way back, so every delay in the clock filters is up by 10 ms) would move our clock
 * by 5 ms; the huff-n'-puff filter remembers the lowest delay of the last 2 h and takes the
 * excess half back out. */
static double
congested_error(const char *conf)
{
  Sim *s = sim_new_config(3, 0, 0, conf);
  sim_run(s, 7200);
  s->ret_extra = 0.010;
  s->late_from = 7200 + 1800;
  sim_run(s, 7200 + 3600);
  double worst = s->max_late;
  sim_done(s);
  return worst;
}

static void
test_sim_tinker_huffpuff(void)
{
  double plain = congested_error("");
  double huff = congested_error("tinker huffpuff 7200\n");
  printf("one-way congestion of 10 ms: worst |offset| in its second half hour %.0f us "
         "without huff-n'-puff, %.0f us with 'tinker huffpuff 7200'\n",
         plain * 1e6, huff * 1e6);
  TEST_CHECK(plain > 4e-3);
  TEST_CHECK(huff < 1e-3);
}

static int
cmp_double(const void *a, const void *b)
{
  double x = *(const double *)a, y = *(const double *)b;
  return (x > y) - (x < y);
}

/* Steady state in bench/timequality.sh's jitter scenarios (issue 14): one server, no base
 * delay, both polls fixed at 2^4 s, our clock on time with no frequency error (as the bench's
 * -x daemons on one system clock). |offset| every 5 s from 1000 s to 3 h: median and p95. */
static void
steady_state(SimJitter jitter, double *median, double *p95)
{
  static double off[2000];
  Sim *s = calloc(1, sizeof(*s));
  sim_init_with(s, 1, 0, 0, NULL, 4);
  s->jitter = jitter;
  s->srv[0].base_delay = 0;
  int n = 0;
  for (double t = 1000; t <= 3 * 3600 && n < 2000; t += 5) {
    sim_run(s, t);
    off[n++] = fabs(CLK_SimOffset(s->clk));
  }
  qsort(off, (size_t)n, sizeof(off[0]), cmp_double);
  *median = off[n / 2];
  *p95 = off[(n - 1) * 95 / 100];
  TEST_EQ_INT(s->peer_lost, 0);
  TEST_EQ_INT(s->steps, 0);
  sim_free(s);
  free(s);
}

/* The loop weighs each sample by its delay above the lowest of the source's last
 * DSC_DELAY_HISTORY samples. Against the lowest of the eight stages only (before), the
 * default seed gave 69/141 us (sym) and 12.8/27.0 us (exp), and this test failed; the mean
 * of seeds 1-20 went from 44/109 and 15/46 us to 40/89 and 13/40 us. With DSC_SAMPLE_SD
 * 100 us (was 200) the mean of seeds 1-40 is 36.6/96.3 (sym) and 11.0/34.1 us (exp); the
 * worst sym seed of 1-20 is 16 (113.7/244.0 us, 73.6/166.6 with 200 us). */
static void
test_sim_steady_state_jitter(void)
{
  double med, p95;
  steady_state(SIM_JIT_SYM, &med, &p95);
  printf("steady state, 0-2 ms uniform each way, poll 2^4: |offset| median %.1f us, p95 %.1f "
         "us\n",
         med * 1e6, p95 * 1e6);
  TEST_CHECK(med < 120e-6 && p95 < 250e-6); /* every seed we swept (1-20) */
  if (harness_seed == 12345)
    TEST_CHECK(med < 60e-6 && p95 < 120e-6);
  steady_state(SIM_JIT_EXP, &med, &p95);
  printf("steady state, exponential (mean 0.5 ms) each way, 2 %% lost, poll 2^4: |offset| "
         "median %.1f us, p95 %.1f us\n",
         med * 1e6, p95 * 1e6);
  TEST_CHECK(med < 30e-6 && p95 < 90e-6);
  if (harness_seed == 12345)
    TEST_CHECK(med < 15e-6 && p95 < 40e-6);
}

TEST_MAIN(TEST_CASE(test_sim_three_servers_converge), TEST_CASE(test_sim_falseticker_rejected),
          TEST_CASE(test_sim_cold_start), TEST_CASE(test_sim_deny_backoff_then_retry),
          TEST_CASE(test_sim_rate_raises_poll),
          TEST_CASE(test_sim_spoofed_kod_changes_nothing),
          TEST_CASE(test_sim_short_kod_timeline_from_config), TEST_CASE(test_sim_tinker_step),
          TEST_CASE(test_sim_tinker_panic), TEST_CASE(test_sim_tinker_stepout),
          TEST_CASE(test_sim_tinker_dispersion), TEST_CASE(test_sim_tos_minsane_maxdist),
          TEST_CASE(test_sim_tinker_huffpuff), TEST_CASE(test_sim_steady_state_jitter))
