#include "ctlserve.h"

#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "control.h"
#include "log.h"
#include "netio.h"
#include "ntskesrv.h"
#include "rng.h"
#include "siphash.h"

#define CSV_NAME_LEN 40
#define CSV_MAX_PEERS 64
#define CSV_CONFIG_QUEUE WRK_MAX_CONTROL /* :config requests waiting for the main thread */
#define CSV_REPLAY_MAX 4096              /* signed :config requests answered until a restart */
#define CSV_CONFIG_ATTEMPTS 3 /* prepares of one :config when others commit meanwhile */

struct CSV_Server {
  RUN_State *run;
  POL_Pool *pool;
  const CLK_Clock *clk;
  const char *config_path;
  int64_t start_mono_ns;
  CTL_Output out;  /* used inside exclusive sections only */
  NIO_Batch batch; /* idem */
  uint64_t reasons[CTL_R_COUNT];
  /* The MRU path (REQ_NONCE, READ_MRU without a MAC), answered by each serving thread
   * outside any exclusive section: its own output, batch and counters (read with atomics),
   * and what it needs of the configuration, none of which a reload replaces. */
  int nthreads;
  CTL_Output *mru_out;
  NIO_Batch *mru_batch;
  uint64_t (*mru_reasons)[CTL_R_COUNT];
  MON_Table *mon;
  uint8_t nonce_secret[16];
  uint8_t leap; /* as of the last exclusive section (atomic) */
  pthread_mutex_t log_lock;
  char names[CTL_R_COUNT][CSV_NAME_LEN]; /* "ctl_<reason>", for CTL_Counter */
  CTL_Counter counters[SRV_R_COUNT + CTL_R_COUNT + 8 + CLI_NTS_COUNTERS + NKS_N_COUNTERS];
  LOG_Limiter log_limit;
  CLI_Client *cli;
  const NKS_Server *nks;
  char nks_names[NKS_N_COUNTERS][CSV_NAME_LEN]; /* "nts_ke_<name>" */
  CTL_Peer peers[CSV_MAX_PEERS];
  int local_fd;
  bool local_unlink; /* CSV_CloseLocal removes the file (see CSV_LeaveLocalFile) */
  char local_path[sizeof(((struct sockaddr_un *)0)->sun_path)];
  /* :config requests that passed the checks, waiting for the main thread (which prepares
   * them outside any exclusive section); config_fd (an eventfd) wakes it. */
  pthread_mutex_t queue_lock;
  WRK_Control queue[CSV_CONFIG_QUEUE];
  size_t nqueue;
  int config_fd;
  /* The replay window: a keyed digest of every signed :config request answered since the
   * start (inside exclusive sections only). */
  SIP_Key replay_key;
  uint64_t replay[CSV_REPLAY_MAX];
  size_t nreplay;
  LOG_Limiter replay_log_limit;
};

void
CSV_SetClient(CSV_Server *s, CLI_Client *cli)
{
  s->cli = cli;
}

void
CSV_SetNtsServer(CSV_Server *s, const NKS_Server *nks)
{
  NKS_Row rows[NKS_N_COUNTERS];
  size_t n = NKS_GetRows(nks, rows);
  for (size_t i = 0; i < n; i++)
    snprintf(s->nks_names[i], sizeof(s->nks_names[i]), "nts_ke_%s", rows[i].name);
  s->nks = nks;
}

