/* sandbox: least privilege for the running daemon. The user is looked up first (while the
 * password and group files are still reachable); after the sockets are bound and the pid
 * file written come an optional chroot, the switch from root to that user (keeping
 * CAP_SYS_TIME only when the real clock driver will adjust the clock), and a seccomp
 * allow-list of the system calls the daemon makes (anything else kills the process).
 * Errors come back in the caller's buffer; main decides what is fatal. */
#ifndef NTPG_SANDBOX_H
#define NTPG_SANDBOX_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

/* What the switch to an unprivileged user needs, found before any chroot. */
typedef struct {
  uid_t uid;
  gid_t gid; /* the user's primary group; supplementary groups are all dropped */
  char name[64];
} SBX_User;

/* Look name up in the password database (getpwnam). False if there is no such user. */
bool SBX_LookupUser(const char *name, SBX_User *u, char *err, size_t errlen);
/* chroot(dir) and chdir("/"). */
bool SBX_Chroot(const char *dir, char *err, size_t errlen);
/* Switch to u: its uid and primary gid (real, effective, saved) and no supplementary
 * groups. With keep_sys_time the permitted and effective sets keep CAP_SYS_TIME (and nothing
 * else); otherwise no capability survives. Needs no file (works inside a chroot). */
bool SBX_DropPrivileges(const SBX_User *u, bool keep_sys_time, char *err, size_t errlen);
/* Whether this build supports the seccomp filter (off in sanitizer builds, whose runtime
 * needs ptrace and more at exit). */
bool SBX_SeccompAvailable(void);
/* Install the allow-list for this process and every thread it starts later. allow_adjust:
 * also allow clock_adjtime/adjtimex/clock_settime (real clock driver). socket() is allowed
 * for AF_UNIX, AF_INET, AF_INET6 and AF_NETLINK/NETLINK_ROUTE only, ioctl() for TCGETS
 * (isatty) and FIONREAD only. */
bool SBX_ApplySeccomp(bool allow_adjust, char *err, size_t errlen);
/* Confine the privileged pid-file cleaner (daemon.h): only CAP_DAC_OVERRIDE and CAP_FOWNER
 * stay (to remove files in directories root does not own), and, when available and
 * with_seccomp, a filter allowing read, unlink and exit only. */
bool SBX_ConfineCleaner(bool with_seccomp, char *err, size_t errlen);

#endif
