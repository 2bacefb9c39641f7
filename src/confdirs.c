#include "confdirs.h"

#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "config.h"
#include "confparse.h"

/* Longest interface name we accept (Linux IFNAMSIZ - 1). */
#define MAX_IFNAME 15

/* ------------------------------------------------------------------------------------ */
/* Directives                                                                            */

#define NTPD CNF_DF_NTPD
#define NTPSEC CNF_DF_NTPSEC
#define BOTH (CNF_DF_NTPD | CNF_DF_NTPSEC)
#define EXT CNF_DF_EXTENSION
#define RT CNF_DF_RUNTIME

#define WORKS(n, id, fl)                                                                      \
  {                                                                                           \
    n, id, CNF_DS_SUPPORTED, fl, NULL                                                         \
  }
#define NOEFFECT(n, fl, why)                                                                  \
  {                                                                                           \
    n, CNF_D_NONE, CNF_DS_NOEFFECT, fl, why                                                   \
  }
#define REFUSED(n, fl, why)                                                                   \
  {                                                                                           \
    n, CNF_D_NONE, CNF_DS_REFUSED, fl, why                                                    \
  }

static const CNF_Directive directives[] = {
    WORKS("server", CNF_D_SERVER, BOTH),
    WORKS("pool", CNF_D_POOL, BOTH),
    WORKS("peer", CNF_D_PEER, BOTH),
    WORKS("fudge", CNF_D_FUDGE, BOTH),
    WORKS("restrict", CNF_D_RESTRICT, BOTH | RT),
    WORKS("unrestrict", CNF_D_UNRESTRICT, NTPSEC | RT),
    WORKS("delrestrict", CNF_D_DELRESTRICT, NTPD | RT),
    WORKS("discard", CNF_D_DISCARD, BOTH | RT),
    WORKS("mru", CNF_D_MRU, BOTH | RT),
    WORKS("interface", CNF_D_INTERFACE, BOTH),
    WORKS("nic", CNF_D_INTERFACE, BOTH),
    WORKS("port", CNF_D_PORT, EXT),
    WORKS("threads", CNF_D_THREADS, EXT),
    WORKS("driftfile", CNF_D_DRIFTFILE, BOTH),
    WORKS("leapfile", CNF_D_LEAPFILE, BOTH),
    WORKS("leapsmearinterval", CNF_D_LEAPSMEAR, BOTH),
    WORKS("logfile", CNF_D_LOGFILE, BOTH),
    WORKS("pidfile", CNF_D_PIDFILE, NTPD),
    WORKS("keys", CNF_D_KEYS, BOTH),
    WORKS("trustedkey", CNF_D_TRUSTEDKEY, BOTH),
    WORKS("controlkey", CNF_D_CONTROLKEY, BOTH),
    WORKS("requestkey", CNF_D_REQUESTKEY, NTPD),
    WORKS("tos", CNF_D_TOS, BOTH),
    WORKS("tinker", CNF_D_TINKER, BOTH),
    WORKS("enable", CNF_D_ENABLE, BOTH),
    WORKS("disable", CNF_D_DISABLE, BOTH),
    WORKS("includefile", CNF_D_INCLUDEFILE, BOTH),
    WORKS("metrics", CNF_D_METRICS, EXT),
    WORKS("statistics", CNF_D_STATISTICS, BOTH),
    WORKS("statsdir", CNF_D_STATSDIR, BOTH),
    WORKS("filegen", CNF_D_FILEGEN, BOTH),
    WORKS("nts", CNF_D_NTS, NTPSEC),
    NOEFFECT("broadcastdelay", NTPD, "broadcast mode is not supported"),
    NOEFFECT("logconfig", BOTH, "message classes cannot be selected; everything is logged"),
    NOEFFECT("nonvolatile", NTPD, "the frequency is written to the driftfile as it changes"),
    NOEFFECT("rlimit", BOTH, "ntpgated neither locks its memory nor changes resource limits"),
    NOEFFECT("saveconfigdir", NTPD, "saveconfig is not supported"),
    NOEFFECT("setvar", BOTH, "no variables are added to mode 6 replies"),
    NOEFFECT("mdnstries", NTPD, "the service is not registered with mDNS"),
    NOEFFECT("calldelay", NTPD, "modem reference clocks are not supported"),
    NOEFFECT("phone", BOTH, "modem reference clocks are not supported"),
    NOEFFECT("ttl", NTPD, "it applies to broadcast and manycast, which are not supported"),
    NOEFFECT("keysdir", NTPD, "Autokey is not supported; the keys file is named by 'keys'"),
    NOEFFECT("automax", NTPD, "Autokey is not supported"),
    NOEFFECT("revoke", NTPD, "Autokey is not supported"),
    NOEFFECT("qos", NTPD, "packets go out with the system's default DSCP"),
    NOEFFECT("dscp", NTPSEC, "packets go out with the system's default DSCP"),
    NOEFFECT("pollskewlist", NTPD, "polls are not skewed"),
    REFUSED("broadcast", BOTH, "broadcast mode is not supported"),
    REFUSED("broadcastclient", BOTH, "broadcast mode is not supported"),
    REFUSED("multicastclient", NTPD, "multicast mode is not supported"),
    REFUSED("manycastclient", BOTH, "manycast is not supported"),
    REFUSED("manycastserver", NTPD, "manycast is not supported"),
    REFUSED("crypto", NTPD, "Autokey is not supported; use symmetric keys ('keys', 'key N')"),
    REFUSED("refclock", NTPSEC,
            "reference clocks other than the LOCAL driver ('server 127.127.1.u') are not "
            "supported"),
    REFUSED("device", NTPD,
            "reference clocks other than the LOCAL driver ('server 127.127.1.u') are not "
            "supported"),
    REFUSED("trap", NTPD, "traps are not sent"),
    REFUSED("unpeer", BOTH, "associations change only with the file and a restart"),
    REFUSED("simulate", NTPD, "simulation mode is not supported"),
    REFUSED("ntpsigndsocket", NTPD, "MS-SNTP signing is not supported"),
};

const CNF_Directive *
CNF_Directives(size_t *n)
{
  *n = N_ELEMS(directives);
  return directives;
}

const CNF_Directive *
CNF_FindDirective(const char *name)
{
  for (size_t i = 0; i < N_ELEMS(directives); i++)
    if (strcmp(directives[i].name, name) == 0)
      return &directives[i];
  return NULL;
}

/* ------------------------------------------------------------------------------------ */
/* Options                                                                               */

#define ND CNF_OF_NODEFAULT
#define X CNF_OF_EXTENSION
#define NOEFF CNF_OF_NOEFFECT
#define REFUSE CNF_OF_REFUSED
#define INT_MAX32 2147483647.0

