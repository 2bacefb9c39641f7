#include "daemon.h"

#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
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
