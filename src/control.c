#include "control.h"

#include <inttypes.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>

#include "siphash.h"

#define PHI 15e-6     /* s/s: dispersion growth (RFC 5905) */
#define MAX_TOKEN 127 /* longest name or value we look at */
#define MRU_MATCH_TOL                                                                         \
  0.001                /* s: a prior entry is unchanged if its last time is this close        \
                        */
#define MRU_RESERVE 80 /* data octets kept for "now=..., last.newest=..." */
#define MRU_PRIORS 16  /* last.N / addr.N pairs ntpq may send (N < 16) */

static const char *const reason_names[] = {
#define CTL_NAME(id, name) name,
    CTL_REASONS(CTL_NAME)
#undef CTL_NAME
};

const char *
CTL_ReasonName(CTL_Reason r)
{
  return (unsigned)r < CTL_R_COUNT ? reason_names[r] : "unknown";
}

/* One request being answered. */
typedef struct {
  const CTL_Ctx *ctx;
  const CTW_Header *h;
  const NetAddr *src;
  uint32_t rflags;
  const NTT_Now *now;
  NTT_Stamp now_ts;
  CTL_Output *out;
  CTW_Reply reply;
  bool authenticated; /* MAC verified with a trusted key */
  bool control;       /* ... and that key is the control key */
  bool unbounded;     /* exempt from the amplification bound */
  bool have_mon_stats;
  MON_Stats mon_stats;
} Req;

static CTL_Reason
send_error(Req *q, uint8_t err, CTL_Reason why)
{
  CTW_SetError(&q->out->wire, &q->reply, err);
  return why;
}

static void
start(Req *q, CTW_Writer *w, size_t max_frags, uint16_t status)
{
  q->reply.status = status;
  CTW_WriterInit(w, &q->out->wire, max_frags);
}

static CTL_Reason
finish(Req *q, CTW_Writer *w, CTL_Reason why)
{
  CTW_Finish(w, &q->reply);
  return why;
}

/* ------------------------------------------------------------------------------------ */
/* Value formatting                                                                      */

/* Quoted strings must not end the quote or the line: anything but printable ASCII other
 * than '"' becomes '.', and long strings are cut. */
static void
sanitize(const char *s, char *buf, size_t size)
{
  size_t i = 0;
  for (; s && s[i] && i + 1 < size && i < MAX_TOKEN; i++)
    buf[i] = (s[i] > 0x20 && s[i] < 0x7f && s[i] != '"') || s[i] == ' ' ? s[i] : '.';
  buf[i] = '\0';
}

static bool
put_text(CTW_Writer *w, const char *name, const char *s)
{
  char buf[MAX_TOKEN + 1];
  sanitize(s, buf, sizeof(buf));
  return CTW_PutString(w, name, buf);
}

/* A refid as ntpd prints it: a dotted IPv4 address for strata 2..15, else its ASCII code
 * (non-printable octets as '.', up to the first NUL). */
static bool
put_refid(CTW_Writer *w, const char *name, uint32_t refid, unsigned stratum)
{
  char buf[20];
  if (stratum > 1 && stratum < 16) {
    snprintf(buf, sizeof(buf), "%u.%u.%u.%u", refid >> 24, (refid >> 16) & 0xff,
             (refid >> 8) & 0xff, refid & 0xff);
  } else {
    size_t i = 0;
    for (; i < 4; i++) {
      char c = (char)(refid >> (24 - 8 * i));
      if (c == '\0')
        break;
      buf[i] = c > 0x20 && c < 0x7f && c != ',' && c != '"' ? c : '.';
    }
    buf[i] = '\0';
  }
  return CTW_PutRaw(w, name, buf);
}

static bool
put_addr(CTW_Writer *w, const char *name, const NetAddr *a)
{
  char buf[ADR_STRLEN];
  if (a->family == ADR_NONE)
    return CTW_PutRaw(w, name, "0.0.0.0");
  return CTW_PutRaw(w, name, ADR_Format(a, buf, sizeof(buf)));
}

static bool
put_ms(CTW_Writer *w, const char *name, int decimals, double seconds)
{
  return CTW_PutDouble(w, name, decimals, seconds * 1e3);
}

/* The NTP time of a monotonic reading, through this request's (real, monotonic) pair. */
static NTT_Stamp
stamp_of_mono(const Req *q, int64_t mono_ns)
{
  return NTT_Add(q->now_ts, -(double)(q->now->mono_ns - mono_ns) / 1e9);
}

/* ------------------------------------------------------------------------------------ */
/* System variables                                                                      */

typedef enum {
  SV_VERSION,
  SV_PROCESSOR,
  SV_SYSTEM,
  SV_RELEASE,
  SV_LEAP,
  SV_STRATUM,
  SV_PRECISION,
  SV_ROOTDELAY,
  SV_ROOTDISP,
  SV_ROOTDIST,
  SV_REFID,
  SV_REFTIME,
  SV_CLOCK,
  SV_PEER,
  SV_TC,
  SV_MINTC,
  SV_OFFSET,
  SV_FREQUENCY,
  SV_SYS_JITTER,
  SV_CLK_JITTER,
  SV_CLK_WANDER,
  SV_PEERADR,
  SV_PEERMODE,
  SV_UPTIME, /* Stats.uptime under several names */
  SV_STAT,   /* a CTL_Stats field at .off */
  SV_AUTHKEYS,
  SV_ZERO, /* known to ntpq, not tracked here: 0 */
  SV_AUTHDELAY,
  SV_MRU_ENABLED,
  SV_MRU_DEPTH,
  SV_MRU_MAXDEPTH,
  SV_MRU_MINDEPTH,
  SV_MRU_MAXAGE,
  SV_MRU_MEM,
  SV_MRU_MAXMEM,
  SV_MRU_RECYCLEFULL,
  SV_MRU_NONE,
  SV_MRU_OLDEST_AGE,
} SysKind;

typedef struct {
  const char *name;
  SysKind kind;
  bool def; /* in the default list (rv without names) */
  size_t off;
} SysVar;

#define ST(name, field)                                                                       \
  {                                                                                           \
    name, SV_STAT, false, offsetof(CTL_Stats, field)                                          \
  }
