/* restrict list: ntp_acc(5) matching semantics, checked by example and against a naive
 * linear scan of the documented rule. NTPG_BENCH=1 adds a lookup micro-benchmark. */
#include "restrict.h"

#include <time.h>

#include "harness.h"

/* ---- helpers ---- */

static NetAddr
addr(const char *text, uint16_t port)
{
  NetAddr a;
  if (!ADR_Parse(text, &a)) {
    fprintf(stderr, "bad test address %s\n", text);
    abort();
  }
  a.port = port;
  return a;
}

/* Entry from "ADDR/PREFIX". */
static RST_Entry
ent(const char *prefix, uint32_t flags, uint32_t mflags)
{
  RST_Entry e;
  int len;
  memset(&e, 0, sizeof(e));
  if (!ADR_ParsePrefix(prefix, &e.addr, &len)) {
    fprintf(stderr, "bad test prefix %s\n", prefix);
    abort();
  }
  ADR_MaskFromPrefix(e.addr.family, len, &e.mask);
  e.flags = flags;
  e.mflags = mflags;
  e.ippeerlimit = -1;
  return e;
}

static RST_List *
make(const RST_Entry *e, size_t n)
{
  char err[128] = "";
  RST_List *l = RST_Create(e, n, err, sizeof(err));
  if (!l)
    fprintf(stderr, "RST_Create: %s\n", err);
  return l;
}

static uint32_t
match(const RST_List *l, const char *src, uint16_t port)
{
  NetAddr a = addr(src, port);
  return RST_Match(l, &a);
}

/* ---- behaviour ---- */

static void
test_rst_default_entries_present_with_no_flags(void)
{
  RST_List *l = make(NULL, 0);
  TEST_CHECK(l != NULL);
  TEST_EQ_INT(RST_Count(l), 2);
  TEST_EQ_INT(RST_Get(l, 0)->addr.family, ADR_INET4);
  TEST_EQ_INT(ADR_PrefixFromMask(&RST_Get(l, 0)->mask), 0);
  TEST_EQ_INT(RST_Get(l, 0)->ippeerlimit, -1);
  TEST_EQ_INT(RST_Get(l, 1)->addr.family, ADR_INET6);
  TEST_EQ_INT(ADR_PrefixFromMask(&RST_Get(l, 1)->mask), 0);
  TEST_EQ_INT(match(l, "192.0.2.1", 40000), 0);
  TEST_EQ_INT(match(l, "2001:db8::1", 123), 0);
  TEST_CHECK(RST_Get(l, 2) == NULL);
  RST_Destroy(l);
}

static void
test_rst_default_entry_takes_configured_flags(void)
{
  RST_Entry e[] = {ent("0.0.0.0/0", RST_KOD | RST_LIMITED, 0), ent("::/0", RST_NOQUERY, 0)};
  RST_List *l = make(e, 2);
  TEST_EQ_INT(RST_Count(l), 2);
  TEST_EQ_INT(match(l, "198.51.100.7", 1234), RST_KOD | RST_LIMITED);
  TEST_EQ_INT(match(l, "2001:db8::7", 1234), RST_NOQUERY);
  RST_Destroy(l);
}

static void
test_rst_most_specific_prefix_wins(void)
{
  RST_Entry e[] = {ent("10.1.2.0/24", RST_NOSERVE, 0), ent("10.0.0.0/8", RST_NOQUERY, 0),
                   ent("10.1.0.0/16", RST_LIMITED, 0), ent("0.0.0.0/0", RST_KOD, 0)};
  RST_List *l = make(e, 4);
  TEST_EQ_INT(match(l, "10.1.2.200", 5000), RST_NOSERVE);
  TEST_EQ_INT(match(l, "10.1.3.1", 5000), RST_LIMITED);
  TEST_EQ_INT(match(l, "10.200.0.1", 5000), RST_NOQUERY);
  TEST_EQ_INT(match(l, "11.0.0.1", 5000), RST_KOD);
  TEST_EQ_INT(match(l, "9.255.255.255", 5000), RST_KOD);
  /* The edges of each prefix. */
  TEST_EQ_INT(match(l, "10.1.2.0", 5000), RST_NOSERVE);
  TEST_EQ_INT(match(l, "10.1.2.255", 5000), RST_NOSERVE);
  TEST_EQ_INT(match(l, "10.1.255.255", 5000), RST_LIMITED);
  TEST_EQ_INT(match(l, "10.255.255.255", 5000), RST_NOQUERY);
  RST_Destroy(l);
}

