/* Unit tests for the NTS-KE record protocol (ntske.c, RFC 8915 section 4). */
#include "ntske.h"

#include "harness.h"

#include <stdbool.h>
#include <stdio.h>
#include <string.h>

/* chrony's and NTPsec's request: Next Protocol {0}, AEAD {15}, End of Message. */
static const uint8_t good_req[] = {0x80, 1, 0, 2, 0, 0, 0x80, 4, 0, 2, 0, 15, 0x80, 0, 0, 0};

static NKE_Status
parse(const uint8_t *b, size_t n, NKE_Request *rq)
{
  return NKE_ParseRequest(b, n, rq);
}

static void
test_ke_good_request(void)
{
  NKE_Request rq;
  TEST_EQ_INT(parse(good_req, sizeof(good_req), &rq), NKE_OK);
  TEST_CHECK(rq.ntpv4 && rq.aead_siv && NKE_CanGrant(&rq));
  TEST_EQ_INT(rq.length, sizeof(good_req));
}

static void
test_ke_every_prefix_is_incomplete(void)
{
  NKE_Request rq;
  for (size_t n = 0; n < sizeof(good_req); n++)
    TEST_EQ_INT(parse(good_req, n, &rq), NKE_INCOMPLETE);
}

static void
test_ke_aead_list_and_noncritical_aead(void)
{
  /* AEAD list {30, 15} without the critical bit, plus an unknown non-critical record */
  static const uint8_t r[] = {0x80, 1,  0,    2, 0, 0, 0, 4,    0, 4, 0, 30,
                              0,    15, 0x40, 0, 0, 1, 9, 0x80, 0, 0, 0};
  NKE_Request rq;
  TEST_EQ_INT(parse(r, sizeof(r), &rq), NKE_OK);
  TEST_CHECK(NKE_CanGrant(&rq));
}

static void
test_ke_wrong_aead_is_not_granted(void)
{
  static const uint8_t r[] = {0x80, 1, 0, 2, 0, 0, 0x80, 4, 0, 2, 0, 16, 0x80, 0, 0, 0};
  NKE_Request rq;
  TEST_EQ_INT(parse(r, sizeof(r), &rq), NKE_OK);
  TEST_CHECK(rq.ntpv4 && !rq.aead_siv && !NKE_CanGrant(&rq));
  uint8_t out[64];
  uint8_t cookie[4] = {1, 2, 3, 4};
  NKE_Grant g = {cookie, 1, 4, NULL, 0};
  size_t n = NKE_BuildResponse(&rq, &g, out, sizeof(out));
  /* Next Protocol {0}, an empty AEAD record, End of Message: no cookie */
  static const uint8_t want[] = {0x80, 1, 0, 2, 0, 0, 0x80, 4, 0, 0, 0x80, 0, 0, 0};
  TEST_EQ_INT(n, sizeof(want));
  TEST_CHECK(memcmp(out, want, sizeof(want)) == 0);
}

static void
test_ke_unknown_critical_record(void)
{
  static const uint8_t r[] = {0x80, 1, 0, 2, 0, 0, 0xc0, 0x01, 0, 0, 0x80, 0, 0, 0};
  NKE_Request rq;
  TEST_EQ_INT(parse(r, sizeof(r), &rq), NKE_UNKNOWN_CRITICAL);
  TEST_EQ_INT(rq.bad_type, 0x4001);
  TEST_EQ_INT(NKE_ErrorCode(NKE_UNKNOWN_CRITICAL), NKE_ERR_UNRECOGNIZED_CRITICAL);
}

