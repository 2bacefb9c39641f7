/* Load-shedding core: when a source is shed, which of its packets count as samples, holds,
 * expiry, bounds and generations. Times are injected (monotonic ns, kernel real time ns). */
#include "shed.h"

#include "harness.h"

#define SEC 1000000000LL
#define MS 1000000LL

static NetAddr
addr(const char *text)
{
  NetAddr a;
  TEST_CHECK(ADR_Parse(text, &a));
  a.port = 40000;
  return a;
}

static SHD_Table *
table(uint32_t rate, uint32_t depth, uint32_t hold_s, int leak)
{
  SHD_Table *t = SHD_Create(harness_seed);
  TEST_CHECK(t != NULL);
  SHD_Params p = {.rate = rate, .depth = depth, .hold_s = hold_s, .leak = leak};
  char err[128];
  TEST_CHECK(SHD_ValidateParams(&p, err, sizeof(err)));
  SHD_Configure(t, &p);
  return t;
}

/* n drops from a at 1 ms spacing from t0; returns how many were samples */
static int
drops(SHD_Table *t, const NetAddr *a, int n, int64_t t0, int64_t real)
{
  int samples = 0;
  for (int i = 0; i < n; i++)
    samples += SHD_Answer(t, a, t0 + i * MS, real);
  return samples;
}

static size_t
listed(SHD_Table *t, int family, NetAddr *out)
{
  int leak;
  uint64_t gen;
  return SHD_Snapshot(t, family, out, SHD_MAX_DEPTH, &leak, &gen);
}

static void
test_shd_off_sheds_nothing(void)
{
  SHD_Table *t = SHD_Create(harness_seed);
  NetAddr a = addr("192.0.2.1"), l[SHD_MAX_DEPTH];
  uint64_t g = SHD_Generation(t);
  TEST_EQ_INT(drops(t, &a, 5000, SEC, 0), 0);
  TEST_EQ_INT(listed(t, ADR_INET4, l), 0);
  TEST_CHECK(SHD_Generation(t) == g);
  TEST_CHECK(!SHD_Answer(NULL, &a, SEC, 0));
  SHD_Destroy(t);
}

static void
test_shd_rate_within_one_second(void)
{
  SHD_Table *t = table(100, 4, 8, 4);
  NetAddr a = addr("192.0.2.1"), l[SHD_MAX_DEPTH];
  uint64_t g0 = SHD_Generation(t);
  /* 99 drops in 0.1 s, then a pause: the window restarts, nothing is shed */
  drops(t, &a, 99, SEC, 0);
  TEST_EQ_INT(listed(t, ADR_INET4, l), 0);
  drops(t, &a, 99, 3 * SEC, 0);
  TEST_EQ_INT(listed(t, ADR_INET4, l), 0);
  TEST_CHECK(SHD_Generation(t) == g0);
  /* the 100th drop of one window sheds it */
  drops(t, &a, 1, 3 * SEC + 500 * MS, 0);
  TEST_EQ_INT(listed(t, ADR_INET4, l), 1);
  TEST_CHECK(ADR_Equal(&l[0], &a));
  TEST_EQ_INT(l[0].port, 0);
  TEST_CHECK(SHD_Generation(t) != g0);
  TEST_EQ_INT(listed(t, ADR_INET6, l), 0);
  SHD_Stats st;
  SHD_GetStats(t, &st);
  TEST_EQ_INT(st.shed_now, 1);
  TEST_EQ_INT(st.shed, 1);
  SHD_Destroy(t);
}

static void
test_shd_samples_only_after_the_filter(void)
{
  SHD_Table *t = table(10, 4, 8, 4);
  NetAddr a = addr("2001:db8::5"), l[SHD_MAX_DEPTH];
  int64_t real = 1700000000 * SEC;
  drops(t, &a, 10, SEC, real);
  TEST_EQ_INT(listed(t, ADR_INET6, l), 1);
  /* queued before any filter was installed: judged as usual */
  TEST_CHECK(!SHD_Answer(t, &a, 2 * SEC, real + 5 * SEC));
  int leak;
  uint64_t gen;
  SHD_Snapshot(t, ADR_INET6, l, SHD_MAX_DEPTH, &leak, &gen);
  TEST_EQ_INT(leak, 4);
  SHD_Applied(t, gen, real + SEC);
  /* received before the installation: not a sample; after it: a sample */
  TEST_CHECK(!SHD_Answer(t, &a, 2 * SEC, real + SEC - 1));
  TEST_CHECK(!SHD_Answer(t, &a, 2 * SEC, real + SEC));
  TEST_CHECK(SHD_Answer(t, &a, 2 * SEC, real + SEC + 1));
  TEST_CHECK(!SHD_Answer(t, &a, 2 * SEC, 0)); /* no kernel time: never a sample */
  /* another source is not affected */
  NetAddr b = addr("2001:db8::6");
  TEST_CHECK(!SHD_Answer(t, &b, 2 * SEC, real + 2 * SEC));
  SHD_Stats st;
  SHD_GetStats(t, &st);
  TEST_EQ_INT(st.samples, 1);
  SHD_Destroy(t);
}

