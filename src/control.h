/* control: the answer to an NTP mode 6 (control, RFC 9327) request, as stock ntpsec `ntpq`
 * asks for it: rv/readvar (system and association variables), as/associations/peers
 * (READSTAT + READVAR), sysinfo, sysstats, monstats, iostats, authinfo (READVAR of named
 * system variables), mrulist (REQ_NONCE + READ_MRU), reslist (READ_ORDLIST_A) and :config
 * (CONFIGURE, through a callback). Traps and writes are refused. The wire format lives in
 * ctlwire.h.
 *
 * Pure: CTL_Handle is a function of (context, request, source, restrict flags, now) that
 * returns a reason and fills the caller's CTL_Output with the datagrams to send. It does no
 * I/O, reads no clock, logs nothing, keeps no state of its own and allocates nothing; the
 * only side effects are the caller's configure callback and the monitor table's walks
 * (MON_Walk: where each MRU listing in progress has got to). Any number of threads may
 * call it at once, each with its own CTL_Output. The code is in two files: control.c
 * (dispatch, authentication, variables, reslist, :config) and ctlmru.c (nonces, the MRU
 * list; ctlmru.h describes its paging).
 *
 * What the caller (the I/O edge) does around it:
 *   - drop modes other than 6 before it, and mode 7 always (RFC 8633);
 *   - match the restrict list; drop `ignore` and `noquery` sources (CTL_Handle drops them
 *     too, defensively) and pass the flags in (RST_NOMODIFY, RST_NOTRAP, RST_NOMRULIST);
 *   - rate-limit mode 6 per source (e.g. MON_Check on its own monitor table, with
 *     RST_LIMITED forced on), before calling CTL_Handle;
 *   - send out->wire.buf[i] (out->wire.len[i] octets) for i < out->wire.count, in order,
 *     to the source, from the address the request came to; count the reason.
 *
 * Guard rails:
 *   - Requests with R, E or M set or a non-zero offset, shorter than 12 octets, or of a
 *     version outside 1..4 are never answered (NTP bug 1331).
 *   - Amplification bound: a reply to a request that is not authenticated (no MAC that
 *     verifies with a trusted key) and does not come from 127.0.0.1 or ::1 totals at most
 *     max(CTL_UNAUTH_FLOOR, CTL_UNAUTH_FACTOR x request octets) octets: one datagram (480
 *     octets, 40x a minimal 12-octet request) or 3x the request, whichever is larger. A
 *     reply that would be larger is replaced by a 12-octet CTW_ERR_PERMISSION error. The
 *     MRU list is the exception: it is sent (up to `frags` datagrams) only to a source that
 *     has echoed a nonce we sent to its address, which proves it receives there; without a
 *     valid nonce the request is dropped silently. Error replies are never larger than the
 *     request.
 *   - Every copy of request text is bounded; names and values longer than 127 octets are
 *     refused.
 *
 * Authentication: a request with a MAC (key id + digest after the data padded to 8 octets)
 * is verified with ctx->verify (KEY_Verify when NULL) against ctx->keys. Replies to a
 * request that verified are signed with the same key (ctx->sign, KEY_Sign when NULL).
 * CONFIGURE and READ_ORDLIST_A need the key to be ctx->control_key (CTW_ERR_PERMISSION).
 * KEY_Verify/KEY_Sign only handle MACs that start at octet 48 or later, i.e. requests and
 * replies with at least 36 octets of (padded) data; mode 6 MACs may start at octet 16.
 * Callers should pass MAC functions without that minimum (see docs/control.md). */
#ifndef NTPG_CONTROL_H
#define NTPG_CONTROL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "ctlwire.h"
#include "keys.h"
#include "monitor.h"
#include "netaddr.h"
#include "ntptime.h"
#include "restrict.h"
#include "server.h"

