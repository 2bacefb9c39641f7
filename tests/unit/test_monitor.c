/* monitor table and rate limiting: ntpd 4.2.8 test vectors (ntpd 4.2.8 ntp_monitor.c,
 * ntp_restrict.c) with an injected monotonic clock, the MRU new-entry policy (4.3), leak,
 * global KoD limit, per-network limit, reconfiguration and listing. */
#include "monitor.h"

#include <pthread.h>
#include <time.h>

#include "harness.h"
#include "restrict.h"

#define SEC 1000000000LL
#define MS 1000000LL
#define MODE_CLIENT 3
#define LIMITED_KOD (RST_LIMITED | RST_KOD)

static MON_Table *
table_with(const MON_Params *p)
{
  MON_Table *t = MON_Create(p, harness_seed);
  TEST_CHECK(t != NULL);
  return t;
}

static MON_Table *
default_table(void)
{
  MON_Params p;
  MON_DefaultParams(&p);
  p.leak = 0; /* ntpd's algorithm alone (the configuration's default leak is 4) */
  return table_with(&p);
}

static NetAddr
addr(const char *text, uint16_t port)
{
  NetAddr a;
  if (!ADR_Parse(text, &a))
    abort();
  a.port = port;
  return a;
}

/* The n-th address of 10.0.0.0/8 (n < 2^24). */
static NetAddr
nth_addr(uint32_t n)
{
  NetAddr a;
  memset(&a, 0, sizeof(a));
  a.family = ADR_INET4;
  a.bytes[0] = 10;
  a.bytes[1] = (uint8_t)(n >> 16);
  a.bytes[2] = (uint8_t)(n >> 8);
  a.bytes[3] = (uint8_t)n;
  a.port = 40000;
  return a;
}

static MON_Result
client(MON_Table *t, const NetAddr *a, int64_t now)
{
  return MON_Check(t, a, MODE_CLIENT, 4, LIMITED_KOD, now, NULL);
}

/* Packets from one source at start + k * spacing; index (1-based) of the first non-SERVE
 * result, or 0 if all n were served. */
static int
first_limited(MON_Table *t, const NetAddr *a, int64_t start, int64_t spacing, int n)
{
  for (int k = 0; k < n; k++)
    if (client(t, a, start + k * spacing) != MON_SERVE)
      return k + 1;
  return 0;
}

/* ---- ntpd 4.2.8 per-source vectors ---- */

static void
test_mon_first_packet_served(void)
{
  MON_Table *t = default_table();
  NetAddr a = addr("192.0.2.1", 123);
  MON_Info info;
  TEST_EQ_INT(MON_Check(t, &a, MODE_CLIENT, 4, LIMITED_KOD, 5 * SEC, &info), MON_SERVE);
  TEST_CHECK(info.tracked && info.new_source);
  TEST_EQ_INT(info.count, 1);
  MON_Destroy(t);
}

static void
test_mon_second_packet_within_half_second_gets_kod(void)
{
  MON_Table *t = default_table();
  NetAddr a = addr("192.0.2.1", 123);
  TEST_EQ_INT(client(t, &a, 0), MON_SERVE);
  TEST_EQ_INT(client(t, &a, SEC / 2 - 1), MON_LIMIT_KOD);
  MON_Destroy(t);
}

static void
test_mon_half_second_gap_passes_minimum(void)
{
  /* iv = floor(0.5 + 0.5) = 1, and 1 + 1 >= minimum 2. */
  MON_Table *t = default_table();
  NetAddr a = addr("192.0.2.1", 123);
  TEST_EQ_INT(client(t, &a, 0), MON_SERVE);
  TEST_EQ_INT(client(t, &a, SEC / 2), MON_SERVE);
  MON_Destroy(t);
}

static void
test_mon_2s_spacing_16th_packet_kod(void)
{
  MON_Table *t = default_table();
  NetAddr a = addr("192.0.2.2", 123);
  TEST_EQ_INT(first_limited(t, &a, 0, 2 * SEC, 15), 0);
  TEST_EQ_INT(client(t, &a, 15 * 2 * SEC), MON_LIMIT_KOD);
  MON_Destroy(t);
}

static void
test_mon_1s_spacing_14th_kod_then_every_9s(void)
{
  MON_Table *t = default_table();
  NetAddr a = addr("192.0.2.3", 123);
  TEST_EQ_INT(first_limited(t, &a, 0, SEC, 13), 0);
  int kods = 0, bad = 0;
  for (int k = 14; k <= 95; k++) {
    MON_Result r = client(t, &a, (k - 1) * SEC);
    bool want_kod = (k - 14) % 9 == 0;
    if (r == MON_LIMIT_KOD)
      kods++;
    if (r != (want_kod ? MON_LIMIT_KOD : MON_LIMIT_DROP) && bad++ < 3)
      fprintf(stderr, "packet %d: result %d\n", k, (int)r);
  }
  TEST_EQ_INT(bad, 0);
  TEST_EQ_INT(kods, 10);
  MON_Destroy(t);
}

static void
test_mon_5s_spacing_58th_packet_kod(void)
{
  MON_Table *t = default_table();
  NetAddr a = addr("192.0.2.4", 123);
  TEST_EQ_INT(first_limited(t, &a, 0, 5 * SEC, 57), 0);
  TEST_EQ_INT(client(t, &a, 57 * 5 * SEC), MON_LIMIT_KOD);
  MON_Destroy(t);
}

static void
test_mon_6s_spacing_served_forever(void)
{
  MON_Table *t = default_table();
  NetAddr a = addr("192.0.2.5", 123);
  TEST_EQ_INT(first_limited(t, &a, 0, 6 * SEC, 20000), 0);
  MON_Destroy(t);
}

static void
test_mon_average_boundary_just_below_and_above(void)
{
  /* Gaps of 5.5 s round to 6 (served forever); 5.5 s - 1 ns rounds to 5 (KoD at 58). */
  MON_Table *t = default_table();
  NetAddr a = addr("192.0.2.6", 123), b = addr("192.0.2.7", 123);
  TEST_EQ_INT(first_limited(t, &a, 0, 5 * SEC + SEC / 2, 5000), 0);
  TEST_EQ_INT(first_limited(t, &b, 0, 5 * SEC + SEC / 2 - 1, 5000), 58);
  MON_Destroy(t);
}

static void
test_mon_continuous_flood_gets_one_kod(void)
{
  MON_Table *t = default_table();
  NetAddr a = addr("192.0.2.8", 123);
  TEST_EQ_INT(client(t, &a, 0), MON_SERVE);
  TEST_EQ_INT(client(t, &a, 100 * MS), MON_LIMIT_KOD);
  int other = 0;
  for (int k = 2; k < 5000; k++)
    other += client(t, &a, k * 100 * MS) != MON_LIMIT_DROP;
  TEST_EQ_INT(other, 0);
  MON_Destroy(t);
}

static void
test_mon_record_shows_ntpd_counters(void)
{
  /* After 3 packets 2 s apart: leak 0 -> 6 -> 10; flags doused when served. */
  MON_Table *t = default_table();
  NetAddr a = addr("198.51.100.1", 50000);
  MON_Record r;
  for (int k = 0; k < 3; k++)
    client(t, &a, 7 * SEC + k * 2 * SEC);
  TEST_CHECK(MON_Lookup(t, &a, &r));
  TEST_EQ_INT(r.leak, 10);
  TEST_EQ_INT(r.count, 3);
  TEST_EQ_INT(r.first_ns, 7 * SEC);
  TEST_EQ_INT(r.last_ns, 11 * SEC);
  TEST_EQ_INT(r.rflags & LIMITED_KOD, 0);
  TEST_EQ_INT(r.mode, MODE_CLIENT);
  TEST_EQ_INT(r.version, 4);
  TEST_EQ_INT(r.addr.port, 50000);
  client(t, &a, 11 * SEC); /* violation with KoD: both flags stay lit */
  TEST_CHECK(MON_Lookup(t, &a, &r));
  TEST_EQ_INT(r.rflags & LIMITED_KOD, LIMITED_KOD);
  TEST_EQ_INT(r.leak, 72);
  client(t, &a, 11 * SEC); /* violation without KoD: kod doused */
  TEST_CHECK(MON_Lookup(t, &a, &r));
  TEST_EQ_INT(r.rflags & LIMITED_KOD, RST_LIMITED);
  MON_Destroy(t);
}

