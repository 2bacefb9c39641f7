#include "ctlserve.h"

#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "control.h"
#include "log.h"
#include "netio.h"

#define CSV_NAME_LEN 40
#define CSV_MAX_PEERS 64

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
  CTL_Counter counters[SRV_R_COUNT + CTL_R_COUNT + 8];
  LOG_Limiter log_limit;
  CLI_Client *cli;
  CTL_Peer peers[CSV_MAX_PEERS];
  int local_fd;
  bool local_unlink; /* CSV_CloseLocal removes the file (see CSV_LeaveLocalFile) */
  char local_path[sizeof(((struct sockaddr_un *)0)->sun_path)];
};

void
CSV_SetClient(CSV_Server *s, CLI_Client *cli)
{
  s->cli = cli;
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
  free(s);
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
  st->uptime = (uint64_t)((mono_ns - s->start_mono_ns) / 1000000000);
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

static size_t
fill_counters(CSV_Server *s, const WRK_Counters *c)
{
  size_t n = 0;
  for (int i = 0; i < SRV_R_COUNT; i++)
    s->counters[n++] = (CTL_Counter){SRV_ReasonName((SRV_Reason)i), c->reasons[i]};
  for (int i = 0; i < CTL_R_COUNT; i++)
    s->counters[n++] = (CTL_Counter){s->names[i], reason_count(s, i)};
  s->counters[n++] = (CTL_Counter){"blocked_larger", c->blocked_larger};
  return n;
}

typedef struct {
  CSV_Server *s;
  bool changed;
} ConfigureArg;

static bool
configure(void *arg, const char *text, char *reply, size_t replycap)
{
  ConfigureArg *a = arg;
  NTT_Now now;
  CLK_ReadNow(a->s->clk, &now);
  bool ok = RUN_Configure(a->s->run, a->s->config_path, text, &now, reply, replycap);
  if (ok) {
    POL_SetContext(a->s->pool, RUN_Context(a->s->run));
    a->changed = true;
  }
  LOG_Info("runtime configuration %s (%zu octets)%s%s", ok ? "applied" : "refused",
           strlen(text), reply[0] ? ": " : "", reply);
  return ok;
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
    CTL_Reason why = CTL_Handle(&x.ctx, reqs[i].data, reqs[i].len, &reqs[i].src,
                                reqs[i].rflags, &reqs[i].rx, &s->out);
    s->reasons[why]++;
    send_reply(s, &reqs[i], &s->out, &s->batch);
  }
  POL_Release(s->pool);
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
  Section x;
  enter(s, -1, &x);
  x.ctx.local_admin = true;
  NetAddr src;
  ADR_Parse("127.0.0.1", &src);
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
