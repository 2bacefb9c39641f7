/* Decision-core tests: SRV_Decide called with hand-built datagrams and injected time. */
#include "server.h"

#include "harness.h"
#include "packet.h"

static SRV_Policy policy = {.min_poll = 3, .max_poll = 17};
static SRV_System sys;
static RNG_State rng;

/* SRV_Decide then, for a reply, SRV_Finish as the edge does. */
static SRV_Action
decide(const SRV_Ctx *ctx, const SRV_Request *rq, RNG_State *r, uint8_t *out, size_t *olen,
       SRV_Reason *why)
{
  SRV_Verdict v;
  SRV_Action a = SRV_Decide(ctx, rq, r, out, &v);
  *olen = v.len;
  *why = v.why;
  if (a == SRV_REPLY)
    *olen = SRV_Finish(ctx, &v, out, PKT_MAX_LEN, &rq->rx.real, r);
  return a;
}

static SRV_Ctx
make_ctx(void)
{
  NTT_Now now = {.real = {1700000000, 0}, .mono_ns = 1000000000};
  SRV_SystemLocal(&sys, -20, 10, PKT_RefidFromCode("LOCL"), &now);
  RNG_Init(&rng, harness_seed);
  return (SRV_Ctx){.policy = &policy, .sys = &sys};
}

static SRV_Request
make_request(uint8_t *buf, size_t len, int version, int mode)
{
  memset(buf, 0, len);
  buf[0] = (uint8_t)((version << 3) | mode);
  buf[2] = 6; /* poll */
  if (len >= 48)
    PKT_Put64(buf + 40, 0x0123456789abcdefULL);
  SRV_Request rq = {.data = buf,
                    .len = len,
                    .rx = {.real = {1700000010, 500000000}, .mono_ns = 11000000000LL}};
  ADR_Parse("127.0.0.2", &rq.src);
  rq.src.port = 40000;
  return rq;
}

static void
test_srv_client_request_gets_server_reply(void)
{
  SRV_Ctx ctx = make_ctx();
  uint8_t buf[48], out[PKT_MAX_LEN];
  size_t olen;
  SRV_Reason why;
  SRV_Request rq = make_request(buf, sizeof(buf), 4, 3);
  TEST_EQ_INT(decide(&ctx, &rq, &rng, out, &olen, &why), SRV_REPLY);
  TEST_EQ_INT(why, SRV_R_SERVED);
  TEST_EQ_INT(olen, 48);
  PKT_Header h;
  TEST_CHECK(PKT_DecodeHeader(out, olen, &h));
  TEST_EQ_INT(h.leap, 0);
  TEST_EQ_INT(h.version, 4);
  TEST_EQ_INT(h.mode, 4);
  TEST_EQ_INT(h.stratum, 10);
  TEST_EQ_INT(h.poll, 6);
  TEST_EQ_INT(h.precision, -20);
  TEST_EQ_INT(h.refid, PKT_RefidFromCode("LOCL"));
  TEST_CHECK(h.org_ts == 0x0123456789abcdefULL);
  struct timespec rx = {1700000010, 500000000};
  TEST_NEAR(NTT_Diff(h.rx_ts, NTT_FromTimespec(&rx)), 0.0, 1e-6);
  /* 10 s after the update the dispersion has grown by 10 * 15 ppm */
  TEST_NEAR(NTT_ShortToDouble(h.root_disp), 150e-6, 2e-5);
}

static void
test_srv_version_is_echoed(void)
{
  SRV_Ctx ctx = make_ctx();
  uint8_t buf[48], out[PKT_MAX_LEN];
  size_t olen;
  SRV_Reason why;
  for (int v = 1; v <= 4; v++) {
    SRV_Request rq = make_request(buf, sizeof(buf), v, 3);
    TEST_EQ_INT(decide(&ctx, &rq, &rng, out, &olen, &why), SRV_REPLY);
    TEST_EQ_INT(PKT_PeekVersion(out), v);
  }
  for (int v = 0; v <= 7; v += (v == 0 ? 5 : 1)) {
    SRV_Request rq = make_request(buf, sizeof(buf), v, 3);
    TEST_EQ_INT(decide(&ctx, &rq, &rng, out, &olen, &why), SRV_DROP);
    TEST_EQ_INT(why, SRV_R_DROP_VERSION);
  }
}

