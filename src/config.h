/* config: the ntp.conf parser. It reads an ntpd-compatible configuration (plus a few
 * ntpgate extensions) into a CNF_Config and does nothing else: no DNS, no sockets, no
 * logging, no global state. Host names are recorded unresolved; what a directive *does* is
 * decided by the module that reads the recorded value (restrict, monitor, assoc, keys, ...).
 *
 * The directives and options themselves -- names, what is supported, ranges, defaults -- are
 * the table of confdirs.h (confdirs.c, with the code that records each directive); config.c
 * reads files and text against it.
 *
 * Text is lines of printable characters: any control character other than tab (a blank)
 * and the newline that ends a line (optionally preceded by one carriage return) makes the
 * line an error, so that no character can read as a blank to one reader and as part of a
 * word to another.
 *
 * Errors travel as data. Parsing keeps going after a bad line and reports every error and
 * every warning as {file, line, text}; CNF_FormatMessage renders one in the compiler style
 * "FILE:LINE: reason". A parse call returns true only if it found no error; the caller
 * decides whether a config with errors is fatal (boot) or discarded (reload).
 *
 * Lifetime: a CNF_Config owns everything it points to (strings, arrays) until CNF_Destroy.
 * Readers get it as `const CNF_Config *` and must not keep pointers into it past that. */
#ifndef NTPG_CONFIG_H
#define NTPG_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "confdirs.h"
#include "msglist.h"
#include "netaddr.h"
#include "restrict.h"
#include "statsfile.h"

/* ------------------------------------------------------------------------------------ */
/* Errors and warnings                                                                   */

/* The messages of msglist.h under the parser's names. Zero-initialise (CNF_InitErrors or
 * `= {0}`), pass to any number of parse calls (messages accumulate), then CNF_ClearErrors. */
typedef MSG_Message CNF_Message;
typedef MSG_List CNF_MessageList;
typedef MSG_Errors CNF_Errors;

static inline void
CNF_InitErrors(CNF_Errors *errs)
{
  MSG_Init(errs);
}
static inline void
CNF_ClearErrors(CNF_Errors *errs)
{
  MSG_Clear(errs);
}
/* "FILE:LINE: text" ("FILE: text" when line is 0); see MSG_Format. */
static inline size_t
CNF_FormatMessage(const CNF_Message *m, char *buf, size_t size)
{
  return MSG_Format(m, buf, size);
}

/* ------------------------------------------------------------------------------------ */
/* Associations: server / pool / peer                                                    */

typedef enum { CNF_SERVER = 0, CNF_POOL, CNF_PEER } CNF_AssocType;

/* Option flags of an association. */
enum {
  CNF_AO_IBURST = 1u << 0,   /* burst of packets while unreachable */
  CNF_AO_BURST = 1u << 1,    /* burst of packets every poll while reachable */
  CNF_AO_PREFER = 1u << 2,   /* preferred source */
  CNF_AO_NOSELECT = 1u << 3, /* poll and show, never select */
  CNF_AO_TRUE = 1u << 4,     /* always a truechimer */
};

/* The defaults of confdirs.c's option table (the client's own poll limits use them too). */
#define CNF_DEFAULT_MINPOLL 6  /* log2 s (64 s) */
#define CNF_DEFAULT_MAXPOLL 10 /* log2 s (1024 s) */
#define CNF_MAX_POLL 17
#define CNF_NTP_PORT 123

typedef struct {
  CNF_AssocType type;
  char *host;       /* as written: a numeric address or a host name (never resolved here) */
  bool numeric;     /* host is a numeric address, parsed into addr */
  NetAddr addr;     /* valid when numeric; addr.port == port */
  int family;       /* forced family for name resolution: ADR_INET4, ADR_INET6, or ADR_NONE */
  uint16_t port;    /* UDP port of the server (our extension `port N`), default 123 */
  int minpoll;      /* log2 s, 0..17, default 6 */
  int maxpoll;      /* log2 s, minpoll..17, default 10 */
  uint32_t key;     /* symmetric key id 1..65535; 0 = no authentication */
  int version;      /* NTP version we send, 1..4, default 4 */
  unsigned options; /* CNF_AO_* */
  int line;         /* where it was configured (for the association's own messages) */
} CNF_Assoc;