/* name, kind, lo, hi, hi2, clamp, default, flags, offset, offset2, bits, unit */
static const CNF_Option assoc_opts[] = {
    /* rows 0 and 1 must stay minpoll/maxpoll: the parser looks at which were given */
    {"minpoll", CNF_OK_INT, 0, CNF_MAX_POLL, 0, 0, 6, 0, offsetof(CNF_Assoc, minpoll), 0, 0,
     "log2 s"},
    {"maxpoll", CNF_OK_INT, 0, CNF_MAX_POLL, 0, 0, 10, 0, offsetof(CNF_Assoc, maxpoll), 0, 0,
     "log2 s"},
    {"iburst", CNF_OK_FLAG, 0, 0, 0, 0, 0, ND, offsetof(CNF_Assoc, options), 0, CNF_AO_IBURST,
     ""},
    {"burst", CNF_OK_FLAG, 0, 0, 0, 0, 0, ND, offsetof(CNF_Assoc, options), 0, CNF_AO_BURST,
     ""},
    {"prefer", CNF_OK_FLAG, 0, 0, 0, 0, 0, ND, offsetof(CNF_Assoc, options), 0, CNF_AO_PREFER,
     ""},
    {"noselect", CNF_OK_FLAG, 0, 0, 0, 0, 0, ND, offsetof(CNF_Assoc, options), 0,
     CNF_AO_NOSELECT, ""},
    {"true", CNF_OK_FLAG, 0, 0, 0, 0, 0, ND, offsetof(CNF_Assoc, options), 0, CNF_AO_TRUE, ""},
    /* rows 7..9 mean nothing to the local clock */
    {"key", CNF_OK_U32, 1, CNF_MAX_KEYID, 0, 0, 0, ND, offsetof(CNF_Assoc, key), 0, 0,
     "key id"},
    {"version", CNF_OK_INT, 1, 4, 0, 0, 4, 0, offsetof(CNF_Assoc, version), 0, 0, ""},
    {"port", CNF_OK_U16, 1, 65535, 0, 0, CNF_NTP_PORT, X, offsetof(CNF_Assoc, port), 0, 0,
     "UDP port"},
    /* ntpd's and NTPsec's other options: what each does here */
    {"preempt", CNF_OK_FLAG, 0, 0, 0, 0, 0, ND | NOEFF, 0, 0, 0,
     "a pool member that stops answering or refuses us is replaced anyway"},
    {"xleave", CNF_OK_FLAG, 0, 0, 0, 0, 0, ND | NOEFF, 0, 0, 0,
     "interleaved mode is not used; the basic mode gives the same time"},
    {"ttl", CNF_OK_INT, 0, 255, 0, 0, 0, ND | NOEFF, 0, 0, 0,
     "it applies to broadcast and manycast, which are not supported"},
    {"autokey", CNF_OK_FLAG, 0, 0, 0, 0, 0, ND | REFUSE, 0, 0, 0,
     "Autokey is not supported; use symmetric keys ('key N')"},
    {"nts", CNF_OK_FLAG, 0, 0, 0, 0, 0, ND, offsetof(CNF_Assoc, options), 0, CNF_AO_NTS, ""},
    {"ca", CNF_OK_STR, 0, 0, 0, 0, 0, ND, offsetof(CNF_Assoc, ca), 0, 0, "file"},
    {"noval", CNF_OK_FLAG, 0, 0, 0, 0, 0, ND, offsetof(CNF_Assoc, options), 0, CNF_AO_NOVAL,
     ""},
    {"mode", CNF_OK_INT, 0, 255, 0, 0, 0, ND | REFUSE, 0, 0, 0,
     "reference clock modes and packet modes other than client are not supported"},
    {"bias", CNF_OK_DBL, -1, 1, 0, 0, 0, ND | REFUSE, 0, 0, 0,
     "offsets are not added to a server's time"},
};

static const CNF_Option discard_opts[] = {
    {"average", CNF_OK_INT, 0, 255, 0, CNF_MAX_POLL, 3, 0, offsetof(CNF_Discard, average), 0,
     0, "log2 s"},
    {"minimum", CNF_OK_INT, 0, 3600, 0, 0, 2, 0, offsetof(CNF_Discard, minimum), 0, 0, "s"},
    {"monitor", CNF_OK_INT, 1, 1000000000, 0, 0, 3000, 0, offsetof(CNF_Discard, monitor), 0, 0,
     "1/P"},
    {"leak", CNF_OK_INT, 0, 16, 0, 0, 4, X, offsetof(CNF_Discard, leak), 0, 0, "1 in 2^L"},
    {"kodlimit", CNF_OK_INT, 0, 10000, 0, 0, 1, X, offsetof(CNF_Discard, kodlimit), 0, 0,
     "KoDs/s"},
    {"netprefix", CNF_OK_PAIR, 0, 32, 128, 0, 0, X, offsetof(CNF_Discard, netprefix4),
     offsetof(CNF_Discard, netprefix6), 0, "prefix lengths"},
    {"netaverage", CNF_OK_INT, -16, CNF_MAX_POLL, 0, 0, -3, X,
     offsetof(CNF_Discard, netaverage), 0, 0, "log2 s"},
    {"shedrate", CNF_OK_INT, 0, 1000000, 0, 0, 1000, X, offsetof(CNF_Discard, shedrate), 0, 0,
     "drops/s"},
    {"sheddepth", CNF_OK_INT, 1, 64, 0, 0, 32, X, offsetof(CNF_Discard, sheddepth), 0, 0,
     "sources"},
    {"shedhold", CNF_OK_INT, 1, 3600, 0, 0, 8, X, offsetof(CNF_Discard, shedhold), 0, 0, "s"},
    {"shedwait", CNF_OK_INT, 0, 20, 0, 0, 2, X, offsetof(CNF_Discard, shedwait), 0, 0, "ms"},
};

/* The monitor table holds at most 2^24 records of 64 octets with their index: 1 GiB. */
static const CNF_Option mru_opts[] = {
    {"maxdepth", CNF_OK_MRU, 1, CNF_MRU_MAX_ENTRIES, 0, 0, 0, ND, offsetof(CNF_Mru, max), 0, 0,
     "entries"},
    {"maxmem", CNF_OK_MRU, 1, CNF_MRU_MAX_KIB, 0, 0, 1024, 0, offsetof(CNF_Mru, max), 0, 1,
     "KiB"},
    {"initalloc", CNF_OK_MRU, 0, INT_MAX32, 0, 0, 0, ND, offsetof(CNF_Mru, init), 0, 0,
     "entries"},
    {"initmem", CNF_OK_MRU, 0, INT_MAX32, 0, 0, 4, 0, offsetof(CNF_Mru, init), 0, 1, "KiB"},
    {"incalloc", CNF_OK_MRU, 0, INT_MAX32, 0, 0, 0, ND, offsetof(CNF_Mru, inc), 0, 0,
     "entries"},
    {"incmem", CNF_OK_MRU, 0, INT_MAX32, 0, 0, 4, 0, offsetof(CNF_Mru, inc), 0, 1, "KiB"},
    {"mindepth", CNF_OK_U32, 0, INT_MAX32, 0, 0, 600, 0, offsetof(CNF_Mru, mindepth), 0, 0,
     "entries"},
    {"maxage", CNF_OK_U32, 0, INT_MAX32, 0, 0, 64, 0, offsetof(CNF_Mru, maxage), 0, 0, "s"},
};

static const CNF_Option tos_opts[] = {
    {"orphan", CNF_OK_INT, 1, 16, 0, 0, 0, ND, offsetof(CNF_Tos, orphan), 0, 0, "stratum"},
    {"orphanwait", CNF_OK_INT, 0, 86400, 0, 0, 300, 0, offsetof(CNF_Tos, orphanwait), 0, 0,
     "s"},
    {"minclock", CNF_OK_INT, 1, 100, 0, 0, 3, 0, offsetof(CNF_Tos, minclock), 0, 0, ""},
    {"minsane", CNF_OK_INT, 1, 100, 0, 0, 1, 0, offsetof(CNF_Tos, minsane), 0, 0, ""},
    {"maxclock", CNF_OK_INT, 1, 100, 0, 0, 10, 0, offsetof(CNF_Tos, maxclock), 0, 0, ""},
    {"maxdist", CNF_OK_DBL, 0.001, 16, 0, 0, 1.5, 0, offsetof(CNF_Tos, maxdist), 0, 0, "s"},
    {"mindist", CNF_OK_DBL, 0, 1, 0, 0, 0.001, 0, offsetof(CNF_Tos, mindist), 0, 0, "s"},
    {"floor", CNF_OK_INT, 0, 15, 0, 0, 1, 0, offsetof(CNF_Tos, floor), 0, 0, "stratum"},
    {"ceiling", CNF_OK_INT, 1, 16, 0, 0, 15, 0, offsetof(CNF_Tos, ceiling), 0, 0, "stratum"},
    {"kodbackoff", CNF_OK_INT, 3, 17, 0, 0, 10, X, offsetof(CNF_Tos, kod_backoff), 0, 0,
     "log2 s"},
    {"kodbackoffmax", CNF_OK_INT, 3, 17, 0, 0, 17, X, offsetof(CNF_Tos, kod_backoff_max), 0, 0,
     "log2 s"},
    {"kodratecap", CNF_OK_INT, 4, 17, 0, 0, 10, X, offsetof(CNF_Tos, kod_rate_cap), 0, 0,
     "log2 s"},
    /* ntpd's other tos options: what each does here */
    {"cohort", CNF_OK_INT, 0, 1, 0, 0, 0, ND | NOEFF, 0, 0, 0,
     "a server at our own stratum is never refused for it (ntpd's cohort 1)"},
    {"beacon", CNF_OK_INT, 0, INT_MAX32, 0, 0, 0, ND | NOEFF, 0, 0, 0,
     "it applies to broadcast and manycast, which are not supported"},
    {"bcpollbstep", CNF_OK_INT, 0, 4, 0, 0, 0, ND | NOEFF, 0, 0, 0,
     "broadcast mode is not supported"},
    {"maxhop", CNF_OK_INT, 0, 255, 0, 0, 0, ND | NOEFF, 0, 0, 0,
     "it applies to manycast, which is not supported"},
    {"basedate", CNF_OK_INT, 0, 0, 0, 0, 0, ND | NOEFF, 0, 0, 0,
     "a timestamp's era is chosen from our own clock (within 68 years of it)"},
};