static void
test_rst_host_entry_beats_its_network(void)
{
  RST_Entry e[] = {ent("192.0.2.0/24", RST_IGNORE, 0), ent("192.0.2.10/32", RST_NOQUERY, 0)};
  RST_List *l = make(e, 2);
  TEST_EQ_INT(match(l, "192.0.2.10", 123), RST_NOQUERY);
  TEST_EQ_INT(match(l, "192.0.2.11", 123), RST_IGNORE);
  TEST_EQ_INT(match(l, "192.0.2.9", 123), RST_IGNORE);
  RST_Destroy(l);
}

static void
test_rst_last_match_in_ascending_order_wins(void)
{
  /* ntp_acc(5)'s own model: sorted by address then mask, ascending, last match wins; the
   * list (reslist order) is the reverse, so its first match must be that entry. */
  RST_Entry e[] = {ent("192.168.0.0/16", RST_KOD, 0), ent("192.168.0.0/24", RST_NOPEER, 0),
                   ent("0.0.0.0/0", RST_NOQUERY, 0)};
  RST_List *l = make(e, 3);
  TEST_EQ_INT(RST_Count(l), 4);
  TEST_EQ_INT(ADR_PrefixFromMask(&RST_Get(l, 0)->mask), 24);
  TEST_EQ_INT(ADR_PrefixFromMask(&RST_Get(l, 1)->mask), 16);
  TEST_EQ_INT(ADR_PrefixFromMask(&RST_Get(l, 2)->mask), 0);
  NetAddr a = addr("192.168.0.5", 1000), b = addr("192.168.7.5", 1000);
  TEST_EQ_INT(RST_MatchIndex(l, &a), 0);
  TEST_EQ_INT(RST_MatchIndex(l, &b), 1);
  RST_Destroy(l);
}

static void
test_rst_ntpport_entry_matches_only_port_123(void)
{
  RST_Entry e[] = {ent("203.0.113.0/24", RST_NOQUERY, RST_M_NTPPORT)};
  RST_List *l = make(e, 1);
  TEST_EQ_INT(match(l, "203.0.113.5", 123), RST_NOQUERY);
  TEST_EQ_INT(match(l, "203.0.113.5", 124), 0);
  TEST_EQ_INT(match(l, "203.0.113.5", 0), 0);
  TEST_EQ_INT(match(l, "203.0.113.5", 50123), 0);
  RST_Destroy(l);
}

static void
test_rst_ntpport_is_more_specific_than_same_prefix(void)
{
  /* Configured in either order, the ntpport twin wins for port 123. */
  RST_Entry e1[] = {ent("203.0.113.0/24", RST_NOQUERY, RST_M_NTPPORT),
                    ent("203.0.113.0/24", RST_LIMITED, 0)};
  RST_Entry e2[] = {e1[1], e1[0]};
  for (int k = 0; k < 2; k++) {
    RST_List *l = make(k ? e2 : e1, 2);
    TEST_EQ_INT(RST_Count(l), 4);
    TEST_EQ_INT(match(l, "203.0.113.5", 123), RST_NOQUERY);
    TEST_EQ_INT(match(l, "203.0.113.5", 1023), RST_LIMITED);
    TEST_EQ_INT(RST_Get(l, 0)->mflags, RST_M_NTPPORT);
    RST_Destroy(l);
  }
}