static void
test_srv_poll_clamped(void)
{
  SRV_Ctx ctx = make_ctx();
  uint8_t buf[48], out[PKT_MAX_LEN];
  size_t olen;
  SRV_Reason why;
  SRV_Request rq = make_request(buf, sizeof(buf), 4, 3);
  buf[2] = 0;
  decide(&ctx, &rq, &rng, out, &olen, &why);
  TEST_EQ_INT((int8_t)out[2], 3);
  buf[2] = 30;
  decide(&ctx, &rq, &rng, out, &olen, &why);
  TEST_EQ_INT((int8_t)out[2], 17);
  buf[2] = (uint8_t)-5;
  decide(&ctx, &rq, &rng, out, &olen, &why);
  TEST_EQ_INT((int8_t)out[2], 3);
}

static void
test_srv_unsynchronized_answers_like_ntpd(void)
{
  SRV_Ctx ctx = make_ctx();
  SRV_SystemUnsynchronized(&sys, -20);
  uint8_t buf[48], out[PKT_MAX_LEN];
  size_t olen;
  SRV_Reason why;
  SRV_Request rq = make_request(buf, sizeof(buf), 4, 3);
  TEST_EQ_INT(decide(&ctx, &rq, &rng, out, &olen, &why), SRV_REPLY);
  TEST_EQ_INT(out[0] >> 6, 3);
  TEST_EQ_INT(out[1], 0);
  TEST_EQ_INT(PKT_Get32(out + 12), PKT_RefidFromCode("INIT"));
}

static void
test_srv_non_client_modes_dropped(void)
{
  static const struct {
    int mode;
    SRV_Reason why;
  } cases[] = {{0, SRV_R_DROP_MODE0},    {1, SRV_R_DROP_SYMMETRIC}, {2, SRV_R_DROP_RESPONSE},
               {4, SRV_R_DROP_RESPONSE}, {5, SRV_R_DROP_RESPONSE},  {6, SRV_R_DROP_MODE6},
               {7, SRV_R_DROP_MODE7}};
  SRV_Ctx ctx = make_ctx();
  uint8_t buf[48], out[PKT_MAX_LEN];
  size_t olen;
  SRV_Reason why;
  for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
    SRV_Request rq = make_request(buf, sizeof(buf), 4, cases[i].mode);
    if (cases[i].mode == 6)
      memset(buf + 1, 0, 11); /* a plain request header, offset 0 */
    if (cases[i].mode == 7)
      buf[0] = (uint8_t)(2 << 3 | 7);
    TEST_EQ_INT(decide(&ctx, &rq, &rng, out, &olen, &why), SRV_DROP);
    TEST_EQ_INT(why, cases[i].why);
  }
}

static void
test_srv_control_responses_never_answered(void)
{
  SRV_Ctx ctx = make_ctx();
  uint8_t buf[48], out[PKT_MAX_LEN];
  size_t olen;
  SRV_Reason why;
  /* mode 7 with R, with M; mode 6 with R, E, M and a non-zero offset (bug 1331) */
  const uint8_t m7[] = {0x80 | (2 << 3) | 7, 0x40 | (2 << 3) | 7};
  for (size_t i = 0; i < sizeof(m7); i++) {
    SRV_Request rq = make_request(buf, sizeof(buf), 2, 7);
    buf[0] = m7[i];
    TEST_EQ_INT(decide(&ctx, &rq, &rng, out, &olen, &why), SRV_DROP);
    TEST_EQ_INT(why, SRV_R_DROP_CTL_RESPONSE);
  }
  const uint8_t m6[] = {0x80, 0x40, 0x20};
  for (size_t i = 0; i < sizeof(m6); i++) {
    SRV_Request rq = make_request(buf, 12, 2, 6);
    buf[1] = (uint8_t)(m6[i] | 1);
    TEST_EQ_INT(decide(&ctx, &rq, &rng, out, &olen, &why), SRV_DROP);
    TEST_EQ_INT(why, SRV_R_DROP_CTL_RESPONSE);
  }
  SRV_Request rq = make_request(buf, 12, 2, 6);
  buf[1] = 1;
  PKT_Put16(buf + 8, 4);
  TEST_EQ_INT(decide(&ctx, &rq, &rng, out, &olen, &why), SRV_DROP);
  TEST_EQ_INT(why, SRV_R_DROP_CTL_RESPONSE);
}

static void
test_srv_short_and_empty_dropped(void)
{
  SRV_Ctx ctx = make_ctx();
  uint8_t buf[48], out[PKT_MAX_LEN];
  size_t olen;
  SRV_Reason why;
  for (size_t len = 0; len < 48; len++) {
    SRV_Request rq = make_request(buf, sizeof(buf), 4, 3);
    rq.len = len;
    TEST_EQ_INT(decide(&ctx, &rq, &rng, out, &olen, &why), SRV_DROP);
    TEST_EQ_INT(why, len == 0 ? SRV_R_DROP_EMPTY : SRV_R_DROP_SHORT);
  }
}

