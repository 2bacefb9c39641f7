/* control: dispatch, authentication and the amplification bound of mode 6, the system
 * and association variables, nonces, reslist and :config. The MRU list is in ctlmru.c;
 * control.h is the contract of both. */
#include "control.h"

#include <inttypes.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>

#include "ctlmru.h"
#include "leapsec.h"
#include "siphash.h"

#define PHI 15e-6 /* s/s: dispersion growth (RFC 5905) */
#define MAX_TOKEN CTL_MAX_TOKEN

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

typedef CTL_Req Req;

CTL_Reason
CTL_SendError(CTL_Req *q, uint8_t err, CTL_Reason why)
{
  CTW_SetError(&q->out->wire, &q->reply, err);
  return why;
}

void
CTL_Start(CTL_Req *q, CTW_Writer *w, size_t max_frags, uint16_t status)
{
  q->reply.status = status;
  CTW_WriterInit(w, &q->out->wire, max_frags);
}

CTL_Reason
CTL_Finish(CTL_Req *q, CTW_Writer *w, CTL_Reason why)
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

NTT_Stamp
CTL_StampOfMono(const CTL_Req *q, int64_t mono_ns)
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
  SV_TAI, /* the leap-second list's, shown only with a `leapfile` */
  SV_LEAPSEC,
  SV_EXPIRE,
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
    {"tai", SV_TAI, true, 0},
    {"leapsec", SV_LEAPSEC, true, 0},
    {"expire", SV_EXPIRE, true, 0},
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
  double phi = s->phi > 0 ? s->phi : PHI;
  return s->root_disp + (age > 0 ? phi * (double)age / 1e9 : 0.0);
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
    case SV_TAI:
      return !c->tai || CTW_PutUint(w, v->name, (uint64_t)c->tai);
    case SV_LEAPSEC:
    case SV_EXPIRE: { /* ntpd's form: YYYYMMDDhhmm */
      int64_t t = v->kind == SV_LEAPSEC ? c->leapsec : c->leap_expire;
      char buf[13];
      LSC_FormatStamp(t, buf);
      return !c->tai || !t || CTW_PutRaw(w, v->name, buf);
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
      return CTW_PutUint(w, v->name, CTL_OldestAge(q));
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
      return CTW_PutUint(w, v->name, p->keyid != 0 || p->nts);
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
  if (p->keyid != 0 || p->nts)
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
  CTL_Start(q, &w, default_frags(q), peer_status(p));
  for (size_t i = 0; i < N_PEER_VARS; i++)
    if (peer_vars[i].def && !put_peer(&w, &peer_vars[i], p))
      break;
  return CTL_Finish(q, &w, CTL_R_ANSWERED);
}

static CTL_Reason
read_status(Req *q)
{
  const CTL_Ctx *c = q->ctx;
  if (q->h->associd != 0) {
    const CTL_Peer *p = find_peer(c, q->h->associd);
    if (!p)
      return CTL_SendError(q, CTW_ERR_BADASSOC, CTL_R_ERR_ASSOC);
    return put_peer_defaults(q, p);
  }
  CTW_Writer w;
  CTL_Start(q, &w, CTW_MAX_FRAGS, sys_status(c));
  for (size_t i = 0; i < c->n_peers; i++) {
    uint8_t pair[4];
    PKT_Put16(pair, c->peers[i].associd);
    PKT_Put16(pair + 2, peer_status(&c->peers[i]));
    if (!CTW_PutBytes(&w, pair, sizeof(pair)))
      break;
  }
  return CTL_Finish(q, &w, CTL_R_ANSWERED);
}

