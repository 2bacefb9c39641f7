/* expose: the metrics exposition, a pure function of a snapshot of the daemon's counters and
 * state. It renders the Prometheus text format (version 0.0.4, which Prometheus and
 * OpenMetrics scrapers accept), every family with its HELP and TYPE lines; names and their
 * meaning are documented in docs/monitoring.md. No I/O, no clock, no allocation. */
#ifndef NTPG_EXPOSE_H
#define NTPG_EXPOSE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "netaddr.h"
#include "server.h"

#define EXP_MAX_PEERS 64
#define EXP_CONTENT_TYPE "text/plain; version=0.0.4; charset=utf-8"

#define EXP_MAX_ROWS 16

/* A named counter (the NTS rows: name without its prefix, e.g. "handshakes"). */
typedef struct {
  const char *name; /* borrowed: valid while the snapshot is used */
  uint64_t value;
} EXP_Row;

/* One upstream association. */
typedef struct {
  NetAddr addr;                 /* the server's address (port not shown) */
  uint8_t reach, stratum;       /* reachability register; stratum as received */
  int8_t poll;                  /* log2 s */
  bool have_sample;             /* offset, delay and jitter are meaningful */
  double offset, delay, jitter; /* s */
  uint64_t kod_rate, kod_deny, kod_rstr, kod_other; /* KoDs received by kiss code */
} EXP_Peer;

typedef struct {
  const char *version; /* e.g. "0.1.0" */
  double start_time;   /* POSIX s the daemon started */
  /* the serving threads, summed (worker.h) */
  uint64_t received, received_bytes, sent, sent_bytes;
  uint64_t send_errors, recv_errors, oversize, kernel_drops;
  uint64_t reasons[SRV_R_COUNT];
  /* monitor table and load shedding */
  uint64_t mon_entries, mon_capacity, mon_evictions, mon_not_tracked;
  uint64_t shed_now, shed_total;
  /* what we serve (sysvars) and the discipline */
  int stratum, leap;
  double root_delay, root_dispersion; /* s */
  double leap_expiry;                 /* POSIX s the leap-second list expires; 0: no list */
  bool have_client;                   /* offset, frequency and jitter are from a client */
  double offset, frequency_ppm, jitter;
  EXP_Peer peers[EXP_MAX_PEERS];
  size_t n_peers;
  /* NTS (docs/nts.md): the NTS-KE server's events and the NTS client's (none: no family) */
  EXP_Row nts_ke[EXP_MAX_ROWS];
  size_t n_nts_ke;
  EXP_Row client_nts[EXP_MAX_ROWS];
  size_t n_client_nts;
  /* the endpoint itself (metrics.c) */
  uint64_t http_served, http_refused, http_errors;
} EXP_Snapshot;

/* Render s into out[cap]. Returns the length, or 0 if cap is too small (nothing usable). */
size_t EXP_Format(const EXP_Snapshot *s, char *out, size_t cap);

#endif