CSV_Server *
CSV_Create(RUN_State *run, POL_Pool *pool, const CLK_Clock *clk, const char *config_path)
{
  CSV_Server *s = calloc(1, sizeof(*s));
  if (!s)
    return NULL;
  s->run = run;
  s->pool = pool;
  s->clk = clk;
  s->config_path = config_path;
  s->local_fd = -1;
  uint8_t key[16];
  s->config_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
  if (s->config_fd < 0 || !RNG_Secure(key, sizeof(key))) {
    if (s->config_fd >= 0)
      close(s->config_fd);
    free(s);
    return NULL;
  }
  SIP_SetKey(&s->replay_key, key);
  pthread_mutex_init(&s->queue_lock, NULL);
  NTT_Now now;
  CLK_ReadNow(clk, &now);
  s->start_mono_ns = now.mono_ns;
  for (int i = 0; i < CTL_R_COUNT; i++)
    snprintf(s->names[i], CSV_NAME_LEN, "ctl_%s", CTL_ReasonName((CTL_Reason)i));
  s->nthreads = POL_Threads(pool);
  s->mru_out = calloc((size_t)s->nthreads, sizeof(*s->mru_out));
  s->mru_batch = calloc((size_t)s->nthreads, sizeof(*s->mru_batch));
  s->mru_reasons = calloc((size_t)s->nthreads, sizeof(*s->mru_reasons));
  pthread_mutex_init(&s->log_lock, NULL);
  if (!s->mru_out || !s->mru_batch || !s->mru_reasons) {
    CSV_Destroy(s);
    return NULL;
  }
  CTL_Ctx ctx; /* before the threads start: the table and the secret live as long as run */
  RUN_ControlContext(run, &ctx);
  s->mon = ctx.mon;
  memcpy(s->nonce_secret, ctx.nonce_secret, sizeof(s->nonce_secret));
  s->leap = ctx.sys->leap;
  return s;
}

void
CSV_Destroy(CSV_Server *s)
{
  if (!s)
    return;
  CSV_CloseLocal(s);
  free(s->mru_out);
  free(s->mru_batch);
  free(s->mru_reasons);
  pthread_mutex_destroy(&s->log_lock);
  close(s->config_fd);
  pthread_mutex_destroy(&s->queue_lock);
  free(s);
}

int
CSV_ConfigFd(const CSV_Server *s)
{
  return s->config_fd;
}

/* Requests answered so far for a reason, both paths. */
static uint64_t
reason_count(const CSV_Server *s, int why)
{
  uint64_t n = s->reasons[why];
  for (int t = 0; t < s->nthreads; t++)
    n += __atomic_load_n(&s->mru_reasons[t][why], __ATOMIC_RELAXED);
  return n;
}

static uint64_t
sum_reasons(const WRK_Counters *c, const SRV_Reason *r, size_t n)
{
  uint64_t total = 0;
  for (size_t i = 0; i < n; i++)
    total += c->reasons[r[i]];
  return total;
}

#define SUM(c, ...)                                                                           \
  sum_reasons(c, (const SRV_Reason[]){__VA_ARGS__},                                           \
              sizeof((const SRV_Reason[]){__VA_ARGS__}) / sizeof(SRV_Reason))

/* ntpq's sysstats/iostats from our counters (docs/control.md lists the mapping). */
static void
fill_stats(const CSV_Server *s, const WRK_Counters *c, int64_t mono_ns, CTL_Stats *st)
{
  memset(st, 0, sizeof(*st));
  /* Rounded up: ntpq's sysstats divides the packet counts by ss_reset and fails on 0. */
  st->uptime = (uint64_t)((mono_ns - s->start_mono_ns + 999999999) / 1000000000);
  st->received = c->received;
  st->badformat = SUM(c, SRV_R_DROP_SHORT, SRV_R_DROP_VERSION, SRV_R_DROP_TRAILER,
                      SRV_R_DROP_MODE0, SRV_R_DROP_EMPTY);
  st->badauth = SUM(c, SRV_R_CRYPTO_NAK, SRV_R_KOD_CRYP);
  st->declined = SUM(c, SRV_R_DROP_RESPONSE, SRV_R_DROP_SYMMETRIC, SRV_R_DROP_MODE7,
                     SRV_R_DROP_CTL_RESPONSE, SRV_R_DROP_PORT0, SRV_R_DROP_MCAST_SRC);
  st->restricted = SUM(c, SRV_R_DROP_IGNORE, SRV_R_DROP_NOSERVE, SRV_R_DROP_NOTRUST,
                       SRV_R_DROP_NOQUERY, SRV_R_KOD_DENY, SRV_R_KOD_RSTR, SRV_R_DROP_FLAKE);
  st->limited = SUM(c, SRV_R_DROP_LIMITED, SRV_R_KOD_RATE, SRV_R_SERVED_LEAK,
                    SRV_R_DROP_KOD_LIMIT, SRV_R_DROP_CTL_LIMITED);
  st->kodsent = SUM(c, SRV_R_KOD_RATE, SRV_R_KOD_DENY, SRV_R_KOD_RSTR, SRV_R_KOD_CRYP);
  st->processed = SUM(c, SRV_R_SERVED, SRV_R_SERVED_AUTH, SRV_R_SERVED_LEAK);
  st->numctlreq = c->reasons[SRV_R_CONTROL];
  st->io_received = c->received;
  st->io_sent = c->sent;
  st->io_sendfailed = c->send_errors;
  st->io_dropped = c->oversize + c->recv_errors;
}