static CTL_Reason
read_peer_vars(Req *q)
{
  const CTL_Peer *p = find_peer(q->ctx, q->h->associd);
  if (!p)
    return CTL_SendError(q, CTW_ERR_BADASSOC, CTL_R_ERR_ASSOC);
  const char *s = (const char *)q->h->data, *end = s + q->h->count;
  CTW_Item it;
  if (!CTW_NextItem(&s, end, &it))
    return put_peer_defaults(q, p);
  CTW_Writer w;
  CTL_Start(q, &w, CTW_MAX_FRAGS, peer_status(p));
  s = (const char *)q->h->data;
  while (CTW_NextItem(&s, end, &it)) {
    char name[MAX_TOKEN + 1];
    const PeerVar *v = item_name(&it, name, sizeof(name)) ? find_peer_var(name) : NULL;
    if (!v)
      return CTL_SendError(q, CTW_ERR_UNKNOWNVAR, CTL_R_ERR_UNKNOWNVAR);
    put_peer(&w, v, p);
  }
  if (w.overflow)
    return CTL_SendError(q, CTW_ERR_BADVALUE, CTL_R_ERR_BADVALUE);
  return CTL_Finish(q, &w, CTL_R_ANSWERED);
}

static CTL_Reason
read_sys_vars(Req *q)
{
  const char *s = (const char *)q->h->data, *end = s + q->h->count;
  CTW_Item it;
  CTW_Writer w;
  if (!CTW_NextItem(&s, end, &it)) {
    CTL_Start(q, &w, default_frags(q), sys_status(q->ctx));
    for (size_t i = 0; i < N_SYS_VARS; i++)
      if (sys_vars[i].def && !put_sys(q, &w, &sys_vars[i], sys_vars[i].name))
        break;
    return CTL_Finish(q, &w, CTL_R_ANSWERED);
  }
  CTL_Start(q, &w, CTW_MAX_FRAGS, sys_status(q->ctx));
  s = (const char *)q->h->data;
  while (CTW_NextItem(&s, end, &it)) {
    char name[MAX_TOKEN + 1];
    if (!item_name(&it, name, sizeof(name)))
      return CTL_SendError(q, CTW_ERR_UNKNOWNVAR, CTL_R_ERR_UNKNOWNVAR);
    const CTL_Counter *k = find_counter(q->ctx, name);
    const SysVar *v = k ? NULL : find_sys_var(name);
    if (k)
      CTW_PutUint(&w, name, k->value);
    else if (v)
      put_sys(q, &w, v, name);
    else
      return CTL_SendError(q, CTW_ERR_UNKNOWNVAR, CTL_R_ERR_UNKNOWNVAR);
  }
  if (w.overflow)
    return CTL_SendError(q, CTW_ERR_BADVALUE, CTL_R_ERR_BADVALUE);
  return CTL_Finish(q, &w, CTL_R_ANSWERED);
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
      return CTL_SendError(q, CTW_ERR_BADASSOC, CTL_R_ERR_ASSOC);
    status = peer_status(p);
  }
  CTW_Writer w;
  CTL_Start(q, &w, 1, status);
  return CTL_Finish(q, &w, CTL_R_ANSWERED);
}

/* ------------------------------------------------------------------------------------ */
/* Nonces                                                                                */

/* A nonce is 24 hex digits: the NTP time it was made, then 32 bits of SipHash-2-4 (keyed
 * with the secret) over that time, the address and port it was made for and, in a nonce
 * that names a walk (a page of the MRU list that did not end it), the walk's slot and
 * generation, which follow as 10 more hex digits. */

static uint32_t
nonce_hash(const uint8_t secret[16], const NetAddr *src, NTT_Stamp ts, const MON_WalkId *walk)
{
  SIP_Key key;
  uint8_t msg[8 + 1 + 16 + 2 + 8];
  size_t n = 8 + 1 + 16 + 2;
  NetAddr a = *src;
  ADR_Unmap(&a);
  PKT_Put64(msg, ts);
  msg[8] = a.family;
  memcpy(msg + 9, a.bytes, 16);
  PKT_Put16(msg + 25, a.port);
  if (walk) {
    PKT_Put32(msg + n, walk->slot);
    PKT_Put32(msg + n + 4, walk->gen);
    n += 8;
  }
  SIP_SetKey(&key, secret);
  return (uint32_t)SIP_Hash24(&key, msg, n);
}

