/* metrics: the OpenMetrics/Prometheus endpoint's edge (`metrics listen`, docs/monitoring.md).
 * One thread of its own with its own TCP sockets; it never touches the serving threads. The
 * owner (the main thread) publishes a snapshot of the counters (expose.h) and the restrict
 * list in force (MTR_Publish, MTR_SetRestrict). A snapshot is taken on demand: when a
 * request comes and the last snapshot is older than MTR_FRESH_MS, the endpoint's thread makes
 * MTR_WantFd readable and waits (at most MTR_WAIT_MS) for the owner's next MTR_Publish, then
 * renders what it has; nobody scraping costs the serving threads nothing. Connections are
 * non-blocking, bounded in number, size (HTP_MAX_REQUEST) and time (MTR_TIMEOUT_MS), and
 * closed after one answer. A client whose address the restrict list gives `ignore` or
 * `noquery` is closed without a byte. */
#ifndef NTPG_METRICS_H
#define NTPG_METRICS_H

#include <stdbool.h>
#include <stddef.h>

#include "expose.h"
#include "netaddr.h"
#include "restrict.h"

#define MTR_MAX_CONNS 16
#define MTR_TIMEOUT_MS 5000
#define MTR_FRESH_MS 250 /* a snapshot this young is served as it is */
#define MTR_WAIT_MS 1000 /* longest wait for a fresh one (the owner is busy: the old one) */

typedef struct MTR_Server MTR_Server;

/* Bind and listen on every address (with its port) now, before privileges are dropped. NULL
 * with a reason in err if one cannot be opened. The thread starts with MTR_Start. */
MTR_Server *MTR_Create(const NetAddr *addrs, size_t n, char *err, size_t errlen);
bool MTR_Start(MTR_Server *m, char *err, size_t errlen);
/* Stop the thread (if started), close the sockets, free everything. NULL is fine. */
void MTR_Destroy(MTR_Server *m);
/* Readable when a fresh snapshot is wanted: drain it with MTR_TakeWant, then MTR_Publish. */
int MTR_WantFd(const MTR_Server *m);
void MTR_TakeWant(MTR_Server *m);
/* Copy s as the snapshot to serve (its version string must outlive m). */
void MTR_Publish(MTR_Server *m, const EXP_Snapshot *s);
/* The restrict list to check clients against: m makes its own copy (false if memory ran
 * out; the previous list then stays). NULL: no restrictions. */
bool MTR_SetRestrict(MTR_Server *m, const RST_List *rst);

#endif