/* ---- verdict details ---- */

static void
test_mon_without_kod_flag_violation_drops(void)
{
  MON_Table *t = default_table();
  NetAddr a = addr("192.0.2.9", 123);
  TEST_EQ_INT(MON_Check(t, &a, MODE_CLIENT, 4, RST_LIMITED, 0, NULL), MON_SERVE);
  TEST_EQ_INT(MON_Check(t, &a, MODE_CLIENT, 4, RST_LIMITED, 1, NULL), MON_LIMIT_DROP);
  MON_Destroy(t);
}

static void
test_mon_server_and_broadcast_modes_never_kod(void)
{
  MON_Table *t = default_table();
  NetAddr a = addr("192.0.2.10", 123), b = addr("192.0.2.11", 123);
  MON_Check(t, &a, 4, 4, LIMITED_KOD, 0, NULL);
  TEST_EQ_INT(MON_Check(t, &a, 4, 4, LIMITED_KOD, 1, NULL), MON_LIMIT_DROP);
  MON_Check(t, &b, 5, 4, LIMITED_KOD, 0, NULL);
  TEST_EQ_INT(MON_Check(t, &b, 5, 4, LIMITED_KOD, 1, NULL), MON_LIMIT_DROP);
  MON_Destroy(t);
}

static void
test_mon_not_limited_is_served_and_recorded(void)
{
  MON_Table *t = default_table();
  NetAddr a = addr("192.0.2.12", 123);
  int served = 0;
  for (int k = 0; k < 100; k++)
    served += MON_Check(t, &a, MODE_CLIENT, 4, RST_NOQUERY, k, NULL) == MON_SERVE;
  TEST_EQ_INT(served, 100);
  MON_Record r;
  TEST_CHECK(MON_Lookup(t, &a, &r));
  TEST_EQ_INT(r.count, 100);
  MON_Destroy(t);
}

static void
test_mon_counter_runs_before_limited_is_set(void)
{
  /* As in ntpd, the headway counter runs for every packet, so a source that flooded while
   * unlimited is limited as soon as a reload makes its entry `limited`. */
  MON_Table *t = default_table();
  NetAddr a = addr("192.0.2.13", 123);
  for (int k = 0; k < 20; k++)
    MON_Check(t, &a, MODE_CLIENT, 4, 0, k * 100 * MS, NULL);
  TEST_EQ_INT(client(t, &a, 2 * SEC), MON_LIMIT_DROP);
  MON_Destroy(t);
}

static void
test_mon_ignored_packet_not_recorded(void)
{
  MON_Table *t = default_table();
  NetAddr a = addr("192.0.2.14", 123);
  MON_Record r;
  TEST_EQ_INT(MON_Check(t, &a, MODE_CLIENT, 4, RST_IGNORE, 0, NULL), MON_LIMIT_DROP);
  TEST_CHECK(!MON_Lookup(t, &a, &r));
  NetAddr none;
  memset(&none, 0, sizeof(none));
  TEST_EQ_INT(MON_Check(t, &none, MODE_CLIENT, 4, 0, 0, NULL), MON_LIMIT_DROP);
  MON_Stats st;
  MON_GetStats(t, &st);
  TEST_EQ_INT(st.entries, 0);
  MON_Destroy(t);
}

static void
test_mon_ipv4_mapped_source_shares_record(void)
{
  MON_Table *t = default_table();
  NetAddr a = addr("192.0.2.15", 123), m = addr("::ffff:192.0.2.15", 123);
  TEST_EQ_INT(client(t, &a, 0), MON_SERVE);
  TEST_EQ_INT(client(t, &m, 1), MON_LIMIT_KOD);
  MON_Record r;
  TEST_CHECK(MON_Lookup(t, &m, &r));
  TEST_EQ_INT(r.addr.family, ADR_INET4);
  TEST_EQ_INT(r.count, 2);
  MON_Destroy(t);
}

static void
test_mon_ipv6_sources_are_separate(void)
{
  MON_Table *t = default_table();
  NetAddr a = addr("2001:db8::1", 123), b = addr("2001:db8::2", 123);
  TEST_EQ_INT(client(t, &a, 0), MON_SERVE);
  TEST_EQ_INT(client(t, &b, 1), MON_SERVE);
  TEST_EQ_INT(client(t, &a, 2), MON_LIMIT_KOD);
  MON_Destroy(t);
}

static void
test_mon_wall_clock_step_does_not_matter(void)
{
  /* A daemon whose wall clock is stepped back an hour mid-run: only the monotonic reading
   * reaches the table, so the outcome equals the unstepped run (2 s spacing: 16th KoD). */
  MON_Table *t = default_table();
  NetAddr a = addr("192.0.2.16", 123);
  int64_t wall = 1700000000 * SEC, mono = 1000 * SEC;
  int first = 0;
  for (int k = 1; k <= 16 && !first; k++) {
    if (k == 8)
      wall -= 3600 * SEC; /* the step; `wall` is never passed in */
    if (client(t, &a, mono) != MON_SERVE)
      first = k;
    mono += 2 * SEC;
    wall += 2 * SEC;
  }
  TEST_EQ_INT(first, 16);
  TEST_CHECK(wall != mono);
  MON_Destroy(t);
}

static void
test_mon_time_going_backwards_does_not_refill(void)
{
  MON_Table *t = default_table();
  NetAddr a = addr("192.0.2.17", 123);
  client(t, &a, 100 * SEC);
  TEST_EQ_INT(client(t, &a, 100 * SEC), MON_LIMIT_KOD);
  TEST_EQ_INT(client(t, &a, 50 * SEC), MON_LIMIT_DROP);
  MON_Record r;
  TEST_CHECK(MON_Lookup(t, &a, &r));
  TEST_EQ_INT(r.last_ns, 100 * SEC);
  TEST_EQ_INT(r.leak, 72);
  MON_Destroy(t);
}

/* ---- leak ---- */

static void
test_mon_leak_fraction_within_bounds(void)
{
  MON_Params p;
  MON_DefaultParams(&p);
  p.leak = 2; /* 1 in 4 */
  MON_Table *t = table_with(&p);
  NetAddr a = addr("192.0.2.18", 123);
  int leaked = 0, n = 20000;
  client(t, &a, 0);
  for (int k = 1; k <= n; k++)
    leaked += client(t, &a, k) == MON_LEAK_SERVE;
  fprintf(stderr, "leak 1/4: %d of %d\n", leaked, n);
  TEST_CHECK(leaked > n / 4 - 400 && leaked < n / 4 + 400);
  MON_Destroy(t);
}

static void
test_mon_leak_off_never_serves_over_limit(void)
{
  MON_Table *t = default_table();
  NetAddr a = addr("192.0.2.19", 123);
  int leaked = 0;
  client(t, &a, 0);
  for (int k = 1; k <= 5000; k++)
    leaked += client(t, &a, k) == MON_LEAK_SERVE;
  TEST_EQ_INT(leaked, 0);
  MON_Destroy(t);
}

