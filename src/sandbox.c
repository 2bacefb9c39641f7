#include "sandbox.h"

#include <errno.h>
#include <grp.h>
#include <pwd.h>
#include <stdio.h>
#include <string.h>
#include <sys/capability.h>
#include <sys/ioctl.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <linux/netlink.h>
#include <unistd.h>

#ifndef NTPG_SANITIZE_BUILD
#include <seccomp.h>
#endif

bool
SBX_LookupUser(const char *name, SBX_User *u, char *err, size_t errlen)
{
  errno = 0;
  struct passwd *pw = getpwnam(name);
  if (!pw) {
    snprintf(err, errlen, "unknown user %s%s%s", name, errno ? ": " : "",
             errno ? strerror(errno) : "");
    return false;
  }
  if (strlen(name) >= sizeof(u->name)) {
    snprintf(err, errlen, "user name too long: %s", name);
    return false;
  }
  u->uid = pw->pw_uid;
  u->gid = pw->pw_gid;
  snprintf(u->name, sizeof(u->name), "%s", name);
  return true;
}

bool
SBX_Chroot(const char *dir, char *err, size_t errlen)
{
  if (chroot(dir) < 0 || chdir("/") < 0) {
    snprintf(err, errlen, "chroot %s: %s", dir, strerror(errno));
    return false;
  }
  return true;
}

/* Exactly the capabilities in keep[] in the permitted and effective sets, nothing else. */
static bool
set_caps(const cap_value_t *keep, int n, char *err, size_t errlen)
{
  cap_t caps = cap_init(); /* all clear */
  if (!caps) {
    snprintf(err, errlen, "cap_init: %s", strerror(errno));
    return false;
  }
  bool ok = n == 0 || (cap_set_flag(caps, CAP_PERMITTED, n, keep, CAP_SET) == 0 &&
                       cap_set_flag(caps, CAP_EFFECTIVE, n, keep, CAP_SET) == 0);
  ok = ok && cap_set_proc(caps) == 0;
  if (!ok)
    snprintf(err, errlen, "setting capabilities: %s", strerror(errno));
  cap_free(caps);
  return ok;
}

bool
SBX_DropPrivileges(const SBX_User *u, bool keep_sys_time, char *err, size_t errlen)
{
  if (keep_sys_time && prctl(PR_SET_KEEPCAPS, 1, 0, 0, 0) < 0) {
    snprintf(err, errlen, "PR_SET_KEEPCAPS: %s", strerror(errno));
    return false;
  }
  if (setgroups(0, NULL) < 0 || setresgid(u->gid, u->gid, u->gid) < 0 ||
      setresuid(u->uid, u->uid, u->uid) < 0) {
    snprintf(err, errlen, "switching to %s: %s", u->name, strerror(errno));
    return false;
  }
  if (u->uid != 0 && setuid(0) == 0) { /* must be impossible now */
    snprintf(err, errlen, "could regain root after dropping to %s", u->name);
    return false;
  }
  const cap_value_t sys_time = CAP_SYS_TIME;
  return set_caps(&sys_time, keep_sys_time ? 1 : 0, err, errlen);
}

static bool cleaner_filter(char *err, size_t errlen);

