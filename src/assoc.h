/* assoc: one client association's on-wire state (RFC 5905 sections 8, 9 and 13): when to
 * poll, the request it sends, the checks a reply must pass, the sample it yields, and how it
 * obeys Kiss-o'-Death (docs/client.md). Pure: time and randomness are handed in, nothing is
 * logged, no socket is touched, nothing is allocated after ASC_Create.
 *
 * The I/O edge drives it:
 *   ASC_NextPollTime(a) -> at that monotonic time: ASC_BuildRequest(a, now, keys, rnd, out,
 *   &len); send out[0..len) from the association's own socket (fresh random source port,
 *   connected to the server); optionally ASC_SetTransmitTime with the real send time.
 *   On a datagram on that socket: ASC_ProcessReply(a, bytes, len, from, rx, keys, &res) ->
 *   an ASC_Outcome; count it, log KoDs rate-limited (res.log says which are new), and on
 *   ASC_SAMPLE with res.filter == DSC_FILTER_NEW run DSC_Update over every ASC_GetCandidate.
 *
 * Requests are data-minimized: every field zero except version, mode, poll, precision 0x20
 * and a transmit timestamp of 64 random bits (the cookie); the real send time stays here.
 * Only a reply from the server's address and port whose origin equals the outstanding cookie
 * (and whose MAC verifies when the association has a key, or whose NTS authenticator the
 * edge verified for an NTS association) has any effect at all, and it
 * consumes the cookie. Everything else is dropped with no side effect: no timer, no reach,
 * no poll change (CVE-2015-7704, CVE-2015-8138, CVE-2020-11868). */
#ifndef NTPG_ASSOC_H
#define NTPG_ASSOC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "config.h"
#include "discipline.h"
#include "keys.h"
#include "netaddr.h"
#include "ntptime.h"
#include "packet.h"

#define ASC_UNREACH 10  /* unanswered polls before the poll interval starts to grow */
#define ASC_IBURST 6    /* packets in an initial burst */
#define ASC_BURST 8     /* packets in a burst (`burst`) */
#define ASC_BURST_GAP 2 /* s between burst packets */

typedef struct {
  CNF_AssocType type;   /* a pool member is replaced, not backed off, when refused */
  NetAddr addr;         /* the server: address and port (resolved by the caller) */
  int minpoll, maxpoll; /* log2 s */
  uint32_t key;         /* 0: unauthenticated; else replies must carry a MAC with this key */
  bool nts;             /* NTS (ntsassoc.h): only replies the edge authenticated count */
  int version;          /* 1..4: version we send */
  unsigned options;     /* CNF_AO_* */
  int precision_log2;   /* our clock's precision */
  /* packet tests (tos) */
  double maxdist;     /* s: replies with a larger root distance are dropped, 1.5 */
  int floor, ceiling; /* accepted strata: floor <= stratum < ceiling, 1 and 15 */
  double phi;         /* s/s: dispersion growth of samples and filter (tinker), DSC_PHI */
  /* Kiss-o'-Death policy (defaults and reasons in docs/client.md) */
  int deny_backoff_min; /* log2 s: first silence after DENY/RSTR is max(poll, this), 10 */
  int deny_backoff_max; /* log2 s: the doubling stops here, 17 (36.4 h) */
  int rate_poll_cap;    /* log2 s: RATE raises the poll at most to this, 10 */
  int clean_run;        /* good replies that undo one RATE step / end the DENY doubling, 8 */
} ASC_Params;

/* Defaults for everything (version 4, poll 6..10, policy above) and the given address. */
void ASC_DefaultParams(const NetAddr *addr, ASC_Params *out);
/* From a configured server/pool/peer line: addr is its resolved address (port included). */
void ASC_ParamsFromConfig(const CNF_Assoc *ca, const CNF_Tos *tos, const NetAddr *addr,
                          int precision_log2, ASC_Params *out);

/* Randomness for cookies and poll jitter: fill buf with len unpredictable octets. The daemon
 * passes {ASC_SecureFill, NULL} (the kernel CSPRNG: rng.h's fast generator is not for
 * nonces); tests pass a seeded generator. */
typedef struct {
  bool (*fill)(void *ctx, void *buf, size_t len);
  void *ctx;
} ASC_Random;
bool ASC_SecureFill(void *ctx, void *buf, size_t len);

