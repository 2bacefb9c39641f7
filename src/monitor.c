#include "monitor.h"

#include <pthread.h>
#include <stdalign.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "msglist.h"
#include "restrict.h"
#include "rng.h"
#include "siphash.h"

/* Layout. Source and network records both start with a Head: LRU links, hash chain link
 * and the address. Addresses are kept in IPv6 form (IPv4 as ::ffff:a.b.c.d), so the 16
 * bytes alone are the key. Each shard owns a flat array of records preallocated to its
 * bound; records in [0, used) are in use (a record is recycled, never freed), chained from
 * a power-of-two bucket array and threaded on one LRU list. The keyed hash of the address
 * (t->key for sources, t->netkey for networks) picks the shard with its top bits and the
 * bucket with its low bits. The hash is not stored in the record: a lookup compares
 * addresses (chains are about two long); the last record of a chain links to CHAIN_END |
 * its bucket, so unlinking a record (eviction) finds its bucket by walking to the end of
 * its chain, without hashing; and moving records to new shards (MON_Reconfigure)
 * recomputes their hash with the key their Index keeps. */

#define NIL UINT32_MAX
#define CHAIN_END 0x80000000u /* | bucket: end of a hash chain (NIL too: an empty bucket) */
#define NS_PER_S 1000000000LL
#define CACHE_LINE 64
#define MODE_SERVER 4
#define MODE_BROADCAST 5
#define NTP_SHIFT 8 /* ntpd: the average threshold is 8 headways */
#define MAX_DEPTH (1u << 24)
#define MAX_SHARDS 256

_Static_assert(MAX_DEPTH <= CHAIN_END, "record and bucket numbers must stay below CHAIN_END");

typedef struct {
  uint32_t prev, next; /* LRU neighbours: prev is more recently seen */
  uint32_t hnext;      /* hash chain: next record, or CHAIN_END | bucket after the last */
  uint8_t addr[16];
} Head;

/* Source record: 60 bytes, so that a record and its share of the bucket array (under 4
 * bytes) fit in 64. Times are monotonic ns (no wraparound for 292 years). The array stride
 * is 60, so a record is only 4-aligned: packed (with alignment 4) lets the compiler access
 * the 64-bit times at any 4-aligned address. Read and write the fields by value only: no
 * pointer to a member of an Entry. */
typedef struct __attribute__((packed, aligned(4))) {
  Head h;
  int64_t first_ns, last_ns;
  uint32_t count;
  int32_t leak;    /* ntpd's headway counter, s */
  uint32_t rflags; /* restrict flags as left by the last packet */
  uint16_t port;
  uint8_t vn_mode; /* version << 3 | mode */
  uint8_t spare;
} Entry;

_Static_assert(sizeof(Entry) == MON_RECORD_BYTES && MON_RECORD_BYTES + 4 <= 64,
               "a monitor record and its index share must fit in 64 bytes");
_Static_assert(alignof(Entry) == alignof(Head) && MON_RECORD_BYTES % alignof(Head) == 0,
               "every record in the array must be aligned for its Head");

/* Network record. */
typedef struct {
  Head h;
  int64_t tat_ns;  /* GCRA theoretical arrival time */
  int64_t kod_ns;  /* no KoD for this network before this time */
  int64_t last_ns; /* for ordering on reconfiguration */
} NetEntry;

_Static_assert(sizeof(NetEntry) == 56, "monitor.h gives the size of a network record");

typedef struct {
  char *base;       /* records */
  size_t stride;    /* bytes per record */
  SIP_Key key;      /* of the records' hash (t->key or t->netkey), to move them on reload */
  uint32_t *bucket; /* chain heads; an empty bucket holds NIL or CHAIN_END | itself */
  uint32_t mask;    /* buckets - 1 */
  uint32_t cap, used;
  uint32_t ncursor;    /* walk cursor nodes, numbered cap .. cap + ncursor - 1 */
  uint32_t head, tail; /* most / least recently seen */
} Index;

typedef struct {
  alignas(CACHE_LINE) pthread_mutex_t lock;
  Index ix;
  uint32_t mindepth;
  uint64_t rng;
  uint64_t evictions, not_tracked;
} Shard;

typedef struct {
  alignas(CACHE_LINE) pthread_mutex_t lock;
  Index ix;
  uint64_t rng;
  uint64_t evictions;
} NetShard;

/* A walk in progress (MON_Walk): its cursor node in every source shard is cap + slot. */
typedef struct {
  bool active;
  uint32_t gen;
  uint64_t used; /* walk_tick of its last call: the least recently used walk is ended first */
  uint64_t skip;
  int64_t skip_before_ns;
} Walk;

struct MON_Table {
  MON_Params p;
  SIP_Key key, netkey;
  uint64_t rng; /* seeds shards created by MON_Reconfigure */
  uint32_t nshards, shard_bits;
  Shard *src;
  NetShard *net;
  pthread_mutex_t kod_lock;
  int64_t kod_tat;
  uint64_t kod_granted, kod_refused;
  uint64_t old_evictions, old_not_tracked, old_net_evictions; /* of replaced shards */
  size_t bytes;                                               /* all allocations */
  pthread_mutex_t walk_lock; /* the readers (MON_Walk, MON_Lookup, MON_List, MON_GetStats,
                                MON_OldestSeen) against MON_Reconfigure */
  Walk walks[MON_WALKS];
  uint32_t walk_gen;
  uint64_t walk_tick;
};

typedef enum { V_OK, V_KOD, V_NOKOD } Verdict;

/* One received packet as MON_Check sees it. */
typedef struct {
  uint8_t key[16];
  uint16_t port;
  uint8_t vn_mode;
  uint32_t rflags;
  int64_t now;
} Packet;

/* ---- small helpers ---- */

static uint64_t
splitmix(uint64_t *state)
{
  uint64_t z = (*state += 0x9e3779b97f4a7c15ULL);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  return z ^ (z >> 31);
}

static void
derive_key(uint64_t *rng, SIP_Key *key)
{
  key->k0 = splitmix(rng);
  key->k1 = splitmix(rng);
}

/* True with probability 2^-leak (never for leak 0). */
static bool
draw_leak(uint64_t *rng, int leak)
{
  return leak > 0 && (splitmix(rng) >> (64 - leak)) == 0;
}

/* Whole seconds from `from` to `to`, rounded to nearest (ntpd adds half a second and
 * truncates); 0 if `to` is not later. */
static int64_t
whole_seconds(int64_t from, int64_t to)
{
  if (to <= from)
    return 0;
  uint64_t d = (uint64_t)to - (uint64_t)from;
  return (int64_t)(d / NS_PER_S + (d % NS_PER_S >= NS_PER_S / 2 ? 1 : 0));
}

