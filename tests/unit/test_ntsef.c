/* Unit tests for the NTS extension fields (ntsef.c) and the key store the serving threads
 * read (ntscookie.c NCK_Store, with a writer thread: label threads, run under TSan). */
#include "ntsef.h"

#include "harness.h"

#include <pthread.h>
#include <string.h>

#include "packet.h"

typedef struct {
  SIV_Ctx *siv;
  NCK_Keys keys;
  uint8_t c2s[32], s2c[32], uid[32], nonce[16], cookie[NCK_COOKIE_LEN];
  uint8_t rnd[16 * (1 + NEF_MAX_COOKIES)];
} Fix;

static void
fill(uint8_t *b, size_t n, uint8_t seed)
{
  for (size_t i = 0; i < n; i++)
    b[i] = (uint8_t)(seed + i * 13);
}

static void
setup(Fix *f)
{
  uint8_t mk[32];
  memset(f, 0, sizeof(*f));
  f->siv = SIV_Create();
  fill(mk, 32, 1);
  fill(f->c2s, 32, 2);
  fill(f->s2c, 32, 3);
  fill(f->uid, 32, 4);
  fill(f->nonce, 16, 5);
  fill(f->rnd, sizeof(f->rnd), 6);
  NCK_Rotate(&f->keys, 1000, 42, mk);
  TEST_CHECK(NCK_Seal(&f->keys, f->siv, f->c2s, f->s2c, f->nonce, f->cookie));
}

/* A client request with `ph` placeholders into pkt; its length. */
static size_t
request(Fix *f, uint8_t *pkt, unsigned ph)
{
  memset(pkt, 0, PKT_MAX_LEN);
  pkt[0] = 0x23; /* v4 client */
  pkt[40] = 0x77;
  size_t len = NEF_BuildRequest(pkt, PKT_MAX_LEN, f->uid, 32, f->cookie, NCK_COOKIE_LEN, ph,
                                f->c2s, f->nonce, f->siv);
  TEST_CHECK(len > 0);
  return len;
}

/* The whole server side on pkt: parse, open, build, seal. The reply's length or 0. */
static size_t
serve(Fix *f, const uint8_t *pkt, size_t len, uint8_t *out, NEF_OpenStatus *st)
{
  NEF_Request r;
  NEF_Session s;
  NEF_Pending p;
  size_t used;
  if (NEF_ParseRequest(pkt, len, &r) != NEF_OK)
    return 0;
  *st = NEF_Open(pkt, &r, &f->keys, f->siv, &s);
  if (*st != NEF_OPEN_OK)
    return NEF_BuildNak(out, pkt, &r);
  memset(out, 0, PKT_HEADER_LEN);
  out[0] = 0x24;
  size_t n = NEF_BuildReply(out, len, pkt, &r, &s, &f->keys, f->siv, f->rnd, sizeof(f->rnd),
                            &p, &used);
  out[40] = 0x55; /* the transmit timestamp, written before the seal */
  TEST_CHECK(n > 0 && NEF_Seal(out, &p, f->siv));
  return n;
}

static void
test_request_answered_with_cookies(void)
{
  Fix f;
  setup(&f);
  uint8_t pkt[PKT_MAX_LEN], out[PKT_MAX_LEN], cookies[8 * 128];
  size_t lens[8], n;
  NEF_OpenStatus st;
  for (unsigned ph = 0; ph <= 9; ph++) {
    size_t len = request(&f, pkt, ph);
    size_t rl = serve(&f, pkt, len, out, &st);
    TEST_EQ_INT(st, NEF_OPEN_OK);
    TEST_CHECK(rl > 0 && rl <= len); /* never larger than the request */
    TEST_EQ_INT(NEF_OpenReply(out, rl, f.uid, 32, f.s2c, f.siv, cookies, 128, lens, 8, &n),
                NEF_REPLY_OK);
    TEST_EQ_INT(n, ph + 1 > NEF_MAX_COOKIES ? NEF_MAX_COOKIES : ph + 1);
    /* each fresh cookie opens to the session's keys */
    uint8_t a[32], b[32];
    for (size_t i = 0; i < n; i++) {
      TEST_EQ_INT(lens[i], NCK_COOKIE_LEN);
      TEST_EQ_INT(NCK_Open(&f.keys, f.siv, cookies + i * 128, lens[i], a, b), NCK_OK);
      TEST_CHECK(memcmp(a, f.c2s, 32) == 0 && memcmp(b, f.s2c, 32) == 0);
    }
    /* the cookies are not in the reply in clear */
    TEST_CHECK(memmem(out, rl, cookies + NCK_COOKIE_LEN - 16, 16) == NULL);
    out[40] ^= 1; /* the header is covered by the authenticator */
    TEST_EQ_INT(NEF_OpenReply(out, rl, f.uid, 32, f.s2c, f.siv, cookies, 128, lens, 8, &n),
                NEF_REPLY_BAD_AUTH);
  }
  SIV_Destroy(f.siv);
}