static const SysVar sys_vars[] = {
    {"version", SV_VERSION, true, 0},
    {"processor", SV_PROCESSOR, true, 0},
    {"system", SV_SYSTEM, true, 0},
    {"release", SV_RELEASE, true, 0},
    {"leap", SV_LEAP, true, 0},
    {"stratum", SV_STRATUM, true, 0},
    {"precision", SV_PRECISION, true, 0},
    {"rootdelay", SV_ROOTDELAY, true, 0},
    {"rootdisp", SV_ROOTDISP, true, 0},
    {"refid", SV_REFID, true, 0},
    {"reftime", SV_REFTIME, true, 0},
    {"clock", SV_CLOCK, true, 0},
    {"peer", SV_PEER, true, 0},
    {"tc", SV_TC, true, 0},
    {"mintc", SV_MINTC, true, 0},
    {"offset", SV_OFFSET, true, 0},
    {"frequency", SV_FREQUENCY, true, 0},
    {"sys_jitter", SV_SYS_JITTER, true, 0},
    {"clk_jitter", SV_CLK_JITTER, true, 0},
    {"clk_wander", SV_CLK_WANDER, true, 0},
    {"rootdist", SV_ROOTDIST, false, 0},
    {"peeradr", SV_PEERADR, false, 0},
    {"peermode", SV_PEERMODE, false, 0},
    /* sysstats */
    {"ss_uptime", SV_UPTIME, false, 0},
    {"ss_reset", SV_UPTIME, false, 0},
    ST("ss_received", received),
    ST("ss_thisver", thisver),
    ST("ss_oldver", oldver),
    ST("ss_ver1", ver1),
    ST("ss_ver1client", ver1client),
    ST("ss_ver1zero", ver1zero),
    ST("ss_ver1symm", ver1symm),
    ST("ss_badformat", badformat),
    ST("ss_badauth", badauth),
    ST("ss_declined", declined),
    ST("ss_restricted", restricted),
    ST("ss_limited", limited),
    ST("ss_kodsent", kodsent),
    ST("ss_processed", processed),
    ST("ss_numctlreq", numctlreq),
    /* iostats */
    {"iostats_reset", SV_UPTIME, false, 0},
    ST("io_received", io_received),
    ST("io_sent", io_sent),
    ST("io_sendfailed", io_sendfailed),
    ST("io_dropped", io_dropped),
    ST("io_ignored", io_ignored),
    ST("io_wakeups", io_wakeups),
    ST("io_goodwakeups", io_goodwakeups),
    ST("total_rbuf", total_rbuf),
    ST("free_rbuf", free_rbuf),
    ST("used_rbuf", used_rbuf),
    ST("rbuf_lowater", rbuf_lowater),
    /* authinfo */
    {"authreset", SV_UPTIME, false, 0},
    {"authdelay", SV_AUTHDELAY, false, 0},
    {"authkeys", SV_AUTHKEYS, false, 0},
    {"authfreek", SV_ZERO, false, 0},
    ST("authklookups", authklookups),
    ST("authknotfound", authknotfound),
    ST("authencrypts", authencrypts),
    ST("authdigestencrypts", authdigestencrypts),
    ST("authcmacencrypts", authcmacencrypts),
    ST("authdecrypts", authdecrypts),
    ST("authdigestdecrypts", authdigestdecrypts),
    ST("authdigestfails", authdigestfails),
    ST("authcmacdecrypts", authcmacdecrypts),
    ST("authcmacfails", authcmacfails),
    {"authkuncached", SV_ZERO, false, 0}, /* ntpq still asks for these old ones */
    {"authkexpired", SV_ZERO, false, 0},
    /* monstats */
    {"mru_enabled", SV_MRU_ENABLED, false, 0},
    {"mru_hashslots", SV_ZERO, false, 0},
    {"mru_depth", SV_MRU_DEPTH, false, 0},
    {"mru_deepest", SV_MRU_DEPTH, false, 0},
    {"mru_maxdepth", SV_MRU_MAXDEPTH, false, 0},
    {"mru_mindepth", SV_MRU_MINDEPTH, false, 0},
    {"mru_maxage", SV_MRU_MAXAGE, false, 0},
    {"mru_minage", SV_ZERO, false, 0},
    {"mru_mem", SV_MRU_MEM, false, 0},
    {"mru_maxmem", SV_MRU_MAXMEM, false, 0},
    {"mru_exists", SV_ZERO, false, 0},
    {"mru_new", SV_ZERO, false, 0},
    {"mru_recycleold", SV_ZERO, false, 0},
    {"mru_recyclefull", SV_MRU_RECYCLEFULL, false, 0},
    {"mru_none", SV_MRU_NONE, false, 0},
    {"mru_oldest_age", SV_MRU_OLDEST_AGE, false, 0},
    /* timerstats */
    {"timerstats_reset", SV_UPTIME, false, 0},
};
#undef ST
#define N_SYS_VARS (sizeof(sys_vars) / sizeof(sys_vars[0]))

static const CTL_Peer *
find_peer(const CTL_Ctx *c, uint16_t associd)
{
  for (size_t i = 0; i < c->n_peers; i++)
    if (c->peers[i].associd == associd)
      return &c->peers[i];
  return NULL;
}

static double
root_disp(const Req *q)
{
  const SRV_System *s = q->ctx->sys;
  int64_t age = q->now->mono_ns - s->update_mono_ns;
  return s->root_disp + (age > 0 ? PHI * (double)age / 1e9 : 0.0);
}

static uint64_t
stat_field(const Req *q, size_t off)
{
  uint64_t v = 0;
  if (q->ctx->stats)
    memcpy(&v, (const char *)q->ctx->stats + off, sizeof(v));
  return v;
}

static const MON_Stats *
mon_stats(Req *q)
{
  if (!q->have_mon_stats && q->ctx->mon)
    MON_GetStats(q->ctx->mon, &q->mon_stats);
  q->have_mon_stats = true;
  return &q->mon_stats;
}

static uint64_t
oldest_age(Req *q)
{
  if (!q->ctx->mon || MON_List(q->ctx->mon, false, NULL, q->out->mru, 1) == 0)
    return 0;
  int64_t age = q->now->mono_ns - q->out->mru[0].last_ns;
  return age > 0 ? (uint64_t)(age / 1000000000) : 0;
}

static bool
put_sys_strings(Req *q, CTW_Writer *w, const SysVar *v)
{
  const CTL_Ctx *c = q->ctx;
  switch (v->kind) {
    case SV_VERSION:
      return put_text(w, v->name, c->version ? c->version : "ntpgated");
    case SV_PROCESSOR:
      return !c->processor || put_text(w, v->name, c->processor);
    case SV_SYSTEM:
      return !c->system || put_text(w, v->name, c->system);
    case SV_RELEASE:
      return !c->release || put_text(w, v->name, c->release);
    case SV_PEERADR: {
      const CTL_Peer *p = c->sys_peer ? find_peer(c, c->sys_peer) : NULL;
      char buf[ADR_STRLEN] = "0.0.0.0:0";
      if (p && p->srcadr.family != ADR_NONE)
        ADR_FormatPort(&p->srcadr, buf, sizeof(buf));
      return CTW_PutString(w, v->name, buf);
    }
    default:
      return false;
  }
}