/* Address in the 16-byte key form. False for an unknown family. */
static bool
addr_key(const NetAddr *a, uint8_t key[16])
{
  static const uint8_t mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
  if (a->family == ADR_INET4) {
    memcpy(key, mapped, 12);
    memcpy(key + 12, a->bytes, 4);
    return true;
  }
  if (a->family == ADR_INET6) {
    memcpy(key, a->bytes, 16);
    return true;
  }
  return false;
}

static bool
key_is_v4(const uint8_t key[16])
{
  static const uint8_t mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
  return memcmp(key, mapped, 12) == 0;
}

static void
key_to_addr(const uint8_t key[16], uint16_t port, NetAddr *a)
{
  memset(a, 0, sizeof(*a));
  a->port = port;
  if (key_is_v4(key)) {
    a->family = ADR_INET4;
    memcpy(a->bytes, key + 12, 4);
  } else {
    a->family = ADR_INET6;
    memcpy(a->bytes, key, 16);
  }
}

static uint32_t
hash_key(const SIP_Key *k, const uint8_t key[16])
{
  return (uint32_t)SIP_Hash24(k, key, 16);
}

static uint32_t
shard_pick(uint32_t shard_bits, uint32_t hash)
{
  return shard_bits ? hash >> (32 - shard_bits) : 0;
}

static uint32_t
shard_of(const MON_Table *t, uint32_t hash)
{
  return shard_pick(t->shard_bits, hash);
}

/* Generic Token Cell Rate Algorithm: one token per `interval`, bursts of `burst`. */
static bool
gcra_take(int64_t *tat, int64_t now, int64_t interval, int64_t burst)
{
  int64_t next = (*tat > now ? *tat : now) + interval;
  if (next - now > burst * interval)
    return false;
  *tat = next;
  return true;
}

/* ---- index: hash chains + LRU list over an array of Head-prefixed records ---- */

static Head *
head_at(const Index *ix, uint32_t i)
{
  return (Head *)(void *)(ix->base + (size_t)i * ix->stride);
}

/* The record with address key, whose hash is hash, or NIL. */
static uint32_t
ix_find(const Index *ix, uint32_t hash, const uint8_t key[16])
{
  uint32_t i = ix->bucket[hash & ix->mask];
  for (; !(i & CHAIN_END); i = head_at(ix, i)->hnext) {
    if (memcmp(head_at(ix, i)->addr, key, 16) == 0)
      return i;
  }
  return NIL;
}

static void
lru_unlink(Index *ix, uint32_t i)
{
  Head *h = head_at(ix, i);
  if (h->prev != NIL)
    head_at(ix, h->prev)->next = h->next;
  else
    ix->head = h->next;
  if (h->next != NIL)
    head_at(ix, h->next)->prev = h->prev;
  else
    ix->tail = h->prev;
}

static void
lru_push_head(Index *ix, uint32_t i)
{
  Head *h = head_at(ix, i);
  h->prev = NIL;
  h->next = ix->head;
  if (ix->head != NIL)
    head_at(ix, ix->head)->prev = i;
  else
    ix->tail = i;
  ix->head = i;
}

/* Link node i just more recently seen than `older` (NIL: as the least recently seen). */
static void
lru_link_newer(Index *ix, uint32_t i, uint32_t older)
{
  Head *h = head_at(ix, i);
  uint32_t newer = older == NIL ? ix->tail : head_at(ix, older)->prev;
  h->next = older;
  h->prev = newer;
  if (older != NIL)
    head_at(ix, older)->prev = i;
  else
    ix->tail = i;
  if (newer != NIL)
    head_at(ix, newer)->next = i;
  else
    ix->head = i;
}

/* Walk cursor nodes sit in the LRU list (never in a hash chain) after the records. */
static bool
is_cursor(const Index *ix, uint32_t i)
{
  return i >= ix->cap;
}

/* The least recently seen record (cursor nodes left out), or NIL. */
static uint32_t
oldest_record(const Index *ix)
{
  uint32_t i = ix->tail;
  while (i != NIL && is_cursor(ix, i))
    i = head_at(ix, i)->prev;
  return i;
}

static void
lru_touch(Index *ix, uint32_t i)
{
  if (ix->head == i)
    return;
  lru_unlink(ix, i);
  lru_push_head(ix, i);
}

/* Unlink record i from its hash chain, whose end names the bucket (no need to hash). */
static void
chain_remove(Index *ix, uint32_t i)
{
  uint32_t end = i;
  while (!(end & CHAIN_END))
    end = head_at(ix, end)->hnext;
  uint32_t *link = &ix->bucket[end & ~CHAIN_END];
  while (*link != i)
    link = &head_at(ix, *link)->hnext;
  *link = head_at(ix, i)->hnext;
}

/* Link record i, whose addr is set and hashes to hash, as the most recently seen. */
static void
ix_insert(Index *ix, uint32_t i, uint32_t hash)
{
  Head *h = head_at(ix, i);
  uint32_t *b = &ix->bucket[hash & ix->mask];
  h->hnext = *b & CHAIN_END ? CHAIN_END | (hash & ix->mask) : *b;
  *b = i;
  lru_push_head(ix, i);
}

static void
ix_remove(Index *ix, uint32_t i)
{
  chain_remove(ix, i);
  lru_unlink(ix, i);
}

static bool
ix_alloc(Index *ix, size_t stride, uint32_t cap, uint32_t ncursor, const SIP_Key *key,
         size_t *bytes)
{
  /* at most two records per bucket on average when full: chains stay short (the hash is
   * keyed, so nobody can lengthen one on purpose) and the index costs under 4 octets a
   * record (beyond the 16-bucket minimum), so a source record and its index share take
   * under 64 octets: a million clients fit in 64 MB (60 + 2.1 octets each) */
  uint32_t buckets = 16;
  while (buckets < cap / 2)
    buckets *= 2;
  memset(ix, 0, sizeof(*ix));
  ix->stride = stride;
  ix->key = *key;
  ix->cap = cap;
  ix->ncursor = ncursor;
  ix->mask = buckets - 1;
  ix->head = ix->tail = NIL;
  size_t rec_bytes =
      ((size_t)(cap + ncursor) * stride + CACHE_LINE - 1) / CACHE_LINE * CACHE_LINE;
  ix->base = aligned_alloc(CACHE_LINE, rec_bytes);
  ix->bucket = malloc(buckets * sizeof(*ix->bucket));
  if (!ix->base || !ix->bucket)
    return false;
  memset(ix->bucket, 0xff, buckets * sizeof(*ix->bucket));
  *bytes += rec_bytes + buckets * sizeof(*ix->bucket);
  return true;
}

