#include "assoc.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "rng.h"

#define MAXDISP DSC_MAXDISP
#define REQUEST_PRECISION 0x20 /* data minimization: a value no real clock has */

struct ASC_Assoc {
  ASC_Params p;
  uint32_t own_refid; /* our refid if this becomes the system peer */
  /* poll process */
  int hpoll;      /* host poll: system poll, raised while unreachable */
  int rate_floor; /* lowest poll after RATE KoDs */
  uint8_t reach;
  unsigned unreach;
  int burst_left;
  int64_t next_ns;      /* next transmission (monotonic) */
  int64_t last_tx_ns;   /* last regular poll (monotonic), 0: none yet */
  int64_t last_send_ns; /* last request of any kind, burst packets included */
  /* the outstanding request */
  bool pending;
  uint64_t cookie; /* the transmit timestamp we sent: random, never our clock */
  NTT_Stamp t1;    /* the real send time, kept here only */
  bool t1_kernel;  /* t1 is the kernel's transmit timestamp */
  /* the last authentic reply */
  NTT_Stamp last_xmt;
  uint8_t leap, stratum;
  double root_delay, root_disp;
  /* Kiss-o'-Death */
  unsigned deny_count;
  int64_t silent_until_ns;
  bool denied;
  bool replace;
  unsigned clean;     /* good replies in a row */
  uint32_t last_kiss; /* last kiss code seen since the last good reply (log once) */
  DSC_Filter filter;
};

bool
ASC_SecureFill(void *ctx, void *buf, size_t len)
{
  (void)ctx;
  return RNG_Secure(buf, len);
}

static const char *const outcome_names[] = {
#define ASC_NAME(id, name) name,
    ASC_OUTCOMES(ASC_NAME)
#undef ASC_NAME
};

const char *
ASC_OutcomeName(ASC_Outcome o)
{
  return (unsigned)o < ASC_OUTCOME_COUNT ? outcome_names[o] : "unknown";
}

void
ASC_DefaultParams(const NetAddr *addr, ASC_Params *out)
{
  *out = (ASC_Params){.type = CNF_SERVER,
                      .addr = *addr,
                      .minpoll = CNF_DEFAULT_MINPOLL,
                      .maxpoll = CNF_DEFAULT_MAXPOLL,
                      .version = PKT_VERSION,
                      .precision_log2 = -20,
                      .maxdist = 1.5,
                      .phi = DSC_PHI,
                      .floor = 1,
                      .ceiling = 15,
                      .deny_backoff_min = 10,
                      .deny_backoff_max = 17,
                      .rate_poll_cap = 10,
                      .clean_run = 8};
}

void
ASC_ParamsFromConfig(const CNF_Assoc *ca, const CNF_Tos *tos, const NetAddr *addr,
                     int precision_log2, ASC_Params *out)
{
  ASC_DefaultParams(addr, out);
  out->type = ca->type;
  out->minpoll = ca->minpoll;
  out->maxpoll = ca->maxpoll;
  out->key = ca->key;
  out->nts = (ca->options & CNF_AO_NTS) != 0;
  out->version = ca->version;
  out->options = ca->options;
  out->precision_log2 = precision_log2;
  out->maxdist = tos->maxdist;
  out->floor = tos->floor;
  out->ceiling = tos->ceiling;
  if (tos->kod_backoff > 0) /* zero: a CNF_Tos not from CNF_Create; keep the defaults */
    out->deny_backoff_min = tos->kod_backoff;
  if (tos->kod_backoff_max > 0)
    out->deny_backoff_max = tos->kod_backoff_max;
  if (tos->kod_rate_cap > 0)
    out->rate_poll_cap = tos->kod_rate_cap;
}

static int64_t
seconds_ns(double s)
{
  return (int64_t)llround(s * 1e9);
}

static int
clamp_int(int v, int lo, int hi)
{
  return v < lo ? lo : (v > hi ? hi : v);
}

/* The poll exponent of the next regular interval: the host poll within the configured
 * range, but never below the floor that RATE KoDs have set. */
static int
effective_poll(const ASC_Assoc *a)
{
  int lo = a->p.minpoll > a->rate_floor ? a->p.minpoll : a->rate_floor;
  int hi = a->p.maxpoll > lo ? a->p.maxpoll : lo;
  return clamp_int(a->hpoll, lo, hi);
}

