#include "ntskesrv.h"

#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/ssl.h>

#include "log.h"
#include "netaddr.h"
#include "ntscookie.h"
#include "ntske.h"
#include "ntstls.h"
#include "restrict.h"
#include "rng.h"
#include "siv.h"

enum { ST_HANDSHAKE, ST_READ, ST_WRITE };

typedef struct {
  int fd; /* -1: free slot */
  SSL *ssl;
  int state;
  double deadline;
  struct sockaddr_in6 peer; /* IPv4 peers arrive as v4-mapped addresses */
  uint8_t in[NKE_MAX_REQUEST];
  size_t inlen;
  uint8_t out[1280];
  size_t outlen, outpos;
} Conn;

#define COUNTERS(X)                                                                           \
  X(accepted)                                                                                 \
  X(handshakes) X(tls_failed) X(bad_request) X(unknown_critical) X(no_aead) X(timeouts)       \
      X(refused_full) X(refused_addr) X(closed_early) X(internal_error) X(cookies_issued)     \
          X(key_rotations) X(refused_restrict)

struct NKS_Server {
  NTL_Ctx *tls;
  int lfd[2];
  int nl;
  int stop_pipe[2];
  pthread_t thread;
  bool running;
  Conn *conns;
  struct pollfd *pfd;
  SIV_Ctx *siv;
  NCK_Keys keys;
  NCK_Store *store; /* keys published for the serving threads */
  NCK_Keys last_published;
  bool published;
  pthread_mutex_t rst_lock;
  RST_List *rst; /* our copy of the restrict list in force (NKS_SetRestrict) */
  char *cookie_file;
  double next_key_check;
#define DECL(n) _Atomic uint64_t n;
  COUNTERS(DECL)
#undef DECL
};

static double
mono(void)
{
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (double)t.tv_sec + t.tv_nsec * 1e-9;
}

static void
count(_Atomic uint64_t *c, uint64_t n)
{
  atomic_fetch_add_explicit(c, n, memory_order_relaxed);
}

/* ---- cookie master keys: the file is read at start and at every check, so a key written
 * by another server of the fleet is adopted; it is written (0600, renamed into place) when
 * we rotate. ---- */

static bool
read_keys(const char *path, NCK_Keys *k, char *err, size_t errlen)
{
  char text[1024];
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    snprintf(err, errlen, "%s: %s", path, strerror(errno));
    return false;
  }
  ssize_t n = read(fd, text, sizeof(text) - 1);
  close(fd);
  if (n < 0 || (size_t)n >= sizeof(text) - 1) {
    snprintf(err, errlen, "%s: %s", path, n < 0 ? strerror(errno) : "too long");
    return false;
  }
  text[n] = '\0';
  int line;
  const char *why;
  bool ok = NCK_Parse(text, k, &line, &why);
  if (!ok)
    snprintf(err, errlen, "%s:%d: %s", path, line, why);
  memset(text, 0, sizeof(text));
  return ok;
}

static bool
write_keys(const char *path, const NCK_Keys *k, char *err, size_t errlen)
{
  char text[1024], tmp[4096];
  size_t n = NCK_Format(k, text, sizeof(text));
  snprintf(tmp, sizeof(tmp), "%s.tmp", path);
  int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  bool ok = fd >= 0 && n > 0 && write(fd, text, n) == (ssize_t)n && fsync(fd) == 0;
  if (fd >= 0)
    close(fd);
  memset(text, 0, sizeof(text));
  if (ok && rename(tmp, path) == 0)
    return true;
  snprintf(err, errlen, "cannot write the cookie key file %s: %s", path, strerror(errno));
  unlink(tmp);
  return false;
}

/* Hand the keys to the serving threads if they changed. */
static void
publish_keys(NKS_Server *s)
{
  if (!s->published || memcmp(&s->keys, &s->last_published, sizeof(s->keys)) != 0) {
    NCK_StorePublish(s->store, &s->keys);
    s->last_published = s->keys;
    s->published = true;
  }
}