void
CSV_SysStats(const CSV_Server *s, const WRK_Counters *sum, STF_Sys *out)
{
  CTL_Stats st;
  fill_stats(s, sum, s->start_mono_ns, &st);
  *out = (STF_Sys){.received = st.received,
                   .processed = st.processed,
                   .newversion = st.thisver,
                   .oldversion = st.oldver,
                   .restricted = st.restricted,
                   .badlength = st.badformat,
                   .badauth = st.badauth,
                   .declined = st.declined,
                   .limited = st.limited,
                   .kodsent = st.kodsent};
}

static size_t
fill_counters(CSV_Server *s, const WRK_Counters *c)
{
  size_t n = 0;
  for (int i = 0; i < SRV_R_COUNT; i++)
    s->counters[n++] = (CTL_Counter){SRV_ReasonName((SRV_Reason)i), c->reasons[i]};
  for (int i = 0; i < CTL_R_COUNT; i++)
    s->counters[n++] = (CTL_Counter){s->names[i], reason_count(s, i)};
  s->counters[n++] = (CTL_Counter){"blocked_larger", c->blocked_larger};
  if (s->cli) /* the NTS client's (client_nts_*) */
    n += CLI_NtsCounters(s->cli, s->counters + n, CLI_NTS_COUNTERS);
  if (s->nks) { /* the NTS-KE server's (nts_ke_*) */
    NKS_Row rows[NKS_N_COUNTERS];
    size_t k = NKS_GetRows(s->nks, rows);
    for (size_t i = 0; i < k; i++)
      s->counters[n++] = (CTL_Counter){s->nks_names[i], rows[i].value};
  }
  return n;
}

/* A :config is answered in two steps. A serving thread, in its section, lets CTL_Handle
 * check it (authentication, nomodify, ...); the callback then only queues it (CFG_DEFER)
 * for the main thread, which prepares it -- parsing, interfaces, name lookups -- while the
 * serving threads go on, and answers it in a short section of its own, where CTL_Handle
 * checks it again and the callback commits what was prepared (CFG_COMMIT). */
typedef enum { CFG_DEFER, CFG_COMMIT } ConfigMode;

typedef struct {
  CSV_Server *s;
  bool changed;
  ConfigMode mode;
  const WRK_Control *req; /* the request being answered */
  bool deferred;          /* CFG_DEFER: queued, answer later */
  RUN_Pending *pending;   /* CFG_COMMIT: prepared (NULL: refused, prep_reply says why) */
  const char *prep_reply;
  bool last_try; /* CFG_COMMIT: refuse rather than prepare again */
  bool stale;    /* CFG_COMMIT: another commit came in; prepare again */
} ConfigureArg;

/* A keyed digest of what a signed request's MAC covers, and its key id; false if the
 * request carries no MAC. Two requests with the same digest are the same request. */
static bool
request_digest(const CSV_Server *s, const WRK_Control *c, uint64_t *out)
{
  CTW_Header h;
  uint8_t buf[PKT_MAX_LEN + 4];
  if (CTW_ParseRequest(c->data, c->len, &h) != CTW_PARSE_OK || !h.mac.has_mac ||
      h.mac.mac_offset > c->len)
    return false;
  memcpy(buf, c->data, h.mac.mac_offset);
  PKT_Put32(buf + h.mac.mac_offset, h.mac.key_id);
  *out = SIP_Hash24(&s->replay_key, buf, (size_t)h.mac.mac_offset + 4);
  return true;
}

static bool
replay_seen(const CSV_Server *s, uint64_t digest)
{
  for (size_t i = 0; i < s->nreplay; i++)
    if (s->replay[i] == digest)
      return true;
  return false;
}

/* In a serving thread's section: refuse a replayed request, else queue it for the main
 * thread. Every signed request that gets this far is remembered, whatever its answer. */
