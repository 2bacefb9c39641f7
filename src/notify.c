/* notify: the sd_notify(3) readiness protocol, one datagram per message. */
#include "notify.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static int notify_fd = -1;

bool
NTF_ParseAddress(const char *name, struct sockaddr_un *sa, socklen_t *len, char *err,
                 size_t errlen)
{
  size_t n = name ? strlen(name) : 0;
  memset(sa, 0, sizeof(*sa));
  sa->sun_family = AF_UNIX;
  if (n == 0 || (name[0] != '/' && name[0] != '@')) {
    snprintf(err, errlen, "NOTIFY_SOCKET must be an absolute path or @name");
    return false;
  }
  if (n > sizeof(sa->sun_path) - (name[0] == '/')) {
    snprintf(err, errlen, "NOTIFY_SOCKET is longer than %zu octets", sizeof(sa->sun_path) - 1);
    return false;
  }
  memcpy(sa->sun_path, name, n);
  if (name[0] == '@')
    sa->sun_path[0] = '\0'; /* abstract: no terminator, the length says where it ends */
  *len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + n + (name[0] == '/'));
  return true;
}

bool
NTF_Open(char *err, size_t errlen)
{
  const char *name = getenv("NOTIFY_SOCKET");
  if (!name)
    return true;
  struct sockaddr_un sa;
  socklen_t len;
  bool ok = NTF_ParseAddress(name, &sa, &len, err, errlen);
  unsetenv("NOTIFY_SOCKET");
  if (!ok)
    return false;
  int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  if (fd < 0 || connect(fd, (struct sockaddr *)&sa, len) < 0) {
    snprintf(err, errlen, "notify socket: %s", strerror(errno));
    if (fd >= 0)
      close(fd);
    return false;
  }
  notify_fd = fd;
  return true;
}

bool
NTF_Active(void)
{
  return notify_fd >= 0;
}

static void
send_state(const char *state)
{
  if (notify_fd < 0)
    return;
  ssize_t n; /* best effort; a datagram is sent whole or not at all */
  do
    n = send(notify_fd, state, strlen(state), MSG_NOSIGNAL | MSG_DONTWAIT);
  while (n < 0 && errno == EINTR);
}

void
NTF_Ready(void)
{
  send_state("READY=1\nSTATUS=serving");
}

void
NTF_Reloading(uint64_t mono_us)
{
  char buf[80];
  snprintf(buf, sizeof(buf), "RELOADING=1\nMONOTONIC_USEC=%" PRIu64 "\nSTATUS=reloading",
           mono_us);
  send_state(buf);
}

void
NTF_Stopping(void)
{
  send_state("STOPPING=1\nSTATUS=stopping");
}

void
NTF_Status(const char *text)
{
  char buf[256] = "STATUS=";
  size_t at = strlen(buf);
  for (const char *p = text; *p && at + 1 < sizeof(buf); p++)
    buf[at++] = (unsigned char)*p < 0x20 || *p == 0x7f ? ' ' : *p;
  buf[at] = '\0';
  send_state(buf);
}

void
NTF_Close(void)
{
  if (notify_fd >= 0)
    close(notify_fd);
  notify_fd = -1;
}
