#include "restrict.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "msglist.h"

/* How a list is matched quickly.
 *
 * Prefix (contiguous) masks form a laminar family: two prefixes are either nested or
 * disjoint, and the documented "last match in (address, mask) ascending order" is the
 * longest matching prefix (a longer prefix inside a shorter one never has a smaller address,
 * and with an equal address it has the larger mask). So the address space of each family
 * splits into intervals over which the winning entry is constant. RST_Create computes those
 * intervals once (a sweep with a stack over the sorted prefixes) and a lookup is a binary
 * search for the interval holding the source address: O(log n), no pointer chasing, two
 * flat arrays per family. There is one interval map for source port 123, which sees the
 * `ntpport` entries, and one for every other port, which does not.
 *
 * Entries with non-contiguous masks ("mask 255.0.255.0", legal in ntpd) do not nest, so
 * they stay out of the maps. They are kept in a short array in list order; a lookup scans
 * only those that come before the map's winner in list order, so a list without them pays
 * nothing. */

#define NTP_PORT 123
#define MAX_BITS 128
#define KNOWN_MFLAGS (RST_M_NTPPORT | RST_M_INTERFACE | RST_M_SOURCE)

typedef struct {
  uint64_t hi, lo; /* an address as a number; IPv4 uses lo only */
} Key;

typedef struct {
  size_t count;    /* intervals; keys[0] is always 0 */
  uint32_t *keys4; /* IPv4 interval starts */
  Key *keys6;      /* IPv6 interval starts */
  uint32_t *win;   /* winning entry (index in list order) of each interval */
} Map;

typedef struct {
  size_t first, count; /* this family's entries */
  Map map[2];          /* [0]: any source port but 123, [1]: source port 123 */
  uint32_t *odd;       /* entries with non-contiguous masks, ascending list index */
  size_t n_odd;
} Family;

struct RST_List {
  RST_Entry *entries; /* list order */
  size_t count;
  Family fam[2]; /* [0] IPv4, [1] IPv6 */
  size_t bytes;  /* everything allocated for the list */
};

/* An entry while the list is built. */
typedef struct {
  RST_Entry e;
  size_t order;      /* configuration order, 0 = built-in default */
  size_t last_order; /* order of the last merged duplicate (for ippeerlimit) */
  int prefix;        /* prefix length, -1 for a non-contiguous mask */
} Item;

/* A prefix during the interval sweep. */
typedef struct {
  Key start, end;
  uint32_t win;
} Prefix;

/* Intervals under construction. */
typedef struct {
  Key *keys;
  uint32_t *win;
  size_t count;
} Intervals;

static void *
list_alloc(RST_List *l, size_t n, size_t size)
{
  if (size && n > SIZE_MAX / size)
    return NULL;
  size_t bytes = n * size > 0 ? n * size : 1;
  void *p = malloc(bytes);
  if (p)
    l->bytes += bytes;
  return p;
}

static int
fam_index(const NetAddr *a)
{
  return a->family == ADR_INET4 ? 0 : 1;
}

static uint64_t
load_be(const uint8_t *p, int n)
{
  uint64_t v = 0;
  for (int i = 0; i < n; i++)
    v = (v << 8) | p[i];
  return v;
}

static Key
key_of(const NetAddr *a)
{
  Key k;
  if (a->family == ADR_INET4) {
    k.hi = 0;
    k.lo = load_be(a->bytes, 4);
  } else {
    k.hi = load_be(a->bytes, 8);
    k.lo = load_be(a->bytes + 8, 8);
  }
  return k;
}

static int
key_cmp(Key a, Key b)
{
  if (a.hi != b.hi)
    return a.hi < b.hi ? -1 : 1;
  if (a.lo != b.lo)
    return a.lo < b.lo ? -1 : 1;
  return 0;
}

static bool
key_is_max(Key k, int fam)
{
  return fam == 0 ? k.lo == UINT32_MAX : k.hi == UINT64_MAX && k.lo == UINT64_MAX;
}

static Key
key_next(Key k)
{
  k.lo++;
  if (k.lo == 0)
    k.hi++;
  return k;
}

/* Last address of a prefix: start with all host bits set. */
static Key
prefix_end(const NetAddr *addr, const NetAddr *mask)
{
  Key k = key_of(addr), m = key_of(mask);
  if (addr->family == ADR_INET4) {
    k.lo |= ~m.lo & UINT32_MAX;
  } else {
    k.hi |= ~m.hi;
    k.lo |= ~m.lo;
  }
  return k;
}

/* ---- building: validate, normalise, merge, sort ---- */