static void
test_mon_same_seed_same_decisions(void)
{
  MON_Params p;
  MON_DefaultParams(&p);
  p.leak = 3;
  MON_Table *t1 = MON_Create(&p, 42), *t2 = MON_Create(&p, 42);
  NetAddr a = addr("192.0.2.20", 123);
  int differ = 0;
  for (int k = 0; k < 2000; k++)
    differ += client(t1, &a, k * MS) != client(t2, &a, k * MS);
  TEST_EQ_INT(differ, 0);
  MON_Destroy(t1);
  MON_Destroy(t2);
}

/* ---- global KoD limit ---- */

static void
test_mon_global_kod_limit_one_per_second(void)
{
  MON_Table *t = default_table();
  int granted = 0;
  for (int k = 0; k < 100; k++)
    granted += MON_TakeKod(t, 10 * SEC + k * 9 * MS);
  TEST_EQ_INT(granted, 1);
  TEST_CHECK(MON_TakeKod(t, 11 * SEC));
  TEST_CHECK(!MON_TakeKod(t, 12 * SEC - 1));
  MON_Stats st;
  MON_GetStats(t, &st);
  TEST_EQ_INT(st.kod_granted, 2);
  TEST_EQ_INT(st.kod_refused, 100);
  MON_Destroy(t);
}

static void
test_mon_global_kod_limit_zero_means_none(void)
{
  MON_Params p;
  MON_DefaultParams(&p);
  p.kodlimit = 0;
  MON_Table *t = table_with(&p);
  TEST_CHECK(!MON_TakeKod(t, 0));
  TEST_CHECK(!MON_TakeKod(t, 1000 * SEC));
  MON_Destroy(t);
}

static void
test_mon_global_kod_limit_rate_and_burst(void)
{
  MON_Params p;
  MON_DefaultParams(&p);
  p.kodlimit = 5;
  MON_Table *t = table_with(&p);
  int granted = 0;
  for (int k = 0; k < 100; k++)
    granted += MON_TakeKod(t, 0);
  TEST_EQ_INT(granted, 5);
  granted = 0;
  for (int k = 0; k < 1000; k++) /* 10 s more of requests every 10 ms: 5 per second */
    granted += MON_TakeKod(t, k * 10 * MS + 10 * MS);
  TEST_EQ_INT(granted, 50);
  MON_Destroy(t);
}

/* ---- MRU policy ---- */

static void
test_mon_eviction_under_pressure_keeps_bound(void)
{
  MON_Params p;
  MON_DefaultParams(&p);
  p.maxdepth = 1000;
  MON_Table *t = table_with(&p);
  size_t bytes = MON_MemoryBytes(t);
  for (uint32_t n = 0; n < 10000; n++) {
    NetAddr a = nth_addr(n);
    client(t, &a, n * MS); /* 10 s in all: nothing older than maxage */
  }
  MON_Stats st;
  MON_GetStats(t, &st);
  TEST_EQ_INT(st.entries, 1000);
  TEST_EQ_INT(st.capacity, 1000);
  TEST_EQ_INT(st.evictions + st.not_tracked, 9000);
  TEST_CHECK(st.not_tracked > 8900); /* ages <= 10 s of 3000: few recycled */
  TEST_EQ_INT(MON_MemoryBytes(t), bytes);
  TEST_EQ_INT(st.memory_bytes, bytes);
  MON_Destroy(t);
}

/* A full table under constant recycling holds exactly the most recently seen sources:
 * hash chains stay intact while records leave and join them at every position. */
static void
test_mon_constant_recycling_keeps_most_recent(void)
{
  enum { POOL = 200, DEPTH = 64 };
  MON_Params p;
  MON_DefaultParams(&p);
  p.maxdepth = DEPTH;
  p.monitor = 0; /* a full table always recycles its least recently seen record */
  MON_Table *t = table_with(&p);
  int64_t last[POOL];
  uint64_t x = harness_seed;
  for (int n = 0; n < POOL; n++)
    last[n] = -1;
  for (int k = 1; k <= 20000; k++) {
    x = x * 6364136223846793005ULL + 1442695040888963407ULL;
    uint32_t n = (uint32_t)(x >> 33) % POOL;
    int more_recent = 0;
    for (int o = 0; o < POOL; o++)
      more_recent += last[o] > last[n];
    NetAddr a = nth_addr(n);
    MON_Info info;
    MON_Check(t, &a, MODE_CLIENT, 4, 0, k * MS, &info);
    TEST_CHECK(info.tracked);
    TEST_EQ_INT(info.new_source, last[n] < 0 || more_recent >= DEPTH);
    last[n] = k;
    if (k % 500 != 0)
      continue;
    /* the DEPTH most recent sources are exactly the ones with a record */
    int found = 0, expected = 0;
    for (int m = 0; m < POOL; m++) {
      int newer = 0;
      for (int o = 0; o < POOL; o++)
        newer += last[o] > last[m];
      bool want = last[m] >= 0 && newer < DEPTH;
      NetAddr b = nth_addr((uint32_t)m);
      MON_Record r;
      bool have = MON_Lookup(t, &b, &r);
      TEST_EQ_INT(have, want);
      found += have;
      expected += want;
      if (have)
        TEST_EQ_INT(r.last_ns, last[m] * MS);
    }
    TEST_EQ_INT(found, expected);
  }
  MON_Stats st;
  MON_GetStats(t, &st);
  TEST_EQ_INT(st.entries, DEPTH);
  TEST_CHECK(st.evictions > 10000);
  MON_Destroy(t);
}

static void
test_mon_maxage_recycles_oldest_beyond_mindepth(void)
{
  MON_Params p;
  MON_DefaultParams(&p);
  p.maxdepth = 1000;
  p.mindepth = 10;
  MON_Table *t = table_with(&p);
  /* One new source per second: once 10 are in, the oldest is recycled as soon as it is
   * older than 64 s, so the table holds about 65 sources. */
  for (uint32_t n = 0; n < 5000; n++) {
    NetAddr a = nth_addr(n);
    client(t, &a, n * SEC);
  }
  MON_Stats st;
  MON_GetStats(t, &st);
  TEST_EQ_INT(st.entries, 65);
  TEST_EQ_INT(st.not_tracked, 0);
  TEST_EQ_INT(st.evictions, 5000 - 65);
  NetAddr oldest_kept = nth_addr(5000 - 65), gone = nth_addr(5000 - 66);
  MON_Record r;
  TEST_CHECK(MON_Lookup(t, &oldest_kept, &r));
  TEST_CHECK(!MON_Lookup(t, &gone, &r));
  MON_Destroy(t);
}

static void
test_mon_below_mindepth_old_entries_kept(void)
{
  MON_Params p;
  MON_DefaultParams(&p);
  p.maxdepth = 100;
  p.mindepth = 50;
  MON_Table *t = table_with(&p);
  for (uint32_t n = 0; n < 50; n++) {
    NetAddr a = nth_addr(n);
    client(t, &a, n * 1000 * SEC);
  }
  MON_Stats st;
  MON_GetStats(t, &st);
  TEST_EQ_INT(st.entries, 50);
  TEST_EQ_INT(st.evictions, 0);
  MON_Destroy(t);
}

static void
test_mon_untracked_newcomer_served(void)
{
  MON_Params p;
  MON_DefaultParams(&p);
  p.maxdepth = 4;
  p.mindepth = 4;
  p.monitor = 4000000000u; /* ages of a few seconds: recycling practically never */
  MON_Table *t = table_with(&p);
  for (uint32_t n = 0; n < 4; n++) {
    NetAddr a = nth_addr(n);
    client(t, &a, 0);
  }
  NetAddr x = addr("203.0.113.1", 123);
  MON_Info info;
  int served = 0;
  for (int k = 0; k < 50; k++) /* a flood: never tracked, so never limited (as ntpd) */
    served += MON_Check(t, &x, MODE_CLIENT, 4, LIMITED_KOD, SEC + k, &info) == MON_SERVE;
  TEST_EQ_INT(served, 50);
  TEST_CHECK(!info.tracked);
  TEST_EQ_INT(info.count, 0);
  MON_Stats st;
  MON_GetStats(t, &st);
  TEST_EQ_INT(st.not_tracked, 50);
  TEST_EQ_INT(st.entries, 4);
  MON_Destroy(t);
}