ASC_Assoc *
ASC_Create(const ASC_Params *p, const NTT_Now *now, const ASC_Random *rnd)
{
  ASC_Assoc *a = calloc(1, sizeof(*a));
  if (!a)
    return NULL;
  a->p = *p;
  a->p.minpoll = clamp_int(p->minpoll, 0, CNF_MAX_POLL);
  a->p.maxpoll = clamp_int(p->maxpoll, a->p.minpoll, CNF_MAX_POLL);
  a->own_refid = PKT_RefidFromAddr(&p->addr);
  a->hpoll = a->p.minpoll;
  a->rate_floor = a->p.minpoll;
  DSC_FilterInit(&a->filter, a->p.phi);
  uint16_t r = 0;
  if (rnd && rnd->fill(rnd->ctx, &r, sizeof(r)))
    a->next_ns = now->mono_ns + (int64_t)r * 1000000000 / 65536;
  else
    a->next_ns = now->mono_ns;
  return a;
}

void
ASC_Destroy(ASC_Assoc *a)
{
  free(a);
}

const ASC_Params *
ASC_GetParams(const ASC_Assoc *a)
{
  return &a->p;
}

int64_t
ASC_NextPollTime(const ASC_Assoc *a)
{
  return a->next_ns > a->silent_until_ns ? a->next_ns : a->silent_until_ns;
}

/* A regular poll (not a burst packet): shift the reach register, feed the filter a dummy
 * when the last three polls went unanswered, back off while unreachable, start bursts. */
static void
regular_poll(ASC_Assoc *a, const NTT_Now *now)
{
  a->reach = (uint8_t)(a->reach << 1);
  if ((a->reach & 0x07) == 0)
    DSC_FilterAddDummy(&a->filter, DSC_Seconds(now->mono_ns), a->p.precision_log2);
  if (a->reach == 0) {
    a->unreach++;
    if (a->unreach >= ASC_UNREACH) {
      a->hpoll = clamp_int(a->hpoll + 1, a->p.minpoll, a->p.maxpoll);
      if (a->p.type == CNF_POOL)
        a->replace = true;
    }
    /* one initial burst per unreachable spell, not one per poll */
    if ((a->p.options & CNF_AO_IBURST) && a->unreach == 1)
      a->burst_left = ASC_IBURST - 1;
  } else if (a->p.options & CNF_AO_BURST) {
    a->burst_left = ASC_BURST - 1;
  }
  a->last_tx_ns = now->mono_ns;
}

static void
schedule_next(ASC_Assoc *a, const NTT_Now *now, uint8_t jitter)
{
  if (a->burst_left > 0) {
    a->next_ns = now->mono_ns + (int64_t)ASC_BURST_GAP * 1000000000;
    return;
  }
  /* up to 1/16 of the interval of random delay, so polls do not synchronise; counted from
   * the last request sent, so a burst longer than the poll interval (iburst at minpoll 3)
   * is not followed at once by an overdue poll */
  double interval = ldexp(1.0, effective_poll(a));
  a->next_ns = a->last_send_ns + seconds_ns(interval * (1.0 + jitter / 4096.0));
}

static size_t
encode_request(const ASC_Assoc *a, uint8_t *out)
{
  PKT_Header h = {.leap = PKT_LEAP_NONE,
                  .version = (uint8_t)clamp_int(a->p.version, 1, PKT_VERSION),
                  .mode = PKT_MODE_CLIENT,
                  .poll = (int8_t)effective_poll(a),
                  .precision = REQUEST_PRECISION,
                  .tx_ts = a->cookie};
  PKT_EncodeHeader(&h, out);
  return PKT_HEADER_LEN;
}

ASC_TxStatus
ASC_BuildRequest(ASC_Assoc *a, const NTT_Now *now, const KEY_Table *keys,
                 const ASC_Random *rnd, uint8_t *out, size_t *len)
{
  *len = 0;
  if (now->mono_ns < ASC_NextPollTime(a))
    return ASC_TX_NOT_DUE;
  a->silent_until_ns = 0;
  if (a->burst_left > 0)
    a->burst_left--;
  else
    regular_poll(a, now);
  uint8_t r[16];
  bool have_random = rnd->fill(rnd->ctx, r, sizeof(r));
  a->last_send_ns = now->mono_ns;
  schedule_next(a, now, have_random ? r[8] : 0);
  a->pending = false;
  if (!have_random)
    return ASC_TX_NO_RANDOM;
  memcpy(&a->cookie, r, sizeof(a->cookie));
  if (a->cookie == 0)
    a->cookie = 1; /* zero means "no origin" on the wire */
  a->t1 = NTT_FromTimespec(&now->real);
  a->t1_kernel = false;
  size_t n = encode_request(a, out);
  if (a->p.key) {
    n = KEY_Sign(keys, a->p.key, out, n, PKT_MAX_LEN);
    if (n == 0)
      return ASC_TX_NO_KEY;
  }
  a->pending = true;
  *len = n;
  return ASC_TX_SEND;
}