/* Rows 0..2 must stay step, stepback, stepfwd: `step` sets both directions (d_tinker). */
static const CNF_Option tinker_opts[] = {
    {"step", CNF_OK_DBL, 0, 3600, 0, 0, 0.128, 0, offsetof(CNF_Tinker, step), 0, 0, "s"},
    {"stepback", CNF_OK_DBL, 0, 3600, 0, 0, 0.128, 0, offsetof(CNF_Tinker, stepback), 0, 0,
     "s"},
    {"stepfwd", CNF_OK_DBL, 0, 3600, 0, 0, 0.128, 0, offsetof(CNF_Tinker, stepfwd), 0, 0, "s"},
    {"panic", CNF_OK_DBL, 0, 100000, 0, 0, 1000, 0, offsetof(CNF_Tinker, panic), 0, 0, "s"},
    {"stepout", CNF_OK_DBL, 0, 86400, 0, 0, 900, 0, offsetof(CNF_Tinker, stepout), 0, 0, "s"},
    {"dispersion", CNF_OK_DBL, 0.01, 1000, 0, 0, 15, 0, offsetof(CNF_Tinker, dispersion), 0, 0,
     "ppm"},
    {"huffpuff", CNF_OK_DBL, 900, 86400, 0, 0, 0, ND, offsetof(CNF_Tinker, huffpuff), 0, 0,
     "s"},
    {"allan", CNF_OK_DBL, 0, 1000000, 0, 0, 0, ND | REFUSE, 0, 0, 0,
     "the loop has no PLL/FLL crossover to place: its least-squares regression chooses how "
     "far back to average from its own residuals (docs/client.md)"},
    {"freq", CNF_OK_DBL, -500, 500, 0, 0, 0, ND | REFUSE, 0, 0, 0,
     "the starting frequency comes from the drift file ('driftfile'); write it there"},
    {"tick", CNF_OK_DBL, 0, 1, 0, 0, 0, ND | REFUSE, 0, 0, 0,
     "the kernel's tick length is never changed"},
};

static const struct {
  const CNF_Option *rows;
  size_t n;
} groups[CNF_OG_COUNT] = {
    [CNF_OG_ASSOC] = {assoc_opts, N_ELEMS(assoc_opts)},
    [CNF_OG_DISCARD] = {discard_opts, N_ELEMS(discard_opts)},
    [CNF_OG_MRU] = {mru_opts, N_ELEMS(mru_opts)},
    [CNF_OG_TOS] = {tos_opts, N_ELEMS(tos_opts)},
    [CNF_OG_TINKER] = {tinker_opts, N_ELEMS(tinker_opts)},
};

const CNF_Option *
CNF_Options(CNF_OptGroup g, size_t *n)
{
  *n = groups[g].n;
  return groups[g].rows;
}

const CNF_Option *
CNF_FindOption(CNF_OptGroup g, const char *name)
{
  for (size_t i = 0; i < groups[g].n; i++)
    if (strcmp(groups[g].rows[i].name, name) == 0)
      return &groups[g].rows[i];
  return NULL;
}

void
CNF_ApplyDefaults(CNF_OptGroup g, void *target)
{
  char *base = target;
  for (size_t i = 0; i < groups[g].n; i++) {
    const CNF_Option *o = &groups[g].rows[i];
    if (o->flags & CNF_OF_NODEFAULT)
      continue;
    switch (o->kind) {
      case CNF_OK_INT:
        *(int *)(void *)(base + o->offset) = (int)o->def;
        break;
      case CNF_OK_PAIR:
        *(int *)(void *)(base + o->offset) = (int)o->def;
        *(int *)(void *)(base + o->offset2) = (int)o->def;
        break;
      case CNF_OK_U16:
        *(uint16_t *)(void *)(base + o->offset) = (uint16_t)o->def;
        break;
      case CNF_OK_U32:
        *(uint32_t *)(void *)(base + o->offset) = (uint32_t)o->def;
        break;
      case CNF_OK_DBL:
        *(double *)(void *)(base + o->offset) = o->def;
        break;
      case CNF_OK_MRU:
        *(CNF_MruSize *)(void *)(base + o->offset) =
            (CNF_MruSize){o->bits != 0, (uint32_t)o->def};
        break;
      case CNF_OK_FLAG:
      case CNF_OK_STR:
        break;
    }
  }
}

/* ------------------------------------------------------------------------------------ */
/* server / pool / peer, and the LOCAL clock                                              */

/* Rows 0 and 1 of the CNF_OG_ASSOC table are minpoll/maxpoll, rows 7..9 key, version and
 * port (confdirs.c). */
enum { SEEN_MINPOLL = 1u << 0, SEEN_MAXPOLL = 1u << 1 };
/* Options that mean nothing to the local clock (rows 7..9 and the burst flags). */
enum { SEEN_NET_ONLY = (1u << 7) | (1u << 8) | (1u << 9) };

/* Both given: they must be ordered. One given: move the other default out of its way. */
static bool
resolve_polls(Args *a, CNF_Assoc *s, uint32_t seen)
{
  if (s->minpoll <= s->maxpoll)
    return true;
  if ((seen & SEEN_MINPOLL) && (seen & SEEN_MAXPOLL))
    return cnf_fail(a, "minpoll %d is greater than maxpoll %d", s->minpoll, s->maxpoll);
  if (seen & SEEN_MINPOLL)
    s->maxpoll = s->minpoll;
  else
    s->minpoll = s->maxpoll;
  return true;
}

static bool
is_refclock(const NetAddr *addr)
{
  return addr->family == ADR_INET4 && addr->bytes[0] == 127 && addr->bytes[1] == 127;
}

/* 127.127.1.u -> unit u; other reference clocks are refused. */
static bool
local_unit(Args *a, const NetAddr *addr, int *unit)
{
  if (addr->bytes[2] != 1)
    return cnf_fail(a,
                    "reference clock type %u is not supported (only the LOCAL driver, "
                    "127.127.1.u)",
                    addr->bytes[2]);
  if (addr->bytes[3] > 3)
    return cnf_fail(a, "local clock unit %u is out of range 0..3", addr->bytes[3]);
  *unit = addr->bytes[3];
  return true;
}

static void
add_local_clock(Args *a, const NetAddr *addr)
{
  CNF_LocalClock *lc = &a->p->cfg->local_clock;
  CNF_Assoc s = {0};
  uint32_t seen = 0;
  int unit = 0;
  CNF_ApplyDefaults(CNF_OG_ASSOC, &s);
  if (!local_unit(a, addr, &unit) || !cnf_parse_options(a, CNF_OG_ASSOC, &s, &seen) ||
      !resolve_polls(a, &s, seen))
    return;
  if (lc->configured)
    return (void)cnf_fail(a, "the local clock is already configured");
  if (lc->fudged && lc->unit != unit)
    return (void)cnf_fail(a, "127.127.1.%d does not match the fudged unit 127.127.1.%d", unit,
                          lc->unit);
  if ((seen & SEEN_NET_ONLY) || (s.options & (CNF_AO_IBURST | CNF_AO_BURST)))
    cnf_warn(a, "iburst, burst, key, version and port have no effect on the local clock");
  lc->configured = true;
  lc->unit = unit;
  lc->minpoll = s.minpoll;
  lc->maxpoll = s.maxpoll;
  lc->options = s.options & (CNF_AO_PREFER | CNF_AO_NOSELECT | CNF_AO_TRUE);
}

