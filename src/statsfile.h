/* statsfile: the statistics files as ntpd writes them (ntp_mon(5), "Monitoring Options"),
 * as values: the names of the file generation sets and their types, each record's line, and
 * which file a record written at a given time goes to.
 *
 * Lines are ntpd's: the day as a Modified Julian Day, the seconds past UTC midnight with three
 * decimals, then the record's fields:
 *   loopstats  MJD SEC offset(s) frequency(ppm) jitter(s) wander(ppm) poll(log2 s)
 *   peerstats  MJD SEC address status(hex) offset(s) delay(s) dispersion(s) jitter(s)
 *   sysstats   MJD SEC age(s) received processed current-version old-version restricted
 *              bad-length/format bad-auth declined rate-limited kod-sent
 *   protostats MJD SEC address status(hex) event(hex) event-name
 * File names are PREFIX/FILE plus the generation's suffix: ".YYYYMMDD" (type day), ".YYYYwWW"
 * (ISO week), ".YYYYMM" (month), ".YYYY" (year) or nothing (none); with `link`, PREFIX/FILE
 * is also a hard link to the current generation.
 *
 * Pure: no I/O, no clock, no allocation. Times are UTC (struct timespec of the real clock). */
#ifndef NTPG_STATSFILE_H
#define NTPG_STATSFILE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

/* ntpd's and NTPsec's file generation sets. The first four are written; the others are
 * accepted by the configuration and have no records here (see STF_KindWritten). */
typedef enum {
  STF_LOOPSTATS = 0,
  STF_PEERSTATS,
  STF_SYSSTATS,
  STF_PROTOSTATS,
  STF_CLOCKSTATS,  /* reference clock timecodes: no refclock drivers here */
  STF_RAWSTATS,    /* raw timestamps */
  STF_CRYPTOSTATS, /* Autokey */
  STF_TIMINGSTATS, /* ntpd debug builds */
  STF_USESTATS,    /* NTPsec resource usage */
  STF_KIND_COUNT
} STF_Kind;

typedef enum {
  STF_TYPE_NONE = 0, /* one file, no suffix */
  STF_TYPE_DAY,      /* the default */
  STF_TYPE_WEEK,
  STF_TYPE_MONTH,
  STF_TYPE_YEAR,
} STF_Type;

#define STF_MJD_1970 40587 /* Modified Julian Day of 1970-01-01 */

/* Names as in ntp.conf ("loopstats", "day"); lookups return false for an unknown name. */
const char *STF_KindName(STF_Kind k);
bool STF_KindByName(const char *name, STF_Kind *out);
bool STF_KindWritten(STF_Kind k);
const char *STF_TypeName(STF_Type t);
bool STF_TypeByName(const char *name, STF_Type *out);

typedef struct {
  double offset;   /* s */
  double freq_ppm; /* frequency correction */
  double jitter;   /* s */
  double wander_ppm;
  int poll; /* log2 s: the time constant ntpd writes */
} STF_Loop;

typedef struct {
  char addr[48];                      /* the peer's address as text, without port */
  uint16_t status;                    /* peer status word */
  double offset, delay, disp, jitter; /* s */
} STF_Peer;

typedef struct {
  uint64_t age; /* s the counters cover */
  uint64_t received, processed, newversion, oldversion, restricted, badlength, badauth,
      declined, limited, kodsent;
} STF_Sys;

typedef struct {
  char addr[48];   /* the peer's address, or "0.0.0.0" for a system event */
  uint16_t status; /* peer or system status word */
  uint8_t code;    /* event code (peer events have 0x80 set, as ntpd writes them) */
  char event[24];  /* the event's name */
} STF_Proto;

/* The "MJD SEC.mmm" that starts every line. */
size_t STF_FormatStamp(const struct timespec *t, char *buf, size_t size);
/* Whole lines, with the newline; return the length as snprintf does (>= size: truncated). */
size_t STF_FormatLoop(const struct timespec *t, const STF_Loop *r, char *buf, size_t size);
size_t STF_FormatPeer(const struct timespec *t, const STF_Peer *r, char *buf, size_t size);
size_t STF_FormatSys(const struct timespec *t, const STF_Sys *r, char *buf, size_t size);
size_t STF_FormatProto(const struct timespec *t, const STF_Proto *r, char *buf, size_t size);

/* The suffix of the generation holding Unix time `now` (".20261205", "" for none), its first
 * second and its end (the first second of the next one); INT64_MIN/INT64_MAX for none. */
void STF_Generation(STF_Type type, int64_t now, char *suffix, size_t size, int64_t *from,
                    int64_t *until);
/* "DIR/FILE" + suffix into buf (DIR may end in '/' or be empty: then FILE as written);
 * false if it does not fit. */
bool STF_FileName(const char *dir, const char *file, const char *suffix, char *buf,
                  size_t size);

#endif