/* Why a reply had the effect it had. Every value is a counter; names in ASC_OutcomeName. */
#define ASC_OUTCOMES(X)                                                                       \
  X(SAMPLE, "sample")              /* accepted: res holds the sample */                       \
  X(KOD_DENY, "kod_deny")          /* DENY/RSTR honoured: silent for res.backoff s */         \
  X(KOD_RATE, "kod_rate")          /* RATE honoured: poll floor now res.poll_floor */         \
  X(KOD_IGNORED, "kod_ignored")    /* other kiss code (X***, unknown...): no action */        \
  X(DROP_SOURCE, "dropped_source") /* not from the server's address and port */               \
  X(DROP_SHORT, "dropped_short")   /* under 48 octets */                                      \
  X(DROP_FORMAT, "dropped_format") /* malformed extension fields / MAC framing */             \
  X(DROP_MODE, "dropped_mode")     /* not a mode-4 reply of version 1..4 */                   \
  X(DROP_ZERO_ORIGIN, "dropped_zero_origin") /* origin 0: never a reply to us */              \
  X(DROP_NOT_PENDING, "dropped_not_pending") /* no request outstanding (late or replayed) */  \
  X(DROP_BOGUS_ORIGIN, "dropped_bogus_origin") /* origin is not our cookie */                 \
  X(DROP_DUPLICATE, "dropped_duplicate") /* same transmit timestamp as the last reply */      \
  X(DROP_AUTH, "dropped_auth")           /* keyed: no MAC, other key, bad MAC, crypto-NAK */  \
  X(DROP_UNSYNC, "dropped_unsync")       /* server unsynchronized or stratum out of range */  \
  X(DROP_HEADER, "dropped_header")     /* zero timestamps, reference time after transmit, */  \
                                       /* root delay/2 + dispersion >= 16 s */                \
  X(DROP_DISTANCE, "dropped_distance") /* root distance above maxdist */

typedef enum {
#define ASC_ENUM(id, name) ASC_##id,
  ASC_OUTCOMES(ASC_ENUM)
#undef ASC_ENUM
      ASC_OUTCOME_COUNT
} ASC_Outcome;

typedef struct {
  /* ASC_SAMPLE */
  double offset, delay, disp; /* s: the new sample (not yet filtered) */
  double root_delay, root_disp;
  uint8_t stratum, leap;
  int8_t poll;             /* the server's poll field */
  uint32_t refid;          /* the server's refid */
  NTT_Stamp reftime;       /* the server's reference time */
  int64_t mono_ns;         /* receive time */
  DSC_FilterResult filter; /* DSC_FILTER_NEW: run the selection (DSC_Update) */
  /* ASC_KOD_* */
  uint32_t kiss;  /* the kiss code as in the refid field (PKT_RefidToCode) */
  bool log;       /* first KoD with this code since the last good reply */
  double backoff; /* s of silence (ASC_KOD_DENY) */
  int poll_floor; /* log2 s, new lowest poll (ASC_KOD_RATE) */
} ASC_Result;

typedef enum {
  ASC_TX_SEND = 0,  /* out holds *len octets to send now */
  ASC_TX_NOT_DUE,   /* too early, or silent after a DENY/RSTR */
  ASC_TX_NO_KEY,    /* keyed association but the key is missing: nothing to send */
  ASC_TX_NO_RANDOM, /* the random source failed: nothing to send */
} ASC_TxStatus;

/* What an association looks like from outside (ntpq-style), for tests and monitoring. */
typedef struct {
  uint8_t reach;
  int poll;         /* effective poll exponent of the next regular interval */
  int hpoll;        /* host poll (system poll, raised while unreachable) */
  int rate_floor;   /* lowest poll after RATE KoDs (minpoll when none) */
  unsigned unreach; /* regular polls in a row with reach == 0 */
  int burst_left;
  unsigned deny_count;     /* DENY/RSTR since the last good service */
  bool denied;             /* refused: unselectable until a good reply */
  int64_t silent_until_ns; /* monotonic end of the current DENY/RSTR back-off (0: none) */
  bool pending;            /* a request is outstanding */
  bool replace;            /* ASC_NeedsReplacement */
  uint32_t last_kiss;
} ASC_Status;

typedef struct ASC_Assoc ASC_Assoc;

