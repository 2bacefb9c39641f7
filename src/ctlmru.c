/* ctlmru: the MRU list of mode 6 (see ctlmru.h). */
#include "ctlmru.h"

#include <inttypes.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>

/* s: a prior entry is unchanged if its last time is this close */
#define MRU_MATCH_TOL 0.001
#define MRU_RESERVE 128 /* data octets kept for "nonce=..., now=..., last.newest=..." */
#define MRU_PRIORS 16   /* last.N / addr.N pairs ntpq may send (N < 16) */

/* ------------------------------------------------------------------------------------ */
/* MRU list                                                                              */

typedef struct {
  const char *nonce;
  size_t nonce_len;
  uint32_t frags, limit, mincount, maxlstint, minlstint, recent;
  uint32_t resall, resany; /* ntpd RES_* bits */
  NetAddr addr[MRU_PRIORS];
  NTT_Stamp last[MRU_PRIORS];
  bool have_addr[MRU_PRIORS], have_last[MRU_PRIORS];
} MruQuery;

/* restrict flags as ntpd's RES_* bits, which ntpq reads in rs.N and resall/resany use */
static uint32_t
res_bits(uint32_t rflags)
{
  static const uint32_t map[][2] = {
      {RST_IGNORE, 0x1},   {RST_NOSERVE, 0x2},       {RST_NOTRUST, 0x4},  {RST_VERSION, 0x8},
      {RST_NOPEER, 0x10},  {RST_LIMITED, 0x20},      {RST_NOQUERY, 0x40}, {RST_NOMODIFY, 0x80},
      {RST_NOTRAP, 0x100}, {RST_LOWPRIOTRAP, 0x200}, {RST_KOD, 0x400},    {RST_MSSNTP, 0x800},
      {RST_FLAKE, 0x1000}, {RST_NOMRULIST, 0x2000},
  };
  uint32_t r = 0;
  for (size_t i = 0; i < sizeof(map) / sizeof(map[0]); i++)
    if (rflags & map[i][0])
      r |= map[i][1];
  return r;
}

/* A decimal (or 0x hex when hex) number of at most 32 bits. */
static bool
parse_u32(const CTW_Item *it, bool hex, uint32_t *out)
{
  const char *s = it->value;
  size_t n = it->value_len, i = 0;
  uint64_t v = 0;
  unsigned base = 10;
  if (!s || n == 0 || n > 20)
    return false;
  if (hex || (n > 2 && s[0] == '0' && (s[1] == 'x' || s[1] == 'X'))) {
    if (n < 3 || s[0] != '0' || (s[1] != 'x' && s[1] != 'X'))
      return false;
    base = 16;
    i = 2;
  }
  for (; i < n; i++) {
    char c = s[i];
    unsigned d = c >= '0' && c <= '9'   ? (unsigned)(c - '0')
                 : c >= 'a' && c <= 'f' ? (unsigned)(c - 'a' + 10)
                 : c >= 'A' && c <= 'F' ? (unsigned)(c - 'A' + 10)
                                        : 99;
    if (d >= base)
      return false;
    v = v * base + d;
    if (v > UINT32_MAX)
      return false;
  }
  *out = (uint32_t)v;
  return true;
}

/* "0x%08x.%08x" */
static bool
parse_stamp(const CTW_Item *it, NTT_Stamp *out)
{
  uint32_t hi, lo;
  if (!it->value || it->value_len != 19 || it->value[0] != '0' || it->value[1] != 'x' ||
      it->value[10] != '.' || !CTL_ParseHex32(it->value + 2, &hi) ||
      !CTL_ParseHex32(it->value + 11, &lo))
    return false;
  *out = ((NTT_Stamp)hi << 32) | lo;
  return true;
}