static void
test_ke_bad_requests(void)
{
  static const struct {
    const char *name;
    uint8_t b[24];
    size_t n;
  } cases[] = {
      {"end with a body", {0x80, 1, 0, 2, 0, 0, 0x80, 4, 0, 2, 0, 15, 0x80, 0, 0, 1, 0}, 17},
      {"end not critical", {0x80, 1, 0, 2, 0, 0, 0x80, 4, 0, 2, 0, 15, 0, 0, 0, 0}, 16},
      {"data after end", {0x80, 1, 0, 2, 0, 0, 0x80, 4, 0, 2, 0, 15, 0x80, 0, 0, 0, 7}, 17},
      {"no next protocol", {0x80, 4, 0, 2, 0, 15, 0x80, 0, 0, 0}, 10},
      {"next protocol twice", {0x80, 1, 0, 0, 0x80, 1, 0, 0, 0x80, 0, 0, 0}, 12},
      {"next protocol not critical",
       {0, 1, 0, 2, 0, 0, 0x80, 4, 0, 2, 0, 15, 0x80, 0, 0, 0},
       16},
      {"odd next protocol", {0x80, 1, 0, 1, 0, 0x80, 4, 0, 2, 0, 15, 0x80, 0, 0, 0}, 15},
      {"AEAD twice",
       {0x80, 1, 0, 2, 0, 0, 0x80, 4, 0, 2, 0, 15, 0x80, 4, 0, 0, 0x80, 0, 0, 0},
       20},
      {"odd AEAD", {0x80, 1, 0, 2, 0, 0, 0x80, 4, 0, 1, 0, 0x80, 0, 0, 0}, 15},
      {"NTPv4 without AEAD", {0x80, 1, 0, 2, 0, 0, 0x80, 0, 0, 0}, 10},
      {"client sends error", {0x80, 1, 0, 2, 0, 0, 0x80, 2, 0, 2, 0, 1, 0x80, 0, 0, 0}, 16},
      {"client sends cookie", {0x80, 1, 0, 2, 0, 0, 0, 5, 0, 1, 9, 0x80, 0, 0, 0}, 15},
      {"port of 3 octets", {0x80, 1, 0, 2, 0, 0, 0x80, 7, 0, 3, 0, 1, 2, 0x80, 0, 0, 0}, 17},
  };
  for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
    NKE_Request rq;
    NKE_Status st = parse(cases[i].b, cases[i].n, &rq);
    if (st != NKE_BAD_REQUEST)
      fprintf(stderr, "case '%s': status %d\n", cases[i].name, (int)st);
    TEST_EQ_INT(st, NKE_BAD_REQUEST);
    TEST_CHECK(rq.why != NULL);
  }
}

static void
test_ke_oversized_is_refused_before_it_arrives(void)
{
  /* a record announcing 65535 octets is refused at its header */
  static const uint8_t r[] = {0x80, 1, 0, 2, 0, 0, 0x40, 9, 0xff, 0xff};
  NKE_Request rq;
  TEST_EQ_INT(parse(r, sizeof(r), &rq), NKE_BAD_REQUEST);
  static uint8_t big[NKE_MAX_REQUEST + 1];
  TEST_EQ_INT(parse(big, sizeof(big), &rq), NKE_BAD_REQUEST);
}

static void
test_ke_response_with_cookies_and_server(void)
{
  NKE_Request rq;
  TEST_EQ_INT(parse(good_req, sizeof(good_req), &rq), NKE_OK);
  uint8_t cookies[NKE_COOKIES * 100];
  for (size_t i = 0; i < sizeof(cookies); i++)
    cookies[i] = (uint8_t)(i / 100);
  NKE_Grant g = {cookies, NKE_COOKIES, 100, "ntp.example", 1123};
  uint8_t out[2048];
  size_t n = NKE_BuildResponse(&rq, &g, out, sizeof(out));
  size_t want = 6 + 6 + (4 + 11) + 6 + NKE_COOKIES * 104 + 4;
  TEST_EQ_INT(n, want);
  /* walk the records: types in order, the 8 cookies intact */
  size_t pos = 0, k = 0;
  uint16_t types[16];
  while (pos + 4 <= n && k < 16) {
    types[k++] = (uint16_t)(out[pos] << 8 | out[pos + 1]);
    size_t bl = (size_t)(out[pos + 2] << 8 | out[pos + 3]);
    if ((types[k - 1] & 0x7fff) == NKE_REC_COOKIE)
      TEST_CHECK(bl == 100 && out[pos + 4] == (uint8_t)(k - 5));
    pos += 4 + bl;
  }
  TEST_EQ_INT(pos, n);
  TEST_EQ_INT(k, 13);
  TEST_EQ_INT(types[0], 0x8001);
  TEST_EQ_INT(types[1], 0x8004);
  TEST_EQ_INT(types[2], 0x8006);
  TEST_EQ_INT(types[3], 0x8007);
  TEST_EQ_INT(types[4], 0x0005);
  TEST_EQ_INT(types[12], 0x8000);
  TEST_EQ_INT(NKE_BuildResponse(&rq, &g, out, want - 1), 0);
}