static void
test_size_rule_limits_cookies(void)
{
  Fix f;
  setup(&f);
  uint8_t pkt[PKT_MAX_LEN], out[PKT_MAX_LEN];
  size_t len = request(&f, pkt, 3), used;
  NEF_Request r;
  NEF_Session s;
  NEF_Pending p;
  TEST_EQ_INT(NEF_ParseRequest(pkt, len, &r), NEF_OK);
  TEST_EQ_INT(NEF_Open(pkt, &r, &f.keys, f.siv, &s), NEF_OPEN_OK);
  TEST_EQ_INT(s.want, 4);
  /* room for two cookies only: two are sent */
  size_t cap = PKT_HEADER_LEN + 36 + 40 + 2 * NEF_COOKIE_EF + 50;
  size_t rl =
      NEF_BuildReply(out, cap, pkt, &r, &s, &f.keys, f.siv, f.rnd, sizeof(f.rnd), &p, &used);
  TEST_EQ_INT(rl, PKT_HEADER_LEN + 36 + 40 + 2 * NEF_COOKIE_EF);
  TEST_EQ_INT(used, 3 * 16);
  /* randomness for one cookie only: one is sent */
  rl = NEF_BuildReply(out, len, pkt, &r, &s, &f.keys, f.siv, f.rnd, 32, &p, &used);
  TEST_EQ_INT(rl, PKT_HEADER_LEN + 36 + 40 + NEF_COOKIE_EF);
  /* no room at all */
  TEST_EQ_INT(NEF_BuildReply(out, PKT_HEADER_LEN + 36 + 39, pkt, &r, &s, &f.keys, f.siv, f.rnd,
                             sizeof(f.rnd), &p, &used),
              0);
  SIV_Destroy(f.siv);
}

static void
test_tampering_gives_nak(void)
{
  Fix f;
  setup(&f);
  uint8_t pkt[PKT_MAX_LEN], out[PKT_MAX_LEN];
  size_t len = request(&f, pkt, 1);
  NEF_Request r;
  NEF_OpenStatus st;
  TEST_EQ_INT(NEF_ParseRequest(pkt, len, &r), NEF_OK);
  for (size_t i = 0; i < len; i++) {
    pkt[i] ^= 0x04;
    NEF_Request r2;
    NEF_Status ps = NEF_ParseRequest(pkt, len, &r2);
    if (ps == NEF_OK) {
      size_t rl = serve(&f, pkt, len, out, &st);
      bool in_cookie = i >= r.cookie_off && i < r.cookie_off + r.cookie_len;
      /* anything else (header, identifier, a placeholder's body, nonce, tag) is covered */
      TEST_EQ_INT(st, in_cookie ? NEF_OPEN_COOKIE : NEF_OPEN_AUTH);
      TEST_EQ_INT(rl, PKT_HEADER_LEN + 36); /* the NAK: the identifier, nothing more */
      TEST_CHECK(memcmp(out + PKT_HEADER_LEN, pkt + r2.uid_off, 36) == 0);
    }
    pkt[i] ^= 0x04;
  }
  /* an unknown master key */
  NCK_Keys other = {.n = 0};
  uint8_t mk[32];
  fill(mk, 32, 99);
  NCK_Rotate(&other, 5, 7, mk);
  NEF_Session s;
  TEST_EQ_INT(NEF_Open(pkt, &r, &other, f.siv, &s), NEF_OPEN_COOKIE);
  SIV_Destroy(f.siv);
}