static bool
append_assoc(Args *a, const CNF_Assoc *s)
{
  CNF_Config *cfg = a->p->cfg;
  CNF_Assoc *arr =
      cnf_grow(cfg->assocs, &cnf_store_of(cfg)->cap_assocs, cfg->n_assocs + 1, sizeof(*arr));
  char *host = cnf_dup_str(s->host), *ca = s->ca ? cnf_dup_str(s->ca) : NULL;
  if (!arr || !host || (s->ca && !ca)) {
    if (arr)
      cfg->assocs = arr;
    free(host);
    free(ca);
    return cnf_fail_oom(a);
  }
  cfg->assocs = arr;
  arr[cfg->n_assocs] = *s;
  arr[cfg->n_assocs].ca = ca;
  arr[cfg->n_assocs++].host = host;
  return true;
}

/* The address or name of an association; false (reported) if it is neither. */
static bool
assoc_target(Args *a, CNF_Assoc *s, char *t)
{
  s->host = t; /* borrowed from the line until append_assoc copies it */
  if (ADR_Parse(t, &s->addr)) {
    s->numeric = true;
    if (!cnf_check_family(a, t, &s->addr, s->family))
      return false;
    if (ADR_IsMulticast(&s->addr))
      return cnf_fail(a, "multicast address '%.64s': broadcast and manycast are not supported",
                      t);
    return true;
  }
  if (cnf_looks_numeric(t) || !cnf_valid_hostname(t))
    return cnf_fail(a, "bad address or host name '%.64s'", t);
  return true;
}

/* Row 9 of the CNF_OG_ASSOC table is port. */
enum { SEEN_PORT = 1u << 9 };

/* nts, ca, noval (NTPsec's meaning); with nts, `port N` is the NTS-KE port. */
static bool
nts_options(Args *a, CNF_Assoc *s, uint32_t seen)
{
  bool nts = (s->options & CNF_AO_NTS) != 0;
  if (!nts && (s->ca || (s->options & CNF_AO_NOVAL)))
    return cnf_fail(a, "'ca' and 'noval' apply to NTS sources only: add 'nts'");
  if (!nts)
    return true;
  if (s->type == CNF_PEER)
    return cnf_fail(a,
                    "NTS is for 'server' and 'pool' lines (RFC 8915 has no symmetric mode)");
  if (s->key)
    return cnf_fail(a, "'nts' and 'key' exclude each other: NTS authenticates the source");
  if (s->version != 4)
    return cnf_fail(a, "NTS needs NTP version 4, not %d", s->version);
  if (s->ca && (s->options & CNF_AO_NOVAL))
    cnf_warn(a, "'noval' skips the certificate check, so 'ca %.64s' is not used", s->ca);
  if (seen & SEEN_PORT) {
    s->ke_port = s->port;
    s->port = CNF_NTP_PORT;
  }
  return true;
}

static void
d_assoc(Args *a, int type)
{
  CNF_Assoc s = {.type = (CNF_AssocType)type, .line = a->p->line};
  CNF_ApplyDefaults(CNF_OG_ASSOC, &s);
  char *t = cnf_need_tok(a, "address or host name");
  if (t && cnf_family_flag(t) != ADR_NONE) {
    s.family = cnf_family_flag(t);
    t = cnf_need_tok(a, "address or host name");
  }
  if (!t || !assoc_target(a, &s, t))
    return;
  if (s.numeric && is_refclock(&s.addr)) {
    if (type != CNF_SERVER)
      return (void)cnf_fail(a, "a reference clock address is only valid with 'server'");
    return add_local_clock(a, &s.addr);
  }
  uint32_t seen = 0;
  if (!cnf_parse_options(a, CNF_OG_ASSOC, &s, &seen) || !resolve_polls(a, &s, seen) ||
      !nts_options(a, &s, seen))
    return;
  s.addr.port = s.port;
  append_assoc(a, &s);
}

/* fudge 127.127.1.u [stratum N] [refid CODE] (time1/time2/flag1..4 accepted, no effect) */
static bool
fudge_option(Args *a, const char *opt, CNF_LocalClock *lc)
{
  long long v;
  if (strcmp(opt, "stratum") == 0) {
    if (!cnf_arg_int(a, "stratum", 0, 15, &v))
      return false;
    lc->stratum = (int)v;
    return true;
  }
  if (strcmp(opt, "refid") == 0) {
    const char *r = cnf_next_tok(a);
    if (!r)
      return cnf_fail(a, "missing value for refid");
    size_t len = strlen(r);
    if (len < 1 || len > 4 ||
        strspn(r, "!\"#$%&'()*+,-./0123456789:;<=>?@ABCDEFGHIJKLMNOPQRSTUV"
                  "WXYZ[\\]^_`abcdefghijklmnopqrstuvwxyz{|}~") != len)
      return cnf_fail(a, "refid '%.64s' must be 1 to 4 printable ASCII characters", r);
    memset(lc->refid, 0, sizeof(lc->refid));
    memcpy(lc->refid, r, len);
    return true;
  }
  static const char *const ignored[] = {"time1", "time2", "flag1", "flag2", "flag3", "flag4"};
  for (size_t i = 0; i < N_ELEMS(ignored); i++)
    if (strcmp(opt, ignored[i]) == 0) {
      if (!cnf_next_tok(a))
        return cnf_fail(a, "missing value for %s", opt);
      cnf_warn(a, "'%s' has no effect on the local clock", opt);
      return true;
    }
  return cnf_fail(a, "unknown option '%.64s'", opt);
}

static void
d_fudge(Args *a, int unused)
{
  (void)unused;
  CNF_LocalClock lc = a->p->cfg->local_clock;
  NetAddr addr;
  int unit = 0;
  const char *t = cnf_need_tok(a, "reference clock address");
  if (!t)
    return;
  if (!ADR_Parse(t, &addr) || !is_refclock(&addr))
    return (void)cnf_fail(a, "'%.64s' is not a reference clock address (127.127.t.u)", t);
  if (!local_unit(a, &addr, &unit))
    return;
  if ((lc.configured || lc.fudged) && lc.unit != unit)
    return (void)cnf_fail(a, "127.127.1.%d is not the configured local clock 127.127.1.%d",
                          unit, lc.unit);
  const char *opt;
  while ((opt = cnf_next_tok(a)))
    if (!fudge_option(a, opt, &lc))
      return;
  lc.fudged = true;
  lc.unit = unit;
  a->p->cfg->local_clock = lc;
}

/* ------------------------------------------------------------------------------------ */
/* restrict / unrestrict / delrestrict                                                    */

static const struct {
  const char *name;
  uint32_t flag, match;
} restrict_flags[] = {
    {"ignore", RST_IGNORE, 0},       {"kod", RST_KOD, 0},
    {"limited", RST_LIMITED, 0},     {"lowpriotrap", RST_LOWPRIOTRAP, 0},
    {"nomodify", RST_NOMODIFY, 0},   {"noquery", RST_NOQUERY, 0},
    {"nopeer", RST_NOPEER, 0},       {"noserve", RST_NOSERVE, 0},
    {"notrap", RST_NOTRAP, 0},       {"notrust", RST_NOTRUST, 0},
    {"ntpport", 0, RST_M_NTPPORT},   {"version", RST_VERSION, 0},
    {"nomrulist", RST_NOMRULIST, 0}, {"noepeer", RST_NOEPEER, 0},
    {"flake", RST_FLAKE, 0},         {"mssntp", RST_MSSNTP, 0},
};

static void
set_host_mask(CNF_Restrict *r)
{
  ADR_MaskFromPrefix(r->addr.family, ADR_Bits(&r->addr), &r->mask);
  r->prefix = ADR_Bits(&r->addr);
}

/* What a restrict line is about: default, source, ADDR[/P] or a host name. */
static bool
restrict_target(Args *a, CNF_Restrict *r, int family, char *t)
{
  r->family = family;
  if (strcmp(t, "default") == 0) {
    r->kind = CNF_RST_DEFAULT;
    r->prefix = 0;
    return true;
  }
  if (strcmp(t, "source") == 0) {
    if (family != ADR_NONE)
      return cnf_fail(a, "-4/-6 cannot be used with 'source'");
    r->kind = CNF_RST_SOURCE;
    r->match |= RST_M_SOURCE;
    return true;
  }
  if (!cnf_looks_numeric(t) && !strchr(t, '/') && cnf_valid_hostname(t)) {
    r->kind = CNF_RST_HOST;
    r->host = t; /* borrowed from the line until stored */
    return true;
  }
  r->kind = CNF_RST_ADDR;
  if (!cnf_parse_addr_prefix(a, t, &r->addr, &r->prefix) ||
      !cnf_check_family(a, t, &r->addr, family))
    return false;
  r->family = r->addr.family;
  if (r->prefix < 0)
    set_host_mask(r);
  else
    ADR_MaskFromPrefix(r->family, r->prefix, &r->mask);
  return true;
}

