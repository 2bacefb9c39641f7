/* Association tests: request format, reply tests, Kiss-o'-Death obedience and its limits.
 * Hand-built replies and injected time; no sockets, no clock. */
#include "assoc.h"

#include <math.h>

#include "harness.h"
#include "packet.h"
#include "rng.h"

static RNG_State rng;

static bool
fill(void *ctx, void *buf, size_t len)
{
  uint8_t *p = buf;
  for (size_t i = 0; i < len; i++)
    p[i] = (uint8_t)RNG_Next(ctx);
  return true;
}

static ASC_Random rnd = {fill, &rng};

static NTT_Now
at(double s)
{
  NTT_Now n = {.real = {1700000000 + (time_t)s, (long)((s - floor(s)) * 1e9)},
               .mono_ns = (int64_t)llround(s * 1e9)};
  return n;
}

static NetAddr
server_addr(void)
{
  NetAddr a;
  ADR_Parse("192.0.2.10", &a);
  a.port = 123;
  return a;
}

static ASC_Assoc *
make(unsigned options, uint32_t key)
{
  RNG_Init(&rng, harness_seed);
  NetAddr a = server_addr();
  ASC_Params p;
  ASC_DefaultParams(&a, &p);
  p.options = options;
  p.key = key;
  NTT_Now now = at(0);
  return ASC_Create(&p, &now, &rnd);
}

/* Send the due request at time t; returns its cookie (transmit timestamp). */
static uint64_t
send_at(ASC_Assoc *a, double t, const KEY_Table *keys)
{
  uint8_t out[PKT_MAX_LEN];
  size_t len;
  NTT_Now now = at(t);
  if (ASC_BuildRequest(a, &now, keys, &rnd, out, &len) != ASC_TX_SEND)
    return 0;
  PKT_Header h;
  PKT_DecodeHeader(out, len, &h);
  return h.tx_ts;
}

/* A good stratum-2 reply to cookie, server clock = true time, at time t. */
static size_t
reply(uint8_t *buf, uint64_t cookie, double t, double server_offset)
{
  NTT_Now srv = at(t - 0.01);
  NTT_Stamp s = NTT_Add(NTT_FromTimespec(&srv.real), server_offset);
  PKT_Header h = {.leap = 0,
                  .version = 4,
                  .mode = PKT_MODE_SERVER,
                  .stratum = 2,
                  .poll = 6,
                  .precision = -20,
                  .root_delay = NTT_ShortFromDouble(0.01),
                  .root_disp = NTT_ShortFromDouble(0.01),
                  .refid = 0x0a000001,
                  .ref_ts = NTT_Add(s, -30),
                  .org_ts = cookie,
                  .rx_ts = s,
                  .tx_ts = NTT_Add(s, 0.0001)};
  PKT_EncodeHeader(&h, buf);
  return PKT_HEADER_LEN;
}

static size_t
kod(uint8_t *buf, uint64_t origin, const char *code, int poll)
{
  PKT_Header h = {.leap = PKT_LEAP_UNSYNC,
                  .version = 4,
                  .mode = PKT_MODE_SERVER,
                  .stratum = 0,
                  .poll = (int8_t)poll,
                  .refid = PKT_RefidFromCode(code),
                  .org_ts = origin,
                  .rx_ts = origin,
                  .tx_ts = origin};
  PKT_EncodeHeader(&h, buf);
  return PKT_HEADER_LEN;
}

static ASC_Outcome
deliver(ASC_Assoc *a, const uint8_t *buf, size_t len, double t, ASC_Result *res)
{
  NetAddr from = server_addr();
  NTT_Now rx = at(t);
  return ASC_ProcessReply(a, buf, len, &from, &rx, NULL, res);
}

static ASC_Status
status(const ASC_Assoc *a)
{
  ASC_Status st;
  ASC_GetStatus(a, &st);
  return st;
}