static void
test_mon_full_table_recycles_when_old_enough(void)
{
  MON_Params p;
  MON_DefaultParams(&p);
  p.maxdepth = 4;
  p.mindepth = 4;
  p.maxage = 1000000;
  p.monitor = 100; /* the oldest is 100 s old below: recycled for certain */
  MON_Table *t = table_with(&p);
  for (uint32_t n = 0; n < 4; n++) {
    NetAddr a = nth_addr(n);
    client(t, &a, n * SEC);
  }
  NetAddr x = addr("203.0.113.2", 123), first = nth_addr(0);
  MON_Info info;
  MON_Check(t, &x, MODE_CLIENT, 4, LIMITED_KOD, 100 * SEC, &info);
  TEST_CHECK(info.tracked && info.new_source);
  MON_Record r;
  TEST_CHECK(!MON_Lookup(t, &first, &r));
  MON_Stats st;
  MON_GetStats(t, &st);
  TEST_EQ_INT(st.evictions, 1);
  MON_Destroy(t);
}

static void
test_mon_full_table_recycle_probability_is_age_over_monitor(void)
{
  /* Table full with sources 1500 s old, monitor 3000: about half the newcomers recycle.
   * Each trial uses a fresh table so the age stays 1500 s. */
  MON_Params p;
  MON_DefaultParams(&p);
  p.maxdepth = 2;
  p.mindepth = 2;
  p.maxage = 1000000;
  MON_Table *t = NULL;
  int recycled = 0, n = 2000;
  for (int k = 0; k < n; k++) {
    t = MON_Create(&p, harness_seed + (uint64_t)k);
    NetAddr a = nth_addr(0), b = nth_addr(1), x = nth_addr(2);
    MON_Info info;
    client(t, &a, 0);
    client(t, &b, 0);
    MON_Check(t, &x, MODE_CLIENT, 4, LIMITED_KOD, 1500 * SEC, &info);
    recycled += info.tracked;
    MON_Destroy(t);
  }
  fprintf(stderr, "recycled %d of %d (expect about half)\n", recycled, n);
  TEST_CHECK(recycled > n / 2 - 150 && recycled < n / 2 + 150);
}

static void
test_mon_shards_split_bound_and_all_sources_found(void)
{
  MON_Params p;
  MON_DefaultParams(&p);
  p.maxdepth = 1000;
  p.shards = 4;
  MON_Table *t = table_with(&p);
  for (uint32_t n = 0; n < 500; n++) {
    NetAddr a = nth_addr(n);
    client(t, &a, 0);
  }
  MON_Stats st;
  MON_GetStats(t, &st);
  TEST_EQ_INT(st.capacity, 1000);
  TEST_EQ_INT(st.entries, 500);
  int found = 0;
  for (uint32_t n = 0; n < 500; n++) {
    NetAddr a = nth_addr(n);
    MON_Record r;
    found += MON_Lookup(t, &a, &r);
  }
  TEST_EQ_INT(found, 500);
  NetAddr a = nth_addr(7);
  TEST_EQ_INT(client(t, &a, 1), MON_LIMIT_KOD);
  MON_Destroy(t);
}

typedef struct {
  MON_Table *t;
  uint32_t base;
  int served;
} Worker;

static void *
hammer(void *arg)
{
  Worker *w = arg;
  for (int k = 0; k < 20000; k++) {
    NetAddr a = nth_addr(w->base + (uint32_t)(k % 3000));
    w->served += client(w->t, &a, (int64_t)k * MS) == MON_SERVE;
    if (k % 1000 == 0)
      MON_TakeKod(w->t, (int64_t)k * MS);
  }
  return NULL;
}

static void
test_mon_threads_on_shards(void)
{
  MON_Params p;
  MON_DefaultParams(&p);
  p.maxdepth = 4096;
  p.shards = 8;
  p.netprefix4 = 16;
  MON_Table *t = table_with(&p);
  pthread_t th[4];
  Worker w[4];
  for (int i = 0; i < 4; i++) {
    w[i] = (Worker){t, (uint32_t)i * 1500, 0};
    pthread_create(&th[i], NULL, hammer, &w[i]);
  }
  for (int i = 0; i < 4; i++)
    pthread_join(th[i], NULL);
  MON_Stats st;
  MON_GetStats(t, &st);
  TEST_CHECK(st.entries <= 4096);
  TEST_CHECK(st.entries >= 3000);
  /* One /16 for everyone: the network bucket (burst 64, 8/s over 20 s) bounds the total. */
  int served = w[0].served + w[1].served + w[2].served + w[3].served;
  TEST_CHECK(served >= 64 && served <= 64 + 8 * 20 + 1);
  MON_Destroy(t);
}

/* ---- reconfiguration ---- */

static void
test_mon_reconfigure_keeps_history(void)
{
  MON_Table *t = default_table();
  NetAddr a = addr("192.0.2.30", 123);
  client(t, &a, 0);
  TEST_EQ_INT(client(t, &a, 1), MON_LIMIT_KOD);
  MON_Params p;
  MON_DefaultParams(&p);
  p.maxdepth = 2000;
  p.leak = 1;
  TEST_CHECK(MON_Reconfigure(t, &p));
  MON_Record r;
  TEST_CHECK(MON_Lookup(t, &a, &r));
  TEST_EQ_INT(r.count, 2);
  TEST_EQ_INT(r.leak, 72);
  TEST_EQ_INT(r.first_ns, 0);
  /* Still over its limit right after the reload: not a new client. */
  MON_Result res = client(t, &a, 2 * SEC);
  TEST_CHECK(res == MON_LIMIT_DROP || res == MON_LEAK_SERVE);
  MON_Stats st;
  MON_GetStats(t, &st);
  TEST_EQ_INT(st.capacity, 2000);
  MON_Destroy(t);
}

static void
test_mon_reconfigure_smaller_bound_drops_least_recent(void)
{
  MON_Params p;
  MON_DefaultParams(&p);
  p.maxdepth = 200;
  MON_Table *t = table_with(&p);
  for (uint32_t n = 0; n < 100; n++) {
    NetAddr a = nth_addr(n);
    client(t, &a, n * MS);
  }
  NetAddr early = nth_addr(3);
  client(t, &early, SEC); /* now the most recent */
  size_t before = MON_MemoryBytes(t);
  p.maxdepth = 10;
  p.shards = 2;
  TEST_CHECK(MON_Reconfigure(t, &p));
  MON_Stats st;
  MON_GetStats(t, &st);
  TEST_CHECK(st.entries <= 10 && st.entries >= 5);
  TEST_EQ_INT(st.evictions, 100 - st.entries);
  TEST_CHECK(MON_MemoryBytes(t) < before);
  MON_Record r;
  NetAddr old = nth_addr(0), recent = nth_addr(99);
  TEST_CHECK(MON_Lookup(t, &early, &r));
  TEST_CHECK(MON_Lookup(t, &recent, &r));
  TEST_CHECK(!MON_Lookup(t, &old, &r));
  MON_Destroy(t);
}

static void
test_mon_reconfigure_rejects_bad_params_and_keeps_table(void)
{
  MON_Table *t = default_table();
  NetAddr a = addr("192.0.2.31", 123);
  client(t, &a, 0);
  MON_Params p;
  MON_DefaultParams(&p);
  p.shards = 3;
  TEST_CHECK(!MON_Reconfigure(t, &p));
  MON_Record r;
  TEST_CHECK(MON_Lookup(t, &a, &r));
  MON_Destroy(t);
}