/* "a.b.c.d", "a.b.c.d:port", "[v6]:port" or "v6" */
static bool
parse_addr(const CTW_Item *it, NetAddr *out)
{
  char buf[ADR_STRLEN];
  const char *s = it->value;
  size_t n = it->value_len;
  uint32_t port = 0;
  if (!s || n == 0 || n >= sizeof(buf))
    return false;
  memcpy(buf, s, n);
  buf[n] = '\0';
  char *host = buf, *colon = strrchr(buf, ':');
  if (buf[0] == '[') {
    char *close = strchr(buf, ']');
    if (!close || (close[1] != '\0' && close[1] != ':'))
      return false;
    *close = '\0';
    host = buf + 1;
    colon = close[1] == ':' ? close + 1 : NULL;
  } else if (colon && strchr(buf, ':') != colon) {
    colon = NULL; /* bare IPv6 */
  }
  if (colon) {
    CTW_Item p = {.value = colon + 1, .value_len = strlen(colon + 1)};
    if (!parse_u32(&p, false, &port) || port > 65535)
      return false;
    *colon = '\0';
  }
  if (!ADR_Parse(host, out))
    return false;
  out->port = (uint16_t)port;
  return true;
}

/* "last.N" / "addr.N" with N < 16: the index, else -1 */
static int
prior_index(const CTW_Item *it, const char *prefix)
{
  size_t pl = strlen(prefix);
  if (it->name_len <= pl || it->name_len > pl + 2 || memcmp(it->name, prefix, pl) != 0)
    return -1;
  int v = 0;
  for (size_t i = pl; i < it->name_len; i++) {
    if (it->name[i] < '0' || it->name[i] > '9')
      return -1;
    v = v * 10 + (it->name[i] - '0');
  }
  return v < MRU_PRIORS ? v : -1;
}

static bool
parse_mru_item(const CTW_Item *it, MruQuery *m)
{
  int i;
  if (CTW_ItemIs(it, "nonce")) {
    m->nonce = it->value;
    m->nonce_len = it->value ? it->value_len : 0;
    return true;
  }
  if (CTW_ItemIs(it, "frags"))
    return parse_u32(it, false, &m->frags);
  if (CTW_ItemIs(it, "limit"))
    return parse_u32(it, false, &m->limit);
  if (CTW_ItemIs(it, "mincount")) {
    if (it->value && it->value_len > 0 && it->value[0] == '-')
      return (m->mincount = 0, true);
    return parse_u32(it, false, &m->mincount);
  }
  if (CTW_ItemIs(it, "maxlstint"))
    return parse_u32(it, false, &m->maxlstint);
  if (CTW_ItemIs(it, "minlstint"))
    return parse_u32(it, false, &m->minlstint);
  if (CTW_ItemIs(it, "recent"))
    return parse_u32(it, false, &m->recent);
  if (CTW_ItemIs(it, "resall"))
    return parse_u32(it, true, &m->resall);
  if (CTW_ItemIs(it, "resany"))
    return parse_u32(it, true, &m->resany);
  if ((i = prior_index(it, "last.")) >= 0)
    return (m->have_last[i] = parse_stamp(it, &m->last[i]));
  if ((i = prior_index(it, "addr.")) >= 0)
    return (m->have_addr[i] = parse_addr(it, &m->addr[i]));
  /* laddr, mindrop, minscore and unknown items: accepted and ignored */
  return true;
}

static bool
parse_mru(const CTW_Header *h, MruQuery *m)
{
  const char *s = (const char *)h->data, *end = s + h->count;
  CTW_Item it;
  memset(m, 0, sizeof(*m));
  while (CTW_NextItem(&s, end, &it))
    if (it.name_len > CTL_MAX_TOKEN || it.value_len > CTL_MAX_TOKEN || !parse_mru_item(&it, m))
      return false;
  return m->nonce != NULL;
}

