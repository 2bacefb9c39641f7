/* Unit tests for http: request heads complete or not, well formed or not, what they ask for;
 * answer heads. */
#include "http.h"

#include "harness.h"

static HTP_Status
parse(const char *s, HTP_Request *rq)
{
  return HTP_Parse(s, strlen(s), rq);
}

static void
test_htp_get_metrics_ok_with_length(void)
{
  HTP_Request rq;
  const char *s = "GET /metrics HTTP/1.1\r\nHost: a\r\nAccept: */*\r\n\r\n";
  TEST_EQ_INT(parse(s, &rq), HTP_OK);
  TEST_EQ_INT(rq.length, strlen(s));
  TEST_CHECK(!rq.head);
}

static void
test_htp_head_and_query_string_ok(void)
{
  HTP_Request rq;
  TEST_EQ_INT(parse("HEAD /metrics?x=1 HTTP/1.0\r\n\r\n", &rq), HTP_OK);
  TEST_CHECK(rq.head);
}

static void
test_htp_bare_lf_lines_accepted(void)
{
  HTP_Request rq;
  TEST_EQ_INT(parse("GET /metrics HTTP/1.1\nHost: a\n\n", &rq), HTP_OK);
}

static void
test_htp_every_prefix_is_incomplete(void)
{
  HTP_Request rq;
  const char *s = "GET /metrics HTTP/1.1\r\nHost: a\r\n\r\n";
  for (size_t n = 0; n < strlen(s); n++)
    TEST_EQ_INT(HTP_Parse(s, n, &rq), HTP_INCOMPLETE);
}

static void
test_htp_too_large_without_end(void)
{
  static char big[HTP_MAX_REQUEST + 10];
  memset(big, 'a', sizeof(big));
  HTP_Request rq;
  TEST_EQ_INT(HTP_Parse(big, sizeof(big), &rq), HTP_TOO_LARGE);
  TEST_EQ_INT(HTP_Parse(big, HTP_MAX_REQUEST - 1, &rq), HTP_INCOMPLETE);
}

static void
test_htp_outcomes_of_bad_requests(void)
{
  static const struct {
    const char *req;
    HTP_Status want;
  } cases[] = {
      {"GET /other HTTP/1.1\r\n\r\n", HTP_NOT_FOUND},
      {"GET /metricsx HTTP/1.1\r\n\r\n", HTP_NOT_FOUND},
      {"POST /metrics HTTP/1.1\r\n\r\n", HTP_METHOD},
      {"GET /metrics HTTP/2.0\r\n\r\n", HTP_VERSION},
      {"GET /metrics HTTP/1.1 x\r\n\r\n", HTP_BAD},
      {"GET /metrics\r\n\r\n", HTP_BAD},
      {" /metrics HTTP/1.1\r\n\r\n", HTP_BAD},
      {"G(T /metrics HTTP/1.1\r\n\r\n", HTP_BAD},
      {"GET /metrics HTTP/1.1\r\nno colon\r\n\r\n", HTP_BAD},
      {"GET /metrics HTTP/1.1\r\n: empty name\r\n\r\n", HTP_BAD},
      {"GET /metrics HTTP/1.1\r\nX: a\001b\r\n\r\n", HTP_BAD},
      {"GET /metrics HTTP/1.1\r\nContent-Length: 5\r\n\r\n", HTP_BAD},
      {"GET /metrics HTTP/1.1\r\ncontent-length: 0\r\n\r\n", HTP_OK},
      {"GET /metrics HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n", HTP_BAD},
      {"GET /other HTTP/1.1\r\nbad\r\n\r\n", HTP_BAD},
  };
  for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
    HTP_Request rq;
    HTP_Status st = parse(cases[i].req, &rq);
    if (st != cases[i].want)
      fprintf(stderr, "case %zu: %s\n", i, cases[i].req);
    TEST_EQ_INT(st, cases[i].want);
  }
}

static void
test_htp_nul_in_request_line_is_bad(void)
{
  static const char req[] = "GET /met\0rics HTTP/1.1\r\n\r\n";
  HTP_Request rq;
  TEST_EQ_INT(HTP_Parse(req, sizeof(req) - 1, &rq), HTP_BAD);
}

static void
test_htp_codes(void)
{
  TEST_EQ_INT(HTP_Code(HTP_OK), 200);
  TEST_EQ_INT(HTP_Code(HTP_BAD), 400);
  TEST_EQ_INT(HTP_Code(HTP_NOT_FOUND), 404);
  TEST_EQ_INT(HTP_Code(HTP_METHOD), 405);
  TEST_EQ_INT(HTP_Code(HTP_TOO_LARGE), 431);
  TEST_EQ_INT(HTP_Code(HTP_VERSION), 505);
  TEST_EQ_INT(HTP_Code(HTP_INCOMPLETE), 0);
}

static void
test_htp_response_head(void)
{
  char out[256];
  size_t n = HTP_ResponseHead(200, "text/plain", 42, out, sizeof(out));
  TEST_EQ_INT(n, strlen(out));
  TEST_EQ_STR(out, "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 42\r\n"
                   "Connection: close\r\n\r\n");
  n = HTP_ResponseHead(405, "text/plain", 4, out, sizeof(out));
  TEST_CHECK(n > 0 && strstr(out, "Allow: GET, HEAD\r\n") != NULL);
  TEST_EQ_INT(HTP_ResponseHead(200, "text/plain", 42, out, 20), 0);
}

/* Property: whatever the octets, the parser answers, and only HTP_OK sets a length no
 * larger than the input. */
static void
test_htp_random_input_never_overreads(void)
{
  test_rng_state = harness_seed;
  char buf[300];
  for (int i = 0; i < 20000; i++) {
    size_t n = test_rng() % sizeof(buf);
    for (size_t j = 0; j < n; j++) {
      uint64_t r = test_rng();
      buf[j] = r % 4 == 0 ? "\r\n: /GETHP1."[r / 4 % 12] : (char)(r >> 8);
    }
    HTP_Request rq;
    HTP_Status st = HTP_Parse(buf, n, &rq);
    TEST_CHECK(st == HTP_OK ? rq.length > 0 && rq.length <= n : rq.length == 0);
  }
}

TEST_MAIN(TEST_CASE(test_htp_get_metrics_ok_with_length),
          TEST_CASE(test_htp_head_and_query_string_ok),
          TEST_CASE(test_htp_bare_lf_lines_accepted),
          TEST_CASE(test_htp_every_prefix_is_incomplete),
          TEST_CASE(test_htp_too_large_without_end),
          TEST_CASE(test_htp_outcomes_of_bad_requests),
          TEST_CASE(test_htp_nul_in_request_line_is_bad), TEST_CASE(test_htp_codes),
          TEST_CASE(test_htp_response_head), TEST_CASE(test_htp_random_input_never_overreads))
