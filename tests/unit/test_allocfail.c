/* Allocation-failure injection: every allocation the config parser, the keys loader, the
 * restrict list and monitor table builders and the runtime's load/reload path make is
 * failed in turn (the k-th allocation of a run returns NULL, for k = 1, 2, ... until a run
 * completes without reaching k). Each must report failure cleanly -- never crash, never
 * half-apply a reload -- and, where no library caches are involved, free everything.
 *
 * The test replaces malloc/calloc/realloc/free for this program (glibc routes its own
 * internal allocations, strdup's included, through them). The sanitizer build has its own
 * allocator, so there the test reports itself skipped; the plain build runs it. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "access.h"
#include "config.h"
#include "harness.h"
#include "keys.h"
#include "monitor.h"
#include "runtime.h"

#ifndef NTPG_SANITIZE_BUILD

extern void *__libc_malloc(size_t);
extern void *__libc_calloc(size_t, size_t);
extern void *__libc_realloc(void *, size_t);
extern void __libc_free(void *);
extern void *__libc_memalign(size_t, size_t);

static long fail_at;     /* the allocation number to fail; 0 = none */
static long alloc_count; /* allocations in this run */
static long live;        /* allocations not yet freed */
static int failed;       /* the injected failure happened */

static int
inject(void)
{
  if (fail_at > 0 && ++alloc_count == fail_at) {
    failed = 1;
    errno = ENOMEM;
    return 1;
  }
  return 0;
}

void *
malloc(size_t n)
{
  if (inject())
    return NULL;
  void *p = __libc_malloc(n);
  if (p)
    live++;
  return p;
}

void *
calloc(size_t a, size_t b)
{
  if (inject())
    return NULL;
  void *p = __libc_calloc(a, b);
  if (p)
    live++;
  return p;
}

void *
realloc(void *old, size_t n)
{
  if (inject())
    return NULL;
  void *p = __libc_realloc(old, n);
  if (p && !old)
    live++;
  return p;
}

void *
aligned_alloc(size_t align, size_t n)
{
  if (inject())
    return NULL;
  void *p = __libc_memalign(align, n);
  if (p)
    live++;
  return p;
}

int
posix_memalign(void **out, size_t align, size_t n)
{
  if (inject())
    return ENOMEM;
  void *p = __libc_memalign(align, n);
  if (!p)
    return ENOMEM;
  live++;
  *out = p;
  return 0;
}

void
free(void *p)
{
  if (p)
    live--;
  __libc_free(p);
}

/* The kernel's random numbers, failing on demand (RNG_Secure calls getrandom). */
static int fail_random;

ssize_t
getrandom(void *buf, size_t len, unsigned int flags)
{
  if (fail_random) {
    errno = EIO;
    return -1;
  }
  return syscall(SYS_getrandom, buf, len, flags);
}

static const char CONFIG[] = "server 192.0.2.1 iburst minpoll 4 maxpoll 10 key 1 prefer\n"
                             "pool pool.example.org iburst\n"
                             "server 127.127.1.0\nfudge 127.127.1.0 stratum 10 refid LOCL\n"
                             "restrict default kod limited nomodify nopeer noquery notrap\n"
                             "restrict -6 default ignore\n"
                             "restrict 10.0.0.0 mask 255.0.0.0 noserve ntpport\n"
                             "restrict 2001:db8::/32 version flake\n"
                             "restrict source nomodify noquery\n"
                             "unrestrict 10.0.0.0/8 ntpport\n"
                             "delrestrict 10.1.0.0 mask 255.255.0.0\n"
                             "discard average 4 minimum 1 leak 3 kodlimit 2 netprefix 24/56\n"
                             "mru maxdepth 1000 mindepth 10 maxage 30\n"
                             "interface listen 127.0.0.1\nport 12345\n"
                             "trustedkey 1 2 (5 ... 9)\ncontrolkey 1\n"
                             "tos orphan 10 orphanwait 30\nbogus directive here\n";

static const char KEYS[] =
    "1 MD5 onetwothree\n2 SHA1 0123456789abcdef0123456789abcdef01234567\n"
    "4 AES128CMAC 000102030405060708090a0b0c0d0e0f\n";

typedef bool (*Step)(void);

/* Run step with the k-th allocation failing, for every k until one run does not reach
 * it. leak_check: every run must end with as many live allocations as it started with. */
