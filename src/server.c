#include "server.h"

#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>

#include "leapsec.h"
#include "packet.h"
#include "rng.h"

/* Random octets for two batches (netio.h: 32 datagrams) of NTS replies: a nonce per reply
 * and per cookie. SRV_NtsPrepare refills it when half is gone, so a batch never runs dry. */
#define NTS_BATCH 32
#define NTS_POOL (2 * NTS_BATCH * NEF_NONCE_LEN * (1 + NEF_MAX_COOKIES))

struct SRV_Nts {
  SIV_Ctx *siv;
  NCK_Keys keys; /* this thread's copy */
  uint64_t gen;  /* of the store's set it copied */
  size_t avail;  /* random octets left, at the end of pool */
  uint8_t pool[NTS_POOL];
};

#define PHI 15e-6 /* s/s: dispersion growth while nothing updates the clock */

static const char *const reason_names[] = {
#define SRV_NAME(id, name) name,
    SRV_REASONS(SRV_NAME)
#undef SRV_NAME
};

const char *
SRV_ReasonName(SRV_Reason r)
{
  return (unsigned)r < SRV_R_COUNT ? reason_names[r] : "unknown";
}

static SRV_Action
drop(SRV_Verdict *v, SRV_Reason r)
{
  v->why = r;
  return SRV_DROP;
}

/* Mode 6 and 7 packets that are responses, errors or fragments must never be answered, from
 * any source -- our own address and port included (NTP bug 1331, CVE-2009-3563). */
static bool
is_control_response(const uint8_t *d, size_t len)
{
  if (PKT_PeekMode(d) == PKT_MODE_PRIVATE)
    return (d[0] & 0xc0) != 0; /* mode 7: R (response) or M (more) */
  /* mode 6: R, E or M in octet 1, or a non-zero fragment offset */
  return len < 2 || (d[1] & 0xe0) != 0 || (len >= 10 && PKT_Get16(d + 8) != 0);
}

/* Mode 6/7 requests. Mode 7 is never answered (RFC 8633: the monlist amplifier and the
 * bug 1331 loop lived there). Mode 6 goes to the control path if it passes its limits: per
 * source (the discard algorithm with its own parameters, see runtime.c) and in total (the
 * control table's KoD bucket, used as a request budget). */
static SRV_Action
decide_query(const SRV_Ctx *ctx, const SRV_Request *rq, uint32_t rflags, SRV_Verdict *v)
{
  if (rflags & RST_NOQUERY)
    return drop(v, SRV_R_DROP_NOQUERY);
  if (PKT_PeekMode(rq->data) == PKT_MODE_PRIVATE)
    return drop(v, SRV_R_DROP_MODE7);
  if (!ctx->ctl_mon)
    return drop(v, SRV_R_DROP_MODE6);
  if (MON_Check(ctx->ctl_mon, &rq->src, PKT_MODE_CONTROL, (uint8_t)PKT_PeekVersion(rq->data),
                RST_LIMITED, rq->rx.mono_ns, NULL) != MON_SERVE ||
      !MON_TakeKod(ctx->ctl_mon, rq->rx.mono_ns))
    return drop(v, SRV_R_DROP_CTL_LIMITED);
  v->why = SRV_R_CONTROL;
  return SRV_CONTROL;
}

static int8_t
reply_poll(const SRV_Policy *p, int8_t req_poll)
{
  int8_t poll = req_poll < p->min_poll ? p->min_poll : req_poll;
  return poll > p->max_poll ? p->max_poll : poll;
}

static NTT_Stamp
fuzz_low_bits(NTT_Stamp t, int8_t precision, RNG_State *rng)
{
  int bits = 32 + precision; /* fraction bits below our precision */
  if (bits <= 0)
    return t;
  if (bits > 32)
    bits = 32;
  uint64_t mask = (bits == 32) ? 0xffffffffULL : ((1ULL << bits) - 1);
  return (t & ~mask) | (RNG_Next(rng) & mask);
}

