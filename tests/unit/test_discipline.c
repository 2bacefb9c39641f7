/* Discipline tests: clock filter, selection/cluster/combine, the loop's state machine, the
 * served system variables, the drift file and the clock drivers that never touch the clock. */
#include "discipline.h"

#include <math.h>
#include <unistd.h>

#include "harness.h"
#include "packet.h"

static DSC_Candidate
cand(int id, double offset, double jitter)
{
  return (DSC_Candidate){.id = id,
                         .offset = offset,
                         .delay = 0.01,
                         .jitter = jitter,
                         .disp = 0.001,
                         .epoch = 100,
                         .root_delay = 0.01,
                         .root_disp = 0.001,
                         .stratum = 1,
                         .leap = 0,
                         .peer_refid = 0x0a000000u + (uint32_t)id,
                         .poll = 6,
                         .reachable = true};
}

static void
test_dsc_filter_picks_min_delay_and_ages(void)
{
  DSC_Filter f;
  DSC_FilterInit(&f, DSC_PHI);
  TEST_EQ_INT(DSC_FilterAdd(&f, 0.010, 0.050, 1e-5, 10, 6, -20), DSC_FILTER_NEW);
  TEST_EQ_INT(DSC_FilterAdd(&f, 0.002, 0.020, 1e-5, 74, 6, -20), DSC_FILTER_NEW);
  TEST_NEAR(f.offset, 0.002, 1e-12);
  /* a later sample with a larger delay does not replace the best one */
  TEST_EQ_INT(DSC_FilterAdd(&f, 0.004, 0.030, 1e-5, 138, 6, -20), DSC_FILTER_OLD);
  TEST_NEAR(f.offset, 0.002, 1e-12);
  TEST_EQ_INT(f.valid, 3);
  TEST_CHECK(f.jitter > 0.001 && f.jitter < 0.01);
  /* dispersion grows by PHI per second */
  TEST_NEAR(DSC_FilterDispAt(&f, 1138) - DSC_FilterDispAt(&f, 138), 15e-3, 1e-9);
  /* unanswered polls push empty stages in; enough of them empty the filter */
  for (int i = 0; i < 8; i++)
    DSC_FilterAddDummy(&f, 200 + 64 * i, -20);
  TEST_EQ_INT(f.valid, 0);
  TEST_NEAR(f.disp, 16.0 * (1 - ldexp(1, -8)), 1e-3);
  /* slew adjustment moves every stored offset */
  DSC_FilterInit(&f, DSC_PHI);
  DSC_FilterAdd(&f, 0.010, 0.020, 1e-5, 10, 6, -20);
  DSC_FilterAdjust(&f, 0.004);
  TEST_NEAR(f.offset, 0.006, 1e-12);
}

static void
test_dsc_filter_popcorn_spike(void)
{
  DSC_Filter f;
  DSC_FilterInit(&f, DSC_PHI);
  double t = 0;
  for (int i = 0; i < 8; i++, t += 64)
    DSC_FilterAdd(&f, 0.001 * (i % 2 ? 1 : -1) * 1e-1, 0.010 - 1e-4 * i, 1e-5, t, 6, -20);
  double before = f.offset;
  /* a sudden 50 ms jump at the lowest delay, one poll later: suppressed once */
  TEST_EQ_INT(DSC_FilterAdd(&f, 0.050, 0.009, 1e-5, t, 6, -20), DSC_FILTER_SPIKE);
  TEST_NEAR(f.offset, before, 1e-12);
  /* it persists: two polls after the last sample used, it is accepted */
  TEST_EQ_INT(DSC_FilterAdd(&f, 0.050, 0.0085, 1e-5, t + 64, 6, -20), DSC_FILTER_NEW);
  TEST_NEAR(f.offset, 0.050, 1e-12);
}

