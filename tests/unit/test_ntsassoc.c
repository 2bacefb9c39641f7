/* Unit tests for the NTS client's pure core (ntsassoc.c): the cookie jar, the request's NTS
 * fields (checked by our own server side, ntsef.c, with a cookie master key), the reply's
 * check (authenticated, tampered, another identifier, replayed, NTSN), the re-keying and its
 * back-off, and with assoc.c: an unauthenticated KoD has no effect on an NTS association, an
 * authenticated DENY stops it at once. */
#include "ntsassoc.h"

#include <math.h>
#include <string.h>

#include "assoc.h"
#include "harness.h"
#include "ntsef.h"
#include "packet.h"
#include "rng.h"

#define S 1000000000LL

typedef struct {
  SIV_Ctx *siv;
  NCK_Keys keys; /* the server's cookie master keys */
  uint8_t c2s[32], s2c[32];
  NTA_State st;
  uint8_t rnd[NTA_RANDOM];
  unsigned rnd_seq;
} Fix;

static void
fill(uint8_t *b, size_t n, uint8_t seed)
{
  for (size_t i = 0; i < n; i++)
    b[i] = (uint8_t)(seed + i * 13);
}

/* Fresh random octets for each request (identifier and nonce). */
static const uint8_t *
next_rnd(Fix *f)
{
  fill(f->rnd, sizeof(f->rnd), (uint8_t)(++f->rnd_seq * 7));
  return f->rnd;
}

/* A handshake's result: n cookies sealed by the server for our keys. */
static void
handshake(Fix *f, size_t n, int64_t now)
{
  uint8_t cookies[NTA_JAR][NCK_COOKIE_LEN], nonce[16];
  const uint8_t *ptr[NTA_JAR];
  uint16_t lens[NTA_JAR];
  for (size_t i = 0; i < n; i++) {
    fill(nonce, 16, (uint8_t)(40 + i + f->rnd_seq));
    TEST_CHECK(NCK_Seal(&f->keys, f->siv, f->c2s, f->s2c, nonce, cookies[i]));
    ptr[i] = cookies[i];
    lens[i] = NCK_COOKIE_LEN;
  }
  NTA_KeStarted(&f->st);
  TEST_CHECK(NTA_KeDone(&f->st, f->c2s, f->s2c, ptr, lens, n, now));
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
  NCK_Rotate(&f->keys, 1000, 42, mk);
  NTA_Init(&f->st);
}

static void
teardown(Fix *f)
{
  SIV_Destroy(f->siv);
  NTA_Clear(&f->st);
}

/* A 48-octet client header, then our NTS fields. */
static size_t
request(Fix *f, uint8_t *pkt, int64_t now, NTA_TxStatus *st)
{
  PKT_Header h = {.version = 4, .mode = PKT_MODE_CLIENT, .tx_ts = 0x1122334455667788ull};
  size_t len = 0;
  PKT_EncodeHeader(&h, pkt);
  *st = NTA_Seal(&f->st, pkt, PKT_MAX_LEN, next_rnd(f), f->siv, now, &len);
  return len;
}

/* The server's answer to req (our ntsef.c server side): a reply with hdr as its header, the
 * identifier and fresh cookies, sealed; or the NTSN KoD if nak. 0 if the server would not
 * open the request. */
static size_t
serve(Fix *f, const uint8_t *req, size_t rlen, const PKT_Header *hdr, uint8_t *out,
      unsigned *want)
{
  NEF_Request r;
  NEF_Session s;
  NEF_Pending pd;
  uint8_t rnd[16 * (1 + NEF_MAX_COOKIES)];
  size_t used;
  fill(rnd, sizeof(rnd), 99);
  if (NEF_ParseRequest(req, rlen, &r) != NEF_OK ||
      NEF_Open(req, &r, &f->keys, f->siv, &s) != NEF_OPEN_OK)
    return 0;
  *want = s.want;
  PKT_EncodeHeader(hdr, out);
  size_t n =
      NEF_BuildReply(out, rlen, req, &r, &s, &f->keys, f->siv, rnd, sizeof(rnd), &pd, &used);
  TEST_CHECK(n > 0 && NEF_Seal(out, &pd, f->siv));
  return n;
}