/* t (read as ts) as we serve it: with a leap being smeared, moved by the smear's offset. */
static NTT_Stamp
served_time(const SRV_Ctx *ctx, const struct timespec *ts)
{
  NTT_Stamp t = NTT_FromTimespec(ts);
  const SRV_Smear *sm = ctx->smear;
  if (!sm)
    return t;
  double off = LSC_SmearOffset(sm->leap, sm->dir, sm->interval,
                               (double)ts->tv_sec + (double)ts->tv_nsec * 1e-9);
  return off != 0.0 ? NTT_Add(t, off) : t;
}

static void
build_reply(const SRV_Ctx *ctx, const SRV_Request *rq, const PKT_Header *req, uint32_t rflags,
            RNG_State *rng, uint8_t *out)
{
  const SRV_System *s = ctx->sys;
  double age = (double)(rq->rx.mono_ns - s->update_mono_ns) / 1e9;
  PKT_Header h = {
      .leap = s->leap,
      .version = req->version,
      .mode = PKT_MODE_SERVER,
      .stratum = s->stratum >= 16 ? 0 : s->stratum,
      .poll = reply_poll(ctx->policy, req->poll),
      .precision = s->precision,
      .root_delay = NTT_ShortFromDouble(s->root_delay),
      .root_disp = NTT_ShortFromDouble(s->root_disp +
                                       (s->phi > 0 ? s->phi : PHI) * (age > 0 ? age : 0)),
      .refid = s->refid,
      .ref_ts = s->ref_ts,
      .org_ts = req->tx_ts,
      .rx_ts = fuzz_low_bits(served_time(ctx, &rq->rx.real), s->precision, rng),
      .tx_ts = 0,
  };
  if (rflags & RST_FUZZ) /* ntpd's `serverresponse fuzz`: blur when we were last set */
    h.ref_ts &= ~((uint64_t)0x3f << 32 | 0xffffffffULL);
  PKT_EncodeHeader(&h, out);
}

/* A Kiss-o'-Death in the format ntpd sends and clients accept (RFC 5905 7.4): LI 3,
 * stratum 0, the kiss code as refid, the request's version, mode 4, and the request's
 * transmit timestamp as origin, receive and transmit, so it reveals nothing of our clock.
 * Precision, root delay/dispersion and reference time are the request's own. 48 octets. */
static void
build_kod(const SRV_Ctx *ctx, const PKT_Header *req, const char *code, uint8_t *out)
{
  PKT_Header h = *req;
  h.leap = PKT_LEAP_UNSYNC;
  h.mode = PKT_MODE_SERVER;
  h.stratum = 0;
  h.poll = reply_poll(ctx->policy, req->poll);
  h.refid = PKT_RefidFromCode(code);
  h.org_ts = h.rx_ts = h.tx_ts = req->tx_ts;
  PKT_EncodeHeader(&h, out);
}

/* Send a KoD if the global KoD limit allows it. The per-source limit is the caller's. */
static SRV_Action
send_kod(const SRV_Ctx *ctx, const SRV_Request *rq, const PKT_Header *req, const char *code,
         SRV_Reason r, uint8_t *out, SRV_Verdict *v)
{
  if (ctx->mon && !MON_TakeKod(ctx->mon, rq->rx.mono_ns))
    return drop(v, SRV_R_DROP_KOD_LIMIT);
  build_kod(ctx, req, code, out);
  v->len = PKT_HEADER_LEN;
  v->why = r;
  return SRV_KOD;
}

/* A refusal (DENY/RSTR): a KoD where `kod` is set and both limits allow it, else a silent
 * drop counted as `silent`. The per-source limit is the discard algorithm run on the
 * refused packets themselves, so a refused source that floods gets its KoDs at the rate a
 * limited source gets RATE KoDs (about one per 2^average s) and then silence. */
static SRV_Action
refuse(const SRV_Ctx *ctx, const SRV_Request *rq, const PKT_Header *req, uint32_t rflags,
       const char *code, SRV_Reason kod_reason, SRV_Reason silent, uint8_t *out,
       SRV_Verdict *v)
{
  if (!(rflags & RST_KOD))
    return drop(v, silent);
  if (ctx->mon && MON_Check(ctx->mon, &rq->src, req->mode, req->version, rflags | RST_LIMITED,
                            rq->rx.mono_ns, NULL) == MON_LIMIT_DROP)
    return drop(v, SRV_R_DROP_KOD_LIMIT);
  return send_kod(ctx, rq, req, code, kod_reason, out, v);
}