void
ASC_SetTransmitTime(ASC_Assoc *a, const struct timespec *t1)
{
  if (a->pending && !a->t1_kernel)
    a->t1 = NTT_FromTimespec(t1);
}

bool
ASC_SetKernelTransmitTime(ASC_Assoc *a, const struct timespec *ts)
{
  if (!a->pending || a->t1_kernel)
    return false;
  NTT_Stamp t = NTT_FromTimespec(ts);
  double d = NTT_Diff(t, a->t1);
  if (!(d >= 0 && d < ASC_TXTS_MAX))
    return false;
  a->t1 = t;
  a->t1_kernel = true;
  return true;
}

/* ---- reply tests ---- */

/* Checks that need no state change: source, framing, mode, origin, duplicate, MAC. */
static ASC_Outcome
check_authentic(const ASC_Assoc *a, const uint8_t *buf, size_t len, const NetAddr *from,
                const KEY_Table *keys, bool nts_ok, PKT_Header *h)
{
  PKT_Trailer tr = {0};
  if (!from || !ADR_Equal(from, &a->p.addr) || from->port != a->p.addr.port)
    return ASC_DROP_SOURCE;
  if (len < PKT_HEADER_LEN || !PKT_DecodeHeader(buf, len, h))
    return ASC_DROP_SHORT;
  /* NTS: the fields were parsed and checked by NTA_Open (ntsassoc.h) */
  if (!a->p.nts && PKT_ParseTrailer(buf, len, &tr) != PKT_TRAILER_OK)
    return ASC_DROP_FORMAT;
  if (h->mode != PKT_MODE_SERVER || h->version < 1 || h->version > PKT_VERSION)
    return ASC_DROP_MODE;
  if (h->org_ts == 0)
    return ASC_DROP_ZERO_ORIGIN;
  if (!a->pending)
    return ASC_DROP_NOT_PENDING;
  if (h->org_ts != a->cookie)
    return ASC_DROP_BOGUS_ORIGIN;
  if (a->last_xmt != 0 && h->tx_ts == a->last_xmt)
    return ASC_DROP_DUPLICATE;
  if (a->p.nts)
    return nts_ok ? ASC_SAMPLE : ASC_DROP_AUTH;
  if (a->p.key && (tr.crypto_nak || !tr.has_mac || tr.key_id != a->p.key ||
                   KEY_Verify(keys, buf, len, &tr, from) != KEY_OK))
    return ASC_DROP_AUTH;
  return ASC_SAMPLE;
}

/* DENY/RSTR: fall silent for max(poll, 2^deny_backoff_min) s, doubled on every repeat up to
 * 2^deny_backoff_max, then poll again; unselectable until it serves us again. */
static ASC_Outcome
obey_deny(ASC_Assoc *a, const NTT_Now *rx, ASC_Result *res)
{
  int base = effective_poll(a);
  if (base < a->p.deny_backoff_min)
    base = a->p.deny_backoff_min;
  int e = base + (int)(a->deny_count < 32 ? a->deny_count : 32);
  if (e > a->p.deny_backoff_max)
    e = a->p.deny_backoff_max > base ? a->p.deny_backoff_max : base;
  if (a->deny_count < 64)
    a->deny_count++;
  res->backoff = ldexp(1.0, e);
  a->silent_until_ns = rx->mono_ns + seconds_ns(res->backoff);
  a->next_ns = a->silent_until_ns;
  a->burst_left = 0;
  a->denied = true;
  a->reach = 0;
  a->unreach = 1; /* no initial burst when we come back */
  DSC_FilterInit(&a->filter, a->p.phi);
  if (a->p.type == CNF_POOL)
    a->replace = true;
  return ASC_KOD_DENY;
}

/* RATE: at least one step up, up to the KoD's poll, never above the cap (an attacker can
 * make a server send us a genuine RATE: CVE-2015-7705), and no burst. */