static void
test_srv_port_zero_and_multicast_source_dropped(void)
{
  SRV_Ctx ctx = make_ctx();
  uint8_t buf[48], out[PKT_MAX_LEN];
  size_t olen;
  SRV_Reason why;
  SRV_Request rq = make_request(buf, sizeof(buf), 4, 3);
  rq.src.port = 0;
  TEST_EQ_INT(decide(&ctx, &rq, &rng, out, &olen, &why), SRV_DROP);
  TEST_EQ_INT(why, SRV_R_DROP_PORT0);
  rq = make_request(buf, sizeof(buf), 4, 3);
  ADR_Parse("224.0.1.1", &rq.src);
  rq.src.port = 123;
  TEST_EQ_INT(decide(&ctx, &rq, &rng, out, &olen, &why), SRV_DROP);
  TEST_EQ_INT(why, SRV_R_DROP_MCAST_SRC);
}

static void
test_srv_mac_without_keys_gets_crypto_nak(void)
{
  SRV_Ctx ctx = make_ctx();
  uint8_t buf[68], out[PKT_MAX_LEN];
  size_t olen;
  SRV_Reason why;
  SRV_Request rq = make_request(buf, sizeof(buf), 4, 3);
  PKT_Put32(buf + 48, 1); /* key id 1 + 16 octets of digest */
  TEST_EQ_INT(decide(&ctx, &rq, &rng, out, &olen, &why), SRV_REPLY);
  TEST_EQ_INT(why, SRV_R_CRYPTO_NAK);
  TEST_EQ_INT(olen, 52);
  TEST_EQ_INT(PKT_Get32(out + 48), 0);
}

/* Issue 13 item 5: a bad MAC from a `notrust` source never gets our time. ntp_acc(5):
 * notrust denies packets unless they are cryptographically authenticated; a crypto-NAK is
 * our full header. With `kod` a CRYP KoD (the request's own timestamps), else nothing;
 * outside notrust the crypto-NAK stays. */
static void
test_srv_notrust_bad_mac_gets_no_time(void)
{
  SRV_Ctx ctx = make_ctx();
  KEY_Table *keys = KEY_ParseText("t.keys", "1 MD5 onetwothree\n", NULL);
  TEST_CHECK(keys != NULL);
  CNF_KeyRange trusted = {1, 1};
  KEY_SetTrusted(keys, &trusted, 1);
  RST_Entry e[2] = {{.flags = RST_NOTRUST, .ippeerlimit = -1},
                    {.flags = RST_NOTRUST | RST_KOD, .ippeerlimit = -1}};
  ADR_Parse("127.0.0.2", &e[0].addr);
  ADR_Parse("127.0.0.3", &e[1].addr);
  for (int i = 0; i < 2; i++)
    ADR_MaskFromPrefix(ADR_INET4, 32, &e[i].mask);
  RST_List *rst = RST_Create(e, 2, NULL, 0);
  TEST_CHECK(rst != NULL);
  ctx.keys = keys;
  ctx.rst = rst;
  const char *srcs[3] = {"127.0.0.2", "127.0.0.3", "127.0.0.4"};
  for (int bad = 0; bad < 2; bad++) { /* a wrong digest, then an unknown key */
    for (int i = 0; i < 3; i++) {
      uint8_t buf[PKT_MAX_LEN], out[PKT_MAX_LEN];
      size_t olen;
      SRV_Reason why;
      SRV_Request rq = make_request(buf, 48, 4, 3);
      rq.len = KEY_Sign(keys, 1, buf, 48, sizeof(buf));
      TEST_EQ_INT(rq.len, 68);
      if (bad)
        PKT_Put32(buf + 48, 9);
      else
        buf[67] ^= 1;
      ADR_Parse(srcs[i], &rq.src);
      rq.src.port = 40000;
      memset(out, 0xee, sizeof(out));
      SRV_Action a = decide(&ctx, &rq, &rng, out, &olen, &why);
      if (i == 0) { /* notrust: nothing at all */
        TEST_EQ_INT(a, SRV_DROP);
        TEST_EQ_INT(why, SRV_R_DROP_NOTRUST);
        TEST_EQ_INT(out[0], 0xee);
      } else if (i == 1) { /* notrust kod: CRYP, which says nothing of our clock */
        TEST_EQ_INT(a, SRV_KOD);
        TEST_EQ_INT(why, SRV_R_KOD_CRYP);
        PKT_Header h;
        TEST_CHECK(PKT_DecodeHeader(out, olen, &h));
        TEST_EQ_INT(olen, 48);
        TEST_EQ_INT(h.stratum, 0);
        TEST_EQ_INT(h.refid, PKT_RefidFromCode("CRYP"));
        TEST_CHECK(h.rx_ts == 0x0123456789abcdefULL && h.tx_ts == 0x0123456789abcdefULL);
      } else { /* no notrust: the RFC 5905 crypto-NAK, as before */
        TEST_EQ_INT(a, SRV_REPLY);
        TEST_EQ_INT(why, SRV_R_CRYPTO_NAK);
        TEST_EQ_INT(olen, 52);
        TEST_EQ_INT(PKT_Get32(out + 48), 0);
      }
    }
  }
  RST_Destroy(rst);
  KEY_Destroy(keys);
}