static bool
defer_config(ConfigureArg *a, char *reply, size_t replycap)
{
  CSV_Server *s = a->s;
  uint64_t digest;
  if (!request_digest(s, a->req, &digest)) { /* cannot happen: the control key needs a MAC */
    snprintf(reply, replycap, "Config Failed: not signed");
    return false;
  }
  if (replay_seen(s, digest)) {
    snprintf(reply, replycap, "Config Failed: replayed request (already answered)");
    char who[64];
    if (LOG_Allow(&s->replay_log_limit, a->req->rx.mono_ns, 5, 60))
      LOG_Warnx("runtime configuration refused: a replayed request from %s",
                ADR_Format(&a->req->src, who, sizeof(who)));
    return false;
  }
  if (s->nreplay == CSV_REPLAY_MAX) {
    snprintf(reply, replycap,
             "Config Failed: %d signed requests answered since the start (replay window "
             "full); restart the daemon to allow more",
             CSV_REPLAY_MAX);
    return false;
  }
  s->replay[s->nreplay++] = digest;
  pthread_mutex_lock(&s->queue_lock);
  bool room = s->nqueue < CSV_CONFIG_QUEUE;
  if (room)
    s->queue[s->nqueue++] = *a->req;
  pthread_mutex_unlock(&s->queue_lock);
  if (!room) {
    snprintf(reply, replycap, "Config Failed: busy (%d requests waiting); send it again",
             CSV_CONFIG_QUEUE);
    return false;
  }
  uint64_t one = 1;
  if (write(s->config_fd, &one, sizeof(one)) < 0) {
    /* the counter is full only if the main thread stopped reading: it will see the queue */
  }
  a->deferred = true;
  return false;
}

/* In the main thread's section: commit what was prepared, unless another commit came in
 * since (then prepare again, or give up on the last try). */
static bool
commit_config(ConfigureArg *a, const char *text, char *reply, size_t replycap)
{
  CSV_Server *s = a->s;
  bool ok = false;
  if (!a->pending) {
    snprintf(reply, replycap, "%s", a->prep_reply);
  } else if (!RUN_IsCurrent(s->run, a->pending) && !a->last_try) {
    RUN_Discard(a->pending);
    a->pending = NULL;
    a->stale = true;
    return false;
  } else {
    RUN_Errors errs = {0};
    NTT_Now now;
    CLK_ReadNow(s->clk, &now);
    ok = RUN_Commit(s->run, a->pending, &now, &errs); /* refuses a stale one */
    a->pending = NULL;
    if (ok) {
      snprintf(reply, replycap, "%s", a->prep_reply);
      POL_SetContext(s->pool, RUN_Context(s->run));
      a->changed = true;
    } else {
      RUN_FailureReply(&errs, reply, replycap);
    }
    RUN_FreeErrors(&errs);
  }
  size_t octets, lines = RUN_RuntimeSize(s->run, &octets);
  LOG_Info("runtime configuration %s (%zu octets)%s%s; runtime lines in force: %zu line%s, "
           "%zu octets",
           ok ? "applied" : "refused", strlen(text), reply[0] ? ": " : "", reply, lines,
           lines == 1 ? "" : "s", octets);
  return ok;
}

static bool
configure(void *arg, const char *text, char *reply, size_t replycap)
{
  ConfigureArg *a = arg;
  if (a->mode == CFG_DEFER)
    return defer_config(a, reply, replycap);
  return commit_config(a, text, reply, replycap);
}

static void
send_reply(CSV_Server *s, const WRK_Control *c, const CTL_Output *out, NIO_Batch *batch)
{
  const CTW_Datagrams *wire = &out->wire;
  size_t n = wire->count < NIO_BATCH ? wire->count : NIO_BATCH;
  for (size_t i = 0; i < n; i++) {
    NIO_Reply *r = &batch->out[i];
    memcpy(r->data, wire->buf[i], wire->len[i]);
    r->len = wire->len[i];
    r->req_len = c->len;
    r->dst = c->src;
    r->src = c->dst;
    r->ifindex = c->ifindex;
  }
  if (n > 0 && NIO_Send(c->sock, batch, (int)n) < (int)n) {
    NTT_Now now;
    CLK_ReadNow(s->clk, &now);
    pthread_mutex_lock(&s->log_lock);
    bool log = LOG_Allow(&s->log_limit, now.mono_ns, 5, 60);
    pthread_mutex_unlock(&s->log_lock);
    if (log)
      LOG_Warn("control reply not (fully) sent");
  }
}