static void
test_ke_error_record(void)
{
  uint8_t out[10];
  TEST_EQ_INT(NKE_BuildError(NKE_ERR_BAD_REQUEST, out, sizeof(out)), 10);
  static const uint8_t want[] = {0x80, 2, 0, 2, 0, 1, 0x80, 0, 0, 0};
  TEST_CHECK(memcmp(out, want, 10) == 0);
  TEST_EQ_INT(NKE_BuildError(0, out, 9), 0);
}

static void
test_ke_exporter_context(void)
{
  uint8_t c2s[5], s2c[5];
  NKE_ExporterContext(NKE_AEAD_AES_SIV_CMAC_256, false, c2s);
  NKE_ExporterContext(NKE_AEAD_AES_SIV_CMAC_256, true, s2c);
  static const uint8_t w0[] = {0, 0, 0, 15, 0}, w1[] = {0, 0, 0, 15, 1};
  TEST_CHECK(memcmp(c2s, w0, 5) == 0 && memcmp(s2c, w1, 5) == 0);
  TEST_EQ_INT(NKE_EXPORTER_LABEL_LEN, 30);
}

/* Random octets, and random mutations of a good request: never a crash, a status in range,
 * and an OK request's length never more than the input. */
static void
test_ke_random_input_property(void)
{
  test_rng_state = harness_seed;
  uint8_t b[64];
  for (int it = 0; it < 20000; it++) {
    size_t n = (size_t)(test_rng() % sizeof(b));
    if (it % 2) {
      memcpy(b, good_req, sizeof(good_req));
      n = sizeof(good_req) + (size_t)(test_rng() % 8);
      b[test_rng() % n] ^= (uint8_t)(1u << (test_rng() % 8));
    } else
      for (size_t i = 0; i < n; i++)
        b[i] = (uint8_t)test_rng();
    NKE_Request rq;
    NKE_Status st = parse(b, n, &rq);
    TEST_CHECK(st < NKE_STATUS_COUNT);
    if (st == NKE_OK)
      TEST_CHECK(rq.length == n);
  }
}

/* ---- the client's side ---- */

static void
test_ke_client_request_is_what_servers_parse(void)
{
  uint8_t out[32];
  TEST_EQ_INT(NKE_BuildClientRequest(out, sizeof(out)), sizeof(good_req));
  TEST_CHECK(memcmp(out, good_req, sizeof(good_req)) == 0);
  TEST_EQ_INT(NKE_BuildClientRequest(out, sizeof(good_req) - 1), 0);
}

static size_t
put_rec(uint8_t *b, size_t pos, uint16_t type, const void *body, size_t n)
{
  b[pos] = (uint8_t)(type >> 8);
  b[pos + 1] = (uint8_t)type;
  b[pos + 2] = (uint8_t)(n >> 8);
  b[pos + 3] = (uint8_t)n;
  if (n)
    memcpy(b + pos + 4, body, n);
  return pos + 4 + n;
}

/* A server's response: what our server builds is what our client takes, every prefix is
 * incomplete, and the grant's cookies, server and port come out as sent. */
