/* worker: one serving thread's share of the work. It owns its batch buffers, its RNG and its
 * counters, drains a socket in batches, asks the decision core (server) about each datagram,
 * stamps and sends the replies. It reads shared state only through the SRV_Ctx it is given,
 * so several workers can run on one port (SO_REUSEPORT) without sharing mutable state. */
#ifndef NTPG_WORKER_H
#define NTPG_WORKER_H

#include <stdbool.h>
#include <stdint.h>

#include "clock.h"
#include "netio.h"
#include "server.h"

typedef struct {
  uint64_t received; /* datagrams read */
  uint64_t received_bytes;
  uint64_t sent; /* replies the kernel accepted */
  uint64_t sent_bytes;
  uint64_t send_errors; /* replies lost to ENOBUFS/EAGAIN/... */
  uint64_t recv_errors;
  uint64_t oversize;       /* datagrams larger than we read: dropped */
  uint64_t blocked_larger; /* replies refused because larger than the request (never) */
  uint64_t reasons[SRV_R_COUNT];
} WRK_Counters;

/* A mode 6 request kept for the control path, which runs after the batch (see pool.h). */
#define WRK_MAX_CONTROL (2 * NIO_BATCH)
typedef struct {
  uint8_t data[PKT_MAX_LEN];
  size_t len;
  NetAddr src; /* the requester */
  NetAddr dst; /* the local address it came to */
  int ifindex;
  NTT_Now rx;
  uint32_t rflags; /* restrict flags of the source */
  const NIO_Socket *sock;
} WRK_Control;

typedef struct WRK_Worker WRK_Worker;

WRK_Worker *WRK_Create(const CLK_Clock *clk, uint64_t seed);
void WRK_Destroy(WRK_Worker *w);
/* The context to decide with; the caller keeps it alive until the next call. */
void WRK_SetContext(WRK_Worker *w, const SRV_Ctx *ctx);
/* Drain up to a bounded number of batches from s (so timers and signals are not starved). */
void WRK_Serve(WRK_Worker *w, const NIO_Socket *s);
/* Start counting a wakeup (any number of WRK_Serve calls) for WRK_OnlySamples. */
void WRK_BeginWakeup(WRK_Worker *w);
/* True if every datagram since WRK_BeginWakeup was a sample of a shed source (and there was
 * at least one): the thread may wait a little so that the next samples come in a batch. */
bool WRK_OnlySamples(const WRK_Worker *w);
const WRK_Counters *WRK_GetCounters(const WRK_Worker *w);
/* Mode 6 requests kept by the last WRK_Serve calls: *n of them; WRK_ClearControl when done. */
WRK_Control *WRK_PendingControl(WRK_Worker *w, size_t *n);
void WRK_ClearControl(WRK_Worker *w);
/* Add w's counters into sum, field by field (worker.c checks at compile time that none is
 * missed). */
void WRK_SumCounters(const WRK_Worker *w, WRK_Counters *sum);

#endif