static void
test_dsc_select_rejects_falseticker(void)
{
  DSC_SelectParams p;
  DSC_DefaultSelectParams(&p);
  DSC_Candidate c[4] = {cand(0, 0.0010, 1e-4), cand(1, 0.0012, 1e-4), cand(2, 0.0008, 1e-4),
                        cand(3, 0.1000, 1e-4)};
  DSC_Selection s;
  TEST_EQ_INT(DSC_Select(c, 4, &p, -1, &s), DSC_OK);
  TEST_EQ_INT(s.state[3], DSC_SEL_FALSETICKER);
  TEST_CHECK(s.sys_id != 3);
  TEST_EQ_INT(s.survivors, 3);
  TEST_NEAR(s.offset, 0.0010, 2e-4);
  TEST_CHECK(s.low <= 0.0008 && s.high >= 0.0012);
  /* anti-clockhop: the previous system peer is kept while it survives */
  TEST_EQ_INT(DSC_Select(c, 4, &p, 2, &s), DSC_OK);
  TEST_EQ_INT(s.sys_id, 2);
  /* prefer wins */
  c[1].prefer = true;
  TEST_EQ_INT(DSC_Select(c, 4, &p, 2, &s), DSC_OK);
  TEST_EQ_INT(s.sys_id, 1);
}

static void
test_dsc_select_no_majority_and_fitness(void)
{
  DSC_SelectParams p;
  DSC_DefaultSelectParams(&p);
  DSC_Candidate c[3] = {cand(0, 0.0, 1e-4), cand(1, 0.5, 1e-4), cand(2, -0.5, 1e-4)};
  DSC_Selection s;
  TEST_EQ_INT(DSC_Select(c, 3, &p, -1, &s), DSC_NO_MAJORITY);
  /* two agreeing of four usable sources is not a majority */
  DSC_Candidate d[4] = {cand(0, 0.0, 1e-4), cand(1, 0.0002, 1e-4), cand(2, 0.3, 1e-4),
                        cand(3, -0.3, 1e-4)};
  TEST_EQ_INT(DSC_Select(d, 4, &p, -1, &s), DSC_NO_MAJORITY);
  /* unfit candidates: each reason */
  DSC_Candidate u = cand(0, 0, 1e-4);
  TEST_EQ_INT(DSC_Unfit(&u, &p), 0);
  u.noselect = true;
  TEST_EQ_STR(DSC_UnfitName(DSC_Unfit(&u, &p)), "noselect");
  u = cand(0, 0, 1e-4);
  u.reachable = false;
  TEST_EQ_STR(DSC_UnfitName(DSC_Unfit(&u, &p)), "unreachable");
  u = cand(0, 0, 1e-4);
  u.leap = PKT_LEAP_UNSYNC;
  TEST_EQ_STR(DSC_UnfitName(DSC_Unfit(&u, &p)), "stratum");
  u = cand(0, 0, 1e-4);
  u.stratum = 15;
  TEST_EQ_STR(DSC_UnfitName(DSC_Unfit(&u, &p)), "stratum");
  u = cand(0, 0, 1e-4);
  u.root_disp = 2.0;
  TEST_EQ_STR(DSC_UnfitName(DSC_Unfit(&u, &p)), "distance");
  TEST_EQ_INT(DSC_Select(&u, 1, &p, -1, &s), DSC_NO_CANDIDATES);
}

static void
test_dsc_cluster_prunes_outlier(void)
{
  DSC_SelectParams p;
  DSC_DefaultSelectParams(&p);
  /* five truechimers with wide intervals; one sits well away from the others */
  DSC_Candidate c[5];
  for (int i = 0; i < 5; i++) {
    c[i] = cand(i, 0.001 * i * 0.01, 1e-5);
    c[i].root_disp = 0.05;
  }
  c[4].offset = 0.030;
  DSC_Selection s;
  TEST_EQ_INT(DSC_Select(c, 5, &p, -1, &s), DSC_OK);
  TEST_EQ_INT(s.state[4], DSC_SEL_OUTLIER);
  TEST_EQ_INT(s.survivors, 3);
  TEST_CHECK(fabs(s.offset) < 0.001);
}

static DSC_LoopParams
loop_params(void)
{
  DSC_LoopParams p;
  DSC_DefaultLoopParams(&p);
  return p;
}

/* No stage ignores updates: after the first step every update is used, and the frequency
 * is the slope of the raw offsets (measured + corrections applied, the step included). */