/* ---- per-network limit ---- */

static MON_Table *
net_table(void)
{
  MON_Params p;
  MON_DefaultParams(&p);
  p.leak = 0; /* exact counts below */
  p.netprefix4 = 24;
  p.netprefix6 = 48;
  p.netaverage = 0; /* 1 packet/s per network */
  p.netburst = 8;
  return table_with(&p);
}

static void
test_mon_network_limit_across_hosts_of_a_24(void)
{
  MON_Table *t = net_table();
  int served = 0, kod = 0, drop = 0;
  MON_Info info;
  for (int h = 1; h <= 200; h++) {
    char text[32];
    snprintf(text, sizeof(text), "192.0.2.%d", h);
    NetAddr a = addr(text, 123);
    MON_Result r = MON_Check(t, &a, MODE_CLIENT, 4, LIMITED_KOD, 0, &info);
    served += r == MON_SERVE;
    kod += r == MON_LIMIT_KOD;
    drop += r == MON_LIMIT_DROP;
    if (h == 200)
      TEST_CHECK(info.by_network);
  }
  TEST_EQ_INT(served, 8);
  TEST_EQ_INT(kod, 1);
  TEST_EQ_INT(drop, 191);
  /* Another /24 is not affected; the first one refills at 1 packet/s. */
  NetAddr other = addr("192.0.3.1", 123), again = addr("192.0.2.250", 123);
  TEST_EQ_INT(client(t, &other, 0), MON_SERVE);
  TEST_EQ_INT(client(t, &again, SEC / 2), MON_LIMIT_DROP);
  NetAddr again2 = addr("192.0.2.251", 123);
  TEST_EQ_INT(client(t, &again2, SEC), MON_SERVE);
  MON_Destroy(t);
}

static void
test_mon_network_limit_kod_once_per_window(void)
{
  MON_Table *t = net_table();
  int kod = 0;
  /* 10 new hosts per second for 64 s: over the limit all along, KoD window 8 s. */
  for (int k = 0; k < 640; k++) {
    NetAddr a = nth_addr((uint32_t)k % 250);
    a.bytes[1] = 0;
    a.bytes[2] = 7;
    a.bytes[3] = (uint8_t)(k % 250);
    kod += MON_Check(t, &a, MODE_CLIENT, 4, LIMITED_KOD, k * 100 * MS, NULL) == MON_LIMIT_KOD;
  }
  TEST_CHECK(kod >= 8 && kod <= 9);
  MON_Destroy(t);
}

static void
test_mon_network_limit_ipv6_prefix(void)
{
  MON_Table *t = net_table();
  int served = 0;
  for (int h = 1; h <= 20; h++) {
    char text[48];
    snprintf(text, sizeof(text), "2001:db8:1:%x::1", h);
    NetAddr a = addr(text, 123);
    served += client(t, &a, 0) == MON_SERVE;
  }
  TEST_EQ_INT(served, 8);
  NetAddr b = addr("2001:db8:2::1", 123);
  TEST_EQ_INT(client(t, &b, 0), MON_SERVE);
  MON_Destroy(t);
}

/* A host of 192.0.2.0/24 (one new source each time, so only the network limit applies). */
static MON_Result
net_a_client(MON_Table *t, int host, int64_t now, MON_Info *info)
{
  NetAddr a = nth_addr(0);
  a.bytes[0] = 192;
  a.bytes[1] = 0;
  a.bytes[2] = 2;
  a.bytes[3] = (uint8_t)host;
  return MON_Check(t, &a, MODE_CLIENT, 4, LIMITED_KOD, now, info);
}

/* Network records are found by their own key across evictions (unlinking a record
 * recomputes its hash) and across reconfigurations that move them between shards. */
static void
test_mon_network_records_survive_eviction_and_reconfigure(void)
{
  MON_Params p;
  MON_DefaultParams(&p);
  p.netprefix4 = 24;
  p.netaverage = 0; /* 1 packet/s per network */
  p.netburst = 8;
  p.netdepth = 64;
  MON_Table *t = table_with(&p);
  MON_Info info;
  int host = 1;
  for (int k = 0; k < 8; k++)
    TEST_EQ_INT(net_a_client(t, host++, 0, &info), MON_SERVE);
  /* 1000 other networks churn through the 64 network records; 192.0.2.0/24 stays recent
   * and stays over its limit. */
  int limited = 0;
  for (uint32_t k = 0; k < 1000; k++) {
    NetAddr a = nth_addr(k << 8 | 1);
    TEST_EQ_INT(client(t, &a, 0), MON_SERVE);
    if (k % 16 == 15) {
      limited += net_a_client(t, host++, 0, &info) != MON_SERVE && info.by_network;
    }
  }
  TEST_EQ_INT(limited, 62);
  MON_Stats st;
  MON_GetStats(t, &st);
  TEST_EQ_INT(st.net_entries, 64);
  TEST_EQ_INT(st.net_evictions, 1001 - 64);
  /* Into 4 shards of 16 network records (some drop their oldest), then 2 shards of 64. */
  TEST_CHECK(net_a_client(t, host++, 0, &info) != MON_SERVE && info.by_network);
  p.shards = 4;
  TEST_CHECK(MON_Reconfigure(t, &p));
  MON_GetStats(t, &st);
  TEST_EQ_INT(st.net_entries + st.net_evictions, 1001);
  TEST_CHECK(st.net_entries <= 64);
  TEST_CHECK(net_a_client(t, host++, SEC / 2, &info) != MON_SERVE && info.by_network);
  p.shards = 2;
  p.netdepth = 128;
  uint64_t entries = st.net_entries;
  TEST_CHECK(MON_Reconfigure(t, &p));
  MON_GetStats(t, &st);
  TEST_EQ_INT(st.net_entries, entries);
  TEST_EQ_INT(st.net_entries + st.net_evictions, 1001);
  /* one packet a second refills: one served at 1 s, not two */
  TEST_EQ_INT(net_a_client(t, host++, SEC, &info), MON_SERVE);
  TEST_CHECK(net_a_client(t, host++, SEC, &info) != MON_SERVE && info.by_network);
  /* and the other networks' records still work as well */
  NetAddr last = nth_addr(999u << 8 | 2);
  TEST_EQ_INT(client(t, &last, SEC), MON_SERVE);
  MON_GetStats(t, &st);
  TEST_EQ_INT(st.net_entries, entries);
  MON_Destroy(t);
}

static void
test_mon_network_limit_off_by_default(void)
{
  MON_Table *t = default_table();
  int served = 0;
  for (int h = 1; h <= 200; h++) {
    char text[32];
    snprintf(text, sizeof(text), "192.0.2.%d", h);
    NetAddr a = addr(text, 123);
    served += client(t, &a, 0) == MON_SERVE;
  }
  TEST_EQ_INT(served, 200);
  MON_Destroy(t);
}

/* ---- listing, stats, sizes ---- */

static void
test_mon_record_size_at_most_64(void)
{
  /* a record plus its index share (under 4 bytes: one 32-bit bucket per two records) */
  TEST_CHECK(MON_RECORD_BYTES <= 64);
  TEST_CHECK(MON_RECORD_BYTES + 4 <= 64);
  /* Per-record memory measured: 1024 more records cost 1024 records + 512 buckets (two
   * records per bucket when full). */
  MON_Params p;
  MON_DefaultParams(&p);
  p.maxdepth = 1024;
  MON_Table *a = table_with(&p);
  p.maxdepth = 2048;
  MON_Table *b = table_with(&p);
  TEST_EQ_INT(MON_MemoryBytes(b) - MON_MemoryBytes(a), 1024 * (MON_RECORD_BYTES + 2));
  /* a million clients within 64 MiB */
  p.maxdepth = 1000000;
  MON_Table *m = table_with(&p);
  TEST_CHECK(MON_MemoryBytes(m) <= 64u * 1024 * 1024);
  MON_Destroy(m);
  MON_Destroy(a);
  MON_Destroy(b);
}

