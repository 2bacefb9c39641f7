/* monitor: the MRU ("monitor") table of client sources and the `restrict limited` rate
 * limiter of ntpd 4.2.8, plus an optional per-network limit and the global KoD limit.
 *
 * Owns: one fixed-size record per source address (most recently seen first), the per-source
 * leak counter of ntpd's `discard average/minimum` algorithm, a bounded table of per-network
 * token buckets, and the global KoD token bucket. Preallocated to its bounds at
 * MON_Create/MON_Reconfigure; the per-packet path (MON_Check, MON_TakeKod) never allocates,
 * never logs, never reads a clock and never does I/O. Time is the caller's monotonic clock
 * in nanoseconds (one reading per wakeup is fine), so a step of the system clock neither
 * refills nor drains any allowance. Randomness (leak, eviction) comes from generators inside
 * the table seeded from the caller's seed, so tests are reproducible.
 *
 * Per-source algorithm (ntpd 4.2.8 ntp_monitor(), exact; times rounded to whole seconds):
 *   iv = floor(now - last + 0.5 s); leak = max(0, leak - iv); head = 2^average;
 *   limit = 8 * head; if iv + 1 >= minimum and leak + head < limit: leak += head - 2, serve;
 *   else if leak < limit: leak = limit + head, violation with KoD; else violation, no KoD.
 *   A source's first packet is always served. The counter runs for every packet; the verdict
 *   applies only when the packet's restrict flags have RST_LIMITED.
 *
 * New sources (ntpd 4.2.8 policy; "entries" counts a shard's records in use):
 *   entries < mindepth: take a free record; else if the least recently seen record is older
 *   than maxage: recycle it; else if entries < maxdepth: take a free record; else recycle
 *   the least recently seen record with probability age/monitor (always if age >= monitor),
 *   otherwise do not track the newcomer, which is then served (counted as not_tracked).
 *   Deviation: ntpd 4.2.8 draws its random number from [0, 0.25) (ntp_random() / 2^33), so
 *   it actually recycles with probability 4*age/monitor; we use the documented age/monitor.
 *
 * Per-network limit (ours; off unless netprefix4/netprefix6 is set): packets that the
 * per-source limiter would serve from sources in one network (address & prefix) share a
 * token bucket (GCRA): one packet per 2^netaverage s on average, bursts of up to netburst
 * packets. A network over its limit gives MON_LIMIT_KOD at most once per netburst *
 * 2^netaverage s (else MON_LIMIT_DROP), subject to the same `kod` flag, mode and leak rules
 * as a single source. Networks live in their own bounded table (netdepth records, evicting
 * the least recently seen network when full; an evicted network starts again with a full
 * bucket). Untracked newcomers are still subject to their network's limit.
 *
 * Threads: the table is split into `shards` independent shards chosen by the keyed hash of
 * the address, each with its own mutex; MON_Check takes one source shard lock and then, if
 * the network limit applies, one network shard lock (never both at once). MON_Check,
 * MON_TakeKod, MON_Lookup, MON_List, MON_Walk, MON_OldestSeen and MON_GetStats may run
 * concurrently. MON_Reconfigure must not run with MON_Check or MON_TakeKod (the daemon
 * calls it with the serving threads paused); the readers (MON_Lookup, MON_List, MON_Walk,
 * MON_OldestSeen, MON_GetStats) may run at any time: they and MON_Reconfigure share a lock
 * (the walks' lock), so a reader never sees shards being replaced. MON_Destroy needs
 * exclusive use of the table. Bounds per shard are the table bounds divided by shards,
 * rounded up.
 *
 * Hashing: SipHash-2-4 with 128-bit keys. The daemon's tables (MON_CreateSecure) take them
 * from the kernel's CSPRNG, so that remote senders cannot aim many addresses at one chain;
 * MON_Create derives them from a 64-bit seed, for reproducible tests only.
 * Records do not store their hash (that keeps a record at MON_RECORD_BYTES = 60 bytes):
 * recycling a record needs no hashing, and MON_Reconfigure rehashes the records it moves.
 *
 * Memory: MON_RECORD_BYTES per source record and under 4 bytes of hash index per record,
 * MON_WALKS walk cursor nodes of MON_RECORD_BYTES per shard, plus the network table (a 56-byte
 * record and its index share per netdepth record), all allocated up front. */
#ifndef NTPG_MONITOR_H
#define NTPG_MONITOR_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "netaddr.h"