void
CTL_MakeNonce(const uint8_t secret[16], const NetAddr *src, NTT_Stamp ts, char *buf)
{
  snprintf(buf, CTL_NONCE_LEN + 1, "%08" PRIx32 "%08" PRIx32 "%08" PRIx32,
           (uint32_t)(ts >> 32), (uint32_t)ts, nonce_hash(secret, src, ts, NULL));
}

void
CTL_MakeWalkNonce(const uint8_t secret[16], const NetAddr *src, NTT_Stamp ts,
                  const MON_WalkId *walk, char *buf)
{
  snprintf(buf, CTL_WALK_NONCE_LEN + 1,
           "%08" PRIx32 "%08" PRIx32 "%08" PRIx32 "%02" PRIx32 "%08" PRIx32,
           (uint32_t)(ts >> 32), (uint32_t)ts, nonce_hash(secret, src, ts, walk),
           walk->slot & 0xff, walk->gen);
}

bool
CTL_ParseHex32(const char *s, uint32_t *v)
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
CTL_CheckWalkNonce(const uint8_t secret[16], const NetAddr *src, const char *nonce, size_t n,
                   NTT_Stamp now, MON_WalkId *walk)
{
  uint32_t hi, lo, h, slot = 0, gen = 0;
  *walk = (MON_WalkId){0, 0};
  if ((n != CTL_NONCE_LEN && n != CTL_WALK_NONCE_LEN) || !CTL_ParseHex32(nonce, &hi) ||
      !CTL_ParseHex32(nonce + 8, &lo) || !CTL_ParseHex32(nonce + 16, &h))
    return false;
  if (n == CTL_WALK_NONCE_LEN) {
    char two[8] = {'0', '0', '0', '0', '0', '0', nonce[24], nonce[25]};
    if (!CTL_ParseHex32(two, &slot) || !CTL_ParseHex32(nonce + 26, &gen) || gen == 0)
      return false;
  }
  MON_WalkId id = {slot, gen};
  NTT_Stamp ts = ((NTT_Stamp)hi << 32) | lo;
  double age = NTT_Diff(now, ts);
  /* compare all 32 bits whatever the outcome of the age test */
  bool ok = (h ^ nonce_hash(secret, src, ts, n == CTL_WALK_NONCE_LEN ? &id : NULL)) == 0;
  if (!ok || age < 0.0 || age >= CTL_NONCE_LIFETIME)
    return false;
  *walk = id;
  return true;
}

bool
CTL_CheckNonce(const uint8_t secret[16], const NetAddr *src, const char *nonce, size_t n,
               NTT_Stamp now)
{
  uint32_t hi, lo, h;
  if (n != CTL_NONCE_LEN || !CTL_ParseHex32(nonce, &hi) || !CTL_ParseHex32(nonce + 8, &lo) ||
      !CTL_ParseHex32(nonce + 16, &h))
    return false;
  NTT_Stamp ts = ((NTT_Stamp)hi << 32) | lo;
  double age = NTT_Diff(now, ts);
  /* compare all 32 bits whatever the outcome of the age test */
  bool ok = (h ^ nonce_hash(secret, src, ts, NULL)) == 0;
  return ok && age >= 0.0 && age < CTL_NONCE_LIFETIME;
}