/* Everything the table allocates (records, hash index, shards, the default network table),
 * divided by the source records it holds: at most 64 bytes a client. */
static void
test_mon_memory_per_client_at_most_64(void)
{
  static const uint32_t depths[] = {1000000, 1u << 20};
  static const uint32_t shards[] = {1, 4};
  for (size_t d = 0; d < sizeof(depths) / sizeof(depths[0]); d++)
    for (size_t k = 0; k < sizeof(shards) / sizeof(shards[0]); k++) {
      MON_Params p;
      MON_DefaultParams(&p);
      p.maxdepth = depths[d];
      p.shards = shards[k];
      MON_Table *t = table_with(&p);
      if (!t)
        continue;
      size_t bytes = MON_MemoryBytes(t);
      MON_Stats st;
      MON_GetStats(t, &st);
      TEST_EQ_INT(st.capacity, depths[d]);
      TEST_CHECK(bytes > (size_t)depths[d] * MON_RECORD_BYTES);
      TEST_CHECK(bytes <= (size_t)64 * depths[d]); /* bytes / maxdepth <= 64, unrounded */
      fprintf(stderr, "maxdepth %u, shards %u: %zu bytes, %.2f per record\n", depths[d],
              shards[k], bytes, (double)bytes / depths[d]);
      MON_Destroy(t);
    }
}

static void
test_mon_list_newest_first_pages_with_cursor(void)
{
  MON_Table *t = default_table();
  for (uint32_t n = 0; n < 10; n++) {
    NetAddr a = nth_addr(n);
    client(t, &a, (int64_t)n * SEC);
  }
  MON_Record page[3];
  MON_Cursor cur;
  bool seen[10] = {false};
  size_t total = 0, got = MON_List(t, true, NULL, page, 3);
  int64_t expect = 9 * SEC;
  while (got > 0) {
    for (size_t i = 0; i < got; i++) {
      TEST_EQ_INT(page[i].last_ns, expect);
      seen[page[i].addr.bytes[3]] = true;
      expect -= SEC;
    }
    total += got;
    cur.last_ns = page[got - 1].last_ns;
    cur.addr = page[got - 1].addr;
    got = MON_List(t, true, &cur, page, 3);
  }
  TEST_EQ_INT(total, 10);
  for (int i = 0; i < 10; i++)
    TEST_CHECK(seen[i]);
  MON_Destroy(t);
}

static void
test_mon_list_oldest_first_shows_updated_record_again(void)
{
  MON_Table *t = default_table();
  for (uint32_t n = 0; n < 6; n++) {
    NetAddr a = nth_addr(n);
    client(t, &a, 0); /* all at the same time: ordered by address */
  }
  MON_Record page[4];
  size_t got = MON_List(t, false, NULL, page, 4);
  TEST_EQ_INT(got, 4);
  TEST_EQ_INT(page[0].addr.bytes[3], 0);
  TEST_EQ_INT(page[3].addr.bytes[3], 3);
  NetAddr first = nth_addr(0);
  client(t, &first, 10 * SEC); /* updated between pages */
  MON_Cursor cur = {page[3].last_ns, page[3].addr};
  got = MON_List(t, false, &cur, page, 4);
  TEST_EQ_INT(got, 3);
  TEST_EQ_INT(page[0].addr.bytes[3], 4);
  TEST_EQ_INT(page[1].addr.bytes[3], 5);
  TEST_EQ_INT(page[2].addr.bytes[3], 0);
  TEST_EQ_INT(page[2].last_ns, 10 * SEC);
  MON_Destroy(t);
}

/* ---- walks ---- */

/* What a walk handed out so far: takes at most `room` records a call (a page), or every
 * record without keeping it (a filter that matches nothing). */
typedef struct {
  uint32_t room, taken_now;
  bool keep;
  size_t n, cap, total; /* kept, room to keep, taken in all */
  MON_Record *got;
} Pager;

static bool
pager_take(void *arg, const MON_Record *r)
{
  Pager *p = arg;
  if (p->taken_now == p->room)
    return false;
  p->taken_now++;
  p->total++;
  if (p->keep && p->n < p->cap)
    p->got[p->n++] = *r;
  return true;
}

static MON_WalkBuf walk_buf;

/* Run a walk to its end; returns the number of calls, checking the work of each. */
static int
walk_all(MON_Table *t, const MON_WalkFrom *from, Pager *pg)
{
  MON_WalkId id;
  int calls = 0;
  MON_WalkStatus st;
  do {
    size_t read = 0;
    pg->taken_now = 0;
    st = MON_Walk(t, &id, calls == 0 ? from : NULL, &walk_buf, pager_take, pg, &read);
    TEST_CHECK(read <= MON_WALK_BUDGET);
    TEST_CHECK(st != MON_WALK_LOST);
    calls++;
  } while (st == MON_WALK_MORE && calls < 100000);
  return calls;
}

/* 20,000 sources over 4 shards, many at the same time (a batch shares one clock reading):
 * pages of 100 list each record exactly once, least recently seen first. */
static void
test_mon_walk_lists_every_record_once_in_lru_order(void)
{
  enum { N = 20000 };
  static const uint32_t shards[] = {1, 4, 64};
  for (size_t k = 0; k < sizeof(shards) / sizeof(shards[0]); k++) {
    MON_Params p;
    MON_DefaultParams(&p);
    p.maxdepth = 32768;
    p.shards = shards[k];
    MON_Table *t = table_with(&p);
    for (uint32_t n = 0; n < N; n++) {
      NetAddr a = nth_addr(n * 7919 % N);
      client(t, &a, SEC + (int64_t)(n / 8) * MS);
    }
    static MON_Record got[N + 1];
    Pager pg = {.room = 100, .keep = true, .cap = N + 1, .got = got};
    MON_WalkFrom from = {0, INT64_MIN};
    int calls = walk_all(t, &from, &pg);
    TEST_EQ_INT(pg.n, N);
    TEST_CHECK(calls >= N / 100 && calls <= N / 100 + 1);
    static bool seen[N];
    memset(seen, 0, sizeof(seen));
    for (size_t i = 0; i < pg.n; i++) {
      uint32_t v = (uint32_t)got[i].addr.bytes[1] << 16 | got[i].addr.bytes[2] << 8 |
                   got[i].addr.bytes[3];
      TEST_CHECK(v < N && !seen[v]);
      if (v < N)
        seen[v] = true;
      if (i > 0)
        TEST_CHECK(got[i].last_ns >= got[i - 1].last_ns);
    }
    MON_Destroy(t);
  }
}

/* A filter that matches nothing reads at most MON_WALK_BUDGET records a call, so going
 * through 65,536 records takes about 65,536 / MON_WALK_BUDGET calls, not one long one. */
static void
test_mon_walk_work_per_call_is_bounded(void)
{
  MON_Params p;
  MON_DefaultParams(&p);
  p.maxdepth = 65536;
  p.shards = 8;
  MON_Table *t = table_with(&p);
  for (uint32_t n = 0; n < 65536; n++) {
    NetAddr a = nth_addr(n);
    client(t, &a, SEC + (int64_t)n * 1000);
  }
  Pager pg = {.room = UINT32_MAX, .keep = false};
  MON_WalkFrom from = {0, INT64_MIN};
  int calls = walk_all(t, &from, &pg);
  TEST_CHECK(calls >= 65536 / MON_WALK_BUDGET);
  TEST_CHECK(calls <= 2 * 65536 / MON_WALK_BUDGET + 1);
  MON_Destroy(t);
}

/* Records seen again during a walk are listed again at the end; newcomers are listed;
 * skip and skip_before_ns leave out the oldest records. */