static bool
put_sys_clock(Req *q, CTW_Writer *w, const SysVar *v)
{
  const CTL_Ctx *c = q->ctx;
  const SRV_System *s = c->sys;
  switch (v->kind) {
    case SV_LEAP:
      return CTW_PutUint(w, v->name, s->leap);
    case SV_STRATUM:
      return CTW_PutUint(w, v->name, s->stratum);
    case SV_PRECISION:
      return CTW_PutInt(w, v->name, s->precision);
    case SV_ROOTDELAY:
      return put_ms(w, v->name, 3, s->root_delay);
    case SV_ROOTDISP:
      return put_ms(w, v->name, 3, root_disp(q));
    case SV_ROOTDIST:
      return put_ms(w, v->name, 3, s->root_delay / 2 + root_disp(q));
    case SV_REFID:
      return put_refid(w, v->name, s->refid, s->stratum);
    case SV_REFTIME:
      return CTW_PutStamp(w, v->name, s->ref_ts);
    case SV_CLOCK:
      return CTW_PutStamp(w, v->name, q->now_ts);
    case SV_PEER:
      return CTW_PutUint(w, v->name, c->sys_peer);
    case SV_TC:
      return CTW_PutInt(w, v->name, c->poll);
    case SV_MINTC:
      return CTW_PutInt(w, v->name, c->minpoll);
    case SV_OFFSET:
      return put_ms(w, v->name, 6, c->offset);
    case SV_FREQUENCY:
      return CTW_PutDouble(w, v->name, 3, c->frequency_ppm);
    case SV_SYS_JITTER:
      return put_ms(w, v->name, 6, c->sys_jitter);
    case SV_CLK_JITTER:
      return put_ms(w, v->name, 6, c->clk_jitter);
    case SV_CLK_WANDER:
      return CTW_PutDouble(w, v->name, 6, c->clk_wander_ppm);
    case SV_PEERMODE: {
      const CTL_Peer *p = c->sys_peer ? find_peer(c, c->sys_peer) : NULL;
      return CTW_PutUint(w, v->name, p ? p->hmode : 0);
    }
    default:
      return put_sys_strings(q, w, v);
  }
}

static bool
put_sys_mru(Req *q, CTW_Writer *w, const SysVar *v)
{
  const MON_Stats *m = mon_stats(q);
  const MON_Params *p = q->ctx->mon_params;
  switch (v->kind) {
    case SV_MRU_ENABLED:
      return CTW_PutUint(w, v->name, q->ctx->mon != NULL);
    case SV_MRU_DEPTH:
      return CTW_PutUint(w, v->name, m->entries);
    case SV_MRU_MAXDEPTH:
      return CTW_PutUint(w, v->name, m->capacity);
    case SV_MRU_MINDEPTH:
      return CTW_PutUint(w, v->name, p ? p->mindepth : 0);
    case SV_MRU_MAXAGE:
      return CTW_PutUint(w, v->name, p ? p->maxage : 0);
    case SV_MRU_MEM:
      return CTW_PutUint(w, v->name, (m->entries * MON_RECORD_BYTES + 512) / 1024);
    case SV_MRU_MAXMEM:
      return CTW_PutUint(w, v->name, (m->memory_bytes + 512) / 1024);
    case SV_MRU_RECYCLEFULL:
      return CTW_PutUint(w, v->name, m->evictions);
    case SV_MRU_NONE:
      return CTW_PutUint(w, v->name, m->not_tracked);
    case SV_MRU_OLDEST_AGE:
      return CTW_PutUint(w, v->name, oldest_age(q));
    default:
      return put_sys_clock(q, w, v);
  }
}

/* name is the name as asked (it may carry an "_r" suffix). */
static bool
put_sys(Req *q, CTW_Writer *w, const SysVar *v, const char *name)
{
  SysVar named = *v;
  named.name = name;
  switch (v->kind) {
    case SV_UPTIME:
      return CTW_PutUint(w, name, q->ctx->stats ? q->ctx->stats->uptime : 0);
    case SV_STAT:
      return CTW_PutUint(w, name, stat_field(q, v->off));
    case SV_AUTHKEYS:
      return CTW_PutUint(w, name, KEY_Count(q->ctx->keys));
    case SV_ZERO:
      return CTW_PutUint(w, name, 0);
    case SV_AUTHDELAY:
      return CTW_PutDouble(w, name, 3, 0.0);
    default:
      return put_sys_mru(q, w, &named);
  }
}

static const SysVar *
find_sys_var(const char *name)
{
  for (size_t i = 0; i < N_SYS_VARS; i++)
    if (strcmp(sys_vars[i].name, name) == 0)
      return &sys_vars[i];
  /* ntpsec's "X_r" sysstats variables count since start; we never reset, so X_r = X */
  size_t n = strlen(name);
  if (n > 5 && strncmp(name, "ss_", 3) == 0 && strcmp(name + n - 2, "_r") == 0) {
    char base[MAX_TOKEN + 1];
    memcpy(base, name, n - 2);
    base[n - 2] = '\0';
    const SysVar *v = find_sys_var(base);
    if (v && (v->kind == SV_STAT || v->kind == SV_UPTIME))
      return v;
  }
  return NULL;
}

static const CTL_Counter *
find_counter(const CTL_Ctx *c, const char *name)
{
  for (size_t i = 0; i < c->n_counters; i++)
    if (c->counters[i].name && strcmp(c->counters[i].name, name) == 0)
      return &c->counters[i];
  return NULL;
}

/* Copy an item's name into buf; false if it is empty or too long to be a name of ours. */
static bool
item_name(const CTW_Item *it, char *buf, size_t size)
{
  if (it->name_len == 0 || it->name_len >= size)
    return false;
  memcpy(buf, it->name, it->name_len);
  buf[it->name_len] = '\0';
  return true;
}

/* ------------------------------------------------------------------------------------ */
/* Association variables                                                                 */

typedef enum {
  PV_SRCADR,
  PV_SRCPORT,
  PV_SRCHOST,
  PV_DSTADR,
  PV_DSTPORT,
  PV_LEAP,
  PV_STRATUM,
  PV_PRECISION,
  PV_ROOTDELAY,
  PV_ROOTDISP,
  PV_REFID,
  PV_REFTIME,
  PV_REC,
  PV_XMT,
  PV_REACH,
  PV_UNREACH,
  PV_HMODE,
  PV_PMODE,
  PV_HPOLL,
  PV_PPOLL,
  PV_HEADWAY,
  PV_FLASH,
  PV_KEYID,
  PV_OFFSET,
  PV_DELAY,
  PV_DISPERSION,
  PV_JITTER,
  PV_FILTDELAY,
  PV_FILTOFFSET,
  PV_FILTDISP,
  PV_CONFIG,
  PV_AUTHENABLE,
  PV_AUTHENTIC,
  PV_RECEIVED,
  PV_SENT,
  PV_TIMER,
  PV_TIMEREC,
  PV_TIMEREACH,
  PV_BADAUTH,
  PV_BOGUSORG,
  PV_OLDPKT,
  PV_SELDISP,
  PV_SELBROKEN,
  PV_CANDIDATE,
} PeerKind;