static CTL_Reason
req_nonce(CTL_Req *q)
{
  char nonce[CTL_NONCE_LEN + 1];
  CTW_Writer w;
  CTL_MakeNonce(q->ctx->nonce_secret, q->src, q->now_ts, nonce);
  CTL_Start(q, &w, 1, 0);
  CTW_PutRaw(&w, "nonce", nonce);
  return CTL_Finish(q, &w, CTL_R_ANSWERED);
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
    return CTL_SendError(q, CTW_ERR_PERMISSION, CTL_R_REFUSED_AUTH);
  if (q->h->count != sizeof(what) - 1 || memcmp(q->h->data, what, sizeof(what) - 1) != 0)
    return CTL_SendError(q, CTW_ERR_UNKNOWNVAR, CTL_R_ERR_UNKNOWNVAR);
  CTW_Writer w;
  CTL_Start(q, &w, CTW_MAX_FRAGS, 0);
  size_t n = q->ctx->rst ? RST_Count(q->ctx->rst) : 0;
  for (size_t i = 0; i < n; i++)
    if (!put_restrict(q, &w, i, RST_Get(q->ctx->rst, i)))
      break; /* the rest does not fit in CTW_MAX_FRAGS datagrams */
  return CTL_Finish(q, &w, CTL_R_ANSWERED);
}

/* ------------------------------------------------------------------------------------ */
/* Modifying requests                                                                    */

static CTL_Reason
check_modify(Req *q)
{
  if (q->rflags & RST_NOMODIFY)
    return CTL_SendError(q, CTW_ERR_PERMISSION, CTL_R_REFUSED_NOMODIFY);
  if (!q->control)
    return CTL_SendError(q, CTW_ERR_PERMISSION, CTL_R_REFUSED_AUTH);
  return CTL_R_ANSWERED;
}

static CTL_Reason
configure(Req *q)
{
  CTL_Reason why = check_modify(q);
  if (why != CTL_R_ANSWERED)
    return why;
  if (q->h->associd != 0)
    return CTL_SendError(q, CTW_ERR_BADVALUE, CTL_R_ERR_BADVALUE);
  if (!q->ctx->configure)
    return CTL_SendError(q, CTW_ERR_BADOP, CTL_R_ERR_OPCODE);
  char text[CTW_MAX_DATA + 1], reply[CTL_CONFIG_REPLY], clean[CTL_CONFIG_REPLY];
  size_t n = q->h->count;
  if (memchr(q->h->data, '\0', n))
    return CTL_SendError(q, CTW_ERR_BADVALUE, CTL_R_ERR_BADVALUE);
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
  CTL_Start(q, &w, 1, 0);
  CTW_PutItem(&w, clean[0] ? clean : ok ? "Config Succeeded" : "Config Failed");
  return CTL_Finish(q, &w, ok ? CTL_R_CONFIG_APPLIED : CTL_R_CONFIG_FAILED);
}

static CTL_Reason
refuse_write(Req *q)
{
  CTL_Reason why = check_modify(q);
  if (why != CTL_R_ANSWERED)
    return why;
  return CTL_SendError(q, CTW_ERR_BADOP, CTL_R_ERR_OPCODE); /* nothing here is writable */
}

static CTL_Reason
refuse_trap(Req *q)
{
  if (q->rflags & RST_NOTRAP)
    return CTL_SendError(q, CTW_ERR_PERMISSION, CTL_R_REFUSED_NOTRAP);
  return CTL_SendError(q, CTW_ERR_BADOP, CTL_R_REFUSED_TRAP);
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
      return CTL_SendError(q, CTW_ERR_BADASSOC, CTL_R_ERR_ASSOC); /* no reference clocks */
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
      return CTL_ReadMru(q);
    case CTW_OP_READ_ORDLIST_A:
      return read_ordlist(q);
    case CTW_OP_REQ_NONCE:
      return req_nonce(q);
    default:
      return CTL_SendError(q, CTW_ERR_BADOP, CTL_R_ERR_OPCODE);
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
      return CTL_SendError(q, CTW_ERR_BADFMT, CTL_R_ERR_FORMAT);
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
    return CTL_SendError(&q, CTW_ERR_PERMISSION, CTL_R_REFUSED_SIZE);
  return why;
}