static void
test_rst_ntpport_does_not_beat_longer_prefix(void)
{
  RST_Entry e[] = {ent("203.0.113.0/24", RST_NOQUERY, RST_M_NTPPORT),
                   ent("203.0.113.64/26", RST_LIMITED, 0)};
  RST_List *l = make(e, 2);
  TEST_EQ_INT(match(l, "203.0.113.65", 123), RST_LIMITED);
  TEST_EQ_INT(match(l, "203.0.113.1", 123), RST_NOQUERY);
  RST_Destroy(l);
}

static void
test_rst_interface_entry_wins_tie_source_entry_loses(void)
{
  RST_Entry e[] = {ent("198.51.100.1/32", RST_NOPEER, RST_M_SOURCE),
                   ent("198.51.100.1/32", RST_NOQUERY, 0),
                   ent("198.51.100.1/32", RST_IGNORE, RST_M_INTERFACE),
                   ent("198.51.100.2/32", RST_NOPEER, RST_M_SOURCE),
                   ent("198.51.100.2/32", RST_NOQUERY, 0)};
  RST_List *l = make(e, 5);
  TEST_EQ_INT(match(l, "198.51.100.1", 5000), RST_IGNORE);
  TEST_EQ_INT(match(l, "198.51.100.2", 5000), RST_NOQUERY);
  RST_Destroy(l);
}

static void
test_rst_interface_self_block_entry(void)
{
  /* What the caller adds for a local address: only our own port-123 traffic is ignored. */
  RST_Entry e[] = {ent("192.0.2.53/32", RST_IGNORE, RST_M_INTERFACE | RST_M_NTPPORT),
                   ent("0.0.0.0/0", RST_LIMITED | RST_KOD, 0)};
  RST_List *l = make(e, 2);
  TEST_EQ_INT(match(l, "192.0.2.53", 123), RST_IGNORE);
  TEST_EQ_INT(match(l, "192.0.2.53", 40000), RST_LIMITED | RST_KOD);
  RST_Destroy(l);
}

static void
test_rst_ipv6_prefixes(void)
{
  RST_Entry e[] = {ent("2001:db8::/32", RST_NOQUERY, 0),
                   ent("2001:db8:1::/48", RST_LIMITED, 0),
                   ent("2001:db8:1::1/128", RST_NOPEER, 0), ent("::/0", RST_KOD, 0)};
  RST_List *l = make(e, 4);
  TEST_EQ_INT(match(l, "2001:db8:1::1", 5), RST_NOPEER);
  TEST_EQ_INT(match(l, "2001:db8:1::2", 5), RST_LIMITED);
  TEST_EQ_INT(match(l, "2001:db8:1:ffff:ffff:ffff:ffff:ffff", 5), RST_LIMITED);
  TEST_EQ_INT(match(l, "2001:db8:2::1", 5), RST_NOQUERY);
  TEST_EQ_INT(match(l, "2001:db9::1", 5), RST_KOD);
  TEST_EQ_INT(match(l, "feff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", 5), RST_KOD);
  /* The IPv4 list is separate. */
  TEST_EQ_INT(match(l, "32.1.13.184", 5), 0);
  RST_Destroy(l);
}

static void
test_rst_ipv4_mapped_source_matches_ipv4_list(void)
{
  RST_Entry e[] = {ent("192.0.2.0/24", RST_NOQUERY, 0), ent("::/0", RST_IGNORE, 0)};
  RST_List *l = make(e, 2);
  TEST_EQ_INT(match(l, "::ffff:192.0.2.9", 1000), RST_NOQUERY);
  TEST_EQ_INT(match(l, "::ffff:198.51.100.9", 1000), 0);
  TEST_EQ_INT(match(l, "2001:db8::1", 1000), RST_IGNORE);
  RST_Destroy(l);
}