static void
test_ke_client_parses_our_servers_response(void)
{
  NKE_Request rq;
  TEST_EQ_INT(parse(good_req, sizeof(good_req), &rq), NKE_OK);
  uint8_t cookies[NKE_COOKIES * 100];
  for (size_t i = 0; i < sizeof(cookies); i++)
    cookies[i] = (uint8_t)(i / 100 + 1);
  NKE_Grant g = {cookies, NKE_COOKIES, 100, "ntp.example", 1123};
  uint8_t out[2048];
  size_t n = NKE_BuildResponse(&rq, &g, out, sizeof(out));
  NKE_Response r;
  for (size_t k = 0; k < n; k++)
    TEST_EQ_INT(NKE_ParseResponse(out, k, &r), NKE_RESP_INCOMPLETE);
  TEST_EQ_INT(NKE_ParseResponse(out, n, &r), NKE_RESP_OK);
  TEST_EQ_INT(r.length, n);
  TEST_EQ_INT(r.n_cookies, NKE_COOKIES);
  for (size_t i = 0; i < r.n_cookies; i++)
    TEST_CHECK(r.cookie_len[i] == 100 && out[r.cookie_off[i]] == (uint8_t)(i + 1) &&
               memcmp(out + r.cookie_off[i], cookies + i * 100, 100) == 0);
  TEST_CHECK(r.has_server && strcmp(r.server, "ntp.example") == 0);
  TEST_CHECK(r.has_port && r.port == 1123);
  TEST_EQ_INT(NKE_ParseResponse(out, n + 1, &r), NKE_RESP_BAD); /* data after the end */
  /* the refusal our server sends for a wrong AEAD: negotiated nothing */
  static const uint8_t wrong[] = {0x80, 1, 0, 2, 0, 0, 0x80, 4, 0, 2, 0, 16, 0x80, 0, 0, 0};
  TEST_EQ_INT(parse(wrong, sizeof(wrong), &rq), NKE_OK);
  n = NKE_BuildResponse(&rq, &g, out, sizeof(out));
  TEST_EQ_INT(NKE_ParseResponse(out, n, &r), NKE_RESP_NOT_NEGOTIATED);
  n = NKE_BuildError(NKE_ERR_BAD_REQUEST, out, sizeof(out));
  TEST_EQ_INT(NKE_ParseResponse(out, n, &r), NKE_RESP_ERROR);
  TEST_EQ_INT(r.code, NKE_ERR_BAD_REQUEST);
}

