/* metrics: the OpenMetrics/Prometheus endpoint's edge (`metrics listen`, docs/monitoring.md).
 * One thread of its own with its own TCP sockets; it never touches the serving threads. The
 * main thread publishes a snapshot of the counters (expose.h) and the restrict list in force
 * (MTR_Publish, MTR_SetRestrict); the endpoint's thread serves `GET /metrics` from the last
 * snapshot, rendered per request. Connections are non-blocking, bounded in number, size
 * (HTP_MAX_REQUEST) and time (MTR_TIMEOUT_MS), and closed after one answer. A client whose
 * address the restrict list gives `ignore` or `noquery` is closed without a byte. */
#ifndef NTPG_METRICS_H
#define NTPG_METRICS_H

#include <stdbool.h>
#include <stddef.h>

#include "expose.h"
#include "netaddr.h"
#include "restrict.h"

#define MTR_MAX_CONNS 16
#define MTR_TIMEOUT_MS 5000

typedef struct MTR_Server MTR_Server;

/* Bind and listen on every address (with its port) now, before privileges are dropped. NULL
 * with a reason in err if one cannot be opened. The thread starts with MTR_Start. */
MTR_Server *MTR_Create(const NetAddr *addrs, size_t n, char *err, size_t errlen);
bool MTR_Start(MTR_Server *m, char *err, size_t errlen);
/* Stop the thread (if started), close the sockets, free everything. NULL is fine. */
void MTR_Destroy(MTR_Server *m);
/* Copy s as the snapshot to serve (its version string must outlive m). */
void MTR_Publish(MTR_Server *m, const EXP_Snapshot *s);
/* The restrict list to check clients against: m makes its own copy (false if memory ran
 * out; the previous list then stays). NULL: no restrictions. */
bool MTR_SetRestrict(MTR_Server *m, const RST_List *rst);

#endif