#define CTL_UNAUTH_FLOOR (CTW_HEADER_LEN + CTW_MAX_DATA) /* 480 octets: one full datagram */
#define CTL_UNAUTH_FACTOR 3
#define CTL_NONCE_LIFETIME 16 /* s a nonce stays valid (ntpd's NONCE_TIMEOUT) */
#define CTL_MRU_ROW_LIMIT 256 /* most `limit=` rows (ntpd) */
#define CTL_MRU_FRAGS_LIMIT                                                                   \
  128                        /* `frags=` above this is CTW_ERR_BADVALUE (ntpd); above         \
                                CTW_MAX_FRAGS it is served as CTW_MAX_FRAGS */
#define CTL_CONFIG_REPLY 256 /* octets of configure reply text */

/* Why a request got the answer it got. Every value is a counter; names in CTL_ReasonName. */
#define CTL_REASONS(X)                                                                        \
  X(ANSWERED, "answered")                   /* reply sent */                                  \
  X(CONFIG_APPLIED, "config_applied")       /* configure callback succeeded, reply sent */    \
  X(CONFIG_FAILED, "config_failed")         /* configure callback failed, its text sent */    \
  X(ERR_FORMAT, "error_format")             /* bad length/count: CTW_ERR_BADFMT sent */       \
  X(ERR_OPCODE, "error_opcode")             /* unknown/unimplemented opcode: BADOP sent */    \
  X(ERR_ASSOC, "error_assoc")               /* unknown association: BADASSOC sent */          \
  X(ERR_UNKNOWNVAR, "error_unknownvar")     /* unknown variable or list: UNKNOWNVAR sent */   \
  X(ERR_BADVALUE, "error_badvalue")         /* bad parameter value: BADVALUE sent */          \
  X(REFUSED_AUTH, "refused_auth")           /* needs the control key: PERMISSION sent */      \
  X(REFUSED_NOMODIFY, "refused_nomodify")   /* restrict nomodify: PERMISSION sent */          \
  X(REFUSED_TRAP, "refused_trap")           /* traps are not implemented: BADOP sent */       \
  X(REFUSED_NOTRAP, "refused_notrap")       /* trap from a notrap source: PERMISSION sent */  \
  X(REFUSED_NOMRULIST, "refused_nomrulist") /* restrict nomrulist: PERMISSION sent */         \
  X(REFUSED_SIZE, "refused_size")           /* over the amplification bound: PERMISSION */    \
  X(DROP_SHORT, "dropped_short")            /* shorter than 12 octets */                      \
  X(DROP_MODE, "dropped_mode")              /* not mode 6 */                                  \
  X(DROP_RESPONSE, "dropped_response")      /* R/E/M set or offset != 0: never answered */    \
  X(DROP_VERSION, "dropped_version")        /* version outside 1..4 */                        \
  X(DROP_NOQUERY, "dropped_noquery")        /* restrict ignore/noquery */                     \
  X(DROP_NONCE, "dropped_nonce")            /* MRU request without a valid nonce */

typedef enum {
#define CTL_ENUM(id, name) CTL_R_##id,
  CTL_REASONS(CTL_ENUM)
#undef CTL_ENUM
      CTL_R_COUNT
} CTL_Reason;

/* One association as ntpq shows it (rv &N, peers, associations). Times are seconds unless
 * said otherwise; stamps are NTP timestamps. Zero-initialise and fill what is known. */