static void
test_dsc_loop_steps_then_uses_every_update(void)
{
  DSC_LoopParams p = loop_params();
  DSC_Loop l;
  DSC_LoopInit(&l, &p, false, 0);
  TEST_EQ_INT(DSC_LoopUpdate(&l, 0.5, 10), DSC_LOOP_STEP);
  DSC_LoopStepped(&l, 0.5);
  TEST_NEAR(DSC_LoopOffset(&l, 10), 0, 1e-12);
  TEST_EQ_INT(l.state, DSC_FREQ);
  TEST_CHECK(!DSC_LoopAddSample(&l, 0.3, 10, 1e-4)); /* beyond the step threshold */
  for (int i = 1; i <= 6; i++) {
    double t = 10 + 2 * i; /* an initial burst: 2 s apart */
    TEST_EQ_INT(DSC_LoopUpdate(&l, -20e-6 * (t - 10), t), DSC_LOOP_SLEW);
    TEST_CHECK(DSC_LoopAddSample(&l, -20e-6 * (t - 10), t, 1e-6)); /* precise samples */
    if (i >= 4) /* the estimate follows at once */
      TEST_NEAR(l.last_offset, -20e-6 * (t - 10), 1e-9);
  }
  TEST_NEAR(l.freq, -20e-6, 1e-9);
  TEST_EQ_INT(l.state, DSC_SYNC);
  TEST_NEAR(DSC_LoopOffset(&l, 100), -20e-6 * 90, 1e-9); /* extrapolated with the slope */
}

/* Under -x nothing is applied: the estimate is the clock's own error, ticks or not. */
static void
test_dsc_loop_no_adjust_estimates_clock_error(void)
{
  DSC_LoopParams p = loop_params();
  p.no_adjust = true;
  DSC_Loop l;
  DSC_LoopInit(&l, &p, false, 0);
  TEST_EQ_INT(DSC_LoopUpdate(&l, 0.3, 0), DSC_LOOP_STEP); /* "would be stepped" */
  DSC_LoopStepped(&l, 0.3);
  int t = 0;
  for (int i = 1; i <= 40; i++) {
    for (; t < 16 * i; t++)
      DSC_LoopTick(&l, t);
    double noise = (i % 3 - 1) * 50e-6;
    TEST_EQ_INT(DSC_LoopUpdate(&l, 0.3 + 3e-6 * 16 * i + noise, 16 * i), DSC_LOOP_SLEW);
    TEST_CHECK(DSC_LoopAddSample(&l, 0.3 + 3e-6 * 16 * i + noise, 16 * i, 1e-4));
  }
  TEST_NEAR(l.corr, 0, 0);
  TEST_NEAR(l.slewed, 0, 0);
  TEST_NEAR(l.freq, 3e-6, 0.3e-6);
  TEST_NEAR(DSC_LoopOffset(&l, 640), 0.3 + 3e-6 * 640, 50e-6);
}

/* The frequency changes: the runs test drops the old points, so the estimate follows. */
static void
test_dsc_loop_frequency_change_shrinks_window(void)
{
  DSC_LoopParams p = loop_params();
  p.no_adjust = true;
  DSC_Loop l;
  DSC_LoopInit(&l, &p, true, 0);
  double r = 0;
  for (int i = 0; i < 120; i++) {
    r += (i < 60 ? 1e-6 : 4e-6) * 64;
    DSC_LoopUpdate(&l, r, 64.0 * i);
    DSC_LoopAddSample(&l, r + ((i * 7) % 5 - 2) * 10e-6, 64.0 * i, 1e-5);
  }
  TEST_CHECK(l.npt < DSC_REG_MAX);
  TEST_NEAR(l.freq, 4e-6, 0.2e-6);
}

/* A single popcorn sample 20 ms off among clean ones hardly moves the estimate; a lasting
 * 5 ms shift is followed. */
static void
test_dsc_loop_outlier_counts_less(void)
{
  DSC_LoopParams p = loop_params();
  p.no_adjust = true;
  DSC_Loop l;
  DSC_LoopInit(&l, &p, true, 0);
  DSC_LoopUpdate(&l, 0, 0);
  for (int i = 0; i < 40; i++)
    DSC_LoopAddSample(&l, ((i * 7) % 5 - 2) * 50e-6, 16.0 * i, 200e-6);
  double before = DSC_LoopOffset(&l, 640);
  TEST_CHECK(DSC_LoopAddSample(&l, 0.020, 640, 200e-6));
  TEST_NEAR(DSC_LoopOffset(&l, 640), before, 100e-6);
  for (int i = 41; i < 120; i++)
    DSC_LoopAddSample(&l, 0.005 + ((i * 7) % 5 - 2) * 50e-6, 16.0 * i, 200e-6);
  TEST_NEAR(DSC_LoopOffset(&l, 16.0 * 120), 0.005, 200e-6);
}