static bool
rotate_keys(NKS_Server *s, char *err, size_t errlen)
{
  int64_t now = (int64_t)time(NULL);
  NCK_Keys fromfile;
  if (s->cookie_file && access(s->cookie_file, F_OK) == 0) {
    if (!read_keys(s->cookie_file, &fromfile, err, errlen))
      return false;
    if (fromfile.n > 0)
      s->keys = fromfile;
  }
  if (!NCK_NeedsRotation(&s->keys, now, NCK_ROTATE_INTERVAL))
    return true;
  uint8_t key[SIV_KEY_LEN];
  uint32_t id;
  if (!RNG_Secure(key, sizeof(key)) || !RNG_Secure(&id, sizeof(id))) {
    snprintf(err, errlen, "no randomness for a cookie key");
    return false;
  }
  NCK_Rotate(&s->keys, now, id, key);
  memset(key, 0, sizeof(key));
  count(&s->key_rotations, 1);
  return !s->cookie_file || write_keys(s->cookie_file, &s->keys, err, errlen);
}

static bool
check_keys(NKS_Server *s, char *err, size_t errlen)
{
  bool ok = rotate_keys(s, err, errlen);
  publish_keys(s); /* what is in memory is in force, whatever the file said */
  return ok;
}

/* ---- listeners ---- */

static int
listen_on(int family, uint16_t port, char *err, size_t errlen)
{
  int fd = socket(family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0), one = 1;
  struct sockaddr_storage ss = {0};
  socklen_t len;
  if (fd < 0)
    goto fail;
  setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
  if (family == AF_INET6) {
    setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one));
    struct sockaddr_in6 *a = (struct sockaddr_in6 *)&ss;
    a->sin6_family = AF_INET6;
    a->sin6_port = htons(port);
    len = sizeof(*a);
  } else {
    struct sockaddr_in *a = (struct sockaddr_in *)&ss;
    a->sin_family = AF_INET;
    a->sin_port = htons(port);
    len = sizeof(*a);
  }
  if (bind(fd, (struct sockaddr *)&ss, len) == 0 && listen(fd, 1024) == 0)
    return fd;
fail:
  snprintf(err, errlen, "NTS-KE: cannot listen on TCP port %u (%s): %s", port,
           family == AF_INET6 ? "IPv6" : "IPv4", strerror(errno));
  if (fd >= 0)
    close(fd);
  return -1;
}

/* ---- connections ---- */

static void
close_conn(Conn *c)
{
  if (c->ssl)
    SSL_free(c->ssl);
  if (c->fd >= 0)
    close(c->fd);
  c->ssl = NULL;
  c->fd = -1;
  OPENSSL_cleanse(c->out, sizeof(c->out)); /* the cookies */
}

static bool
same_addr(const struct sockaddr_in6 *a, const struct sockaddr_in6 *b)
{
  return memcmp(&a->sin6_addr, &b->sin6_addr, sizeof(a->sin6_addr)) == 0;
}

/* The peer as an IPv6 address (IPv4 as v4-mapped), for the per-address limit. */
static void
peer_of(const struct sockaddr_storage *ss, struct sockaddr_in6 *out)
{
  memset(out, 0, sizeof(*out));
  out->sin6_family = AF_INET6;
  if (ss->ss_family == AF_INET6) {
    *out = *(const struct sockaddr_in6 *)ss;
    return;
  }
  const struct sockaddr_in *a = (const struct sockaddr_in *)ss;
  out->sin6_addr.s6_addr[10] = out->sin6_addr.s6_addr[11] = 0xff;
  memcpy(&out->sin6_addr.s6_addr[12], &a->sin_addr, 4);
}

/* `restrict ... ignore` or `noserve` for the peer: no NTS-KE (its cookies would be of no
 * use: the time it would ask for is refused too). */
static bool
refused(NKS_Server *s, const struct sockaddr_storage *ss)
{
  NetAddr a;
  if (!ADR_FromSockaddr((const struct sockaddr *)ss, &a))
    return true;
  ADR_Unmap(&a);
  pthread_mutex_lock(&s->rst_lock);
  uint32_t flags = s->rst ? RST_Match(s->rst, &a) : 0;
  pthread_mutex_unlock(&s->rst_lock);
  return (flags & (RST_IGNORE | RST_NOSERVE)) != 0;
}