static void
test_asc_request_is_data_minimized_with_random_cookie(void)
{
  ASC_Assoc *a = make(0, 0);
  uint8_t out[PKT_MAX_LEN];
  size_t len;
  NTT_Now now = at(5);
  TEST_EQ_INT(ASC_BuildRequest(a, &now, NULL, &rnd, out, &len), ASC_TX_SEND);
  TEST_EQ_INT(len, 48);
  PKT_Header h;
  TEST_CHECK(PKT_DecodeHeader(out, len, &h));
  TEST_EQ_INT(h.mode, PKT_MODE_CLIENT);
  TEST_EQ_INT(h.version, 4);
  TEST_EQ_INT(h.leap, 0);
  TEST_EQ_INT(h.stratum, 0);
  TEST_EQ_INT(h.precision, 0x20);
  TEST_CHECK(h.root_delay == 0 && h.root_disp == 0 && h.refid == 0);
  TEST_CHECK(h.ref_ts == 0 && h.org_ts == 0 && h.rx_ts == 0);
  /* the transmit field is not our clock */
  TEST_CHECK(h.tx_ts != 0);
  TEST_CHECK(fabs(NTT_Diff(h.tx_ts, NTT_FromTimespec(&now.real))) > 1000);
  /* not due again before the poll interval */
  TEST_EQ_INT(ASC_BuildRequest(a, &now, NULL, &rnd, out, &len), ASC_TX_NOT_DUE);
  TEST_CHECK(ASC_NextPollTime(a) >= now.mono_ns + 64000000000LL);
  uint64_t c2 = send_at(a, 80, NULL);
  TEST_CHECK(c2 != 0 && c2 != h.tx_ts);
  ASC_Destroy(a);
}

static void
test_asc_good_reply_gives_sample(void)
{
  ASC_Assoc *a = make(0, 0);
  uint64_t c = send_at(a, 1, NULL);
  uint8_t buf[PKT_MAX_LEN];
  ASC_Result res;
  /* server 0.25 s ahead, 20 ms round trip */
  size_t n = reply(buf, c, 1.02, 0.25);
  TEST_EQ_INT(deliver(a, buf, n, 1.02, &res), ASC_SAMPLE);
  TEST_NEAR(res.offset, 0.25, 1e-3);
  TEST_NEAR(res.delay, 0.02 - 0.0001, 1e-4);
  TEST_CHECK(res.disp > 0 && res.disp < 1e-4);
  TEST_EQ_INT(res.stratum, 2);
  TEST_EQ_INT(res.filter, DSC_FILTER_NEW);
  TEST_EQ_INT(status(a).reach, 1);
  /* the same reply again: the cookie was consumed */
  TEST_EQ_INT(deliver(a, buf, n, 1.03, &res), ASC_DROP_NOT_PENDING);
  DSC_Candidate cand;
  NTT_Now now = at(2);
  TEST_CHECK(ASC_GetCandidate(a, &now, 7, &cand));
  TEST_EQ_INT(cand.id, 7);
  TEST_NEAR(cand.offset, 0.25, 1e-3);
  TEST_CHECK(cand.reachable);
  TEST_EQ_INT(cand.peer_refid, 0xc000020a);
  ASC_Destroy(a);
}