/* The LOCAL reference clock driver, `server 127.127.1.u` plus `fudge 127.127.1.u ...`. */
#define CNF_LOCAL_DEFAULT_STRATUM 5 /* ntpd refclock_local.c STRATUM */
#define CNF_LOCAL_DEFAULT_REFID "LOCL"

typedef struct {
  bool configured; /* a `server 127.127.1.u` line was seen */
  int unit;        /* u in 127.127.1.u, 0..3 */
  int minpoll;     /* log2 s, as for servers */
  int maxpoll;
  unsigned options; /* CNF_AO_PREFER / NOSELECT / TRUE */
  bool fudged;      /* a fudge line was seen (even without the server line) */
  int stratum;      /* 0..15, default 5 */
  char refid[5];    /* 1..4 printable ASCII characters, default "LOCL" */
} CNF_LocalClock;

/* ------------------------------------------------------------------------------------ */
/* Access control: restrict / delrestrict / unrestrict, discard, mru                     */

typedef enum {
  CNF_RST_ADD = 0, /* restrict: OR flags into the entry (created if new) */
  CNF_RST_DELETE,  /* delrestrict, or unrestrict without flags: remove the entry */
  CNF_RST_CLEAR,   /* unrestrict with flags: clear those flags from the entry */
} CNF_RestrictOp;

typedef enum {
  CNF_RST_DEFAULT = 0, /* the default entry of one family (address/mask all zero) */
  CNF_RST_ADDR,        /* a numeric address and mask */
  CNF_RST_HOST,        /* a host name, unresolved; host entry (mask all ones) per address */
  CNF_RST_SOURCE,      /* `restrict source`: the template for association peers */
} CNF_RestrictKind;

typedef struct {
  CNF_RestrictOp op;
  CNF_RestrictKind kind;
  int family;      /* ADR_INET4 / ADR_INET6; for HOST also ADR_NONE (any); SOURCE: NONE */
  NetAddr addr;    /* ADDR: stored masked; DEFAULT: all zero of `family` */
  NetAddr mask;    /* ADDR: contiguous mask; DEFAULT: all zero */
  int prefix;      /* ADDR/DEFAULT: length of mask; HOST: -1 */
  char *host;      /* HOST only */
  uint32_t flags;  /* RST_* (restrict.h) */
  uint32_t match;  /* RST_M_NTPPORT; RST_M_SOURCE for SOURCE and `delrestrict source` */
  int ippeerlimit; /* -1 (unlimited, default) .. 100 */
  int line;
} CNF_Restrict;

typedef struct {
  /* ntpd 4.2.8 `discard` */
  int average; /* log2 s of the minimum average spacing, 0..17, default 3 */
  int minimum; /* s, minimum spacing (guard time), 0..3600, default 2 */
  int monitor; /* full-MRU replacement probability denominator, 1..1e9, default 3000 */
  /* ntpgate extensions on the same line */
  int leak;       /* 1 in 2^leak over-limit requests is answered anyway; 0 = never; 0..16, 4 */
  int kodlimit;   /* most KoDs sent per second in total; 0 = send none; 0..10000, default 1 */
  int netprefix4; /* aggregate IPv4 sources per /netprefix4 network; 0 = off (default) */
  int netprefix6; /* aggregate IPv6 sources per /netprefix6 network; 0 = off (default) */
  int netaverage; /* log2 s between packets allowed from one whole network, -16..17, -3 */
  int shedrate;   /* rate-limit drops/s that shed a source into the kernel filter; 0 = off */
  int sheddepth;  /* most shed sources, 1..64, default 32 */
  int shedhold;   /* s a shed source stays after its last over-limit packet, 1..3600, 8 */
  int shedwait;   /* ms a thread waits after a wakeup of nothing but shed samples, 0..20, 2 */
} CNF_Discard;

/* One of ntpd's "count or memory" pairs: the last of the pair on the line wins. */
typedef struct {
  bool
      in_kib; /* true: value is KiB of memory (ntpd ...mem); false: entries (...depth/alloc) */
  uint32_t value;
} CNF_MruSize;