typedef struct {
  int average;       /* log2 s of the average packet spacing; ntpd default 3; 0..17 */
  int minimum;       /* s, minimum packet spacing; default 2; 0..3600 */
  uint32_t monitor;  /* s, full-table recycling scale; default 3000 (0: always recycle) */
  uint32_t maxdepth; /* max source records; default 16384 (~1 MiB); 1..2^24 */
  uint32_t mindepth; /* records kept regardless of age; default 600 */
  uint32_t maxage;   /* s; older records are recycled once mindepth is reached; 64 */
  int leak;          /* serve 1 in 2^leak over-limit packets anyway; 0 = never; 0..16; 4 */
  uint32_t kodlimit; /* KoDs per second for the whole table (burst kodlimit); 1; 0 = none */
  int netprefix4;    /* per-network limit prefix for IPv4, 0 = off; 0..32 */
  int netprefix6;    /* per-network limit prefix for IPv6, 0 = off; 0..128 */
  int netaverage;    /* log2 s of the average spacing per network; default -3; -16..17 */
  uint32_t netburst; /* burst per network, packets; default 64; 1..1000 */
  uint32_t netdepth; /* max network records; default 4096; 1..2^24 */
  uint32_t shards;   /* power of two, 1..256; default 1 */
} MON_Params;

typedef enum {
  MON_SERVE,      /* answer normally */
  MON_LIMIT_KOD,  /* over the limit and a RATE KoD is allowed: ask MON_TakeKod, else drop */
  MON_LIMIT_DROP, /* over the limit, drop silently */
  MON_LEAK_SERVE, /* over the limit, but answered anyway by the leak (never instead of the
                     run's one KoD: a KoD-eligible violation gives MON_LIMIT_KOD) */
} MON_Result;

/* Optional detail about one MON_Check, for the caller's counters. */
typedef struct {
  bool tracked;    /* the source has a record (false: not tracked, table full) */
  bool new_source; /* this packet created the record */
  bool by_network; /* the limit that fired (or leaked) was the per-network one */
  uint32_t count;  /* packets recorded from the source, this one included; 0 if untracked */
} MON_Info;

/* A copy of one source record. */
typedef struct {
  NetAddr addr;     /* port = source port of the last packet */
  int64_t first_ns; /* monotonic time of the first packet */
  int64_t last_ns;  /* monotonic time of the last packet */
  uint32_t count;   /* packets */
  int32_t leak;     /* ntpd's leak counter, seconds */
  uint32_t rflags;  /* restrict flags after the last packet (RST_LIMITED/RST_KOD cleared
                       when it was served, RST_KOD cleared when no KoD was allowed) */
  uint8_t mode, version;
} MON_Record;

/* Position in the (last seen, address) order, for paging through MON_List. */
typedef struct {
  int64_t last_ns;
  NetAddr addr; /* port ignored */
} MON_Cursor;

typedef struct {
  uint64_t entries;     /* source records in use */
  uint64_t capacity;    /* source records allocated (the maxdepth bound) */
  uint64_t evictions;   /* records recycled for a newcomer or dropped by a smaller bound */
  uint64_t not_tracked; /* newcomers not given a record because the table was full */
  uint64_t net_entries; /* network records in use */
  uint64_t net_evictions;
  uint64_t kod_granted; /* MON_TakeKod answers */
  uint64_t kod_refused;
  size_t memory_bytes; /* = MON_MemoryBytes */
} MON_Stats;

typedef struct MON_Table MON_Table;

/* Bytes of one source record in the table (checked by a static assert in monitor.c). The
 * hash index adds under 4 bytes per record (a 32-bit bucket per two records, rounded up to
 * a power of two), so a large table costs at most 64 bytes per source record in all. */
#define MON_RECORD_BYTES 60

/* ntpd 4.2.8 defaults, with our additions as listed above. */
void MON_DefaultParams(MON_Params *p);
/* False, with a message in err, if a parameter is out of its range. */
bool MON_ValidateParams(const MON_Params *p, char *err, size_t errlen);

/* Allocate a table to its bounds: its two SipHash keys (32 octets) and the seed of its
 * sampling draws come from RNG_Secure. NULL if the parameters are invalid, memory runs
 * out or the kernel gives no randomness (no weaker fallback). */
MON_Table *MON_CreateSecure(const MON_Params *p);
/* The same with keys and draws derived from seed: reproducible, for tests and fuzzing (a
 * 64-bit seed is not a secret key). */
MON_Table *MON_Create(const MON_Params *p, uint64_t seed);
void MON_Destroy(MON_Table *t);
/* Apply new parameters, keeping every source record that fits the new bound (the least
 * recently seen go first) and their counters, so a config reload never resets a client's
 * history. Network records are kept if the network prefixes are unchanged. On false
 * (invalid parameters or no memory) the table is unchanged. Needs exclusive use. */
bool MON_Reconfigure(MON_Table *t, const MON_Params *p);

