#include "daemon.h"

#include "sandbox.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

bool
DMN_Detach(char *err, size_t errlen)
{
  pid_t pid = fork();
  if (pid < 0) {
    snprintf(err, errlen, "fork: %s", strerror(errno));
    return false;
  }
  if (pid > 0)
    _exit(0);
  if (setsid() < 0) {
    snprintf(err, errlen, "setsid: %s", strerror(errno));
    return false;
  }
  pid = fork(); /* never reacquire a controlling terminal */
  if (pid < 0) {
    snprintf(err, errlen, "fork: %s", strerror(errno));
    return false;
  }
  if (pid > 0)
    _exit(0);
  if (chdir("/") < 0) {
    snprintf(err, errlen, "chdir /: %s", strerror(errno));
    return false;
  }
  int fd = open("/dev/null", O_RDWR);
  if (fd >= 0) {
    dup2(fd, STDIN_FILENO);
    dup2(fd, STDOUT_FILENO);
    dup2(fd, STDERR_FILENO);
    if (fd > STDERR_FILENO)
      close(fd);
  }
  return true;
}

bool
DMN_WritePidFile(const char *path, char *err, size_t errlen)
{
  char tmp[4096];
  snprintf(tmp, sizeof(tmp), "%s.tmp", path);
  FILE *f = fopen(tmp, "w");
  if (!f) {
    snprintf(err, errlen, "%s: %s", tmp, strerror(errno));
    return false;
  }
  fprintf(f, "%d\n", (int)getpid());
  if (fclose(f) != 0 || rename(tmp, path) != 0) {
    snprintf(err, errlen, "%s: %s", path, strerror(errno));
    unlink(tmp);
    return false;
  }
  return true;
}

void
DMN_RemovePidFile(const char *path)
{
  if (path && *path)
    unlink(path);
}

/* The cleaner's life: confine, wait for the daemon to go, remove its files. */
static void
run_cleaner(int fd, const char *const *paths, size_t n, bool with_seccomp)
{
  static const int ignored[] = {SIGTERM, SIGINT, SIGHUP, SIGUSR1, SIGUSR2, SIGPIPE, SIGQUIT};
  for (size_t i = 0; i < sizeof(ignored) / sizeof(ignored[0]); i++)
    signal(ignored[i], SIG_IGN); /* a signal to the process group: the daemon handles it */
  if (fd > STDERR_FILENO + 1)
    close_range(STDERR_FILENO + 1, (unsigned)fd - 1, 0);
  close_range((unsigned)fd + 1, ~0U, 0);
  prctl(PR_SET_NAME, "ntpgated-clean", 0, 0, 0);
  char err[256]; /* nowhere to report it: unconfined, the cleaner still only waits and
                    removes the daemon's own files */
  (void)SBX_ConfineCleaner(with_seccomp, err, sizeof(err));
  char b;
  for (;;) {
    ssize_t r = read(fd, &b, 1);
    if (r == 0 || (r < 0 && errno != EINTR))
      break;
  }
  for (size_t i = 0; i < n; i++)
    if (paths[i] && *paths[i])
      unlink(paths[i]);
  _exit(0);
}

bool
DMN_StartCleaner(DMN_Cleaner *c, const char *const *paths, size_t n, bool with_seccomp,
                 char *err, size_t errlen)
{
  int p[2];
  c->pid = 0;
  c->fd = -1;
  if (pipe2(p, O_CLOEXEC) < 0) {
    snprintf(err, errlen, "pipe: %s", strerror(errno));
    return false;
  }
  pid_t pid = fork();
  if (pid < 0) {
    snprintf(err, errlen, "fork: %s", strerror(errno));
    close(p[0]);
    close(p[1]);
    return false;
  }
  if (pid == 0) {
    close(p[1]);
    run_cleaner(p[0], paths, n, with_seccomp);
  }
  close(p[0]);
  c->pid = pid;
  c->fd = p[1];
  return true;
}

void
DMN_StopCleaner(DMN_Cleaner *c)
{
  if (c->pid <= 0)
    return;
  close(c->fd);
  c->fd = -1;
  for (int i = 0; i < 200; i++) { /* bounded: 200 x 10 ms */
    pid_t r = waitpid(c->pid, NULL, WNOHANG);
    if (r == c->pid || (r < 0 && errno != EINTR))
      break;
    nanosleep(&(struct timespec){0, 10000000}, NULL);
  }
  c->pid = 0;
}