static void
test_dsc_loop_spike_panic_and_drift_start(void)
{
  DSC_LoopParams p = loop_params();
  DSC_Loop l;
  DSC_LoopInit(&l, &p, true, 12e-6); /* from a drift file */
  TEST_EQ_INT(l.state, DSC_FSET);
  TEST_EQ_INT(DSC_LoopUpdate(&l, 2000, 10), DSC_LOOP_PANIC);
  TEST_EQ_INT(DSC_LoopUpdate(&l, 0.010, 10), DSC_LOOP_SLEW); /* phase only */
  TEST_CHECK(DSC_LoopAddSample(&l, 0.010, 10, 1e-4));
  TEST_EQ_INT(l.state, DSC_SYNC);
  TEST_NEAR(l.freq, 12e-6, 1e-12);
  TEST_EQ_INT(DSC_LoopUpdate(&l, 0.012, 74), DSC_LOOP_SLEW);
  TEST_CHECK(DSC_LoopAddSample(&l, 0.012, 74, 1e-4));
  TEST_CHECK(l.freq > 12e-6); /* a growing offset speeds the clock up */
  /* one large offset in SYNC is a spike; if it persists past the stepout: step */
  TEST_EQ_INT(DSC_LoopUpdate(&l, 0.5, 138), DSC_LOOP_SPIKE);
  TEST_EQ_INT(DSC_LoopUpdate(&l, 0.5, 202), DSC_LOOP_SPIKE);
  TEST_EQ_INT(DSC_LoopUpdate(&l, 0.5, 74 + p.stepout + 1), DSC_LOOP_STEP);
  TEST_EQ_INT(l.state, DSC_SYNC); /* the frequency was known: no FREQ */
  /* step threshold 0: never step */
  p.step_threshold = 0;
  DSC_LoopInit(&l, &p, true, 0);
  TEST_EQ_INT(DSC_LoopUpdate(&l, 0.5, 10), DSC_LOOP_SLEW);
  /* panic allowed the first time with panic_first_ok (ntpd -g) */
  p = loop_params();
  p.panic_first_ok = true;
  DSC_LoopInit(&l, &p, false, 0);
  TEST_EQ_INT(DSC_LoopUpdate(&l, 5000, 10), DSC_LOOP_STEP);
  TEST_EQ_INT(DSC_LoopUpdate(&l, 5000, 20), DSC_LOOP_PANIC);
}

static void
test_dsc_loop_tick_slews_residual(void)
{
  DSC_LoopParams p = loop_params();
  DSC_Loop l;
  DSC_LoopInit(&l, &p, true, 0);
  DSC_LoopUpdate(&l, 0.004, 0);
  DSC_LoopAddSample(&l, 0.004, 0, 1e-4);
  double slewed = 0;
  for (int t = 0; t <= 20000; t++) {
    double f = DSC_LoopTick(&l, t);
    TEST_CHECK(fabs(f) <= DSC_MAXFREQ);
    slewed += l.slewed;
  }
  TEST_NEAR(slewed, 0.004, 1e-6);
  TEST_NEAR(l.residual, 0, 1e-6);
}

