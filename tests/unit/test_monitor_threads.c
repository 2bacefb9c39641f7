/* monitor from several threads: the sharded locks (monitor.h "Threads"). Four threads record
 * packets from overlapping address sets with the rate limit and the per-network limit on,
 * while a fifth pages through MON_List, looks records up, reads the stats and takes KoDs.
 * Afterwards the counts add up exactly. Run under ThreadSanitizer by `make test-tsan`, which
 * reports any access outside a shard's lock. No sockets, no sleeping, injected time. */
#include "monitor.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "harness.h"
#include "restrict.h"

#define THREADS 4
#define PACKETS 20000 /* per thread */
#define SOURCES 512   /* shared by the threads: every thread hits every shard */

static MON_Table *table;
static atomic_int done;
static atomic_ulong verdicts[4];

static NetAddr
source(unsigned k)
{
  NetAddr a;
  char text[64];
  if (k % 4 == 3)
    snprintf(text, sizeof(text), "2001:db8::%x", k);
  else
    snprintf(text, sizeof(text), "192.0.2.%u", k % 256);
  ADR_Parse(text, &a);
  if (k % 4 != 3 && k >= 256) /* the second 256 IPv4 sources: another /24, 192.0.3.x */
    a.bytes[2] = 3;
  a.port = (uint16_t)(1024 + k);
  return a;
}

static void *
recorder(void *arg)
{
  unsigned id = (unsigned)(uintptr_t)arg;
  uint64_t x = harness_seed * 2654435761u + id;
  for (unsigned i = 0; i < PACKETS; i++) {
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    NetAddr a = source((unsigned)(x % SOURCES));
    int64_t mono = 1000000000LL + (int64_t)i * 1000000; /* 1 ms per packet per thread */
    MON_Info info;
    MON_Result r = MON_Check(table, &a, 3, 4, RST_LIMITED | RST_KOD, mono, &info);
    atomic_fetch_add(&verdicts[r], 1);
    if (r == MON_LIMIT_KOD)
      (void)MON_TakeKod(table, mono);
  }
  atomic_fetch_add(&done, 1);
  return NULL;
}

static void *
reader(void *arg)
{
  (void)arg;
  MON_Record page[64];
  for (unsigned round = 0; round < 2000 && atomic_load(&done) < THREADS; round++) {
    MON_Cursor cur;
    const MON_Cursor *at = NULL;
    for (unsigned pages = 0; pages < 16; pages++) {
      size_t n = MON_List(table, round & 1, at, page, 64);
      if (n == 0)
        break;
      cur.last_ns = page[n - 1].last_ns;
      cur.addr = page[n - 1].addr;
      at = &cur;
    }
    MON_Record rec;
    NetAddr a = source(round % SOURCES);
    (void)MON_Lookup(table, &a, &rec);
    MON_Stats st;
    MON_GetStats(table, &st);
  }
  return NULL;
}

static void
test_monitor_concurrent_check_list_lookup(void)
{
  MON_Params p;
  MON_DefaultParams(&p);
  p.shards = 8;
  p.maxdepth = 4096; /* room for every source: nothing evicted, so the counts add up */
  p.mindepth = 4096;
  p.netprefix4 = 24;
  p.netprefix6 = 64;
  table = MON_Create(&p, harness_seed);
  TEST_CHECK(table != NULL);
  if (!table)
    return;
  pthread_t th[THREADS + 1];
  for (unsigned i = 0; i < THREADS; i++)
    TEST_EQ_INT(pthread_create(&th[i], NULL, recorder, (void *)(uintptr_t)i), 0);
  TEST_EQ_INT(pthread_create(&th[THREADS], NULL, reader, NULL), 0);
  for (unsigned i = 0; i <= THREADS; i++)
    pthread_join(th[i], NULL);

  unsigned long total = 0;
  for (int v = 0; v < 4; v++)
    total += atomic_load(&verdicts[v]);
  TEST_EQ_INT(total, THREADS * PACKETS);
  MON_Stats st;
  MON_GetStats(table, &st);
  TEST_EQ_INT(st.entries, SOURCES);
  TEST_EQ_INT(st.evictions, 0);
  TEST_EQ_INT(st.not_tracked, 0);
  uint64_t counted = 0;
  for (unsigned k = 0; k < SOURCES; k++) {
    NetAddr a = source(k);
    MON_Record rec;
    if (MON_Lookup(table, &a, &rec))
      counted += rec.count;
  }
  /* every packet was counted once, by exactly one shard, whatever the thread */
  TEST_EQ_INT(counted, THREADS * PACKETS);
  size_t listed = 0;
  MON_Record page[128];
  MON_Cursor cur;
  const MON_Cursor *at = NULL;
  for (unsigned pages = 0; pages < 64; pages++) {
    size_t n = MON_List(table, false, at, page, 128);
    if (n == 0)
      break;
    listed += n;
    cur.last_ns = page[n - 1].last_ns;
    cur.addr = page[n - 1].addr;
    at = &cur;
  }
  TEST_EQ_INT(listed, SOURCES);
  fprintf(stderr, "serve %lu kod %lu drop %lu leak %lu; kod granted %llu refused %llu\n",
          atomic_load(&verdicts[MON_SERVE]), atomic_load(&verdicts[MON_LIMIT_KOD]),
          atomic_load(&verdicts[MON_LIMIT_DROP]), atomic_load(&verdicts[MON_LEAK_SERVE]),
          (unsigned long long)st.kod_granted, (unsigned long long)st.kod_refused);
  MON_Destroy(table);
}

TEST_MAIN(TEST_CASE(test_monitor_concurrent_check_list_lookup))
