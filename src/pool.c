#include "pool.h"

#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>

#include "rng.h"

typedef struct {
  _Alignas(64) atomic_int busy; /* inside a batch; written by the thread only */
  POL_Pool *pool;
  int index;
  pthread_t tid;
  bool started;
  int epfd;
  WRK_Worker *w;
  NIO_Socket socks[POL_MAX_ADDRS];
  size_t nsocks;
} Thread;

struct POL_Pool {
  _Alignas(64) atomic_int pause; /* an exclusive section is open or opening */
  atomic_int stopping;
  pthread_mutex_t excl;      /* serializes exclusive sections */
  pthread_mutex_t gate_lock; /* with gate: where paused threads wait */
  pthread_cond_t gate;
  int stopfd; /* eventfd that wakes every thread at stop */
  int nthreads;
  Thread *th;
  POL_ControlFn control;
  void *control_arg;
  SHD_Table *shed;
  pthread_mutex_t shed_lock;     /* serializes filter installations */
  _Atomic uint64_t shed_applied; /* generation last installed (or tried) */
  _Atomic bool shed_refused;     /* ... and some socket refused it: retry on the tick */
  _Atomic uint64_t shed_errors;
  atomic_int shed_unreported; /* refusals of new lists not yet returned by POL_ApplyShed */
};

void
POL_SetShed(POL_Pool *p, SHD_Table *shed)
{
  p->shed = shed;
  const char *fault = getenv("NTPG_TEST_SHED_FAULT"); /* tests only: pool.h */
  if (fault && atoi(fault) > 0)
    NIO_SetShedFault((size_t)atoi(fault));
}

/* retry: also install an unchanged list that some socket refused last time. Refusals of a
 * new list (not of a retry) are kept for POL_ApplyShed to report. */