/* The context for the configuration in force (inside an exclusive section). */
static void
build_context(CSV_Server *s, const WRK_Counters *sum, const CTL_Stats *st, ConfigureArg *ca,
              CTL_Ctx *ctx)
{
  RUN_ControlContext(s->run, ctx);
  if (s->cli)
    CLI_FillControl(s->cli, ctx, s->peers, CSV_MAX_PEERS);
  ctx->stats = st;
  ctx->counters = s->counters;
  ctx->n_counters = fill_counters(s, sum);
  ctx->configure = configure;
  ctx->configure_arg = ca;
  ca->changed = false;
}

/* What answering control requests needs, gathered once the other threads wait. */
typedef struct {
  NTT_Now now;
  WRK_Counters sum;
  CTL_Stats st;
  ConfigureArg ca;
  CTL_Ctx ctx;
} Section;

/* Open an exclusive section (the caller POL_Releases it) and build the context. */
static void
enter(CSV_Server *s, int self, Section *x)
{
  POL_Exclusive(s->pool, self);
  CLK_ReadNow(s->clk, &x->now);
  POL_SumCounters(s->pool, &x->sum);
  fill_stats(s, &x->sum, x->now.mono_ns, &x->st);
  x->ca = (ConfigureArg){.s = s};
  build_context(s, &x->sum, &x->st, &x->ca, &x->ctx);
  __atomic_store_n(&s->leap, x->ctx.sys->leap, __ATOMIC_RELAXED);
}

/* The MRU path: REQ_NONCE and READ_MRU without a MAC need only the monitor table (which
 * has its own locks and bounds the work of each request), the nonce secret and our leap
 * indicator, so a serving thread answers them without stopping the others. A request
 * with a MAC needs the keys, which a reload may replace: it takes the exclusive path. */
static bool
mru_request(const CSV_Server *s, int self, const WRK_Control *c)
{
  CTW_Header h;
  return self >= 0 && self < s->nthreads &&
         CTW_ParseRequest(c->data, c->len, &h) == CTW_PARSE_OK &&
         (h.opcode == CTW_OP_READ_MRU || h.opcode == CTW_OP_REQ_NONCE) && !h.mac.has_mac;
}

static void
answer_mru(CSV_Server *s, int self, const WRK_Control *c)
{
  SRV_System sys;
  CTL_Ctx ctx;
  memset(&sys, 0, sizeof(sys));
  memset(&ctx, 0, sizeof(ctx));
  sys.leap = __atomic_load_n(&s->leap, __ATOMIC_RELAXED);
  ctx.sys = &sys;
  ctx.mon = s->mon;
  memcpy(ctx.nonce_secret, s->nonce_secret, sizeof(ctx.nonce_secret));
  CTL_Reason why =
      CTL_Handle(&ctx, c->data, c->len, &c->src, c->rflags, &c->rx, &s->mru_out[self]);
  uint64_t *count = &s->mru_reasons[self][why]; /* written by this thread only */
  __atomic_store_n(count, __atomic_load_n(count, __ATOMIC_RELAXED) + 1, __ATOMIC_RELAXED);
  send_reply(s, c, &s->mru_out[self], &s->mru_batch[self]);
}

void
CSV_Handle(void *arg, int self, WRK_Worker *w)
{
  CSV_Server *s = arg;
  size_t n;
  WRK_Control *reqs = WRK_PendingControl(w, &n);
  bool mru[WRK_MAX_CONTROL], others = false;
  for (size_t i = 0; i < n; i++) {
    mru[i] = mru_request(s, self, &reqs[i]);
    if (mru[i])
      answer_mru(s, self, &reqs[i]);
    others = others || !mru[i];
  }
  if (!others)
    return;
  Section x;
  enter(s, self, &x);
  for (size_t i = 0; i < n; i++) {
    if (mru[i])
      continue;
    if (x.ca.changed) /* a :config replaced the tables the context points to */
      build_context(s, &x.sum, &x.st, &x.ca, &x.ctx);
    x.ca.mode = CFG_DEFER;
    x.ca.req = &reqs[i];
    x.ca.deferred = false;
    CTL_Reason why = CTL_Handle(&x.ctx, reqs[i].data, reqs[i].len, &reqs[i].src,
                                reqs[i].rflags, &reqs[i].rx, &s->out);
    if (x.ca.deferred) /* a :config: answered (and counted) by CSV_HandleConfig */
      continue;
    s->reasons[why]++;
    send_reply(s, &reqs[i], &s->out, &s->batch);
  }
  POL_Release(s->pool);
}