/* Record a packet from src (port = source port; IPv4-mapped IPv6 is recorded as IPv4) with
 * its mode, version and restrict flags, and decide. Only packets whose rflags have
 * RST_LIMITED can be limited. MON_LIMIT_KOD requires RST_KOD in rflags and a mode other
 * than 4 (server) and 5 (broadcast), as ntpd's receive() does; else a violation gives
 * MON_LIMIT_DROP. rflags with RST_IGNORE, or a source of unknown family, is not recorded
 * and gives MON_LIMIT_DROP (callers drop ignored packets before this). mono_ns: monotonic
 * receive time; a time earlier than the source's last packet counts as no time passed.
 * info may be NULL. */
MON_Result MON_Check(MON_Table *t, const NetAddr *src, uint8_t mode, uint8_t version,
                     uint32_t rflags, int64_t mono_ns, MON_Info *info);

/* Global KoD limit: true if a KoD may be sent now (token bucket of kodlimit per second,
 * burst kodlimit, full at creation). The caller counts false as "KoD suppressed". */
bool MON_TakeKod(MON_Table *t, int64_t mono_ns);

/* Copy up to max records into out, ordered by (last seen, address): newest_first lists
 * records before the cursor, most recent first; otherwise records after the cursor, oldest
 * first. cursor NULL starts at the newest (resp. oldest) record; the next page starts at
 * the last record returned. Returns the number copied. O(entries * log max) per call,
 * locks one shard at a time: for tests and small tables; page through a large table with
 * MON_Walk, whose work per call is bounded. */
size_t MON_List(MON_Table *t, bool newest_first, const MON_Cursor *cursor, MON_Record *out,
                size_t max);
/* ---- Walks: paging through the records in LRU order (ntpq's mrulist) ----
 *
 * A walk lists every record once, least recently seen first, over as many calls as it
 * takes; each call reads at most MON_WALK_BUDGET records and holds a shard lock for at most
 * MON_WALK_BATCH / shards of them at a time, so serving threads are never held up for
 * long. Order: by last seen time across shards (ties: the lower shard first), and within a
 * shard by its LRU list. A record seen again while a walk is under way moves past the walk
 * and is listed again later (ntpd's order: it shows up again at the end); a record
 * recycled before the walk reaches it is not listed. Up to MON_WALKS walks are kept at once
 * (each is one 60-octet cursor node per shard); starting another ends the least recently
 * used one, whose next call then answers MON_WALK_LOST. Walks are serialized by a lock of
 * their own (the readers' lock above); MON_Reconfigure ends every walk. */
#define MON_WALKS 8
#define MON_WALK_BATCH 1024  /* records peeked per round (the caller's MON_WalkBuf) */
#define MON_WALK_BUDGET 4096 /* records a MON_Walk call reads at most */

typedef struct {
  uint32_t slot, gen; /* gen 0: none */
} MON_WalkId;

/* Where a new walk starts: it leaves out the `skip` least recently seen records, and every
 * record last seen before skip_before_ns (INT64_MIN: none). */
typedef struct {
  uint64_t skip;
  int64_t skip_before_ns;
} MON_WalkFrom;

/* The caller's scratch for one call (60 KiB). */
typedef struct {
  MON_Record rec[MON_WALK_BATCH];
  uint32_t node[MON_WALK_BATCH];
} MON_WalkBuf;

/* Called with each record in order; false: the caller takes no more now (r is not
 * consumed: the next call starts with it). Runs under the walk lock, with no shard lock. */
typedef bool (*MON_WalkFn)(void *arg, const MON_Record *r);

typedef enum {
  MON_WALK_DONE, /* every record has been listed; the walk is over */
  MON_WALK_MORE, /* call again with the same id to go on */
  MON_WALK_LOST, /* id names no walk (ended, replaced, or the table was reconfigured) */
} MON_WalkStatus;

/* from non-NULL: start a new walk (id is set); NULL: go on with *id. Hands records to fn
 * until it says stop, the budget is spent or the list ends. An id is good for one call:
 * each MON_WALK_MORE gives *id a new value (the old one then answers MON_WALK_LOST, so a
 * repeated request cannot skip records). read (may be NULL) gets the number of records
 * read, at most MON_WALK_BUDGET. */
MON_WalkStatus MON_Walk(MON_Table *t, MON_WalkId *id, const MON_WalkFrom *from,
                        MON_WalkBuf *buf, MON_WalkFn fn, void *arg, size_t *read);
/* End a walk early (nothing if it is over already). */
void MON_WalkEnd(MON_Table *t, const MON_WalkId *id);
/* Last seen time of the least recently seen record; false if the table is empty.
 * O(shards). */
bool MON_OldestSeen(MON_Table *t, int64_t *last_ns);

/* Look up one source's record without recording anything. False if it has none. */
bool MON_Lookup(MON_Table *t, const NetAddr *src, MON_Record *out);

void MON_GetStats(MON_Table *t, MON_Stats *out);
/* Exactly the bytes allocated for the table (constant between reconfigurations). */
size_t MON_MemoryBytes(const MON_Table *t);

#endif
