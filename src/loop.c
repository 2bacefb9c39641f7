#include "loop.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <time.h>
#include <unistd.h>

#define EVL_MAX_FDS 256
#define EVL_MAX_TIMERS 16

typedef struct {
  int fd;
  EVL_FdHandler fn;
  void *arg;
} evl_watch;

typedef struct {
  int64_t interval_ns, next_ns;
  EVL_TimerHandler fn;
  void *arg;
} evl_timer;

struct EVL_Loop {
  int epfd;
  bool stop;
  evl_watch watches[EVL_MAX_FDS];
  int nwatches;
  evl_timer timers[EVL_MAX_TIMERS];
  int ntimers;
};

static int64_t
mono_ns(void)
{
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

EVL_Loop *
EVL_Create(char *err, size_t errlen)
{
  EVL_Loop *l = calloc(1, sizeof(*l));
  if (!l) {
    snprintf(err, errlen, "out of memory");
    return NULL;
  }
  l->epfd = epoll_create1(EPOLL_CLOEXEC);
  if (l->epfd < 0) {
    snprintf(err, errlen, "epoll_create1: %s", strerror(errno));
    free(l);
    return NULL;
  }
  return l;
}

void
EVL_Destroy(EVL_Loop *l)
{
  if (!l)
    return;
  close(l->epfd);
  free(l);
}

bool
EVL_AddFd(EVL_Loop *l, int fd, EVL_FdHandler fn, void *arg)
{
  if (l->nwatches >= EVL_MAX_FDS)
    return false;
  evl_watch *w = &l->watches[l->nwatches];
  *w = (evl_watch){fd, fn, arg};
  struct epoll_event ev = {.events = EPOLLIN, .data.u32 = (uint32_t)l->nwatches};
  if (epoll_ctl(l->epfd, EPOLL_CTL_ADD, fd, &ev) < 0)
    return false;
  l->nwatches++;
  return true;
}

void
EVL_RemoveFd(EVL_Loop *l, int fd)
{
  for (int i = 0; i < l->nwatches; i++) {
    if (l->watches[i].fd == fd) {
      epoll_ctl(l->epfd, EPOLL_CTL_DEL, fd, NULL);
      l->watches[i].fn = NULL; /* slot stays so other indices keep their meaning */
      l->watches[i].fd = -1;
    }
  }
}

int
EVL_AddTimer(EVL_Loop *l, double interval_s, EVL_TimerHandler fn, void *arg)
{
  if (l->ntimers >= EVL_MAX_TIMERS || interval_s <= 0)
    return -1;
  int64_t iv = (int64_t)(interval_s * 1e9);
  l->timers[l->ntimers] = (evl_timer){iv, mono_ns() + iv, fn, arg};
  return l->ntimers++;
}

static int
next_timeout_ms(const EVL_Loop *l, int64_t now)
{
  int64_t best = -1;
  for (int i = 0; i < l->ntimers; i++) {
    int64_t wait = l->timers[i].next_ns - now;
    if (wait < 0)
      wait = 0;
    if (best < 0 || wait < best)
      best = wait;
  }
  return best < 0 ? -1 : (int)((best + 999999) / 1000000);
}

static void
run_timers(EVL_Loop *l)
{
  int64_t now = mono_ns();
  for (int i = 0; i < l->ntimers && !l->stop; i++) {
    evl_timer *t = &l->timers[i];
    if (now < t->next_ns)
      continue;
    t->next_ns += t->interval_ns;
    if (t->next_ns <= now) /* we were away for longer than an interval: do not catch up */
      t->next_ns = now + t->interval_ns;
    t->fn(t->arg);
  }
}

bool
EVL_Run(EVL_Loop *l)
{
  struct epoll_event evs[32];
  l->stop = false;
  while (!l->stop) {
    int n = epoll_wait(l->epfd, evs, 32, next_timeout_ms(l, mono_ns()));
    if (n < 0) {
      if (errno == EINTR)
        continue;
      return false;
    }
    for (int i = 0; i < n && !l->stop; i++) {
      evl_watch *w = &l->watches[evs[i].data.u32];
      if (w->fn)
        w->fn(w->arg, w->fd, evs[i].events);
    }
    run_timers(l);
  }
  return true;
}

void
EVL_Stop(EVL_Loop *l)
{
  l->stop = true;
}