static void
test_mon_walk_sees_updates_and_starts_where_asked(void)
{
  MON_Params p;
  MON_DefaultParams(&p);
  p.shards = 4;
  MON_Table *t = table_with(&p);
  for (uint32_t n = 0; n < 10; n++) {
    NetAddr a = nth_addr(n);
    client(t, &a, (int64_t)(n + 1) * SEC);
  }
  MON_Record got[32];
  Pager pg = {.room = 4, .keep = true, .cap = 32, .got = got};
  MON_WalkId id;
  MON_WalkFrom from = {0, INT64_MIN};
  TEST_EQ_INT(MON_Walk(t, &id, &from, &walk_buf, pager_take, &pg, NULL), MON_WALK_MORE);
  TEST_EQ_INT(pg.n, 4);
  NetAddr a0 = nth_addr(0), a5 = nth_addr(5), a99 = nth_addr(99);
  client(t, &a0, 20 * SEC);  /* listed already: again at the end */
  client(t, &a5, 21 * SEC);  /* not listed yet: moves to the end */
  client(t, &a99, 22 * SEC); /* a newcomer */
  pg.room = 100;
  pg.taken_now = 0;
  TEST_EQ_INT(MON_Walk(t, &id, NULL, &walk_buf, pager_take, &pg, NULL), MON_WALK_DONE);
  static const int order[] = {0, 1, 2, 3, 4, 6, 7, 8, 9, 0, 5, 99};
  TEST_EQ_INT(pg.n, 12);
  for (size_t i = 0; i < pg.n && i < 12; i++)
    TEST_EQ_INT(got[i].addr.bytes[3], order[i]);
  /* over: the id is gone */
  TEST_EQ_INT(MON_Walk(t, &id, NULL, &walk_buf, pager_take, &pg, NULL), MON_WALK_LOST);
  /* the 3 newest of 11 (recent=3), then those last seen at or after 9 s */
  pg.n = 0;
  from = (MON_WalkFrom){8, INT64_MIN};
  walk_all(t, &from, &pg);
  TEST_EQ_INT(pg.n, 3);
  TEST_EQ_INT(got[0].addr.bytes[3], 0);
  TEST_EQ_INT(got[2].addr.bytes[3], 99);
  pg.n = 0;
  from = (MON_WalkFrom){0, 9 * SEC};
  walk_all(t, &from, &pg);
  TEST_EQ_INT(pg.n, 5); /* 8, 9, 0, 5, 99 */
  TEST_EQ_INT(got[0].addr.bytes[3], 8);
  MON_Destroy(t);
}

/* At most MON_WALKS walks: one more ends the least recently used; a reconfiguration ends
 * them all; recycling records under a walk keeps the table consistent. */
static void
test_mon_walk_slots_reconfigure_and_recycling(void)
{
  MON_Params p;
  MON_DefaultParams(&p);
  p.maxdepth = 128;
  p.mindepth = 0;
  p.shards = 2;
  MON_Table *t = table_with(&p);
  for (uint32_t n = 0; n < 64; n++) {
    NetAddr a = nth_addr(n);
    client(t, &a, (int64_t)(n + 1) * SEC);
  }
  MON_Record got[256];
  Pager pg = {.room = 1, .keep = true, .cap = 256, .got = got};
  MON_WalkId ids[MON_WALKS + 1];
  MON_WalkFrom from = {0, INT64_MIN};
  for (int i = 0; i <= MON_WALKS; i++) {
    pg.taken_now = 0;
    TEST_EQ_INT(MON_Walk(t, &ids[i], &from, &walk_buf, pager_take, &pg, NULL), MON_WALK_MORE);
  }
  pg.taken_now = 0;
  TEST_EQ_INT(MON_Walk(t, &ids[0], NULL, &walk_buf, pager_take, &pg, NULL), MON_WALK_LOST);
  pg.taken_now = 0;
  TEST_EQ_INT(MON_Walk(t, &ids[1], NULL, &walk_buf, pager_take, &pg, NULL), MON_WALK_MORE);
  /* newcomers recycle the oldest records (older than maxage), not the cursor nodes */
  for (uint32_t n = 100; n < 300; n++) {
    NetAddr a = nth_addr(n);
    client(t, &a, (int64_t)(n + 1000) * SEC);
  }
  MON_Stats st;
  MON_GetStats(t, &st);
  TEST_CHECK(st.entries >= 64 && st.entries <= 128);
  TEST_CHECK(st.evictions >= 64); /* every first record was recycled */
  pg.n = 0;
  pg.room = 1000;
  pg.taken_now = 0;
  TEST_EQ_INT(MON_Walk(t, &ids[1], NULL, &walk_buf, pager_take, &pg, NULL), MON_WALK_DONE);
  TEST_EQ_INT(pg.n, st.entries); /* only the records still there: newcomers */
  for (size_t i = 0; i < pg.n; i++) {
    TEST_CHECK(got[i].last_ns >= 1100 * SEC);
    TEST_CHECK(i == 0 || got[i].last_ns > got[i - 1].last_ns);
  }
  p.maxdepth = 32;
  TEST_CHECK(MON_Reconfigure(t, &p));
  pg.taken_now = 0;
  TEST_EQ_INT(MON_Walk(t, &ids[2], NULL, &walk_buf, pager_take, &pg, NULL), MON_WALK_LOST);
  pg.n = 0;
  walk_all(t, &from, &pg);
  TEST_EQ_INT(pg.n, 32);
  int64_t oldest = 0;
  TEST_CHECK(MON_OldestSeen(t, &oldest));
  TEST_EQ_INT(oldest, got[0].last_ns);
  MON_Destroy(t);
}

typedef struct {
  MON_Table *t;
  int mode; /* 0: packets, 1: walks and reads, 2: reconfigurations, 3: reads */
  int rounds;
  size_t listed;
} Racer;

static void *
racer(void *arg)
{
  Racer *r = arg;
  MON_WalkBuf *buf = malloc(sizeof(*buf));
  MON_Params p;
  MON_DefaultParams(&p);
  p.shards = 4;
  for (int i = 0; i < r->rounds; i++) {
    if (r->mode == 0) {
      NetAddr a = nth_addr((uint32_t)(i * 7) % 6000);
      client(r->t, &a, SEC + (int64_t)i * MS);
    } else if (r->mode == 1) {
      Pager pg = {.room = 50, .keep = false};
      MON_WalkId id;
      MON_WalkFrom from = {0, INT64_MIN};
      MON_WalkStatus st = MON_Walk(r->t, &id, &from, buf, pager_take, &pg, NULL);
      for (int k = 0; k < 1000 && st == MON_WALK_MORE; k++) {
        pg.taken_now = 0;
        st = MON_Walk(r->t, &id, NULL, buf, pager_take, &pg, NULL);
      }
      MON_Stats ms;
      MON_Record rec;
      NetAddr a = nth_addr((uint32_t)i);
      int64_t oldest;
      MON_GetStats(r->t, &ms);
      MON_Lookup(r->t, &a, &rec);
      MON_OldestSeen(r->t, &oldest);
      r->listed += pg.total;
    } else if (r->mode == 3) {
      MON_Stats ms;
      MON_Record rec;
      NetAddr a = nth_addr((uint32_t)i % 6000);
      int64_t oldest;
      MON_GetStats(r->t, &ms);
      r->listed += MON_Lookup(r->t, &a, &rec) + MON_OldestSeen(r->t, &oldest);
    } else {
      p.maxdepth = i % 2 ? 4096 : 8192;
      MON_Reconfigure(r->t, &p);
    }
  }
  free(buf);
  return NULL;
}

/* Walks and reads run at any time: beside packets (shard locks), and beside
 * reconfigurations (the readers' lock); the sanitizer builds check for races and
 * use-after-free. */