static void
test_dsc_system_serves_what_it_synced_to(void)
{
  CLK_SimParams sp = {.start = {1700000000, 0}, .precision_log2 = -20};
  CLK_Clock *clk = CLK_CreateSimulated(&sp);
  NTT_Now now = {.real = {1700000100, 0}, .mono_ns = 100000000000LL};
  DSC_Params dp;
  DSC_DefaultParams(&dp);
  DSC_System *s = DSC_Create(&dp, clk, true, 0.0, &now);
  SYS_Vars sys;
  TEST_CHECK(!DSC_GetServerSystem(s, &now, -20, &sys)); /* never synchronized */
  DSC_Candidate c[3] = {cand(0, 0.001, 1e-4), cand(1, 0.0011, 1e-4), cand(2, 0.0009, 1e-4)};
  NetAddr v6;
  ADR_Parse("2001:db8::1", &v6);
  for (int i = 0; i < 3; i++) {
    c[i].stratum = 3;
    c[i].epoch = 99;
  }
  c[1].peer_refid = PKT_RefidFromAddr(&v6);
  c[0].jitter = c[2].jitter = 5e-3; /* make 1 the best by distance */
  DSC_Selection sel;
  TEST_EQ_INT(DSC_Update(s, c, 3, &now, &sel), DSC_EV_SLEW);
  TEST_EQ_INT(sel.sys_id, 1);
  TEST_CHECK(DSC_GetServerSystem(s, &now, -20, &sys));
  TEST_EQ_INT(sys.stratum, 4);
  TEST_EQ_INT(sys.refid, PKT_RefidFromAddr(&v6));
  TEST_EQ_INT(sys.leap, 0);
  TEST_EQ_INT(sys.precision, -20);
  TEST_NEAR(sys.root_delay, 0.02, 1e-9);
  TEST_CHECK(sys.root_disp > 0.001 && sys.root_disp < 0.01);
  /* lost: no selection for longer than unsync_after */
  NTT_Now later = {.real = {1700000200, 0}, .mono_ns = 200000000000LL};
  for (int i = 0; i < 3; i++)
    c[i].reachable = false;
  TEST_EQ_INT(DSC_Update(s, c, 3, &later, &sel), DSC_EV_NO_SELECTION);
  TEST_CHECK(DSC_GetServerSystem(s, &later, -20, &sys)); /* holding over */
  later.mono_ns += 301000000000LL;
  TEST_CHECK(!DSC_GetServerSystem(s, &later, -20, &sys));
  /* a step means unsynchronized until the next accepted update */
  for (int i = 0; i < 3; i++) {
    c[i].reachable = true;
    c[i].offset = 0.5;
    c[i].epoch = 600;
  }
  TEST_EQ_INT(DSC_Update(s, c, 3, &later, &sel), DSC_EV_SPIKE); /* once is a spike */
  for (int i = 0; i < 3; i++)
    c[i].epoch = 600 + dp.loop.stepout;
  TEST_EQ_INT(DSC_Update(s, c, 3, &later, &sel), DSC_EV_STEP); /* it persisted: step */
  TEST_NEAR(CLK_SimOffset(clk), 0.5, 1e-12);
  TEST_CHECK(!DSC_GetServerSystem(s, &later, -20, &sys));
  DSC_Destroy(s);
  CLK_Destroy(clk);
}

static void
test_dsc_leap_vote(void)
{
  DSC_SelectParams p;
  DSC_DefaultSelectParams(&p);
  DSC_Candidate c[3] = {cand(0, 0, 1e-4), cand(1, 0, 1e-4), cand(2, 0, 1e-4)};
  c[0].leap = c[1].leap = PKT_LEAP_ADD;
  DSC_Selection s;
  DSC_Select(c, 3, &p, -1, &s);
  TEST_EQ_INT(s.leap, PKT_LEAP_ADD);
  c[1].leap = 0;
  DSC_Select(c, 3, &p, -1, &s);
  TEST_EQ_INT(s.leap, 0);
}

static void
test_dsc_drift_file(void)
{
  double ppm;
  TEST_CHECK(DSC_ParseDrift("-12.345\n", &ppm));
  TEST_NEAR(ppm, -12.345, 1e-12);
  TEST_CHECK(DSC_ParseDrift("  3 ", &ppm));
  TEST_CHECK(!DSC_ParseDrift("", &ppm));
  TEST_CHECK(!DSC_ParseDrift("12 ppm", &ppm));
  TEST_CHECK(!DSC_ParseDrift("600", &ppm));
  TEST_CHECK(!DSC_ParseDrift("nan", &ppm));
  char buf[32];
  TEST_EQ_INT(DSC_FormatDrift(-7.5, buf, sizeof(buf)), 7);
  TEST_EQ_STR(buf, "-7.500\n");
  char path[] = "/tmp/ntpg_drift_XXXXXX";
  int fd = mkstemp(path);
  TEST_CHECK(fd >= 0);
  close(fd);
  TEST_CHECK(DSC_WriteDriftFile(path, 21.25));
  TEST_CHECK(DSC_ReadDriftFile(path, &ppm));
  TEST_NEAR(ppm, 21.25, 1e-9);
  unlink(path);
  TEST_CHECK(!DSC_ReadDriftFile(path, &ppm));
}

