/* pool: the serving threads. Each thread owns a worker (batch buffers, RNG, counters), its own
 * epoll set and its own socket per listen address; with more than one thread the sockets share
 * each address through SO_REUSEPORT, so the kernel spreads clients over threads.
 *
 * Shared state reaches the threads only through the SRV_Ctx they are given. To change it (a
 * reload, a new system state, reading the counters) a caller enters an exclusive section:
 * POL_Exclusive waits until every other thread is between batches and holds them there until
 * POL_Release. The hot path pays for this with one store to the thread's own flag and one
 * read of a rarely written pause flag per wakeup: no lock is taken per packet or per batch.
 *
 * Exclusive sections are serialized by one mutex; a serving thread may enter one (self = its
 * index, e.g. for a runtime configuration change it received) only outside a batch. */
#ifndef NTPG_POOL_H
#define NTPG_POOL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "clock.h"
#include "netaddr.h"
#include "shed.h"
#include "worker.h"

#define POL_MAX_THREADS 64
#define POL_MAX_ADDRS 64

typedef struct POL_Pool POL_Pool;

/* Open nthreads sockets per address (bound now, so before privileges are dropped). NULL with
 * a reason in err if a socket cannot be opened. Threads are not started yet. */
POL_Pool *POL_Create(const CLK_Clock *clk, int nthreads, const NetAddr *addrs, size_t naddrs,
                     char *err, size_t errlen);
/* The control path: called by a serving thread, outside any batch, when its worker kept mode
 * 6 requests (WRK_PendingControl); it enters its own exclusive section (self = index) and
 * must WRK_ClearControl. Set before POL_Start. */
typedef void (*POL_ControlFn)(void *arg, int self, WRK_Worker *w);
void POL_SetControlHandler(POL_Pool *p, POL_ControlFn fn, void *arg);

/* Load shedding: the table whose list the sockets' filters follow (set before POL_Start; the
 * table must outlive the pool). A serving thread installs a changed list after its batch.
 * Tests only: the environment variable NTPG_TEST_SHED_FAULT=N makes every socket refuse a
 * filter of N or more addresses (NIO_SetShedFault; docs/access-control.md). */
void POL_SetShed(POL_Pool *p, SHD_Table *shed);
/* Install the shed list on every socket if it changed since the last installation, or if
 * the last installation was refused somewhere (a retry; serving threads never retry, so a
 * refusing kernel costs them nothing). Call it periodically (the main loop's tick); any
 * thread, serialized inside. A refusal withdraws the samples (SHD_Refused). Returns the
 * number of refusals of new lists since the last call, whichever thread installed them
 * (retries that fail again are only counted in POL_ShedErrors), so a caller that logs it
 * logs once per list. */
int POL_ApplyShed(POL_Pool *p);
/* Datagrams the kernel dropped on the pool's sockets (shed filter, full buffers). */
uint64_t POL_KernelDrops(POL_Pool *p);
/* Times a socket refused a shed filter. */
uint64_t POL_ShedErrors(POL_Pool *p);

/* Start the threads, deciding with ctx. Call with the signals the main thread handles already
 * blocked (threads inherit the mask). */
bool POL_Start(POL_Pool *p, const SRV_Ctx *ctx, char *err, size_t errlen);
/* Stop and join the threads, close the sockets, free everything. */
void POL_Destroy(POL_Pool *p);
int POL_Threads(const POL_Pool *p);

/* Exclusive section: self = -1 for a thread outside the pool. */
void POL_Exclusive(POL_Pool *p, int self);
void POL_Release(POL_Pool *p);
/* Inside an exclusive section: the context every thread decides with from now on. */
void POL_SetContext(POL_Pool *p, const SRV_Ctx *ctx);
/* Inside an exclusive section: the sum of every thread's counters. */
void POL_SumCounters(POL_Pool *p, WRK_Counters *sum);
/* Inside an exclusive section: datagrams thread i has received. */
uint64_t POL_ThreadReceived(POL_Pool *p, int i);

#endif