static void
test_rst_ipv4_mapped_entry_becomes_ipv4(void)
{
  RST_Entry e[] = {ent("::ffff:192.0.2.0/120", RST_NOQUERY, 0)};
  RST_List *l = make(e, 1);
  TEST_EQ_INT(RST_Count(l), 3);
  TEST_EQ_INT(RST_Get(l, 0)->addr.family, ADR_INET4);
  TEST_EQ_INT(ADR_PrefixFromMask(&RST_Get(l, 0)->mask), 24);
  TEST_EQ_INT(match(l, "192.0.2.77", 1000), RST_NOQUERY);
  TEST_EQ_INT(match(l, "::ffff:192.0.2.77", 1000), RST_NOQUERY);
  RST_Destroy(l);
}

/* A copy has the same entries in the same order and matches the same way, on its own. */
static void
test_rst_copy_matches_like_the_original(void)
{
  RST_Entry e[] = {ent("192.0.2.0/24", RST_NOQUERY, 0), ent("192.0.2.9/32", RST_IGNORE, 0),
                   ent("2001:db8::/32", RST_LIMITED | RST_KOD, 0),
                   ent("::ffff:198.51.100.0/120", RST_NOSERVE, 0)};
  RST_List *l = make(e, 4);
  RST_List *c = RST_Copy(l);
  TEST_CHECK(c != NULL && c != l);
  TEST_EQ_INT(RST_Count(c), RST_Count(l));
  for (size_t i = 0; i < RST_Count(l); i++)
    TEST_CHECK(memcmp(RST_Get(c, i), RST_Get(l, i), sizeof(RST_Entry)) == 0);
  RST_Destroy(l);
  const char *srcs[] = {"192.0.2.1", "192.0.2.9", "198.51.100.4", "2001:db8::7", "203.0.113.1"};
  const uint32_t want[] = {RST_NOQUERY, RST_IGNORE, RST_NOSERVE, RST_LIMITED | RST_KOD, 0};
  for (size_t i = 0; i < 5; i++)
    TEST_EQ_INT(match(c, srcs[i], 1000), want[i]);
  RST_Destroy(c);
}

static void
test_rst_repeated_entry_ors_flags(void)
{
  RST_Entry e[] = {ent("192.0.2.0/24", RST_NOQUERY, 0), ent("192.0.2.0/24", RST_NOMODIFY, 0),
                   ent("192.0.2.7/24", RST_KOD, 0)};
  e[1].ippeerlimit = 3;
  e[2].ippeerlimit = 5;
  RST_List *l = make(e, 3);
  TEST_EQ_INT(RST_Count(l), 3);
  TEST_EQ_INT(match(l, "192.0.2.1", 1), RST_NOQUERY | RST_NOMODIFY | RST_KOD);
  TEST_EQ_INT(RST_Get(l, 0)->ippeerlimit, 5);
  /* Host bits of a network entry are cleared. */
  TEST_CHECK(RST_Get(l, 0)->addr.bytes[3] == 0);
  RST_Destroy(l);
}

static void
test_rst_same_prefix_other_mflags_not_merged(void)
{
  RST_Entry e[] = {ent("192.0.2.0/24", RST_NOQUERY, 0),
                   ent("192.0.2.0/24", RST_NOMODIFY, RST_M_NTPPORT)};
  RST_List *l = make(e, 2);
  TEST_EQ_INT(RST_Count(l), 4);
  TEST_EQ_INT(match(l, "192.0.2.1", 123), RST_NOMODIFY);
  RST_Destroy(l);
}