/* `mask M` after an address (had_prefix: the address was written ADDR/PREFIX). */
static bool
restrict_mask(Args *a, CNF_Restrict *r, bool had_prefix)
{
  const char *m = cnf_next_tok(a);
  if (!m)
    return cnf_fail(a, "missing value for mask");
  if (r->kind == CNF_RST_HOST) {
    cnf_warn(a, "mask ignored for host name '%.64s'", r->host);
    return true;
  }
  if (r->kind != CNF_RST_ADDR)
    return cnf_fail(a, "mask is only valid after an address");
  if (had_prefix)
    return cnf_fail(a, "give either /prefix or mask, not both");
  NetAddr mask;
  if (!ADR_Parse(m, &mask))
    return cnf_fail(a, "bad mask '%.64s'", m);
  if (mask.family != r->family)
    return cnf_fail(a, "mask %.64s is not an %s mask", m, cnf_family_name(r->family));
  int prefix = ADR_PrefixFromMask(&mask);
  if (prefix < 0)
    return cnf_fail(a, "mask %.64s has holes", m);
  r->mask = mask;
  r->prefix = prefix;
  return true;
}

static bool
restrict_ippeerlimit(Args *a, CNF_Restrict *r)
{
  const char *t = cnf_next_tok(a);
  long long v = 0;
  if (!t)
    return cnf_fail(a, "missing value for ippeerlimit");
  NumStatus st = cnf_parse_ll(t, &v);
  if (st == NUM_BAD)
    return cnf_fail(a, "ippeerlimit '%.64s' is not a number", t);
  if (st == NUM_RANGE || v < -1 || v > 100) {
    cnf_warn(a, "ippeerlimit %.64s is out of range -1..100; using 0", t);
    v = 0;
  }
  r->ippeerlimit = (int)v;
  return true;
}

/* Flags (and ippeerlimit) to the end of the line. */
static bool
restrict_flag_list(Args *a, CNF_Restrict *r)
{
  const char *t;
  while ((t = cnf_next_tok(a))) {
    size_t i = 0;
    while (i < N_ELEMS(restrict_flags) && strcmp(restrict_flags[i].name, t) != 0)
      i++;
    if (i < N_ELEMS(restrict_flags)) {
      r->flags |= restrict_flags[i].flag;
      r->match |= restrict_flags[i].match;
    } else if (strcmp(t, "serverresponse") == 0) {
      const char *f = cnf_next_tok(a);
      if (!f || strcmp(f, "fuzz") != 0)
        return cnf_fail(a, "serverresponse must be followed by 'fuzz'");
      r->flags |= RST_FUZZ;
    } else if (strcmp(t, "ippeerlimit") == 0 && r->op == CNF_RST_ADD) {
      if (!restrict_ippeerlimit(a, r))
        return false;
    } else {
      return cnf_fail(a, "unknown flag '%.64s'", t);
    }
  }
  return true;
}

/* ntpd stores the address masked; so do we, but say so. */
static void
restrict_apply_mask(Args *a, CNF_Restrict *r)
{
  if (r->kind != CNF_RST_ADDR)
    return;
  NetAddr masked;
  ADR_ApplyMask(&r->addr, &r->mask, &masked);
  if (!ADR_Equal(&masked, &r->addr)) {
    char was[ADR_STRLEN], now[ADR_STRLEN];
    cnf_warn(a, "address %s has bits outside its /%d mask; using %s",
             ADR_Format(&r->addr, was, sizeof(was)), r->prefix,
             ADR_Format(&masked, now, sizeof(now)));
    r->addr = masked;
  }
}

static void
restrict_warnings(Args *a, const CNF_Restrict *r)
{
  if (r->op != CNF_RST_ADD)
    return;
  if ((r->flags & RST_KOD) && !(r->flags & RST_LIMITED))
    cnf_warn(a, "'kod' without 'limited' sends no RATE KoDs (only DENY, RSTR and CRYP)");
  if (r->flags & RST_MSSNTP)
    cnf_warn(a, "'mssntp' is accepted for compatibility and has no effect");
}

static bool
append_restrict(Args *a, const CNF_Restrict *r)
{
  CNF_Config *cfg = a->p->cfg;
  CNF_Restrict *arr = cnf_grow(cfg->restricts, &cnf_store_of(cfg)->cap_restricts,
                               cfg->n_restricts + 1, sizeof(*arr));
  char *host = r->host ? cnf_dup_str(r->host) : NULL;
  if (!arr || (r->host && !host)) {
    if (arr)
      cfg->restricts = arr;
    free(host);
    return cnf_fail_oom(a);
  }
  cfg->restricts = arr;
  arr[cfg->n_restricts] = *r;
  arr[cfg->n_restricts++].host = host;
  return true;
}

/* `default` without -4/-6 is two entries, one per family. */
static void
store_restrict(Args *a, CNF_Restrict *r)
{
  if (r->kind != CNF_RST_DEFAULT) {
    append_restrict(a, r);
    return;
  }
  static const int families[] = {ADR_INET4, ADR_INET6};
  for (size_t i = 0; i < N_ELEMS(families); i++) {
    if (r->family != ADR_NONE && r->family != families[i])
      continue;
    CNF_Restrict one = *r;
    one.family = families[i];
    memset(&one.addr, 0, sizeof(one.addr));
    one.addr.family = (uint8_t)families[i];
    ADR_MaskFromPrefix(families[i], 0, &one.mask);
    if (!append_restrict(a, &one))
      return;
  }
}

/* Optional -4/-6, the target, then an optional `mask M`. */
static bool
restrict_head(Args *a, CNF_Restrict *r, bool mask_ok)
{
  char *t = cnf_need_tok(a, "address");
  int family = cnf_family_flag(t);
  if (t && family != ADR_NONE)
    t = cnf_need_tok(a, "address");
  if (!t || !restrict_target(a, r, family, t))
    return false;
  bool had_prefix = strchr(t, '/') != NULL;
  const char *m = cnf_peek_tok(a);
  if (!m || strcmp(m, "mask") != 0)
    return true;
  cnf_next_tok(a);
  if (!mask_ok)
    return cnf_fail(a, "mask cannot be used here");
  return restrict_mask(a, r, had_prefix);
}

/* restrict ... (op ADD) and unrestrict ... (op CLEAR, or DELETE without flags) */
static void
d_restrict(Args *a, int op)
{
  CNF_Restrict r = {
      .op = (CNF_RestrictOp)op, .ippeerlimit = -1, .prefix = -1, .line = a->p->line};
  if (!restrict_head(a, &r, true) || !restrict_flag_list(a, &r))
    return;
  if (r.op == CNF_RST_CLEAR && r.kind == CNF_RST_SOURCE)
    return (void)cnf_fail(a, "'source' cannot be used here");
  if (r.op == CNF_RST_CLEAR && r.flags == 0) /* ntpport only picks the entry */
    r.op = CNF_RST_DELETE;
  if (r.op == CNF_RST_DELETE && r.kind == CNF_RST_DEFAULT) {
    cnf_warn(a, "the default entries cannot be removed; this line has no effect");
    return;
  }
  restrict_apply_mask(a, &r);
  restrict_warnings(a, &r);
  store_restrict(a, &r);
}

/* delrestrict [-4|-6] ADDR [mask M] [ntpport] | delrestrict source ADDR */
static void
d_delrestrict(Args *a, int unused)
{
  (void)unused;
  CNF_Restrict r = {.op = CNF_RST_DELETE, .ippeerlimit = -1, .prefix = -1, .line = a->p->line};
  bool source = cnf_peek_tok(a) && strcmp(cnf_peek_tok(a), "source") == 0;
  if (source)
    cnf_next_tok(a);
  if (!restrict_head(a, &r, !source))
    return;
  if (r.kind == CNF_RST_DEFAULT)
    return (void)cnf_fail(a, "the default entries cannot be removed");
  if (r.kind == CNF_RST_SOURCE)
    return (void)cnf_fail(a, "missing address after 'source'");
  const char *t = cnf_next_tok(a);
  if (t && strcmp(t, "ntpport") == 0 && !source)
    r.match |= RST_M_NTPPORT;
  else if (t)
    return (void)cnf_fail(a, "unexpected '%.64s'", t);
  if (source)
    r.match |= RST_M_SOURCE;
  restrict_apply_mask(a, &r);
  store_restrict(a, &r);
}