bool
SBX_ConfineCleaner(bool with_seccomp, char *err, size_t errlen)
{
  const cap_value_t keep[] = {CAP_DAC_OVERRIDE, CAP_FOWNER};
  if (!set_caps(keep, 2, err, errlen))
    return false;
  return !with_seccomp || !SBX_SeccompAvailable() || cleaner_filter(err, errlen);
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

static bool
cleaner_filter(char *err, size_t errlen)
{
  (void)err, (void)errlen;
  return true;
}

#else

/* What the daemon does after start-up: serve (recvmmsg/sendmmsg, epoll, timers, signals),
 * reload (open/read/stat files, resolve names: sockets to the resolver, /etc files, the
 * interface list over netlink), log (files, syslog over a Unix socket), answer the local
 * control socket (accept), run threads, wait for the pid-file cleaner, and exit. socket and
 * ioctl are not here: they are allowed only with the arguments below. */
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
    "access",
    "faccessat",
    "faccessat2",
    "readlink",
    "readlinkat",
    "getdents64",
    "unlink",
    "unlinkat",
    "link", /* statistics files: PREFIX/FILE links to the current generation */
    "linkat",
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
    "wait4",
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
    "bind",
    "connect",
    "accept4",
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

/* The socket families used: serving and client sockets (AF_INET, AF_INET6), the resolver
 * (the same, and AF_NETLINK for getaddrinfo's AI_ADDRCONFIG), the local control socket and
 * syslog (AF_UNIX), the interface list (getifaddrs: AF_NETLINK, NETLINK_ROUTE). */
static const int families[] = {AF_UNIX, AF_INET, AF_INET6};
/* The ioctl requests made: isatty() from stdio on a character device (TCGETS), and FIONREAD
 * (the resolver). */
static const unsigned long ioctls[] = {TCGETS, FIONREAD};

bool
SBX_SeccompAvailable(void)
{
  return true;
}

static bool
rule(const char *name, int rc, char *err, size_t errlen)
{
  if (rc < 0)
    snprintf(err, errlen, "seccomp rule for %s: %s", name, strerror(-rc));
  return rc >= 0;
}

static bool
allow(scmp_filter_ctx ctx, const char *name, char *err, size_t errlen)
{
  int nr = seccomp_syscall_resolve_name(name);
  if (nr == __NR_SCMP_ERROR)
    return true; /* not a system call on this architecture */
  return rule(name, seccomp_rule_add(ctx, SCMP_ACT_ALLOW, nr, 0), err, errlen);
}

/* socket(family, ...) for the families above, socket(AF_NETLINK, ..., NETLINK_ROUTE), and
 * ioctl(fd, request, ...) for the requests above. The int arguments are compared in their
 * low 32 bits (the upper half of the register is not defined for an int). */
static bool
allow_with_arguments(scmp_filter_ctx ctx, char *err, size_t errlen)
{
  bool ok = true;
  for (size_t i = 0; ok && i < sizeof(families) / sizeof(families[0]); i++)
    ok = rule("socket",
              seccomp_rule_add(ctx, SCMP_ACT_ALLOW, SCMP_SYS(socket), 1,
                               SCMP_A0(SCMP_CMP_MASKED_EQ, 0xffffffffu, families[i])),
              err, errlen);
  ok = ok && rule("socket",
                  seccomp_rule_add(ctx, SCMP_ACT_ALLOW, SCMP_SYS(socket), 2,
                                   SCMP_A0(SCMP_CMP_MASKED_EQ, 0xffffffffu, AF_NETLINK),
                                   SCMP_A2(SCMP_CMP_MASKED_EQ, 0xffffffffu, NETLINK_ROUTE)),
                  err, errlen);
  for (size_t i = 0; ok && i < sizeof(ioctls) / sizeof(ioctls[0]); i++)
    ok = rule("ioctl",
              seccomp_rule_add(ctx, SCMP_ACT_ALLOW, SCMP_SYS(ioctl), 1,
                               SCMP_A1(SCMP_CMP_MASKED_EQ, 0xffffffffu, ioctls[i])),
              err, errlen);
  return ok;
}

static bool
load(scmp_filter_ctx ctx, bool ok, char *err, size_t errlen)
{
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

bool
SBX_ApplySeccomp(bool allow_adjust, char *err, size_t errlen)
{
  scmp_filter_ctx ctx = seccomp_init(SCMP_ACT_KILL_PROCESS);
  if (!ctx) {
    snprintf(err, errlen, "seccomp_init failed");
    return false;
  }
  bool ok = allow_with_arguments(ctx, err, errlen);
  for (size_t i = 0; ok && i < sizeof(allowed) / sizeof(allowed[0]); i++)
    ok = allow(ctx, allowed[i], err, errlen);
  for (size_t i = 0; ok && allow_adjust && i < sizeof(adjust) / sizeof(adjust[0]); i++)
    ok = allow(ctx, adjust[i], err, errlen);
  return load(ctx, ok, err, errlen);
}

/* The cleaner waits for end of file on a pipe and removes files. */
static bool
cleaner_filter(char *err, size_t errlen)
{
  static const char *const calls[] = {"read",         "unlink",         "unlinkat",
                                      "close",        "exit_group",     "exit",
                                      "rt_sigreturn", "restart_syscall"};
  scmp_filter_ctx ctx = seccomp_init(SCMP_ACT_KILL_PROCESS);
  if (!ctx) {
    snprintf(err, errlen, "seccomp_init failed");
    return false;
  }
  bool ok = true;
  for (size_t i = 0; ok && i < sizeof(calls) / sizeof(calls[0]); i++)
    ok = allow(ctx, calls[i], err, errlen);
  return load(ctx, ok, err, errlen);
}

#endif
