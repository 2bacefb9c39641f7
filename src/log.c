#include "log.h"

#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <syslog.h>
#include <time.h>
#include <unistd.h>

/* The one piece of process-wide state outside main: where log lines go. The main thread
 * changes the target (start-up, SIGHUP) while serving threads may be logging (KoDs, errors),
 * so the target is read and changed only under `lock`. A writer holds it for one formatted
 * line (log lines that packets can trigger are rate-limited, see LOG_Allow); a reopen holds
 * it only to swap the FILE pointer: the new file is opened before and the old one closed
 * after, when no writer can still be using it. */
static struct {
  pthread_mutex_t lock;
  FILE *file; /* NULL = stderr */
  bool use_syslog;
  char path[4096];
  atomic_int max; /* LOG_Level; read without the lock */
} log_state = {PTHREAD_MUTEX_INITIALIZER, NULL, false, "", LOG_LVL_INFO};

/* Under the lock: forget the current target; returns the file the caller must close. */
static FILE *
detach_target(void)
{
  FILE *old = log_state.file;
  if (log_state.use_syslog)
    closelog();
  log_state.file = NULL;
  log_state.use_syslog = false;
  log_state.path[0] = '\0';
  return old;
}

static void
close_file(FILE *f)
{
  if (f)
    fclose(f);
}

static const char *const level_names[] = {"error", "warning", "notice", "info", "debug"};

bool
LOG_SetTarget(const char *path)
{
  if (!path || !*path || strcmp(path, "stderr") == 0) {
    LOG_Close();
    return true;
  }
  FILE *f = NULL;
  bool syslog_target = strcmp(path, "syslog") == 0;
  if (!syslog_target) {
    f = fopen(path, "a");
    if (!f)
      return false;
    setvbuf(f, NULL, _IOLBF, 0);
  }
  pthread_mutex_lock(&log_state.lock);
  FILE *old = detach_target();
  if (syslog_target) {
    openlog("ntpgated", LOG_PID | LOG_NDELAY, LOG_DAEMON);
    log_state.use_syslog = true;
  } else {
    log_state.file = f;
    snprintf(log_state.path, sizeof(log_state.path), "%s", path);
  }
  pthread_mutex_unlock(&log_state.lock);
  close_file(old);
  return true;
}

void
LOG_Reopen(void)
{
  char path[sizeof(log_state.path)];
  pthread_mutex_lock(&log_state.lock);
  bool have_file = log_state.file != NULL;
  memcpy(path, log_state.path, sizeof(path));
  pthread_mutex_unlock(&log_state.lock);
  if (!have_file)
    return;
  FILE *f = fopen(path, "a");
  if (!f)
    return; /* keep writing to the old (possibly unlinked) file rather than lose lines */
  setvbuf(f, NULL, _IOLBF, 0);
  pthread_mutex_lock(&log_state.lock);
  FILE *old = f;
  if (log_state.file && strcmp(log_state.path, path) == 0) { /* the target did not change */
    old = log_state.file;
    log_state.file = f;
  }
  pthread_mutex_unlock(&log_state.lock);
  close_file(old); /* no writer holds it: they use the file only under the lock */
}

void
LOG_SetLevel(LOG_Level max)
{
  atomic_store_explicit(&log_state.max, (int)max, memory_order_relaxed);
}

LOG_Level
LOG_GetLevel(void)
{
  return (LOG_Level)atomic_load_explicit(&log_state.max, memory_order_relaxed);
}

void
LOG_Close(void)
{
  pthread_mutex_lock(&log_state.lock);
  FILE *old = detach_target();
  pthread_mutex_unlock(&log_state.lock);
  close_file(old);
}

LOG_PRINTF(2, 0) static void log_line(LOG_Level level, const char *fmt, va_list ap, int err)
{
  static const int syslog_prio[] = {3, 4, 5, 6, 7}; /* LOG_ERR..LOG_DEBUG of <syslog.h> */
  char msg[2048];
  if ((int)level > atomic_load_explicit(&log_state.max, memory_order_relaxed))
    return;
  int n = vsnprintf(msg, sizeof(msg), fmt, ap);
  if (err && n >= 0 && (size_t)n < sizeof(msg))
    snprintf(msg + n, sizeof(msg) - (size_t)n, ": %s", strerror(err));
  struct timespec ts;
  struct tm tm;
  char when[32];
  clock_gettime(CLOCK_REALTIME, &ts); /* reading, never setting */
  gmtime_r(&ts.tv_sec, &tm);
  strftime(when, sizeof(when), "%Y-%m-%dT%H:%M:%S", &tm);
  pthread_mutex_lock(&log_state.lock);
  if (log_state.use_syslog) {
    syslog(syslog_prio[level], "%s", msg);
  } else {
    FILE *out = log_state.file ? log_state.file : stderr;
    fprintf(out, "%s.%03ldZ ntpgated[%d]: %s: %s\n", when, ts.tv_nsec / 1000000, (int)getpid(),
            level_names[level], msg);
  }
  pthread_mutex_unlock(&log_state.lock);
}

void
LOG_Msg(LOG_Level level, const char *fmt, ...)
{
  va_list ap;
  va_start(ap, fmt);
  log_line(level, fmt, ap, 0);
  va_end(ap);
}

void
LOG_Warn(const char *fmt, ...)
{
  int err = errno;
  va_list ap;
  va_start(ap, fmt);
  log_line(LOG_LVL_WARNING, fmt, ap, err);
  va_end(ap);
}

void
LOG_Warnx(const char *fmt, ...)
{
  va_list ap;
  va_start(ap, fmt);
  log_line(LOG_LVL_WARNING, fmt, ap, 0);
  va_end(ap);
}

void
LOG_Info(const char *fmt, ...)
{
  va_list ap;
  va_start(ap, fmt);
  log_line(LOG_LVL_INFO, fmt, ap, 0);
  va_end(ap);
}

void
LOG_Debug(const char *fmt, ...)
{
  va_list ap;
  va_start(ap, fmt);
  log_line(LOG_LVL_DEBUG, fmt, ap, 0);
  va_end(ap);
}

void
LOG_Fatal(const char *fmt, ...)
{
  int err = errno;
  va_list ap;
  va_start(ap, fmt);
  log_line(LOG_LVL_ERR, fmt, ap, err);
  va_end(ap);
  exit(1);
}

void
LOG_Fatalx(const char *fmt, ...)
{
  va_list ap;
  va_start(ap, fmt);
  log_line(LOG_LVL_ERR, fmt, ap, 0);
  va_end(ap);
  exit(1);
}

bool
LOG_Allow(LOG_Limiter *l, int64_t mono_ns, uint32_t burst, uint32_t interval_s)
{
  if (l->burst_left == 0 && l->next_ns == 0)
    l->burst_left = burst; /* first use */
  if (l->burst_left > 0) {
    l->burst_left--;
    if (l->burst_left == 0)
      l->next_ns = mono_ns + (int64_t)interval_s * 1000000000;
    return true;
  }
  if (mono_ns >= l->next_ns) {
    l->next_ns = mono_ns + (int64_t)interval_s * 1000000000;
    return true;
  }
  l->suppressed++;
  return false;
}