/* The first poll is due within a second of now. NULL if memory is short. */
ASC_Assoc *ASC_Create(const ASC_Params *p, const NTT_Now *now, const ASC_Random *rnd);
void ASC_Destroy(ASC_Assoc *a);
const ASC_Params *ASC_GetParams(const ASC_Assoc *a);

/* Monotonic ns when ASC_BuildRequest next has something to send. */
int64_t ASC_NextPollTime(const ASC_Assoc *a);
/* Build the next request into out (at least PKT_MAX_LEN octets) and advance the poll
 * schedule (reach, unreachability, bursts). */
ASC_TxStatus ASC_BuildRequest(ASC_Assoc *a, const NTT_Now *now, const KEY_Table *keys,
                              const ASC_Random *rnd, uint8_t *out, size_t *len);
/* T1 of the outstanding request read again by the caller as late as it can before the send
 * (after building and signing); T1 defaults to now->real of ASC_BuildRequest. Ignored with
 * nothing pending or once a kernel transmit timestamp was taken. */
void ASC_SetTransmitTime(ASC_Assoc *a, const struct timespec *t1);
/* The kernel's transmit timestamp (SO_TIMESTAMPING, software) of a request sent from this
 * association's socket, when the socket gives one: it replaces T1 (everything between the
 * reading before the send and the datagram leaving, the system call, the stack, a
 * preemption, would otherwise count as outbound delay and half of it as offset). Taken only
 * with a request pending, once per request, and only when it is not before T1 as set and
 * less than ASC_TXTS_MAX s after it: a stale timestamp of an earlier request is refused.
 * True when it was taken. The on-wire transmit timestamp (the cookie the origin check
 * compares) is not touched. */
bool ASC_SetKernelTransmitTime(ASC_Assoc *a, const struct timespec *ts);
#define ASC_TXTS_MAX 0.1
/* Run the reply tests. from: source address and port; rx: receive time (kernel timestamp).
 * res is always filled (zeroed for drops). */
ASC_Outcome ASC_ProcessReply(ASC_Assoc *a, const uint8_t *buf, size_t len, const NetAddr *from,
                             const NTT_Now *rx, const KEY_Table *keys, ASC_Result *res);
/* The same for an NTS association (ASC_Params.nts): authentic says whether NTA_Open
 * authenticated the datagram (NTA_RX_AUTH). Anything else is ASC_DROP_AUTH at the point
 * where a MAC would be checked, so an unauthenticated KoD has no effect; an authenticated
 * DENY/RSTR or RATE is obeyed as from any server. The NTS fields stand where a MAC would. */
ASC_Outcome ASC_ProcessNtsReply(ASC_Assoc *a, const uint8_t *buf, size_t len,
                                const NetAddr *from, const NTT_Now *rx, bool authentic,
                                ASC_Result *res);
const char *ASC_OutcomeName(ASC_Outcome o);

/* The system poll (DSC_GetPoll) after each discipline update; reschedules the next poll. */
void ASC_SetPoll(ASC_Assoc *a, int poll, const NTT_Now *now);
/* The discipline slewed our clock by `slewed` s (DSC_Tick's result): keep stored samples
 * consistent with the clock as it is now. */
void ASC_AdjustOffsets(ASC_Assoc *a, double slewed);
/* After the clock was stepped by `stepped` s (DSC_GetStepped): the stored samples are moved
 * by the step, as ASC_AdjustOffsets does for a slew, so the source stays selectable (a
 * cleared filter needs four replies before its root distance is below maxdist); the
 * outstanding request is dropped, its T1 was read on the clock before the step. Nothing
 * happens when stepped is 0 (the driver applies nothing under -x). */
void ASC_AfterStep(ASC_Assoc *a, double stepped);
/* This association as a selection candidate; id is the caller's handle. False when it has
 * no sample to offer (out is filled anyway and is then unfit). */
bool ASC_GetCandidate(const ASC_Assoc *a, const NTT_Now *now, int id, DSC_Candidate *out);
/* A pool member that refused us (DENY/RSTR) or stopped answering (ASC_UNREACH polls): the
 * pool manager should replace it now with another address. */
bool ASC_NeedsReplacement(const ASC_Assoc *a);
void ASC_GetStatus(const ASC_Assoc *a, ASC_Status *out);

#endif