static void
ix_free(Index *ix)
{
  free(ix->base);
  free(ix->bucket);
}

/* ---- shards ---- */

static uint32_t
per_shard(uint32_t total, uint32_t nshards)
{
  return (uint32_t)(((uint64_t)total + nshards - 1) / nshards);
}

static void
free_shards(Shard *src, NetShard *net, uint32_t n)
{
  for (uint32_t i = 0; src && i < n; i++) {
    ix_free(&src[i].ix);
    pthread_mutex_destroy(&src[i].lock);
  }
  for (uint32_t i = 0; net && i < n; i++) {
    ix_free(&net[i].ix);
    pthread_mutex_destroy(&net[i].lock);
  }
  free(src);
  free(net);
}

static bool
init_shards(const MON_Table *t, const MON_Params *p, uint64_t *rng, Shard *src, NetShard *net,
            size_t *bytes)
{
  uint32_t n = p->shards;
  bool ok = true;
  for (uint32_t i = 0; i < n; i++) {
    pthread_mutex_init(&src[i].lock, NULL);
    pthread_mutex_init(&net[i].lock, NULL);
    src[i].mindepth = per_shard(p->mindepth, n);
    src[i].rng = splitmix(rng);
    net[i].rng = splitmix(rng);
    uint32_t cap = per_shard(p->maxdepth, n), netcap = per_shard(p->netdepth, n);
    ok = ix_alloc(&src[i].ix, sizeof(Entry), cap, MON_WALKS, &t->key, bytes) && ok;
    ok = ix_alloc(&net[i].ix, sizeof(NetEntry), netcap, 0, &t->netkey, bytes) && ok;
  }
  return ok;
}

/* Allocate and initialise a set of shards for t (whose keys they use); bytes gets what was
 * allocated. */
static bool
create_shards(const MON_Table *t, const MON_Params *p, uint64_t *rng, Shard **src,
              NetShard **net, size_t *bytes)
{
  size_t n = p->shards;
  *bytes = n * (sizeof(Shard) + sizeof(NetShard));
  *src = aligned_alloc(CACHE_LINE, n * sizeof(Shard));
  *net = aligned_alloc(CACHE_LINE, n * sizeof(NetShard));
  if (*src)
    memset(*src, 0, n * sizeof(Shard));
  if (*net)
    memset(*net, 0, n * sizeof(NetShard));
  if (*src && *net && init_shards(t, p, rng, *src, *net, bytes))
    return true;
  free_shards(*src, *net, *src && *net ? p->shards : 0);
  return false;
}

static uint32_t
log2_u32(uint32_t v)
{
  uint32_t b = 0;
  while ((1u << b) < v)
    b++;
  return b;
}

/* ---- parameters ---- */

/* The defaults and ranges of the `discard` and `mru` rows of the configuration's option
 * table (src/confdirs.c; tests/unit/test_config.c checks that they agree). */
void
MON_DefaultParams(MON_Params *p)
{
  memset(p, 0, sizeof(*p));
  p->average = 3;
  p->minimum = 2;
  p->monitor = 3000;
  p->maxdepth = 16384;
  p->mindepth = 600;
  p->maxage = 64;
  p->leak = 4;
  p->kodlimit = 1;
  p->netaverage = -3;
  p->netburst = 64;
  p->netdepth = 4096;
  p->shards = 1;
}

static bool
check_range(const char *name, long long v, long long lo, long long hi, char *err,
            size_t errlen)
{
  if (v >= lo && v <= hi)
    return true;
  MSG_SetError(err, errlen, "monitor: %s %lld out of range %lld..%lld", name, v, lo, hi);
  return false;
}

bool
MON_ValidateParams(const MON_Params *p, char *err, size_t errlen)
{
  if (!check_range("average", p->average, 0, 17, err, errlen) ||
      !check_range("minimum", p->minimum, 0, 3600, err, errlen) ||
      !check_range("maxdepth", p->maxdepth, 1, MAX_DEPTH, err, errlen) ||
      !check_range("leak", p->leak, 0, 16, err, errlen) ||
      !check_range("netprefix4", p->netprefix4, 0, 32, err, errlen) ||
      !check_range("netprefix6", p->netprefix6, 0, 128, err, errlen) ||
      !check_range("netaverage", p->netaverage, -16, 17, err, errlen) ||
      !check_range("netburst", p->netburst, 1, 1000, err, errlen) ||
      !check_range("netdepth", p->netdepth, 1, MAX_DEPTH, err, errlen) ||
      !check_range("shards", p->shards, 1, MAX_SHARDS, err, errlen))
    return false;
  if (p->shards & (p->shards - 1)) {
    MSG_SetError(err, errlen, "monitor: shards %u is not a power of two", (unsigned)p->shards);
    return false;
  }
  return true;
}

/* ---- create / destroy ---- */

/* A table whose addresses hash under key (sources) and netkey (networks); seed drives the
 * sampling draws (leak, recycling), which need no secrecy. */
static MON_Table *
create(const MON_Params *p, const SIP_Key *key, const SIP_Key *netkey, uint64_t seed)
{
  if (!MON_ValidateParams(p, NULL, 0))
    return NULL;
  MON_Table *t = calloc(1, sizeof(*t));
  if (!t)
    return NULL;
  t->p = *p;
  t->rng = seed;
  t->key = *key;
  t->netkey = *netkey;
  t->nshards = p->shards;
  t->shard_bits = log2_u32(p->shards);
  t->kod_tat = INT64_MIN;
  pthread_mutex_init(&t->kod_lock, NULL);
  size_t shard_bytes;
  if (!create_shards(t, p, &t->rng, &t->src, &t->net, &shard_bytes)) {
    pthread_mutex_destroy(&t->kod_lock);
    free(t);
    return NULL;
  }
  t->bytes = sizeof(*t) + shard_bytes;
  pthread_mutex_init(&t->walk_lock, NULL);
  return t;
}

MON_Table *
MON_Create(const MON_Params *p, uint64_t seed)
{
  SIP_Key key, netkey;
  derive_key(&seed, &key);
  derive_key(&seed, &netkey);
  return create(p, &key, &netkey, seed);
}

MON_Table *
MON_CreateSecure(const MON_Params *p)
{
  uint8_t b[40]; /* two 128-bit SipHash keys, then the sampling seed */
  if (!RNG_Secure(b, sizeof(b)))
    return NULL;
  SIP_Key key, netkey;
  uint64_t seed;
  SIP_SetKey(&key, b);
  SIP_SetKey(&netkey, b + 16);
  memcpy(&seed, b + 32, sizeof(seed));
  explicit_bzero(b, sizeof(b));
  MON_Table *t = create(p, &key, &netkey, seed);
  explicit_bzero(&key, sizeof(key));
  explicit_bzero(&netkey, sizeof(netkey));
  return t;
}

