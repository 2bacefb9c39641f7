#include "metrics.h"

#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "http.h"

#define MAX_LISTEN 8
#define BODY_CAP (256 * 1024)
#define HEAD_CAP 256

typedef struct {
  int fd; /* -1: free */
  int64_t deadline_ms;
  char req[HTP_MAX_REQUEST];
  size_t got;
  const char *out; /* the answer being written (in the server's send_buf); NULL: none */
  size_t out_len, out_done;
} Conn;

struct MTR_Server {
  int listen_fd[MAX_LISTEN];
  size_t n_listen;
  int stop_fd; /* eventfd: MTR_Destroy wakes the thread */
  int want_fd; /* eventfd: the thread asks the owner for a fresh snapshot */
  pthread_t thread;
  bool started;
  pthread_mutex_t lock;     /* guards snap, gen, published_ms and rst, owner and thread */
  pthread_cond_t published; /* signalled by MTR_Publish */
  EXP_Snapshot snap;
  uint64_t gen;         /* snapshots published */
  int64_t published_ms; /* when the last one was (monotonic) */
  RST_List *rst;
  /* the thread's own */
  Conn conns[MTR_MAX_CONNS];
  char *send_buf; /* head + body of the one answer being written */
  EXP_Snapshot work;
  uint64_t served, refused, errors;
};

static int64_t
now_ms(void)
{
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int
open_listener(const NetAddr *a, char *err, size_t errlen)
{
  struct sockaddr_storage ss;
  socklen_t sl = ADR_ToSockaddr(a, &ss);
  char name[ADR_STRLEN];
  int fd = socket(ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  int one = 1;
  if (fd >= 0) {
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    if (ss.ss_family == AF_INET6)
      setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one));
  }
  if (fd < 0 || bind(fd, (struct sockaddr *)&ss, sl) < 0 || listen(fd, 16) < 0) {
    snprintf(err, errlen, "metrics: cannot listen on %s: %s",
             ADR_FormatPort(a, name, sizeof(name)), strerror(errno));
    if (fd >= 0)
      close(fd);
    return -1;
  }
  return fd;
}

MTR_Server *
MTR_Create(const NetAddr *addrs, size_t n, char *err, size_t errlen)
{
  MTR_Server *m = calloc(1, sizeof(*m));
  if (!m || n > MAX_LISTEN) {
    snprintf(err, errlen, "metrics: %s", m ? "too many addresses" : "out of memory");
    free(m);
    return NULL;
  }
  pthread_mutex_init(&m->lock, NULL);
  pthread_condattr_t ca;
  pthread_condattr_init(&ca);
  pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
  pthread_cond_init(&m->published, &ca);
  pthread_condattr_destroy(&ca);
  m->stop_fd = m->want_fd = -1;
  for (size_t i = 0; i < MTR_MAX_CONNS; i++)
    m->conns[i].fd = -1;
  m->send_buf = malloc(HEAD_CAP + BODY_CAP);
  m->stop_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
  m->want_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
  if (!m->send_buf || m->stop_fd < 0 || m->want_fd < 0) {
    snprintf(err, errlen, "metrics: out of memory or descriptors");
    MTR_Destroy(m);
    return NULL;
  }
  for (size_t i = 0; i < n; i++) {
    int fd = open_listener(&addrs[i], err, errlen);
    if (fd < 0) {
      MTR_Destroy(m);
      return NULL;
    }
    m->listen_fd[m->n_listen++] = fd;
  }
  return m;
}

static void
close_conn(Conn *c)
{
  if (c->fd >= 0)
    close(c->fd);
  c->fd = -1;
}

/* The restrict list says no (ignore or noquery), as for mode 6. */
static bool
refused(MTR_Server *m, int fd)
{
  struct sockaddr_storage ss;
  socklen_t sl = sizeof(ss);
  NetAddr a;
  if (getpeername(fd, (struct sockaddr *)&ss, &sl) < 0 ||
      !ADR_FromSockaddr((struct sockaddr *)&ss, &a))
    return true;
  ADR_Unmap(&a);
  pthread_mutex_lock(&m->lock);
  uint32_t flags = m->rst ? RST_Match(m->rst, &a) : 0;
  pthread_mutex_unlock(&m->lock);
  return (flags & (RST_IGNORE | RST_NOQUERY)) != 0;
}

