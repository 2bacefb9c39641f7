#include "shed.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "rng.h"
#include "siphash.h"

#define NS_PER_S 1000000000LL
#define NCAND 256 /* candidates: a power of two */
#define NOT_YET INT64_MAX
#define MAX_RATE 1000000u
#define MAX_HOLD 3600u
#define MAX_WAIT_MS 20u

typedef struct {
  NetAddr addr;   /* port 0; family ADR_NONE = free */
  int64_t window; /* start of the current one-second window */
  uint32_t count; /* rate-limit drops in it */
} Candidate;

typedef struct {
  NetAddr addr;
  int64_t until; /* monotonic: let go after this */
  int64_t since; /* real time the filter holding it was in place; NOT_YET before */
  uint64_t gen;  /* generation that added it */
} Shed;

struct SHD_Table {
  pthread_mutex_t lock;
  SIP_Key key;
  SHD_Params p;
  Shed list[SHD_MAX_DEPTH];
  size_t n;
  _Atomic uint64_t gen;
  _Atomic int64_t wait_ns;
  SHD_Stats st;
  Candidate cand[NCAND];
};

/* The defaults and ranges of the `discard` shed rows and `leak` of the configuration's
 * option table (src/confdirs.c; tests/unit/test_config.c checks that they agree). */
void
SHD_DefaultParams(SHD_Params *p)
{
  *p = (SHD_Params){.rate = 1000, .depth = 32, .hold_s = 8, .leak = 4, .wait_ms = 2};
}

bool
SHD_ValidateParams(const SHD_Params *p, char *err, size_t errlen)
{
  if (p->rate > MAX_RATE)
    snprintf(err, errlen, "shed rate %u is above %u", p->rate, MAX_RATE);
  else if (p->depth < 1 || p->depth > SHD_MAX_DEPTH)
    snprintf(err, errlen, "shed depth %u is not in 1..%d", p->depth, SHD_MAX_DEPTH);
  else if (p->hold_s < 1 || p->hold_s > MAX_HOLD)
    snprintf(err, errlen, "shed hold %u is not in 1..%u", p->hold_s, MAX_HOLD);
  else if (p->wait_ms > MAX_WAIT_MS)
    snprintf(err, errlen, "shed wait %u ms is above %u", p->wait_ms, MAX_WAIT_MS);
  else if (p->leak < 0 || p->leak > 16)
    snprintf(err, errlen, "leak %d is not in 0..16", p->leak);
  else
    return true;
  return false;
}

static SHD_Table *
create(const uint8_t key[16])
{
  SHD_Table *t = calloc(1, sizeof(*t));
  if (!t)
    return NULL;
  pthread_mutex_init(&t->lock, NULL);
  SIP_SetKey(&t->key, key);
  SHD_DefaultParams(&t->p);
  t->p.rate = 0;
  return t;
}

SHD_Table *
SHD_CreateSecure(void)
{
  uint8_t k[16];
  if (!RNG_Secure(k, sizeof(k)))
    return NULL;
  SHD_Table *t = create(k);
  explicit_bzero(k, sizeof(k));
  return t;
}

SHD_Table *
SHD_Create(uint64_t seed)
{
  uint8_t k[16];
  for (int i = 0; i < 16; i++)
    k[i] = (uint8_t)(seed >> (8 * (i % 8)) ^ (uint64_t)i * 0x9e);
  return create(k);
}

void
SHD_Destroy(SHD_Table *t)
{
  if (!t)
    return;
  pthread_mutex_destroy(&t->lock);
  free(t);
}

static void
bump(SHD_Table *t)
{
  atomic_fetch_add_explicit(&t->gen, 1, memory_order_release);
}

static void
remove_at(SHD_Table *t, size_t i)
{
  t->list[i] = t->list[--t->n];
}

/* The entry that would be let go first. */
static size_t
first_to_go(const SHD_Table *t)
{
  size_t m = 0;
  for (size_t i = 1; i < t->n; i++)
    if (t->list[i].until < t->list[m].until)
      m = i;
  return m;
}

void
SHD_Configure(SHD_Table *t, const SHD_Params *p)
{
  pthread_mutex_lock(&t->lock);
  bool changed = p->leak != t->p.leak;
  t->p = *p;
  atomic_store(&t->wait_ns, p->rate ? (int64_t)p->wait_ms * 1000000 : 0);
  size_t keep = p->rate == 0 ? 0 : p->depth;
  while (t->n > keep) {
    remove_at(t, first_to_go(t));
    t->st.displaced++;
    changed = true;
  }
  if (changed)
    bump(t);
  pthread_mutex_unlock(&t->lock);
}

