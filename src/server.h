/* server: the decision "what do we do with this datagram", as a pure function of
 * (policy, tables, packet, now, rng) that returns an action, a reason and, for a reply, the
 * reply bytes. No I/O, no logging, no clock reads, no allocation. The I/O edge (worker) counts
 * every reason and has the transmit time stamped as late as possible (SRV_Finish). */
#ifndef NTPG_SERVER_H
#define NTPG_SERVER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "keys.h"
#include "monitor.h"
#include "netaddr.h"
#include "ntscookie.h"
#include "ntsef.h"
#include "ntptime.h"
#include "restrict.h"
#include "rng.h"
#include "shed.h"
#include "sysvars.h"

/* Why a datagram got the answer it got. Every value is a counter; names in SRV_ReasonName. */
#define SRV_REASONS(X)                                                                        \
  X(SERVED, "served")                    /* mode 4 reply sent */                              \
  X(SERVED_AUTH, "served_auth")          /* mode 4 reply MACed with the request's key */      \
  X(SERVED_LEAK, "served_leak")          /* over the limits, answered by the leak */          \
  X(CRYPTO_NAK, "crypto_nak")            /* MAC we cannot check: crypto-NAK sent */           \
  X(KOD_RATE, "kod_rate")                /* RATE KoD sent */                                  \
  X(KOD_DENY, "kod_deny")                /* DENY KoD sent */                                  \
  X(KOD_RSTR, "kod_rstr")                /* RSTR KoD sent */                                  \
  X(KOD_CRYP, "kod_cryp")                /* CRYP KoD sent */                                  \
  X(DROP_EMPTY, "dropped_empty")         /* zero-length datagram */                           \
  X(DROP_PORT0, "dropped_port0")         /* source port 0 */                                  \
  X(DROP_MCAST_SRC, "dropped_mcast_src") /* multicast source address */                       \
  X(DROP_CTL_RESPONSE,                                                                        \
    "dropped_ctl_response")          /* mode 6/7 response/error/fragment (bug 1331) */        \
  X(DROP_IGNORE, "dropped_ignore")   /* restrict ignore */                                    \
  X(DROP_NOQUERY, "dropped_noquery") /* mode 6/7 from a noquery source */                     \
  X(DROP_MODE7, "dropped_mode7")     /* mode 7 request: never answered */                     \
  X(DROP_MODE6, "dropped_mode6")     /* mode 6 request: control not served */                 \
  X(CONTROL, "control_requests")     /* mode 6 request handed to the control path */          \
  X(DROP_CTL_LIMITED, "dropped_ctl_limited") /* mode 6 over its per-source or total limit */  \
  X(DROP_SHORT, "dropped_short")             /* time packet shorter than 48 octets */         \
  X(DROP_VERSION, "dropped_version")         /* version 0 or > 4, or not 4 under `version` */ \
  X(DROP_MODE0, "dropped_mode0")             /* mode 0 (reserved) */                          \
  X(DROP_RESPONSE, "dropped_response")       /* unsolicited mode 2/4/5: never answered */     \
  X(DROP_SYMMETRIC, "dropped_symmetric")     /* mode 1: no symmetric service */               \
  X(DROP_TRAILER, "dropped_trailer")         /* malformed extension fields / MAC framing */   \
  X(DROP_NOSERVE, "dropped_noserve")         /* restrict noserve */                           \
  X(DROP_NOTRUST, "dropped_notrust")         /* restrict notrust without a good MAC */        \
  X(DROP_LIMITED, "dropped_limited")         /* over the discard limits, no KoD due */        \
  X(DROP_KOD_LIMIT, "dropped_kod_limit")     /* a KoD was due but the KoD limit refused it */ \
  X(DROP_FLAKE, "dropped_flake")             /* restrict flake */                             \
  X(DROP_SIGN, "dropped_sign_failed")        /* the reply's MAC or NTS seal failed */         \
  X(SERVED_NTS, "served_nts")              /* reply with an NTS authenticator and cookies */  \
  X(KOD_NTSN_COOKIE, "kod_ntsn_cookie")    /* NTSN KoD: cookie unknown/expired/tampered */    \
  X(KOD_NTSN_AUTH, "kod_ntsn_auth")        /* NTSN KoD: the authenticator did not verify */   \
  X(DROP_NTS_COOKIE, "dropped_nts_cookie") /* as kod_ntsn_cookie, the KoD limit refused */    \
  X(DROP_NTS_AUTH, "dropped_nts_auth")     /* as kod_ntsn_auth, the KoD limit refused */      \
  X(DROP_NTS_MALFORMED, "dropped_nts_malformed") /* NTS extension fields break RFC 8915 */