static void
test_rst_multicast_source_is_ignored(void)
{
  RST_List *l = make(NULL, 0);
  NetAddr a = addr("224.0.1.1", 123), b = addr("ff02::101", 123),
          c = addr("::ffff:239.1.1.1", 123);
  TEST_EQ_INT(RST_Match(l, &a), RST_IGNORE);
  TEST_EQ_INT(RST_Match(l, &b), RST_IGNORE);
  TEST_EQ_INT(RST_Match(l, &c), RST_IGNORE);
  TEST_CHECK(RST_MatchIndex(l, &a) == RST_NO_ENTRY);
  NetAddr none;
  memset(&none, 0, sizeof(none));
  TEST_EQ_INT(RST_Match(l, &none), RST_IGNORE);
  RST_Destroy(l);
}

static void
test_rst_noncontiguous_mask_uses_sort_order(void)
{
  /* 10.0.0.0 mask 255.0.255.0 sorts after 10.0.0.0/8 (same address, larger mask) and
   * before 10.0.0.0/16, so it beats the /8 but loses to the /16. */
  RST_Entry e[] = {ent("10.0.0.0/8", RST_NOQUERY, 0), ent("10.0.0.0/16", RST_LIMITED, 0),
                   ent("10.0.0.0/8", RST_NOPEER, 0)};
  e[2].mask = addr("255.0.255.0", 0);
  RST_List *l = make(e, 3);
  TEST_EQ_INT(RST_Count(l), 5);
  TEST_EQ_INT(match(l, "10.9.0.1", 7), RST_NOPEER);
  TEST_EQ_INT(match(l, "10.9.1.1", 7), RST_NOQUERY);
  TEST_EQ_INT(match(l, "10.0.0.1", 7), RST_LIMITED);
  RST_Destroy(l);
}

static void
test_rst_bad_entries_rejected_with_message(void)
{
  char err[128] = "";
  RST_Entry e[] = {ent("192.0.2.0/24", 0, 0), ent("2001:db8::/32", 0, 0)};
  e[1].mask.family = ADR_INET4;
  TEST_CHECK(RST_Create(e, 2, err, sizeof(err)) == NULL);
  TEST_CHECK(strstr(err, "entry 1") != NULL);
  e[1] = ent("2001:db8::/32", 0, 0x80);
  TEST_CHECK(RST_Create(e, 2, err, sizeof(err)) == NULL);
  TEST_CHECK(strstr(err, "match flags") != NULL);
  memset(&e[0], 0, sizeof(e[0]));
  TEST_CHECK(RST_Create(e, 1, NULL, 0) == NULL);
}

static void
test_rst_memory_bytes_counted(void)
{
  RST_List *small = make(NULL, 0);
  RST_Entry e[64];
  for (int i = 0; i < 64; i++) {
    char text[32];
    snprintf(text, sizeof(text), "10.%d.0.0/16", i);
    e[i] = ent(text, RST_NOQUERY, 0);
  }
  RST_List *big = make(e, 64);
  TEST_CHECK(RST_MemoryBytes(small) > 0);
  TEST_CHECK(RST_MemoryBytes(big) > RST_MemoryBytes(small) + 64 * sizeof(RST_Entry));
  RST_Destroy(small);
  RST_Destroy(big);
}

/* ---- properties ---- */

static void
random_addr(int family, NetAddr *a)
{
  memset(a, 0, sizeof(*a));
  a->family = (uint8_t)family;
  for (int i = 0; i < (family == ADR_INET4 ? 4 : 16); i++)
    a->bytes[i] = (uint8_t)test_rng();
  if (family == ADR_INET4 && (a->bytes[0] & 0xf0) == 0xe0)
    a->bytes[0] ^= 0x80; /* keep clear of multicast */
  if (family == ADR_INET6 && a->bytes[0] == 0xff)
    a->bytes[0] = 0x20;
  if (family == ADR_INET6 && a->bytes[0] == 0)
    a->bytes[0] = 0x20; /* and of ::ffff:0:0/96 */
}

static void
flip_bit(NetAddr *a, int bit)
{
  a->bytes[bit / 8] ^= (uint8_t)(0x80 >> (bit % 8));
}

