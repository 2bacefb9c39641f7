/* shed: which flooding sources the kernel should drop for us ("load shedding").
 *
 * A source that the rate limiter keeps dropping costs a wakeup and a receive per packet even
 * though almost all of them are thrown away. Once a source has had `rate` requests dropped
 * by the rate limit within one second, it is *shed*: its address goes into a socket filter
 * (netio's NIO_SetShedFilter, applied by pool) so that the kernel drops its packets before
 * they are queued, except 1 in 2^leak chosen at random, which still reach the daemon. Those
 * samples are what the leak would have answered anyway, so they are answered (SHD_Answer says
 * so) and the source keeps getting the same share of answers as without shedding; they also
 * keep the monitor's view of the source current. A shed source stays shed for `hold` seconds
 * after the last sample that was still over the limit (SHD_Answer renews it); SHD_Expire lets
 * it go, and then every packet reaches the daemon again. With leak 0 (answer nothing over
 * the limit) the kernel drops everything, and the source goes after `hold` seconds.
 *
 * The answer-or-not decision stays the rate limiter's: shedding only moves the drops that it
 * would make anyway into the kernel. Packets of a freshly shed source that were already
 * queued before its filter was in place are judged as usual (the kernel receive time tells
 * them apart from samples that passed the filter; SHD_Applied records when it was). A packet
 * counts as a sample only while the list is in force on every socket: when a socket refuses
 * a filter (the kernel's net.core.optmem_max is too small for it) its filter is detached and
 * every packet of the shed sources reaches the daemon, so SHD_Refused withdraws the stamps
 * and the rate limiter judges them all again, leak included (fail open, not answer-all),
 * until a later installation succeeds everywhere.
 *
 * Bounds: at most `depth` addresses (the oldest-expiring one goes for a newcomer), and a
 * fixed table of 256 candidates counting drops per one-second window (keyed hash; an active
 * candidate is not displaced by a colliding one).
 *
 * Samples still wake a serving thread one by one (about 1,250 times a second for one source
 * flooding at 20,000/s with leak 4), and an isolated wakeup costs far more than a packet in
 * a batch. So a thread whose last wakeup brought nothing but samples waits `wait_ms` before
 * it reads again (pool.c): the samples queued meanwhile are answered in one batch. This
 * delays a reply by at most wait_ms, and only for other clients of that thread while a flood
 * is the only traffic it sees (any other datagram in a wakeup cancels the wait); the time we
 * serve is unaffected (receive times are the kernel's, the transmit time is taken at the
 * send). Thread-safe: one mutex, taken only on a
 * rate-limit drop. No allocation after SHD_Create, no I/O, no clock reads: times come from
 * the caller (monotonic for windows and holds, real time for the filter's installation). */
#ifndef NTPG_SHED_H
#define NTPG_SHED_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "netaddr.h"

#define SHD_MAX_DEPTH 64

typedef struct {
  uint32_t rate;    /* rate-limit drops within one second that shed a source; 0 = off */
  uint32_t depth;   /* most shed addresses, 1..SHD_MAX_DEPTH */
  uint32_t hold_s;  /* seconds a shed source stays after its last over-limit sample */
  int leak;         /* the kernel passes 1 in 2^leak packets of a shed source; 0 = none */
  uint32_t wait_ms; /* after a wakeup that brought only samples, a serving thread waits this
                       long before reading again (samples then come in batches); 0..20 */
} SHD_Params;

typedef struct {
  uint64_t shed_now;  /* addresses in the filter list */
  uint64_t shed;      /* sources shed since start */
  uint64_t expired;   /* sources let go after their hold */
  uint64_t displaced; /* shed sources pushed out by a newcomer (list full) */
  uint64_t samples;   /* packets of shed sources that passed the filter and were answered */
  uint64_t refused;   /* installations some socket refused (SHD_Refused) */
  uint64_t generation;
} SHD_Stats;

typedef struct SHD_Table SHD_Table;

/* A table that sheds nothing until SHD_Configure; the candidate hash's SipHash key is 16
 * octets from RNG_Secure. NULL if memory runs out or the kernel gives no randomness. */
SHD_Table *SHD_CreateSecure(void);
/* The same keyed from seed: reproducible, for tests and fuzzing only. */
SHD_Table *SHD_Create(uint64_t seed);
void SHD_Destroy(SHD_Table *t);
/* Defaults: rate 1000, depth 32, hold 8 s, leak 4, wait 2 ms. */
void SHD_DefaultParams(SHD_Params *p);
/* False, with a message, if a parameter is out of range. */
bool SHD_ValidateParams(const SHD_Params *p, char *err, size_t errlen);
/* New parameters (already validated). Shed sources are kept up to the new depth (all go if
 * rate is 0); a change of the list or of leak changes the generation. */
void SHD_Configure(SHD_Table *t, const SHD_Params *p);

/* A request from src was dropped by the rate limit (monotonic now_ns; kernel receive time
 * real_ns, 0 if unknown): should it be answered after all? True if src is shed and this
 * packet is a sample that passed a filter in force on every socket: answer it (as the leak
 * would have). Otherwise false (leave it dropped) and the drop is counted, which may shed
 * src. A drop from a shed source renews its hold. t may be NULL (false). */
bool SHD_Answer(SHD_Table *t, const NetAddr *src, int64_t now_ns, int64_t real_ns);
/* Let go of sources whose hold has run out; true if the list changed. */
bool SHD_Expire(SHD_Table *t, int64_t now_ns);
/* wait_ms in ns (atomic read; cheap). */
int64_t SHD_WaitNs(const SHD_Table *t);
/* Changes whenever the filter must be rebuilt (atomic read; cheap). */
uint64_t SHD_Generation(const SHD_Table *t);
/* The list to install: up to max addresses of `family` (ADR_INET4/ADR_INET6) into out, the
 * leak exponent into *leak, the generation they belong to into *gen. Returns the count. */
size_t SHD_Snapshot(SHD_Table *t, int family, NetAddr *out, size_t max, int *leak,
                    uint64_t *gen);
/* The filters of generation gen are installed on every socket as of real time real_ns. */
void SHD_Applied(SHD_Table *t, uint64_t gen, int64_t real_ns);
/* Some socket refused the filters of the current list (and has none now): no packet counts
 * as a sample until a later SHD_Applied (the caller retries the installation). */
void SHD_Refused(SHD_Table *t);
void SHD_GetStats(SHD_Table *t, SHD_Stats *s);

#endif