static bool
validate(const RST_Entry *e, size_t i, char *err, size_t errlen)
{
  if (e->addr.family != ADR_INET4 && e->addr.family != ADR_INET6) {
    MSG_SetError(err, errlen, "restrict entry %zu: address family %u unknown", i,
                 (unsigned)e->addr.family);
    return false;
  }
  if (e->mask.family != e->addr.family) {
    MSG_SetError(err, errlen, "restrict entry %zu: mask family differs from address family",
                 i);
    return false;
  }
  if (e->mflags & ~(uint32_t)KNOWN_MFLAGS) {
    MSG_SetError(err, errlen, "restrict entry %zu: unknown match flags 0x%x", i,
                 (unsigned)(e->mflags & ~(uint32_t)KNOWN_MFLAGS));
    return false;
  }
  return true;
}

/* IPv6 entry inside ::ffff:0:0/96 with those 96 bits in its mask -> IPv4 entry. */
static void
unmap_entry(RST_Entry *e)
{
  static const uint8_t mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
  static const uint8_t ones[12] = {0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
                                   0xff, 0xff, 0xff, 0xff, 0xff, 0xff};
  if (e->addr.family != ADR_INET6 || memcmp(e->addr.bytes, mapped, 12) != 0 ||
      memcmp(e->mask.bytes, ones, 12) != 0)
    return;
  ADR_Unmap(&e->addr);
  memmove(e->mask.bytes, e->mask.bytes + 12, 4);
  memset(e->mask.bytes + 4, 0, 12);
  e->mask.family = ADR_INET4;
}

static void
normalise(const RST_Entry *in, size_t order, Item *out)
{
  out->e = *in;
  unmap_entry(&out->e);
  out->e.addr.port = 0;
  out->e.mask.port = 0;
  ADR_ApplyMask(&out->e.addr, &out->e.mask, &out->e.addr);
  out->order = out->last_order = order;
  out->prefix = ADR_PrefixFromMask(&out->e.mask);
}

static void
make_default(int family, Item *out)
{
  RST_Entry d;
  memset(&d, 0, sizeof(d));
  d.addr.family = d.mask.family = (uint8_t)family;
  d.ippeerlimit = -1;
  normalise(&d, 0, out);
}

/* Identity of an entry for merging: family, masked address, mask, mflags. */
static int
cmp_identity(const Item *a, const Item *b)
{
  if (a->e.addr.family != b->e.addr.family)
    return a->e.addr.family < b->e.addr.family ? -1 : 1;
  int c = memcmp(a->e.addr.bytes, b->e.addr.bytes, 16);
  if (c == 0)
    c = memcmp(a->e.mask.bytes, b->e.mask.bytes, 16);
  if (c == 0 && a->e.mflags != b->e.mflags)
    c = a->e.mflags < b->e.mflags ? -1 : 1;
  return c;
}

static int
cmp_merge(const void *pa, const void *pb)
{
  const Item *a = pa, *b = pb;
  int c = cmp_identity(a, b);
  if (c == 0 && a->order != b->order)
    c = a->order < b->order ? -1 : 1;
  return c;
}

/* Among entries with one address and mask: lower rank is checked first and wins. */
static int
tie_rank(uint32_t mflags)
{
  int cls = (mflags & RST_M_INTERFACE) ? 0 : (mflags & RST_M_SOURCE) ? 2 : 1;
  return ((mflags & RST_M_NTPPORT) ? 0 : 3) + cls;
}

/* List order: IPv4 first; descending address, descending mask, tie rank, config order. */
static int
cmp_list(const void *pa, const void *pb)
{
  const Item *a = pa, *b = pb;
  if (a->e.addr.family != b->e.addr.family)
    return a->e.addr.family < b->e.addr.family ? -1 : 1;
  int c = memcmp(b->e.addr.bytes, a->e.addr.bytes, 16);
  if (c == 0)
    c = memcmp(b->e.mask.bytes, a->e.mask.bytes, 16);
  if (c != 0)
    return c;
  int ra = tie_rank(a->e.mflags), rb = tie_rank(b->e.mflags);
  if (ra != rb)
    return ra < rb ? -1 : 1;
  return a->order < b->order ? -1 : a->order > b->order ? 1 : 0;
}

/* Sort by identity and fold duplicates into the first of each run. Returns the new count. */
static size_t
merge_items(Item *items, size_t n)
{
  size_t out = 0;
  qsort(items, n, sizeof(*items), cmp_merge);
  for (size_t i = 0; i < n; i++) {
    if (out > 0 && cmp_identity(&items[out - 1], &items[i]) == 0) {
      Item *m = &items[out - 1];
      m->e.flags |= items[i].e.flags;
      if (items[i].order >= m->last_order) {
        m->e.ippeerlimit = items[i].e.ippeerlimit;
        m->last_order = items[i].order;
      }
      continue;
    }
    items[out++] = items[i];
  }
  return out;
}

/* ---- building: interval maps ---- */

/* Append an interval start, or overwrite the winner of one starting at the same key;
 * adjacent intervals with the same winner are merged. */