static void
test_rst_property_prefix_bit_flips(void)
{
  /* chrony's addrfilt property: a random prefix is matched by an address with any bit after
   * the prefix flipped, and not by one with the prefix's last bit flipped. */
  test_rng_state = harness_seed;
  for (int iter = 0; iter < 2000; iter++) {
    int family = iter % 2 ? ADR_INET6 : ADR_INET4, bits = family == ADR_INET4 ? 32 : 128;
    int len = 1 + (int)(test_rng() % (uint64_t)bits);
    RST_Entry e;
    memset(&e, 0, sizeof(e));
    random_addr(family, &e.addr);
    ADR_MaskFromPrefix(family, len, &e.mask);
    e.flags = RST_NOQUERY;
    RST_List *l = make(&e, 1);
    NetAddr in = e.addr, out = e.addr;
    if (len < bits)
      flip_bit(&in, len + (int)(test_rng() % (uint64_t)(bits - len)));
    flip_bit(&out, len - 1);
    bool in_ok = ADR_IsMulticast(&in) || RST_Match(l, &in) == RST_NOQUERY;
    bool out_ok = ADR_IsMulticast(&out) || RST_Match(l, &out) == 0;
    if (!in_ok || !out_ok)
      fprintf(stderr, "iteration %d family %d prefix %d\n", iter, family, len);
    TEST_CHECK(in_ok);
    TEST_CHECK(out_ok);
    RST_Destroy(l);
  }
}

/* The documented rule, literally: of all configured entries (defaults included), those that
 * match; the winner is the last in ascending (address, mask, ntpport, class, reverse config
 * order); its flags are the OR of every configured entry identical to it. */
static int
naive_class(uint32_t mflags)
{
  return (mflags & RST_M_INTERFACE) ? 2 : (mflags & RST_M_SOURCE) ? 0 : 1;
}

static bool
naive_matches(const RST_Entry *e, const NetAddr *a)
{
  if (e->addr.family != a->family || ((e->mflags & RST_M_NTPPORT) && a->port != 123))
    return false;
  for (int i = 0; i < 16; i++)
    if (((a->bytes[i] ^ e->addr.bytes[i]) & e->mask.bytes[i]) != 0)
      return false;
  return true;
}

/* > 0 if a sorts after b in the ascending model (so a beats b). */
static int
naive_order(const RST_Entry *a, size_t ia, const RST_Entry *b, size_t ib)
{
  NetAddr ma, mb;
  if (a->addr.family != b->addr.family)
    return a->addr.family < b->addr.family ? -1 : 1;
  ADR_ApplyMask(&a->addr, &a->mask, &ma);
  ADR_ApplyMask(&b->addr, &b->mask, &mb);
  int c = memcmp(ma.bytes, mb.bytes, 16);
  if (c == 0)
    c = memcmp(a->mask.bytes, b->mask.bytes, 16);
  if (c == 0)
    c = (int)(a->mflags & RST_M_NTPPORT) - (int)(b->mflags & RST_M_NTPPORT);
  if (c == 0)
    c = naive_class(a->mflags) - naive_class(b->mflags);
  if (c == 0)
    c = ia < ib ? 1 : ia > ib ? -1 : 0;
  return c;
}

static uint32_t
naive_match(const RST_Entry *e, size_t n, const NetAddr *src)
{
  NetAddr a = *src;
  ADR_Unmap(&a);
  if (ADR_IsMulticast(&a))
    return RST_IGNORE;
  /* The built-in defaults, as if configured last: they beat only `restrict source` /0s. */
  RST_Entry def = ent(a.family == ADR_INET4 ? "0.0.0.0/0" : "::/0", 0, 0);
  const RST_Entry *best = &def;
  size_t best_i = n;
  for (size_t i = 0; i < n; i++)
    if (naive_matches(&e[i], &a) && naive_order(&e[i], i, best, best_i) > 0) {
      best = &e[i];
      best_i = i;
    }
  uint32_t flags = 0;
  for (size_t i = 0; i < n; i++)
    if (naive_order(&e[i], 0, best, 0) == 0 && e[i].mflags == best->mflags)
      flags |= e[i].flags;
  return flags;
}