static void
test_malformed_requests(void)
{
  Fix f;
  setup(&f);
  uint8_t pkt[PKT_MAX_LEN], copy[PKT_MAX_LEN];
  NEF_Request r;
  size_t len = request(&f, pkt, 1);
  memcpy(copy, pkt, len);
  /* plain requests are not NTS */
  TEST_EQ_INT(NEF_ParseRequest(pkt, 48, &r), NEF_NOT_NTS);
  uint8_t unk[48 + 16] = {0x23};
  PKT_Put16(unk + 48, 0x7777);
  PKT_Put16(unk + 50, 16);
  TEST_EQ_INT(NEF_ParseRequest(unk, sizeof(unk), &r), NEF_NOT_NTS);
  /* missing Unique Identifier: retype it */
  PKT_Put16(pkt + 48, 0x7777);
  TEST_EQ_INT(NEF_ParseRequest(pkt, len, &r), NEF_MALFORMED);
  memcpy(pkt, copy, len);
  /* two Unique Identifiers: the cookie retyped (and so no cookie either) */
  PKT_Put16(pkt + 48 + 36, NEF_UNIQUE_ID);
  TEST_EQ_INT(NEF_ParseRequest(pkt, len, &r), NEF_MALFORMED);
  memcpy(pkt, copy, len);
  /* two cookies: the placeholder retyped */
  PKT_Put16(pkt + 48 + 36 + 104, NEF_COOKIE);
  TEST_EQ_INT(NEF_ParseRequest(pkt, len, &r), NEF_MALFORMED);
  memcpy(pkt, copy, len);
  /* a short Unique Identifier (28 octets of body) */
  uint8_t small[PKT_MAX_LEN];
  memset(small, 0, sizeof(small));
  small[0] = 0x23;
  size_t sl = NEF_BuildRequest(small, sizeof(small), f.uid, 28, f.cookie, NCK_COOKIE_LEN, 0,
                               f.c2s, f.nonce, f.siv);
  TEST_EQ_INT(NEF_ParseRequest(small, sl, &r), NEF_MALFORMED);
  /* a placeholder of another length than the cookie */
  PKT_Put16(pkt + 48 + 36 + 104 + 2, 100);
  TEST_EQ_INT(NEF_ParseRequest(pkt, len, &r), NEF_MALFORMED);
  memcpy(pkt, copy, len);
  /* authenticator not last: something after it */
  memset(pkt + len, 0, 16);
  PKT_Put16(pkt + len, 0x7777);
  PKT_Put16(pkt + len + 2, 16);
  TEST_EQ_INT(NEF_ParseRequest(pkt, len + 16, &r), NEF_MALFORMED);
  /* ... or a MAC */
  TEST_EQ_INT(NEF_ParseRequest(pkt, len + 20, &r), NEF_MALFORMED);
  /* nonce and ciphertext lengths that do not fit, a nonce span under 16, no tag */
  size_t a = len - 40;
  const uint16_t bad[][2] = {{16, 17}, {33, 16}, {0, 16}, {16, 15}, {12, 20}};
  for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
    PKT_Put16(pkt + a + 4, bad[i][0]);
    PKT_Put16(pkt + a + 6, bad[i][1]);
    TEST_EQ_INT(NEF_ParseRequest(pkt, len, &r), NEF_MALFORMED);
  }
  memcpy(pkt, copy, len);
  /* a field length that runs past the end, and one under 16: the first field unreadable is
   * no NTS (the packet codec drops it), a later one breaks the NTS rules */
  PKT_Put16(pkt + 48 + 2, 1000);
  TEST_EQ_INT(NEF_ParseRequest(pkt, len, &r), NEF_NOT_NTS);
  PKT_Put16(pkt + 48 + 2, 36);
  PKT_Put16(pkt + 48 + 36 + 2, 12);
  TEST_EQ_INT(NEF_ParseRequest(pkt, len, &r), NEF_MALFORMED);
  PKT_Put16(pkt + 48 + 36 + 2, 1000);
  TEST_EQ_INT(NEF_ParseRequest(pkt, len, &r), NEF_MALFORMED);
  memcpy(pkt, copy, len);
  TEST_EQ_INT(NEF_ParseRequest(pkt, len, &r), NEF_OK);
  /* every truncation is refused or not NTS, never read past the end */
  for (size_t l = 48; l < len; l += 4)
    TEST_CHECK(NEF_ParseRequest(pkt, l, &r) != NEF_OK);
  SIV_Destroy(f.siv);
}

/* Writer rotates and publishes while readers refresh: every copy a reader gets is one of
 * the sets published, whole (TSan: no race). */
typedef struct {
  NCK_Store *store;
  int rounds;
} StoreArg;

static void *
writer(void *arg)
{
  StoreArg *a = arg;
  NCK_Keys k = {.n = 0};
  uint8_t key[32];
  for (int i = 0; i < a->rounds; i++) {
    memset(key, i & 0xff, sizeof(key));
    NCK_Rotate(&k, i, (uint32_t)i, key);
    NCK_StorePublish(a->store, &k);
  }
  return NULL;
}

static void *
reader(void *arg)
{
  StoreArg *a = arg;
  NCK_Keys k = {.n = 0};
  uint64_t gen = 0;
  long bad = 0;
  for (int i = 0; i < 20 * a->rounds; i++)
    if (NCK_StoreRefresh(a->store, &k, &gen))
      for (size_t j = 0; j < k.n; j++)
        bad += k.keys[j].key[5] != (uint8_t)(k.keys[j].id & 0xff);
  return (void *)bad;
}

static void
test_store_shared_between_threads(void)
{
  NCK_Store *s = NCK_StoreCreate();
  StoreArg a = {s, 2000};
  pthread_t w, r[2];
  NCK_Keys k = {.n = 0};
  uint64_t gen = 0;
  TEST_CHECK(!NCK_StoreRefresh(s, &k, &gen)); /* nothing published yet */
  pthread_create(&w, NULL, writer, &a);
  pthread_create(&r[0], NULL, reader, &a);
  pthread_create(&r[1], NULL, reader, &a);
  void *bad0, *bad1;
  pthread_join(w, NULL);
  pthread_join(r[0], &bad0);
  pthread_join(r[1], &bad1);
  TEST_CHECK(bad0 == NULL && bad1 == NULL);
  TEST_CHECK(NCK_StoreRefresh(s, &k, &gen));
  TEST_EQ_INT(k.keys[0].id, 1999);
  TEST_CHECK(!NCK_StoreRefresh(s, &k, &gen)); /* up to date: no copy */
  NCK_StoreDestroy(s);
}

TEST_MAIN(TEST_CASE(test_request_answered_with_cookies),
          TEST_CASE(test_size_rule_limits_cookies), TEST_CASE(test_tampering_gives_nak),
          TEST_CASE(test_malformed_requests), TEST_CASE(test_store_shared_between_threads))