typedef struct CTL_Peer {
  uint16_t associd;      /* 1..65535, unique */
  bool configured;       /* from the configuration (status "conf yes") */
  bool authentic;        /* last packet authenticated */
  bool nts;              /* NTS source: authentication enabled without a key id */
  bool broadcast;        /* a broadcast/multicast association */
  uint8_t select;        /* CTW_SEL_*: the tally code of ntpq -p */
  uint8_t num_events;    /* 0..15 */
  uint8_t last_event;    /* PEVNT_* low 4 bits */
  NetAddr srcadr;        /* server address and port (ADR_NONE: not resolved yet) */
  NetAddr dstadr;        /* our local address and port (ADR_NONE: unknown) */
  const char *hostname;  /* as configured (srchost); NULL for none; valid during the call */
  uint8_t leap, stratum; /* as received (stratum 16 or 0 = unsynchronized) */
  uint8_t hmode, pmode;  /* our mode (3 = client) and the peer's (4 = server) */
  int8_t hpoll, ppoll;   /* log2 s: our poll, the peer's */
  int8_t precision;      /* log2 s */
  double rootdelay, rootdisp; /* s, as received */
  uint32_t refid;             /* as received (the four octets read big-endian) */
  NTT_Stamp reftime;          /* as received */
  NTT_Stamp rec, xmt;         /* when we last received from it; its last transmit time */
  uint8_t reach;              /* reachability register */
  uint32_t unreach;           /* polls without an answer */
  uint32_t headway;           /* s of throttle (0 when not limited) */
  uint16_t flash;             /* TEST* bits of the last packet */
  uint32_t keyid;             /* 0 = none */
  double offset, delay, disp, jitter;              /* s */
  double filtdelay[8], filtoffset[8], filtdisp[8]; /* s, newest first */
  uint64_t received, sent, badauth, bogusorg, oldpkt, seldisp, selbroken;
  uint32_t timer;     /* s until the next poll */
  uint32_t timerec;   /* s since the last packet from it */
  uint32_t timereach; /* s since the reachability last changed */
  /* KoDs received by kiss code (for the metrics endpoint, not mode 6) */
  uint64_t kod_rate, kod_deny, kod_rstr, kod_other;
} CTL_Peer;

/* Counters ntpq's sysstats, iostats and authinfo ask for, by variable name. Whatever the
 * caller does not track stays 0. "_r" variants (ntpsec: since start, not since reset) are
 * answered with the same values, since we never reset. */
typedef struct {
  uint64_t uptime; /* s since start, rounded up (never 0): ss_uptime, ss_reset, iostats_reset,
                      authreset, ... */
  /* sysstats */
  uint64_t received;                             /* ss_received: NTP packets received */
  uint64_t thisver;                              /* ss_thisver: version 4 */
  uint64_t oldver;                               /* ss_oldver: versions 1..3 */
  uint64_t ver1, ver1client, ver1zero, ver1symm; /* ss_ver1*: version 1 detail */
  uint64_t badformat;                            /* ss_badformat: bad length or format */
  uint64_t badauth;                              /* ss_badauth: authentication failed */
  uint64_t declined;   /* ss_declined: e.g. dropped responses, unsupported modes */
  uint64_t restricted; /* ss_restricted: dropped by restrict */
  uint64_t limited;    /* ss_limited: rate limited */
  uint64_t kodsent;    /* ss_kodsent: KoDs sent */
  uint64_t processed;  /* ss_processed: answered for time */
  uint64_t numctlreq;  /* ss_numctlreq: mode 6 requests */
  /* iostats */
  uint64_t io_received, io_sent, io_sendfailed, io_dropped, io_ignored;
  uint64_t io_wakeups, io_goodwakeups;
  uint64_t total_rbuf, free_rbuf, used_rbuf, rbuf_lowater;
  /* authinfo (authkeys comes from KEY_Count) */
  uint64_t authklookups, authknotfound;
  uint64_t authencrypts, authdigestencrypts, authcmacencrypts;
  uint64_t authdecrypts, authdigestdecrypts, authdigestfails, authcmacdecrypts, authcmacfails;
} CTL_Stats;

/* An extra readable system variable (e.g. a per-reason counter from SRV_ReasonName). A
 * counter with the name of a built-in variable replaces it. Never in the default list. */
typedef struct CTL_Counter {
  const char *name;
  uint64_t value;
} CTL_Counter;

/* Apply runtime configuration text (one or more ntp.conf lines, NUL-terminated, as sent by
 * `ntpq :config`). Write the message for ntpq into reply (replycap octets, always room for
 * the terminator); an empty reply means "Config Succeeded" on success, "Config Failed"
 * otherwise. Called synchronously from CTL_Handle, only for an authenticated request from
 * a source without nomodify. */
typedef bool (*CTL_ConfigureFn)(void *arg, const char *text, char *reply, size_t replycap);