static void
test_srv_bad_trailer_dropped(void)
{
  SRV_Ctx ctx = make_ctx();
  uint8_t buf[60], out[PKT_MAX_LEN];
  size_t olen;
  SRV_Reason why;
  SRV_Request rq = make_request(buf, sizeof(buf), 4, 3); /* 12-octet trailer: neither */
  TEST_EQ_INT(decide(&ctx, &rq, &rng, out, &olen, &why), SRV_DROP);
  TEST_EQ_INT(why, SRV_R_DROP_TRAILER);
}

/* Property: whatever the bytes, a reply is never longer than the datagram it answers. */
static void
test_srv_random_input_never_amplifies(void)
{
  SRV_Ctx ctx = make_ctx();
  static uint8_t buf[1400], out[PKT_MAX_LEN];
  RNG_State r;
  RNG_Init(&r, harness_seed);
  int replies = 0;
  for (int i = 0; i < 200000; i++) {
    size_t len = (size_t)(RNG_Next(&r) % (i < 100000 ? 100 : sizeof(buf)));
    for (size_t k = 0; k < len; k++)
      buf[k] = (uint8_t)RNG_Next(&r);
    if (len > 0 && (i & 1))
      buf[0] = (uint8_t)((buf[0] & 0xc0) | (4 << 3) | 3); /* often a v4 client request */
    SRV_Request rq = make_request(buf, 0, 4, 3);
    rq.data = buf;
    rq.len = len;
    size_t olen = 0;
    SRV_Reason why;
    SRV_Action a = decide(&ctx, &rq, &rng, out, &olen, &why);
    if (a != SRV_DROP) {
      replies++;
      if (olen > len) {
        TEST_CHECK(olen <= len);
        break;
      }
    }
    TEST_CHECK((unsigned)why < SRV_R_COUNT);
  }
  TEST_CHECK(replies > 0);
}

static void
test_srv_transmit_stamp_has_random_low_bits(void)
{
  uint8_t a[48] = {0}, b[48] = {0};
  struct timespec now = {1700000000, 123456789};
  SRV_Ctx ctx = make_ctx();
  SRV_Verdict v = {.len = 48, .stamp = true};
  RNG_Init(&rng, 1);
  TEST_EQ_INT(SRV_Finish(&ctx, &v, a, sizeof(a), &now, &rng), 48);
  TEST_EQ_INT(SRV_Finish(&ctx, &v, b, sizeof(b), &now, &rng), 48);
  TEST_CHECK(PKT_Get64(a + 40) != PKT_Get64(b + 40));
  TEST_NEAR(NTT_Diff(PKT_Get64(a + 40), PKT_Get64(b + 40)), 0.0, 1e-6);
}

static void
test_srv_reason_names_unique(void)
{
  for (int i = 0; i < SRV_R_COUNT; i++)
    for (int j = i + 1; j < SRV_R_COUNT; j++)
      TEST_CHECK(strcmp(SRV_ReasonName((SRV_Reason)i), SRV_ReasonName((SRV_Reason)j)) != 0);
  TEST_EQ_STR(SRV_ReasonName(SRV_R_COUNT), "unknown");
}

TEST_MAIN(TEST_CASE(test_srv_client_request_gets_server_reply),
          TEST_CASE(test_srv_version_is_echoed), TEST_CASE(test_srv_poll_clamped),
          TEST_CASE(test_srv_unsynchronized_answers_like_ntpd),
          TEST_CASE(test_srv_non_client_modes_dropped),
          TEST_CASE(test_srv_control_responses_never_answered),
          TEST_CASE(test_srv_short_and_empty_dropped),
          TEST_CASE(test_srv_port_zero_and_multicast_source_dropped),
          TEST_CASE(test_srv_mac_without_keys_gets_crypto_nak),
          TEST_CASE(test_srv_notrust_bad_mac_gets_no_time),
          TEST_CASE(test_srv_bad_trailer_dropped),
          TEST_CASE(test_srv_random_input_never_amplifies),
          TEST_CASE(test_srv_transmit_stamp_has_random_low_bits),
          TEST_CASE(test_srv_reason_names_unique))
