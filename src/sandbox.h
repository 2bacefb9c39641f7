/* sandbox: least privilege for the running daemon. After the sockets are bound and the pid
 * file written: an optional chroot, the switch from root to an unprivileged user (keeping
 * CAP_SYS_TIME only when the real clock driver will adjust the clock), and a seccomp
 * allow-list of the system calls the daemon makes (anything else kills the process).
 * Errors come back in the caller's buffer; main decides what is fatal. */
#ifndef NTPG_SANDBOX_H
#define NTPG_SANDBOX_H

#include <stdbool.h>
#include <stddef.h>

/* chroot(dir) and chdir("/"). */
bool SBX_Chroot(const char *dir, char *err, size_t errlen);
/* Switch to user (name), its primary group and no supplementary groups. With
 * keep_sys_time the permitted and effective sets keep CAP_SYS_TIME (and nothing else);
 * otherwise no capability survives. */
bool SBX_DropPrivileges(const char *user, bool keep_sys_time, char *err, size_t errlen);
/* Whether this build supports the seccomp filter (off in sanitizer builds, whose runtime
 * needs ptrace and more at exit). */
bool SBX_SeccompAvailable(void);
/* Install the allow-list for this process and every thread it starts later. allow_adjust:
 * also allow clock_adjtime/adjtimex/clock_settime (real clock driver). */
bool SBX_ApplySeccomp(bool allow_adjust, char *err, size_t errlen);

#endif