void
MON_Destroy(MON_Table *t)
{
  if (!t)
    return;
  free_shards(t->src, t->net, t->nshards);
  pthread_mutex_destroy(&t->kod_lock);
  pthread_mutex_destroy(&t->walk_lock);
  free(t);
}

size_t
MON_MemoryBytes(const MON_Table *t)
{
  return t->bytes;
}

/* ---- per-source decision ---- */

static Entry *
entry_at(const Shard *s, uint32_t i)
{
  return (Entry *)(void *)head_at(&s->ix, i);
}

/* ntpd 4.2.8 ntp_monitor() for a known source, iv whole seconds after its last packet. */
static Verdict
ntpd_limit(Entry *e, int64_t iv, const MON_Params *p)
{
  int64_t head = (int64_t)1 << p->average, limit = NTP_SHIFT * head;
  int64_t leak = (int64_t)e->leak - (iv > INT32_MAX ? INT32_MAX : iv);
  if (leak < 0)
    leak = 0;
  e->leak = (int32_t)leak;
  if (iv + 1 >= p->minimum && leak + head < limit) {
    e->leak = (int32_t)(leak + head - 2);
    return V_OK;
  }
  if (leak < limit) {
    e->leak = (int32_t)(limit + head);
    return V_KOD;
  }
  return V_NOKOD;
}

static uint32_t
flags_after(uint32_t rflags, Verdict v)
{
  if (v == V_OK)
    return rflags & ~(uint32_t)(RST_LIMITED | RST_KOD);
  return v == V_KOD ? rflags : rflags & ~(uint32_t)RST_KOD;
}

static Verdict
update_source(MON_Table *t, Shard *s, uint32_t i, const Packet *pk, MON_Info *info)
{
  Entry *e = entry_at(s, i);
  int64_t iv = whole_seconds(e->last_ns, pk->now);
  if (pk->now > e->last_ns)
    e->last_ns = pk->now;
  e->port = pk->port;
  e->vn_mode = pk->vn_mode;
  if (e->count < UINT32_MAX)
    e->count++;
  lru_touch(&s->ix, i);
  Verdict v = ntpd_limit(e, iv, &t->p);
  e->rflags = flags_after(pk->rflags, v);
  info->tracked = true;
  info->count = e->count;
  return v;
}

static uint32_t
recycle(Shard *s, uint32_t i)
{
  ix_remove(&s->ix, i);
  s->evictions++;
  return i;
}

/* Recycle with probability age/monitor (certainly once age >= monitor). */
static bool
chance_recycle(uint64_t *rng, int64_t age_ns, uint32_t monitor)
{
  uint64_t scale = (uint64_t)monitor * NS_PER_S;
  if (scale == 0 || age_ns >= (int64_t)scale)
    return true;
  return age_ns > 0 && splitmix(rng) % scale < (uint64_t)age_ns;
}

/* ntpd's new-entry policy: a record for a newcomer, or NIL to leave it untracked. */
static uint32_t
admit_source(const MON_Table *t, Shard *s, int64_t now)
{
  Index *ix = &s->ix;
  if (ix->used < s->mindepth && ix->used < ix->cap)
    return ix->used++;
  uint32_t oldest = oldest_record(ix);
  if (oldest == NIL)
    return ix->used < ix->cap ? ix->used++ : NIL;
  const Entry *old = entry_at(s, oldest);
  if (whole_seconds(old->last_ns, now) > (int64_t)t->p.maxage)
    return recycle(s, oldest);
  if (ix->used < ix->cap)
    return ix->used++;
  int64_t age = now > old->last_ns ? now - old->last_ns : 0;
  if (!chance_recycle(&s->rng, age, t->p.monitor))
    return NIL;
  return recycle(s, oldest);
}

static void
init_source(Shard *s, uint32_t i, uint32_t hash, const Packet *pk)
{
  Entry *e = entry_at(s, i);
  memset(e, 0, sizeof(*e));
  memcpy(e->h.addr, pk->key, 16);
  e->first_ns = e->last_ns = pk->now;
  e->count = 1;
  e->leak = 0;
  e->rflags = flags_after(pk->rflags, V_OK);
  e->port = pk->port;
  e->vn_mode = pk->vn_mode;
  ix_insert(&s->ix, i, hash);
}

/* Record the packet in the source's shard (locked by the caller). */
static Verdict
record_source(MON_Table *t, Shard *s, uint32_t hash, const Packet *pk, MON_Info *info)
{
  uint32_t i = ix_find(&s->ix, hash, pk->key);
  if (i != NIL)
    return update_source(t, s, i, pk, info);
  i = admit_source(t, s, pk->now);
  if (i == NIL) {
    s->not_tracked++;
    return V_OK;
  }
  init_source(s, i, hash, pk);
  info->tracked = info->new_source = true;
  info->count = 1;
  return V_OK;
}

/* ---- per-network limit ---- */

static NetEntry *
net_at(const NetShard *s, uint32_t i)
{
  return (NetEntry *)(void *)head_at(&s->ix, i);
}

static void
mask_key(const uint8_t key[16], int bits, uint8_t out[16])
{
  for (int i = 0; i < 16; i++) {
    int keep = bits - 8 * i;
    out[i] = keep >= 8 ? key[i] : keep <= 0 ? 0 : (uint8_t)(key[i] & (0xff << (8 - keep)));
  }
}

/* The network's record, created (recycling the least recently seen one) if needed. */
static NetEntry *
find_network(NetShard *s, uint32_t hash, const uint8_t nk[16], int64_t now)
{
  Index *ix = &s->ix;
  uint32_t i = ix_find(ix, hash, nk);
  if (i != NIL) {
    lru_touch(ix, i);
    return net_at(s, i);
  }
  if (ix->used < ix->cap) {
    i = ix->used++;
  } else {
    i = ix->tail;
    ix_remove(ix, i);
    s->evictions++;
  }
  NetEntry *n = net_at(s, i);
  memset(n, 0, sizeof(*n));
  memcpy(n->h.addr, nk, 16);
  n->tat_ns = now;
  n->kod_ns = INT64_MIN;
  ix_insert(ix, i, hash);
  return n;
}

static int64_t
net_interval(int netaverage)
{
  return netaverage >= 0 ? NS_PER_S << netaverage : NS_PER_S >> -netaverage;
}