/* Issue 13 C: a socket that refuses a filter has none afterwards, so every packet of the
 * shed sources reaches the daemon; none of them may then count as a sample (before, the
 * stamp of the previous installation stayed and every rate-limit drop was answered). A later
 * installation that succeeds everywhere makes samples count again. */
static void
test_shd_refused_filter_samples_nothing(void)
{
  SHD_Table *t = table(10, 4, 8, 4);
  NetAddr a = addr("2001:db8::5"), b = addr("2001:db8::6"), l[SHD_MAX_DEPTH];
  int64_t real = 1700000000 * SEC;
  drops(t, &a, 10, SEC, real);
  int leak;
  uint64_t gen;
  SHD_Snapshot(t, ADR_INET6, l, SHD_MAX_DEPTH, &leak, &gen);
  SHD_Applied(t, gen, real + SEC);
  TEST_EQ_INT(drops(t, &a, 100, 2 * SEC, real + 2 * SEC), 100);
  /* a second source is shed; its (bigger) filter is refused and detached */
  drops(t, &b, 10, 3 * SEC, real + 3 * SEC);
  TEST_EQ_INT(listed(t, ADR_INET6, l), 2);
  SHD_Refused(t);
  TEST_EQ_INT(drops(t, &a, 1000, 4 * SEC, real + 4 * SEC), 0);
  TEST_EQ_INT(drops(t, &b, 1000, 4 * SEC, real + 4 * SEC), 0);
  SHD_Stats st;
  SHD_GetStats(t, &st);
  TEST_EQ_INT(st.refused, 1);
  TEST_EQ_INT(st.samples, 100);
  TEST_EQ_INT(st.shed_now, 2); /* still shed: the retry installs the same list */
  /* the retry succeeds: only packets received after it are samples */
  SHD_Snapshot(t, ADR_INET6, l, SHD_MAX_DEPTH, &leak, &gen);
  SHD_Applied(t, gen, real + 6 * SEC);
  TEST_EQ_INT(drops(t, &a, 10, 6 * SEC, real + 6 * SEC - 1), 0);
  TEST_EQ_INT(drops(t, &a, 10, 6 * SEC, real + 6 * SEC + 1), 10);
  TEST_EQ_INT(drops(t, &b, 10, 6 * SEC, real + 6 * SEC + 1), 10);
  SHD_Destroy(t);
}

static void
test_shd_leak_zero_never_samples(void)
{
  SHD_Table *t = table(10, 4, 8, 0);
  NetAddr a = addr("192.0.2.1");
  drops(t, &a, 10, SEC, 0);
  SHD_Applied(t, SHD_Generation(t), 100);
  TEST_CHECK(!SHD_Answer(t, &a, 2 * SEC, 1000));
  SHD_Destroy(t);
}

static void
test_shd_hold_renewed_then_expired(void)
{
  SHD_Table *t = table(10, 4, 8, 4);
  NetAddr a = addr("192.0.2.1"), l[SHD_MAX_DEPTH];
  drops(t, &a, 10, SEC, 0); /* shed at ~1.009 s: held until ~9.009 s */
  TEST_CHECK(!SHD_Expire(t, 9 * SEC));
  SHD_Answer(t, &a, 9 * SEC, 0); /* still over the limit: held until 17 s */
  TEST_CHECK(!SHD_Expire(t, 16 * SEC));
  TEST_EQ_INT(listed(t, ADR_INET4, l), 1);
  uint64_t g = SHD_Generation(t);
  TEST_CHECK(SHD_Expire(t, 17 * SEC));
  TEST_EQ_INT(listed(t, ADR_INET4, l), 0);
  TEST_CHECK(SHD_Generation(t) != g);
  SHD_Stats st;
  SHD_GetStats(t, &st);
  TEST_EQ_INT(st.expired, 1);
  TEST_EQ_INT(st.shed_now, 0);
  /* once let go, its drops count from zero again */
  drops(t, &a, 9, 20 * SEC, 0);
  TEST_EQ_INT(listed(t, ADR_INET4, l), 0);
  SHD_Destroy(t);
}