/* Answer one :config (main thread): prepare it with no section held, then answer it in a
 * section. from: the local socket's sender (local_admin), or NULL for a network request. */
static void
answer_config(CSV_Server *s, const WRK_Control *c, int local_fd)
{
  CTW_Header h;
  char text[CTW_MAX_DATA + 1], prep_reply[CTL_CONFIG_REPLY];
  if (CTW_ParseRequest(c->data, c->len, &h) != CTW_PARSE_OK)
    return;
  size_t n = h.count < CTW_MAX_DATA ? h.count : CTW_MAX_DATA;
  memcpy(text, h.data, n);
  text[n] = '\0'; /* text with a NUL in it is refused by CTL_Handle */
  for (int attempt = 1; attempt <= CSV_CONFIG_ATTEMPTS; attempt++) {
    RUN_Pending *p =
        RUN_PrepareConfigure(s->run, s->config_path, text, prep_reply, sizeof(prep_reply));
    Section x;
    enter(s, -1, &x);
    x.ctx.local_admin = local_fd >= 0;
    x.ca.mode = CFG_COMMIT;
    x.ca.req = c;
    x.ca.pending = p;
    x.ca.prep_reply = prep_reply;
    x.ca.last_try = attempt == CSV_CONFIG_ATTEMPTS;
    CTL_Reason why = CTL_Handle(&x.ctx, c->data, c->len, &c->src, c->rflags, &c->rx, &s->out);
    RUN_Discard(x.ca.pending); /* refused before the callback (e.g. the keys changed) */
    if (x.ca.stale) {
      POL_Release(s->pool);
      continue;
    }
    s->reasons[why]++;
    if (local_fd < 0)
      send_reply(s, c, &s->out, &s->batch);
    for (size_t i = 0; local_fd >= 0 && i < s->out.wire.count; i++)
      if (send(local_fd, s->out.wire.buf[i], s->out.wire.len[i], MSG_NOSIGNAL) < 0)
        break;
    POL_Release(s->pool);
    return;
  }
}

void
CSV_HandleConfig(CSV_Server *s)
{
  uint64_t count;
  if (read(s->config_fd, &count, sizeof(count)) < 0) {
    /* nothing signalled: the queue says what there is */
  }
  for (int k = 0; k < 8; k++) { /* a few per wakeup: signals and timers wait meanwhile */
    WRK_Control c;
    pthread_mutex_lock(&s->queue_lock);
    bool any = s->nqueue > 0;
    if (any) {
      c = s->queue[0];
      memmove(&s->queue[0], &s->queue[1], (s->nqueue - 1) * sizeof(s->queue[0]));
      s->nqueue--;
    }
    pthread_mutex_unlock(&s->queue_lock);
    if (!any)
      return;
    answer_config(s, &c, -1);
  }
  uint64_t one = 1; /* more waiting: come back after the other events */
  if (write(s->config_fd, &one, sizeof(one)) < 0) {
    /* cannot happen (the counter was just read) */
  }
}

int
CSV_OpenLocal(CSV_Server *s, const char *path, char *err, size_t errlen)
{
  struct sockaddr_un sa = {.sun_family = AF_UNIX};
  if (strlen(path) >= sizeof(sa.sun_path)) {
    snprintf(err, errlen, "control socket path too long: %s", path);
    return -1;
  }
  snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", path);
  int fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) {
    snprintf(err, errlen, "control socket: %s", strerror(errno));
    return -1;
  }
  unlink(path);             /* a stale socket from an earlier run */
  mode_t old = umask(0177); /* created 0600: only its owner (root) may connect */
  int rc = bind(fd, (struct sockaddr *)&sa, sizeof(sa));
  umask(old);
  if (rc < 0 || listen(fd, 8) < 0) {
    snprintf(err, errlen, "control socket %s: %s", path, strerror(errno));
    close(fd);
    return -1;
  }
  s->local_fd = fd;
  s->local_unlink = true;
  snprintf(s->local_path, sizeof(s->local_path), "%s", path);
  return fd;
}