static void
accept_one(NKS_Server *s, int lfd, double now)
{
  struct sockaddr_storage ss;
  socklen_t sl = sizeof(ss);
  int fd = accept4(lfd, (struct sockaddr *)&ss, &sl, SOCK_NONBLOCK | SOCK_CLOEXEC);
  if (fd < 0)
    return;
  count(&s->accepted, 1);
  if (refused(s, &ss)) {
    count(&s->refused_restrict, 1);
    close(fd);
    return;
  }
  struct sockaddr_in6 peer;
  peer_of(&ss, &peer);
  Conn *slot = NULL;
  int same = 0;
  for (int i = 0; i < NKS_MAX_CONNS; i++) {
    if (s->conns[i].fd < 0) {
      if (!slot)
        slot = &s->conns[i];
    } else if (same_addr(&s->conns[i].peer, &peer))
      same++;
  }
  if (!slot || same >= NKS_PER_ADDR) {
    count(slot ? &s->refused_addr : &s->refused_full, 1);
    close(fd);
    return;
  }
  int one = 1; /* what we send never waits for the ACK of what went before (Nagle) */
  setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
  slot->ssl = SSL_new(s->tls);
  if (!slot->ssl || SSL_set_fd(slot->ssl, fd) != 1) {
    if (slot->ssl)
      SSL_free(slot->ssl);
    slot->ssl = NULL;
    close(fd);
    return;
  }
  slot->fd = fd;
  slot->peer = peer;
  slot->state = ST_HANDSHAKE;
  slot->deadline = now + NKS_TIMEOUT;
  slot->inlen = slot->outlen = slot->outpos = 0;
}

/* The 8 cookies for this session into the response. */
static bool
answer_grant(NKS_Server *s, Conn *c, const NKE_Request *rq)
{
  uint8_t c2s[SIV_KEY_LEN], s2c[SIV_KEY_LEN], ctx[5], nonce[NCK_NONCE_LEN];
  uint8_t cookies[NKE_COOKIES * NCK_COOKIE_LEN];
  bool ok = true;
  NKE_ExporterContext(NKE_AEAD_AES_SIV_CMAC_256, false, ctx);
  ok = SSL_export_keying_material(c->ssl, c2s, sizeof(c2s), NKE_EXPORTER_LABEL,
                                  NKE_EXPORTER_LABEL_LEN, ctx, sizeof(ctx), 1) == 1;
  NKE_ExporterContext(NKE_AEAD_AES_SIV_CMAC_256, true, ctx);
  ok = ok && SSL_export_keying_material(c->ssl, s2c, sizeof(s2c), NKE_EXPORTER_LABEL,
                                        NKE_EXPORTER_LABEL_LEN, ctx, sizeof(ctx), 1) == 1;
  for (int i = 0; ok && i < NKE_COOKIES; i++)
    ok = RNG_Secure(nonce, sizeof(nonce)) &&
         NCK_Seal(&s->keys, s->siv, c2s, s2c, nonce, cookies + i * NCK_COOKIE_LEN);
  NKE_Grant g = {cookies, NKE_COOKIES, NCK_COOKIE_LEN, NULL, 0};
  if (ok)
    c->outlen = NKE_BuildResponse(rq, &g, c->out, sizeof(c->out));
  OPENSSL_cleanse(c2s, sizeof(c2s));
  OPENSSL_cleanse(s2c, sizeof(s2c));
  OPENSSL_cleanse(cookies, sizeof(cookies));
  if (!ok || c->outlen == 0)
    return false;
  count(&s->handshakes, 1);
  count(&s->cookies_issued, NKE_COOKIES);
  return true;
}

/* A complete request, or an error in it: the answer goes out next. */
static void
answer(NKS_Server *s, Conn *c, NKE_Status st, const NKE_Request *rq)
{
  c->state = ST_WRITE;
  if (st == NKE_OK && NKE_CanGrant(rq)) {
    if (answer_grant(s, c, rq))
      return;
    count(&s->internal_error, 1);
    c->outlen = NKE_BuildError(NKE_ERR_INTERNAL, c->out, sizeof(c->out));
    return;
  }
  if (st == NKE_OK) { /* negotiated nothing: the lists say so, and no cookies */
    count(&s->no_aead, 1);
    c->outlen = NKE_BuildResponse(rq, NULL, c->out, sizeof(c->out));
    return;
  }
  count(st == NKE_UNKNOWN_CRITICAL ? &s->unknown_critical : &s->bad_request, 1);
  c->outlen = NKE_BuildError(NKE_ErrorCode(st), c->out, sizeof(c->out));
}