typedef struct {
  const char *name;
  PeerKind kind;
  bool def;
} PeerVar;

/* The default list is what `ntpq -p` and `rv &N` show, most needed first: to a source
 * that is held to the amplification bound it is cut after the last item that fits in one
 * datagram (long IPv6 addresses and host names push the tail out). */
static const PeerVar peer_vars[] = {
    {"srcadr", PV_SRCADR, true},
    {"srchost", PV_SRCHOST, true},
    {"dstadr", PV_DSTADR, true},
    {"refid", PV_REFID, true},
    {"stratum", PV_STRATUM, true},
    {"hmode", PV_HMODE, true},
    {"reach", PV_REACH, true},
    {"hpoll", PV_HPOLL, true},
    {"ppoll", PV_PPOLL, true},
    {"rec", PV_REC, true},
    {"reftime", PV_REFTIME, true},
    {"delay", PV_DELAY, true},
    {"offset", PV_OFFSET, true},
    {"jitter", PV_JITTER, true},
    {"dispersion", PV_DISPERSION, true},
    {"rootdelay", PV_ROOTDELAY, true},
    {"rootdisp", PV_ROOTDISP, true},
    {"leap", PV_LEAP, true},
    {"precision", PV_PRECISION, true},
    {"pmode", PV_PMODE, true},
    {"srcport", PV_SRCPORT, true},
    {"dstport", PV_DSTPORT, true},
    {"unreach", PV_UNREACH, true},
    {"flash", PV_FLASH, true},
    {"keyid", PV_KEYID, true},
    {"xmt", PV_XMT, false},
    {"headway", PV_HEADWAY, false},
    {"filtdelay", PV_FILTDELAY, false},
    {"filtoffset", PV_FILTOFFSET, false},
    {"filtdisp", PV_FILTDISP, false},
    {"config", PV_CONFIG, false},
    {"authenable", PV_AUTHENABLE, false},
    {"authentic", PV_AUTHENTIC, false},
    {"received", PV_RECEIVED, false},
    {"sent", PV_SENT, false},
    {"timer", PV_TIMER, false},
    {"timerec", PV_TIMEREC, false},
    {"timereach", PV_TIMEREACH, false},
    {"badauth", PV_BADAUTH, false},
    {"bogusorg", PV_BOGUSORG, false},
    {"oldpkt", PV_OLDPKT, false},
    {"seldisp", PV_SELDISP, false},
    {"selbroken", PV_SELBROKEN, false},
    {"candidate", PV_CANDIDATE, false},
};
#define N_PEER_VARS (sizeof(peer_vars) / sizeof(peer_vars[0]))

static bool
put_filter(CTW_Writer *w, const char *name, const double *v)
{
  char buf[8 * 16 + 1];
  size_t n = 0;
  for (int i = 0; i < 8; i++) {
    double ms = v[i] == v[i] ? v[i] * 1e3 : 0.0;
    if (ms > 1e9 || ms < -1e9)
      ms = ms > 0 ? 1e9 : -1e9;
    n += (size_t)snprintf(buf + n, sizeof(buf) - n, " %.2f", ms);
  }
  return CTW_PutRaw(w, name, buf);
}

static bool
put_peer_counters(CTW_Writer *w, const PeerVar *v, const CTL_Peer *p)
{
  switch (v->kind) {
    case PV_CONFIG:
      return CTW_PutUint(w, v->name, p->configured);
    case PV_AUTHENABLE:
      return CTW_PutUint(w, v->name, p->keyid != 0);
    case PV_AUTHENTIC:
      return CTW_PutUint(w, v->name, p->authentic);
    case PV_RECEIVED:
      return CTW_PutUint(w, v->name, p->received);
    case PV_SENT:
      return CTW_PutUint(w, v->name, p->sent);
    case PV_TIMER:
      return CTW_PutUint(w, v->name, p->timer);
    case PV_TIMEREC:
      return CTW_PutUint(w, v->name, p->timerec);
    case PV_TIMEREACH:
      return CTW_PutUint(w, v->name, p->timereach);
    case PV_BADAUTH:
      return CTW_PutUint(w, v->name, p->badauth);
    case PV_BOGUSORG:
      return CTW_PutUint(w, v->name, p->bogusorg);
    case PV_OLDPKT:
      return CTW_PutUint(w, v->name, p->oldpkt);
    case PV_SELDISP:
      return CTW_PutUint(w, v->name, p->seldisp);
    case PV_SELBROKEN:
      return CTW_PutUint(w, v->name, p->selbroken);
    case PV_CANDIDATE:
      return CTW_PutUint(w, v->name, p->select);
    case PV_FILTDELAY:
      return put_filter(w, v->name, p->filtdelay);
    case PV_FILTOFFSET:
      return put_filter(w, v->name, p->filtoffset);
    case PV_FILTDISP:
      return put_filter(w, v->name, p->filtdisp);
    default:
      return false;
  }
}

static bool
put_peer(CTW_Writer *w, const PeerVar *v, const CTL_Peer *p)
{
  switch (v->kind) {
    case PV_SRCADR:
      return put_addr(w, v->name, &p->srcadr);
    case PV_SRCPORT:
      return CTW_PutUint(w, v->name, p->srcadr.port);
    case PV_SRCHOST:
      return !p->hostname || put_text(w, v->name, p->hostname);
    case PV_DSTADR:
      return put_addr(w, v->name, &p->dstadr);
    case PV_DSTPORT:
      return CTW_PutUint(w, v->name, p->dstadr.port);
    case PV_LEAP:
      return CTW_PutUint(w, v->name, p->leap);
    case PV_STRATUM:
      return CTW_PutUint(w, v->name, p->stratum);
    case PV_PRECISION:
      return CTW_PutInt(w, v->name, p->precision);
    case PV_ROOTDELAY:
      return put_ms(w, v->name, 3, p->rootdelay);
    case PV_ROOTDISP:
      return put_ms(w, v->name, 3, p->rootdisp);
    case PV_REFID:
      return put_refid(w, v->name, p->refid, p->stratum);
    case PV_REFTIME:
      return CTW_PutStamp(w, v->name, p->reftime);
    case PV_REC:
      return CTW_PutStamp(w, v->name, p->rec);
    case PV_XMT:
      return CTW_PutStamp(w, v->name, p->xmt);
    case PV_REACH:
      return CTW_PutHex(w, v->name, p->reach);
    case PV_UNREACH:
      return CTW_PutUint(w, v->name, p->unreach);
    case PV_HMODE:
      return CTW_PutUint(w, v->name, p->hmode);
    case PV_PMODE:
      return CTW_PutUint(w, v->name, p->pmode);
    case PV_HPOLL:
      return CTW_PutInt(w, v->name, p->hpoll);
    case PV_PPOLL:
      return CTW_PutInt(w, v->name, p->ppoll);
    case PV_HEADWAY:
      return CTW_PutUint(w, v->name, p->headway);
    case PV_FLASH:
      return CTW_PutHex(w, v->name, p->flash);
    case PV_KEYID:
      return CTW_PutUint(w, v->name, p->keyid);
    case PV_OFFSET:
      return put_ms(w, v->name, 6, p->offset);
    case PV_DELAY:
      return put_ms(w, v->name, 6, p->delay);
    case PV_DISPERSION:
      return put_ms(w, v->name, 6, p->disp);
    case PV_JITTER:
      return put_ms(w, v->name, 6, p->jitter);
    default:
      return put_peer_counters(w, v, p);
  }
}