static void
sweep(const char *what, Step step, bool leak_check)
{
  long k;
  int leaks = 0, runs = 0, refused = 0;
  for (k = 1; k < 100000; k++) {
    long before = live;
    fail_at = k;
    alloc_count = 0;
    failed = 0;
    bool ok = step();
    fail_at = 0;
    runs++;
    refused += !ok;
    if (leak_check && live != before) {
      if (leaks++ < 3)
        fprintf(stderr, "%s: allocation %ld failed: %ld allocations leaked\n", what, k,
                live - before);
    }
    if (!failed) { /* the run needed fewer than k allocations: every point was tried */
      TEST_CHECK(ok);
      break;
    }
  }
  fprintf(stderr, "%s: %d runs, %d refused cleanly\n", what, runs, refused);
  TEST_CHECK(runs > 5);
  TEST_EQ_INT(leaks, 0);
}

static bool
step_config(void)
{
  CNF_Config *cfg = CNF_Create();
  if (!cfg)
    return false;
  CNF_Errors e;
  CNF_InitErrors(&e);
  CNF_ParseText(cfg, "t.conf", CONFIG, &e);
  bool ok = e.errors.count + e.errors.lost > 0; /* the bogus line must be reported */
  CNF_ClearErrors(&e);
  CNF_Destroy(cfg);
  return ok;
}

static void
ignore_msg(void *arg, bool warning, int line, const char *text)
{
  (void)arg, (void)warning, (void)line, (void)text;
}

static CNF_Config *good_cfg;

static bool
step_restrict(void)
{
  uint32_t sf;
  IFC_Address local = {.name = "lo"};
  ADR_Parse("127.0.0.1", &local.addr);
  RST_List *l = ACC_BuildRestrict(good_cfg, &local, 1, NULL, &sf, ignore_msg, NULL);
  if (!l)
    return false;
  NetAddr a;
  ADR_Parse("10.9.9.9", &a);
  a.port = 123;
  bool ok = (RST_Match(l, &a) & RST_NOSERVE) != 0;
  RST_Destroy(l);
  return ok;
}

static bool
step_monitor(void)
{
  MON_Params p;
  MON_DefaultParams(&p);
  p.maxdepth = 256;
  p.netprefix4 = 24;
  p.shards = 4;
  MON_Table *t = MON_Create(&p, 1);
  if (!t)
    return false;
  p.maxdepth = 512;
  bool ok = MON_Reconfigure(t, &p); /* may fail too: then the table must be unchanged */
  MON_Stats st;
  MON_GetStats(t, &st);
  if (!ok)
    TEST_EQ_INT(st.capacity, 256);
  MON_Destroy(t);
  return ok;
}

static bool
step_keys(void)
{
  KEY_Table *t = KEY_ParseText("t.keys", KEYS, NULL);
  if (!t)
    return false;
  uint8_t pkt[PKT_HEADER_LEN + KEY_MAX_MAC] = {0x23};
  size_t len = KEY_Sign(t, 2, pkt, PKT_HEADER_LEN, sizeof(pkt));
  KEY_Destroy(t);
  return len > 0;
}

static char conf_a[64], conf_b[64];

static bool
write_file(const char *path, const char *text)
{
  FILE *f = fopen(path, "w");
  if (!f)
    return false;
  fputs(text, f);
  return fclose(f) == 0;
}

/* Start-up: RUN_Create with the k-th allocation failing returns NULL and frees all it made
 * (the configuration and its tables included, whichever later step failed). */
static bool
step_create(void)
{
  NTT_Now now = {.real = {1700000000, 0}, .mono_ns = 1000000000LL};
  RUN_Errors errs = {0};
  RUN_State *r = RUN_Create(conf_a, 0, -20, &now, &errs);
  bool said = errs.count > 0;
  RUN_FreeErrors(&errs);
  if (!r) {
    TEST_CHECK(said); /* never a silent refusal */
    return false;
  }
  RUN_Destroy(r);
  return true;
}

/* A reload with allocations failing keeps the old configuration (stratum 7) in force. */
static RUN_State *run;

static bool
step_reload(void)
{
  NTT_Now now = {.real = {1700000000, 0}, .mono_ns = 5000000000LL};
  RUN_Errors errs = {0};
  bool ok = RUN_Reload(run, conf_b, &now, &errs);
  RUN_FreeErrors(&errs);
  const SRV_Ctx *ctx = RUN_Context(run);
  if (!ok)
    TEST_EQ_INT(ctx->sys->stratum, 7); /* the old one, whole */
  else
    TEST_EQ_INT(ctx->sys->stratum, 9);
  if (ok) { /* back to the old one for the next run (no failure injected here) */
    long saved = fail_at;
    fail_at = 0;
    RUN_Errors e2 = {0};
    TEST_CHECK(RUN_Reload(run, conf_a, &now, &e2));
    RUN_FreeErrors(&e2);
    fail_at = saved;
  }
  return ok;
}