static void
test_ke_client_refuses_bad_responses(void)
{
  static const uint8_t v4[] = {0, 0}, aead[] = {0, 15}, a16[] = {0, 16}, two[] = {0, 0, 0, 1};
  uint8_t ck[300];
  memset(ck, 7, sizeof(ck));
  struct {
    const char *what;
    NKE_RespStatus want;
  } cases[] = {
      {"no cookie", NKE_RESP_NO_COOKIE},
      {"AEAD 16 chosen", NKE_RESP_BAD},
      {"two protocols", NKE_RESP_BAD},
      {"no next protocol", NKE_RESP_BAD},
      {"no AEAD", NKE_RESP_BAD},
      {"unknown critical", NKE_RESP_BAD},
      {"unknown non-critical ignored", NKE_RESP_OK},
      {"warning", NKE_RESP_WARNING},
      {"cookie too long", NKE_RESP_BAD},
      {"empty cookie", NKE_RESP_BAD},
      {"port 3 octets", NKE_RESP_BAD},
      {"server with a space", NKE_RESP_BAD},
      {"server repeated", NKE_RESP_BAD},
      {"end with a body", NKE_RESP_BAD},
      {"ten cookies: eight kept", NKE_RESP_OK},
  };
  for (size_t c = 0; c < sizeof(cases) / sizeof(cases[0]); c++) {
    uint8_t b[4096];
    size_t pos = 0;
    pos = put_rec(b, pos, 0x8001, c == 2 ? two : v4, c == 2 ? 4 : 2);
    if (c == 3)
      pos = 0;
    if (c != 4)
      pos = put_rec(b, pos, 0x8004, c == 1 ? a16 : aead, 2);
    if (c == 5)
      pos = put_rec(b, pos, 0xc0ff, NULL, 0);
    if (c == 6)
      pos = put_rec(b, pos, 0x40ff, "x", 1);
    if (c == 7)
      pos = put_rec(b, pos, 0x8003, v4, 2);
    if (c == 10)
      pos = put_rec(b, pos, 0x8007, "abc", 3);
    if (c == 11)
      pos = put_rec(b, pos, 0x8006, "a b", 3);
    if (c == 12) {
      pos = put_rec(b, pos, 0x8006, "a", 1);
      pos = put_rec(b, pos, 0x8006, "b", 1);
    }
    size_t cookies = c == 0 ? 0 : (c == 14 ? 10 : 1);
    for (size_t i = 0; i < cookies; i++)
      pos = put_rec(b, pos, 5, ck, c == 8 ? 257 : (c == 9 ? 0 : 100));
    pos = put_rec(b, pos, 0x8000, c == 13 ? "x" : NULL, c == 13 ? 1 : 0);
    NKE_Response r;
    NKE_RespStatus st = NKE_ParseResponse(b, pos, &r);
    if (st != cases[c].want)
      fprintf(stderr, "case %s: %d (%s)\n", cases[c].what, st, r.why ? r.why : "");
    TEST_EQ_INT(st, cases[c].want);
    if (c == 14)
      TEST_EQ_INT(r.n_cookies, NKE_COOKIES);
  }
}

/* Random mutations of a good response: a status in range, never a cookie outside the input. */
static void
test_ke_client_random_property(void)
{
  NKE_Request rq;
  TEST_EQ_INT(parse(good_req, sizeof(good_req), &rq), NKE_OK);
  uint8_t cookies[NKE_COOKIES * 20];
  memset(cookies, 1, sizeof(cookies));
  NKE_Grant g = {cookies, NKE_COOKIES, 20, "h", 9};
  uint8_t good[512], b[512];
  size_t n = NKE_BuildResponse(&rq, &g, good, sizeof(good));
  test_rng_state = harness_seed;
  for (int it = 0; it < 20000; it++) {
    memcpy(b, good, n);
    size_t len = n - (size_t)(test_rng() % 4);
    b[test_rng() % len] ^= (uint8_t)(1u << (test_rng() % 8));
    NKE_Response r;
    NKE_RespStatus st = NKE_ParseResponse(b, len, &r);
    TEST_CHECK(st <= NKE_RESP_NO_COOKIE);
    for (size_t i = 0; st == NKE_RESP_OK && i < r.n_cookies; i++)
      TEST_CHECK((size_t)r.cookie_off[i] + r.cookie_len[i] <= len);
  }
}

TEST_MAIN(TEST_CASE(test_ke_client_request_is_what_servers_parse),
          TEST_CASE(test_ke_client_parses_our_servers_response),
          TEST_CASE(test_ke_client_refuses_bad_responses),
          TEST_CASE(test_ke_client_random_property), TEST_CASE(test_ke_good_request),
          TEST_CASE(test_ke_every_prefix_is_incomplete),
          TEST_CASE(test_ke_aead_list_and_noncritical_aead),
          TEST_CASE(test_ke_wrong_aead_is_not_granted),
          TEST_CASE(test_ke_unknown_critical_record), TEST_CASE(test_ke_bad_requests),
          TEST_CASE(test_ke_oversized_is_refused_before_it_arrives),
          TEST_CASE(test_ke_response_with_cookies_and_server), TEST_CASE(test_ke_error_record),
          TEST_CASE(test_ke_exporter_context), TEST_CASE(test_ke_random_input_property))