static const PeerVar *
find_peer_var(const char *name)
{
  for (size_t i = 0; i < N_PEER_VARS; i++)
    if (strcmp(peer_vars[i].name, name) == 0)
      return &peer_vars[i];
  return NULL;
}

static uint16_t
sys_status(const CTL_Ctx *c)
{
  return CTW_SysStatus(c->sys->leap, c->sys_source, c->sys_event_count, c->sys_last_event);
}

static uint16_t
peer_status(const CTL_Peer *p)
{
  unsigned f = p->select & 7u;
  if (p->configured)
    f |= CTW_PST_CONFIG;
  if (p->keyid != 0)
    f |= CTW_PST_AUTHENABLE;
  if (p->authentic)
    f |= CTW_PST_AUTHENTIC;
  if (p->reach)
    f |= CTW_PST_REACH;
  if (p->broadcast)
    f |= CTW_PST_BCAST;
  return CTW_PeerStatus(f, p->num_events, p->last_event);
}

/* ------------------------------------------------------------------------------------ */
/* READSTAT, READVAR                                                                     */

/* Default lists are cut to one datagram for sources held to the amplification bound. */
static size_t
default_frags(const Req *q)
{
  return q->unbounded ? CTW_MAX_FRAGS : 1;
}

static CTL_Reason
put_peer_defaults(Req *q, const CTL_Peer *p)
{
  CTW_Writer w;
  start(q, &w, default_frags(q), peer_status(p));
  for (size_t i = 0; i < N_PEER_VARS; i++)
    if (peer_vars[i].def && !put_peer(&w, &peer_vars[i], p))
      break;
  return finish(q, &w, CTL_R_ANSWERED);
}

static CTL_Reason
read_status(Req *q)
{
  const CTL_Ctx *c = q->ctx;
  if (q->h->associd != 0) {
    const CTL_Peer *p = find_peer(c, q->h->associd);
    if (!p)
      return send_error(q, CTW_ERR_BADASSOC, CTL_R_ERR_ASSOC);
    return put_peer_defaults(q, p);
  }
  CTW_Writer w;
  start(q, &w, CTW_MAX_FRAGS, sys_status(c));
  for (size_t i = 0; i < c->n_peers; i++) {
    uint8_t pair[4];
    PKT_Put16(pair, c->peers[i].associd);
    PKT_Put16(pair + 2, peer_status(&c->peers[i]));
    if (!CTW_PutBytes(&w, pair, sizeof(pair)))
      break;
  }
  return finish(q, &w, CTL_R_ANSWERED);
}

static CTL_Reason
read_peer_vars(Req *q)
{
  const CTL_Peer *p = find_peer(q->ctx, q->h->associd);
  if (!p)
    return send_error(q, CTW_ERR_BADASSOC, CTL_R_ERR_ASSOC);
  const char *s = (const char *)q->h->data, *end = s + q->h->count;
  CTW_Item it;
  if (!CTW_NextItem(&s, end, &it))
    return put_peer_defaults(q, p);
  CTW_Writer w;
  start(q, &w, CTW_MAX_FRAGS, peer_status(p));
  s = (const char *)q->h->data;
  while (CTW_NextItem(&s, end, &it)) {
    char name[MAX_TOKEN + 1];
    const PeerVar *v = item_name(&it, name, sizeof(name)) ? find_peer_var(name) : NULL;
    if (!v)
      return send_error(q, CTW_ERR_UNKNOWNVAR, CTL_R_ERR_UNKNOWNVAR);
    put_peer(&w, v, p);
  }
  if (w.overflow)
    return send_error(q, CTW_ERR_BADVALUE, CTL_R_ERR_BADVALUE);
  return finish(q, &w, CTL_R_ANSWERED);
}

static CTL_Reason
read_sys_vars(Req *q)
{
  const char *s = (const char *)q->h->data, *end = s + q->h->count;
  CTW_Item it;
  CTW_Writer w;
  if (!CTW_NextItem(&s, end, &it)) {
    start(q, &w, default_frags(q), sys_status(q->ctx));
    for (size_t i = 0; i < N_SYS_VARS; i++)
      if (sys_vars[i].def && !put_sys(q, &w, &sys_vars[i], sys_vars[i].name))
        break;
    return finish(q, &w, CTL_R_ANSWERED);
  }
  start(q, &w, CTW_MAX_FRAGS, sys_status(q->ctx));
  s = (const char *)q->h->data;
  while (CTW_NextItem(&s, end, &it)) {
    char name[MAX_TOKEN + 1];
    if (!item_name(&it, name, sizeof(name)))
      return send_error(q, CTW_ERR_UNKNOWNVAR, CTL_R_ERR_UNKNOWNVAR);
    const CTL_Counter *k = find_counter(q->ctx, name);
    const SysVar *v = k ? NULL : find_sys_var(name);
    if (k)
      CTW_PutUint(&w, name, k->value);
    else if (v)
      put_sys(q, &w, v, name);
    else
      return send_error(q, CTW_ERR_UNKNOWNVAR, CTL_R_ERR_UNKNOWNVAR);
  }
  if (w.overflow)
    return send_error(q, CTW_ERR_BADVALUE, CTL_R_ERR_BADVALUE);
  return finish(q, &w, CTL_R_ANSWERED);
}

static CTL_Reason
read_vars(Req *q)
{
  return q->h->associd ? read_peer_vars(q) : read_sys_vars(q);
}

static CTL_Reason
unspec(Req *q)
{
  uint16_t status = sys_status(q->ctx);
  if (q->h->associd) {
    const CTL_Peer *p = find_peer(q->ctx, q->h->associd);
    if (!p)
      return send_error(q, CTW_ERR_BADASSOC, CTL_R_ERR_ASSOC);
    status = peer_status(p);
  }
  CTW_Writer w;
  start(q, &w, 1, status);
  return finish(q, &w, CTL_R_ANSWERED);
}

