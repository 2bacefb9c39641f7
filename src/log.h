/* log: the daemon's only way to speak. Targets: stderr (default), syslog, or a file; levels
 * error/warning/notice/info/debug. OpenBSD vocabulary: *Warn appends strerror(errno), *Warnx
 * does not; LOG_Fatal/LOG_Fatalx never return and are for start-up only. Pure cores never log:
 * they return reasons, and the edge logs them. */
#ifndef NTPG_LOG_H
#define NTPG_LOG_H

#include <stdbool.h>
#include <stdint.h>

typedef enum {
  LOG_LVL_ERR = 0,
  LOG_LVL_WARNING,
  LOG_LVL_NOTICE,
  LOG_LVL_INFO,
  LOG_LVL_DEBUG
} LOG_Level;

/* Send log lines to `path` (NULL or "" = stderr, "syslog" = syslog). False (and errno set)
 * if the file cannot be opened; the previous target stays. */
bool LOG_SetTarget(const char *path);
/* Re-open the current file target (after SIGHUP, or when it was removed, e.g. by logrotate).
 * Safe while other threads log: every log call and every change of target (LOG_SetTarget,
 * LOG_Reopen, LOG_Close) takes one mutex, so a line goes whole to the old or the new file. */
void LOG_Reopen(void);
void LOG_SetLevel(LOG_Level max);
LOG_Level LOG_GetLevel(void);
void LOG_Close(void);

#define LOG_PRINTF(a, b) __attribute__((format(printf, a, b)))
void LOG_Msg(LOG_Level level, const char *fmt, ...) LOG_PRINTF(2, 3);
void LOG_Warn(const char *fmt, ...) LOG_PRINTF(1, 2);
void LOG_Warnx(const char *fmt, ...) LOG_PRINTF(1, 2);
void LOG_Info(const char *fmt, ...) LOG_PRINTF(1, 2);
void LOG_Debug(const char *fmt, ...) LOG_PRINTF(1, 2);
_Noreturn void LOG_Fatal(const char *fmt, ...) LOG_PRINTF(1, 2);
_Noreturn void LOG_Fatalx(const char *fmt, ...) LOG_PRINTF(1, 2);

/* A per-kind limiter for log lines that packets can trigger: at most `burst` lines, then one
 * per `interval_s`, counting what was suppressed. Returns true if this line may be logged. */
typedef struct {
  int64_t next_ns;
  uint32_t burst_left;
  uint32_t suppressed;
} LOG_Limiter;
bool LOG_Allow(LOG_Limiter *l, int64_t mono_ns, uint32_t burst, uint32_t interval_s);

#endif