static void
test_clk_null_and_sim_drivers(void)
{
  /* the null driver records and applies nothing (no syscall that modifies the clock) */
  CLK_Clock *n = CLK_CreateSystem(true);
  TEST_CHECK(CLK_IsNoAdjust(n));
  TEST_CHECK(CLK_StepBy(n, 0.25));
  TEST_CHECK(CLK_SetFrequency(n, 1.0)); /* clamped */
  CLK_Stats st;
  CLK_GetStats(n, &st);
  TEST_EQ_INT(st.steps, 1);
  TEST_NEAR(st.stepped, 0.25, 0);
  TEST_NEAR(st.freq, CLK_MAX_FREQ, 0);
  TEST_EQ_STR(CLK_Name(n), "system (no-adjust)");
  CLK_Destroy(n);
  /* the simulated clock drifts by error + correction */
  CLK_SimParams sp = {
      .start = {1700000000, 0}, .offset = 0.5, .freq_error = 50e-6, .precision_log2 = -20};
  CLK_Clock *s = CLK_CreateSimulated(&sp);
  CLK_SimAdvance(s, 100);
  TEST_NEAR(CLK_SimOffset(s), 0.5 + 0.005, 1e-12);
  CLK_SetFrequency(s, -50e-6);
  CLK_SimAdvance(s, 100);
  TEST_NEAR(CLK_SimOffset(s), 0.505, 1e-12);
  CLK_StepBy(s, -0.505);
  TEST_NEAR(CLK_SimOffset(s), 0, 1e-12);
  NTT_Now now, tru;
  CLK_ReadNow(s, &now);
  CLK_SimTrueNow(s, &tru);
  TEST_NEAR(NTT_TimespecDiff(&now.real, &tru.real), 0, 1e-9);
  TEST_EQ_INT(now.mono_ns, 200000000000LL);
  CLK_Destroy(s);
}

/* ---- tinker, through the configuration as the daemon reads it ---- */

static DSC_Params
params_from(const char *text)
{
  DSC_Params dp;
  CNF_Config *cfg = CNF_Create();
  TEST_CHECK(cfg && CNF_ParseText(cfg, "t.conf", text, NULL));
  DSC_ParamsFromConfig(cfg, &dp);
  CNF_Destroy(cfg);
  return dp;
}

static void
test_dsc_tinker_step_panic_stepout(void)
{
  DSC_Params dp = params_from("tinker step 0.2 stepback 0.05 panic 50 stepout 300\n");
  TEST_NEAR(dp.loop.step_threshold, 0.2, 1e-12);
  TEST_NEAR(dp.loop.step_back, 0.05, 1e-12);
  DSC_Loop l;
  DSC_LoopInit(&l, &dp.loop, true, 0);
  TEST_EQ_INT(DSC_LoopUpdate(&l, 60, 10), DSC_LOOP_PANIC); /* beyond panic 50 */
  TEST_EQ_INT(DSC_LoopUpdate(&l, 0.001, 10), DSC_LOOP_SLEW);
  TEST_CHECK(DSC_LoopAddSample(&l, 0.001, 10, 1e-4));
  /* +0.1 (our clock behind) is below the forward threshold 0.2: slewed */
  TEST_EQ_INT(DSC_LoopUpdate(&l, 0.1, 74), DSC_LOOP_SLEW);
  /* -0.1 (our clock ahead) is beyond stepback 0.05: a spike, stepped after 300 s */
  TEST_EQ_INT(DSC_LoopUpdate(&l, -0.1, 138), DSC_LOOP_SPIKE);
  TEST_EQ_INT(DSC_LoopUpdate(&l, -0.1, 74 + 299), DSC_LOOP_SPIKE);
  TEST_EQ_INT(DSC_LoopUpdate(&l, -0.1, 74 + 301), DSC_LOOP_STEP);
  /* the defaults: ntpd's */
  dp = params_from("");
  TEST_NEAR(dp.loop.step_threshold, 0.128, 1e-12);
  TEST_NEAR(dp.loop.step_back, 0.128, 1e-12);
  TEST_NEAR(dp.loop.panic, 1000, 1e-12);
  TEST_NEAR(dp.loop.stepout, 900, 1e-12);
  TEST_NEAR(dp.select.phi, 15e-6, 1e-15);
  TEST_NEAR(dp.huffpuff, 0, 0);
  /* DSC_DefaultParams sets every field (the simulation uses it without a config) */
  memset(&dp, 0xff, sizeof(dp));
  DSC_DefaultParams(&dp);
  TEST_NEAR(dp.huffpuff, 0, 0);
  TEST_NEAR(dp.select.phi, 15e-6, 1e-15);
  TEST_NEAR(dp.loop.step_back, -1, 0);
  /* panic 0: no limit; step 0: never a step, whatever the offset */
  dp = params_from("tinker panic 0 step 0\n");
  DSC_LoopInit(&l, &dp.loop, true, 0);
  TEST_EQ_INT(DSC_LoopUpdate(&l, 2000, 10), DSC_LOOP_SLEW);
  TEST_EQ_INT(DSC_LoopUpdate(&l, -2000, 74), DSC_LOOP_SLEW);
  dp = params_from("tinker panic 0\n");
  DSC_LoopInit(&l, &dp.loop, true, 0);
  TEST_EQ_INT(DSC_LoopUpdate(&l, 2000, 10), DSC_LOOP_STEP);
}