static void
test_asc_packet_tests(void)
{
  ASC_Assoc *a = make(0, 0);
  uint8_t buf[PKT_MAX_LEN];
  ASC_Result res;
  uint64_t c = send_at(a, 1, NULL);
  size_t n = reply(buf, c, 1.02, 0);
  NetAddr other = server_addr();
  other.bytes[3] = 11;
  NTT_Now rx = at(1.02);
  TEST_EQ_INT(ASC_ProcessReply(a, buf, n, &other, &rx, NULL, &res), ASC_DROP_SOURCE);
  other = server_addr();
  other.port = 124;
  TEST_EQ_INT(ASC_ProcessReply(a, buf, n, &other, &rx, NULL, &res), ASC_DROP_SOURCE);
  TEST_EQ_INT(deliver(a, buf, 47, 1.02, &res), ASC_DROP_SHORT);
  TEST_EQ_INT(deliver(a, buf, 50, 1.02, &res), ASC_DROP_FORMAT);
  buf[0] = (uint8_t)((buf[0] & ~7) | PKT_MODE_BROADCAST);
  TEST_EQ_INT(deliver(a, buf, n, 1.02, &res), ASC_DROP_MODE);
  n = reply(buf, c, 1.02, 0);
  buf[0] = (uint8_t)((buf[0] & ~0x38) | (5 << 3));
  TEST_EQ_INT(deliver(a, buf, n, 1.02, &res), ASC_DROP_MODE);
  /* none of those consumed the request: the genuine reply still works ... */
  PKT_Header h;
  n = reply(buf, c, 1.02, 0);
  PKT_DecodeHeader(buf, n, &h);
  h.leap = PKT_LEAP_UNSYNC;
  h.stratum = 3;
  PKT_EncodeHeader(&h, buf);
  TEST_EQ_INT(deliver(a, buf, n, 1.02, &res), ASC_DROP_UNSYNC); /* ... but is unsynced */
  /* stratum 16, zero transmit, root dispersion >= 16 s, reference time after transmit,
   * root distance above maxdist */
  double t = 100;
  for (int k = 0; k < 5; k++, t += 100) {
    c = send_at(a, t, NULL);
    n = reply(buf, c, t + 0.02, 0);
    PKT_DecodeHeader(buf, n, &h);
    ASC_Outcome want = ASC_DROP_HEADER;
    switch (k) {
      case 0:
        h.stratum = 16;
        want = ASC_DROP_UNSYNC;
        break;
      case 1:
        h.tx_ts = 0;
        break;
      case 2:
        h.root_disp = NTT_ShortFromDouble(17);
        break;
      case 3:
        h.ref_ts = NTT_Add(h.tx_ts, 5);
        break;
      case 4:
        h.root_disp = NTT_ShortFromDouble(1.6);
        want = ASC_DROP_DISTANCE;
        break;
    }
    PKT_EncodeHeader(&h, buf);
    TEST_EQ_INT(deliver(a, buf, n, t + 0.02, &res), want);
  }
  TEST_EQ_INT(status(a).reach, 0);
  ASC_Destroy(a);
}

static void
test_asc_zero_and_wrong_origin_have_no_effect(void)
{
  ASC_Assoc *a = make(0, 0);
  uint8_t buf[PKT_MAX_LEN];
  ASC_Result res;
  uint64_t c = send_at(a, 1, NULL);
  ASC_Status before = status(a);
  int64_t next = ASC_NextPollTime(a);
  static const char *const codes[] = {"DENY", "RATE", "RSTR"};
  for (int k = 0; k < 3; k++) {
    size_t n = kod(buf, 0, codes[k], 17);
    TEST_EQ_INT(deliver(a, buf, n, 2, &res), ASC_DROP_ZERO_ORIGIN);
    n = kod(buf, c ^ 1, codes[k], 17);
    TEST_EQ_INT(deliver(a, buf, n, 2, &res), ASC_DROP_BOGUS_ORIGIN);
    n = reply(buf, 0, 2, 0.3);
    TEST_EQ_INT(deliver(a, buf, n, 2, &res), ASC_DROP_ZERO_ORIGIN);
    n = reply(buf, c + 1, 2, 0.3);
    TEST_EQ_INT(deliver(a, buf, n, 2, &res), ASC_DROP_BOGUS_ORIGIN);
  }
  ASC_Status after = status(a);
  TEST_CHECK(before.reach == after.reach && before.poll == after.poll &&
             before.rate_floor == after.rate_floor && before.denied == after.denied &&
             before.silent_until_ns == after.silent_until_ns &&
             before.burst_left == after.burst_left && before.last_kiss == after.last_kiss);
  TEST_EQ_INT(ASC_NextPollTime(a), next);
  TEST_CHECK(after.pending);
  /* between polls (nothing outstanding) a zero origin is still refused first */
  size_t n = reply(buf, c, 1.02, 0);
  TEST_EQ_INT(deliver(a, buf, n, 1.02, &res), ASC_SAMPLE);
  n = kod(buf, 0, "DENY", 17);
  TEST_EQ_INT(deliver(a, buf, n, 3, &res), ASC_DROP_ZERO_ORIGIN);
  n = kod(buf, c, "DENY", 17); /* replayed old origin */
  TEST_EQ_INT(deliver(a, buf, n, 3, &res), ASC_DROP_NOT_PENDING);
  TEST_CHECK(!status(a).denied);
  ASC_Destroy(a);
}