static Verdict
net_limit(NetEntry *n, const MON_Params *p, int64_t now)
{
  int64_t interval = net_interval(p->netaverage), burst = p->netburst;
  if (now > n->last_ns)
    n->last_ns = now;
  if (gcra_take(&n->tat_ns, now, interval, burst))
    return V_OK;
  if (now < n->kod_ns)
    return V_NOKOD;
  n->kod_ns = now + burst * interval;
  return V_KOD;
}

/* Network verdict for a packet the source limiter passed; *leak set on a violation. */
static Verdict
check_network(MON_Table *t, const uint8_t key[16], int64_t now, bool *leak)
{
  bool v4 = key_is_v4(key);
  int prefix = v4 ? t->p.netprefix4 : t->p.netprefix6;
  if (prefix == 0)
    return V_OK;
  uint8_t nk[16];
  mask_key(key, v4 ? 96 + prefix : prefix, nk);
  uint32_t hash = hash_key(&t->netkey, nk);
  NetShard *s = &t->net[shard_of(t, hash)];
  pthread_mutex_lock(&s->lock);
  Verdict v = net_limit(find_network(s, hash, nk, now), &t->p, now);
  *leak = v != V_OK && draw_leak(&s->rng, t->p.leak);
  pthread_mutex_unlock(&s->lock);
  return v;
}

/* ---- the decision ---- */

static MON_Result
to_result(Verdict v, bool leak, const Packet *pk)
{
  uint8_t mode = pk->vn_mode & 7;
  if (v == V_OK)
    return MON_SERVE;
  /* The one KoD a violation run allows comes before the leak: leaking that packet would
   * leave the source without any KoD for the whole run. */
  if (v == V_KOD && (pk->rflags & RST_KOD) && mode != MODE_SERVER && mode != MODE_BROADCAST)
    return MON_LIMIT_KOD;
  if (leak)
    return MON_LEAK_SERVE;
  return MON_LIMIT_DROP;
}

MON_Result
MON_Check(MON_Table *t, const NetAddr *src, uint8_t mode, uint8_t version, uint32_t rflags,
          int64_t mono_ns, MON_Info *info)
{
  MON_Info scratch;
  Packet pk;
  if (!info)
    info = &scratch;
  memset(info, 0, sizeof(*info));
  NetAddr a = *src;
  ADR_Unmap(&a);
  if ((rflags & RST_IGNORE) || !addr_key(&a, pk.key))
    return MON_LIMIT_DROP;
  pk.port = a.port;
  pk.vn_mode = (uint8_t)((version & 7) << 3 | (mode & 7));
  pk.rflags = rflags;
  pk.now = mono_ns;

  uint32_t hash = hash_key(&t->key, pk.key);
  Shard *s = &t->src[shard_of(t, hash)];
  bool leak = false;
  pthread_mutex_lock(&s->lock);
  Verdict v = record_source(t, s, hash, &pk, info);
  if (v != V_OK && (rflags & RST_LIMITED))
    leak = draw_leak(&s->rng, t->p.leak);
  pthread_mutex_unlock(&s->lock);

  if (!(rflags & RST_LIMITED))
    return MON_SERVE;
  if (v == V_OK) {
    v = check_network(t, pk.key, mono_ns, &leak);
    info->by_network = v != V_OK;
  }
  return to_result(v, leak, &pk);
}

bool
MON_TakeKod(MON_Table *t, int64_t mono_ns)
{
  if (t->p.kodlimit == 0)
    return false;
  int64_t interval = NS_PER_S / t->p.kodlimit;
  if (interval == 0)
    interval = 1;
  pthread_mutex_lock(&t->kod_lock);
  bool ok = gcra_take(&t->kod_tat, mono_ns, interval, t->p.kodlimit);
  if (ok)
    t->kod_granted++;
  else
    t->kod_refused++;
  pthread_mutex_unlock(&t->kod_lock);
  return ok;
}

/* ---- reading ---- */

static void
to_record(const Entry *e, MON_Record *r)
{
  key_to_addr(e->h.addr, e->port, &r->addr);
  r->first_ns = e->first_ns;
  r->last_ns = e->last_ns;
  r->count = e->count;
  r->leak = e->leak;
  r->rflags = e->rflags;
  r->mode = e->vn_mode & 7;
  r->version = e->vn_mode >> 3;
}

static bool
lookup(MON_Table *t, const NetAddr *src, MON_Record *out)
{
  NetAddr a = *src;
  uint8_t key[16];
  ADR_Unmap(&a);
  if (!addr_key(&a, key))
    return false;
  uint32_t hash = hash_key(&t->key, key);
  Shard *s = &t->src[shard_of(t, hash)];
  pthread_mutex_lock(&s->lock);
  uint32_t i = ix_find(&s->ix, hash, key);
  if (i != NIL)
    to_record(entry_at(s, i), out);
  pthread_mutex_unlock(&s->lock);
  return i != NIL;
}

bool
MON_Lookup(MON_Table *t, const NetAddr *src, MON_Record *out)
{
  pthread_mutex_lock(&t->walk_lock); /* against MON_Reconfigure */
  bool r = lookup(t, src, out);
  pthread_mutex_unlock(&t->walk_lock);
  return r;
}

/* Order of MON_List: (last seen, address key). */
static int
cmp_pos(int64_t last_a, const uint8_t *key_a, int64_t last_b, const uint8_t *key_b)
{
  if (last_a != last_b)
    return last_a < last_b ? -1 : 1;
  return memcmp(key_a, key_b, 16);
}

static int
cmp_records(const MON_Record *a, const MON_Record *b)
{
  uint8_t ka[16], kb[16];
  addr_key(&a->addr, ka);
  addr_key(&b->addr, kb);
  return cmp_pos(a->last_ns, ka, b->last_ns, kb);
}

/* A bounded heap in the caller's array whose root is the record listed last. */
typedef struct {
  MON_Record *r;
  size_t n, max;
  int dir; /* +1: newest first (larger is better), -1: oldest first */
} Heap;

static bool
better(const Heap *h, const MON_Record *a, const MON_Record *b)
{
  return cmp_records(a, b) * h->dir > 0;
}

static void
sift_down(Heap *h, size_t i, size_t n)
{
  for (;;) {
    size_t w = i, l = 2 * i + 1, r = l + 1;
    if (l < n && better(h, &h->r[w], &h->r[l]))
      w = l;
    if (r < n && better(h, &h->r[w], &h->r[r]))
      w = r;
    if (w == i)
      return;
    MON_Record tmp = h->r[i];
    h->r[i] = h->r[w];
    h->r[w] = tmp;
    i = w;
  }
}

static void
sift_up(Heap *h, size_t i)
{
  while (i > 0 && better(h, &h->r[(i - 1) / 2], &h->r[i])) {
    size_t p = (i - 1) / 2;
    MON_Record tmp = h->r[i];
    h->r[i] = h->r[p];
    h->r[p] = tmp;
    i = p;
  }
}