static bool
mru_wanted(const CTL_Req *q, const MruQuery *m, const MON_Record *r)
{
  uint32_t rs = res_bits(r->rflags);
  int64_t lstint = (q->now->mono_ns - r->last_ns) / 1000000000;
  if (r->count < m->mincount)
    return false;
  if (m->resall && (m->resall & rs) != m->resall)
    return false;
  if (m->resany && !(m->resany & rs))
    return false;
  if (m->maxlstint && lstint > (int64_t)m->maxlstint)
    return false;
  return !(m->minlstint && lstint < (int64_t)m->minlstint);
}

/* One entry; false (and nothing written) if it does not fit. */
static bool
put_mru_entry(const CTL_Req *q, CTW_Writer *w, const MON_Record *r, unsigned i)
{
  CTW_Writer save = *w;
  char tag[32], addr[ADR_STRLEN];
  bool ok = true;
  snprintf(tag, sizeof(tag), "addr.%u", i);
  ok = ok && CTW_PutRaw(w, tag, ADR_FormatPort(&r->addr, addr, sizeof(addr)));
  snprintf(tag, sizeof(tag), "last.%u", i);
  ok = ok && CTW_PutStamp(w, tag, CTL_StampOfMono(q, r->last_ns));
  snprintf(tag, sizeof(tag), "first.%u", i);
  ok = ok && CTW_PutStamp(w, tag, CTL_StampOfMono(q, r->first_ns));
  snprintf(tag, sizeof(tag), "ct.%u", i);
  ok = ok && CTW_PutUint(w, tag, r->count);
  snprintf(tag, sizeof(tag), "mv.%u", i);
  ok = ok && CTW_PutUint(w, tag, (unsigned)((r->version & 7u) << 3) | (r->mode & 7u));
  snprintf(tag, sizeof(tag), "rs.%u", i);
  ok = ok && CTW_PutHex(w, tag, res_bits(r->rflags));
  if (!ok) {
    *w = save;
    w->overflow = true;
  }
  return ok;
}

static CTL_Reason
mru_single(CTL_Req *q, const MruQuery *m, CTW_Writer *w)
{
  char nonce[CTL_NONCE_LEN + 1];
  for (unsigned i = 0; i < MRU_PRIORS; i++) {
    MON_Record r;
    if (m->have_addr[i] && q->ctx->mon && MON_Lookup(q->ctx->mon, &m->addr[i], &r))
      put_mru_entry(q, w, &r, i);
  }
  CTL_MakeNonce(q->ctx->nonce_secret, q->src, q->now_ts, nonce);
  w->cap += MRU_RESERVE;
  CTW_PutRaw(w, "nonce", nonce);
  CTW_PutStamp(w, "now", q->now_ts);
  return CTL_Finish(q, w, CTL_R_ANSWERED);
}

/* Where a new walk starts: after the newest prior entry that is unchanged (ntpd's rule;
 * ties and the prior itself are listed again), or for recent=N before the N newest
 * records. False: priors were given but none is unchanged. */
static bool
mru_from(CTL_Req *q, const MruQuery *m, MON_WalkFrom *from)
{
  MON_Table *t = q->ctx->mon;
  int priors = 0;
  *from = (MON_WalkFrom){0, INT64_MIN};
  while (priors < MRU_PRIORS && m->have_addr[priors] && m->have_last[priors])
    priors++;
  for (int i = 0; i < priors; i++) {
    MON_Record r;
    if (MON_Lookup(t, &m->addr[i], &r) &&
        NTT_Diff(CTL_StampOfMono(q, r.last_ns), m->last[i]) < MRU_MATCH_TOL &&
        NTT_Diff(m->last[i], CTL_StampOfMono(q, r.last_ns)) < MRU_MATCH_TOL) {
      from->skip_before_ns = r.last_ns;
      return true;
    }
  }
  if (priors > 0)
    return false;
  if (m->recent > 0) {
    MON_Stats st;
    MON_GetStats(t, &st);
    from->skip = st.entries > m->recent ? st.entries - m->recent : 0;
  }
  return true;
}

/* One page being written: MON_Walk hands it records in LRU order. */
typedef struct {
  CTL_Req *q;
  const MruQuery *m;
  CTW_Writer *w;
  unsigned count;
  int64_t newest;
} Page;