static void
test_asc_deny_backoff_doubles_caps_and_resets(void)
{
  ASC_Assoc *a = make(0, 0);
  uint8_t buf[PKT_MAX_LEN];
  ASC_Result res;
  double t = 1, expect = 1024;
  for (int k = 0; k < 10; k++) {
    uint64_t c = send_at(a, t, NULL);
    TEST_CHECK(c != 0);
    size_t n = kod(buf, c, k % 2 ? "RSTR" : "DENY", 6);
    TEST_EQ_INT(deliver(a, buf, n, t + 0.02, &res), ASC_KOD_DENY);
    TEST_NEAR(res.backoff, expect, 1e-9);
    TEST_EQ_INT(res.log, 1); /* DENY and RSTR alternate: each is new */
    ASC_Status st = status(a);
    TEST_CHECK(st.denied);
    /* silent until the end of the back-off, then asked again (never forever) */
    double resume = t + 0.02 + expect;
    TEST_NEAR((double)ASC_NextPollTime(a) / 1e9, resume, 1e-6);
    TEST_EQ_INT(send_at(a, resume - 1, NULL), 0);
    t = resume;
    expect = fmin(expect * 2, 131072);
  }
  TEST_NEAR(expect, 131072, 0); /* capped at 2^17 s, about 36 h */
  /* good service resets the doubling after a clean run */
  for (int k = 0; k < 8; k++) {
    uint64_t c = send_at(a, t, NULL);
    size_t n = reply(buf, c, t + 0.02, 0);
    TEST_EQ_INT(deliver(a, buf, n, t + 0.02, &res), ASC_SAMPLE);
    TEST_CHECK(!status(a).denied);
    t = (double)ASC_NextPollTime(a) / 1e9;
  }
  TEST_EQ_INT(status(a).deny_count, 0);
  uint64_t c = send_at(a, t, NULL);
  size_t n = kod(buf, c, "DENY", 6);
  TEST_EQ_INT(deliver(a, buf, n, t + 0.02, &res), ASC_KOD_DENY);
  TEST_NEAR(res.backoff, 1024, 1e-9);
  TEST_CHECK(!ASC_NeedsReplacement(a)); /* a configured server is retried, not replaced */
  ASC_Destroy(a);
}

static void
test_asc_pool_member_refused_is_replaced(void)
{
  RNG_Init(&rng, harness_seed);
  NetAddr addr = server_addr();
  ASC_Params p;
  ASC_DefaultParams(&addr, &p);
  p.type = CNF_POOL;
  NTT_Now now = at(0);
  ASC_Assoc *a = ASC_Create(&p, &now, &rnd);
  uint8_t buf[PKT_MAX_LEN];
  ASC_Result res;
  uint64_t c = send_at(a, 1, NULL);
  size_t n = kod(buf, c, "RSTR", 6);
  TEST_EQ_INT(deliver(a, buf, n, 1.02, &res), ASC_KOD_DENY);
  TEST_CHECK(ASC_NeedsReplacement(a));
  ASC_Destroy(a);
}