static void
heap_offer(Heap *h, const MON_Record *rec)
{
  if (h->n < h->max) {
    h->r[h->n] = *rec;
    sift_up(h, h->n++);
  } else if (better(h, rec, &h->r[0])) {
    h->r[0] = *rec;
    sift_down(h, 0, h->n);
  }
}

/* Heap sort: worst to the end, leaving the array in listing order. */
static void
heap_finish(Heap *h)
{
  for (size_t n = h->n; n > 1; n--) {
    MON_Record tmp = h->r[0];
    h->r[0] = h->r[n - 1];
    h->r[n - 1] = tmp;
    sift_down(h, 0, n - 1);
  }
}

static bool
past_cursor(const Entry *e, const MON_Cursor *c, const uint8_t *ckey, int dir)
{
  if (!c)
    return true;
  return cmp_pos(e->last_ns, e->h.addr, c->last_ns, ckey) * dir < 0;
}

static size_t
list(MON_Table *t, bool newest_first, const MON_Cursor *cursor, MON_Record *out, size_t max)
{
  Heap h = {out, 0, max, newest_first ? 1 : -1};
  uint8_t ckey[16] = {0};
  if (max == 0)
    return 0;
  if (cursor) {
    NetAddr ca = cursor->addr;
    ADR_Unmap(&ca);
    addr_key(&ca, ckey);
  }
  for (uint32_t k = 0; k < t->nshards; k++) {
    Shard *s = &t->src[k];
    pthread_mutex_lock(&s->lock);
    for (uint32_t i = 0; i < s->ix.used; i++) {
      const Entry *e = entry_at(s, i);
      MON_Record rec;
      if (!past_cursor(e, cursor, ckey, h.dir))
        continue;
      to_record(e, &rec);
      heap_offer(&h, &rec);
    }
    pthread_mutex_unlock(&s->lock);
  }
  heap_finish(&h);
  return h.n;
}

size_t
MON_List(MON_Table *t, bool newest_first, const MON_Cursor *cursor, MON_Record *out,
         size_t max)
{
  pthread_mutex_lock(&t->walk_lock); /* against MON_Reconfigure */
  size_t r = list(t, newest_first, cursor, out, max);
  pthread_mutex_unlock(&t->walk_lock);
  return r;
}

static void
get_stats(MON_Table *t, MON_Stats *out)
{
  memset(out, 0, sizeof(*out));
  out->evictions = t->old_evictions;
  out->not_tracked = t->old_not_tracked;
  out->net_evictions = t->old_net_evictions;
  for (uint32_t k = 0; k < t->nshards; k++) {
    pthread_mutex_lock(&t->src[k].lock);
    out->entries += t->src[k].ix.used;
    out->capacity += t->src[k].ix.cap;
    out->evictions += t->src[k].evictions;
    out->not_tracked += t->src[k].not_tracked;
    pthread_mutex_unlock(&t->src[k].lock);
    pthread_mutex_lock(&t->net[k].lock);
    out->net_entries += t->net[k].ix.used;
    out->net_evictions += t->net[k].evictions;
    pthread_mutex_unlock(&t->net[k].lock);
  }
  pthread_mutex_lock(&t->kod_lock);
  out->kod_granted = t->kod_granted;
  out->kod_refused = t->kod_refused;
  pthread_mutex_unlock(&t->kod_lock);
  out->memory_bytes = t->bytes;
}

void
MON_GetStats(MON_Table *t, MON_Stats *out)
{
  pthread_mutex_lock(&t->walk_lock); /* against MON_Reconfigure */
  get_stats(t, out);
  pthread_mutex_unlock(&t->walk_lock);
}

static bool
oldest_seen(MON_Table *t, int64_t *last_ns)
{
  bool any = false;
  for (uint32_t k = 0; k < t->nshards; k++) {
    Shard *s = &t->src[k];
    pthread_mutex_lock(&s->lock);
    uint32_t i = oldest_record(&s->ix);
    if (i != NIL && (!any || entry_at(s, i)->last_ns < *last_ns)) {
      *last_ns = entry_at(s, i)->last_ns;
      any = true;
    }
    pthread_mutex_unlock(&s->lock);
  }
  return any;
}

bool
MON_OldestSeen(MON_Table *t, int64_t *last_ns)
{
  pthread_mutex_lock(&t->walk_lock); /* against MON_Reconfigure */
  bool r = oldest_seen(t, last_ns);
  pthread_mutex_unlock(&t->walk_lock);
  return r;
}

/* ---- walks: paging through the table in LRU order ----
 *
 * A walk owns one cursor node in every source shard's LRU list: the node sits just before
 * (less recently seen than) the next record the walk lists from that shard. A record seen
 * again moves to the head, past every cursor, so it is listed again later; a recycled one
 * simply leaves. A call peeks at the records after each cursor (one shard lock at a time,
 * a bounded number of records each), merges the shards by last seen time, hands records
 * to the caller in that order, then moves each cursor past the records consumed, checking
 * that each is still the record peeked at (a record that moved is passed over). */

static uint32_t
cursor_node(const Index *ix, uint32_t slot)
{
  return ix->cap + slot;
}

static void
walk_unlink(MON_Table *t, uint32_t slot)
{
  for (uint32_t k = 0; k < t->nshards; k++) {
    Shard *s = &t->src[k];
    pthread_mutex_lock(&s->lock);
    lru_unlink(&s->ix, cursor_node(&s->ix, slot));
    pthread_mutex_unlock(&s->lock);
  }
  t->walks[slot].active = false;
}

/* A slot for a new walk: a free one, else the least recently used walk is ended. */
static uint32_t
walk_start(MON_Table *t, const MON_WalkFrom *from)
{
  uint32_t slot = 0;
  for (uint32_t w = 0; w < MON_WALKS; w++) {
    if (!t->walks[w].active) {
      slot = w;
      break;
    }
    if (t->walks[w].used < t->walks[slot].used)
      slot = w;
  }
  if (t->walks[slot].active)
    walk_unlink(t, slot);
  for (uint32_t k = 0; k < t->nshards; k++) {
    Shard *s = &t->src[k];
    pthread_mutex_lock(&s->lock);
    lru_link_newer(&s->ix, cursor_node(&s->ix, slot), NIL);
    pthread_mutex_unlock(&s->lock);
  }
  if (++t->walk_gen == 0)
    t->walk_gen = 1;
  t->walks[slot] = (Walk){.active = true,
                          .gen = t->walk_gen,
                          .skip = from->skip,
                          .skip_before_ns = from->skip_before_ns};
  return slot;
}