static void
random_entry(RST_Entry *e, bool allow_odd)
{
  int family = test_rng() % 3 ? ADR_INET4 : ADR_INET6, bits = family == ADR_INET4 ? 32 : 128;
  memset(e, 0, sizeof(*e));
  random_addr(family, &e->addr);
  if (family == ADR_INET6)
    e->addr.bytes[1] = (uint8_t)(test_rng() % 2); /* a few /16s so prefixes overlap */
  else
    e->addr.bytes[0] = (uint8_t)(10 + test_rng() % 2);
  int len = (int)(test_rng() % (uint64_t)(bits + 1));
  ADR_MaskFromPrefix(family, len, &e->mask);
  if (allow_odd && test_rng() % 16 == 0)
    e->mask.bytes[test_rng() % 2] ^= (uint8_t)test_rng();
  e->flags = (uint32_t)(test_rng() & 0xffff);
  uint64_t r = test_rng() % 16;
  e->mflags = (r < 4 ? RST_M_NTPPORT : 0) | (r == 5 ? RST_M_INTERFACE : 0) |
              (r == 6 ? RST_M_SOURCE : 0) | (r == 7 ? RST_M_INTERFACE | RST_M_NTPPORT : 0);
  e->ippeerlimit = -1;
}

/* A source near a random entry: its address with random host bits, sometimes a flipped
 * prefix bit; half of them from port 123. */
static void
random_source(const RST_Entry *e, size_t n, NetAddr *a)
{
  const RST_Entry *base = &e[test_rng() % n];
  int bits = ADR_Bits(&base->addr);
  *a = base->addr;
  for (int i = 0; i < bits; i++)
    if (!(base->mask.bytes[i / 8] & (0x80 >> (i % 8))) && test_rng() % 2)
      flip_bit(a, i);
  if (test_rng() % 4 == 0)
    flip_bit(a, (int)(test_rng() % (uint64_t)bits));
  a->port = test_rng() % 2 ? 123 : (uint16_t)(1024 + test_rng() % 60000);
}

static void
compare_with_naive(size_t n, bool allow_odd, int lookups)
{
  RST_Entry *e = malloc(n * sizeof(*e));
  for (size_t i = 0; i < n; i++)
    random_entry(&e[i], allow_odd);
  RST_List *l = make(e, n);
  TEST_CHECK(l != NULL);
  int bad = 0;
  for (int k = 0; k < lookups && l; k++) {
    NetAddr a;
    if (k % 10 == 0)
      random_addr(test_rng() % 2 ? ADR_INET4 : ADR_INET6, &a);
    else
      random_source(e, n, &a);
    uint32_t want = naive_match(e, n, &a), got = RST_Match(l, &a);
    if (want != got && bad++ < 5) {
      char buf[ADR_STRLEN];
      fprintf(stderr, "n=%zu %s: got 0x%x want 0x%x\n", n,
              ADR_FormatPort(&a, buf, sizeof(buf)), got, want);
    }
  }
  TEST_EQ_INT(bad, 0);
  RST_Destroy(l);
  free(e);
}

static void
test_rst_property_matches_linear_scan(void)
{
  test_rng_state = harness_seed ^ 0x5eed;
  compare_with_naive(5, false, 2000);
  compare_with_naive(50, false, 5000);
  compare_with_naive(3000, false, 5000);
}

static void
test_rst_property_matches_linear_scan_odd_masks(void)
{
  test_rng_state = harness_seed ^ 0x0dd;
  compare_with_naive(40, true, 5000);
  compare_with_naive(1000, true, 5000);
}