static void
test_mon_walk_beside_packets_and_reconfiguration(void)
{
  MON_Params p;
  MON_DefaultParams(&p);
  p.maxdepth = 8192;
  p.shards = 4;
  MON_Table *t = table_with(&p);
  for (uint32_t n = 0; n < 6000; n++) {
    NetAddr a = nth_addr(n);
    client(t, &a, (int64_t)n * MS);
  }
  for (int phase = 0; phase < 2; phase++) {
    Racer r[3] = {{t, 1, 20, 0},
                  {t, phase == 0 ? 0 : 2, phase == 0 ? 200000 : 100, 0},
                  {t, phase == 0 ? 0 : 3, 200000, 0}};
    pthread_t th[3];
    for (int i = 0; i < 3; i++)
      pthread_create(&th[i], NULL, racer, &r[i]);
    for (int i = 0; i < 3; i++)
      pthread_join(th[i], NULL);
    MON_Stats st;
    MON_GetStats(t, &st);
    TEST_CHECK(st.entries > 0 && st.entries <= 8192);
  }
  Pager pg = {.room = UINT32_MAX, .keep = false};
  MON_WalkFrom from = {0, INT64_MIN};
  walk_all(t, &from, &pg);
  MON_Stats st;
  MON_GetStats(t, &st);
  TEST_EQ_INT(pg.total, st.entries);
  MON_Destroy(t);
}

static void
test_mon_validate_params(void)
{
  MON_Params p;
  char err[128] = "";
  MON_DefaultParams(&p);
  TEST_CHECK(MON_ValidateParams(&p, err, sizeof(err)));
  p.shards = 6;
  TEST_CHECK(!MON_ValidateParams(&p, err, sizeof(err)));
  TEST_CHECK(strstr(err, "power of two") != NULL);
  MON_DefaultParams(&p);
  p.average = 25;
  TEST_CHECK(!MON_ValidateParams(&p, err, sizeof(err)));
  TEST_CHECK(strstr(err, "average") != NULL);
  TEST_CHECK(MON_Create(&p, 1) == NULL);
  MON_DefaultParams(&p);
  p.maxdepth = 0;
  TEST_CHECK(!MON_ValidateParams(&p, NULL, 0));
}

/* ---- micro-benchmark (NTPG_BENCH=1; prints, never asserts) ---- */

static double
now_s(void)
{
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

static void
bench_one(uint32_t sources, uint32_t maxdepth, int netprefix4)
{
  enum { ITER = 4000000 };
  MON_Params p;
  MON_DefaultParams(&p);
  p.maxdepth = maxdepth;
  p.netprefix4 = netprefix4;
  MON_Table *t = table_with(&p);
  uint64_t x = harness_seed;
  uint32_t sink = 0;
  double t0 = now_s();
  for (int k = 0; k < ITER; k++) {
    x = x * 6364136223846793005ULL + 1442695040888963407ULL;
    NetAddr a = nth_addr((uint32_t)(x >> 33) % sources);
    sink += client(t, &a, (int64_t)k * 50000); /* 20k packets/s */
  }
  double dt = now_s() - t0;
  MON_Stats st;
  MON_GetStats(t, &st);
  printf("bench monitor: %6u sources, maxdepth %6u, netprefix4 %2d: %.1f ns/check, "
         "%llu entries, %zu bytes (sink %u)\n",
         sources, maxdepth, netprefix4, dt * 1e9 / ITER, (unsigned long long)st.entries,
         st.memory_bytes, sink & 1);
  MON_Destroy(t);
}

static void
test_mon_bench(void)
{
  const char *b = getenv("NTPG_BENCH");
  if (!b || strcmp(b, "1") != 0)
    return;
  bench_one(1000, 16384, 0);
  bench_one(100000, 16384, 0);
  bench_one(100000, 131072, 0);
  bench_one(100000, 131072, 24);
}

TEST_MAIN(TEST_CASE(test_mon_first_packet_served),
          TEST_CASE(test_mon_second_packet_within_half_second_gets_kod),
          TEST_CASE(test_mon_half_second_gap_passes_minimum),
          TEST_CASE(test_mon_2s_spacing_16th_packet_kod),
          TEST_CASE(test_mon_1s_spacing_14th_kod_then_every_9s),
          TEST_CASE(test_mon_5s_spacing_58th_packet_kod),
          TEST_CASE(test_mon_6s_spacing_served_forever),
          TEST_CASE(test_mon_average_boundary_just_below_and_above),
          TEST_CASE(test_mon_continuous_flood_gets_one_kod),
          TEST_CASE(test_mon_record_shows_ntpd_counters),
          TEST_CASE(test_mon_without_kod_flag_violation_drops),
          TEST_CASE(test_mon_server_and_broadcast_modes_never_kod),
          TEST_CASE(test_mon_not_limited_is_served_and_recorded),
          TEST_CASE(test_mon_counter_runs_before_limited_is_set),
          TEST_CASE(test_mon_ignored_packet_not_recorded),
          TEST_CASE(test_mon_ipv4_mapped_source_shares_record),
          TEST_CASE(test_mon_ipv6_sources_are_separate),
          TEST_CASE(test_mon_wall_clock_step_does_not_matter),
          TEST_CASE(test_mon_time_going_backwards_does_not_refill),
          TEST_CASE(test_mon_leak_fraction_within_bounds),
          TEST_CASE(test_mon_leak_off_never_serves_over_limit),
          TEST_CASE(test_mon_same_seed_same_decisions),
          TEST_CASE(test_mon_global_kod_limit_one_per_second),
          TEST_CASE(test_mon_global_kod_limit_zero_means_none),
          TEST_CASE(test_mon_global_kod_limit_rate_and_burst),
          TEST_CASE(test_mon_eviction_under_pressure_keeps_bound),
          TEST_CASE(test_mon_constant_recycling_keeps_most_recent),
          TEST_CASE(test_mon_maxage_recycles_oldest_beyond_mindepth),
          TEST_CASE(test_mon_below_mindepth_old_entries_kept),
          TEST_CASE(test_mon_untracked_newcomer_served),
          TEST_CASE(test_mon_full_table_recycles_when_old_enough),
          TEST_CASE(test_mon_full_table_recycle_probability_is_age_over_monitor),
          TEST_CASE(test_mon_shards_split_bound_and_all_sources_found),
          TEST_CASE(test_mon_threads_on_shards), TEST_CASE(test_mon_reconfigure_keeps_history),
          TEST_CASE(test_mon_reconfigure_smaller_bound_drops_least_recent),
          TEST_CASE(test_mon_reconfigure_rejects_bad_params_and_keeps_table),
          TEST_CASE(test_mon_network_limit_across_hosts_of_a_24),
          TEST_CASE(test_mon_network_limit_kod_once_per_window),
          TEST_CASE(test_mon_network_limit_ipv6_prefix),
          TEST_CASE(test_mon_network_limit_off_by_default),
          TEST_CASE(test_mon_network_records_survive_eviction_and_reconfigure),
          TEST_CASE(test_mon_record_size_at_most_64),
          TEST_CASE(test_mon_memory_per_client_at_most_64),
          TEST_CASE(test_mon_list_newest_first_pages_with_cursor),
          TEST_CASE(test_mon_list_oldest_first_shows_updated_record_again),
          TEST_CASE(test_mon_walk_lists_every_record_once_in_lru_order),
          TEST_CASE(test_mon_walk_work_per_call_is_bounded),
          TEST_CASE(test_mon_walk_sees_updates_and_starts_where_asked),
          TEST_CASE(test_mon_walk_slots_reconfigure_and_recycling),
          TEST_CASE(test_mon_walk_beside_packets_and_reconfiguration),
          TEST_CASE(test_mon_validate_params), TEST_CASE(test_mon_bench))
