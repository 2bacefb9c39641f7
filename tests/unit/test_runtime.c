/* runtime: the runtime lines (ntpq :config) and the generation check at commit. */
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include <math.h>

#include "clock.h"
#include "harness.h"
#include "packet.h"
#include "rng.h"
#include "runtime.h"
#include "server.h"

static char conf[64];

static bool
write_file(const char *path, const char *text)
{
  FILE *f = fopen(path, "w");
  if (!f)
    return false;
  fputs(text, f);
  return fclose(f) == 0;
}

static const NTT_Now now = {.real = {1700000000, 0}, .mono_ns = 1000000000LL};

static RUN_State *
start(void)
{
  snprintf(conf, sizeof(conf), "/tmp/ntpg-unit-runtime-%d.conf", (int)getpid());
  TEST_CHECK(write_file(conf, "server 127.127.1.0\nfudge 127.127.1.0 stratum 7\n"
                              "restrict default limited kod\n"));
  RUN_Errors errs = {0};
  RUN_State *r = RUN_Create(conf, 0, -20, &now, &errs);
  RUN_FreeErrors(&errs);
  TEST_CHECK(r != NULL);
  return r;
}

static void
stop(RUN_State *r)
{
  RUN_Destroy(r);
  unlink(conf);
}

static uint32_t
flags_of(const RUN_State *r, const char *addr)
{
  NetAddr a;
  ADR_Parse(addr, &a);
  return RST_Match(RUN_Context(r)->rst, &a);
}

static bool
configure(RUN_State *r, const char *text, char *reply, size_t cap)
{
  return RUN_Configure(r, conf, text, &now, reply, cap);
}

/* A reload prepared before a :config is stale at commit: refused, and the :config stays;
 * prepared again, it keeps the :config too. */
static void
test_runtime_generation(void)
{
  RUN_State *r = start();
  if (!r)
    return;
  char reply[256];
  RUN_Errors errs = {0};
  RUN_Pending *p = RUN_Prepare(r, conf, &errs);
  TEST_CHECK(p != NULL);
  TEST_CHECK(p && RUN_IsCurrent(r, p));
  TEST_CHECK(configure(r, "restrict 10.1.2.3 noserve", reply, sizeof(reply)));
  TEST_CHECK(flags_of(r, "10.1.2.3") & RST_NOSERVE);
  TEST_CHECK(p && !RUN_IsCurrent(r, p));
  if (p)
    TEST_CHECK(!RUN_Commit(r, p, &now, &errs)); /* refused: it would undo the :config */
  TEST_CHECK(errs.count > 0 && strstr(errs.items[errs.count - 1].msg.text, "prepare again"));
  RUN_FreeErrors(&errs);
  TEST_CHECK(flags_of(r, "10.1.2.3") & RST_NOSERVE);
  TEST_CHECK(RUN_Reload(r, conf, &now, &errs)); /* prepared now: carries the line */
  RUN_FreeErrors(&errs);
  TEST_CHECK(flags_of(r, "10.1.2.3") & RST_NOSERVE);
  /* a prepared :config is stale once a reload committed, too */
  RUN_Pending *c =
      RUN_PrepareConfigure(r, conf, "restrict 10.1.2.4 noserve", reply, sizeof(reply));
  TEST_CHECK(c != NULL);
  TEST_CHECK(RUN_Reload(r, conf, &now, &errs));
  RUN_FreeErrors(&errs);
  TEST_CHECK(c && !RUN_IsCurrent(r, c));
  if (c)
    TEST_CHECK(!RUN_Commit(r, c, &now, &errs));
  RUN_FreeErrors(&errs);
  TEST_CHECK(!(flags_of(r, "10.1.2.4") & RST_NOSERVE));
  stop(r);
}

/* The same line again adds nothing; it moves to the end, which keeps the result. */
static void
test_runtime_dedup(void)
{
  RUN_State *r = start();
  if (!r)
    return;
  char reply[256];
  size_t octets, lines;
  for (int i = 0; i < 600; i++)
    TEST_CHECK(configure(r,
                         i % 2 ? "restrict  10.1.2.3\tnomodify "
                               : "restrict 10.1.2.3 "
                                 "nomodify",
                         reply, sizeof(reply)));
  lines = RUN_RuntimeSize(r, &octets);
  TEST_EQ_INT(lines, 1);
  TEST_EQ_INT(octets, strlen("restrict 10.1.2.3 nomodify\n"));
  TEST_CHECK(configure(r, "unrestrict 10.1.2.3 nomodify", reply, sizeof(reply)));
  TEST_CHECK(!(flags_of(r, "10.1.2.3") & RST_NOMODIFY));
  TEST_CHECK(configure(r, "restrict 10.1.2.3 nomodify", reply, sizeof(reply)));
  TEST_CHECK(flags_of(r, "10.1.2.3") & RST_NOMODIFY); /* as if applied twice */
  lines = RUN_RuntimeSize(r, &octets);
  TEST_EQ_INT(lines, 2);
  /* several lines in one text, repeats among them, comments and blank lines */
  TEST_CHECK(configure(r, "# note\n\nrestrict 10.9.9.9 noserve\nrestrict 10.9.9.9 noserve\n",
                       reply, sizeof(reply)));
  lines = RUN_RuntimeSize(r, &octets);
  TEST_EQ_INT(lines, 3);
  TEST_CHECK(flags_of(r, "10.9.9.9") & RST_NOSERVE);
  stop(r);
}