/* ------------------------------------------------------------------------------------ */
/* Nonces                                                                                */

static uint32_t
nonce_hash(const uint8_t secret[16], const NetAddr *src, NTT_Stamp ts)
{
  SIP_Key key;
  uint8_t msg[8 + 1 + 16 + 2];
  NetAddr a = *src;
  ADR_Unmap(&a);
  PKT_Put64(msg, ts);
  msg[8] = a.family;
  memcpy(msg + 9, a.bytes, 16);
  PKT_Put16(msg + 25, a.port);
  SIP_SetKey(&key, secret);
  return (uint32_t)SIP_Hash24(&key, msg, sizeof(msg));
}

void
CTL_MakeNonce(const uint8_t secret[16], const NetAddr *src, NTT_Stamp ts, char *buf)
{
  snprintf(buf, 25, "%08" PRIx32 "%08" PRIx32 "%08" PRIx32, (uint32_t)(ts >> 32), (uint32_t)ts,
           nonce_hash(secret, src, ts));
}

static bool
parse_hex32(const char *s, uint32_t *v)
{
  uint32_t r = 0;
  for (int i = 0; i < 8; i++) {
    char c = s[i];
    unsigned d;
    if (c >= '0' && c <= '9')
      d = (unsigned)(c - '0');
    else if (c >= 'a' && c <= 'f')
      d = (unsigned)(c - 'a' + 10);
    else if (c >= 'A' && c <= 'F')
      d = (unsigned)(c - 'A' + 10);
    else
      return false;
    r = (r << 4) | d;
  }
  *v = r;
  return true;
}

bool
CTL_CheckNonce(const uint8_t secret[16], const NetAddr *src, const char *nonce, size_t n,
               NTT_Stamp now)
{
  uint32_t hi, lo, h;
  if (n != 24 || !parse_hex32(nonce, &hi) || !parse_hex32(nonce + 8, &lo) ||
      !parse_hex32(nonce + 16, &h))
    return false;
  NTT_Stamp ts = ((NTT_Stamp)hi << 32) | lo;
  double age = NTT_Diff(now, ts);
  /* compare all 32 bits whatever the outcome of the age test */
  bool ok = (h ^ nonce_hash(secret, src, ts)) == 0;
  return ok && age >= 0.0 && age < CTL_NONCE_LIFETIME;
}

static CTL_Reason
req_nonce(Req *q)
{
  char nonce[25];
  CTW_Writer w;
  CTL_MakeNonce(q->ctx->nonce_secret, q->src, q->now_ts, nonce);
  start(q, &w, 1, 0);
  CTW_PutRaw(&w, "nonce", nonce);
  return finish(q, &w, CTL_R_ANSWERED);
}

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
      it->value[10] != '.' || !parse_hex32(it->value + 2, &hi) ||
      !parse_hex32(it->value + 11, &lo))
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
    if (it.name_len > MAX_TOKEN || it.value_len > MAX_TOKEN || !parse_mru_item(&it, m))
      return false;
  return m->nonce != NULL;
}