void
CSV_LeaveLocalFile(CSV_Server *s)
{
  s->local_unlink = false;
}

void
CSV_CloseLocal(CSV_Server *s)
{
  if (s->local_fd < 0)
    return;
  close(s->local_fd);
  if (s->local_unlink)
    unlink(s->local_path);
  s->local_fd = -1;
}

/* Who may ask: root, or the user the daemon runs as. */
static bool
local_peer_allowed(CSV_Server *s, int fd)
{
  struct ucred cred;
  socklen_t cl = sizeof(cred);
  if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &cl) < 0)
    return false;
  if (cred.uid == 0 || cred.uid == geteuid())
    return true;
  NTT_Now now;
  CLK_ReadNow(s->clk, &now);
  if (LOG_Allow(&s->log_limit, now.mono_ns, 5, 60))
    LOG_Warnx("local control: refused uid %u (pid %d): only root or the daemon's user may ask",
              (unsigned)cred.uid, (int)cred.pid);
  return false;
}

/* One connection: one request (waited for at most 1 s), its answer, close. */
static void
local_exchange(CSV_Server *s, int fd)
{
  uint8_t req[PKT_MAX_LEN];
  struct pollfd p = {.fd = fd, .events = POLLIN};
  if (!local_peer_allowed(s, fd) || poll(&p, 1, 1000) <= 0)
    return;
  ssize_t n = recv(fd, req, sizeof(req), 0);
  if (n <= 0)
    return;
  NetAddr src;
  ADR_Parse("127.0.0.1", &src);
  CTW_Header h;
  if (CTW_ParseRequest(req, (size_t)n, &h) == CTW_PARSE_OK && h.opcode == CTW_OP_CONFIGURE) {
    WRK_Control c = {.len = (size_t)n, .src = src}; /* prepared outside any section */
    memcpy(c.data, req, (size_t)n);
    CLK_ReadNow(s->clk, &c.rx);
    answer_config(s, &c, fd);
    return;
  }
  Section x;
  enter(s, -1, &x);
  x.ctx.local_admin = true;
  CTL_Reason why = CTL_Handle(&x.ctx, req, (size_t)n, &src, 0, &x.now, &s->out);
  s->reasons[why]++;
  for (size_t i = 0; i < s->out.wire.count; i++) /* the connection's own buffer holds them */
    if (send(fd, s->out.wire.buf[i], s->out.wire.len[i], MSG_NOSIGNAL) < 0)
      break;
  POL_Release(s->pool); /* s->out belongs to the section */
}