static void
test_shd_depth_bound(void)
{
  SHD_Table *t = table(5, 2, 8, 4);
  NetAddr a = addr("192.0.2.1"), b = addr("192.0.2.2"), c = addr("192.0.2.3");
  NetAddr l[SHD_MAX_DEPTH];
  drops(t, &a, 5, 1 * SEC, 0);
  drops(t, &b, 5, 2 * SEC, 0);
  drops(t, &c, 5, 3 * SEC, 0); /* a goes first: its hold ends first */
  TEST_EQ_INT(listed(t, ADR_INET4, l), 2);
  TEST_CHECK(!ADR_Equal(&l[0], &a) && !ADR_Equal(&l[1], &a));
  SHD_Stats st;
  SHD_GetStats(t, &st);
  TEST_EQ_INT(st.displaced, 1);
  TEST_EQ_INT(st.shed, 3);
  /* a smaller depth on reconfiguration keeps the latest; rate 0 lets everyone go */
  SHD_Params p = {.rate = 5, .depth = 1, .hold_s = 8, .leak = 4};
  SHD_Configure(t, &p);
  TEST_EQ_INT(listed(t, ADR_INET4, l), 1);
  TEST_CHECK(ADR_Equal(&l[0], &c));
  uint64_t g = SHD_Generation(t);
  p.rate = 0;
  SHD_Configure(t, &p);
  TEST_EQ_INT(listed(t, ADR_INET4, l), 0);
  TEST_CHECK(SHD_Generation(t) != g);
  TEST_EQ_INT(drops(t, &a, 50, 30 * SEC, 0), 0);
  TEST_EQ_INT(listed(t, ADR_INET4, l), 0);
  SHD_Destroy(t);
}

static void
test_shd_many_slow_sources_never_shed(void)
{
  /* 10,000 sources with 50 drops each per second, rate 100: none is shed */
  SHD_Table *t = table(100, 64, 8, 4);
  NetAddr l[SHD_MAX_DEPTH];
  for (int round = 0; round < 50; round++) {
    for (int i = 0; i < 10000; i++) {
      char text[32];
      snprintf(text, sizeof(text), "10.%d.%d.1", i / 256, i % 256);
      NetAddr a = addr(text);
      SHD_Answer(t, &a, SEC + round * 20 * MS + i, 0);
    }
  }
  TEST_EQ_INT(listed(t, ADR_INET4, l), 0);
  SHD_Destroy(t);
}

static void
test_shd_leak_change_needs_new_filter(void)
{
  SHD_Table *t = table(5, 4, 8, 4);
  uint64_t g = SHD_Generation(t);
  SHD_Params p = {.rate = 5, .depth = 4, .hold_s = 8, .leak = 6};
  SHD_Configure(t, &p);
  TEST_CHECK(SHD_Generation(t) != g);
  g = SHD_Generation(t);
  SHD_Configure(t, &p); /* the same again: nothing to install */
  TEST_CHECK(SHD_Generation(t) == g);
  SHD_Destroy(t);
}

static void
test_shd_validate(void)
{
  char err[128];
  SHD_Params p;
  SHD_DefaultParams(&p);
  TEST_CHECK(SHD_ValidateParams(&p, err, sizeof(err)));
  TEST_EQ_INT(p.rate, 1000);
  TEST_EQ_INT(p.wait_ms, 2);
  SHD_Table *t = SHD_Create(1);
  TEST_CHECK(SHD_WaitNs(t) == 0); /* off until configured */
  SHD_Configure(t, &p);
  TEST_CHECK(SHD_WaitNs(t) == 2000000);
  p.rate = 0; /* shedding off: no waiting either */
  SHD_Configure(t, &p);
  TEST_CHECK(SHD_WaitNs(t) == 0);
  SHD_Destroy(t);
  SHD_DefaultParams(&p);
  p.wait_ms = 21;
  TEST_CHECK(!SHD_ValidateParams(&p, err, sizeof(err)));
  SHD_DefaultParams(&p);
  p.depth = 0;
  TEST_CHECK(!SHD_ValidateParams(&p, err, sizeof(err)));
  p.depth = SHD_MAX_DEPTH + 1;
  TEST_CHECK(!SHD_ValidateParams(&p, err, sizeof(err)));
  SHD_DefaultParams(&p);
  p.hold_s = 0;
  TEST_CHECK(!SHD_ValidateParams(&p, err, sizeof(err)));
  SHD_DefaultParams(&p);
  p.rate = 2000000;
  TEST_CHECK(!SHD_ValidateParams(&p, err, sizeof(err)));
}

TEST_MAIN(TEST_CASE(test_shd_off_sheds_nothing), TEST_CASE(test_shd_rate_within_one_second),
          TEST_CASE(test_shd_samples_only_after_the_filter),
          TEST_CASE(test_shd_refused_filter_samples_nothing),
          TEST_CASE(test_shd_leak_zero_never_samples),
          TEST_CASE(test_shd_hold_renewed_then_expired), TEST_CASE(test_shd_depth_bound),
          TEST_CASE(test_shd_many_slow_sources_never_shed),
          TEST_CASE(test_shd_leak_change_needs_new_filter), TEST_CASE(test_shd_validate))