static size_t
nak(const uint8_t *req, size_t rlen, uint8_t *out)
{
  NEF_Request r;
  TEST_CHECK(NEF_ParseRequest(req, rlen, &r) == NEF_OK);
  PKT_Header h = {.leap = PKT_LEAP_UNSYNC,
                  .version = 4,
                  .mode = PKT_MODE_SERVER,
                  .refid = PKT_RefidFromCode("NTSN")};
  PKT_EncodeHeader(&h, out);
  return NEF_BuildNak(out, req, &r);
}

static const PKT_Header good_hdr = {.version = 4, .mode = PKT_MODE_SERVER, .stratum = 2};

static void
test_first_handshake_is_due_at_once(void)
{
  Fix f;
  setup(&f);
  TEST_CHECK(NTA_KeDue(&f.st, 0));
  NTA_KeStarted(&f.st);
  TEST_CHECK(!NTA_KeDue(&f.st, 100 * S)); /* one at a time */
  uint8_t pkt[PKT_MAX_LEN];
  NTA_TxStatus ts;
  TEST_EQ_INT(request(&f, pkt, 0, &ts), 0);
  TEST_EQ_INT(ts, NTA_TX_NO_COOKIE); /* nothing to send: never plain NTP */
  handshake(&f, 8, 0);
  TEST_EQ_INT(f.st.n, 8);
  TEST_CHECK(!NTA_KeDue(&f.st, 0));
  TEST_EQ_INT(f.st.handshakes, 1);
  /* a handshake without a usable cookie is a failure */
  uint16_t zero = 0;
  const uint8_t *none[1] = {pkt};
  NTA_KeStarted(&f.st);
  TEST_CHECK(!NTA_KeDone(&f.st, f.c2s, f.s2c, none, &zero, 1, 0));
  TEST_EQ_INT(f.st.n, 8); /* the old jar stays until a handshake succeeds */
  teardown(&f);
}

/* Each request takes one cookie (never sent twice), asks for enough to refill the jar, and
 * is accepted by the server; the reply's cookies refill the jar. */
static void
test_requests_use_each_cookie_once_and_refill(void)
{
  Fix f;
  setup(&f);
  handshake(&f, 8, 0);
  uint8_t req[PKT_MAX_LEN], rep[PKT_MAX_LEN], seen[8][NCK_COOKIE_LEN];
  NTA_TxStatus ts;
  for (unsigned i = 0; i < 3; i++) { /* three lost requests */
    size_t n = request(&f, req, 0, &ts);
    TEST_EQ_INT(ts, NTA_TX_OK);
    NEF_Request r;
    TEST_EQ_INT(NEF_ParseRequest(req, n, &r), NEF_OK);
    TEST_EQ_INT(r.placeholders, i); /* 8 - cookies held before this one */
    memcpy(seen[i], req + r.cookie_off, NCK_COOKIE_LEN);
    for (unsigned k = 0; k < i; k++)
      TEST_CHECK(memcmp(seen[k], seen[i], NCK_COOKIE_LEN) != 0);
    TEST_EQ_INT(f.st.n, 7 - i);
  }
  size_t n = request(&f, req, 0, &ts);
  unsigned want = 0, fresh = 0;
  size_t rl = serve(&f, req, n, &good_hdr, rep, &want);
  TEST_EQ_INT(want, 4);
  TEST_EQ_INT(NTA_Open(&f.st, rep, rl, f.siv, 0, &fresh), NTA_RX_AUTH);
  TEST_EQ_INT(fresh, 4);
  TEST_EQ_INT(f.st.n, 8);
  /* a replay of the same reply: nothing pending any more */
  TEST_EQ_INT(NTA_Open(&f.st, rep, rl, f.siv, 0, &fresh), NTA_RX_NOT_PENDING);
  TEST_EQ_INT(f.st.n, 8);
  teardown(&f);
}