static void
test_allocfail_config(void)
{
  sweep("config parser", step_config, true);
}

static void
test_allocfail_restrict(void)
{
  good_cfg = CNF_Create();
  CNF_Errors e;
  CNF_InitErrors(&e);
  CNF_ParseText(good_cfg, "t.conf",
                "restrict default limited\nrestrict 10.0.0.0/8 noserve\n"
                "restrict example.invalid ignore\nrestrict ::1\n",
                &e);
  CNF_ClearErrors(&e);
  sweep("restrict list", step_restrict, true);
  CNF_Destroy(good_cfg);
}

static void
test_allocfail_monitor(void)
{
  sweep("monitor table", step_monitor, true);
}

static void
test_allocfail_keys(void)
{
  TEST_CHECK(step_keys()); /* warm OpenSSL's caches so they do not count as leaks */
  sweep("keys", step_keys, false);
}

static void
test_allocfail_reload(void)
{
  snprintf(conf_a, sizeof(conf_a), "/tmp/ntpg-allocfail-%d-a.conf", (int)getpid());
  snprintf(conf_b, sizeof(conf_b), "/tmp/ntpg-allocfail-%d-b.conf", (int)getpid());
  TEST_CHECK(write_file(conf_a, "server 127.127.1.0\nfudge 127.127.1.0 stratum 7\n"
                                "restrict default limited kod\nmru maxdepth 100\n"));
  TEST_CHECK(write_file(conf_b, "server 127.127.1.0\nfudge 127.127.1.0 stratum 9\n"
                                "restrict default noserve\nrestrict 10.0.0.0/8\n"
                                "mru maxdepth 200\ndiscard leak 2\n"));
  NTT_Now now = {.real = {1700000000, 0}, .mono_ns = 1000000000LL};
  RUN_Errors errs = {0};
  run = RUN_Create(conf_a, 0, -20, &now, &errs);
  RUN_FreeErrors(&errs);
  TEST_CHECK(run != NULL);
  if (run)
    sweep("runtime reload", step_reload, false);
  RUN_Destroy(run);
  unlink(conf_a);
  unlink(conf_b);
}

static void
test_allocfail_create(void)
{
  snprintf(conf_a, sizeof(conf_a), "/tmp/ntpg-allocfail-%d-c.conf", (int)getpid());
  TEST_CHECK(write_file(conf_a, "server 127.127.1.0\nfudge 127.127.1.0 stratum 7\n"
                                "restrict default limited kod\nrestrict 10.0.0.0/8 noserve\n"
                                "mru maxdepth 100\n"));
  TEST_CHECK(step_create()); /* warm the C library's first-use allocations */
  sweep("runtime create", step_create, true);
  unlink(conf_a);
}

/* Without random numbers RUN_Create refuses, says why, and frees what it made. */
static void
test_create_no_random(void)
{
  snprintf(conf_a, sizeof(conf_a), "/tmp/ntpg-allocfail-%d-r.conf", (int)getpid());
  TEST_CHECK(write_file(conf_a, "server 127.127.1.0\nfudge 127.127.1.0 stratum 7\n"));
  TEST_CHECK(step_create()); /* works with the RNG, and warms first-use allocations */
  NTT_Now now = {.real = {1700000000, 0}, .mono_ns = 1000000000LL};
  RUN_Errors errs = {0};
  long before = live;
  fail_random = 1;
  RUN_State *r = RUN_Create(conf_a, 0, -20, &now, &errs);
  fail_random = 0;
  TEST_CHECK(r == NULL);
  bool said = false;
  for (size_t i = 0; i < errs.count; i++)
    said = said || strstr(errs.items[i].msg.text, "random") != NULL;
  TEST_CHECK(said);
  RUN_FreeErrors(&errs);
  RUN_Destroy(r);
  TEST_EQ_INT(live - before, 0);
  unlink(conf_a);
}

TEST_MAIN(TEST_CASE(test_allocfail_config), TEST_CASE(test_allocfail_create),
          TEST_CASE(test_create_no_random), TEST_CASE(test_allocfail_restrict),
          TEST_CASE(test_allocfail_monitor), TEST_CASE(test_allocfail_keys),
          TEST_CASE(test_allocfail_reload))

#else

int
main(void)
{
  printf("allocation-failure injection needs the plain build's allocator: skipped here\n");
  return 0;
}

#endif