/* Monitor and rate limit (`limited`, `discard`). Returns true if the request is served. */
static bool
rate_check(const SRV_Ctx *ctx, const SRV_Request *rq, const PKT_Header *req, uint32_t rflags,
           SRV_Action *act, uint8_t *out, SRV_Verdict *v)
{
  if (!ctx->mon || (!ctx->policy->monitor && !(rflags & RST_LIMITED)))
    return true;
  switch (
      MON_Check(ctx->mon, &rq->src, req->mode, req->version, rflags, rq->rx.mono_ns, NULL)) {
    case MON_SERVE:
      return true;
    case MON_LEAK_SERVE:
      v->why = SRV_R_SERVED_LEAK;
      return true;
    case MON_LIMIT_KOD:
      *act = send_kod(ctx, rq, req, "RATE", SRV_R_KOD_RATE, out, v);
      return false;
    case MON_LIMIT_DROP:
    default:
      /* a shed source's packet that the kernel let through: what the leak would answer */
      if (SHD_Answer(ctx->shed, &rq->src, rq->rx.mono_ns,
                     (int64_t)rq->rx.real.tv_sec * 1000000000 + rq->rx.real.tv_nsec)) {
        v->why = SRV_R_SERVED_LEAK;
        v->shed_sample = true;
        return true;
      }
      *act = drop(v, SRV_R_DROP_LIMITED);
      return false;
  }
}

/* Authentication of a request that passed the rate limit. Returns true to reply (v->key_id
 * set when the reply must be MACed), false with *act set otherwise. */
static bool
auth_check(const SRV_Ctx *ctx, const SRV_Request *rq, const PKT_Header *req,
           const PKT_Trailer *tr, uint32_t rflags, SRV_Action *act, uint8_t *out,
           SRV_Verdict *v)
{
  if (!tr->has_mac)
    return true;
  KEY_Verdict kv = KEY_Verify(ctx->keys, rq->data, rq->len, tr, &rq->src);
  if (kv == KEY_OK) {
    v->key_id = tr->key_id;
    v->digest_len = (uint8_t)tr->digest_len;
    if (v->why == SRV_R_SERVED)
      v->why = SRV_R_SERVED_AUTH;
    return true;
  }
  if (kv == KEY_CRYPTO_NAK || kv == KEY_NO_MAC) { /* no MAC to speak of: unauthenticated */
    if (rflags & RST_NOTRUST) {
      *act = refuse(ctx, rq, req, rflags, "DENY", SRV_R_KOD_DENY, SRV_R_DROP_NOTRUST, out, v);
      return false;
    }
    return true;
  }
  /* A MAC we cannot accept. With `kod`: a CRYP KoD (the rate limit just passed is its
   * per-source limit), which carries nothing of our clock. Under `notrust` nothing else:
   * ntp_acc(5) denies time to any packet that is not cryptographically authenticated, and
   * a crypto-NAK is our full header. Otherwise the RFC 5905 crypto-NAK: our header and a
   * zero key id, shorter than the request, which carried a key id and a 16-octet digest. */
  if (rflags & RST_KOD) {
    *act = send_kod(ctx, rq, req, "CRYP", SRV_R_KOD_CRYP, out, v);
    return false;
  }
  if (rflags & RST_NOTRUST) {
    *act = drop(v, SRV_R_DROP_NOTRUST);
    return false;
  }
  v->why = SRV_R_CRYPTO_NAK;
  return true;
}

/* ---- NTS (RFC 8915 section 5) ---- */

SRV_Nts *
SRV_NtsCreate(void)
{
  SRV_Nts *n = calloc(1, sizeof(*n));
  if (n && !(n->siv = SIV_Create())) {
    free(n);
    return NULL;
  }
  return n;
}

void
SRV_NtsDestroy(SRV_Nts *n)
{
  if (!n)
    return;
  SIV_Destroy(n->siv);
  OPENSSL_cleanse(n, sizeof(*n));
  free(n);
}

void
SRV_NtsPrepare(SRV_Nts *n, NCK_Store *store)
{
  if (!n || !store)
    return;
  NCK_StoreRefresh(store, &n->keys, &n->gen);
  if (n->avail < NTS_POOL / 2 && RNG_Secure(n->pool, NTS_POOL))
    n->avail = NTS_POOL;
}