/* The monitor table's bound: 2^24 records, or the KiB they take (64 octets each). */
#define CNF_MRU_MAX_ENTRIES 16777216
#define CNF_MRU_MAX_KIB 1048576

typedef struct {
  CNF_MruSize max;   /* maxdepth N | maxmem KiB; default maxmem 1024 */
  CNF_MruSize init;  /* initalloc N | initmem KiB; default initmem 4 */
  CNF_MruSize inc;   /* incalloc N | incmem KiB; default incmem 4 */
  uint32_t mindepth; /* entries always allowed before recycling, default 600 */
  uint32_t maxage;   /* s: an oldest entry older than this is recycled, default 64 */
} CNF_Mru;

/* ------------------------------------------------------------------------------------ */
/* Network, files, keys, tos, enable/disable                                             */

typedef enum { CNF_IF_LISTEN = 0, CNF_IF_IGNORE, CNF_IF_DROP } CNF_IfAction;
typedef enum {
  CNF_IFM_ALL = 0,
  CNF_IFM_IPV4,
  CNF_IFM_IPV6,
  CNF_IFM_WILDCARD,
  CNF_IFM_ADDR, /* addr, with prefix (-1 = exactly this address) */
  CNF_IFM_NAME, /* name */
} CNF_IfMatch;

typedef struct {
  CNF_IfAction action;
  CNF_IfMatch match;
  NetAddr addr;
  int prefix;
  char *name;
  int line;
} CNF_Interface;

/* Inclusive range of trusted key ids (a single key is lo == hi). */
typedef struct {
  uint16_t lo, hi;
} CNF_KeyRange;

typedef struct {
  int orphan;     /* orphan stratum 1..16; 0 = orphan mode off (default) */
  int orphanwait; /* s before orphan mode takes over, default 300 */
  int minclock;   /* default 3 */
  int minsane;    /* default 1 */
  int maxclock;   /* default 10 */
  double maxdist; /* s, selection threshold, default 1.5 */
  double mindist; /* s, minimum distance, default 0.001 */
  int floor;      /* lowest stratum we accept, default 1 */
  int ceiling;    /* strata >= ceiling are refused, default 15 */
  /* ntpgate extensions: the client's Kiss-o'-Death policy (log2 s; docs/client.md) */
  int kod_backoff;     /* first silence after DENY/RSTR is max(poll, this), 3..17, 10 */
  int kod_backoff_max; /* the doubling stops here, 3..17, 17 (36.4 h) */
  int kod_rate_cap;    /* RATE raises the poll at most to this, 4..17, 10 */
} CNF_Tos;

/* `tinker`: the clock discipline's thresholds (docs/client.md, "tinker and tos"). */
typedef struct {
  double step;       /* s, the step threshold as given (both directions), 0.128 */
  double stepback;   /* s, threshold of a backward step (our clock ahead), 0.128; 0: never */
  double stepfwd;    /* s, threshold of a forward step (our clock behind), 0.128; 0: never */
  double panic;      /* s, 1000; 0: no panic limit */
  double stepout;    /* s, how long a large offset must persist before a step, 900 */
  double dispersion; /* ppm: dispersion growth (PHI), 15 */
  double huffpuff;   /* s: huff-n'-puff span; 0: off (default) */
} CNF_Tinker;

/* `enable` / `disable` switches, with ntpd's defaults. */
typedef struct {
  bool auth;      /* true */
  bool bclient;   /* false */
  bool calibrate; /* false */
  bool kernel;    /* true */
  bool monitor;   /* true */
  bool ntp;       /* true */
  bool stats;     /* true: statistics files are written (ntpd's stats_control) */
  bool mode7;     /* false */
} CNF_Switches;

/* One file generation set (statistics / filegen; ntp_mon(5)). */
typedef struct {
  bool enabled;  /* `statistics NAME` or `filegen NAME enable`; default off */
  char *file;    /* `file F`: the file's base name; NULL: the set's own name */
  STF_Type type; /* `type T`, default day */
  bool link;     /* `link` (default) / `nolink`: PREFIX/FILE links to the current file */
} CNF_FileGen;