/* Advance one connection; false when it is finished (to be closed). */
static bool
step(NKS_Server *s, Conn *c)
{
  int r, e;
  if (c->state == ST_HANDSHAKE) {
    r = SSL_accept(c->ssl);
    if (r == 1) {
      const unsigned char *proto = NULL;
      unsigned len = 0;
      SSL_get0_alpn_selected(c->ssl, &proto, &len);
      if (len == 0) { /* the client sent no ALPN at all: not an NTS-KE client (section 4) */
        count(&s->tls_failed, 1);
        return false;
      }
      c->state = ST_READ;
    } else {
      e = SSL_get_error(c->ssl, r);
      if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE)
        return true;
      count(&s->tls_failed, 1);
      return false;
    }
  }
  while (c->state == ST_READ) {
    size_t room = sizeof(c->in) - c->inlen;
    r = SSL_read(c->ssl, c->in + c->inlen, (int)(room ? room : 1));
    if (r <= 0) {
      e = SSL_get_error(c->ssl, r);
      if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE)
        return true;
      count(&s->closed_early, 1);
      return false;
    }
    if (room == 0) { /* more than a request can be */
      answer(s, c, NKE_BAD_REQUEST, NULL);
      break;
    }
    c->inlen += (size_t)r;
    NKE_Request rq;
    NKE_Status st = NKE_ParseRequest(c->in, c->inlen, &rq);
    if (st != NKE_INCOMPLETE)
      answer(s, c, st, &rq);
  }
  while (c->outpos < c->outlen) {
    r = SSL_write(c->ssl, c->out + c->outpos, (int)(c->outlen - c->outpos));
    if (r <= 0) {
      e = SSL_get_error(c->ssl, r);
      return e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE;
    }
    c->outpos += (size_t)r;
  }
  SSL_shutdown(c->ssl); /* close_notify; we do not wait for the client's */
  return false;
}

static void *
run(void *arg)
{
  NKS_Server *s = arg;
  for (;;) {
    double now = mono();
    if (now >= s->next_key_check) {
      char err[512];
      if (!check_keys(s, err, sizeof(err)))
        LOG_Warnx("NTS cookie keys: %s", err);
      s->next_key_check = now + 60;
    }
    nfds_t n = 0;
    s->pfd[n++] = (struct pollfd){.fd = s->stop_pipe[0], .events = POLLIN};
    for (int i = 0; i < s->nl; i++)
      s->pfd[n++] = (struct pollfd){.fd = s->lfd[i], .events = POLLIN};
    int map[NKS_MAX_CONNS];
    int nc = 0;
    for (int i = 0; i < NKS_MAX_CONNS; i++) {
      Conn *c = &s->conns[i];
      if (c->fd < 0)
        continue;
      if (now >= c->deadline) {
        count(&s->timeouts, 1);
        close_conn(c);
        continue;
      }
      short ev = SSL_want_write(c->ssl) || c->state == ST_WRITE ? POLLOUT : POLLIN;
      map[nc++] = i;
      s->pfd[n++] = (struct pollfd){.fd = c->fd, .events = ev};
    }
    if (poll(s->pfd, n, 250) < 0 && errno != EINTR)
      break;
    if (s->pfd[0].revents)
      break;
    now = mono();
    for (int i = 0; i < nc; i++)
      if (s->pfd[1 + s->nl + i].revents && !step(s, &s->conns[map[i]]))
        close_conn(&s->conns[map[i]]);
    for (int i = 0; i < s->nl; i++)
      if (s->pfd[1 + i].revents)
        for (int k = 0; k < 64; k++) /* a bounded burst per wakeup */
          accept_one(s, s->lfd[i], now);
    ERR_clear_error();
  }
  return NULL;
}

static void
destroy(NKS_Server *s)
{
  for (int i = 0; s->conns && i < NKS_MAX_CONNS; i++)
    close_conn(&s->conns[i]);
  for (int i = 0; i < s->nl; i++)
    close(s->lfd[i]);
  if (s->stop_pipe[0] >= 0) {
    close(s->stop_pipe[0]);
    close(s->stop_pipe[1]);
  }
  NTL_Destroy(s->tls);
  SIV_Destroy(s->siv);
  NCK_StoreDestroy(s->store);
  RST_Destroy(s->rst);
  pthread_mutex_destroy(&s->rst_lock);
  OPENSSL_cleanse(&s->last_published, sizeof(s->last_published));
  OPENSSL_cleanse(&s->keys, sizeof(s->keys));
  free(s->conns);
  free(s->pfd);
  free(s->cookie_file);
  free(s);
}