/* ------------------------------------------------------------------------------------ */
/* discard, mru, tos                                                                      */

static void
d_discard(Args *a, int unused)
{
  (void)unused;
  CNF_Discard d = a->p->cfg->discard;
  if (cnf_at_end(a))
    return (void)cnf_fail(a, "missing argument");
  /* ntpd takes average 0..255, but the value is a poll exponent (it goes into KoD poll
   * fields): the table clamps it to 17 with a warning. */
  if (cnf_parse_options(a, CNF_OG_DISCARD, &d, NULL))
    a->p->cfg->discard = d;
}

static void
d_mru(Args *a, int unused)
{
  (void)unused;
  CNF_Mru m = a->p->cfg->mru;
  if (cnf_at_end(a))
    return (void)cnf_fail(a, "missing argument");
  if (cnf_parse_options(a, CNF_OG_MRU, &m, NULL))
    a->p->cfg->mru = m;
}

static void
d_tos(Args *a, int unused)
{
  (void)unused;
  CNF_Tos t = a->p->cfg->tos;
  if (cnf_at_end(a))
    return (void)cnf_fail(a, "missing argument");
  if (!cnf_parse_options(a, CNF_OG_TOS, &t, NULL))
    return;
  if (t.floor >= t.ceiling)
    return (void)cnf_fail(a, "floor %d must be below ceiling %d", t.floor, t.ceiling);
  if (t.minclock > t.maxclock)
    return (void)cnf_fail(a, "minclock %d is greater than maxclock %d", t.minclock,
                          t.maxclock);
  if (t.kod_backoff > t.kod_backoff_max)
    return (void)cnf_fail(a, "kodbackoff %d is greater than kodbackoffmax %d", t.kod_backoff,
                          t.kod_backoff_max);
  a->p->cfg->tos = t;
}

/* `step` sets both directions; a `stepback` or `stepfwd` on the same line (or a later one)
 * sets one of them (NTPsec's stepback/stepfwd). */
static void
d_tinker(Args *a, int unused)
{
  (void)unused;
  enum { SEEN_STEP = 1u << 0, SEEN_BACK = 1u << 1, SEEN_FWD = 1u << 2 };
  CNF_Tinker t = a->p->cfg->tinker;
  uint32_t seen = 0;
  if (cnf_at_end(a))
    return (void)cnf_fail(a, "missing argument");
  if (!cnf_parse_options(a, CNF_OG_TINKER, &t, &seen))
    return;
  if ((seen & SEEN_STEP) && !(seen & SEEN_BACK))
    t.stepback = t.step;
  if ((seen & SEEN_STEP) && !(seen & SEEN_FWD))
    t.stepfwd = t.step;
  if (t.panic > 0 && (t.stepback > t.panic || t.stepfwd > t.panic))
    return (void)cnf_fail(a, "a step threshold (%g s) above the panic threshold %g s",
                          fmax(t.stepback, t.stepfwd), t.panic);
  a->p->cfg->tinker = t;
}

/* ------------------------------------------------------------------------------------ */
/* interface, port, threads                                                               */