static void
accept_all(MTR_Server *m, int lfd)
{
  for (int tries = 0; tries < MTR_MAX_CONNS; tries++) {
    int fd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (fd < 0)
      return;
    if (refused(m, fd)) {
      m->refused++;
      close(fd);
      continue;
    }
    Conn *c = NULL;
    for (size_t i = 0; i < MTR_MAX_CONNS && !c; i++)
      if (m->conns[i].fd < 0)
        c = &m->conns[i];
    if (!c) { /* full: the newest waits no longer than the oldest would */
      m->errors++;
      close(fd);
      continue;
    }
    c->fd = fd;
    c->got = 0;
    c->out = NULL;
    c->out_len = c->out_done = 0;
    c->deadline_ms = now_ms() + MTR_TIMEOUT_MS;
  }
}

/* Ask the owner for a fresh snapshot unless ours is young; wait for it, bounded. */
static void
refresh(MTR_Server *m)
{
  int64_t now = now_ms();
  pthread_mutex_lock(&m->lock);
  uint64_t gen = m->gen;
  bool young = m->gen > 0 && now - m->published_ms < MTR_FRESH_MS;
  pthread_mutex_unlock(&m->lock);
  if (young)
    return;
  uint64_t one = 1;
  if (write(m->want_fd, &one, sizeof(one)) != (ssize_t)sizeof(one))
    return; /* the counter is full: a request is pending anyway */
  struct timespec until;
  clock_gettime(CLOCK_MONOTONIC, &until);
  until.tv_sec += MTR_WAIT_MS / 1000;
  until.tv_nsec += (long)(MTR_WAIT_MS % 1000) * 1000000;
  if (until.tv_nsec >= 1000000000) {
    until.tv_sec++;
    until.tv_nsec -= 1000000000;
  }
  pthread_mutex_lock(&m->lock);
  while (m->gen == gen)
    if (pthread_cond_timedwait(&m->published, &m->lock, &until) != 0)
      break;
  pthread_mutex_unlock(&m->lock);
}

/* Build the answer to a finished request in send_buf (the body at HEAD_CAP, the head just
 * before it) and point the connection at it. */
static void
answer(MTR_Server *m, Conn *c, HTP_Status st, const HTP_Request *rq)
{
  size_t body_len = 0;
  const char *ctype = "text/plain; charset=utf-8";
  char *body = m->send_buf + HEAD_CAP, head[HEAD_CAP];
  int code = HTP_Code(st);
  if (st == HTP_OK) {
    refresh(m);
    pthread_mutex_lock(&m->lock);
    m->work = m->snap;
    pthread_mutex_unlock(&m->lock);
    m->served++;
    m->work.http_served = m->served;
    m->work.http_refused = m->refused;
    m->work.http_errors = m->errors;
    body_len = EXP_Format(&m->work, body, BODY_CAP);
    ctype = EXP_CONTENT_TYPE;
    if (body_len == 0) {
      code = 500;
      m->errors++;
    }
  } else {
    m->errors++;
  }
  if (code != 200)
    body_len = (size_t)snprintf(body, BODY_CAP, "%d\n", code);
  size_t hl = HTP_ResponseHead(code, ctype, body_len, head, sizeof(head));
  if (rq->head && code == 200)
    body_len = 0;
  memcpy(body - hl, head, hl);
  c->out = body - hl;
  c->out_len = hl + body_len;
  c->out_done = 0;
}

static void
flush(Conn *c)
{
  while (c->out_done < c->out_len) {
    ssize_t n = send(c->fd, c->out + c->out_done, c->out_len - c->out_done, MSG_NOSIGNAL);
    if (n < 0 && (errno == EAGAIN || errno == EINTR))
      return;
    if (n <= 0) {
      close_conn(c);
      return;
    }
    c->out_done += (size_t)n;
  }
  shutdown(c->fd, SHUT_WR);
  close_conn(c);
}

/* Only one connection writes at a time (bodies is one buffer): another that has its request
 * waits until the writer is done. */
static bool
writer_busy(const MTR_Server *m)
{
  for (size_t i = 0; i < MTR_MAX_CONNS; i++)
    if (m->conns[i].fd >= 0 && m->conns[i].out)
      return true;
  return false;
}

static void
readable(MTR_Server *m, Conn *c)
{
  bool eof = false;
  if (c->got < sizeof(c->req)) {
    ssize_t n = recv(c->fd, c->req + c->got, sizeof(c->req) - c->got, 0);
    if (n > 0)
      c->got += (size_t)n;
    else if (n == 0 || (errno != EAGAIN && errno != EINTR))
      eof = true; /* a request already complete is still answered */
  }
  HTP_Request rq;
  HTP_Status st = HTP_Parse(c->req, c->got, &rq);
  if (st == HTP_INCOMPLETE) {
    if (eof)
      close_conn(c);
    return;
  }
  if (writer_busy(m))
    return; /* looked at again on the next turn */
  answer(m, c, st, &rq);
  flush(c);
}