/* ---- micro-benchmark (NTPG_BENCH=1; prints, never asserts) ---- */

static double
now_s(void)
{
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

static void
bench_one(size_t n, int family)
{
  enum { NSRC = 4096, ITER = 4000000 };
  RST_Entry *e = malloc(n * sizeof(*e));
  NetAddr *src = malloc(NSRC * sizeof(*src));
  for (size_t i = 0; i < n; i++) {
    memset(&e[i], 0, sizeof(e[i]));
    random_addr(family, &e[i].addr);
    int bits = family == ADR_INET4 ? 32 : 128;
    int len = family == ADR_INET4 ? 8 + (int)(test_rng() % 25) : 16 + (int)(test_rng() % 113);
    ADR_MaskFromPrefix(family, len < bits ? len : bits, &e[i].mask);
    e[i].flags = (uint32_t)(test_rng() & 0xffff);
    e[i].mflags = test_rng() % 8 ? 0 : RST_M_NTPPORT;
  }
  RST_List *l = make(e, n);
  for (int i = 0; i < NSRC; i++) {
    if (i % 2)
      random_source(e, n, &src[i]);
    else
      random_addr(family, &src[i]);
  }
  uint32_t sink = 0;
  double t0 = now_s();
  for (int i = 0; i < ITER; i++)
    sink += RST_Match(l, &src[i & (NSRC - 1)]);
  double dt = now_s() - t0;
  printf("bench restrict: %5zu %s entries: %.1f ns/lookup, %zu bytes (sink %u)\n", n,
         family == ADR_INET4 ? "IPv4" : "IPv6", dt * 1e9 / ITER, RST_MemoryBytes(l), sink & 1);
  RST_Destroy(l);
  free(src);
  free(e);
}

static void
test_rst_bench(void)
{
  const char *b = getenv("NTPG_BENCH");
  if (!b || strcmp(b, "1") != 0)
    return;
  test_rng_state = harness_seed;
  bench_one(1000, ADR_INET4);
  bench_one(10000, ADR_INET4);
  bench_one(1000, ADR_INET6);
  bench_one(10000, ADR_INET6);
}

TEST_MAIN(TEST_CASE(test_rst_default_entries_present_with_no_flags),
          TEST_CASE(test_rst_default_entry_takes_configured_flags),
          TEST_CASE(test_rst_most_specific_prefix_wins),
          TEST_CASE(test_rst_host_entry_beats_its_network),
          TEST_CASE(test_rst_last_match_in_ascending_order_wins),
          TEST_CASE(test_rst_ntpport_entry_matches_only_port_123),
          TEST_CASE(test_rst_ntpport_is_more_specific_than_same_prefix),
          TEST_CASE(test_rst_ntpport_does_not_beat_longer_prefix),
          TEST_CASE(test_rst_interface_entry_wins_tie_source_entry_loses),
          TEST_CASE(test_rst_interface_self_block_entry), TEST_CASE(test_rst_ipv6_prefixes),
          TEST_CASE(test_rst_ipv4_mapped_source_matches_ipv4_list),
          TEST_CASE(test_rst_ipv4_mapped_entry_becomes_ipv4),
          TEST_CASE(test_rst_copy_matches_like_the_original),
          TEST_CASE(test_rst_repeated_entry_ors_flags),
          TEST_CASE(test_rst_same_prefix_other_mflags_not_merged),
          TEST_CASE(test_rst_multicast_source_is_ignored),
          TEST_CASE(test_rst_noncontiguous_mask_uses_sort_order),
          TEST_CASE(test_rst_bad_entries_rejected_with_message),
          TEST_CASE(test_rst_memory_bytes_counted),
          TEST_CASE(test_rst_property_prefix_bit_flips),
          TEST_CASE(test_rst_property_matches_linear_scan),
          TEST_CASE(test_rst_property_matches_linear_scan_odd_masks),
          TEST_CASE(test_rst_bench))
