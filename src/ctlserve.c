#include "ctlserve.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

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
  char names[CTL_R_COUNT][CSV_NAME_LEN]; /* "ctl_<reason>", for CTL_Counter */
  CTL_Counter counters[SRV_R_COUNT + CTL_R_COUNT + 8];
  LOG_Limiter log_limit;
  CLI_Client *cli;
  CTL_Peer peers[CSV_MAX_PEERS];
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
  NTT_Now now;
  CLK_ReadNow(clk, &now);
  s->start_mono_ns = now.mono_ns;
  for (int i = 0; i < CTL_R_COUNT; i++)
    snprintf(s->names[i], CSV_NAME_LEN, "ctl_%s", CTL_ReasonName((CTL_Reason)i));
  return s;
}

void
CSV_Destroy(CSV_Server *s)
{
  free(s);
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
    s->counters[n++] = (CTL_Counter){s->names[i], s->reasons[i]};
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
send_reply(CSV_Server *s, const WRK_Control *c)
{
  const CTW_Datagrams *wire = &s->out.wire;
  size_t n = wire->count < NIO_BATCH ? wire->count : NIO_BATCH;
  for (size_t i = 0; i < n; i++) {
    NIO_Reply *r = &s->batch.out[i];
    memcpy(r->data, wire->buf[i], wire->len[i]);
    r->len = wire->len[i];
    r->req_len = c->len;
    r->dst = c->src;
    r->src = c->dst;
    r->ifindex = c->ifindex;
  }
  if (n > 0 && NIO_Send(c->sock, &s->batch, (int)n) < (int)n) {
    NTT_Now now;
    CLK_ReadNow(s->clk, &now);
    if (LOG_Allow(&s->log_limit, now.mono_ns, 5, 60))
      LOG_Warn("control reply not (fully) sent");
  }
}

void
CSV_Handle(void *arg, int self, WRK_Worker *w)
{
  CSV_Server *s = arg;
  size_t n;
  WRK_Control *reqs = WRK_PendingControl(w, &n);
  POL_Exclusive(s->pool, self);
  NTT_Now now;
  CLK_ReadNow(s->clk, &now);
  WRK_Counters sum;
  POL_SumCounters(s->pool, &sum);
  CTL_Stats st;
  fill_stats(s, &sum, now.mono_ns, &st);
  ConfigureArg ca = {.s = s};
  CTL_Ctx ctx;
  for (size_t i = 0; i < n; i++) {
    if (i == 0 || ca.changed) { /* a :config replaced the tables the context points to */
      RUN_ControlContext(s->run, &ctx);
      if (s->cli)
        CLI_FillControl(s->cli, &ctx, s->peers, CSV_MAX_PEERS);
      ctx.stats = &st;
      ctx.counters = s->counters;
      ctx.n_counters = fill_counters(s, &sum);
      ctx.configure = configure;
      ctx.configure_arg = &ca;
      ca.changed = false;
    }
    CTL_Reason why = CTL_Handle(&ctx, reqs[i].data, reqs[i].len, &reqs[i].src, reqs[i].rflags,
                                &reqs[i].rx, &s->out);
    s->reasons[why]++;
    send_reply(s, &reqs[i]);
  }
  POL_Release(s->pool);
}

void
CSV_LogCounters(const CSV_Server *s)
{
  for (int i = 0; i < CTL_R_COUNT; i++)
    LOG_Info("stats: %s %llu", s->names[i], (unsigned long long)s->reasons[i]);
}
