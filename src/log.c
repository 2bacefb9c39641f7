#include "log.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <syslog.h>
#include <time.h>
#include <unistd.h>

/* The one piece of process-wide state outside main: where log lines go. It is set at start-up
 * and on reload by the main thread only. */
static struct {
  FILE *file; /* NULL = stderr */
  bool use_syslog;
  char path[4096];
  LOG_Level max;
} log_state = {NULL, false, "", LOG_LVL_INFO};

static const char *const level_names[] = {"error", "warning", "notice", "info", "debug"};

bool
LOG_SetTarget(const char *path)
{
  if (!path || !*path || strcmp(path, "stderr") == 0) {
    LOG_Close();
    return true;
  }
  if (strcmp(path, "syslog") == 0) {
    LOG_Close();
    openlog("ntpgated", LOG_PID | LOG_NDELAY, LOG_DAEMON);
    log_state.use_syslog = true;
    return true;
  }
  FILE *f = fopen(path, "a");
  if (!f)
    return false;
  setvbuf(f, NULL, _IOLBF, 0);
  LOG_Close();
  log_state.file = f;
  snprintf(log_state.path, sizeof(log_state.path), "%s", path);
  return true;
}

void
LOG_Reopen(void)
{
  if (!log_state.file)
    return;
  FILE *f = fopen(log_state.path, "a");
  if (!f)
    return; /* keep writing to the old (possibly unlinked) file rather than lose lines */
  setvbuf(f, NULL, _IOLBF, 0);
  fclose(log_state.file);
  log_state.file = f;
}

void
LOG_SetLevel(LOG_Level max)
{
  log_state.max = max;
}

LOG_Level
LOG_GetLevel(void)
{
  return log_state.max;
}

void
LOG_Close(void)
{
  if (log_state.file)
    fclose(log_state.file);
  if (log_state.use_syslog)
    closelog();
  log_state.file = NULL;
  log_state.use_syslog = false;
  log_state.path[0] = '\0';
}

LOG_PRINTF(2, 0) static void log_line(LOG_Level level, const char *fmt, va_list ap, int err)
{
  static const int syslog_prio[] = {3, 4, 5, 6, 7}; /* LOG_ERR..LOG_DEBUG of <syslog.h> */
  char msg[2048];
  if (level > log_state.max)
    return;
  int n = vsnprintf(msg, sizeof(msg), fmt, ap);
  if (err && n >= 0 && (size_t)n < sizeof(msg))
    snprintf(msg + n, sizeof(msg) - (size_t)n, ": %s", strerror(err));
  if (log_state.use_syslog) {
    syslog(syslog_prio[level], "%s", msg);
    return;
  }
  struct timespec ts;
  struct tm tm;
  char when[32];
  clock_gettime(CLOCK_REALTIME, &ts); /* reading, never setting */
  gmtime_r(&ts.tv_sec, &tm);
  strftime(when, sizeof(when), "%Y-%m-%dT%H:%M:%S", &tm);
  FILE *out = log_state.file ? log_state.file : stderr;
  fprintf(out, "%s.%03ldZ ntpgated[%d]: %s: %s\n", when, ts.tv_nsec / 1000000, (int)getpid(),
          level_names[level], msg);
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