static void
test_asc_rate_raises_caps_and_decays(void)
{
  ASC_Assoc *a = make(CNF_AO_IBURST, 0);
  uint8_t buf[PKT_MAX_LEN];
  ASC_Result res;
  uint64_t c = send_at(a, 1, NULL);
  TEST_EQ_INT(status(a).burst_left, ASC_IBURST - 1);
  /* RATE with a poll below ours: still one step up, and the burst stops */
  size_t n = kod(buf, c, "RATE", 3);
  TEST_EQ_INT(deliver(a, buf, n, 1.02, &res), ASC_KOD_RATE);
  TEST_EQ_INT(res.poll_floor, 7);
  TEST_EQ_INT(status(a).burst_left, 0);
  TEST_NEAR((double)ASC_NextPollTime(a) / 1e9, 1 + 128, 1e-6);
  TEST_EQ_INT(res.log, 1);
  /* again, asking for 2^17: capped at 2^10 */
  double t = 129;
  c = send_at(a, t, NULL);
  n = kod(buf, c, "RATE", 17);
  TEST_EQ_INT(deliver(a, buf, n, t + 0.02, &res), ASC_KOD_RATE);
  TEST_EQ_INT(res.poll_floor, 10);
  TEST_EQ_INT(res.log, 0); /* same code again: no new log line */
  TEST_EQ_INT(status(a).poll, 10);
  /* at the cap a further RATE changes nothing */
  t += 1024;
  c = send_at(a, t, NULL);
  n = kod(buf, c, "RATE", 17);
  TEST_EQ_INT(deliver(a, buf, n, t + 0.02, &res), ASC_KOD_RATE);
  TEST_EQ_INT(res.poll_floor, 10);
  /* a run of 8 clean replies takes one step back, down to minpoll eventually */
  int floors[5];
  for (int step = 0; step < 5; step++) {
    for (int k = 0; k < 8; k++) {
      t = (double)ASC_NextPollTime(a) / 1e9;
      c = send_at(a, t, NULL);
      n = reply(buf, c, t + 0.02, 0);
      TEST_EQ_INT(deliver(a, buf, n, t + 0.02, &res), ASC_SAMPLE);
    }
    floors[step] = status(a).rate_floor;
  }
  TEST_EQ_INT(floors[0], 9);
  TEST_EQ_INT(floors[1], 8);
  TEST_EQ_INT(floors[3], 6);
  TEST_EQ_INT(floors[4], 6);
  ASC_Destroy(a);
}

static void
test_asc_unknown_kiss_codes_ignored(void)
{
  ASC_Assoc *a = make(0, 0);
  uint8_t buf[PKT_MAX_LEN];
  ASC_Result res;
  static const char *const codes[] = {"XFOO", "INIT", "STEP", "ZZZZ", "CRYP"};
  double t = 1;
  for (int k = 0; k < 5; k++) {
    ASC_Status before = status(a);
    uint64_t c = send_at(a, t, NULL);
    size_t n = kod(buf, c, codes[k], 17);
    TEST_EQ_INT(deliver(a, buf, n, t + 0.02, &res), ASC_KOD_IGNORED);
    TEST_EQ_INT(res.kiss, PKT_RefidFromCode(codes[k]));
    TEST_EQ_INT(res.log, 1);
    ASC_Status st = status(a);
    TEST_EQ_INT(st.poll, before.poll);
    TEST_CHECK(!st.denied);
    t = (double)ASC_NextPollTime(a) / 1e9;
  }
  /* the same unknown code twice: log once */
  uint64_t c = send_at(a, t, NULL);
  size_t n = kod(buf, c, "CRYP", 17);
  TEST_EQ_INT(deliver(a, buf, n, t + 0.02, &res), ASC_KOD_IGNORED);
  TEST_EQ_INT(res.log, 0);
  TEST_EQ_INT(status(a).rate_floor, 6);
  ASC_Destroy(a);
}

static const char keys_text[] = "1 SHA1 0123456789abcdef0123456789abcdef01234567\n"
                                "2 SHA1 89abcdef0123456789abcdef0123456789abcdef\n";