void
CSV_HandleLocal(CSV_Server *s)
{
  for (int round = 0; round < 16; round++) {
    int fd = accept4(s->local_fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (fd < 0)
      return;
    local_exchange(s, fd);
    close(fd);
  }
}

/* A mode 6 request: READVAR (opcode 2) of names, or CONFIGURE (8) of text. */
static size_t
local_request(uint8_t opcode, const char *text, uint16_t seq, uint8_t *buf, size_t cap)
{
  size_t n = strlen(text);
  if (12 + n + 3 > cap)
    return 0;
  memset(buf, 0, 12 + n + 3);
  buf[0] = (2 << 3) | 6;
  buf[1] = opcode;
  PKT_Put16(buf + 2, seq);
  PKT_Put16(buf + 10, (uint16_t)n);
  memcpy(buf + 12, text, n);
  return 12 + ((n + 3) & ~(size_t)3);
}

/* Collect the answer to (seq, opcode) into data; returns the reassembly result. */
static CTW_ReassembleResult
local_answer(int fd, uint16_t seq, uint8_t opcode, uint8_t *data, size_t cap, size_t *len,
             uint16_t *status)
{
  static uint8_t dg[CTW_MAX_FRAGS][CTW_MAX_DATAGRAM];
  const uint8_t *ptrs[CTW_MAX_FRAGS];
  size_t lens[CTW_MAX_FRAGS], n = 0;
  CTW_ReassembleResult ra = CTW_RA_NO_LAST;
  while (n < CTW_MAX_FRAGS) {
    struct pollfd p = {.fd = fd, .events = POLLIN};
    if (poll(&p, 1, 5000) <= 0)
      return CTW_RA_NO_LAST;
    ssize_t got = recv(fd, dg[n], sizeof(dg[n]), 0);
    if (got < 0 && errno == EINTR)
      continue;
    if (got <= 0) /* closed: the daemon refused us, or went away */
      return CTW_RA_NO_LAST;
    ptrs[n] = dg[n];
    lens[n++] = (size_t)got;
    ra = CTW_Reassemble(ptrs, lens, n, seq, opcode, 0, data, cap, len, status);
    if (ra != CTW_RA_NO_LAST && ra != CTW_RA_GAP)
      break;
  }
  return ra;
}

/* Connect to the daemon at path: a connection only the process that listens there can
 * answer. It must have been set up by root or by us (SO_PEERCRED: the credentials at
 * listen()), else another user's socket would be believed. -1 after saying why. */
static int
local_connect(const char *path)
{
  struct sockaddr_un srv = {.sun_family = AF_UNIX};
  if (strlen(path) >= sizeof(srv.sun_path)) {
    fprintf(stderr, "ntpgated: --control: path too long: %s\n", path);
    return -1;
  }
  snprintf(srv.sun_path, sizeof(srv.sun_path), "%s", path);
  int fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
  if (fd < 0 || connect(fd, (struct sockaddr *)&srv, sizeof(srv)) < 0) {
    fprintf(stderr, "ntpgated: --control %s: %s\n", path, strerror(errno));
    if (fd >= 0)
      close(fd);
    return -1;
  }
  struct ucred cred;
  socklen_t cl = sizeof(cred);
  if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &cl) < 0 ||
      (cred.uid != 0 && cred.uid != geteuid())) {
    fprintf(stderr,
            "ntpgated: --control %s: served by uid %d, neither root nor us: not asking\n",
            path, cl == sizeof(cred) ? (int)cred.uid : -1);
    close(fd);
    return -1;
  }
  return fd;
}

int
CSV_LocalQuery(const char *path, const char *command, FILE *out)
{
  uint8_t opcode = 2;
  const char *text = "";
  if (strncmp(command, ":config ", 8) == 0) {
    opcode = 8;
    text = command + 8;
  } else if (strcmp(command, "rv") == 0 || strncmp(command, "rv ", 3) == 0) {
    text = command[2] ? command + 3 : "";
  } else {
    fprintf(stderr, "ntpgated: --control: the command is `rv [NAMES]` or `:config LINE`\n");
    return 2;
  }
  uint8_t req[PKT_MAX_LEN];
  static uint8_t data[CTW_MAX_FRAGS * CTW_MAX_DATA + 1];
  uint16_t seq = (uint16_t)(getpid() & 0xffff), status = 0;
  size_t len = local_request(opcode, text, seq, req, sizeof(req)), data_len = 0;
  if (len == 0) {
    fprintf(stderr, "ntpgated: --control: command too long\n");
    return 2;
  }
  int fd = local_connect(path);
  if (fd < 0)
    return 2;
  int rc = 2;
  if (send(fd, req, len, MSG_NOSIGNAL) < 0) {
    fprintf(stderr, "ntpgated: --control %s: %s\n", path, strerror(errno));
  } else {
    CTW_ReassembleResult ra =
        local_answer(fd, seq, opcode, data, sizeof(data) - 1, &data_len, &status);
    if (ra == CTW_RA_SERVER_ERROR) {
      fprintf(stderr, "ntpgated: --control: refused (error %u)\n", status >> 8);
      rc = 1;
    } else if (ra != CTW_RA_OK) {
      fprintf(stderr, "ntpgated: --control %s: no valid answer (%d)\n", path, (int)ra);
    } else {
      data[data_len] = '\0';
      fprintf(out, "%s%s", (char *)data, data_len && data[data_len - 1] == '\n' ? "" : "\n");
      rc = opcode == 8 && strstr((char *)data, "Failed") ? 1 : 0;
    }
  }
  close(fd);
  return rc;
}

void
CSV_LogCounters(const CSV_Server *s)
{
  for (int i = 0; i < CTL_R_COUNT; i++)
    LOG_Info("stats: %s %llu", s->names[i], (unsigned long long)reason_count(s, i));
}
