#include "worker.h"

#include <stdlib.h>
#include <string.h>

#include "log.h"

#define WRK_MAX_BATCHES 16 /* per wakeup: 512 datagrams */

struct WRK_Worker {
  const CLK_Clock *clk;
  const SRV_Ctx *ctx;
  RNG_State rng;
  SRV_Nts *nts; /* this thread's NTS state (server.h) */
  WRK_Counters counters;
  SRV_Verdict verdicts[NIO_BATCH]; /* of the replies queued in batch.out */
  LOG_Limiter kod_log;             /* KoDs sent: a few lines, then one a minute */
  WRK_Control control[WRK_MAX_CONTROL];
  size_t ncontrol;
  uint64_t wake_datagrams, wake_samples; /* since WRK_BeginWakeup */
  NIO_Batch batch;
};

WRK_Worker *
WRK_Create(const CLK_Clock *clk, uint64_t seed)
{
  WRK_Worker *w = calloc(1, sizeof(*w));
  if (!w)
    return NULL;
  w->clk = clk;
  RNG_Init(&w->rng, seed);
  w->nts = SRV_NtsCreate();
  if (!w->nts) {
    free(w);
    return NULL;
  }
  return w;
}

void
WRK_Destroy(WRK_Worker *w)
{
  if (!w)
    return;
  SRV_NtsDestroy(w->nts);
  free(w);
}

void
WRK_SetContext(WRK_Worker *w, const SRV_Ctx *ctx)
{
  w->ctx = ctx;
}

/* Keep a mode 6 request for the control path (dropped and counted when the list is full). */
static void
keep_control(WRK_Worker *w, const NIO_Socket *s, const NIO_Datagram *d, const SRV_Request *rq,
             uint32_t rflags)
{
  if (w->ncontrol == WRK_MAX_CONTROL) {
    w->counters.reasons[SRV_R_CONTROL]--;
    w->counters.reasons[SRV_R_DROP_CTL_LIMITED]++;
    return;
  }
  WRK_Control *c = &w->control[w->ncontrol++];
  memcpy(c->data, d->data, d->len);
  c->len = d->len;
  c->src = d->src;
  c->dst = d->dst;
  c->ifindex = d->ifindex;
  c->rx = rq->rx;
  c->rflags = rflags;
  c->sock = s;
}

/* Decide every datagram of the batch; returns how many replies were queued in b->out. */
static int
decide_batch(WRK_Worker *w, const NIO_Socket *s, NIO_Batch *b, int n, const NTT_Now *now)
{
  int nout = 0;
  for (int i = 0; i < n; i++) {
    NIO_Datagram *d = &b->in[i];
    w->counters.received_bytes += d->len;
    if (d->truncated) {
      w->counters.oversize++;
      continue;
    }
    SRV_Request rq = {
        .data = d->data, .len = d->len, .src = d->src, .rx = *now, .nts = w->nts};
    if (d->rx.tv_sec != 0)
      rq.rx.real = d->rx;
    NIO_Reply *r = &b->out[nout];
    SRV_Verdict *v = &w->verdicts[nout];
    SRV_Action act = SRV_Decide(w->ctx, &rq, &w->rng, r->data, v);
    w->counters.reasons[v->why]++;
    w->wake_samples += v->shed_sample;
    if (act == SRV_DROP)
      continue;
    if (act == SRV_CONTROL) {
      keep_control(w, s, d, &rq, v->rflags);
      continue;
    }
    r->len = v->len;
    r->req_len = d->len;
    if (act == SRV_KOD && LOG_Allow(&w->kod_log, now->mono_ns, 10, 60)) {
      char a[ADR_STRLEN];
      LOG_Info("sent %s to %s", SRV_ReasonName(v->why), ADR_FormatPort(&d->src, a, sizeof(a)));
    }
    r->dst = d->src;
    r->src = d->dst;
    r->ifindex = d->ifindex;
    nout++;
  }
  return nout;
}