static void
test_tampered_and_foreign_replies_are_dropped(void)
{
  Fix f;
  setup(&f);
  handshake(&f, 8, 0);
  uint8_t old[PKT_MAX_LEN], req[PKT_MAX_LEN], rep[PKT_MAX_LEN], bad[PKT_MAX_LEN];
  NTA_TxStatus ts;
  unsigned want, fresh;
  size_t on = request(&f, old, 0, &ts);
  size_t n = request(&f, req, 0, &ts);
  /* the answer to the earlier request carries another identifier */
  size_t rl = serve(&f, old, on, &good_hdr, rep, &want);
  TEST_EQ_INT(NTA_Open(&f.st, rep, rl, f.siv, 0, &fresh), NTA_RX_UNAUTH);
  rl = serve(&f, req, n, &good_hdr, rep, &want);
  /* every single flipped bit (header, identifier, authenticator) breaks it */
  for (size_t i = 0; i < rl; i += 7) {
    memcpy(bad, rep, rl);
    bad[i] ^= 0x10;
    NTA_RxStatus rs = NTA_Open(&f.st, bad, rl, f.siv, 0, &fresh);
    TEST_CHECK(rs == NTA_RX_UNAUTH || rs == NTA_RX_UNAUTH_KOD);
    TEST_EQ_INT(fresh, 0);
  }
  TEST_CHECK(f.st.pending); /* the forgeries changed nothing */
  TEST_EQ_INT(f.st.n, 6);
  /* a reply sealed with another key (a server that does not hold our session) */
  uint8_t s2c[32];
  memcpy(s2c, f.st.s2c, 32);
  f.st.s2c[0] ^= 1;
  TEST_EQ_INT(NTA_Open(&f.st, rep, rl, f.siv, 0, &fresh), NTA_RX_UNAUTH);
  memcpy(f.st.s2c, s2c, 32);
  /* a plain reply without NTS fields */
  TEST_EQ_INT(NTA_Open(&f.st, rep, PKT_HEADER_LEN, f.siv, 0, &fresh), NTA_RX_UNAUTH);
  TEST_EQ_INT(NTA_Open(&f.st, rep, rl, f.siv, 0, &fresh), NTA_RX_AUTH);
  TEST_EQ_INT(f.st.n, 8);
  teardown(&f);
}

/* NTSN with our identifier: no re-keying yet; the next poll still goes out with an old
 * cookie and asks for a handshake (RFC 8915 5.7); the handshake replaces the old cookies. An
 * NTSN with another identifier is an unauthenticated KoD: ignored. */
static void
test_ntsn_rekeys_at_the_next_poll(void)
{
  Fix f;
  setup(&f);
  handshake(&f, 8, 0);
  uint8_t req[PKT_MAX_LEN], rep[PKT_MAX_LEN], other[PKT_MAX_LEN];
  NTA_TxStatus ts;
  unsigned want, fresh;
  size_t n = request(&f, req, 0, &ts);
  size_t rl = serve(&f, req, n, &good_hdr, rep, &want);
  TEST_EQ_INT(NTA_Open(&f.st, rep, rl, f.siv, 0, &fresh), NTA_RX_AUTH);
  size_t on = request(&f, other, 0, &ts);
  n = request(&f, req, 0, &ts);
  TEST_EQ_INT(NTA_Open(&f.st, rep, nak(other, on, rep), f.siv, 0, &fresh), NTA_RX_UNAUTH_KOD);
  TEST_EQ_INT(NTA_Open(&f.st, rep, nak(req, n, rep), f.siv, 0, &fresh), NTA_RX_NAK);
  TEST_CHECK(!NTA_KeDue(&f.st, 10 * S));
  n = request(&f, req, 10 * S, &ts);
  TEST_EQ_INT(ts, NTA_TX_OK);
  TEST_CHECK(NTA_KeDue(&f.st, 10 * S)); /* after good service: at once */
  handshake(&f, 5, 11 * S);
  TEST_EQ_INT(f.st.n, 5);
  TEST_CHECK(!f.st.pending && !f.st.nak);
  teardown(&f);
}

