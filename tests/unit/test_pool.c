/* pool: serving threads against exclusive sections. Three serving threads answer real mode 3
 * requests on 127.0.0.1 (a free port) from two client threads, while two other threads
 * repeatedly enter exclusive sections and change, in place and without atomics, the system
 * variables every reply carries, publish a new context and read the counters. If an exclusive
 * section ever overlapped a batch, a reply would carry a torn header (checked here) and the
 * ThreadSanitizer build (`make test-tsan`) would report the race. The only test that opens
 * sockets; it never sleeps (clients wait for replies with a bounded poll). */
#include "pool.h"

#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <netinet/in.h>

#include "harness.h"
#include "monitor.h"
#include "packet.h"
#include "server.h"

#define CLIENTS 2
#define REQUESTS 300 /* per client */
#define SECTIONS 400 /* per section thread */

static SRV_Policy policy = {.min_poll = 3, .max_poll = 17, .monitor = true};
/* Two consistent states; a section copies one over `live` field by field. */
static SRV_System state_a, state_b, live;
static SRV_Ctx ctx_a, ctx_b;
static POL_Pool *pool;
static uint16_t port;
static atomic_int clients_done;
static atomic_uint answered, torn, lost;
static atomic_uint sections;

static uint16_t
free_port(void)
{
  int s = socket(AF_INET, SOCK_DGRAM, 0);
  struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
  socklen_t len = sizeof(a);
  if (s < 0 || bind(s, (struct sockaddr *)&a, sizeof(a)) != 0 ||
      getsockname(s, (struct sockaddr *)&a, &len) != 0) {
    perror("free_port");
    exit(2);
  }
  close(s);
  return ntohs(a.sin_port);
}

static void *
client(void *arg)
{
  unsigned id = (unsigned)(uintptr_t)arg;
  int s = socket(AF_INET, SOCK_DGRAM, 0);
  struct sockaddr_in to = {.sin_family = AF_INET,
                           .sin_port = htons(port),
                           .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
  for (unsigned i = 0; s >= 0 && i < REQUESTS; i++) {
    uint8_t req[48] = {0}, rep[PKT_MAX_LEN];
    req[0] = (4 << 3) | 3;
    PKT_Put64(req + 40, ((uint64_t)id << 32) | (i + 1));
    if (sendto(s, req, sizeof(req), 0, (struct sockaddr *)&to, sizeof(to)) != sizeof(req)) {
      atomic_fetch_add(&lost, 1);
      continue;
    }
    struct pollfd pfd = {.fd = s, .events = POLLIN};
    ssize_t n = poll(&pfd, 1, 2000) == 1 ? recv(s, rep, sizeof(rep), 0) : -1;
    if (n < 48 || memcmp(rep + 24, req + 40, 8) != 0) {
      atomic_fetch_add(&lost, 1);
      continue;
    }
    atomic_fetch_add(&answered, 1);
    /* stratum and refid come from one state, never one from each */
    uint32_t refid = PKT_Get32(rep + 12);
    bool is_a = rep[1] == state_a.stratum && refid == state_a.refid;
    bool is_b = rep[1] == state_b.stratum && refid == state_b.refid;
    if (!is_a && !is_b)
      atomic_fetch_add(&torn, 1);
  }
  if (s >= 0)
    close(s);
  atomic_fetch_add(&clients_done, 1);
  return NULL;
}

/* Flip the live state in place, field by field, inside an exclusive section. */
static void *
sectioner(void *arg)
{
  (void)arg;
  for (unsigned i = 0; i < SECTIONS && atomic_load(&clients_done) < CLIENTS; i++) {
    POL_Exclusive(pool, -1);
    const SRV_System *from = (i & 1) ? &state_a : &state_b;
    live.stratum = from->stratum;
    live.refid = from->refid;
    live.ref_ts = from->ref_ts;
    POL_SetContext(pool, (i & 2) ? &ctx_a : &ctx_b); /* both point at `live` */
    WRK_Counters sum;
    POL_SumCounters(pool, &sum);
    (void)POL_ThreadReceived(pool, 0);
    POL_Release(pool);
    atomic_fetch_add(&sections, 1);
  }
  return NULL;
}

static void
test_pool_sections_against_serving_threads(void)
{
  NTT_Now now = {.real = {1700000000, 0}, .mono_ns = 1000000000};
  SRV_SystemLocal(&state_a, -20, 5, PKT_RefidFromCode("AAAA"), &now);
  SRV_SystemLocal(&state_b, -20, 9, PKT_RefidFromCode("BBBB"), &now);
  live = state_a;
  MON_Params mp;
  MON_DefaultParams(&mp);
  mp.shards = 4;
  MON_Table *mon = MON_Create(&mp, harness_seed);
  TEST_CHECK(mon != NULL);
  ctx_a = (SRV_Ctx){.policy = &policy, .sys = &live, .mon = mon};
  ctx_b = ctx_a;
  CLK_Clock *clk = CLK_CreateSystem(true);
  NetAddr addr;
  TEST_CHECK(ADR_Parse("127.0.0.1", &addr));
  port = free_port();
  addr.port = port;
  char err[256];
  pool = POL_Create(clk, 3, &addr, 1, err, sizeof(err));
  if (!pool) {
    fprintf(stderr, "POL_Create: %s\n", err);
    TEST_CHECK(pool != NULL);
    return;
  }
  TEST_EQ_INT(POL_Threads(pool), 3);
  TEST_CHECK(POL_Start(pool, &ctx_a, err, sizeof(err)));
  pthread_t cl[CLIENTS], sec[2];
  for (unsigned i = 0; i < CLIENTS; i++)
    TEST_EQ_INT(pthread_create(&cl[i], NULL, client, (void *)(uintptr_t)i), 0);
  for (unsigned i = 0; i < 2; i++)
    TEST_EQ_INT(pthread_create(&sec[i], NULL, sectioner, NULL), 0);
  for (unsigned i = 0; i < CLIENTS; i++)
    pthread_join(cl[i], NULL);
  for (unsigned i = 0; i < 2; i++)
    pthread_join(sec[i], NULL);
  WRK_Counters sum;
  POL_Exclusive(pool, -1);
  POL_SumCounters(pool, &sum);
  POL_Release(pool);
  fprintf(stderr, "%u answered, %u lost, %u torn, %u sections; received %llu\n",
          atomic_load(&answered), atomic_load(&lost), atomic_load(&torn),
          atomic_load(&sections), (unsigned long long)sum.received);
  TEST_EQ_INT(atomic_load(&torn), 0);
  /* loopback does not lose datagrams at this rate: every request is answered once */
  TEST_EQ_INT(atomic_load(&answered), CLIENTS * REQUESTS);
  TEST_EQ_INT(sum.received, CLIENTS * REQUESTS);
  TEST_CHECK(atomic_load(&sections) > 0);
  MON_Stats ms;
  MON_GetStats(mon, &ms);
  TEST_EQ_INT(ms.entries, 1); /* every request came from 127.0.0.1 */
  POL_Destroy(pool);
  MON_Destroy(mon);
  CLK_Destroy(clk);
}

TEST_MAIN(TEST_CASE(test_pool_sections_against_serving_threads))
