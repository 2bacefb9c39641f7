/* statslog: the writer thread against a temporary directory, with records stamped across a
 * day boundary (STL_Destroy writes everything queued, so no test waits or sleeps). */
#include "statslog.h"

#include <fcntl.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include "harness.h"
#include "log.h"

#define T_20261205 INT64_C(1796428800) /* 2026-12-05 00:00:00 UTC */

static char dir[64];

static void
make_dir(void)
{
  snprintf(dir, sizeof(dir), "/tmp/test_statslog.XXXXXX");
  if (!mkdtemp(dir))
    abort();
}

static void
remove_dir(void)
{
  char cmd[128];
  snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
  if (system(cmd) != 0)
    fprintf(stderr, "could not remove %s\n", dir);
}

static CNF_Config *
config(const char *statsdir)
{
  CNF_Config *c = CNF_Create();
  c->statsdir = strdup(statsdir);
  return c;
}

static size_t
read_file(const char *name, char *buf, size_t size)
{
  char path[256];
  snprintf(path, sizeof(path), "%s/%s", dir, name);
  FILE *f = fopen(path, "r");
  if (!f) {
    buf[0] = '\0';
    return 0;
  }
  size_t n = fread(buf, 1, size - 1, f);
  buf[n] = '\0';
  fclose(f);
  return n;
}

static bool
same_file(const char *a, const char *b)
{
  char pa[256], pb[256];
  struct stat sa, sb;
  snprintf(pa, sizeof(pa), "%s/%s", dir, a);
  snprintf(pb, sizeof(pb), "%s/%s", dir, b);
  return stat(pa, &sa) == 0 && stat(pb, &sb) == 0 && sa.st_ino == sb.st_ino;
}

static bool
exists(const char *name)
{
  char p[256];
  struct stat st;
  snprintf(p, sizeof(p), "%s/%s", dir, name);
  return lstat(p, &st) == 0;
}

static void
put_loop(STL_Writer *w, int64_t t, double offset)
{
  struct timespec ts = {(time_t)t, 0};
  STF_Loop r = {offset, 1.5, 0.000001, 0.01, 6};
  STL_PutLoop(w, &ts, &r);
}

static void
test_stl_day_rotation_and_link(void)
{
  make_dir();
  CNF_Config *c = config(dir);
  c->filegen[STF_LOOPSTATS].enabled = true;
  STL_Writer *w = STL_Create();
  TEST_CHECK(w && STL_Configure(w, c));
  TEST_CHECK(STL_Wants(w, STF_LOOPSTATS) && !STL_Wants(w, STF_PEERSTATS));
  put_loop(w, T_20261205 - 1, 0.001);
  put_loop(w, T_20261205, 0.002);
  put_loop(w, T_20261205 + 5, 0.003);
  put_loop(w, T_20261205 - 2, 0.004); /* stepped back: the earlier day's file again */
  STL_Drain(w);
  STL_Counters n;
  STL_GetCounters(w, &n);
  TEST_EQ_INT(n.queued, 4);
  TEST_EQ_INT(n.written, 4);
  TEST_EQ_INT(n.errors + n.dropped, 0);
  STL_Destroy(w);
  char b[512];
  read_file("loopstats.20261204", b, sizeof(b));
  TEST_EQ_STR(b, "61378 86399.000 0.001000000 1.500 0.000001000 0.010000 6\n"
                 "61378 86398.000 0.004000000 1.500 0.000001000 0.010000 6\n");
  read_file("loopstats.20261205", b, sizeof(b));
  TEST_EQ_STR(b, "61379 0.000 0.002000000 1.500 0.000001000 0.010000 6\n"
                 "61379 5.000 0.003000000 1.500 0.000001000 0.010000 6\n");
  /* the link follows the file last opened (ntpd relinks on every open, too) */
  TEST_CHECK(same_file("loopstats", "loopstats.20261204"));
  TEST_CHECK(!exists("peerstats"));
  CNF_Destroy(c);
  remove_dir();
}

