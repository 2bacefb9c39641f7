/* leapsec: the leap-second list (the IERS/NIST `leap-seconds.list` that ntpd's `leapfile`
 * reads) and what it says about a given moment: TAI-UTC, the next leap and its direction,
 * whether it is to be announced now, how far the list is from its expiry, and the offset of
 * a linear leap smear. Pure: LSC_Parse takes text and LSC_Load only reads the file; times
 * are POSIX seconds (UTC, leap seconds not counted), converted from the file's NTP seconds.
 *
 * The file: data lines "NTPSECONDS TAI-UTC [# comment]", one per change of TAI-UTC (the
 * first is 1 Jan 1972, 10 s, the start of the table, not a leap); "#$ NTPSECONDS" when the
 * list was last updated; "#@ NTPSECONDS" when it expires; "#h H1 H2 H3 H4 H5" the SHA-1,
 * in five 32-bit hexadecimal words, of the digits of the #$, #@ and data lines (everything
 * else left out). Other lines starting with '#' are comments. Every error and warning is
 * data (file, line, text), as for the configuration. */
#ifndef NTPG_LEAPSEC_H
#define NTPG_LEAPSEC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "msglist.h"

#define LSC_MAX_ENTRIES 128 /* 28 entries by 2026; a fixed table, no allocation */
#define LSC_ANNOUNCE 86400  /* leap bits are set during the last day before a leap */
#define LSC_EXPIRY_WARN 28  /* days before the expiry from which a list is "expiring" */

typedef struct {
  int64_t when; /* POSIX time (00:00:00 UTC) from which tai holds */
  int tai;      /* TAI - UTC in seconds from then on */
} LSC_Entry;

typedef struct {
  LSC_Entry e[LSC_MAX_ENTRIES];
  size_t n;
  int64_t updated; /* the #$ line (POSIX), 0 if there is none */
  int64_t expires; /* the #@ line (POSIX) */
  bool hashed;     /* a #h line was present and matched */
} LSC_List;

/* Parse text (name labels the messages). True iff no error; errors and warnings go to errs
 * (may be NULL). A file with any error leaves l empty (n = 0). */
bool LSC_Parse(LSC_List *l, const char *name, const char *text, size_t len, MSG_Errors *errs);
/* Read and parse a file (at most 1 MiB). */
bool LSC_Load(LSC_List *l, const char *path, MSG_Errors *errs);

typedef enum { LSC_EXPIRY_OK = 0, LSC_EXPIRY_SOON, LSC_EXPIRY_PAST } LSC_Expiry;
/* PAST from the expiry on, SOON within LSC_EXPIRY_WARN days of it. */
LSC_Expiry LSC_CheckExpiry(const LSC_List *l, int64_t now);

/* The list at one moment. */
typedef struct {
  int tai;      /* TAI - UTC now; 0 when now is before the list or the list is empty */
  int64_t next; /* POSIX time the next leap takes effect (00:00:00 UTC after it), 0: none */
  int dir;      /* the next leap: +1 a second inserted, -1 a second deleted, 0 none */
  int64_t last; /* POSIX time of the latest leap in the list (ntpq's `leapsec`), 0: none */
} LSC_State;
void LSC_At(const LSC_List *l, int64_t now, LSC_State *s);

/* Leap indicator to announce at now: 1 (insert) or 2 (delete) during the LSC_ANNOUNCE
 * seconds before a leap of that direction at `next`, otherwise 0. */
int LSC_LeapIndicator(int64_t next, int dir, int64_t now);

/* Offset (s) to add to served time at `now` to smear a leap of direction dir taking effect
 * at `next` linearly over the `interval` seconds before it (ntpd's `leapsmearinterval`):
 * 0 before the interval, growing to -dir at the leap, and 0 again once the clock itself has
 * taken the leap (now >= next). interval <= 0: no smear. */
double LSC_SmearOffset(int64_t next, int dir, double interval, double now);

/* What a synchronized server does about leaps at `now`, from the list (NULL or empty: none)
 * and the leap indicator its selected upstreams voted by majority (0, 1 insert, 2 delete).
 * A list in force (loaded, not expired) decides alone; without one, or once it has expired,
 * the upstreams' vote does (its leap is at the next UTC midnight). smear_interval > 0
 * (`leapsmearinterval`): the leap is smeared into the served time and not announced. */
typedef struct {
  int li;         /* leap indicator to serve: 0, 1 or 2 */
  int arm;        /* leap for the clock driver (CLK_SetLeap): +1, -1 or 0 */
  int64_t leap;   /* POSIX time the leap takes effect, 0 when none is due */
  int dir;        /* its direction */
  double smear;   /* smear interval in force for it (0: no smear) */
  bool from_list; /* decided by the list (false: by the upstreams' vote or nothing) */
} LSC_Decision;
void LSC_Decide(const LSC_List *l, int voted_li, int64_t now, double smear_interval,
                LSC_Decision *out);

/* ntpq's rendering of a leap or expiry time: "YYYYMMDDhhmm" (UTC), 13 octets with the NUL. */
void LSC_FormatStamp(int64_t posix, char buf[13]);

#endif