static void
test_asc_keyed_association_ignores_unauthenticated(void)
{
  KEY_Table *keys = KEY_ParseText("keys", keys_text, NULL);
  TEST_CHECK(keys != NULL);
  CNF_KeyRange r = {1, 2};
  KEY_SetTrusted(keys, &r, 1);
  ASC_Assoc *a = make(0, 1);
  uint8_t buf[PKT_MAX_LEN];
  ASC_Result res;
  uint8_t out[PKT_MAX_LEN];
  size_t len;
  NTT_Now now = at(1);
  TEST_EQ_INT(ASC_BuildRequest(a, &now, keys, &rnd, out, &len), ASC_TX_SEND);
  TEST_EQ_INT(len, 48 + 24); /* signed with key 1 */
  PKT_Header h;
  PKT_DecodeHeader(out, len, &h);
  uint64_t c = h.tx_ts;
  NetAddr from = server_addr();
  NTT_Now rx = at(1.02);
  /* unauthenticated KoDs and replies: no effect */
  size_t n = kod(buf, c, "DENY", 17);
  TEST_EQ_INT(ASC_ProcessReply(a, buf, n, &from, &rx, keys, &res), ASC_DROP_AUTH);
  n = kod(buf, c, "RATE", 17);
  TEST_EQ_INT(ASC_ProcessReply(a, buf, n, &from, &rx, keys, &res), ASC_DROP_AUTH);
  n = reply(buf, c, 1.02, 0.5);
  TEST_EQ_INT(ASC_ProcessReply(a, buf, n, &from, &rx, keys, &res), ASC_DROP_AUTH);
  /* signed with the wrong key, a bad digest, a crypto-NAK */
  size_t m = KEY_Sign(keys, 2, buf, n, sizeof(buf));
  TEST_EQ_INT(ASC_ProcessReply(a, buf, m, &from, &rx, keys, &res), ASC_DROP_AUTH);
  m = KEY_Sign(keys, 1, buf, n, sizeof(buf));
  buf[m - 1] ^= 1;
  TEST_EQ_INT(ASC_ProcessReply(a, buf, m, &from, &rx, keys, &res), ASC_DROP_AUTH);
  m = KEY_AppendCryptoNak(buf, n, sizeof(buf));
  TEST_EQ_INT(ASC_ProcessReply(a, buf, m, &from, &rx, keys, &res), ASC_DROP_AUTH);
  ASC_Status st = status(a);
  TEST_CHECK(st.pending && !st.denied && st.rate_floor == 6 && st.reach == 0);
  /* a correctly signed KoD is obeyed */
  n = kod(buf, c, "RATE", 8);
  m = KEY_Sign(keys, 1, buf, n, sizeof(buf));
  TEST_EQ_INT(ASC_ProcessReply(a, buf, m, &from, &rx, keys, &res), ASC_KOD_RATE);
  TEST_EQ_INT(res.poll_floor, 8);
  /* a keyed association whose key is missing sends nothing */
  now = at(1000);
  TEST_EQ_INT(ASC_BuildRequest(a, &now, NULL, &rnd, out, &len), ASC_TX_NO_KEY);
  ASC_Destroy(a);
  KEY_Destroy(keys);
}

static void
test_asc_unreachable_backs_off_and_iburst_once(void)
{
  ASC_Assoc *a = make(CNF_AO_IBURST, 0);
  int sent = 0;
  double t = 0, first_regular = -1;
  for (int k = 0; k < 40; k++) {
    t = (double)ASC_NextPollTime(a) / 1e9;
    if (send_at(a, t, NULL))
      sent++;
    if (k == ASC_IBURST && first_regular < 0)
      first_regular = t;
  }
  ASC_Status st = status(a);
  TEST_EQ_INT(st.reach, 0);
  TEST_CHECK(st.unreach >= ASC_UNREACH);
  TEST_EQ_INT(st.hpoll, 10); /* backed off to maxpoll */
  TEST_EQ_INT(st.burst_left, 0);
  TEST_EQ_INT(sent, 40);
  /* 6 packets 2 s apart, then the next regular poll 2^6 s (+ up to 1/16) after the *last*
   * of them: counted from the first, a burst longer than the poll interval would be
   * followed at once by an overdue poll (at minpoll 3: 0.1 s after the burst) */
  double last_burst = 2.0 * (ASC_IBURST - 1);
  TEST_CHECK(first_regular >= last_burst + 64 && first_regular < last_burst + 64 + 4 + 1);
  ASC_Destroy(a);
}