/* Copy up to max records after the walk's cursor in shard s (locked); *more: there are
 * further records after them. */
static size_t
walk_peek(const Shard *s, uint32_t slot, size_t max, MON_Record *rec, uint32_t *node,
          bool *more)
{
  const Index *ix = &s->ix;
  size_t n = 0;
  uint32_t i = head_at(ix, cursor_node(ix, slot))->prev;
  for (; i != NIL && n < max; i = head_at(ix, i)->prev) {
    if (is_cursor(ix, i))
      continue;
    to_record(entry_at(s, i), &rec[n]);
    node[n++] = i;
  }
  while (i != NIL && is_cursor(ix, i))
    i = head_at(ix, i)->prev;
  *more = i != NIL;
  return n;
}

/* Move the walk's cursor in shard s (locked) past the first n records peeked, those that
 * are still where they were: the list after the cursor is what was peeked, less records
 * that moved or left, plus newer ones at the head. */
static void
walk_advance(Shard *s, uint32_t slot, const MON_Record *rec, const uint32_t *node, size_t n)
{
  Index *ix = &s->ix;
  uint32_t cur = cursor_node(ix, slot), x = head_at(ix, cur)->prev, last = NIL;
  for (size_t j = 0; j < n && x != NIL;) {
    if (is_cursor(ix, x)) {
      x = head_at(ix, x)->prev;
      continue;
    }
    const Entry *e = entry_at(s, x);
    if (x == node[j] && e->last_ns == rec[j].last_ns && e->first_ns == rec[j].first_ns) {
      last = x;
      x = head_at(ix, x)->prev;
    }
    j++;
  }
  if (last != NIL) {
    lru_unlink(ix, cur);
    lru_link_newer(ix, cur, last);
  }
}

/* Merge state of one round: shard k's peeked records are buf[k * per + 0 .. n[k]). */
typedef struct {
  MON_WalkBuf *buf;
  size_t per;
  uint32_t heap[MAX_SHARDS], nheap; /* shards with records left, oldest head first */
  uint16_t n[MAX_SHARDS], h[MAX_SHARDS];
  bool more[MAX_SHARDS];
} Merge;

static const MON_Record *
merge_head(const Merge *m, uint32_t k)
{
  return &m->buf->rec[k * m->per + m->h[k]];
}

static bool
merge_before(const Merge *m, uint32_t a, uint32_t b)
{
  int64_t ta = merge_head(m, a)->last_ns, tb = merge_head(m, b)->last_ns;
  return ta != tb ? ta < tb : a < b;
}

static void
merge_sift(Merge *m, uint32_t i)
{
  for (;;) {
    uint32_t w = i, l = 2 * i + 1, r = l + 1;
    if (l < m->nheap && merge_before(m, m->heap[l], m->heap[w]))
      w = l;
    if (r < m->nheap && merge_before(m, m->heap[r], m->heap[w]))
      w = r;
    if (w == i)
      return;
    uint32_t tmp = m->heap[i];
    m->heap[i] = m->heap[w];
    m->heap[w] = tmp;
    i = w;
  }
}

typedef enum { ROUND_DONE, ROUND_MORE, ROUND_FULL } Round;

/* One round: peek per records from every shard, hand them out in order until a shard whose
 * list goes on runs out of peeked records (or the caller's page is full), advance. */
static Round
walk_round(MON_Table *t, uint32_t slot, Merge *m, MON_WalkFn fn, void *arg, size_t *read)
{
  Walk *w = &t->walks[slot];
  bool any_more = false, full = false, blocked = false;
  m->nheap = 0;
  for (uint32_t k = 0; k < t->nshards; k++) {
    Shard *s = &t->src[k];
    pthread_mutex_lock(&s->lock);
    m->n[k] = (uint16_t)walk_peek(s, slot, m->per, &m->buf->rec[k * m->per],
                                  &m->buf->node[k * m->per], &m->more[k]);
    pthread_mutex_unlock(&s->lock);
    m->h[k] = 0;
    *read += m->n[k];
    any_more = any_more || m->more[k];
    if (m->n[k] > 0)
      m->heap[m->nheap++] = k;
  }
  for (uint32_t i = m->nheap; i-- > 0;)
    merge_sift(m, i);
  while (m->nheap > 0 && !blocked) {
    uint32_t k = m->heap[0];
    const MON_Record *r = merge_head(m, k);
    if (w->skip > 0) {
      w->skip--;
    } else if (r->last_ns >= w->skip_before_ns && !fn(arg, r)) {
      full = true;
      break;
    }
    if (++m->h[k] == m->n[k]) {
      blocked = m->more[k]; /* its next record is unknown: stop before going past it */
      m->heap[0] = m->heap[--m->nheap];
    }
    merge_sift(m, 0);
  }
  for (uint32_t k = 0; k < t->nshards; k++) {
    if (m->h[k] == 0)
      continue;
    Shard *s = &t->src[k];
    pthread_mutex_lock(&s->lock);
    walk_advance(s, slot, &m->buf->rec[k * m->per], &m->buf->node[k * m->per], m->h[k]);
    pthread_mutex_unlock(&s->lock);
  }
  if (full)
    return ROUND_FULL;
  return m->nheap == 0 && !any_more ? ROUND_DONE : ROUND_MORE;
}

MON_WalkStatus
MON_Walk(MON_Table *t, MON_WalkId *id, const MON_WalkFrom *from, MON_WalkBuf *buf,
         MON_WalkFn fn, void *arg, size_t *read)
{
  Merge merge;
  size_t scratch_read = 0;
  if (!read)
    read = &scratch_read;
  *read = 0;
  pthread_mutex_lock(&t->walk_lock);
  uint32_t slot = id->slot;
  if (from) {
    slot = walk_start(t, from);
    *id = (MON_WalkId){slot, t->walks[slot].gen};
  } else if (slot >= MON_WALKS || !t->walks[slot].active || t->walks[slot].gen != id->gen) {
    pthread_mutex_unlock(&t->walk_lock);
    return MON_WALK_LOST;
  }
  t->walks[slot].used = ++t->walk_tick;
  Merge *m = &merge;
  m->buf = buf;
  Round r = ROUND_MORE;
  while (r == ROUND_MORE) {
    size_t left = MON_WALK_BUDGET - *read;
    m->per = (left < MON_WALK_BATCH ? left : MON_WALK_BATCH) / t->nshards;
    if (m->per == 0)
      break;
    r = walk_round(t, slot, m, fn, arg, read);
  }
  if (r == ROUND_DONE) {
    walk_unlink(t, slot);
  } else { /* an id is good for one call: a repeated call cannot skip what this one took */
    if (++t->walk_gen == 0)
      t->walk_gen = 1;
    t->walks[slot].gen = t->walk_gen;
    id->gen = t->walk_gen;
  }
  pthread_mutex_unlock(&t->walk_lock);
  return r == ROUND_DONE ? MON_WALK_DONE : MON_WALK_MORE;
}