/* Everything CTL_Handle reads. Filled by the caller; borrowed for the duration of the call. */
typedef struct CTL_Ctx {
  /* system (rv) */
  const SRV_System *sys;         /* required: leap, stratum, precision, refid, times */
  uint8_t sys_source;            /* CTW_SST_TS_*: clock source in the system status word */
  uint8_t sys_event_count;       /* 0..15 */
  uint8_t sys_last_event;        /* 0..15 */
  uint16_t sys_peer;             /* association id of the system peer; 0 = none */
  int8_t poll, minpoll;          /* log2 s: tc, mintc */
  double offset;                 /* s, last clock offset */
  double frequency_ppm;          /* frequency correction */
  double sys_jitter, clk_jitter; /* s */
  double clk_wander_ppm;
  int tai;                /* TAI-UTC from the leap-second list; 0: no list (not shown) */
  int64_t leapsec;        /* POSIX time of the list's latest leap (ntpd's `leapsec`) */
  int64_t leap_expire;    /* POSIX time the list expires (`expire`) */
  const char *version;    /* e.g. "ntpgated 0.1.0"; NULL: "ntpgated" */
  const char *processor;  /* uname machine, e.g. "x86_64"; NULL: omitted */
  const char *system;     /* uname sysname, e.g. "Linux"; NULL: omitted */
  const char *release;    /* uname release; NULL: omitted */
  const CTL_Stats *stats; /* NULL: all zero */
  const CTL_Counter *counters;
  size_t n_counters;
  /* associations */
  const CTL_Peer *peers;
  size_t n_peers;
  /* monitor table for mrulist/monstats; NULL: empty list, mru_enabled=0 */
  MON_Table *mon; /* the MRU list needs only this, nonce_secret and sys->leap (see ctlserve) */
  const MON_Params *mon_params; /* NULL: mru_mindepth/mru_maxage reported as 0 */
  /* restrict list for reslist; NULL: empty */
  const RST_List *rst;
  const uint64_t *rst_hits; /* hit counter per RST_Get index, RST_Count long; NULL: 0 */
  /* authentication */
  const KEY_Table *keys; /* NULL: no keys, nothing authenticates */
  uint32_t control_key;  /* `controlkey`; 0: none, so CONFIGURE/reslist are refused */
  CTW_VerifyFn verify;   /* NULL: KEY_Verify */
  CTW_SignFn sign;       /* NULL: KEY_Sign */
  /* The request came over the daemon's root-only local control socket: it has the control
   * key's rights (CONFIGURE, reslist) without a MAC, and no amplification bound. */
  bool local_admin;
  /* MRU nonces: a secret random key (e.g. RNG_Secure at start; replace it to revoke) */
  uint8_t nonce_secret[16];
  /* runtime configuration; NULL: CONFIGURE answers CTW_ERR_BADOP */
  CTL_ConfigureFn configure;
  void *configure_arg;
} CTL_Ctx;

/* What CTL_Handle produces. Large (about 78 KiB): allocate one per thread and reuse it. */
typedef struct {
  CTW_Datagrams wire; /* the datagrams to send; wire.count == 0: send nothing */
  /* scratch (internal) */
  MON_WalkBuf walk;
} CTL_Output;

/* Answer one mode 6 request of len octets from src (address and port) whose source has
 * the restrict flags rflags, at time now (receive time: real for timestamps and nonces,
 * monotonic for the monitor table). Fills out (wire.count = 0 when nothing is to be sent)
 * and returns why. */
CTL_Reason CTL_Handle(const CTL_Ctx *ctx, const uint8_t *req, size_t len, const NetAddr *src,
                      uint32_t rflags, const NTT_Now *now, CTL_Output *out);

const char *CTL_ReasonName(CTL_Reason r);

/* The nonce REQ_NONCE hands to src at time now: 24 hex digits (seconds and fraction of
 * the NTP time, then 32 bits of SipHash-2-4 keyed with secret over time, address and
 * port). buf needs 25 octets. Exposed for tests. */
void CTL_MakeNonce(const uint8_t secret[16], const NetAddr *src, NTT_Stamp ts, char *buf);
/* Is nonce (text, n octets) one we made for src less than CTL_NONCE_LIFETIME s before now? */
bool CTL_CheckNonce(const uint8_t secret[16], const NetAddr *src, const char *nonce, size_t n,
                    NTT_Stamp now);

#endif
