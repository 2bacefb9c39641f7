/* log: levels, targets, and LOG_Reopen while other threads log (a logrotate under a KoD
 * flood). Run under ThreadSanitizer by `make test-tsan`: an unsynchronized change of the log
 * target is reported there even when the plain build happens not to crash. */
#include "log.h"

#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "harness.h"

#define WRITERS 4
#define LINES 3000
#define MAX_ROTATIONS 400

static char dir[] = "/tmp/ntpg-test-log-XXXXXX";
static char path[256], rotated[256];
static unsigned char seen[WRITERS][LINES];
static unsigned bad_lines;

/* Tally the lines "w T I" of one file; other lines (none are expected) count as bad. */
static void
tally(const char *file)
{
  FILE *f = fopen(file, "r");
  if (!f)
    return;
  char line[512];
  while (fgets(line, sizeof(line), f)) {
    const char *m = strstr(line, ": info: w ");
    unsigned t, i;
    if (!m || strchr(line, '\n') == NULL || sscanf(m, ": info: w %u %u", &t, &i) != 2 ||
        t >= WRITERS || i >= LINES) {
      bad_lines++;
      continue;
    }
    seen[t][i]++;
  }
  fclose(f);
}

static void
make_paths(void)
{
  static bool made; /* (not "the template still ends in X": a made name may, 1 in 62) */
  if (!made && !mkdtemp(dir)) {
    perror("mkdtemp");
    exit(2);
  }
  made = true;
  snprintf(path, sizeof(path), "%s/ntpgated.log", dir);
  snprintf(rotated, sizeof(rotated), "%s/ntpgated.log.1", dir);
}

static void
test_log_level_and_target(void)
{
  make_paths();
  unlink(path);
  TEST_CHECK(LOG_SetTarget(path));
  LOG_SetLevel(LOG_LVL_WARNING);
  TEST_EQ_INT(LOG_GetLevel(), LOG_LVL_WARNING);
  LOG_Info("w 0 0");  /* below the level: not written */
  LOG_Warnx("w 0 1"); /* a warning: written (tally ignores the level word) */
  LOG_SetLevel(LOG_LVL_INFO);
  LOG_Info("w 0 2");
  /* a target that cannot be opened leaves the current one in place */
  TEST_CHECK(!LOG_SetTarget("/nonexistent-dir/x.log"));
  LOG_Info("w 0 3");
  LOG_Close();
  FILE *f = fopen(path, "r");
  TEST_CHECK(f != NULL);
  char buf[4096] = "";
  size_t n = f ? fread(buf, 1, sizeof(buf) - 1, f) : 0;
  buf[n] = '\0';
  if (f)
    fclose(f);
  TEST_CHECK(strstr(buf, "w 0 0") == NULL);
  TEST_CHECK(strstr(buf, "warning: w 0 1") != NULL);
  TEST_CHECK(strstr(buf, "info: w 0 2") != NULL);
  TEST_CHECK(strstr(buf, "info: w 0 3") != NULL);
  unlink(path);
}

static void
test_log_reopen_after_removal(void)
{
  make_paths();
  TEST_CHECK(LOG_SetTarget(path));
  LOG_Info("w 1 0");
  TEST_EQ_INT(rename(path, rotated), 0);
  LOG_Info("w 1 1"); /* still the old (renamed) file */
  LOG_Reopen();
  LOG_Info("w 1 2"); /* a new file at the configured path */
  LOG_Close();
  memset(seen, 0, sizeof(seen));
  bad_lines = 0;
  tally(rotated);
  TEST_EQ_INT(seen[1][0] + seen[1][1], 2);
  TEST_EQ_INT(seen[1][2], 0);
  tally(path);
  TEST_EQ_INT(seen[1][2], 1);
  TEST_EQ_INT(bad_lines, 0);
  unlink(path);
  unlink(rotated);
}

static atomic_int writers_ready, writers_done;

static void *
writer(void *arg)
{
  unsigned t = (unsigned)(uintptr_t)arg;
  atomic_fetch_add(&writers_ready, 1);
  for (unsigned i = 0; i < LINES; i++)
    LOG_Info("w %u %u", t, i);
  atomic_fetch_add(&writers_done, 1);
  return NULL;
}

/* logrotate's create method, as fast as it goes: rename, reopen (SIGHUP), collect. */
static void
test_log_reopen_while_threads_log(void)
{
  make_paths();
  unlink(path);
  memset(seen, 0, sizeof(seen));
  bad_lines = 0;
  LOG_SetLevel(LOG_LVL_INFO);
  TEST_CHECK(LOG_SetTarget(path));
  pthread_t th[WRITERS];
  for (unsigned t = 0; t < WRITERS; t++)
    TEST_EQ_INT(pthread_create(&th[t], NULL, writer, (void *)(uintptr_t)t), 0);
  while (atomic_load(&writers_ready) < WRITERS)
    sched_yield();
  int rotations = 0;
  do { /* at least once: on a loaded machine the writers may be done before we run */
    if (rename(path, rotated) != 0)
      break;
    LOG_Reopen();
    /* after LOG_Reopen returns no thread writes to the renamed file any more */
    tally(rotated);
    unlink(rotated);
    rotations++;
  } while (atomic_load(&writers_done) < WRITERS && rotations < MAX_ROTATIONS);
  for (unsigned t = 0; t < WRITERS; t++)
    pthread_join(th[t], NULL);
  LOG_Close();
  tally(path);
  unlink(path);
  rmdir(dir);
  fprintf(stderr, "%d rotations while %d threads logged %d lines each\n", rotations, WRITERS,
          LINES);
  TEST_CHECK(rotations > 0);
  unsigned missing = 0, doubled = 0;
  for (unsigned t = 0; t < WRITERS; t++)
    for (unsigned i = 0; i < LINES; i++) {
      missing += seen[t][i] == 0;
      doubled += seen[t][i] > 1;
    }
  TEST_EQ_INT(missing, 0);
  TEST_EQ_INT(doubled, 0);
  TEST_EQ_INT(bad_lines, 0);
}

TEST_MAIN(TEST_CASE(test_log_level_and_target), TEST_CASE(test_log_reopen_after_removal),
          TEST_CASE(test_log_reopen_while_threads_log))
