#include "confdirs.h"

#include <stdint.h>
#include <string.h>

#include "config.h"

#define N_ELEMS(x) (sizeof(x) / sizeof((x)[0]))

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
    WORKS("logfile", CNF_D_LOGFILE, BOTH),
    WORKS("pidfile", CNF_D_PIDFILE, NTPD),
    WORKS("keys", CNF_D_KEYS, BOTH),
    WORKS("trustedkey", CNF_D_TRUSTEDKEY, BOTH),
    WORKS("controlkey", CNF_D_CONTROLKEY, BOTH),
    WORKS("requestkey", CNF_D_REQUESTKEY, NTPD),
    WORKS("tos", CNF_D_TOS, BOTH),
    WORKS("enable", CNF_D_ENABLE, BOTH),
    WORKS("disable", CNF_D_DISABLE, BOTH),
    WORKS("includefile", CNF_D_INCLUDEFILE, BOTH),
    NOEFFECT("statistics", BOTH, "statistics files are not written"),
    NOEFFECT("statsdir", BOTH, "statistics files are not written"),
    NOEFFECT("filegen", BOTH, "statistics files are not written"),
    NOEFFECT(
        "leapfile", BOTH,
        "the leap indicator served comes from the upstream servers; the file is not read"),
    NOEFFECT("broadcastdelay", NTPD, "broadcast mode is not supported"),
    NOEFFECT("tinker", BOTH, "the clock discipline's constants are fixed"),
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
    REFUSED("leapsmearinterval", BOTH,
            "leap smearing is not supported: clients would see the leap second unsmeared"),
    REFUSED("broadcast", BOTH, "broadcast mode is not supported"),
    REFUSED("broadcastclient", BOTH, "broadcast mode is not supported"),
    REFUSED("multicastclient", NTPD, "multicast mode is not supported"),
    REFUSED("manycastclient", BOTH, "manycast is not supported"),
    REFUSED("manycastserver", NTPD, "manycast is not supported"),
    REFUSED("crypto", NTPD, "Autokey is not supported; use symmetric keys ('keys', 'key N')"),
    REFUSED("nts", NTPSEC, "NTS is not supported; use symmetric keys ('keys', 'key N')"),
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
    {"nts", CNF_OK_FLAG, 0, 0, 0, 0, 0, ND | REFUSE, 0, 0, 0,
     "NTS is not supported; use symmetric keys ('key N')"},
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
};

static const struct {
  const CNF_Option *rows;
  size_t n;
} groups[CNF_OG_COUNT] = {
    [CNF_OG_ASSOC] = {assoc_opts, N_ELEMS(assoc_opts)},
    [CNF_OG_DISCARD] = {discard_opts, N_ELEMS(discard_opts)},
    [CNF_OG_MRU] = {mru_opts, N_ELEMS(mru_opts)},
    [CNF_OG_TOS] = {tos_opts, N_ELEMS(tos_opts)},
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
        break;
    }
  }
}