/* Room for every connection's descriptor: raise the soft limit to the hard one. */
static void
raise_fd_limit(void)
{
  struct rlimit rl;
  if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
    rl.rlim_cur = rl.rlim_max;
    setrlimit(RLIMIT_NOFILE, &rl);
  }
}

NKS_Server *
NKS_Create(const CNF_Nts *n, char *err, size_t errlen)
{
  NKS_Server *s = calloc(1, sizeof(*s));
  if (!s) {
    snprintf(err, errlen, "out of memory");
    return NULL;
  }
  s->stop_pipe[0] = s->stop_pipe[1] = -1;
  s->conns = calloc(NKS_MAX_CONNS, sizeof(*s->conns));
  s->pfd = calloc(NKS_MAX_CONNS + 3, sizeof(*s->pfd));
  s->siv = SIV_Create();
  s->store = NCK_StoreCreate();
  pthread_mutex_init(&s->rst_lock, NULL);
  s->cookie_file = n->cookie ? strdup(n->cookie) : NULL;
  if (!s->conns || !s->pfd || !s->siv || !s->store || (n->cookie && !s->cookie_file) ||
      pipe2(s->stop_pipe, O_CLOEXEC) != 0) {
    snprintf(err, errlen, "NTS-KE: out of memory");
    destroy(s);
    return NULL;
  }
  for (int i = 0; i < NKS_MAX_CONNS; i++)
    s->conns[i].fd = -1;
  raise_fd_limit();
  s->tls = NTL_CreateServer(n, err, errlen);
  if (!s->tls || !check_keys(s, err, errlen)) {
    destroy(s);
    return NULL;
  }
  s->next_key_check = mono() + 60;
  char e6[256];
  s->lfd[0] = listen_on(AF_INET, n->port, err, errlen);
  if (s->lfd[0] < 0) {
    destroy(s);
    return NULL;
  }
  s->nl = 1;
  s->lfd[1] = listen_on(AF_INET6, n->port, e6, sizeof(e6)); /* optional: hosts without v6 */
  if (s->lfd[1] >= 0)
    s->nl++;
  return s;
}

bool
NKS_Run(NKS_Server *s, char *err, size_t errlen)
{
  if (pthread_create(&s->thread, NULL, run, s) != 0) {
    snprintf(err, errlen, "NTS-KE: cannot start its thread");
    return false;
  }
  s->running = true;
  return true;
}

void
NKS_Stop(NKS_Server *s)
{
  if (!s)
    return;
  if (s->running) {
    char b = 1;
    if (write(s->stop_pipe[1], &b, 1) != 1)
      LOG_Warn("NTS-KE: cannot signal its thread");
    pthread_join(s->thread, NULL);
  }
  destroy(s);
}

void
NKS_GetCounters(const NKS_Server *s, NKS_Counters *out)
{
  memset(out, 0, sizeof(*out));
  if (!s)
    return;
#define GET(n) out->n = atomic_load_explicit(&s->n, memory_order_relaxed);
  COUNTERS(GET)
#undef GET
}

size_t
NKS_GetRows(const NKS_Server *s, NKS_Row out[NKS_N_COUNTERS])
{
  NKS_Counters c;
  size_t n = 0;
  NKS_GetCounters(s, &c);
#define ROW(f) out[n++] = (NKS_Row){#f, c.f};
  COUNTERS(ROW)
#undef ROW
  return n;
}

#define ONE(f) +1
_Static_assert(0 COUNTERS(ONE) == NKS_N_COUNTERS, "NKS_N_COUNTERS counts COUNTERS");
#undef ONE

NCK_Store *
NKS_Keys(NKS_Server *s)
{
  return s ? s->store : NULL;
}

bool
NKS_SetRestrict(NKS_Server *s, const RST_List *rst)
{
  RST_List *copy = rst ? RST_Copy(rst) : NULL;
  if (rst && !copy)
    return false;
  pthread_mutex_lock(&s->rst_lock);
  RST_List *old = s->rst;
  s->rst = copy;
  pthread_mutex_unlock(&s->rst_lock);
  RST_Destroy(old);
  return true;
}
