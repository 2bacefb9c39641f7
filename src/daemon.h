/* daemon: process life -- detaching from the terminal, the pid file, and the privileged
 * cleaner that removes the daemon's files at exit once the daemon itself no longer can
 * (privileges: sandbox.h). Errors come back in a caller's buffer; main decides what is
 * fatal. */
#ifndef NTPG_DAEMON_H
#define NTPG_DAEMON_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

/* Fork into the background, new session, stdio to /dev/null. Returns in the child only. */
bool DMN_Detach(char *err, size_t errlen);
/* Write our pid to path (created 0644, replaced if it exists). */
bool DMN_WritePidFile(const char *path, char *err, size_t errlen);
void DMN_RemovePidFile(const char *path);

/* After a chroot or the switch to another user the daemon can no longer remove the files it
 * made as root (pid file, local control socket). A cleaner is a child process forked before
 * that, still root and outside the chroot, that keeps nothing but the read end of a pipe
 * (every other descriptor closed, only CAP_DAC_OVERRIDE and CAP_FOWNER, a read/unlink/exit
 * seccomp filter when with_seccomp and available, the daemon's signals ignored). When the
 * daemon's end of the pipe closes -- DMN_StopCleaner, or any death of the daemon, a crash
 * included -- it removes the paths and exits. */
typedef struct {
  pid_t pid; /* 0: none */
  int fd;    /* the daemon's end of the pipe */
} DMN_Cleaner;

/* Start one for paths[0..n) (the strings must stay valid: the child keeps pointers). Call
 * before any thread is started. */
bool DMN_StartCleaner(DMN_Cleaner *c, const char *const *paths, size_t n, bool with_seccomp,
                      char *err, size_t errlen);
/* Close the pipe and wait (at most about 2 s) until the cleaner removed the paths. */
void DMN_StopCleaner(DMN_Cleaner *c);

#endif