void
MON_WalkEnd(MON_Table *t, const MON_WalkId *id)
{
  pthread_mutex_lock(&t->walk_lock);
  if (id->slot < MON_WALKS && t->walks[id->slot].active && t->walks[id->slot].gen == id->gen)
    walk_unlink(t, id->slot);
  pthread_mutex_unlock(&t->walk_lock);
}

/* ---- reconfiguration ---- */

static int
cmp_entry_age(const void *pa, const void *pb)
{
  const Entry *a = pa, *b = pb;
  if (a->last_ns != b->last_ns)
    return a->last_ns < b->last_ns ? -1 : 1;
  /* hnext holds the position in the old LRU walk (older first) */
  return a->h.hnext < b->h.hnext ? -1 : a->h.hnext > b->h.hnext;
}

static int
cmp_net_age(const void *pa, const void *pb)
{
  const NetEntry *a = pa, *b = pb;
  if (a->last_ns != b->last_ns)
    return a->last_ns < b->last_ns ? -1 : 1;
  return a->h.hnext < b->h.hnext ? -1 : a->h.hnext > b->h.hnext;
}

/* Copy every record of one kind out of old shards, least recently seen first. */
static void *
collect_records(const Index *const *ix, uint32_t n, size_t stride, size_t *count,
                int (*cmp)(const void *, const void *))
{
  size_t total = 0, k = 0;
  for (uint32_t s = 0; s < n; s++)
    total += ix[s]->used;
  char *buf = malloc(total ? total * stride : 1);
  if (!buf)
    return NULL;
  for (uint32_t s = 0; s < n; s++)
    for (uint32_t i = ix[s]->tail; i != NIL; i = head_at(ix[s], i)->prev) {
      if (is_cursor(ix[s], i))
        continue;
      memcpy(buf + k * stride, head_at(ix[s], i), stride);
      ((Head *)(void *)(buf + k * stride))->hnext = (uint32_t)k;
      k++;
    }
  qsort(buf, total, stride, cmp);
  *count = total;
  return buf;
}

/* Insert copied records, oldest first, into fresh shards chosen with shard_bits by the
 * records' hash, recomputed with the key of the fresh shards (all of one kind share the
 * table's key for that kind); a full shard drops its least recently seen record. Returns
 * the number dropped. */
static uint64_t
insert_records(Index *const *ix, uint32_t shard_bits, const char *buf, size_t count,
               size_t stride)
{
  uint64_t dropped = 0;
  const SIP_Key *key = &ix[0]->key;
  for (size_t k = 0; k < count; k++) {
    const Head *src = (const Head *)(const void *)(buf + k * stride);
    uint32_t hash = hash_key(key, src->addr);
    Index *dst = ix[shard_pick(shard_bits, hash)];
    uint32_t i;
    if (dst->used < dst->cap) {
      i = dst->used++;
    } else {
      i = oldest_record(dst);
      ix_remove(dst, i);
      dropped++;
    }
    memcpy(head_at(dst, i), src, stride);
    ix_insert(dst, i, hash);
  }
  return dropped;
}

/* Copy the records of t into the new shards (p->shards of them). */
static bool
move_records(const MON_Table *t, const MON_Params *p, Shard *src, NetShard *net,
             bool keep_nets, uint64_t dropped[2])
{
  const Index *old_ix[MAX_SHARDS], *old_nix[MAX_SHARDS];
  Index *new_ix[MAX_SHARDS], *new_nix[MAX_SHARDS];
  size_t n_src, n_net = 0;
  for (uint32_t k = 0; k < t->nshards; k++) {
    old_ix[k] = &t->src[k].ix;
    old_nix[k] = &t->net[k].ix;
  }
  for (uint32_t k = 0; k < p->shards; k++) {
    new_ix[k] = &src[k].ix;
    new_nix[k] = &net[k].ix;
  }
  char *srcbuf = collect_records(old_ix, t->nshards, sizeof(Entry), &n_src, cmp_entry_age);
  char *netbuf = NULL;
  if (keep_nets)
    netbuf = collect_records(old_nix, t->nshards, sizeof(NetEntry), &n_net, cmp_net_age);
  bool ok = srcbuf && (netbuf || !keep_nets);
  if (ok) {
    uint32_t bits = log2_u32(p->shards);
    dropped[0] = insert_records(new_ix, bits, srcbuf, n_src, sizeof(Entry));
    dropped[1] = insert_records(new_nix, bits, netbuf, n_net, sizeof(NetEntry));
  }
  free(srcbuf);
  free(netbuf);
  return ok;
}

/* Move the counters of the shards being replaced into the table's totals. */
static void
retire_counters(MON_Table *t, bool keep_nets)
{
  for (uint32_t k = 0; k < t->nshards; k++) {
    t->old_evictions += t->src[k].evictions;
    t->old_not_tracked += t->src[k].not_tracked;
    t->old_net_evictions += t->net[k].evictions + (keep_nets ? 0 : t->net[k].ix.used);
  }
}

static bool
reconfigure(MON_Table *t, const MON_Params *p)
{
  Shard *src;
  NetShard *net;
  size_t shard_bytes;
  uint64_t dropped[2] = {0, 0}, rng = t->rng;
  if (!MON_ValidateParams(p, NULL, 0) || !create_shards(t, p, &rng, &src, &net, &shard_bytes))
    return false;
  bool keep_nets = p->netprefix4 == t->p.netprefix4 && p->netprefix6 == t->p.netprefix6;
  if (!move_records(t, p, src, net, keep_nets, dropped)) {
    free_shards(src, net, p->shards);
    return false;
  }
  for (int w = 0; w < MON_WALKS; w++) /* the new shards have no cursor nodes linked */
    t->walks[w].active = false;
  retire_counters(t, keep_nets);
  t->old_evictions += dropped[0];
  t->old_net_evictions += dropped[1];
  free_shards(t->src, t->net, t->nshards);
  t->src = src;
  t->net = net;
  t->nshards = p->shards;
  t->shard_bits = log2_u32(p->shards);
  t->rng = rng;
  t->p = *p;
  t->bytes = sizeof(*t) + shard_bytes;
  return true;
}

bool
MON_Reconfigure(MON_Table *t, const MON_Params *p)
{
  pthread_mutex_lock(&t->walk_lock); /* no walk reads the shards being replaced */
  bool ok = reconfigure(t, p);
  pthread_mutex_unlock(&t->walk_lock);
  return ok;
}