static void
test_stl_appends_and_nolink(void)
{
  make_dir();
  CNF_Config *c = config(dir);
  c->filegen[STF_PEERSTATS] = (CNF_FileGen){true, strdup("peers"), STF_TYPE_MONTH, false};
  for (int round = 0; round < 2; round++) { /* a restart appends */
    STL_Writer *w = STL_Create();
    TEST_CHECK(STL_Configure(w, c));
    struct timespec ts = {(time_t)(T_20261205 + round), 0};
    STF_Peer r = {"192.0.2.1", 0x9614, 0.001, 0.002, 0.003, 0.004};
    STL_PutPeer(w, &ts, &r);
    STL_Destroy(w);
  }
  char b[512];
  read_file("peers.202612", b, sizeof(b));
  TEST_EQ_STR(b, "61379 0.000 192.0.2.1 9614 0.001000000 0.002000000 0.003000000 "
                 "0.004000000\n"
                 "61379 1.000 192.0.2.1 9614 0.001000000 0.002000000 0.003000000 "
                 "0.004000000\n");
  TEST_CHECK(!exists("peers"));
  CNF_Destroy(c);
  remove_dir();
}

static void
test_stl_unwritable_dir_counts_errors(void)
{
  make_dir();
  char missing[128];
  snprintf(missing, sizeof(missing), "%s/missing", dir);
  CNF_Config *c = config(missing);
  c->filegen[STF_SYSSTATS].enabled = true;
  STL_Writer *w = STL_Create();
  TEST_CHECK(STL_Configure(w, c));
  struct timespec ts = {(time_t)T_20261205, 0};
  STF_Sys r = {3600, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0};
  for (int i = 0; i < 20; i++)
    STL_PutSys(w, &ts, &r);
  STL_Drain(w);
  STL_Counters n;
  STL_GetCounters(w, &n);
  TEST_EQ_INT(n.errors, 20);
  TEST_EQ_INT(n.written, 0);
  STL_Destroy(w);
  TEST_CHECK(!exists("missing"));
  CNF_Destroy(c);
  remove_dir();
}

static void
test_stl_counts_and_reconfigure(void)
{
  make_dir();
  CNF_Config *c = config(dir);
  STL_Writer *w = STL_Create();
  TEST_CHECK(STL_Configure(w, c));
  put_loop(w, T_20261205, 0.1); /* not enabled: not even queued */
  c->filegen[STF_LOOPSTATS].enabled = true;
  c->filegen[STF_LOOPSTATS].type = STF_TYPE_NONE;
  TEST_CHECK(STL_Configure(w, c));
  put_loop(w, T_20261205, 0.2);
  c->filegen[STF_LOOPSTATS].file = strdup("renamed");
  TEST_CHECK(STL_Configure(w, c));
  put_loop(w, T_20261205 + 1, 0.3);
  c->sw.stats = false; /* disable stats: nothing, whatever filegen says */
  TEST_CHECK(STL_Configure(w, c));
  TEST_CHECK(!STL_Wants(w, STF_LOOPSTATS));
  put_loop(w, T_20261205 + 2, 0.4);
  c->sw.stats = true;
  c->filegen[STF_LOOPSTATS].enabled = false;
  TEST_CHECK(STL_Configure(w, c));
  put_loop(w, T_20261205 + 3, 0.5);
  STL_Destroy(w);
  char b[256];
  read_file("loopstats", b, sizeof(b));
  TEST_EQ_STR(b, "61379 0.000 0.200000000 1.500 0.000001000 0.010000 6\n");
  read_file("renamed", b, sizeof(b));
  TEST_EQ_STR(b, "61379 1.000 0.300000000 1.500 0.000001000 0.010000 6\n");
  CNF_Destroy(c);
  remove_dir();
}

static void
test_stl_too_long_statsdir_keeps_settings(void)
{
  char longdir[5000];
  memset(longdir, 'a', sizeof(longdir) - 1);
  longdir[0] = '/';
  longdir[sizeof(longdir) - 1] = '\0';
  CNF_Config *c = config(longdir);
  c->filegen[STF_LOOPSTATS].enabled = true;
  STL_Writer *w = STL_Create();
  TEST_CHECK(!STL_Configure(w, c));
  TEST_CHECK(!STL_Wants(w, STF_LOOPSTATS));
  STL_Destroy(w);
  CNF_Destroy(c);
}