/* The NTSN KoD (RFC 8915 section 5.7), under the global KoD limit; the rate limit the
 * request just passed is its per-source limit, as for CRYP. */
static SRV_Action
send_ntsn(const SRV_Ctx *ctx, const SRV_Request *rq, const PKT_Header *req,
          const NEF_Request *nr, SRV_Reason kod, SRV_Reason silent, uint8_t *out,
          SRV_Verdict *v)
{
  if (ctx->mon && !MON_TakeKod(ctx->mon, rq->rx.mono_ns))
    return drop(v, silent);
  build_kod(ctx, req, "NTSN", out);
  v->len = NEF_BuildNak(out, rq->data, nr);
  v->why = kod;
  return SRV_KOD;
}

/* An NTS request that passed the rate limit: open, verify, answer (sealed in SRV_Finish). */
static SRV_Action
answer_nts(const SRV_Ctx *ctx, const SRV_Request *rq, const PKT_Header *req,
           const NEF_Request *nr, uint32_t rflags, RNG_State *rng, uint8_t *out,
           SRV_Verdict *v)
{
  SRV_Nts *n = rq->nts;
  NEF_Session ses;
  switch (NEF_Open(rq->data, nr, &n->keys, n->siv, &ses)) {
    case NEF_OPEN_OK:
      break;
    case NEF_OPEN_COOKIE:
      return send_ntsn(ctx, rq, req, nr, SRV_R_KOD_NTSN_COOKIE, SRV_R_DROP_NTS_COOKIE, out, v);
    case NEF_OPEN_AUTH:
      return send_ntsn(ctx, rq, req, nr, SRV_R_KOD_NTSN_AUTH, SRV_R_DROP_NTS_AUTH, out, v);
    default:
      return drop(v, SRV_R_DROP_NTS_MALFORMED);
  }
  build_reply(ctx, rq, req, rflags, rng, out);
  size_t used;
  v->len = NEF_BuildReply(out, rq->len, rq->data, nr, &ses, &n->keys, n->siv,
                          n->pool + NTS_POOL - n->avail, n->avail, &v->seal, &used);
  OPENSSL_cleanse(&ses, sizeof(ses));
  n->avail -= used;
  if (v->len == 0)
    return drop(v, SRV_R_DROP_SIGN);
  v->stamp = true;
  v->nts = n;
  if (v->why == SRV_R_SERVED)
    v->why = SRV_R_SERVED_NTS;
  return SRV_REPLY;
}

static SRV_Action
decide_time(const SRV_Ctx *ctx, const SRV_Request *rq, uint32_t rflags, RNG_State *rng,
            uint8_t *out, SRV_Verdict *v)
{
  PKT_Header req;
  PKT_Trailer tr;
  if (!PKT_DecodeHeader(rq->data, rq->len, &req))
    return drop(v, SRV_R_DROP_SHORT);
  if (req.version < 1 || req.version > PKT_VERSION)
    return drop(v, SRV_R_DROP_VERSION);
  switch (req.mode) {
    case PKT_MODE_CLIENT:
      break;
    case PKT_MODE_RESERVED:
      return drop(v, SRV_R_DROP_MODE0);
    case PKT_MODE_ACTIVE: /* no symmetric service: nothing is ever mobilized (nopeer moot) */
      return drop(v, SRV_R_DROP_SYMMETRIC);
    default: /* 2, 4, 5: answers or broadcasts; answering (or a KoD) could start a loop */
      return drop(v, SRV_R_DROP_RESPONSE);
  }
  if (PKT_ParseTrailer(rq->data, rq->len, &tr) != PKT_TRAILER_OK)
    return drop(v, SRV_R_DROP_TRAILER);
  NEF_Request nr;
  bool nts = false;
  if (ctx->nts_keys && rq->nts) {
    NEF_Status ns = NEF_ParseRequest(rq->data, rq->len, &nr);
    if (ns == NEF_MALFORMED)
      return drop(v, SRV_R_DROP_NTS_MALFORMED);
    nts = ns == NEF_OK;
  }
  if ((rflags & RST_FLAKE) && RNG_Next(rng) % 10 == 0)
    return drop(v, SRV_R_DROP_FLAKE);
  if (rflags & RST_NOSERVE)
    return refuse(ctx, rq, &req, rflags, "DENY", SRV_R_KOD_DENY, SRV_R_DROP_NOSERVE, out, v);
  if ((rflags & RST_VERSION) && req.version != PKT_VERSION)
    return refuse(ctx, rq, &req, rflags, "RSTR", SRV_R_KOD_RSTR, SRV_R_DROP_VERSION, out, v);
  if ((rflags & RST_NOTRUST) && !tr.has_mac && !nts)
    return refuse(ctx, rq, &req, rflags, "DENY", SRV_R_KOD_DENY, SRV_R_DROP_NOTRUST, out, v);

  SRV_Action act = SRV_DROP;
  v->why = SRV_R_SERVED;
  if (!rate_check(ctx, rq, &req, rflags, &act, out, v))
    return act;
  if (nts)
    return answer_nts(ctx, rq, &req, &nr, rflags, rng, out, v);
  if (!auth_check(ctx, rq, &req, &tr, rflags, &act, out, v))
    return act;
  build_reply(ctx, rq, &req, rflags, rng, out);
  v->len = PKT_HEADER_LEN;
  if (v->why == SRV_R_CRYPTO_NAK)
    v->len = KEY_AppendCryptoNak(out, PKT_HEADER_LEN, PKT_MAX_LEN);
  v->stamp = true;
  return SRV_REPLY;
}