static bool
valid_ifname(const char *s)
{
  size_t len = strlen(s);
  return len >= 1 && len <= MAX_IFNAME &&
         strspn(s, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_.-:@*?") ==
             len;
}

static bool
interface_target(Args *a, CNF_Interface *in, char *t)
{
  static const struct {
    const char *name;
    CNF_IfMatch match;
  } words[] = {{"all", CNF_IFM_ALL},
               {"ipv4", CNF_IFM_IPV4},
               {"ipv6", CNF_IFM_IPV6},
               {"wildcard", CNF_IFM_WILDCARD}};
  for (size_t i = 0; i < N_ELEMS(words); i++)
    if (strcmp(t, words[i].name) == 0) {
      in->match = words[i].match;
      return true;
    }
  if (cnf_looks_numeric(t) || strchr(t, '/')) {
    in->match = CNF_IFM_ADDR;
    return cnf_parse_addr_prefix(a, t, &in->addr, &in->prefix);
  }
  if (!valid_ifname(t))
    return cnf_fail(a, "bad interface name '%.64s'", t);
  in->match = CNF_IFM_NAME;
  in->name = t; /* borrowed from the line until stored */
  return true;
}

static void
d_interface(Args *a, int unused)
{
  (void)unused;
  static const char *const actions[] = {"listen", "ignore", "drop"};
  CNF_Interface in = {.prefix = -1, .line = a->p->line};
  char *t = cnf_need_tok(a, "listen, ignore or drop");
  if (!t)
    return;
  size_t i = 0;
  while (i < N_ELEMS(actions) && strcmp(actions[i], t) != 0)
    i++;
  if (i == N_ELEMS(actions))
    return (void)cnf_fail(a, "'%.64s' is not listen, ignore or drop", t);
  in.action = (CNF_IfAction)i;
  if (!(t = cnf_need_tok(a, "interface")) || !interface_target(a, &in, t))
    return;
  CNF_Config *cfg = a->p->cfg;
  CNF_Interface *arr = cnf_grow(cfg->interfaces, &cnf_store_of(cfg)->cap_interfaces,
                                cfg->n_interfaces + 1, sizeof(*arr));
  char *name = in.name ? cnf_dup_str(in.name) : NULL;
  if (arr)
    cfg->interfaces = arr;
  if (!arr || (in.name && !name)) {
    free(name);
    return (void)cnf_fail_oom(a);
  }
  in.name = name;
  arr[cfg->n_interfaces++] = in;
}

static void
d_port(Args *a, int unused)
{
  (void)unused;
  long long v;
  if (cnf_arg_int(a, NULL, 1, 65535, &v))
    a->p->cfg->port = (uint16_t)v;
}

static void
d_threads(Args *a, int unused)
{
  (void)unused;
  long long v;
  if (cnf_arg_int(a, NULL, 0, CNF_MAX_THREADS, &v))
    a->p->cfg->threads = (int)v;
}

/* metrics listen ADDRESS [port N]: one OpenMetrics endpoint (docs/monitoring.md). */
static void
d_metrics(Args *a, int unused)
{
  (void)unused;
  NetAddr addr;
  int prefix;
  long long port = CNF_METRICS_PORT;
  char *t = cnf_need_tok(a, "listen");
  if (!t)
    return;
  if (strcmp(t, "listen") != 0)
    return (void)cnf_fail(a, "'%.64s' is not listen", t);
  if (!(t = cnf_need_tok(a, "address")) || !cnf_parse_addr_prefix(a, t, &addr, &prefix))
    return;
  if (prefix >= 0)
    return (void)cnf_fail(a, "'%.64s' is a network, not an address", t);
  if ((t = cnf_next_tok(a)) != NULL) {
    if (strcmp(t, "port") != 0)
      return (void)cnf_fail(a, "'%.64s' is not port", t);
    if (!cnf_arg_int(a, "port", 1, 65535, &port))
      return;
  }
  CNF_Config *cfg = a->p->cfg;
  if (cfg->n_metrics >= CNF_MAX_METRICS)
    return (void)cnf_fail(a, "more than %d metrics endpoints", CNF_MAX_METRICS);
  addr.port = (uint16_t)port;
  cfg->metrics[cfg->n_metrics++] = addr;
}

/* ------------------------------------------------------------------------------------ */
/* Files and keys                                                                         */

/* driftfile / logfile / pidfile / keys: arg is the offset of the char * in CNF_Config. */
static void
d_path(Args *a, int offset)
{
  const char *t = cnf_need_tok(a, "file name");
  if (!t)
    return;
  if (*t == '\0')
    return (void)cnf_fail(a, "empty file name");
  /* ntpd's driftfile takes an optional wander threshold. */
  if (offset == (int)offsetof(CNF_Config, driftfile) && !cnf_at_end(a)) {
    double d;
    if (!cnf_arg_double(a, "wander threshold", 0, 1e9, &d))
      return;
    cnf_warn(a, "the wander threshold is accepted for compatibility and has no effect");
  }
  char *copy = cnf_dup_str(t);
  if (!copy)
    return (void)cnf_fail_oom(a);
  char **slot = cnf_field(a->p->cfg, (size_t)offset);
  free(*slot);
  *slot = copy;
}

/* leapsmearinterval N: seconds over which a leap is smeared (ntpd: 0 = off, at most a day). */
static void
d_leapsmear(Args *a, int unused)
{
  (void)unused;
  long long v;
  if (cnf_arg_int(a, NULL, 0, CNF_MAX_LEAPSMEAR, &v))
    a->p->cfg->leap_smear = (int)v;
}

static void
d_keyid(Args *a, int offset)
{
  long long v;
  if (cnf_arg_int(a, NULL, 1, CNF_MAX_KEYID, &v))
    *(uint32_t *)cnf_field(a->p->cfg, (size_t)offset) = (uint32_t)v;
}

/* trustedkey tokens are re-split so that "(5", "...", "9)" and "( 5 ... 9 )" read alike. */
static char *
split_parens(Args *a)
{
  size_t len = 1;
  for (size_t i = a->i; i < a->n; i++) {
    size_t l = strlen(a->tok[i]);
    if (l > (SIZE_MAX - len - 1) / 3)
      return NULL;
    len += 3 * l + 1;
  }
  char *out = cnf_alloc_array(NULL, len, 1), *o = out;
  if (!out)
    return NULL;
  for (; a->i < a->n; a->i++) {
    for (const char *s = a->tok[a->i]; *s; s++) {
      if (*s == '(' || *s == ')') {
        *o++ = ' ';
        *o++ = *s;
        *o++ = ' ';
      } else {
        *o++ = *s;
      }
    }
    *o++ = ' ';
  }
  *o = '\0';
  return out;
}

static bool
key_number(Args *a, const char *t, long long *v)
{
  if (!t)
    return cnf_fail(a, "incomplete key range");
  NumStatus st = cnf_parse_ll(t, v);
  if (st == NUM_BAD)
    return cnf_fail(a, "'%.64s' is not a key number", t);
  if (st == NUM_RANGE || *v < 1 || *v > CNF_MAX_KEYID)
    return cnf_fail(a, "key %.64s is out of range 1..%d", t, CNF_MAX_KEYID);
  return true;
}

/* Parse "N" or "( N ... M )" starting at t; strtok_r state in *save. */
static bool
key_item(Args *a, const char *t, char **save, CNF_KeyRange *r)
{
  long long lo, hi;
  if (strcmp(t, "(") != 0) {
    if (!key_number(a, t, &lo))
      return false;
    *r = (CNF_KeyRange){(uint16_t)lo, (uint16_t)lo};
    return true;
  }
  if (!key_number(a, strtok_r(NULL, " ", save), &lo))
    return false;
  const char *dots = strtok_r(NULL, " ", save);
  if (!dots || strcmp(dots, "...") != 0)
    return cnf_fail(a, "a key range is written ( LOW ... HIGH )");
  if (!key_number(a, strtok_r(NULL, " ", save), &hi))
    return false;
  const char *close = strtok_r(NULL, " ", save);
  if (!close || strcmp(close, ")") != 0)
    return cnf_fail(a, "a key range is written ( LOW ... HIGH )");
  if (lo > hi)
    return cnf_fail(a, "key range %lld ... %lld is backwards", lo, hi);
  *r = (CNF_KeyRange){(uint16_t)lo, (uint16_t)hi};
  return true;
}

static bool
append_key(Args *a, CNF_KeyRange r)
{
  CNF_Config *cfg = a->p->cfg;
  CNF_KeyRange *arr = cnf_grow(cfg->trusted_keys, &cnf_store_of(cfg)->cap_keys,
                               cfg->n_trusted_keys + 1, sizeof(*arr));
  if (!arr)
    return cnf_fail_oom(a);
  cfg->trusted_keys = arr;
  arr[cfg->n_trusted_keys++] = r;
  return true;
}

static void
d_trustedkey(Args *a, int unused)
{
  (void)unused;
  if (cnf_at_end(a))
    return (void)cnf_fail(a, "missing argument");
  char *text = split_parens(a), *save = NULL;
  if (!text)
    return (void)cnf_fail_oom(a);
  size_t before = a->p->cfg->n_trusted_keys;
  CNF_KeyRange r = {0, 0};
  for (char *t = strtok_r(text, " ", &save); t; t = strtok_r(NULL, " ", &save))
    if (!key_item(a, t, &save, &r) || !append_key(a, r))
      break;
  if (a->failed) /* all of the line or none of it */
    a->p->cfg->n_trusted_keys = before;
  free(text);
}

/* ------------------------------------------------------------------------------------ */
/* enable / disable, compatibility-only directives                                        */

static void
d_switch(Args *a, int on)
{
  static const struct {
    const char *name;
    size_t offset;
  } names[] = {
      {"auth", offsetof(CNF_Switches, auth)},
      {"bclient", offsetof(CNF_Switches, bclient)},
      {"calibrate", offsetof(CNF_Switches, calibrate)},
      {"kernel", offsetof(CNF_Switches, kernel)},
      {"monitor", offsetof(CNF_Switches, monitor)},
      {"ntp", offsetof(CNF_Switches, ntp)},
      {"stats", offsetof(CNF_Switches, stats)},
      {"mode7", offsetof(CNF_Switches, mode7)},
  };
  CNF_Switches sw = a->p->cfg->sw;
  const char *t;
  if (cnf_at_end(a))
    return (void)cnf_fail(a, "missing argument");
  while ((t = cnf_next_tok(a))) {
    size_t i = 0;
    while (i < N_ELEMS(names) && strcmp(names[i].name, t) != 0)
      i++;
    if (i == N_ELEMS(names))
      return (void)cnf_fail(a, "unknown flag '%.64s'", t);
    *(bool *)cnf_field(&sw, names[i].offset) = on != 0;
  }
  a->p->cfg->sw = sw;
}

/* ------------------------------------------------------------------------------------ */
/* statistics, filegen (ntp_mon(5))                                                       */

static bool
stats_kind(Args *a, const char *t, STF_Kind *k)
{
  if (!STF_KindByName(t, k))
    return cnf_fail(a, "unknown statistics name '%.64s'", t);
  if (!STF_KindWritten(*k))
    cnf_warn(a, "'%s' is accepted; ntpgated writes no %s records", t, t);
  return true;
}

/* statistics NAME...: enable each set (ntpd keeps every other setting of the set). */
static void
d_statistics(Args *a, int unused)
{
  (void)unused;
  bool on[STF_KIND_COUNT] = {false};
  if (cnf_at_end(a))
    return (void)cnf_fail(a, "missing argument");
  for (char *t; (t = cnf_next_tok(a));) {
    STF_Kind k;
    if (!stats_kind(a, t, &k))
      return;
    on[k] = true;
  }
  for (int i = 0; i < STF_KIND_COUNT; i++)
    if (on[i])
      a->p->cfg->filegen[i].enabled = true;
}

/* A base name for `file F`: a name, not a path (ntpd joins it to statsdir). */
static bool
filegen_file(Args *a, char **file)
{
  const char *t = cnf_need_tok(a, "file name");
  if (!t)
    return false;
  if (*t == '\0' || strchr(t, '/') || strcmp(t, ".") == 0 || strcmp(t, "..") == 0)
    return cnf_fail(a, "bad file name '%.64s' (a name in statsdir, without '/')", t);
  char *copy = cnf_dup_str(t);
  if (!copy)
    return cnf_fail_oom(a);
  free(*file);
  *file = copy;
  return true;
}

/* filegen NAME [file F] [type T] [link|nolink] [enable|disable] */
static void
d_filegen(Args *a, int unused)
{
  (void)unused;
  const char *name = cnf_need_tok(a, "statistics name");
  STF_Kind k;
  if (!name || !stats_kind(a, name, &k))
    return;
  CNF_FileGen g = a->p->cfg->filegen[k], *slot = &a->p->cfg->filegen[k];
  char *file = NULL;
  bool ok = true;
  for (char *t; ok && (t = cnf_next_tok(a));) {
    if (strcmp(t, "file") == 0) {
      ok = filegen_file(a, &file);
    } else if (strcmp(t, "type") == 0) {
      const char *v = cnf_need_tok(a, "type");
      if (!v)
        ok = false;
      else if (!STF_TypeByName(v, &g.type))
        ok = cnf_fail(a,
                      "unknown type '%.64s' (none, day, week, month or year; ntpd's pid "
                      "and age are not supported)",
                      v);
    } else if (strcmp(t, "link") == 0 || strcmp(t, "nolink") == 0) {
      g.link = t[0] == 'l';
    } else if (strcmp(t, "enable") == 0 || strcmp(t, "disable") == 0) {
      g.enabled = t[0] == 'e';
    } else {
      ok = cnf_fail(a, "unexpected '%.64s'", t);
    }
  }
  if (!ok) {
    free(file);
    return;
  }
  if (file) {
    free(slot->file);
    g.file = file;
  }
  *slot = g;
}

/* nts (NTPsec's syntax: keywords with their values, several on one line or one a line)   */

/* "TLS1.3" as NTPsec writes it (also "TLSv1.3"); TLS 1.2 is refused: RFC 8915 section 3. */
static bool
nts_tls_version(Args *a, const char *what)
{
  const char *t = cnf_need_tok(a, "TLS version");
  if (!t)
    return false;
  if (strcasecmp(t, "TLS1.3") == 0 || strcasecmp(t, "TLSv1.3") == 0)
    return true;
  if (strcasecmp(t, "TLS1.2") == 0 || strcasecmp(t, "TLSv1.2") == 0 ||
      strcasecmp(t, "TLS1.1") == 0 || strcasecmp(t, "TLSv1.1") == 0 ||
      strcasecmp(t, "TLS1.0") == 0 || strcasecmp(t, "TLSv1.0") == 0 ||
      strcasecmp(t, "TLS1") == 0 || strcasecmp(t, "TLSv1") == 0)
    return cnf_fail(a, "%s %.16s: NTS-KE runs over TLS 1.3 only (RFC 8915 section 3)", what,
                    t);
  return cnf_fail(a, "%s: unknown TLS version '%.32s' (TLS1.3)", what, t);
}

static bool
nts_aead(Args *a, CNF_Nts *n)
{
  const char *t = cnf_need_tok(a, "AEAD algorithm");
  if (!t)
    return false;
  if (strcasecmp(t, "AES_SIV_CMAC_256") == 0 || strcasecmp(t, "AEAD_AES_SIV_CMAC_256") == 0) {
    n->aead = CNF_NTS_AEAD_AES_SIV_CMAC_256;
    return true;
  }
  return cnf_fail(a, "aead '%.32s' is not supported (only AES_SIV_CMAC_256)", t);
}

/* A string value into *slot (replacing an earlier one). */
static bool
nts_string(Args *a, const char *what, char **slot)
{
  const char *t = cnf_need_tok(a, what);
  if (!t)
    return false;
  if (*t == '\0')
    return cnf_fail(a, "empty %s", what);
  char *copy = cnf_dup_str(t);
  if (!copy)
    return cnf_fail_oom(a);
  free(*slot);
  *slot = copy;
  return true;
}

static bool
nts_keyword(Args *a, const char *t, CNF_Nts *n)
{
  static const struct {
    const char *name, *what;
    size_t offset;
  } strs[] = {
      {"cert", "certificate file", offsetof(CNF_Nts, cert)},
      {"key", "private key file", offsetof(CNF_Nts, key)},
      {"ca", "CA file or directory", offsetof(CNF_Nts, ca)},
      {"cookie", "cookie key file", offsetof(CNF_Nts, cookie)},
      {"tlsciphersuites", "ciphersuite list", offsetof(CNF_Nts, ciphersuites)},
      {"tlsecdhcurves", "curve list", offsetof(CNF_Nts, ecdhcurves)},
  };
  for (size_t i = 0; i < N_ELEMS(strs); i++)
    if (strcmp(t, strs[i].name) == 0)
      return nts_string(a, strs[i].what, cnf_field(n, strs[i].offset));
  long long v;
  if (strcmp(t, "enable") == 0 || strcmp(t, "disable") == 0)
    n->enable = t[0] == 'e';
  else if (strcmp(t, "mintls") == 0 || strcmp(t, "maxtls") == 0)
    return nts_tls_version(a, t);
  else if (strcmp(t, "aead") == 0)
    return nts_aead(a, n);
  else if (strcmp(t, "port") == 0) {
    if (!cnf_arg_int(a, "NTS-KE port", 1, 65535, &v))
      return false;
    n->port = (uint16_t)v;
  } else if (strcmp(t, "tlsciphers") == 0) {
    if (!cnf_next_tok(a))
      return cnf_fail(a, "missing value for tlsciphers");
    cnf_warn(a, "tlsciphers has no effect: it lists TLS 1.2 ciphers, and NTS-KE uses TLS 1.3");
  } else
    return cnf_fail(a, "unknown keyword '%.64s'", t);
  return true;
}

/* A line with an error fails the whole parse, so a partly applied line is never used. */
static void
d_nts(Args *a, int unused)
{
  (void)unused;
  CNF_Nts *n = &a->p->cfg->nts;
  const char *t;
  if (cnf_at_end(a))
    return (void)cnf_fail(a, "missing keyword");
  n->line = a->p->line;
  while ((t = cnf_next_tok(a)))
    if (!nts_keyword(a, t, n))
      return;
}

typedef void (*DirectiveFn)(Args *a, int arg);

/* The handler of each supported directive of confdirs.c's table, by its id. */
static const struct {
  DirectiveFn fn;
  int arg;
} handlers[CNF_D_COUNT] = {
    [CNF_D_SERVER] = {d_assoc, CNF_SERVER},
    [CNF_D_POOL] = {d_assoc, CNF_POOL},
    [CNF_D_PEER] = {d_assoc, CNF_PEER},
    [CNF_D_FUDGE] = {d_fudge, 0},
    [CNF_D_RESTRICT] = {d_restrict, CNF_RST_ADD},
    [CNF_D_UNRESTRICT] = {d_restrict, CNF_RST_CLEAR},
    [CNF_D_DELRESTRICT] = {d_delrestrict, 0},
    [CNF_D_DISCARD] = {d_discard, 0},
    [CNF_D_MRU] = {d_mru, 0},
    [CNF_D_INTERFACE] = {d_interface, 0},
    [CNF_D_PORT] = {d_port, 0},
    [CNF_D_THREADS] = {d_threads, 0},
    [CNF_D_DRIFTFILE] = {d_path, (int)offsetof(CNF_Config, driftfile)},
    [CNF_D_LEAPFILE] = {d_path, (int)offsetof(CNF_Config, leapfile)},
    [CNF_D_LEAPSMEAR] = {d_leapsmear, 0},
    [CNF_D_LOGFILE] = {d_path, (int)offsetof(CNF_Config, logfile)},
    [CNF_D_PIDFILE] = {d_path, (int)offsetof(CNF_Config, pidfile)},
    [CNF_D_KEYS] = {d_path, (int)offsetof(CNF_Config, keysfile)},
    [CNF_D_TRUSTEDKEY] = {d_trustedkey, 0},
    [CNF_D_CONTROLKEY] = {d_keyid, (int)offsetof(CNF_Config, control_key)},
    [CNF_D_REQUESTKEY] = {d_keyid, (int)offsetof(CNF_Config, request_key)},
    [CNF_D_TOS] = {d_tos, 0},
    [CNF_D_TINKER] = {d_tinker, 0},
    [CNF_D_ENABLE] = {d_switch, 1},
    [CNF_D_DISABLE] = {d_switch, 0},
    [CNF_D_INCLUDEFILE] = {cnf_include, 0},
    [CNF_D_STATSDIR] = {d_path, (int)offsetof(CNF_Config, statsdir)},
    [CNF_D_STATISTICS] = {d_statistics, 0},
    [CNF_D_FILEGEN] = {d_filegen, 0},
    [CNF_D_METRICS] = {d_metrics, 0},
    [CNF_D_NTS] = {d_nts, 0},
};

bool
cnf_run_handler(Args *a, CNF_DirId id)
{
  if (id <= CNF_D_NONE || id >= CNF_D_COUNT || !handlers[id].fn)
    return false;
  handlers[id].fn(a, handlers[id].arg);
  return true;
}