static bool
page_take(void *arg, const MON_Record *r)
{
  Page *p = arg;
  if (!mru_wanted(p->q, p->m, r))
    return true; /* passed over, and the walk goes on past it */
  if (p->count >= p->m->limit || !put_mru_entry(p->q, p->w, r, p->count))
    return false; /* the page is full: the next one starts with r */
  p->newest = r->last_ns;
  p->count++;
  return true;
}

/* One page of the walk named by the nonce, or of a new one. */
static CTL_Reason
mru_page(CTL_Req *q, const MruQuery *m, CTW_Writer *w, MON_WalkId walk)
{
  MON_Table *t = q->ctx->mon;
  Page page = {.q = q, .m = m, .w = w};
  MON_WalkStatus st = MON_WALK_DONE;
  if (t) {
    st = walk.gen ? MON_Walk(t, &walk, NULL, &q->out->walk, page_take, &page, NULL)
                  : MON_WALK_LOST;
    if (st == MON_WALK_LOST) {
      MON_WalkFrom from;
      if (!mru_from(q, m, &from))
        return CTL_SendError(q, CTW_ERR_UNKNOWNVAR, CTL_R_ERR_UNKNOWNVAR);
      st = MON_Walk(t, &walk, &from, &q->out->walk, page_take, &page, NULL);
    }
  }
  char nonce[CTL_WALK_NONCE_LEN + 1];
  if (st == MON_WALK_MORE)
    CTL_MakeWalkNonce(q->ctx->nonce_secret, q->src, q->now_ts, &walk, nonce);
  else
    CTL_MakeNonce(q->ctx->nonce_secret, q->src, q->now_ts, nonce);
  w->cap += MRU_RESERVE;
  CTW_PutRaw(w, "nonce", nonce);
  if (st == MON_WALK_DONE) { /* the end of the list */
    CTW_PutStamp(w, "now", q->now_ts);
    if (page.count > 0)
      CTW_PutStamp(w, "last.newest", CTL_StampOfMono(q, page.newest));
  }
  return CTL_Finish(q, w, CTL_R_ANSWERED);
}

CTL_Reason
CTL_ReadMru(CTL_Req *q)
{
  MruQuery m;
  MON_WalkId walk;
  if (q->rflags & RST_NOMRULIST)
    return CTL_SendError(q, CTW_ERR_PERMISSION, CTL_R_REFUSED_NOMRULIST);
  if (!parse_mru(q->h, &m) || !CTL_CheckWalkNonce(q->ctx->nonce_secret, q->src, m.nonce,
                                                  m.nonce_len, q->now_ts, &walk)) {
    q->out->wire.count = 0; /* no answer before the source proved it receives there */
    return CTL_R_DROP_NONCE;
  }
  q->unbounded = true;
  if ((m.frags == 0 && !(m.limit > 0 && m.limit <= CTL_MRU_ROW_LIMIT)) ||
      m.frags > CTL_MRU_FRAGS_LIMIT)
    return CTL_SendError(q, CTW_ERR_BADVALUE, CTL_R_ERR_BADVALUE);
  if (m.frags == 0)
    m.frags = CTL_MRU_FRAGS_LIMIT;
  if (m.limit == 0)
    m.limit = UINT32_MAX;
  CTW_Writer w;
  CTL_Start(q, &w, m.frags, 0);
  w.cap -= MRU_RESERVE;
  if (m.limit == 1)
    return mru_single(q, &m, &w);
  return mru_page(q, &m, &w, walk);
}

uint64_t
CTL_OldestAge(const CTL_Req *q)
{
  int64_t last;
  if (!q->ctx->mon || !MON_OldestSeen(q->ctx->mon, &last))
    return 0;
  int64_t age = q->now->mono_ns - last;
  return age > 0 ? (uint64_t)(age / 1000000000) : 0;
}