typedef enum {
#define SRV_ENUM(id, name) SRV_R_##id,
  SRV_REASONS(SRV_ENUM)
#undef SRV_ENUM
      SRV_R_COUNT
} SRV_Reason;

/* SRV_CONTROL: a mode 6 request for the control path (control.h); nothing is in out. */
typedef enum { SRV_DROP = 0, SRV_REPLY, SRV_KOD, SRV_CONTROL } SRV_Action;

/* Why a datagram got the answer it got. Every value is a counter; names in SRV_ReasonName.
 * Order of the checks in SRV_Decide (cheap first; docs/access-control.md):
 *   empty / port 0 / multicast source -> mode 6/7 response or error (bug 1331) -> restrict
 *   match: ignore -> mode 7 (noquery, never served) / mode 6 (noquery, control) -> header
 *   length and version -> mode (only 3 is served) -> extension fields / MAC framing ->
 *   flake -> noserve (DENY) -> version flag (RSTR) -> notrust without MAC (DENY) ->
 *   monitor and rate limit (RATE) -> MAC check (crypto-NAK / CRYP) -> reply.
 * NTS (RFC 8915 section 5, with ctx->nts_keys and rq->nts): the NTS fields are parsed with
 * the other extension fields (malformed: dropped); a well-formed NTS request counts as
 * authenticated for notrust; after the rate limit the cookie is opened and the
 * authenticator verified (the expensive part), and a failure is an NTSN KoD (stratum 0,
 * the Unique Identifier echoed, no authenticator) under the same KoD limits; a good one is
 * answered with the identifier and an authenticator holding fresh cookies, sealed in
 * SRV_Finish after the transmit timestamp. RATE/DENY/RSTR KoDs to NTS requests are the
 * plain ones (an NTS client ignores them; authenticating them would put the crypto before
 * the rate limit). Without nts_keys, NTS fields are unknown fields and ignored.
 * Every KoD passes a per-source limit (the monitor's discard algorithm) and the global
 * KoD limit (MON_TakeKod); a refused KoD is counted as dropped_kod_limit. */

/* The system variables our replies carry (sysvars.h), under the decision core's name. */
typedef SYS_Vars SRV_System;

/* What the decision needs from configuration (copied in; no pointer into CNF_Config). */
typedef struct {
  int8_t min_poll; /* replies advertise max(request poll, this): discard average */
  int8_t max_poll;
  bool monitor; /* record every time request in the monitor (`enable monitor`) */
} SRV_Policy;

/* A leap second smeared into the time we serve (ntpd's `leapsmearinterval`): the receive
 * and transmit timestamps of replies get LSC_SmearOffset(leap, dir, interval, t). */
typedef struct {
  int64_t leap; /* POSIX time the leap takes effect */
  int dir;      /* +1 inserted, -1 deleted */
  double interval;
} SRV_Smear;

/* Everything a decision reads. rst, mon and keys may be NULL: no restrictions (every
 * source gets no flags), no monitoring and no limits at all, no keys. The monitor is the
 * only table a decision writes to (through its own locks). */