static void
emit(Intervals *iv, Key start, uint32_t win)
{
  if (iv->count > 0 && key_cmp(iv->keys[iv->count - 1], start) == 0) {
    iv->win[iv->count - 1] = win;
    if (iv->count > 1 && iv->win[iv->count - 2] == win)
      iv->count--;
    return;
  }
  if (iv->count > 0 && iv->win[iv->count - 1] == win)
    return;
  iv->keys[iv->count] = start;
  iv->win[iv->count] = win;
  iv->count++;
}

/* Pop prefixes that end before `before` (all of them if before is NULL); the address after
 * each popped prefix belongs to the enclosing one again. */
static void
pop_until(Intervals *iv, Prefix *stack, int *depth, const Key *before, int fam)
{
  while (*depth > 0 && (!before || key_cmp(stack[*depth - 1].end, *before) < 0)) {
    Prefix top = stack[--*depth];
    if (*depth > 0 && !key_is_max(top.end, fam))
      emit(iv, key_next(top.end), stack[*depth - 1].win);
  }
}

/* Intervals from prefixes sorted by ascending start, then ascending length (outer first). */
static void
sweep(const Prefix *p, size_t n, int fam, Intervals *iv)
{
  Prefix stack[MAX_BITS + 2];
  int depth = 0;
  iv->count = 0;
  for (size_t i = 0; i < n; i++) {
    pop_until(iv, stack, &depth, &p[i].start, fam);
    stack[depth++] = p[i];
    emit(iv, p[i].start, p[i].win);
  }
  pop_until(iv, stack, &depth, NULL, fam);
}

/* Distinct prefixes that apply to one port class, outer first, each with the entry that
 * wins among those sharing it (the lowest list index). */
static size_t
collect_prefixes(const Item *items, const Family *fm, int port123, Prefix *out)
{
  size_t n = 0;
  for (size_t k = fm->count; k-- > 0;) {
    size_t i = fm->first + k;
    const Item *it = &items[i];
    if (it->prefix < 0 || (!port123 && (it->e.mflags & RST_M_NTPPORT)))
      continue;
    Key start = key_of(&it->e.addr);
    if (n > 0 && key_cmp(out[n - 1].start, start) == 0 &&
        items[out[n - 1].win].prefix == it->prefix) {
      out[n - 1].win = (uint32_t)i;
      continue;
    }
    out[n].start = start;
    out[n].end = prefix_end(&it->e.addr, &it->e.mask);
    out[n].win = (uint32_t)i;
    n++;
  }
  return n;
}

static bool
store_map(RST_List *l, int fam, const Intervals *iv, Map *m)
{
  m->count = iv->count;
  m->win = list_alloc(l, iv->count, sizeof(*m->win));
  if (fam == 0)
    m->keys4 = list_alloc(l, iv->count, sizeof(*m->keys4));
  else
    m->keys6 = list_alloc(l, iv->count, sizeof(*m->keys6));
  if (!m->win || (fam == 0 ? !m->keys4 : !m->keys6))
    return false;
  for (size_t i = 0; i < iv->count; i++) {
    m->win[i] = iv->win[i];
    if (fam == 0)
      m->keys4[i] = (uint32_t)iv->keys[i].lo;
    else
      m->keys6[i] = iv->keys[i];
  }
  return true;
}

static bool
build_family(RST_List *l, const Item *items, int fam, Prefix *pfx, Intervals *iv)
{
  Family *fm = &l->fam[fam];
  fm->odd = list_alloc(l, fm->count, sizeof(*fm->odd));
  if (!fm->odd)
    return false;
  for (size_t k = 0; k < fm->count; k++)
    if (items[fm->first + k].prefix < 0)
      fm->odd[fm->n_odd++] = (uint32_t)(fm->first + k);
  for (int port123 = 0; port123 < 2; port123++) {
    size_t n = collect_prefixes(items, fm, port123, pfx);
    sweep(pfx, n, fam, iv);
    if (!store_map(l, fam, iv, &fm->map[port123]))
      return false;
  }
  return true;
}

static bool
build_maps(RST_List *l, const Item *items)
{
  size_t n = l->count;
  bool ok = false;
  Prefix *pfx = malloc(n * sizeof(*pfx));
  Intervals iv = {malloc((2 * n + 1) * sizeof(Key)), malloc((2 * n + 1) * sizeof(uint32_t)),
                  0};
  if (pfx && iv.keys && iv.win)
    ok = build_family(l, items, 0, pfx, &iv) && build_family(l, items, 1, pfx, &iv);
  free(pfx);
  free(iv.keys);
  free(iv.win);
  return ok;
}