/* Under -x (the system driver without adjustments) nothing corrects the clock: with
 * `tinker step 0` a 0.5 s offset is slewed in the estimate, but we never claim to serve it. */
static void
test_dsc_tinker_step0_no_adjust_not_served(void)
{
  DSC_Params dp = params_from("tinker step 0\n");
  CLK_Clock *clk = CLK_CreateSystem(true);
  TEST_CHECK(!CLK_AppliesCorrections(clk));
  NTT_Now now = {.real = {1700000100, 0}, .mono_ns = 100000000000LL};
  DSC_System *s = DSC_Create(&dp, clk, true, 0.0, &now);
  DSC_Candidate c[3] = {cand(0, 0.5, 1e-4), cand(1, 0.5001, 1e-4), cand(2, 0.4999, 1e-4)};
  for (int i = 0; i < 3; i++)
    c[i].epoch = 99;
  TEST_EQ_INT(DSC_Update(s, c, 3, &now, NULL), DSC_EV_SLEW); /* no step */
  SYS_Vars sys;
  TEST_CHECK(!DSC_GetServerSystem(s, &now, -20, &sys));
  DSC_Destroy(s);
  /* the same with a clock 50 ms off: served */
  s = DSC_Create(&dp, clk, true, 0.0, &now);
  for (int i = 0; i < 3; i++)
    c[i].offset -= 0.45;
  TEST_EQ_INT(DSC_Update(s, c, 3, &now, NULL), DSC_EV_SLEW);
  TEST_CHECK(DSC_GetServerSystem(s, &now, -20, &sys));
  DSC_Destroy(s);
  CLK_Destroy(clk);
}

/* tinker dispersion: the filter's stages, the fitness bound and what is served age at it. */
static void
test_dsc_tinker_dispersion(void)
{
  DSC_Params dp = params_from("tinker dispersion 500\n");
  TEST_NEAR(dp.select.phi, 500e-6, 1e-15);
  DSC_Filter f;
  DSC_FilterInit(&f, dp.select.phi);
  DSC_FilterAdd(&f, 0.001, 0.010, 1e-5, 10, 6, -20);
  TEST_NEAR(DSC_FilterDispAt(&f, 110) - DSC_FilterDispAt(&f, 10), 0.05, 1e-9);
  /* the fitness bound is maxdist + PHI * poll interval */
  DSC_Candidate c = cand(0, 0.001, 1e-4);
  c.root_disp = 1.5 + 0.010; /* a distance just above maxdist */
  DSC_SelectParams sp = dp.select;
  TEST_EQ_INT(DSC_Unfit(&c, &sp), 0); /* 1.5 + 500e-6 * 64 = 1.532 */
  sp.phi = DSC_PHI;
  TEST_CHECK(DSC_Unfit(&c, &sp) != 0); /* 1.5 + 15e-6 * 64 = 1.501 */
  /* what we serve carries the rate its root dispersion grows at */
  CLK_SimParams csp = {.start = {1700000000, 0}, .precision_log2 = -20};
  CLK_Clock *clk = CLK_CreateSimulated(&csp);
  NTT_Now now = {.real = {1700000100, 0}, .mono_ns = 100000000000LL};
  DSC_System *s = DSC_Create(&dp, clk, true, 0.0, &now);
  DSC_Candidate cs[3] = {cand(0, 0.001, 1e-4), cand(1, 0.0011, 1e-4), cand(2, 0.0009, 1e-4)};
  for (int i = 0; i < 3; i++)
    cs[i].epoch = 90; /* 10 s old: 5 ms of dispersion at 500 ppm */
  TEST_EQ_INT(DSC_Update(s, cs, 3, &now, NULL), DSC_EV_SLEW);
  SYS_Vars sys;
  TEST_CHECK(DSC_GetServerSystem(s, &now, -20, &sys));
  TEST_NEAR(sys.phi, 500e-6, 1e-15);
  TEST_CHECK(sys.root_disp > 0.001 + 0.005);
  DSC_Destroy(s);
  CLK_Destroy(clk);
}