/* An empty jar stops the sending and asks for a handshake: at once after good service, after
 * the back-off when the last handshake brought no authenticated reply; failures double it. */
static void
test_empty_jar_and_backoff(void)
{
  Fix f;
  setup(&f);
  handshake(&f, 2, 0);
  uint8_t req[PKT_MAX_LEN];
  NTA_TxStatus ts;
  request(&f, req, 0, &ts);
  request(&f, req, 0, &ts);
  TEST_EQ_INT(request(&f, req, 5 * S, &ts), 0);
  TEST_EQ_INT(ts, NTA_TX_NO_COOKIE);
  TEST_CHECK(!NTA_KeDue(&f.st, 5 * S)); /* no authenticated reply since the handshake */
  TEST_CHECK(!NTA_KeDue(&f.st, 20 * S));
  TEST_CHECK(NTA_KeDue(&f.st, 21 * S)); /* 16 s */
  NTA_KeStarted(&f.st);
  TEST_NEAR(NTA_KeFailed(&f.st, 21 * S), 32, 1e-9);
  TEST_CHECK(!NTA_KeDue(&f.st, 52 * S) && NTA_KeDue(&f.st, 53 * S));
  double b = 0;
  for (int i = 0; i < 12; i++)
    b = NTA_KeFailed(&f.st, 0);
  TEST_NEAR(b, NTA_BACKOFF_MAX, 1e-9);
  TEST_NEAR(NTA_Backoff(0), 0, 1e-9);
  TEST_NEAR(NTA_Backoff(1), 16, 1e-9);
  TEST_NEAR(NTA_Backoff(4), 128, 1e-9);
  TEST_NEAR(NTA_Backoff(9), 3600, 1e-9);
  /* an authenticated reply resets the failures */
  handshake(&f, 8, 0);
  size_t n = request(&f, req, 0, &ts);
  uint8_t rep[PKT_MAX_LEN];
  unsigned want, fresh;
  size_t rl = serve(&f, req, n, &good_hdr, rep, &want);
  TEST_EQ_INT(NTA_Open(&f.st, rep, rl, f.siv, 0, &fresh), NTA_RX_AUTH);
  TEST_EQ_INT(f.st.failures, 0);
  teardown(&f);
}

/* Cookies of the largest size we take: the placeholders shrink so the request stays within
 * PKT_MAX_LEN (and the reply, never larger than the request, can still bring one back). */
static void
test_large_cookies_fit(void)
{
  Fix f;
  setup(&f);
  static uint8_t big[NTA_JAR][NKE_MAX_COOKIE];
  const uint8_t *ptr[NTA_JAR];
  uint16_t lens[NTA_JAR];
  for (int i = 0; i < NTA_JAR; i++) {
    memset(big[i], i, NKE_MAX_COOKIE);
    ptr[i] = big[i];
    lens[i] = NKE_MAX_COOKIE;
  }
  TEST_CHECK(NTA_KeDone(&f.st, f.c2s, f.s2c, ptr, lens, 1, 0));
  uint8_t req[PKT_MAX_LEN];
  NTA_TxStatus ts;
  size_t n = request(&f, req, 0, &ts);
  TEST_EQ_INT(ts, NTA_TX_OK);
  TEST_CHECK(n > 0 && n <= PKT_MAX_LEN);
  NEF_Request r;
  TEST_EQ_INT(NEF_ParseRequest(req, n, &r), NEF_OK);
  TEST_EQ_INT(r.placeholders, 4); /* 5 fields of 260 octets fit in 1500, 6 do not */
  teardown(&f);
}