static void
expire(MTR_Server *m, int64_t now)
{
  for (size_t i = 0; i < MTR_MAX_CONNS; i++)
    if (m->conns[i].fd >= 0 && now >= m->conns[i].deadline_ms) {
      m->errors++;
      close_conn(&m->conns[i]);
    }
}

static void *
run(void *arg)
{
  MTR_Server *m = arg;
  struct pollfd pf[1 + MAX_LISTEN + MTR_MAX_CONNS];
  Conn *owner[MTR_MAX_CONNS];
  for (;;) {
    size_t n = 0, nc = 0;
    pf[n++] = (struct pollfd){.fd = m->stop_fd, .events = POLLIN};
    for (size_t i = 0; i < m->n_listen; i++)
      pf[n++] = (struct pollfd){.fd = m->listen_fd[i], .events = POLLIN};
    for (size_t i = 0; i < MTR_MAX_CONNS; i++) {
      Conn *c = &m->conns[i];
      if (c->fd < 0)
        continue;
      owner[nc++] = c;
      pf[n++] = (struct pollfd){.fd = c->fd, .events = c->out ? POLLOUT : POLLIN};
    }
    /* a waiting request is looked at again every 100 ms, the deadlines every second */
    int rc = poll(pf, n, writer_busy(m) ? 100 : 1000);
    if (rc < 0 && errno != EINTR)
      break;
    if (pf[0].revents)
      break;
    for (size_t i = 0; i < m->n_listen; i++)
      if (pf[1 + i].revents)
        accept_all(m, m->listen_fd[i]);
    for (size_t i = 0; i < nc; i++) {
      Conn *c = owner[i];
      short ev = pf[1 + m->n_listen + i].revents;
      if (c->fd < 0)
        continue;
      if (c->out && ev)
        flush(c);
      else if (!c->out && (ev || c->got > 0))
        readable(m, c);
    }
    expire(m, now_ms());
  }
  return NULL;
}

bool
MTR_Start(MTR_Server *m, char *err, size_t errlen)
{
  int rc = pthread_create(&m->thread, NULL, run, m);
  if (rc != 0) {
    snprintf(err, errlen, "metrics: cannot start its thread: %s", strerror(rc));
    return false;
  }
  m->started = true;
  return true;
}

void
MTR_Destroy(MTR_Server *m)
{
  if (!m)
    return;
  if (m->started) {
    uint64_t one = 1;
    if (write(m->stop_fd, &one, sizeof(one)) != (ssize_t)sizeof(one))
      abort(); /* an eventfd write of 1 cannot fail: our bug */
    pthread_join(m->thread, NULL);
  }
  for (size_t i = 0; i < MTR_MAX_CONNS; i++)
    close_conn(&m->conns[i]);
  for (size_t i = 0; i < m->n_listen; i++)
    close(m->listen_fd[i]);
  if (m->stop_fd >= 0)
    close(m->stop_fd);
  if (m->want_fd >= 0)
    close(m->want_fd);
  pthread_cond_destroy(&m->published);
  RST_Destroy(m->rst);
  free(m->send_buf);
  pthread_mutex_destroy(&m->lock);
  free(m);
}

int
MTR_WantFd(const MTR_Server *m)
{
  return m->want_fd;
}

void
MTR_TakeWant(MTR_Server *m)
{
  uint64_t v;
  while (read(m->want_fd, &v, sizeof(v)) == (ssize_t)sizeof(v))
    ;
}

void
MTR_Publish(MTR_Server *m, const EXP_Snapshot *s)
{
  pthread_mutex_lock(&m->lock);
  m->snap = *s;
  m->gen++;
  m->published_ms = now_ms();
  pthread_cond_broadcast(&m->published);
  pthread_mutex_unlock(&m->lock);
}

bool
MTR_SetRestrict(MTR_Server *m, const RST_List *rst)
{
  RST_List *copy = rst ? RST_Copy(rst) : NULL;
  if (rst && !copy)
    return false;
  pthread_mutex_lock(&m->lock);
  RST_List *old = m->rst;
  m->rst = copy;
  pthread_mutex_unlock(&m->lock);
  RST_Destroy(old);
  return true;
}