/* Huff-n'-puff: the excess over the window's lowest delay, halved, moves the offset towards
 * zero; the window forgets what is older than its span. */
static void
test_dsc_huffpuff(void)
{
  DSC_HuffPuff h;
  DSC_HuffInit(&h, 0);
  TEST_NEAR(DSC_HuffCorrect(&h, 0.005, 0.030, 10), 0.005, 0); /* off */
  DSC_HuffInit(&h, 3600);                                     /* 4 slots of 900 s */
  TEST_EQ_INT(h.n, 4);
  TEST_NEAR(DSC_HuffCorrect(&h, 0.0001, 0.010, 10), 0.0001, 1e-15); /* the lowest so far */
  TEST_NEAR(DSC_HuffCorrect(&h, -0.005, 0.020, 1000), 0.0, 1e-15);  /* 10 ms over: +5 ms */
  TEST_NEAR(DSC_HuffCorrect(&h, 0.007, 0.016, 2000), 0.004, 1e-15); /* 6 ms over: -3 ms */
  /* a span later the 10 ms minimum is forgotten: 16 ms is the lowest now */
  TEST_NEAR(DSC_HuffCorrect(&h, 0.001, 0.016, 1000 + 3600), 0.001, 1e-15);
  TEST_NEAR(DSC_HuffCorrect(&h, 0.001, 0.020, 1000 + 4500), 0.001 - 0.002, 1e-15);
  /* a gap longer than the span forgets everything */
  TEST_NEAR(DSC_HuffCorrect(&h, 0.003, 0.040, 1000 + 4500 + 3600), 0.003, 1e-15);
  DSC_HuffInit(&h, 86400 * 2);
  TEST_EQ_INT(h.n, DSC_HUFF_MAX);
}

TEST_MAIN(TEST_CASE(test_dsc_tinker_step_panic_stepout), TEST_CASE(test_dsc_tinker_dispersion),
          TEST_CASE(test_dsc_tinker_step0_no_adjust_not_served), TEST_CASE(test_dsc_huffpuff),
          TEST_CASE(test_dsc_filter_picks_min_delay_and_ages),
          TEST_CASE(test_dsc_filter_popcorn_spike),
          TEST_CASE(test_dsc_select_rejects_falseticker),
          TEST_CASE(test_dsc_select_no_majority_and_fitness),
          TEST_CASE(test_dsc_cluster_prunes_outlier),
          TEST_CASE(test_dsc_loop_steps_then_uses_every_update),
          TEST_CASE(test_dsc_loop_no_adjust_estimates_clock_error),
          TEST_CASE(test_dsc_loop_frequency_change_shrinks_window),
          TEST_CASE(test_dsc_loop_outlier_counts_less),
          TEST_CASE(test_dsc_loop_spike_panic_and_drift_start),
          TEST_CASE(test_dsc_loop_tick_slews_residual),
          TEST_CASE(test_dsc_system_serves_what_it_synced_to), TEST_CASE(test_dsc_leap_vote),
          TEST_CASE(test_dsc_drift_file), TEST_CASE(test_clk_null_and_sim_drivers))