static void
test_stl_directory_in_the_way_counts_errors(void)
{
  make_dir();
  char sub[128];
  snprintf(sub, sizeof(sub), "%s/isdir", dir);
  TEST_CHECK(mkdir(sub, 0755) == 0);
  CNF_Config *c = config(dir);
  c->filegen[STF_PROTOSTATS] = (CNF_FileGen){true, strdup("isdir"), STF_TYPE_NONE, true};
  STL_Writer *w = STL_Create();
  TEST_CHECK(STL_Configure(w, c));
  struct timespec ts = {(time_t)T_20261205, 0};
  STF_Proto r = {"0.0.0.0", 0x0615, 5, "clock_sync"};
  for (int i = 0; i < 5; i++)
    STL_PutProto(w, &ts, &r);
  STL_Drain(w);
  STL_Counters n;
  STL_GetCounters(w, &n);
  TEST_EQ_INT(n.queued, 5);
  TEST_EQ_INT(n.errors, 5);
  TEST_EQ_INT(n.written, 0);
  STL_Destroy(w);
  CNF_Destroy(c);
  remove_dir();
}

/* A writer stuck on its disk (here: opening a FIFO nobody reads) never holds up the
 * caller: what does not fit in the queue is dropped and counted, the rest is written once
 * the disk is back. */
static void
test_stl_stuck_writer_drops_and_counts(void)
{
  make_dir();
  char fifo[128];
  snprintf(fifo, sizeof(fifo), "%s/fifo", dir);
  TEST_CHECK(mkfifo(fifo, 0644) == 0);
  CNF_Config *c = config(dir);
  c->filegen[STF_LOOPSTATS] = (CNF_FileGen){true, strdup("fifo"), STF_TYPE_NONE, false};
  STL_Writer *w = STL_Create();
  TEST_CHECK(STL_Configure(w, c));
  enum { EXTRA = 40, TOTAL = STL_QUEUE + EXTRA };
  for (int i = 0; i < TOTAL; i++)
    put_loop(w, T_20261205 + i, 0.001); /* returns at once, whatever the writer does */
  STL_Counters n;
  STL_GetCounters(w, &n);
  TEST_EQ_INT(n.queued + n.dropped, TOTAL);
  /* the writer took at most the first record before it blocked; the settings entry may
   * still have taken a place in the queue */
  TEST_CHECK(n.dropped >= EXTRA - 1 && n.dropped <= EXTRA + 1);
  if (n.dropped < EXTRA - 1 || n.dropped > EXTRA + 1)
    fprintf(stderr, "dropped %llu\n", (unsigned long long)n.dropped);
  int rd = open(fifo, O_RDONLY | O_NONBLOCK); /* the disk comes back */
  TEST_CHECK(rd >= 0);
  STL_Drain(w); /* every line fits in the pipe's buffer (64 KiB) */
  STL_GetCounters(w, &n);
  TEST_EQ_INT(n.written, n.queued);
  static char buf[1 << 16];
  size_t got = 0, lines = 0;
  for (ssize_t r; (r = read(rd, buf + got, sizeof(buf) - got)) > 0;)
    got += (size_t)r;
  for (size_t i = 0; i < got; i++)
    lines += buf[i] == '\n';
  TEST_EQ_INT(lines, n.written);
  close(rd);
  STL_Destroy(w);
  CNF_Destroy(c);
  remove_dir();
}

static void
setup_log(void)
{
  LOG_SetTarget("/dev/null");
}

TEST_MAIN(TEST_CASE(setup_log), TEST_CASE(test_stl_day_rotation_and_link),
          TEST_CASE(test_stl_appends_and_nolink),
          TEST_CASE(test_stl_unwritable_dir_counts_errors),
          TEST_CASE(test_stl_counts_and_reconfigure),
          TEST_CASE(test_stl_too_long_statsdir_keeps_settings),
          TEST_CASE(test_stl_directory_in_the_way_counts_errors),
          TEST_CASE(test_stl_stuck_writer_drops_and_counts))