static ASC_Outcome
obey_rate(ASC_Assoc *a, const PKT_Header *h, const NTT_Now *rx, ASC_Result *res)
{
  int cur = effective_poll(a);
  int want = cur + 1;
  if (h->poll > want && h->poll <= CNF_MAX_POLL)
    want = h->poll;
  int cap = a->p.rate_poll_cap > a->p.minpoll ? a->p.rate_poll_cap : a->p.minpoll;
  if (want > cap)
    want = cap;
  if (want > a->rate_floor)
    a->rate_floor = want;
  a->burst_left = 0;
  int64_t base = a->last_tx_ns ? a->last_tx_ns : rx->mono_ns;
  int64_t next = base + seconds_ns(ldexp(1.0, effective_poll(a)));
  a->next_ns = next > a->next_ns ? next : a->next_ns;
  res->poll_floor = a->rate_floor;
  return ASC_KOD_RATE;
}

static ASC_Outcome
obey_kod(ASC_Assoc *a, const PKT_Header *h, const NTT_Now *rx, ASC_Result *res)
{
  res->kiss = h->refid;
  res->log = h->refid != a->last_kiss;
  a->last_kiss = h->refid;
  a->clean = 0;
  if (h->refid == PKT_RefidFromCode("DENY") || h->refid == PKT_RefidFromCode("RSTR"))
    return obey_deny(a, rx, res);
  if (h->refid == PKT_RefidFromCode("RATE"))
    return obey_rate(a, h, rx, res);
  return ASC_KOD_IGNORED; /* RFC 5905 7.4: unknown and X*** codes are ignored */
}

/* Header sanity of an authentic non-KoD reply (RFC 5905 TEST3, TEST6, TEST7). */
static ASC_Outcome
check_header(const ASC_Assoc *a, const PKT_Header *h)
{
  int stratum = h->stratum == 0 ? 16 : h->stratum;
  if (h->leap == PKT_LEAP_UNSYNC || stratum >= 16 || stratum < a->p.floor ||
      stratum >= a->p.ceiling)
    return ASC_DROP_UNSYNC;
  if (h->tx_ts == 0 || h->rx_ts == 0 || h->ref_ts == 0 || NTT_Diff(h->ref_ts, h->tx_ts) > 0)
    return ASC_DROP_HEADER;
  if (NTT_ShortToDouble(h->root_delay) / 2 + NTT_ShortToDouble(h->root_disp) >= MAXDISP)
    return ASC_DROP_HEADER;
  return ASC_SAMPLE;
}

/* Offset, delay and dispersion (RFC 5905 8); false if the root distance is too large. */
static bool
compute_sample(const ASC_Assoc *a, const PKT_Header *h, const NTT_Now *rx, ASC_Result *res)
{
  NTT_Stamp t4 = NTT_FromTimespec(&rx->real);
  double rtt = NTT_Diff(t4, a->t1);
  double server_time = NTT_Diff(h->tx_ts, h->rx_ts);
  res->offset = (NTT_Diff(h->rx_ts, a->t1) + NTT_Diff(h->tx_ts, t4)) / 2.0;
  res->delay = fmax(rtt - server_time, ldexp(1.0, a->p.precision_log2));
  res->disp = ldexp(1.0, h->precision) + ldexp(1.0, a->p.precision_log2) +
              a->p.phi * (rtt > 0 ? rtt : 0);
  res->root_delay = NTT_ShortToDouble(h->root_delay);
  res->root_disp = NTT_ShortToDouble(h->root_disp);
  res->stratum = h->stratum;
  res->leap = h->leap;
  res->poll = h->poll;
  res->refid = h->refid;
  res->reftime = h->ref_ts;
  res->mono_ns = rx->mono_ns;
  return (res->root_delay + res->delay) / 2 + res->root_disp + res->disp < a->p.maxdist;
}

/* Good service: reach, the run of clean replies that undoes KoD penalties, the filter. */
static void
accept_sample(ASC_Assoc *a, const PKT_Header *h, ASC_Result *res)
{
  a->reach |= 1;
  a->unreach = 0;
  a->denied = false;
  a->last_kiss = 0;
  if (a->p.type != CNF_POOL)
    a->replace = false;
  if (++a->clean >= (unsigned)(a->p.clean_run > 0 ? a->p.clean_run : 1)) {
    a->clean = 0;
    a->deny_count = 0;
    if (a->rate_floor > a->p.minpoll)
      a->rate_floor--;
  }
  a->leap = h->leap;
  a->stratum = h->stratum;
  a->root_delay = res->root_delay;
  a->root_disp = res->root_disp;
  res->filter =
      DSC_FilterAdd(&a->filter, res->offset, res->delay, res->disp, DSC_Seconds(res->mono_ns),
                    effective_poll(a), a->p.precision_log2);
}