static Item *
prepare_items(const RST_Entry *e, size_t n, size_t *count, char *err, size_t errlen)
{
  if (n > UINT32_MAX - 2 || n > SIZE_MAX / sizeof(Item) / 2 - 2) {
    MSG_SetError(err, errlen, "restrict: too many entries");
    return NULL;
  }
  for (size_t i = 0; i < n; i++)
    if (!validate(&e[i], i, err, errlen))
      return NULL;
  Item *items = malloc((n + 2) * sizeof(*items));
  if (!items) {
    MSG_SetError(err, errlen, "restrict: out of memory");
    return NULL;
  }
  make_default(ADR_INET4, &items[0]);
  make_default(ADR_INET6, &items[1]);
  for (size_t i = 0; i < n; i++)
    normalise(&e[i], i + 1, &items[i + 2]);
  *count = merge_items(items, n + 2);
  qsort(items, *count, sizeof(*items), cmp_list);
  return items;
}

static bool
fill_list(RST_List *l, const Item *items, size_t count)
{
  l->count = count;
  l->entries = list_alloc(l, count, sizeof(*l->entries));
  if (!l->entries)
    return false;
  for (size_t i = 0; i < count; i++) {
    l->entries[i] = items[i].e;
    Family *fm = &l->fam[fam_index(&items[i].e.addr)];
    if (fm->count++ == 0)
      fm->first = i;
  }
  return build_maps(l, items);
}

RST_List *
RST_Create(const RST_Entry *e, size_t n, char *err, size_t errlen)
{
  size_t count;
  Item *items = prepare_items(e, n, &count, err, errlen);
  if (!items)
    return NULL;
  RST_List *l = calloc(1, sizeof(*l));
  if (l)
    l->bytes = sizeof(*l);
  if (!l || !fill_list(l, items, count)) {
    MSG_SetError(err, errlen, "restrict: out of memory");
    RST_Destroy(l);
    l = NULL;
  }
  free(items);
  return l;
}

RST_List *
RST_Copy(const RST_List *l)
{
  return RST_Create(l->entries, l->count, NULL, 0);
}

void
RST_Destroy(RST_List *l)
{
  if (!l)
    return;
  for (int f = 0; f < 2; f++) {
    for (int p = 0; p < 2; p++) {
      free(l->fam[f].map[p].keys4);
      free(l->fam[f].map[p].keys6);
      free(l->fam[f].map[p].win);
    }
    free(l->fam[f].odd);
  }
  free(l->entries);
  free(l);
}

/* ---- matching ---- */

static size_t
search4(const Map *m, uint32_t k)
{
  size_t lo = 0, n = m->count;
  while (n > 1) {
    size_t half = n / 2;
    if (m->keys4[lo + half] <= k)
      lo += half;
    n -= half;
  }
  return lo;
}

static size_t
search6(const Map *m, Key k)
{
  size_t lo = 0, n = m->count;
  while (n > 1) {
    size_t half = n / 2;
    if (key_cmp(m->keys6[lo + half], k) <= 0)
      lo += half;
    n -= half;
  }
  return lo;
}

static bool
entry_matches(const RST_Entry *e, const NetAddr *a)
{
  if ((e->mflags & RST_M_NTPPORT) && a->port != NTP_PORT)
    return false;
  for (int i = 0; i < 16; i++)
    if ((a->bytes[i] & e->mask.bytes[i]) != e->addr.bytes[i])
      return false;
  return true;
}

static size_t
lookup(const RST_List *l, const NetAddr *a)
{
  int fam = fam_index(a);
  const Family *fm = &l->fam[fam];
  const Map *m = &fm->map[a->port == NTP_PORT];
  size_t best;
  if (fam == 0)
    best = m->win[search4(m, (uint32_t)load_be(a->bytes, 4))];
  else
    best = m->win[search6(m, key_of(a))];
  for (size_t i = 0; i < fm->n_odd && fm->odd[i] < best; i++)
    if (entry_matches(&l->entries[fm->odd[i]], a))
      return fm->odd[i];
  return best;
}

size_t
RST_MatchIndex(const RST_List *l, const NetAddr *src)
{
  NetAddr a = *src;
  if (a.family != ADR_INET4 && a.family != ADR_INET6)
    return RST_NO_ENTRY;
  ADR_Unmap(&a);
  if (ADR_IsMulticast(&a))
    return RST_NO_ENTRY;
  return lookup(l, &a);
}

uint32_t
RST_Match(const RST_List *l, const NetAddr *src)
{
  size_t i = RST_MatchIndex(l, src);
  return i == RST_NO_ENTRY ? RST_IGNORE : l->entries[i].flags;
}

size_t
RST_Count(const RST_List *l)
{
  return l->count;
}

const RST_Entry *
RST_Get(const RST_List *l, size_t i)
{
  return i < l->count ? &l->entries[i] : NULL;
}

size_t
RST_MemoryBytes(const RST_List *l)
{
  return l->bytes;
}
