#include "server.h"

#include <string.h>

#include "packet.h"

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
drop(SRV_Reason *why, SRV_Reason r)
{
  *why = r;
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

static SRV_Action
decide_query(const SRV_Request *rq, SRV_Reason *why)
{
  if (is_control_response(rq->data, rq->len))
    return drop(why, SRV_R_DROP_CTL_RESPONSE);
  if (PKT_PeekMode(rq->data) == PKT_MODE_PRIVATE)
    return drop(why, SRV_R_DROP_MODE7);
  return drop(why, SRV_R_DROP_MODE6);
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

static void
build_reply(const SRV_Ctx *ctx, const SRV_Request *rq, const PKT_Header *req, RNG_State *rng,
            uint8_t *out)
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
      .root_disp = NTT_ShortFromDouble(s->root_disp + PHI * (age > 0 ? age : 0)),
      .refid = s->refid,
      .ref_ts = s->ref_ts,
      .org_ts = req->tx_ts,
      .rx_ts = fuzz_low_bits(NTT_FromTimespec(&rq->rx.real), s->precision, rng),
      .tx_ts = 0,
  };
  PKT_EncodeHeader(&h, out);
}

static SRV_Action
decide_time(const SRV_Ctx *ctx, const SRV_Request *rq, RNG_State *rng, uint8_t *out,
            size_t *out_len, SRV_Reason *why)
{
  PKT_Header req;
  PKT_Trailer tr;
  if (!PKT_DecodeHeader(rq->data, rq->len, &req))
    return drop(why, SRV_R_DROP_SHORT);
  if (req.version < 1 || req.version > PKT_VERSION)
    return drop(why, SRV_R_DROP_VERSION);
  switch (req.mode) {
    case PKT_MODE_CLIENT:
      break;
    case PKT_MODE_RESERVED:
      return drop(why, SRV_R_DROP_MODE0);
    case PKT_MODE_ACTIVE:
      return drop(why, SRV_R_DROP_SYMMETRIC);
    default: /* 2, 4, 5: answers or broadcasts; answering them could start a loop */
      return drop(why, SRV_R_DROP_RESPONSE);
  }
  if (PKT_ParseTrailer(rq->data, rq->len, &tr) != PKT_TRAILER_OK)
    return drop(why, SRV_R_DROP_TRAILER);
  build_reply(ctx, rq, &req, rng, out);
  *out_len = PKT_HEADER_LEN;
  *why = SRV_R_SERVED;
  if (tr.has_mac) {
    /* No key can verify it yet: a crypto-NAK (header + zero key id), still shorter than the
     * request, which carried at least a 20-octet MAC. */
    memset(out + PKT_HEADER_LEN, 0, 4);
    *out_len = PKT_HEADER_LEN + 4;
    *why = SRV_R_CRYPTO_NAK;
  }
  return SRV_REPLY;
}

SRV_Action
SRV_Decide(const SRV_Ctx *ctx, const SRV_Request *rq, RNG_State *rng, uint8_t *out,
           size_t *out_len, SRV_Reason *why)
{
  *out_len = 0;
  if (rq->len == 0)
    return drop(why, SRV_R_DROP_EMPTY);
  if (rq->src.port == 0)
    return drop(why, SRV_R_DROP_PORT0);
  if (ADR_IsMulticast(&rq->src))
    return drop(why, SRV_R_DROP_MCAST_SRC);
  int mode = PKT_PeekMode(rq->data);
  if (mode == PKT_MODE_CONTROL || mode == PKT_MODE_PRIVATE)
    return decide_query(rq, why);
  return decide_time(ctx, rq, rng, out, out_len, why);
}

void
SRV_StampTransmit(uint8_t *out, const struct timespec *now, int8_t precision, RNG_State *rng)
{
  PKT_Put64(out + 40, fuzz_low_bits(NTT_FromTimespec(now), precision, rng));
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