static void
shed(SHD_Table *t, const NetAddr *a, int64_t now)
{
  size_t i = t->n;
  if (t->n == t->p.depth) {
    i = first_to_go(t);
    t->st.displaced++;
  } else {
    t->n++;
  }
  uint64_t gen = atomic_load_explicit(&t->gen, memory_order_relaxed) + 1;
  t->list[i] = (Shed){.addr = *a,
                      .until = now + (int64_t)t->p.hold_s * NS_PER_S,
                      .since = NOT_YET,
                      .gen = gen};
  t->st.shed++;
  bump(t);
}

bool
SHD_Answer(SHD_Table *t, const NetAddr *src, int64_t now_ns, int64_t real_ns)
{
  if (!t)
    return false;
  NetAddr a = {.family = src->family};
  memcpy(a.bytes, src->bytes, sizeof(a.bytes));
  pthread_mutex_lock(&t->lock);
  if (t->p.rate == 0) {
    pthread_mutex_unlock(&t->lock);
    return false;
  }
  for (size_t i = 0; i < t->n; i++) {
    Shed *s = &t->list[i];
    if (!ADR_Equal(&s->addr, &a))
      continue;
    s->until = now_ns + (int64_t)t->p.hold_s * NS_PER_S;
    bool sample = t->p.leak > 0 && s->since != NOT_YET && real_ns > s->since;
    if (sample)
      t->st.samples++;
    pthread_mutex_unlock(&t->lock);
    return sample;
  }
  uint8_t key[17];
  key[0] = a.family;
  memcpy(key + 1, a.bytes, 16);
  Candidate *c = &t->cand[SIP_Hash24(&t->key, key, sizeof(key)) & (NCAND - 1)];
  bool fresh = now_ns - c->window < NS_PER_S && now_ns >= c->window;
  if (!ADR_Equal(&c->addr, &a)) {
    if (c->count > 0 && fresh) { /* busy with another source this second */
      pthread_mutex_unlock(&t->lock);
      return false;
    }
    *c = (Candidate){.addr = a, .window = now_ns};
  } else if (!fresh) {
    c->window = now_ns;
    c->count = 0;
  }
  if (++c->count >= t->p.rate) {
    shed(t, &a, now_ns);
    *c = (Candidate){0};
  }
  pthread_mutex_unlock(&t->lock);
  return false;
}

bool
SHD_Expire(SHD_Table *t, int64_t now_ns)
{
  bool changed = false;
  pthread_mutex_lock(&t->lock);
  for (size_t i = 0; i < t->n;) {
    if (t->list[i].until <= now_ns) {
      remove_at(t, i);
      t->st.expired++;
      changed = true;
    } else {
      i++;
    }
  }
  if (changed)
    bump(t);
  pthread_mutex_unlock(&t->lock);
  return changed;
}

int64_t
SHD_WaitNs(const SHD_Table *t)
{
  return atomic_load_explicit(&t->wait_ns, memory_order_relaxed);
}

uint64_t
SHD_Generation(const SHD_Table *t)
{
  return atomic_load_explicit(&t->gen, memory_order_acquire);
}

size_t
SHD_Snapshot(SHD_Table *t, int family, NetAddr *out, size_t max, int *leak, uint64_t *gen)
{
  size_t k = 0;
  pthread_mutex_lock(&t->lock);
  for (size_t i = 0; i < t->n && k < max; i++)
    if (t->list[i].addr.family == family)
      out[k++] = t->list[i].addr;
  *leak = t->p.leak;
  *gen = atomic_load_explicit(&t->gen, memory_order_relaxed);
  pthread_mutex_unlock(&t->lock);
  return k;
}

void
SHD_Applied(SHD_Table *t, uint64_t gen, int64_t real_ns)
{
  pthread_mutex_lock(&t->lock);
  for (size_t i = 0; i < t->n; i++)
    if (t->list[i].since == NOT_YET && t->list[i].gen <= gen)
      t->list[i].since = real_ns;
  pthread_mutex_unlock(&t->lock);
}

void
SHD_Refused(SHD_Table *t)
{
  pthread_mutex_lock(&t->lock);
  for (size_t i = 0; i < t->n; i++)
    t->list[i].since = NOT_YET;
  t->st.refused++;
  pthread_mutex_unlock(&t->lock);
}

void
SHD_GetStats(SHD_Table *t, SHD_Stats *s)
{
  pthread_mutex_lock(&t->lock);
  *s = t->st;
  s->shed_now = t->n;
  s->generation = atomic_load_explicit(&t->gen, memory_order_relaxed);
  pthread_mutex_unlock(&t->lock);
}