/* ---- with the association (assoc.c) ---- */

static RNG_State rng;

static bool
rfill(void *ctx, void *buf, size_t len)
{
  uint8_t *p = buf;
  for (size_t i = 0; i < len; i++)
    p[i] = (uint8_t)RNG_Next(ctx);
  return true;
}

static NTT_Now
at(double s)
{
  NTT_Now n = {.real = {1700000000 + (time_t)s, (long)((s - floor(s)) * 1e9)},
               .mono_ns = (int64_t)llround(s * 1e9)};
  return n;
}

/* An NTS association, its request sent (header from assoc, fields from ntsassoc). */
static ASC_Assoc *
nts_assoc(Fix *f, NetAddr *addr, uint8_t *req, size_t *rlen, PKT_Header *rh)
{
  static ASC_Random rnd = {rfill, &rng};
  RNG_Init(&rng, harness_seed);
  ADR_Parse("192.0.2.10", addr);
  addr->port = 123;
  ASC_Params p;
  ASC_DefaultParams(addr, &p);
  p.nts = true;
  NTT_Now now = at(0);
  ASC_Assoc *a = ASC_Create(&p, &now, &rnd);
  now = at(2);
  size_t len;
  TEST_EQ_INT(ASC_BuildRequest(a, &now, NULL, &rnd, req, &len), ASC_TX_SEND);
  TEST_EQ_INT(len, PKT_HEADER_LEN);
  PKT_DecodeHeader(req, len, rh);
  TEST_EQ_INT(NTA_Seal(&f->st, req, PKT_MAX_LEN, next_rnd(f), f->siv, 2 * S, rlen), NTA_TX_OK);
  return a;
}

static PKT_Header
kod_hdr(uint64_t origin, const char *code)
{
  return (PKT_Header){.leap = PKT_LEAP_UNSYNC,
                      .version = 4,
                      .mode = PKT_MODE_SERVER,
                      .refid = PKT_RefidFromCode(code),
                      .org_ts = origin,
                      .rx_ts = origin,
                      .tx_ts = origin};
}

static void
test_unauthenticated_kod_is_ignored(void)
{
  Fix f;
  setup(&f);
  handshake(&f, 8, 0);
  NetAddr addr;
  uint8_t req[PKT_MAX_LEN], rep[PKT_MAX_LEN];
  size_t rlen;
  PKT_Header rh;
  ASC_Assoc *a = nts_assoc(&f, &addr, req, &rlen, &rh);
  const char *codes[] = {"DENY", "RSTR", "RATE"};
  for (int i = 0; i < 3; i++) {
    PKT_Header h = kod_hdr(rh.tx_ts, codes[i]); /* the right origin: an on-path forger */
    PKT_EncodeHeader(&h, rep);
    unsigned fresh;
    NTA_RxStatus ns = NTA_Open(&f.st, rep, PKT_HEADER_LEN, f.siv, 0, &fresh);
    TEST_EQ_INT(ns, NTA_RX_UNAUTH_KOD);
    ASC_Result res;
    NTT_Now rx = at(2.01);
    TEST_EQ_INT(
        ASC_ProcessNtsReply(a, rep, PKT_HEADER_LEN, &addr, &rx, ns == NTA_RX_AUTH, &res),
        ASC_DROP_AUTH);
    ASC_Status st;
    ASC_GetStatus(a, &st);
    TEST_CHECK(!st.denied && st.silent_until_ns == 0 && st.pending && st.rate_floor == 6);
  }
  /* the plain entry point never accepts anything for an NTS association */
  ASC_Result res;
  NTT_Now rx = at(2.01);
  TEST_EQ_INT(ASC_ProcessReply(a, rep, PKT_HEADER_LEN, &addr, &rx, NULL, &res), ASC_DROP_AUTH);
  ASC_Destroy(a);
  teardown(&f);
}