/* The runtime lines are capped: the text that would exceed the cap is refused whole. */
static void
test_runtime_cap(void)
{
  RUN_State *r = start();
  if (!r)
    return;
  char reply[256], text[2048];
  int applied = 0;
  bool refused = false;
  for (int i = 0; i < 64 && !refused; i++) {
    size_t k = 0;
    for (int j = 0; j < 16; j++)
      k += (size_t)snprintf(text + k, sizeof(text) - k, "restrict 10.%d.%d.0/24 noserve\n", i,
                            j);
    if (configure(r, text, reply, sizeof(reply)))
      applied++;
    else
      refused = true;
  }
  TEST_CHECK(refused);
  TEST_EQ_INT(applied, RUN_RUNTIME_MAX_LINES / 16);
  TEST_CHECK(strstr(reply, "runtime configuration full") != NULL);
  size_t octets, lines = RUN_RuntimeSize(r, &octets);
  TEST_EQ_INT(lines, RUN_RUNTIME_MAX_LINES);
  TEST_CHECK(octets <= RUN_RUNTIME_MAX_OCTETS);
  TEST_CHECK(flags_of(r, "10.0.0.1") & RST_NOSERVE); /* the first lines stay */
  TEST_CHECK(!(flags_of(r, "10.16.0.1") & RST_NOSERVE));
  /* a line already in force is no growth: accepted at the cap */
  TEST_CHECK(configure(r, "restrict 10.0.0.0/24 noserve", reply, sizeof(reply)));
  stop(r);
}

/* ---- leap seconds, on the simulated clock ---- */

#define LEAP 1814400000LL /* 2027-07-01 00:00:00 UTC: a second inserted before it */
#define DAY 86400.0

static char leapfile[64];

/* A served reply at the simulated clock's now: its leap indicator and transmit time (POSIX).
 */
static int
serve(const RUN_State *r, const CLK_Clock *clk, double *tx)
{
  NTT_Now t;
  CLK_ReadNow(clk, &t);
  uint8_t req[48] = {0x23}, out[PKT_MAX_LEN];
  SRV_Request rq = {.data = req, .len = sizeof(req), .rx = t};
  ADR_Parse("127.0.0.1", &rq.src);
  rq.src.port = 40000;
  RNG_State rng;
  RNG_Init(&rng, 1);
  SRV_Verdict v;
  if (SRV_Decide(RUN_Context(r), &rq, &rng, out, &v) != SRV_REPLY) {
    fprintf(stderr, "not answered: %s\n", SRV_ReasonName(v.why));
    return -1;
  }
  SRV_Finish(RUN_Context(r), &v, out, sizeof(out), &t.real, &rng);
  NTT_Stamp x = PKT_Get64(out + 40);
  *tx = (double)(x >> 32) - 2208988800.0 + (double)(x & 0xffffffffu) / 4294967296.0;
  return out[0] >> 6;
}

static RUN_State *
leap_start(CLK_Clock **clk, double before, const char *extra)
{
  snprintf(leapfile, sizeof(leapfile), "/tmp/ntpg-unit-leap-%d.list", (int)getpid());
  char text[256];
  snprintf(text, sizeof(text), "#@ %lld\n2272060800 10\n%lld 11\n",
           (long long)(LEAP + 200 * 86400LL + 2208988800LL), (long long)(LEAP + 2208988800LL));
  TEST_CHECK(write_file(leapfile, text));
  snprintf(conf, sizeof(conf), "/tmp/ntpg-unit-runtime-%d.conf", (int)getpid());
  snprintf(text, sizeof(text), "server 127.127.1.0\nleapfile %s\n%s", leapfile, extra);
  TEST_CHECK(write_file(conf, text));
  CLK_SimParams p = {.start = {.tv_sec = (time_t)(LEAP - (int64_t)before)},
                     .precision_log2 = -20,
                     .true_leap = LEAP,
                     .true_leap_dir = 1};
  *clk = CLK_CreateSimulated(&p);
  NTT_Now t;
  CLK_ReadNow(*clk, &t);
  RUN_Errors errs = {0};
  RUN_State *r = RUN_Create(conf, 0, -20, &t, &errs);
  RUN_FreeErrors(&errs);
  TEST_CHECK(r != NULL);
  return r;
}

/* One daemon tick as main.c does it: the runtime's state, then the clock driver's leap. */
static void
tick(RUN_State *r, CLK_Clock *clk, double seconds)
{
  CLK_SimAdvance(clk, seconds);
  NTT_Now t;
  CLK_ReadNow(clk, &t);
  if (RUN_TickDue(r, &t))
    RUN_Tick(r, &t);
  CLK_SetLeap(clk, RUN_LeapArm(r));
}

