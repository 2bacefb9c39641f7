#include "sandbox.h"

#include <errno.h>
#include <grp.h>
#include <pwd.h>
#include <stdio.h>
#include <string.h>
#include <sys/capability.h>
#include <sys/prctl.h>
#include <unistd.h>

#ifndef NTPG_SANITIZE_BUILD
#include <seccomp.h>
#endif

bool
SBX_Chroot(const char *dir, char *err, size_t errlen)
{
  if (chroot(dir) < 0 || chdir("/") < 0) {
    snprintf(err, errlen, "chroot %s: %s", dir, strerror(errno));
    return false;
  }
  return true;
}

static bool
set_caps(bool keep_sys_time, char *err, size_t errlen)
{
  cap_t caps = cap_init(); /* all clear */
  if (!caps) {
    snprintf(err, errlen, "cap_init: %s", strerror(errno));
    return false;
  }
  cap_value_t v = CAP_SYS_TIME;
  bool ok = (!keep_sys_time || (cap_set_flag(caps, CAP_PERMITTED, 1, &v, CAP_SET) == 0 &&
                                cap_set_flag(caps, CAP_EFFECTIVE, 1, &v, CAP_SET) == 0)) &&
            cap_set_proc(caps) == 0;
  if (!ok)
    snprintf(err, errlen, "setting capabilities: %s", strerror(errno));
  cap_free(caps);
  return ok;
}

bool
SBX_DropPrivileges(const char *user, bool keep_sys_time, char *err, size_t errlen)
{
  struct passwd *pw = getpwnam(user);
  if (!pw) {
    snprintf(err, errlen, "unknown user %s", user);
    return false;
  }
  if (keep_sys_time && prctl(PR_SET_KEEPCAPS, 1, 0, 0, 0) < 0) {
    snprintf(err, errlen, "PR_SET_KEEPCAPS: %s", strerror(errno));
    return false;
  }
  if (setgroups(0, NULL) < 0 || setresgid(pw->pw_gid, pw->pw_gid, pw->pw_gid) < 0 ||
      setresuid(pw->pw_uid, pw->pw_uid, pw->pw_uid) < 0) {
    snprintf(err, errlen, "switching to %s: %s", user, strerror(errno));
    return false;
  }
  if (pw->pw_uid != 0 && setuid(0) == 0) { /* must be impossible now */
    snprintf(err, errlen, "could regain root after dropping to %s", user);
    return false;
  }
  return set_caps(keep_sys_time, err, errlen);
}

#ifdef NTPG_SANITIZE_BUILD

bool
SBX_SeccompAvailable(void)
{
  return false;
}

bool
SBX_ApplySeccomp(bool allow_adjust, char *err, size_t errlen)
{
  (void)allow_adjust;
  snprintf(err, errlen, "seccomp is not available in sanitizer builds");
  return false;
}

#else

/* What the daemon does after start-up: serve (recvmmsg/sendmmsg, epoll, timers, signals),
 * reload (open/read/stat files, resolve names: sockets to the resolver, /etc files), log
 * (files, syslog over a Unix socket), run threads, and exit. */
static const char *const allowed[] = {
    "read",
    "write",
    "readv",
    "writev",
    "pread64",
    "pwrite64",
    "open",
    "openat",
    "close",
    "fstat",
    "newfstatat",
    "stat",
    "lstat",
    "statx",
    "lseek",
    "fcntl",
    "ioctl",
    "access",
    "faccessat",
    "faccessat2",
    "readlink",
    "readlinkat",
    "getdents64",
    "unlink",
    "unlinkat",
    "rename",
    "renameat",
    "renameat2",
    "fsync",
    "fdatasync",
    "ftruncate",
    "umask",
    "getcwd",
    "dup",
    "dup2",
    "dup3",
    "pipe2",
    "mmap",
    "munmap",
    "mprotect",
    "mremap",
    "brk",
    "madvise",
    "rt_sigaction",
    "rt_sigprocmask",
    "rt_sigreturn",
    "sigaltstack",
    "getpid",
    "gettid",
    "getppid",
    "tgkill",
    "exit",
    "exit_group",
    "restart_syscall",
    "epoll_create1",
    "epoll_ctl",
    "epoll_wait",
    "epoll_pwait",
    "poll",
    "ppoll",
    "select",
    "pselect6",
    "recvmmsg",
    "sendmmsg",
    "recvmsg",
    "sendmsg",
    "recvfrom",
    "sendto",
    "socket",
    "bind",
    "connect",
    "getsockname",
    "getpeername",
    "setsockopt",
    "getsockopt",
    "shutdown",
    "clock_gettime",
    "clock_getres",
    "gettimeofday",
    "time",
    "nanosleep",
    "clock_nanosleep",
    "timerfd_create",
    "timerfd_settime",
    "timerfd_gettime",
    "signalfd4",
    "eventfd2",
    "futex",
    "set_robust_list",
    "get_robust_list",
    "rseq",
    "clone",
    "clone3",
    "sched_getaffinity",
    "sched_setaffinity",
    "sched_yield",
    "getrandom",
    "uname",
    "getuid",
    "geteuid",
    "getgid",
    "getegid",
    "getresuid",
    "getresgid",
    "prlimit64",
    "sysinfo",
    "membarrier",
    "prctl",
    "capget",
};
static const char *const adjust[] = {"clock_adjtime", "adjtimex", "clock_settime"};

bool
SBX_SeccompAvailable(void)
{
  return true;
}

static bool
allow(scmp_filter_ctx ctx, const char *name, char *err, size_t errlen)
{
  int nr = seccomp_syscall_resolve_name(name);
  if (nr == __NR_SCMP_ERROR)
    return true; /* not a system call on this architecture */
  int rc = seccomp_rule_add(ctx, SCMP_ACT_ALLOW, nr, 0);
  if (rc < 0) {
    snprintf(err, errlen, "seccomp rule for %s: %s", name, strerror(-rc));
    return false;
  }
  return true;
}

bool
SBX_ApplySeccomp(bool allow_adjust, char *err, size_t errlen)
{
  scmp_filter_ctx ctx = seccomp_init(SCMP_ACT_KILL_PROCESS);
  if (!ctx) {
    snprintf(err, errlen, "seccomp_init failed");
    return false;
  }
  bool ok = true;
  for (size_t i = 0; ok && i < sizeof(allowed) / sizeof(allowed[0]); i++)
    ok = allow(ctx, allowed[i], err, errlen);
  for (size_t i = 0; ok && allow_adjust && i < sizeof(adjust) / sizeof(adjust[0]); i++)
    ok = allow(ctx, adjust[i], err, errlen);
  if (ok) {
    int rc = seccomp_load(ctx);
    if (rc < 0) {
      snprintf(err, errlen, "seccomp_load: %s", strerror(-rc));
      ok = false;
    }
  }
  seccomp_release(ctx);
  return ok;
}

#endif