static void
send_batch(WRK_Worker *w, const NIO_Socket *s, NIO_Batch *b, int nout)
{
  NTT_Now tx;
  CLK_ReadNow(w->clk, &tx); /* as late as possible: one reading just before the send */
  int keep = 0;
  for (int i = 0; i < nout; i++) {
    NIO_Reply *r = &b->out[i];
    const SRV_Verdict *v = &w->verdicts[i];
    size_t len = SRV_Finish(w->ctx, v, r->data, sizeof(r->data), &tx.real, &w->rng);
    if (len == 0) {
      w->counters.reasons[v->why]--;
      w->counters.reasons[SRV_R_DROP_SIGN]++;
      continue;
    }
    if (len > r->req_len) { /* the core promises this never happens; the edge enforces it */
      w->counters.blocked_larger++;
      continue;
    }
    r->len = len;
    if (keep != i)
      b->out[keep] = *r;
    keep++;
  }
  nout = keep;
  if (nout == 0)
    return;
  int sent = NIO_Send(s, b, nout);
  if (sent < 0)
    sent = 0;
  for (int i = 0; i < sent; i++)
    w->counters.sent_bytes += b->out[i].len;
  w->counters.sent += (uint64_t)sent;
  w->counters.send_errors += (uint64_t)(nout - sent);
}

void
WRK_Serve(WRK_Worker *w, const NIO_Socket *s)
{
  NIO_Batch *b = &w->batch;
  for (int round = 0; round < WRK_MAX_BATCHES; round++) {
    /* room for a whole batch of mode 6 requests, or stop draining: the rest waits in the
     * socket until the control path has answered these (the socket stays readable) */
    if (w->ncontrol + NIO_BATCH > WRK_MAX_CONTROL)
      return;
    int n = NIO_Receive(s, b);
    if (n < 0) {
      w->counters.recv_errors++;
      return;
    }
    if (n == 0)
      return;
    w->counters.received += (uint64_t)n;
    w->wake_datagrams += (uint64_t)n;
    SRV_NtsPrepare(w->nts, w->ctx->nts_keys); /* keys and nonces for this batch */
    NTT_Now now;
    CLK_ReadNow(w->clk, &now);
    int nout = decide_batch(w, s, b, n, &now);
    if (nout > 0)
      send_batch(w, s, b, nout);
    if (n < NIO_BATCH)
      return;
  }
}

void
WRK_BeginWakeup(WRK_Worker *w)
{
  w->wake_datagrams = w->wake_samples = 0;
}

bool
WRK_OnlySamples(const WRK_Worker *w)
{
  return w->wake_datagrams > 0 && w->wake_samples == w->wake_datagrams;
}

WRK_Control *
WRK_PendingControl(WRK_Worker *w, size_t *n)
{
  *n = w->ncontrol;
  return w->control;
}

void
WRK_ClearControl(WRK_Worker *w)
{
  w->ncontrol = 0;
}

const WRK_Counters *
WRK_GetCounters(const WRK_Worker *w)
{
  return &w->counters;
}

/* Every field by name. A counter added to WRK_Counters must be added here too: the size
 * check fails to compile until it is. */
_Static_assert(sizeof(WRK_Counters) == (8 + SRV_R_COUNT) * sizeof(uint64_t),
               "WRK_SumCounters must sum every field of WRK_Counters");

void
WRK_SumCounters(const WRK_Worker *w, WRK_Counters *sum)
{
  const WRK_Counters *c = &w->counters;
  sum->received += c->received;
  sum->received_bytes += c->received_bytes;
  sum->sent += c->sent;
  sum->sent_bytes += c->sent_bytes;
  sum->send_errors += c->send_errors;
  sum->recv_errors += c->recv_errors;
  sum->oversize += c->oversize;
  sum->blocked_larger += c->blocked_larger;
  for (size_t i = 0; i < SRV_R_COUNT; i++)
    sum->reasons[i] += c->reasons[i];
}