/* The list's leap: not announced two days before, announced (LI 1) and armed in the clock
 * during the last day, taken at midnight by clock and true UTC alike; after it LI is clear
 * and the served time is right. */
static void
test_runtime_leap_insertion(void)
{
  CLK_Clock *clk;
  RUN_State *r = leap_start(&clk, 2 * DAY, "");
  double tx;
  tick(r, clk, 1);
  TEST_EQ_INT(serve(r, clk, &tx), 0);
  TEST_EQ_INT(CLK_GetLeap(clk), 0);
  tick(r, clk, DAY - 1); /* exactly a day before */
  TEST_EQ_INT(serve(r, clk, &tx), 1);
  TEST_EQ_INT(CLK_GetLeap(clk), 1);
  TEST_EQ_INT(RUN_LeapArm(r), 1);
  for (int i = 0; i < 24; i++) /* hours pass, the announcement stays */
    tick(r, clk, 3599.75);
  TEST_EQ_INT(serve(r, clk, &tx), 1);
  for (int i = 0; i < 32; i++) /* across midnight in quarter seconds' steps */
    tick(r, clk, 0.25);
  CLK_Stats st;
  CLK_GetStats(clk, &st);
  TEST_EQ_INT(st.leaps, 1);
  TEST_CHECK(fabs(CLK_SimOffset(clk)) < 1e-6); /* our clock repeated the second too */
  tick(r, clk, 1);
  TEST_EQ_INT(serve(r, clk, &tx), 0);
  TEST_EQ_INT(CLK_GetLeap(clk), 0);
  NTT_Now truth;
  CLK_SimTrueNow(clk, &truth);
  TEST_CHECK(fabs(tx - ((double)truth.real.tv_sec + truth.real.tv_nsec * 1e-9)) < 1e-5);
  RUN_Destroy(r);
  CLK_Destroy(clk);
  unlink(conf);
  unlink(leapfile);
}

/* leapsmearinterval: LI never announced; the served time runs slow over the interval, half
 * a second behind at its middle, and equals true UTC after the leap. */
static void
test_runtime_leap_smear(void)
{
  CLK_Clock *clk;
  RUN_State *r = leap_start(&clk, DAY / 2 + 1, "leapsmearinterval 86400\n");
  double tx;
  tick(r, clk, 1); /* half a day before the leap */
  NTT_Now t;
  CLK_ReadNow(clk, &t);
  int li = serve(r, clk, &tx);
  TEST_EQ_INT(li, 0);
  TEST_EQ_INT(CLK_GetLeap(clk), 1); /* the kernel still takes the leap */
  TEST_CHECK(fabs(tx - ((double)t.real.tv_sec - 0.5)) < 1e-5);
  for (int i = 0; i < 12 * 4; i++)
    tick(r, clk, 900);
  tick(r, clk, 10);
  NTT_Now truth;
  CLK_SimTrueNow(clk, &truth);
  TEST_EQ_INT(serve(r, clk, &tx), 0);
  TEST_CHECK(fabs(tx - ((double)truth.real.tv_sec + truth.real.tv_nsec * 1e-9)) < 1e-5);
  RUN_Destroy(r);
  CLK_Destroy(clk);
  unlink(conf);
  unlink(leapfile);
}

/* tos orphan with tinker dispersion: after orphanwait with nothing synchronized we serve the
 * orphan stratum, and its root dispersion grows at the configured rate; a reload with
 * another rate applies at once. */
static void
test_runtime_orphan_dispersion(void)
{
  snprintf(conf, sizeof(conf), "/tmp/ntpg-unit-runtime-%d.conf", (int)getpid());
  TEST_CHECK(write_file(conf, "tos orphan 8 orphanwait 10\ntinker dispersion 200\n"));
  RUN_Errors errs = {0};
  RUN_State *r = RUN_Create(conf, 0, -20, &now, &errs);
  RUN_FreeErrors(&errs);
  TEST_CHECK(r != NULL);
  if (!r)
    return;
  TEST_EQ_INT(RUN_Context(r)->sys->stratum, 16); /* orphanwait not over */
  NTT_Now t = now;
  t.mono_ns += 11000000000LL;
  t.real.tv_sec += 11;
  RUN_Tick(r, &t);
  const SRV_System *sys = RUN_Context(r)->sys;
  TEST_EQ_INT(sys->stratum, 8);
  TEST_NEAR(sys->phi, 200e-6, 1e-15);
  TEST_CHECK(write_file(conf, "tos orphan 8 orphanwait 10\ntinker dispersion 30\n"));
  TEST_CHECK(RUN_Reload(r, conf, &t, &errs));
  RUN_FreeErrors(&errs);
  TEST_NEAR(RUN_Context(r)->sys->phi, 30e-6, 1e-15);
  stop(r);
}

TEST_MAIN(TEST_CASE(test_runtime_generation), TEST_CASE(test_runtime_dedup),
          TEST_CASE(test_runtime_orphan_dispersion), TEST_CASE(test_runtime_cap),
          TEST_CASE(test_runtime_leap_insertion), TEST_CASE(test_runtime_leap_smear))