static void
apply_shed(POL_Pool *p, bool retry)
{
  retry = retry && atomic_load(&p->shed_refused);
  if (!p->shed || (!retry && SHD_Generation(p->shed) == atomic_load(&p->shed_applied)))
    return;
  int failed = 0;
  pthread_mutex_lock(&p->shed_lock);
  uint64_t gen = SHD_Generation(p->shed);
  bool fresh = gen != atomic_load(&p->shed_applied);
  if (fresh || (retry && atomic_load(&p->shed_refused))) {
    NetAddr v4[NIO_SHED_MAX], v6[NIO_SHED_MAX];
    int leak4, leak6;
    uint64_t gen4, gen6;
    size_t n4 = SHD_Snapshot(p->shed, ADR_INET4, v4, NIO_SHED_MAX, &leak4, &gen4);
    size_t n6 = SHD_Snapshot(p->shed, ADR_INET6, v6, NIO_SHED_MAX, &leak6, &gen6);
    gen = gen4 < gen6 ? gen4 : gen6; /* a change between the two snapshots: apply again */
    for (int i = 0; i < p->nthreads; i++) {
      Thread *t = &p->th[i];
      for (size_t k = 0; k < t->nsocks; k++) {
        bool v6s = t->socks[k].local.family == ADR_INET6;
        if (!NIO_SetShedFilter(&t->socks[k], v6s ? v6 : v4, v6s ? n6 : n4,
                               v6s ? leak6 : leak4))
          failed++;
      }
    }
    /* Only a list in force everywhere makes what gets through a sample. After a refusal the
     * sockets concerned have no filter: the samples are withdrawn and the limiter judges
     * everything as usual (its leak included) until a retry succeeds. */
    if (failed == 0) {
      struct timespec ts;
      clock_gettime(CLOCK_REALTIME, &ts); /* the kernel's receive stamps are on this clock */
      SHD_Applied(p->shed, gen, (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec);
    } else {
      SHD_Refused(p->shed);
    }
    atomic_store(&p->shed_applied, gen);
    atomic_store(&p->shed_refused, failed > 0);
    atomic_fetch_add(&p->shed_errors, (uint64_t)failed);
    if (fresh)
      atomic_fetch_add(&p->shed_unreported, failed);
  }
  pthread_mutex_unlock(&p->shed_lock);
}

int
POL_ApplyShed(POL_Pool *p)
{
  apply_shed(p, true);
  return atomic_exchange(&p->shed_unreported, 0);
}

uint64_t
POL_KernelDrops(POL_Pool *p)
{
  uint64_t sum = 0;
  for (int i = 0; i < p->nthreads; i++)
    for (size_t k = 0; k < p->th[i].nsocks; k++)
      sum += NIO_KernelDrops(&p->th[i].socks[k]);
  return sum;
}

uint64_t
POL_ShedErrors(POL_Pool *p)
{
  return atomic_load(&p->shed_errors);
}

void
POL_SetControlHandler(POL_Pool *p, POL_ControlFn fn, void *arg)
{
  p->control = fn;
  p->control_arg = arg;
}

int
POL_Threads(const POL_Pool *p)
{
  return p->nthreads;
}

/* Enter a batch: announce it, then back off while an exclusive section is open. The store
 * and the load are sequentially consistent, pairing with POL_Exclusive's store of `pause`
 * and load of `busy`: either the thread sees the pause or the pauser sees the thread busy. */
static void
enter(Thread *t)
{
  POL_Pool *p = t->pool;
  for (;;) {
    atomic_store(&t->busy, 1);
    if (!atomic_load(&p->pause))
      return;
    atomic_store(&t->busy, 0);
    pthread_mutex_lock(&p->gate_lock);
    while (atomic_load(&p->pause))
      pthread_cond_wait(&p->gate, &p->gate_lock);
    pthread_mutex_unlock(&p->gate_lock);
  }
}

static void
leave(Thread *t)
{
  atomic_store(&t->busy, 0);
}

static void *
thread_main(void *arg)
{
  Thread *t = arg;
  POL_Pool *p = t->pool;
  struct epoll_event ev[POL_MAX_ADDRS + 1];
  for (;;) {
    int n = epoll_wait(t->epfd, ev, POL_MAX_ADDRS + 1, -1);
    if (n < 0 && errno == EINTR)
      continue;
    if (n < 0 || atomic_load(&p->stopping))
      break;
    enter(t);
    WRK_BeginWakeup(t->w);
    for (int i = 0; i < n; i++) {
      uint32_t k = ev[i].data.u32;
      if (k < t->nsocks)
        WRK_Serve(t->w, &t->socks[k]);
    }
    leave(t);
    apply_shed(p, false); /* a source this batch shed, if any: atomic loads otherwise */
    size_t nctl;
    WRK_PendingControl(t->w, &nctl);
    if (nctl > 0) {
      if (p->control)
        p->control(p->control_arg, t->index, t->w);
      WRK_ClearControl(t->w);
    }
    /* nothing but samples of shed sources: let the next ones queue up (shed.h) */
    int64_t wait = p->shed && WRK_OnlySamples(t->w) ? SHD_WaitNs(p->shed) : 0;
    if (wait > 0) {
      struct timespec ts = {0, (long)wait};
      nanosleep(&ts, NULL);
    }
  }
  return NULL;
}

static bool
watch(int epfd, int fd, uint32_t key)
{
  struct epoll_event ev = {.events = EPOLLIN, .data.u32 = key};
  return epoll_ctl(epfd, EPOLL_CTL_ADD, fd, &ev) == 0;
}

POL_Pool *
POL_Create(const CLK_Clock *clk, int nthreads, const NetAddr *addrs, size_t naddrs, char *err,
           size_t errlen)
{
  if (errlen > 0)
    err[0] = '\0';
  if (nthreads < 1 || nthreads > POL_MAX_THREADS || naddrs == 0 || naddrs > POL_MAX_ADDRS) {
    snprintf(err, errlen, "bad pool size (%d threads, %zu addresses)", nthreads, naddrs);
    return NULL;
  }
  POL_Pool *p = calloc(1, sizeof(*p));
  Thread *th = aligned_alloc(64, sizeof(Thread) * (size_t)nthreads);
  if (!p || !th) {
    free(p);
    free(th);
    snprintf(err, errlen, "out of memory");
    return NULL;
  }
  memset(th, 0, sizeof(Thread) * (size_t)nthreads);
  p->th = th;
  p->nthreads = nthreads;
  pthread_mutex_init(&p->excl, NULL);
  pthread_mutex_init(&p->gate_lock, NULL);
  pthread_mutex_init(&p->shed_lock, NULL);
  pthread_cond_init(&p->gate, NULL);
  p->stopfd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
  for (int i = 0; i < nthreads; i++) {
    th[i].epfd = -1;
    for (size_t k = 0; k < POL_MAX_ADDRS; k++)
      th[i].socks[k].fd = -1;
  }
  bool ok = p->stopfd >= 0;
  /* SO_REUSEPORT would let us share a port with another daemon (of the same user) already
   * bound there, splitting its traffic silently. Bind each address once without it first:
   * if that fails, the address is taken and we say so. */
  for (size_t k = 0; ok && nthreads > 1 && k < naddrs; k++) {
    NIO_Socket probe;
    ok = NIO_Open(&addrs[k], false, &probe, err, errlen);
    if (ok)
      NIO_Close(&probe);
  }
  for (int i = 0; ok && i < nthreads; i++) {
    Thread *t = &th[i];
    t->pool = p;
    t->index = i;
    t->w = WRK_Create(clk, RNG_Seed());
    t->epfd = epoll_create1(EPOLL_CLOEXEC);
    ok = t->w && t->epfd >= 0 && watch(t->epfd, p->stopfd, UINT32_MAX);
    for (size_t k = 0; ok && k < naddrs; k++) {
      ok = NIO_Open(&addrs[k], nthreads > 1, &t->socks[k], err, errlen) &&
           watch(t->epfd, t->socks[k].fd, (uint32_t)k);
      if (ok)
        t->nsocks++;
    }
  }
  if (!ok) {
    if (!err[0])
      snprintf(err, errlen, "cannot set up the serving threads: %s", strerror(errno));
    POL_Destroy(p);
    return NULL;
  }
  return p;
}

bool
POL_Start(POL_Pool *p, const SRV_Ctx *ctx, char *err, size_t errlen)
{
  for (int i = 0; i < p->nthreads; i++) {
    Thread *t = &p->th[i];
    WRK_SetContext(t->w, ctx);
    int rc = pthread_create(&t->tid, NULL, thread_main, t);
    if (rc != 0) {
      snprintf(err, errlen, "pthread_create: %s", strerror(rc));
      return false;
    }
    t->started = true;
  }
  return true;
}

void
POL_Destroy(POL_Pool *p)
{
  if (!p)
    return;
  atomic_store(&p->stopping, 1);
  if (p->stopfd >= 0) {
    uint64_t one = 1;
    ssize_t rc = write(p->stopfd, &one, sizeof(one));
    (void)rc;
  }
  for (int i = 0; i < p->nthreads; i++) {
    Thread *t = &p->th[i];
    if (t->started)
      pthread_join(t->tid, NULL);
    for (size_t k = 0; k < t->nsocks; k++)
      NIO_Close(&t->socks[k]);
    if (t->epfd >= 0)
      close(t->epfd);
    WRK_Destroy(t->w);
  }
  if (p->stopfd >= 0)
    close(p->stopfd);
  pthread_cond_destroy(&p->gate);
  pthread_mutex_destroy(&p->gate_lock);
  pthread_mutex_destroy(&p->excl);
  pthread_mutex_destroy(&p->shed_lock);
  free(p->th);
  free(p);
}

void
POL_Exclusive(POL_Pool *p, int self)
{
  pthread_mutex_lock(&p->excl);
  atomic_store(&p->pause, 1);
  for (int i = 0; i < p->nthreads; i++) {
    if (i == self)
      continue;
    /* a batch takes microseconds; yield, then sleep briefly, until the thread is out */
    for (int spin = 0; atomic_load(&p->th[i].busy); spin++) {
      if (spin < 100) {
        sched_yield();
      } else {
        struct timespec ts = {0, 100000};
        nanosleep(&ts, NULL);
      }
    }
  }
}

void
POL_Release(POL_Pool *p)
{
  pthread_mutex_lock(&p->gate_lock);
  atomic_store(&p->pause, 0);
  pthread_cond_broadcast(&p->gate);
  pthread_mutex_unlock(&p->gate_lock);
  pthread_mutex_unlock(&p->excl);
}

void
POL_SetContext(POL_Pool *p, const SRV_Ctx *ctx)
{
  for (int i = 0; i < p->nthreads; i++)
    WRK_SetContext(p->th[i].w, ctx);
}

void
POL_SumCounters(POL_Pool *p, WRK_Counters *sum)
{
  memset(sum, 0, sizeof(*sum));
  for (int i = 0; i < p->nthreads; i++)
    WRK_SumCounters(p->th[i].w, sum);
}

uint64_t
POL_ThreadReceived(POL_Pool *p, int i)
{
  return i >= 0 && i < p->nthreads ? WRK_GetCounters(p->th[i].w)->received : 0;
}