/* T1 read late and the kernel's transmit timestamp: which ones are taken, that the offset
 * uses them, and that the origin check still compares the cookie that was on the wire. */
static void
test_asc_transmit_time_and_kernel_timestamp(void)
{
  ASC_Assoc *a = make(0, 0);
  uint8_t buf[PKT_MAX_LEN];
  ASC_Result res;
  NTT_Now t;
  /* nothing pending: refused */
  t = at(0.5);
  TEST_CHECK(!ASC_SetKernelTransmitTime(a, &t.real));
  uint64_t c = send_at(a, 1, NULL);
  TEST_CHECK(c != 0);
  t = at(1.00002); /* the reading just before send() */
  ASC_SetTransmitTime(a, &t.real);
  t = at(1.00001); /* before that reading: an earlier request's */
  TEST_CHECK(!ASC_SetKernelTransmitTime(a, &t.real));
  t = at(1.00002 + ASC_TXTS_MAX + 0.001); /* far too late to be this request's */
  TEST_CHECK(!ASC_SetKernelTransmitTime(a, &t.real));
  t = at(1.00005);
  TEST_CHECK(ASC_SetKernelTransmitTime(a, &t.real));
  t = at(1.00006); /* once per request; a later reading no longer moves it either */
  TEST_CHECK(!ASC_SetKernelTransmitTime(a, &t.real));
  ASC_SetTransmitTime(a, &t.real);
  /* the server echoes the cookie, not T1: a reply whose origin is T1 is not ours */
  t = at(1.00005);
  size_t n = reply(buf, NTT_FromTimespec(&t.real), 1.02, 0.25);
  TEST_EQ_INT(deliver(a, buf, n, 1.02, &res), ASC_DROP_BOGUS_ORIGIN);
  n = reply(buf, c, 1.02, 0.25);
  TEST_EQ_INT(deliver(a, buf, n, 1.02, &res), ASC_SAMPLE);
  /* server receives at 1.01 + 0.25 and sends 0.1 ms later; T1 1.00005, T4 1.02 */
  TEST_NEAR(res.offset, ((1.01 + 0.25 - 1.00005) + (1.0101 + 0.25 - 1.02)) / 2, 2e-6);
  TEST_NEAR(res.delay, 1.02 - 1.00005 - 0.0001, 2e-6);
  /* the reply consumed the request: a late timestamp has no effect */
  t = at(1.03);
  TEST_CHECK(!ASC_SetKernelTransmitTime(a, &t.real));
  /* a new request starts over: its own reading, then its own kernel timestamp */
  c = send_at(a, 80, NULL);
  t = at(80.00001);
  TEST_CHECK(ASC_SetKernelTransmitTime(a, &t.real));
  n = reply(buf, c, 80.02, 0);
  TEST_EQ_INT(deliver(a, buf, n, 80.02, &res), ASC_SAMPLE);
  TEST_NEAR(res.offset, ((80.01 - 80.00001) + (80.0101 - 80.02)) / 2, 2e-6);
  ASC_Destroy(a);
}

TEST_MAIN(TEST_CASE(test_asc_request_is_data_minimized_with_random_cookie),
          TEST_CASE(test_asc_good_reply_gives_sample),
          TEST_CASE(test_asc_transmit_time_and_kernel_timestamp),
          TEST_CASE(test_asc_packet_tests),
          TEST_CASE(test_asc_zero_and_wrong_origin_have_no_effect),
          TEST_CASE(test_asc_deny_backoff_doubles_caps_and_resets),
          TEST_CASE(test_asc_pool_member_refused_is_replaced),
          TEST_CASE(test_asc_rate_raises_caps_and_decays),
          TEST_CASE(test_asc_unknown_kiss_codes_ignored),
          TEST_CASE(test_asc_keyed_association_ignores_unauthenticated),
          TEST_CASE(test_asc_unreachable_backs_off_and_iburst_once))