static void
test_authenticated_deny_stops_at_once(void)
{
  Fix f;
  setup(&f);
  handshake(&f, 8, 0);
  NetAddr addr;
  uint8_t req[PKT_MAX_LEN], rep[PKT_MAX_LEN];
  size_t rlen;
  PKT_Header rh;
  ASC_Assoc *a = nts_assoc(&f, &addr, req, &rlen, &rh);
  PKT_Header h = kod_hdr(rh.tx_ts, "DENY");
  unsigned want, fresh;
  size_t n = serve(&f, req, rlen, &h, rep, &want);
  NTA_RxStatus ns = NTA_Open(&f.st, rep, n, f.siv, 0, &fresh);
  TEST_EQ_INT(ns, NTA_RX_AUTH);
  ASC_Result res;
  NTT_Now rx = at(2.01);
  TEST_EQ_INT(ASC_ProcessNtsReply(a, rep, n, &addr, &rx, true, &res), ASC_KOD_DENY);
  ASC_Status st;
  ASC_GetStatus(a, &st);
  TEST_CHECK(st.denied && st.silent_until_ns > rx.mono_ns);
  TEST_CHECK(ASC_NextPollTime(a) >= st.silent_until_ns);
  ASC_Destroy(a);
  teardown(&f);
}

/* An authenticated good reply is a sample; the same datagram said to be unauthenticated is
 * not. */
static void
test_authenticated_reply_is_a_sample(void)
{
  Fix f;
  setup(&f);
  handshake(&f, 8, 0);
  NetAddr addr;
  uint8_t req[PKT_MAX_LEN], rep[PKT_MAX_LEN];
  size_t rlen;
  PKT_Header rh;
  ASC_Assoc *a = nts_assoc(&f, &addr, req, &rlen, &rh);
  NTT_Now srv = at(2.005);
  NTT_Stamp s = NTT_FromTimespec(&srv.real);
  PKT_Header h = {.version = 4,
                  .mode = PKT_MODE_SERVER,
                  .stratum = 2,
                  .precision = -20,
                  .root_delay = NTT_ShortFromDouble(0.01),
                  .root_disp = NTT_ShortFromDouble(0.01),
                  .refid = 0x0a000001,
                  .ref_ts = NTT_Add(s, -30),
                  .org_ts = rh.tx_ts,
                  .rx_ts = s,
                  .tx_ts = NTT_Add(s, 0.0001)};
  unsigned want, fresh;
  size_t n = serve(&f, req, rlen, &h, rep, &want);
  ASC_Result res;
  NTT_Now rx = at(2.01);
  TEST_EQ_INT(ASC_ProcessNtsReply(a, rep, n, &addr, &rx, false, &res), ASC_DROP_AUTH);
  TEST_EQ_INT(NTA_Open(&f.st, rep, n, f.siv, 0, &fresh), NTA_RX_AUTH);
  TEST_EQ_INT(ASC_ProcessNtsReply(a, rep, n, &addr, &rx, true, &res), ASC_SAMPLE);
  ASC_Destroy(a);
  teardown(&f);
}

TEST_MAIN(TEST_CASE(test_first_handshake_is_due_at_once),
          TEST_CASE(test_requests_use_each_cookie_once_and_refill),
          TEST_CASE(test_tampered_and_foreign_replies_are_dropped),
          TEST_CASE(test_ntsn_rekeys_at_the_next_poll), TEST_CASE(test_empty_jar_and_backoff),
          TEST_CASE(test_large_cookies_fit), TEST_CASE(test_unauthenticated_kod_is_ignored),
          TEST_CASE(test_authenticated_deny_stops_at_once),
          TEST_CASE(test_authenticated_reply_is_a_sample))
