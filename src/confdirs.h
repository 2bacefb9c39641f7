/* confdirs: the table of ntp.conf directives and options -- one place for each setting.
 *
 * Every directive of ntpd 4.2.8's and NTPsec's ntp.conf manuals (ntp.conf(5), ntp_acc(5),
 * ntp_auth(5), ntp_mon(5), ntp_misc(5), ntp_clock(5)) and every ntpgate extension has one
 * row here saying what ntpgate does with it: it works, it is accepted with a warning that
 * says why it changes nothing here, or it is refused with a reason. Every option of the
 * `server`, `discard`, `mru` and `tos` lines has one row with its kind, its accepted range
 * and its default. The parser reads these rows and nothing else; CNF_Create takes its
 * defaults from them; tests/unit/test_config.c checks that docs/configuration.md and the
 * monitor and shed modules' own defaults and ranges say the same.
 *
 * The config module is two files along this seam: confdirs.c holds the table and, for each
 * supported directive, the code that records it into a CNF_Config; config.c reads files and
 * text into lines and tokens, reports, and dispatches each line through the table (their
 * shared helpers: confparse.h, private to the two). The lookups here are pure: no state, no
 * allocation. */
#ifndef NTPG_CONFDIRS_H
#define NTPG_CONFDIRS_H

#include <stdbool.h>
#include <stddef.h>

/* ------------------------------------------------------------------------------------ */
/* Directives                                                                            */

typedef enum {
  CNF_DS_SUPPORTED = 0, /* parsed and acted on */
  CNF_DS_NOEFFECT,      /* accepted with any arguments; a warning gives `why` */
  CNF_DS_REFUSED,       /* an error giving `why`: ignoring it would change what is relied on */
} CNF_DirStatus;

enum {
  CNF_DF_NTPD = 1u << 0,      /* in ntpd 4.2.8's manuals */
  CNF_DF_NTPSEC = 1u << 1,    /* in NTPsec's manuals */
  CNF_DF_EXTENSION = 1u << 2, /* ntpgate's own */
  CNF_DF_RUNTIME = 1u << 3,   /* may be sent with ntpq's :config (access control only) */
};

/* What each supported directive is; the parser maps this to its handler. */
typedef enum {
  CNF_D_NONE = 0, /* not supported (NOEFFECT / REFUSED rows) */
  CNF_D_SERVER,
  CNF_D_POOL,
  CNF_D_PEER,
  CNF_D_FUDGE,
  CNF_D_RESTRICT,
  CNF_D_UNRESTRICT,
  CNF_D_DELRESTRICT,
  CNF_D_DISCARD,
  CNF_D_MRU,
  CNF_D_INTERFACE,
  CNF_D_PORT,
  CNF_D_THREADS,
  CNF_D_DRIFTFILE,
  CNF_D_LEAPFILE,
  CNF_D_LEAPSMEAR,
  CNF_D_LOGFILE,
  CNF_D_PIDFILE,
  CNF_D_KEYS,
  CNF_D_TRUSTEDKEY,
  CNF_D_CONTROLKEY,
  CNF_D_REQUESTKEY,
  CNF_D_TOS,
  CNF_D_TINKER,
  CNF_D_ENABLE,
  CNF_D_DISABLE,
  CNF_D_INCLUDEFILE,
  CNF_D_STATSDIR,
  CNF_D_STATISTICS,
  CNF_D_FILEGEN,
  CNF_D_METRICS,
  CNF_D_NTS,
  CNF_D_COUNT
} CNF_DirId;

typedef struct {
  const char *name;
  CNF_DirId id; /* CNF_D_NONE unless status is SUPPORTED */
  CNF_DirStatus status;
  unsigned flags;  /* CNF_DF_* */
  const char *why; /* NOEFFECT / REFUSED: the reason in the message; SUPPORTED: NULL */
} CNF_Directive;

/* Every row, in the order of docs/configuration.md's directive table; *n gets the count. */
const CNF_Directive *CNF_Directives(size_t *n);
/* The row of a directive name (exact, case-sensitive), or NULL. */
const CNF_Directive *CNF_FindDirective(const char *name);

/* ------------------------------------------------------------------------------------ */
/* Options                                                                               */

typedef enum {
  CNF_OG_ASSOC = 0, /* server / pool / peer (into CNF_Assoc) */
  CNF_OG_DISCARD,   /* discard (into CNF_Discard) */
  CNF_OG_MRU,       /* mru (into CNF_Mru) */
  CNF_OG_TOS,       /* tos (into CNF_Tos) */
  CNF_OG_TINKER,    /* tinker (into CNF_Tinker) */
  CNF_OG_COUNT
} CNF_OptGroup;

typedef enum {
  CNF_OK_FLAG = 0, /* no value: ORs `bits` into an unsigned */
  CNF_OK_INT,      /* int */
  CNF_OK_U16,      /* uint16_t */
  CNF_OK_U32,      /* uint32_t */
  CNF_OK_DBL,      /* double */
  CNF_OK_MRU,      /* CNF_MruSize; `bits` 1 = the value is KiB */
  CNF_OK_PAIR,     /* "P/Q": two ints; P in lo..hi at offset, Q in lo..hi2 at offset2 */
  CNF_OK_STR,      /* a word: a char * borrowed from the line (the directive copies it) */
} CNF_OptKind;

enum {
  CNF_OF_NODEFAULT = 1u << 0, /* the row has no default of its own (flags; the other word
                                 of a count-or-memory pair holds the default) */
  CNF_OF_EXTENSION = 1u << 1, /* ntpgate's own option */
  CNF_OF_NOEFFECT = 1u << 2,  /* accepted (with its value, if any) and ignored with a warning
                                 giving `doc` as the reason */
  CNF_OF_REFUSED = 1u << 3,   /* an error giving `doc` as the reason */
};

typedef struct {
  const char *name;
  CNF_OptKind kind;
  double lo, hi;   /* accepted range (PAIR: of the first value) */
  double hi2;      /* PAIR: upper bound of the second value (lower bound lo) */
  double clamp;    /* > 0: a value above this is accepted, then clamped with a warning */
  double def;      /* default (PAIR: both values) unless CNF_OF_NODEFAULT */
  unsigned flags;  /* CNF_OF_* */
  size_t offset;   /* where the value goes in the group's struct */
  size_t offset2;  /* PAIR: the second value */
  unsigned bits;   /* FLAG: bits ORed in; MRU: 1 when the value is KiB */
  const char *doc; /* the unit, as docs/configuration.md writes it; NOEFFECT / REFUSED: why */
} CNF_Option;

/* The rows of one group; *n gets the count. */
const CNF_Option *CNF_Options(CNF_OptGroup g, size_t *n);
/* The row of an option name in a group, or NULL. */
const CNF_Option *CNF_FindOption(CNF_OptGroup g, const char *name);
/* Write every default of group g into target (a CNF_Assoc, CNF_Discard, CNF_Mru,
 * CNF_Tos or CNF_Tinker, per the group). Rows marked CNF_OF_NODEFAULT are left alone. */
void CNF_ApplyDefaults(CNF_OptGroup g, void *target);

#endif