typedef struct {
  const SRV_Policy *policy;
  const SRV_System *sys;
  const RST_List *rst;
  MON_Table *mon;
  const KEY_Table *keys;
  MON_Table *ctl_mon;     /* mode 6 limits per source and in total; NULL: mode 6 not served */
  SHD_Table *shed;        /* load shedding (shed.h): rate-limit drops are reported to it, and a
                             shed source's samples are answered as the leak; NULL: none */
  const SRV_Smear *smear; /* a leap being smeared into served time; NULL: none */
  NCK_Store *nts_keys;    /* NTS cookie master keys (the NTS-KE server publishes them);
                             NULL: NTS is not served */
} SRV_Ctx;

/* A serving thread's NTS state: its AES-SIV context, its copy of the cookie master keys
 * and a pool of random octets from the kernel's CSPRNG for the nonces. The edge calls
 * SRV_NtsPrepare before each batch (it may read the CSPRNG); the decision only takes from
 * the pool, so it stays free of I/O. */
typedef struct SRV_Nts SRV_Nts;
SRV_Nts *SRV_NtsCreate(void); /* NULL if memory or AES-SIV is missing */
void SRV_NtsDestroy(SRV_Nts *n);
/* Refresh the keys from store (never waits; NULL: nothing) and refill the pool for a
 * whole batch. */
void SRV_NtsPrepare(SRV_Nts *n, NCK_Store *store);

typedef struct {
  const uint8_t *data;
  size_t len;
  NetAddr src;  /* source address and port */
  NTT_Now rx;   /* receive time (kernel timestamp when available) */
  SRV_Nts *nts; /* the serving thread's NTS state; NULL: NTS is not served */
} SRV_Request;

/* What SRV_Decide says besides the action. */
typedef struct {
  size_t len;         /* octets in out (SRV_REPLY/SRV_KOD) */
  bool stamp;         /* a normal reply: the edge writes the transmit time (SRV_Finish) */
  uint32_t key_id;    /* the reply is to be MACed with this key after stamping; 0 = none */
  uint8_t digest_len; /* ... with this many digest octets (the request's) */
  uint32_t rflags;    /* restrict flags of the source (RST_IGNORE for a multicast source) */
  bool shed_sample;   /* a shed source's packet that passed the kernel filter (shed.h) */
  SRV_Reason why;
  SRV_Nts *nts;     /* an NTS reply: SRV_Finish seals it with this thread state ... */
  NEF_Pending seal; /* ... as laid out here (holds the S2C key) */
} SRV_Verdict;

/* Decide. On SRV_REPLY/SRV_KOD, out (at least PKT_MAX_LEN octets) holds v->len octets,
 * never more than rq->len, also after SRV_Finish adds a MAC. A KoD is complete; a reply
 * waits for SRV_Finish. rng: the caller's generator (flake, low timestamp bits). */
SRV_Action SRV_Decide(const SRV_Ctx *ctx, const SRV_Request *rq, RNG_State *rng, uint8_t *out,
                      SRV_Verdict *v);
/* Complete a reply just before it is sent: write the transmit timestamp (with random bits
 * below our precision) if v->stamp, then the MAC if v->key_id or the NTS authenticator if
 * v->nts. Returns the final length, or 0 if the MAC or the seal could not be made (the
 * reply must then not be sent). */
size_t SRV_Finish(const SRV_Ctx *ctx, const SRV_Verdict *v, uint8_t *out, size_t cap,
                  const struct timespec *now, RNG_State *rng);
const char *SRV_ReasonName(SRV_Reason r);

/* The state of a server that has never synchronized: LI 3, stratum 16, refid INIT. */
void SRV_SystemUnsynchronized(SRV_System *s, int8_t precision);
/* Synchronized to a local reference (local clock / orphan): stratum, refid, reference time. */
void SRV_SystemLocal(SRV_System *s, int8_t precision, uint8_t stratum, uint32_t refid,
                     const NTT_Now *now);

#endif