static ASC_Outcome
process_reply(ASC_Assoc *a, const uint8_t *buf, size_t len, const NetAddr *from,
              const NTT_Now *rx, const KEY_Table *keys, bool nts_ok, ASC_Result *res)
{
  PKT_Header h;
  memset(res, 0, sizeof(*res));
  res->filter = DSC_FILTER_OLD;
  ASC_Outcome o = check_authentic(a, buf, len, from, keys, nts_ok, &h);
  if (o != ASC_SAMPLE)
    return o;
  /* An authentic answer to our request: from here on it may change state. */
  a->pending = false;
  a->last_xmt = h.tx_ts;
  if (h.leap == PKT_LEAP_UNSYNC && h.stratum == 0)
    return obey_kod(a, &h, rx, res);
  o = check_header(a, &h);
  if (o != ASC_SAMPLE)
    return o;
  if (!compute_sample(a, &h, rx, res))
    return ASC_DROP_DISTANCE;
  accept_sample(a, &h, res);
  return ASC_SAMPLE;
}

ASC_Outcome
ASC_ProcessReply(ASC_Assoc *a, const uint8_t *buf, size_t len, const NetAddr *from,
                 const NTT_Now *rx, const KEY_Table *keys, ASC_Result *res)
{
  return process_reply(a, buf, len, from, rx, keys, false, res);
}

ASC_Outcome
ASC_ProcessNtsReply(ASC_Assoc *a, const uint8_t *buf, size_t len, const NetAddr *from,
                    const NTT_Now *rx, bool authentic, ASC_Result *res)
{
  return process_reply(a, buf, len, from, rx, NULL, a->p.nts && authentic, res);
}

/* ---- coupling with the discipline ---- */

void
ASC_SetPoll(ASC_Assoc *a, int poll, const NTT_Now *now)
{
  if (a->reach == 0)
    return; /* an unreachable server keeps its own back-off */
  a->hpoll = clamp_int(poll, a->p.minpoll, a->p.maxpoll);
  if (a->burst_left > 0 || a->silent_until_ns > now->mono_ns || a->last_tx_ns == 0)
    return;
  int64_t next = a->last_send_ns + seconds_ns(ldexp(1.0, effective_poll(a)));
  a->next_ns = next > now->mono_ns ? next : now->mono_ns;
}

void
ASC_AdjustOffsets(ASC_Assoc *a, double slewed)
{
  DSC_FilterAdjust(&a->filter, slewed);
}

void
ASC_AfterStep(ASC_Assoc *a, double stepped)
{
  if (stepped == 0.0)
    return;
  DSC_FilterAdjust(&a->filter, stepped);
  a->pending = false; /* its T1 was read on the clock before the step */
}

bool
ASC_GetCandidate(const ASC_Assoc *a, const NTT_Now *now, int id, DSC_Candidate *out)
{
  const DSC_Filter *f = &a->filter;
  *out = (DSC_Candidate){
      .id = id,
      .offset = f->offset,
      .delay = f->delay,
      .jitter = f->jitter,
      .disp = f->have_peer ? DSC_FilterDispAt(f, DSC_Seconds(now->mono_ns)) : MAXDISP,
      .epoch = f->have_peer ? f->epoch : 0.0,
      .root_delay = a->root_delay,
      .root_disp = a->root_disp,
      .stratum = a->stratum == 0 ? 16 : a->stratum,
      .leap = a->leap,
      .peer_refid = a->own_refid,
      .poll = effective_poll(a),
      .reachable = a->reach != 0 && !a->denied,
      .noselect = (a->p.options & CNF_AO_NOSELECT) != 0,
      .prefer = (a->p.options & CNF_AO_PREFER) != 0,
      .truechimer = (a->p.options & CNF_AO_TRUE) != 0,
      .filter = f,
  };
  return f->have_peer;
}

bool
ASC_NeedsReplacement(const ASC_Assoc *a)
{
  return a->replace;
}

void
ASC_GetStatus(const ASC_Assoc *a, ASC_Status *out)
{
  *out = (ASC_Status){.reach = a->reach,
                      .poll = effective_poll(a),
                      .hpoll = a->hpoll,
                      .rate_floor = a->rate_floor,
                      .unreach = a->unreach,
                      .burst_left = a->burst_left,
                      .deny_count = a->deny_count,
                      .denied = a->denied,
                      .silent_until_ns = a->silent_until_ns,
                      .pending = a->pending,
                      .replace = a->replace,
                      .last_kiss = a->last_kiss};
}