SRV_Action
SRV_Decide(const SRV_Ctx *ctx, const SRV_Request *rq, RNG_State *rng, uint8_t *out,
           SRV_Verdict *v)
{
  *v = (SRV_Verdict){.why = SRV_R_SERVED};
  if (rq->len == 0)
    return drop(v, SRV_R_DROP_EMPTY);
  if (rq->src.port == 0)
    return drop(v, SRV_R_DROP_PORT0);
  if (ADR_IsMulticast(&rq->src)) {
    v->rflags = RST_IGNORE;
    return drop(v, SRV_R_DROP_MCAST_SRC);
  }
  int mode = PKT_PeekMode(rq->data);
  bool query = mode == PKT_MODE_CONTROL || mode == PKT_MODE_PRIVATE;
  if (query && is_control_response(rq->data, rq->len))
    return drop(v, SRV_R_DROP_CTL_RESPONSE);
  uint32_t rflags = ctx->rst ? RST_Match(ctx->rst, &rq->src) : 0;
  v->rflags = rflags;
  if (rflags & RST_IGNORE)
    return drop(v, SRV_R_DROP_IGNORE);
  if (query)
    return decide_query(ctx, rq, rflags, v);
  return decide_time(ctx, rq, rflags, rng, out, v);
}

size_t
SRV_Finish(const SRV_Ctx *ctx, const SRV_Verdict *v, uint8_t *out, size_t cap,
           const struct timespec *now, RNG_State *rng)
{
  if (v->stamp)
    PKT_Put64(out + 40, fuzz_low_bits(served_time(ctx, now), ctx->sys->precision, rng));
  if (v->nts)
    return v->len <= cap && NEF_Seal(out, &v->seal, v->nts->siv) ? v->len : 0;
  if (!v->key_id)
    return v->len;
  return KEY_SignAs(ctx->keys, v->key_id, out, PKT_HEADER_LEN, cap, v->digest_len);
}

void
SRV_SystemUnsynchronized(SRV_System *s, int8_t precision)
{
  memset(s, 0, sizeof(*s));
  s->leap = PKT_LEAP_UNSYNC;
  s->stratum = 16;
  s->precision = precision;
  s->refid = PKT_RefidFromCode("INIT");
}

void
SRV_SystemLocal(SRV_System *s, int8_t precision, uint8_t stratum, uint32_t refid,
                const NTT_Now *now)
{
  memset(s, 0, sizeof(*s));
  s->leap = PKT_LEAP_NONE;
  s->stratum = stratum;
  s->precision = precision;
  s->refid = refid;
  s->ref_ts = NTT_FromTimespec(&now->real);
  s->update_mono_ns = now->mono_ns;
}