static bool
mru_wanted(const Req *q, const MruQuery *m, const MON_Record *r)
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
put_mru_entry(const Req *q, CTW_Writer *w, const MON_Record *r, unsigned i)
{
  CTW_Writer save = *w;
  char tag[32], addr[ADR_STRLEN];
  bool ok = true;
  snprintf(tag, sizeof(tag), "addr.%u", i);
  ok = ok && CTW_PutRaw(w, tag, ADR_FormatPort(&r->addr, addr, sizeof(addr)));
  snprintf(tag, sizeof(tag), "last.%u", i);
  ok = ok && CTW_PutStamp(w, tag, stamp_of_mono(q, r->last_ns));
  snprintf(tag, sizeof(tag), "first.%u", i);
  ok = ok && CTW_PutStamp(w, tag, stamp_of_mono(q, r->first_ns));
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

/* Where listing starts: after the newest prior entry the client has that is unchanged
 * (ntpd's rule), or for recent=N before the N-th newest record. False: priors were given
 * but none is unchanged. */
static bool
mru_start(Req *q, const MruQuery *m, MON_Cursor *cur, bool *have_cur)
{
  MON_Table *t = q->ctx->mon;
  int priors = 0;
  *have_cur = false;
  while (priors < MRU_PRIORS && m->have_addr[priors] && m->have_last[priors])
    priors++;
  for (int i = 0; i < priors; i++) {
    MON_Record r;
    if (t && MON_Lookup(t, &m->addr[i], &r) &&
        NTT_Diff(stamp_of_mono(q, r.last_ns), m->last[i]) < MRU_MATCH_TOL &&
        NTT_Diff(m->last[i], stamp_of_mono(q, r.last_ns)) < MRU_MATCH_TOL) {
      *cur = (MON_Cursor){r.last_ns, r.addr};
      return (*have_cur = true);
    }
  }
  if (priors > 0)
    return false;
  uint32_t left = m->recent;
  while (t && left > 0) {
    size_t n = MON_List(t, true, *have_cur ? cur : NULL, q->out->mru,
                        left < CTL_MRU_BATCH ? left : CTL_MRU_BATCH);
    if (n == 0)
      return true; /* fewer than `recent` records: list them all */
    const MON_Record *r = &q->out->mru[n - 1];
    *cur = (MON_Cursor){r->last_ns, r->addr};
    *have_cur = true;
    left -= (uint32_t)n;
  }
  if (*have_cur)
    cur->last_ns -= 1; /* strictly before the N-th newest, so that it is listed */
  return true;
}

/* Entries in (last seen, address) order after the start; true if the list was exhausted. */
static bool
mru_entries(Req *q, const MruQuery *m, CTW_Writer *w, MON_Cursor cur, bool have_cur,
            unsigned *count, int64_t *newest)
{
  MON_Table *t = q->ctx->mon;
  while (t) {
    size_t n = MON_List(t, false, have_cur ? &cur : NULL, q->out->mru, CTL_MRU_BATCH);
    for (size_t i = 0; i < n; i++) {
      const MON_Record *r = &q->out->mru[i];
      bool want = mru_wanted(q, m, r);
      if (want && (*count >= m->limit || !put_mru_entry(q, w, r, *count)))
        return false;
      cur = (MON_Cursor){r->last_ns, r->addr};
      have_cur = true;
      if (want) {
        *newest = r->last_ns;
        (*count)++;
      }
    }
    if (n < CTL_MRU_BATCH)
      return true;
  }
  return true;
}

static CTL_Reason
mru_single(Req *q, const MruQuery *m, CTW_Writer *w)
{
  char nonce[25];
  for (unsigned i = 0; i < MRU_PRIORS; i++) {
    MON_Record r;
    if (m->have_addr[i] && q->ctx->mon && MON_Lookup(q->ctx->mon, &m->addr[i], &r))
      put_mru_entry(q, w, &r, i);
  }
  CTL_MakeNonce(q->ctx->nonce_secret, q->src, q->now_ts, nonce);
  w->cap += MRU_RESERVE;
  CTW_PutRaw(w, "nonce", nonce);
  CTW_PutStamp(w, "now", q->now_ts);
  return finish(q, w, CTL_R_ANSWERED);
}

static CTL_Reason
read_mru(Req *q)
{
  MruQuery m;
  if (q->rflags & RST_NOMRULIST)
    return send_error(q, CTW_ERR_PERMISSION, CTL_R_REFUSED_NOMRULIST);
  if (!parse_mru(q->h, &m) ||
      !CTL_CheckNonce(q->ctx->nonce_secret, q->src, m.nonce, m.nonce_len, q->now_ts)) {
    q->out->wire.count = 0; /* no answer before the source proved it receives there */
    return CTL_R_DROP_NONCE;
  }
  q->unbounded = true;
  if ((m.frags == 0 && !(m.limit > 0 && m.limit <= CTL_MRU_ROW_LIMIT)) ||
      m.frags > CTL_MRU_FRAGS_LIMIT)
    return send_error(q, CTW_ERR_BADVALUE, CTL_R_ERR_BADVALUE);
  if (m.frags == 0)
    m.frags = CTL_MRU_FRAGS_LIMIT;
  if (m.limit == 0)
    m.limit = UINT32_MAX;
  CTW_Writer w;
  start(q, &w, m.frags, 0);
  w.cap -= MRU_RESERVE;
  if (m.limit == 1)
    return mru_single(q, &m, &w);
  MON_Cursor cur;
  bool have_cur;
  if (!mru_start(q, &m, &cur, &have_cur))
    return send_error(q, CTW_ERR_UNKNOWNVAR, CTL_R_ERR_UNKNOWNVAR);
  char nonce[25];
  CTL_MakeNonce(q->ctx->nonce_secret, q->src, q->now_ts, nonce);
  CTW_PutRaw(&w, "nonce", nonce);
  unsigned count = 0;
  int64_t newest = 0;
  bool done = mru_entries(q, &m, &w, cur, have_cur, &count, &newest);
  w.cap += MRU_RESERVE;
  if (done) {
    CTW_PutStamp(&w, "now", q->now_ts);
    if (count > 0)
      CTW_PutStamp(&w, "last.newest", stamp_of_mono(q, newest));
  }
  return finish(q, &w, CTL_R_ANSWERED);
}

/* ------------------------------------------------------------------------------------ */
/* Restriction list                                                                      */

static void
flag_names(uint32_t flags, uint32_t mflags, char *buf, size_t size)
{
  static const struct {
    uint32_t bit;
    const char *name;
  } mnames[] = {{RST_M_NTPPORT, "ntpport"},
                {RST_M_INTERFACE, "interface"},
                {RST_M_SOURCE, "source"}},
    names[] = {{RST_IGNORE, "ignore"},           {RST_NOSERVE, "noserve"},
               {RST_NOTRUST, "notrust"},         {RST_VERSION, "version"},
               {RST_NOPEER, "nopeer"},           {RST_NOEPEER, "noepeer"},
               {RST_LIMITED, "limited"},         {RST_NOQUERY, "noquery"},
               {RST_NOMODIFY, "nomodify"},       {RST_NOTRAP, "notrap"},
               {RST_LOWPRIOTRAP, "lowpriotrap"}, {RST_KOD, "kod"},
               {RST_MSSNTP, "mssntp"},           {RST_FLAKE, "flake"},
               {RST_NOMRULIST, "nomrulist"},     {RST_FUZZ, "fuzz"}};
  size_t n = 0;
  buf[0] = '\0';
  for (size_t i = 0; i < sizeof(mnames) / sizeof(mnames[0]); i++)
    if (mflags & mnames[i].bit)
      n += (size_t)snprintf(buf + n, size - n, "%s%s", n ? " " : "", mnames[i].name);
  for (size_t i = 0; i < sizeof(names) / sizeof(names[0]) && n < size; i++)
    if (flags & names[i].bit)
      n += (size_t)snprintf(buf + n, size - n, "%s%s", n ? " " : "", names[i].name);
}

static bool
put_restrict(const Req *q, CTW_Writer *w, size_t i, const RST_Entry *e)
{
  CTW_Writer save = *w;
  char tag[40], buf[256];
  bool ok = true;
  snprintf(tag, sizeof(tag), "addr.%zu", i);
  ok = ok && put_addr(w, tag, &e->addr);
  snprintf(tag, sizeof(tag), "mask.%zu", i);
  ok = ok && put_addr(w, tag, &e->mask);
  snprintf(tag, sizeof(tag), "hits.%zu", i);
  ok = ok && CTW_PutUint(w, tag, q->ctx->rst_hits ? q->ctx->rst_hits[i] : 0);
  snprintf(tag, sizeof(tag), "flags.%zu", i);
  flag_names(e->flags, e->mflags, buf, sizeof(buf));
  ok = ok && CTW_PutRaw(w, tag, buf);
  if (!ok) {
    *w = save;
    w->overflow = true;
  }
  return ok;
}

static CTL_Reason
read_ordlist(Req *q)
{
  static const char what[] = "addr_restrictions";
  if (!q->control)
    return send_error(q, CTW_ERR_PERMISSION, CTL_R_REFUSED_AUTH);
  if (q->h->count != sizeof(what) - 1 || memcmp(q->h->data, what, sizeof(what) - 1) != 0)
    return send_error(q, CTW_ERR_UNKNOWNVAR, CTL_R_ERR_UNKNOWNVAR);
  CTW_Writer w;
  start(q, &w, CTW_MAX_FRAGS, 0);
  size_t n = q->ctx->rst ? RST_Count(q->ctx->rst) : 0;
  for (size_t i = 0; i < n; i++)
    if (!put_restrict(q, &w, i, RST_Get(q->ctx->rst, i)))
      break; /* the rest does not fit in CTW_MAX_FRAGS datagrams */
  return finish(q, &w, CTL_R_ANSWERED);
}

/* ------------------------------------------------------------------------------------ */
/* Modifying requests                                                                    */

static CTL_Reason
check_modify(Req *q)
{
  if (q->rflags & RST_NOMODIFY)
    return send_error(q, CTW_ERR_PERMISSION, CTL_R_REFUSED_NOMODIFY);
  if (!q->control)
    return send_error(q, CTW_ERR_PERMISSION, CTL_R_REFUSED_AUTH);
  return CTL_R_ANSWERED;
}

static CTL_Reason
configure(Req *q)
{
  CTL_Reason why = check_modify(q);
  if (why != CTL_R_ANSWERED)
    return why;
  if (q->h->associd != 0)
    return send_error(q, CTW_ERR_BADVALUE, CTL_R_ERR_BADVALUE);
  if (!q->ctx->configure)
    return send_error(q, CTW_ERR_BADOP, CTL_R_ERR_OPCODE);
  char text[CTW_MAX_DATA + 1], reply[CTL_CONFIG_REPLY], clean[CTL_CONFIG_REPLY];
  size_t n = q->h->count;
  if (memchr(q->h->data, '\0', n))
    return send_error(q, CTW_ERR_BADVALUE, CTL_R_ERR_BADVALUE);
  memcpy(text, q->h->data, n);
  text[n] = '\0';
  reply[0] = '\0';
  bool ok = q->ctx->configure(q->ctx->configure_arg, text, reply, sizeof(reply));
  reply[sizeof(reply) - 1] = '\0';
  size_t k = 0;
  for (; reply[k]; k++) /* one line of printable text */
    clean[k] = reply[k] >= 0x20 && reply[k] < 0x7f ? reply[k] : ' ';
  clean[k] = '\0';
  CTW_Writer w;
  start(q, &w, 1, 0);
  CTW_PutItem(&w, clean[0] ? clean : ok ? "Config Succeeded" : "Config Failed");
  return finish(q, &w, ok ? CTL_R_CONFIG_APPLIED : CTL_R_CONFIG_FAILED);
}

static CTL_Reason
refuse_write(Req *q)
{
  CTL_Reason why = check_modify(q);
  if (why != CTL_R_ANSWERED)
    return why;
  return send_error(q, CTW_ERR_BADOP, CTL_R_ERR_OPCODE); /* nothing here is writable */
}

static CTL_Reason
refuse_trap(Req *q)
{
  if (q->rflags & RST_NOTRAP)
    return send_error(q, CTW_ERR_PERMISSION, CTL_R_REFUSED_NOTRAP);
  return send_error(q, CTW_ERR_BADOP, CTL_R_REFUSED_TRAP);
}

/* ------------------------------------------------------------------------------------ */
/* Dispatch                                                                              */

static CTL_Reason
dispatch(Req *q)
{
  switch (q->h->opcode) {
    case CTW_OP_UNSPEC:
      return unspec(q);
    case CTW_OP_READSTAT:
      return read_status(q);
    case CTW_OP_READVAR:
      return read_vars(q);
    case CTW_OP_READCLOCK:
      return send_error(q, CTW_ERR_BADASSOC, CTL_R_ERR_ASSOC); /* no reference clocks */
    case CTW_OP_WRITEVAR:
    case CTW_OP_WRITECLOCK:
    case CTW_OP_SAVECONFIG:
      return refuse_write(q);
    case CTW_OP_SETTRAP:
    case CTW_OP_ASYNCMSG:
    case CTW_OP_UNSETTRAP:
      return refuse_trap(q);
    case CTW_OP_CONFIGURE:
      return configure(q);
    case CTW_OP_READ_MRU:
      return read_mru(q);
    case CTW_OP_READ_ORDLIST_A:
      return read_ordlist(q);
    case CTW_OP_REQ_NONCE:
      return req_nonce(q);
    default:
      return send_error(q, CTW_ERR_BADOP, CTL_R_ERR_OPCODE);
  }
}

static CTL_Reason
parse_failure(Req *q, CTW_ParseResult r)
{
  switch (r) {
    case CTW_PARSE_SHORT:
      return CTL_R_DROP_SHORT;
    case CTW_PARSE_MODE:
      return CTL_R_DROP_MODE;
    case CTW_PARSE_RESPONSE:
      return CTL_R_DROP_RESPONSE;
    case CTW_PARSE_VERSION:
      return CTL_R_DROP_VERSION;
    default: /* length or count: answered, like ntpd, with an error no larger than it */
      return send_error(q, CTW_ERR_BADFMT, CTL_R_ERR_FORMAT);
  }
}

static void
authenticate(Req *q, const uint8_t *req, size_t len)
{
  const CTL_Ctx *c = q->ctx;
  if (c->local_admin) { /* the socket's file mode did the authenticating */
    q->authenticated = true;
    q->control = true;
    return;
  }
  if (!q->h->mac.has_mac || !c->keys)
    return;
  CTW_VerifyFn verify = c->verify ? c->verify : KEY_Verify;
  if (verify(c->keys, req, len, &q->h->mac, q->src) != KEY_OK)
    return;
  q->authenticated = true;
  q->control = c->control_key != 0 && q->h->mac.key_id == c->control_key;
  q->reply.sign = c->sign ? c->sign : KEY_Sign;
  q->reply.keys = c->keys;
  q->reply.key_id = q->h->mac.key_id;
}

static bool
is_loopback(const NetAddr *src)
{
  /* The host's own loopback identity only (127.0.0.1, ::1): the rest of 127/8 is where
   * tests put their many "remote" clients, and must see the same bound they would. */
  NetAddr a = *src, one;
  ADR_Unmap(&a);
  if (a.family == ADR_INET4)
    ADR_Parse("127.0.0.1", &one);
  else
    ADR_Parse("::1", &one);
  one.port = a.port;
  return ADR_Equal(&a, &one);
}

CTL_Reason
CTL_Handle(const CTL_Ctx *ctx, const uint8_t *req, size_t len, const NetAddr *src,
           uint32_t rflags, const NTT_Now *now, CTL_Output *out)
{
  CTW_Header h;
  Req q = {.ctx = ctx, .h = &h, .src = src, .rflags = rflags, .now = now, .out = out};
  out->wire.count = 0;
  if (rflags & (RST_IGNORE | RST_NOQUERY))
    return CTL_R_DROP_NOQUERY;
  CTW_ParseResult pr = CTW_ParseRequest(req, len, &h);
  q.now_ts = NTT_FromTimespec(&now->real);
  q.reply = (CTW_Reply){.leap = ctx->sys->leap,
                        .version = h.version,
                        .opcode = h.opcode,
                        .sequence = h.sequence,
                        .associd = h.associd};
  if (pr != CTW_PARSE_OK)
    return parse_failure(&q, pr);
  authenticate(&q, req, len);
  q.unbounded = q.authenticated || is_loopback(src);
  CTL_Reason why = dispatch(&q);
  size_t bound =
      CTL_UNAUTH_FACTOR * len > CTL_UNAUTH_FLOOR ? CTL_UNAUTH_FACTOR * len : CTL_UNAUTH_FLOOR;
  if (!q.unbounded && CTW_TotalLen(&out->wire) > bound)
    return send_error(&q, CTW_ERR_PERMISSION, CTL_R_REFUSED_SIZE);
  return why;
}