/* Network Time Security, server side (RFC 8915; NTPsec's `nts` directive, docs/nts.md). */
#define CNF_NTS_KE_PORT 4460
#define CNF_NTS_AEAD_AES_SIV_CMAC_256 15 /* the IANA AEAD id (RFC 5297, RFC 8915 5.1) */
typedef struct {
  bool enable;        /* `nts enable` (false: no NTS-KE listener, NTS requests are plain) */
  int line;           /* the line of the last `nts` directive, for messages about the files */
  char *cert, *key;   /* PEM certificate chain and its private key */
  char *ca;           /* CA file or directory (client side; recorded only) */
  char *cookie;       /* the cookie master keys file (NULL: keys held in memory only) */
  char *ciphersuites; /* OpenSSL TLS 1.3 ciphersuite list (NULL: OpenSSL's default) */
  char *ecdhcurves;   /* OpenSSL groups list (NULL: OpenSSL's default) */
  int aead;           /* the AEAD we offer: CNF_NTS_AEAD_AES_SIV_CMAC_256 */
  uint16_t port;      /* NTS-KE TCP port (extension `nts port N`), default 4460 */
} CNF_Nts;

#define CNF_MAX_THREADS 64
#define CNF_MAX_LEAPSMEAR 86400 /* leapsmearinterval: a day at most, as ntpd */
#define CNF_MAX_KEYID 65535
#define CNF_MAX_METRICS 8     /* `metrics listen` lines */
#define CNF_METRICS_PORT 9975 /* their default TCP port */

typedef struct {
  CNF_Assoc *assocs; /* in configuration order */
  size_t n_assocs;
  CNF_LocalClock local_clock;

  CNF_Restrict *restricts; /* in configuration order; `restrict default` gives two (4 and 6) */
  size_t n_restricts;
  CNF_Discard discard;
  CNF_Mru mru;

  CNF_Interface *interfaces; /* in configuration order */
  size_t n_interfaces;
  uint16_t port; /* our UDP server port (extension `port N`), default 123 */
  int threads;   /* worker threads (extension), 0 = one per core (default), max 64 */

  char *driftfile; /* NULL when not configured; paths as written */
  char *leapfile;  /* the leap-second list (leapsec.h) */
  char *logfile;
  char *pidfile;
  char *keysfile;

  CNF_KeyRange *trusted_keys; /* every trustedkey line, in order */
  size_t n_trusted_keys;
  uint32_t control_key; /* 0 = none */
  uint32_t request_key; /* 0 = none */

  char *statsdir;                      /* statsdir: the prefix of every filegen file */
  CNF_FileGen filegen[STF_KIND_COUNT]; /* by STF_Kind */

  int leap_smear; /* leapsmearinterval, s (0: leaps are announced, not smeared) */

  CNF_Tos tos;
  CNF_Tinker tinker;
  CNF_Switches sw;

  /* `metrics listen ADDRESS [port N]` (extension): the OpenMetrics endpoints, with ports */
  NetAddr metrics[CNF_MAX_METRICS];
  size_t n_metrics;

  CNF_Nts nts;
} CNF_Config;

/* A config holding the defaults; NULL if memory is short. */
CNF_Config *CNF_Create(void);
void CNF_Destroy(CNF_Config *cfg);

/* Parse a file into cfg (adding to what is there). `includefile` paths are relative to the
 * including file's directory. Every problem goes to errs (may be NULL). True iff no error. */
bool CNF_ParseFile(CNF_Config *cfg, const char *path, CNF_Errors *errs);
/* Same for text held in memory; `name` labels the messages, and relative includes are taken
 * from the directory part of name (the current directory if it has none). */
bool CNF_ParseText(CNF_Config *cfg, const char *name, const char *text, CNF_Errors *errs);
/* The same for runtime text (ntpq's :config): only directives marked CNF_DF_RUNTIME in
 * confdirs.h (the access-control ones: restrict, unrestrict, delrestrict, discard, mru) are
 * accepted; every other directive, includefile among them, is an error at its line. What is
 * allowed is decided from the parsed directive, never from the raw text. */
bool CNF_ParseRuntimeText(CNF_Config *cfg, const char *name, const char *text,
                          CNF_Errors *errs);

/* True if key id is listed by a trustedkey line. */
bool CNF_IsTrustedKey(const CNF_Config *cfg, uint32_t key);

#endif
