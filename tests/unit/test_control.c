/* Mode 6 tests: the wire codec (ctlwire) and the request handling (control), with hand-built
 * requests, a real monitor table, restrict list and keys table, and injected time. */
#include "control.h"

#include <openssl/evp.h>

#include "ctlwire.h"
#include "harness.h"

#define SECRET "controlsecret"
#define OTHER_SECRET "othersecret"

static const CNF_KeyRange ALL_TRUSTED[] = {{1, 65535}};
static SRV_System sys;
static const NTT_Now now0 = {.real = {1700000000, 0}, .mono_ns = 500000000000LL};

/* ------------------------------------------------------------------------------------ */
/* Helpers                                                                               */

/* MD5(key || data): the RFC 5905 digest, computed here independently of keys.c, for any
 * MAC position (KEY_Sign/KEY_Verify require 48 octets before the MAC). Key 1 and 3 use
 * SECRET, key 2 OTHER_SECRET. */
static const char *
secret_of(uint32_t id)
{
  return id == 2 ? OTHER_SECRET : SECRET;
}

static void
md5_mac(uint32_t id, const uint8_t *data, size_t len, uint8_t out[16])
{
  EVP_MD_CTX *c = EVP_MD_CTX_new();
  unsigned int n = 0;
  EVP_DigestInit_ex(c, EVP_md5(), NULL);
  EVP_DigestUpdate(c, secret_of(id), strlen(secret_of(id)));
  EVP_DigestUpdate(c, data, len);
  EVP_DigestFinal_ex(c, out, &n);
  EVP_MD_CTX_free(c);
}

static size_t
test_sign(const KEY_Table *t, uint32_t id, uint8_t *pkt, size_t len, size_t bufsize)
{
  (void)t;
  if (len % 4 != 0 || len + 20 > bufsize)
    return 0;
  PKT_Put32(pkt + len, id);
  md5_mac(id, pkt, len, pkt + len + 4);
  return len + 20;
}

static KEY_Verdict
test_verify(const KEY_Table *t, const uint8_t *pkt, size_t len, const PKT_Trailer *tr,
            const NetAddr *src)
{
  uint8_t d[16];
  (void)t;
  (void)src;
  if (!tr->has_mac)
    return KEY_NO_MAC;
  if (tr->key_id < 1 || tr->key_id > 3)
    return KEY_UNKNOWN_KEY;
  if (tr->digest_len != 16 || (size_t)tr->mac_offset + 20 != len)
    return KEY_BAD_LENGTH;
  md5_mac(tr->key_id, pkt, tr->mac_offset, d);
  return memcmp(d, pkt + tr->mac_offset + 4, 16) == 0 ? KEY_OK : KEY_BAD_DIGEST;
}

static KEY_Table *
make_keys(void)
{
  KEY_Table *t = KEY_ParseText(
      "t.keys", "1 MD5 " SECRET "\n2 MD5 " OTHER_SECRET "\n3 MD5 " SECRET "\n", NULL);
  KEY_SetTrusted(t, ALL_TRUSTED, 1);
  return t;
}

static NetAddr
addr(const char *text, uint16_t port)
{
  NetAddr a;
  ADR_Parse(text, &a);
  a.port = port;
  return a;
}

static CTL_Ctx
make_ctx(void)
{
  SRV_SystemUnsynchronized(&sys, -20);
  sys.leap = 0;
  sys.stratum = 3;
  sys.refid = 0xc0a80101; /* 192.168.1.1 */
  sys.ref_ts = 0xe8fe6000ULL << 32;
  sys.root_delay = 0.0125;
  sys.root_disp = 0.001;
  sys.update_mono_ns = now0.mono_ns;
  CTL_Ctx c = {.sys = &sys,
               .sys_source = CTW_SST_TS_NTP,
               .sys_event_count = 1,
               .sys_last_event = 5,
               .poll = 6,
               .minpoll = 3,
               .offset = 0.000123,
               .frequency_ppm = -12.5,
               .sys_jitter = 0.0002,
               .clk_jitter = 0.0003,
               .clk_wander_ppm = 0.004,
               .version = "ntpgated 0.1.0",
               .processor = "x86_64",
               .system = "Linux",
               .release = "6.1.0-18-amd64"};
  memset(c.nonce_secret, 0x5a, sizeof(c.nonce_secret));
  return c;
}

/* A request with data padded to 4 (and with key_id: to 8, then the MAC). */
static size_t
build(uint8_t *buf, uint8_t opcode, uint16_t seq, uint16_t associd, const char *data,
      uint32_t key_id)
{
  size_t n = data ? strlen(data) : 0;
  memset(buf, 0, 600);
  buf[0] = (4 << 3) | 6;
  buf[1] = opcode;
  PKT_Put16(buf + 2, seq);
  PKT_Put16(buf + 6, associd);
  PKT_Put16(buf + 10, (uint16_t)n);
  if (n)
    memcpy(buf + 12, data, n);
  size_t len = (12 + n + 3) & ~(size_t)3;
  if (key_id) {
    len = (len + 7) & ~(size_t)7;
    len = test_sign(NULL, key_id, buf, len, 600);
  }
  return len;
}

typedef struct {
  CTL_Reason why;
  size_t frags, total;
  uint16_t status;
  int err; /* error code, -1 if not an error */
  char text[CTW_MAX_PAYLOAD + 1];
  size_t len;
} Answer;

static CTL_Output out;

/* Run a request and reassemble what comes back (expecting MACs when mac). */
static Answer
ask_full(const CTL_Ctx *c, const uint8_t *req, size_t len, const NetAddr *src, uint32_t rflags,
         const NTT_Now *now, bool mac)
{
  Answer a;
  memset(&a, 0, sizeof(a));
  a.err = -1;
  a.why = CTL_Handle(c, req, len, src, rflags, now, &out);
  a.frags = out.wire.count;
  a.total = CTW_TotalLen(&out.wire);
  if (a.frags == 0)
    return a;
  const uint8_t *d[CTW_MAX_FRAGS];
  for (size_t i = 0; i < a.frags; i++)
    d[i] = out.wire.buf[i];
  CTW_ReassembleResult r =
      CTW_Reassemble(d, out.wire.len, a.frags, PKT_Get16(req + 2), req[1] & 0x1f, mac ? 20 : 0,
                     (uint8_t *)a.text, sizeof(a.text) - 1, &a.len, &a.status);
  if (r == CTW_RA_SERVER_ERROR)
    a.err = a.status >> 8;
  else
    TEST_EQ_INT(r, CTW_RA_OK);
  a.text[a.len] = '\0';
  return a;
}

static Answer
ask(const CTL_Ctx *c, const uint8_t *req, size_t len, const NetAddr *src)
{
  return ask_full(c, req, len, src, 0, &now0, false);
}

/* The value of name in a "name=value, ..." text, or "" (buf of 128). */
static const char *
var(const char *text, const char *name, char *buf)
{
  size_t n = strlen(name);
  buf[0] = '\0';
  for (const char *p = text; (p = strstr(p, name)) != NULL; p += n) {
    bool start = p == text || p[-1] == ' ' || p[-1] == '\n';
    if (!start || p[n] != '=')
      continue;
    const char *v = p + n + 1;
    size_t k = 0;
    while (v[k] && v[k] != ',' && v[k] != '\r' && k < 127)
      k++;
    memcpy(buf, v, k);
    buf[k] = '\0';
    return buf;
  }
  return buf;
}

static bool
has_var(const char *text, const char *name)
{
  size_t n = strlen(name);
  for (const char *p = text; (p = strstr(p, name)) != NULL; p += n)
    if ((p == text || p[-1] == ' ' || p[-1] == '\n') && p[n] == '=')
      return true;
  return false;
}

/* ------------------------------------------------------------------------------------ */
/* Codec                                                                                 */

static void
test_ctw_fragments_reassemble(void)
{
  static CTW_Datagrams d;
  CTW_Writer w;
  char expect[4000] = "", item[32];
  CTW_WriterInit(&w, &d, CTW_MAX_FRAGS);
  for (int i = 0; i < 150; i++) {
    snprintf(item, sizeof(item), "var%d=%d", i, i * 7);
    TEST_CHECK(CTW_PutItem(&w, item));
  }
  /* rebuild what the text must be: ", " separators, ",\r\n" before column 72 */
  int line = 0;
  for (int i = 0; i < 150; i++) {
    snprintf(item, sizeof(item), "var%d=%d", i, i * 7);
    int n = (int)strlen(item);
    if (i > 0 && line + 1 + n + 1 >= 72) {
      strcat(expect, ",\r\n");
      line = 0;
    } else if (i > 0) {
      strcat(expect, ", ");
      line += 2;
    }
    strcat(expect, item);
    line += n;
  }
  strcat(expect, "\r\n");
  size_t total = strlen(expect);
  CTW_Reply r = {
      .leap = 0, .version = 4, .opcode = 2, .sequence = 77, .status = 0x0615, .associd = 0};
  CTW_Finish(&w, &r);
  TEST_EQ_INT(d.count, (total + CTW_MAX_DATA - 1) / CTW_MAX_DATA);
  size_t off = 0;
  for (size_t i = 0; i < d.count; i++) {
    const uint8_t *p = d.buf[i];
    size_t cnt = PKT_Get16(p + 10);
    TEST_EQ_INT(p[0], (4 << 3) | 6);
    TEST_EQ_INT(p[1] & 0x80, 0x80);
    TEST_EQ_INT(p[1] & 0x40, 0);
    TEST_EQ_INT((p[1] & 0x20) != 0, i + 1 < d.count); /* M on all but the last */
    TEST_EQ_INT(p[1] & 0x1f, 2);
    TEST_EQ_INT(PKT_Get16(p + 2), 77);
    TEST_EQ_INT(PKT_Get16(p + 4), 0x0615);
    TEST_EQ_INT(PKT_Get16(p + 8), off);
    TEST_EQ_INT(cnt, i + 1 < d.count ? CTW_MAX_DATA : total - off);
    TEST_EQ_INT(d.len[i], (12 + cnt + 3) & ~(size_t)3);
    off += cnt;
  }
  TEST_EQ_INT(off, total);
  /* reassemble in reverse order */
  const uint8_t *dg[CTW_MAX_FRAGS];
  size_t lens[CTW_MAX_FRAGS];
  for (size_t i = 0; i < d.count; i++) {
    dg[i] = d.buf[d.count - 1 - i];
    lens[i] = d.len[d.count - 1 - i];
  }
  static uint8_t data[CTW_MAX_PAYLOAD];
  size_t dlen;
  uint16_t status;
  TEST_EQ_INT(CTW_Reassemble(dg, lens, d.count, 77, 2, 0, data, sizeof(data), &dlen, &status),
              CTW_RA_OK);
  TEST_EQ_INT(dlen, total);
  TEST_CHECK(memcmp(data, expect, total) == 0);
  TEST_EQ_INT(status, 0x0615);
  /* a missing fragment leaves a gap; a missing last fragment is noticed */
  TEST_EQ_INT(
      CTW_Reassemble(dg, lens, d.count - 1, 77, 2, 0, data, sizeof(data), &dlen, &status),
      CTW_RA_GAP);
  TEST_EQ_INT(CTW_Reassemble(dg + 1, lens + 1, d.count - 1, 77, 2, 0, data, sizeof(data),
                             &dlen, &status),
              CTW_RA_NO_LAST);
  TEST_EQ_INT(CTW_Reassemble(dg, lens, d.count, 78, 2, 0, data, sizeof(data), &dlen, &status),
              CTW_RA_BAD_HEADER);
}

static void
test_ctw_odd_length_padded_to_4(void)
{
  static CTW_Datagrams d;
  CTW_Writer w;
  CTW_WriterInit(&w, &d, 1);
  TEST_CHECK(CTW_PutBytes(&w, "\1\2\3\4\5", 5));
  CTW_Reply r = {.version = 3, .opcode = 1, .sequence = 9};
  CTW_Finish(&w, &r);
  TEST_EQ_INT(d.count, 1);
  TEST_EQ_INT(d.len[0], 20);
  TEST_EQ_INT(PKT_Get16(d.buf[0] + 10), 5);
  TEST_EQ_INT(d.buf[0][17], 0);
  TEST_EQ_INT(d.buf[0][19], 0);
  TEST_EQ_INT((d.buf[0][0] >> 3) & 7, 3); /* version echoed */
  /* binary data gets no "\r\n" */
  TEST_EQ_INT(d.buf[0][16], 5);
  /* a datagram whose length is not a multiple of 4 is refused by the reassembler */
  static uint8_t data[CTW_MAX_PAYLOAD];
  size_t dlen, len = 18;
  uint16_t st;
  const uint8_t *dg = d.buf[0];
  TEST_EQ_INT(CTW_Reassemble(&dg, &len, 1, 9, 1, 0, data, sizeof(data), &dlen, &st),
              CTW_RA_BAD_PADDING);
}

static void
test_ctw_writer_overflow_writes_nothing(void)
{
  static CTW_Datagrams d;
  CTW_Writer w;
  char big[500];
  memset(big, 'x', sizeof(big) - 1);
  big[sizeof(big) - 1] = '\0';
  CTW_WriterInit(&w, &d, 1);
  TEST_CHECK(CTW_PutItem(&w, "a=1"));
  TEST_CHECK(!CTW_PutItem(&w, big));
  TEST_CHECK(w.overflow);
  TEST_EQ_INT(w.pos, 3);
}

static void
test_ctw_parse_request_checks(void)
{
  uint8_t b[600];
  CTW_Header h;
  size_t len = build(b, 2, 1, 0, "stratum", 0);
  TEST_EQ_INT(CTW_ParseRequest(b, len, &h), CTW_PARSE_OK);
  TEST_EQ_INT(h.count, 7);
  TEST_CHECK(!h.mac.has_mac);
  TEST_EQ_INT(CTW_ParseRequest(b, 11, &h), CTW_PARSE_SHORT);
  TEST_EQ_INT(CTW_ParseRequest(b, len - 1, &h), CTW_PARSE_LENGTH);
  PKT_Put16(b + 10, 9); /* count > data present */
  TEST_EQ_INT(CTW_ParseRequest(b, 16, &h), CTW_PARSE_COUNT);
  PKT_Put16(b + 10, 7);
  for (int bit = 0x20; bit <= 0x80; bit <<= 1) {
    b[1] = (uint8_t)(2 | bit);
    TEST_EQ_INT(CTW_ParseRequest(b, len, &h), CTW_PARSE_RESPONSE);
  }
  b[1] = 2;
  PKT_Put16(b + 8, 4);
  TEST_EQ_INT(CTW_ParseRequest(b, len, &h), CTW_PARSE_RESPONSE);
  PKT_Put16(b + 8, 0);
  b[0] = (5 << 3) | 6;
  TEST_EQ_INT(CTW_ParseRequest(b, len, &h), CTW_PARSE_VERSION);
  b[0] = (4 << 3) | 3;
  TEST_EQ_INT(CTW_ParseRequest(b, len, &h), CTW_PARSE_MODE);
  /* a MAC after the data padded to 8 */
  len = build(b, 8, 1, 0, "server 1.2.3.4", 1);
  TEST_EQ_INT(CTW_ParseRequest(b, len, &h), CTW_PARSE_OK);
  TEST_CHECK(h.mac.has_mac);
  TEST_EQ_INT(h.mac.key_id, 1);
  TEST_EQ_INT(h.mac.mac_offset, 32);
  TEST_EQ_INT(h.mac.digest_len, 16);
  /* a truncated MAC (10 digest octets) is no MAC */
  TEST_EQ_INT(CTW_ParseRequest(b, len - 8, &h), CTW_PARSE_OK);
  TEST_CHECK(!h.mac.has_mac);
}

static void
test_ctw_items(void)
{
  const char *t = " a, bb=2 ,c= x y ,,d=";
  const char *p = t, *end = t + strlen(t);
  CTW_Item it;
  TEST_CHECK(CTW_NextItem(&p, end, &it) && CTW_ItemIs(&it, "a") && !it.value);
  TEST_CHECK(CTW_NextItem(&p, end, &it) && CTW_ItemIs(&it, "bb") && it.value_len == 1 &&
             it.value[0] == '2');
  TEST_CHECK(CTW_NextItem(&p, end, &it) && CTW_ItemIs(&it, "c") && it.value_len == 3);
  TEST_CHECK(CTW_NextItem(&p, end, &it) && CTW_ItemIs(&it, "d") && it.value &&
             it.value_len == 0);
  TEST_CHECK(!CTW_NextItem(&p, end, &it));
}

static void
test_ctw_reassemble_bad_count_and_mac(void)
{
  static CTW_Datagrams d;
  CTW_Writer w;
  CTW_WriterInit(&w, &d, 1);
  CTW_PutItem(&w, "x=1");
  CTW_Reply r = {.version = 4, .opcode = 2, .sequence = 5};
  CTW_Finish(&w, &r);
  static uint8_t data[CTW_MAX_PAYLOAD];
  size_t dlen;
  uint16_t st;
  const uint8_t *dg = d.buf[0];
  PKT_Put16(d.buf[0] + 10, 100); /* count larger than the datagram */
  TEST_EQ_INT(CTW_Reassemble(&dg, d.len, 1, 5, 2, 0, data, sizeof(data), &dlen, &st),
              CTW_RA_BAD_COUNT);
  PKT_Put16(d.buf[0] + 10, 5);
  TEST_EQ_INT(CTW_Reassemble(&dg, d.len, 1, 5, 2, 20, data, sizeof(data), &dlen, &st),
              CTW_RA_BAD_MAC);
}

/* ------------------------------------------------------------------------------------ */
/* Never answered                                                                        */

static void
test_ctl_responses_errors_fragments_never_answered(void)
{
  CTL_Ctx c = make_ctx();
  NetAddr src = addr("192.0.2.1", 40000);
  uint8_t b[600];
  for (int op = 0; op < 32; op++) {
    size_t len = build(b, (uint8_t)op, 1, 0, "x", 0);
    for (int bit = 0x20; bit <= 0x80; bit <<= 1) {
      b[1] = (uint8_t)(op | bit);
      TEST_EQ_INT(CTL_Handle(&c, b, len, &src, 0, &now0, &out), CTL_R_DROP_RESPONSE);
      TEST_EQ_INT(out.wire.count, 0);
    }
    b[1] = (uint8_t)op;
    PKT_Put16(b + 8, 468);
    TEST_EQ_INT(CTL_Handle(&c, b, len, &src, 0, &now0, &out), CTL_R_DROP_RESPONSE);
    TEST_EQ_INT(out.wire.count, 0);
  }
  size_t len = build(b, 2, 1, 0, NULL, 0);
  TEST_EQ_INT(CTL_Handle(&c, b, 8, &src, 0, &now0, &out), CTL_R_DROP_SHORT);
  TEST_EQ_INT(out.wire.count, 0);
  TEST_EQ_INT(CTL_Handle(&c, b, len, &src, RST_NOQUERY, &now0, &out), CTL_R_DROP_NOQUERY);
  TEST_EQ_INT(out.wire.count, 0);
  b[0] = (0 << 3) | 6;
  TEST_EQ_INT(CTL_Handle(&c, b, len, &src, 0, &now0, &out), CTL_R_DROP_VERSION);
  b[0] = (4 << 3) | 7;
  TEST_EQ_INT(CTL_Handle(&c, b, len, &src, 0, &now0, &out), CTL_R_DROP_MODE);
  TEST_EQ_INT(out.wire.count, 0);
}

static void
test_ctl_bad_count_gets_format_error(void)
{
  CTL_Ctx c = make_ctx();
  NetAddr src = addr("192.0.2.1", 40000);
  uint8_t b[600];
  size_t len = build(b, 2, 3, 0, "stratum", 0);
  PKT_Put16(b + 10, 40);
  Answer a = ask(&c, b, len, &src);
  TEST_EQ_INT(a.why, CTL_R_ERR_FORMAT);
  TEST_EQ_INT(a.err, CTW_ERR_BADFMT);
  TEST_EQ_INT(a.total, 12);
  a = ask(&c, b, len - 2, &src);
  TEST_EQ_INT(a.err, CTW_ERR_BADFMT);
  TEST_CHECK(a.total <= len - 2);
}

/* ------------------------------------------------------------------------------------ */
/* System variables and status                                                           */

static void
test_ctl_rv_defaults(void)
{
  CTL_Ctx c = make_ctx();
  NetAddr src = addr("192.0.2.1", 40000);
  uint8_t b[600];
  char v[128];
  Answer a = ask(&c, b, build(b, 2, 1, 0, NULL, 0), &src);
  TEST_EQ_INT(a.why, CTL_R_ANSWERED);
  TEST_EQ_INT(a.frags, 1);
  TEST_EQ_INT(a.status, CTW_SysStatus(0, CTW_SST_TS_NTP, 1, 5));
  TEST_EQ_STR(var(a.text, "version", v), "\"ntpgated 0.1.0\"");
  TEST_EQ_STR(var(a.text, "processor", v), "\"x86_64\"");
  TEST_EQ_STR(var(a.text, "system", v), "\"Linux\"");
  TEST_EQ_STR(var(a.text, "leap", v), "0");
  TEST_EQ_STR(var(a.text, "stratum", v), "3");
  TEST_EQ_STR(var(a.text, "precision", v), "-20");
  TEST_EQ_STR(var(a.text, "rootdelay", v), "12.500");
  TEST_EQ_STR(var(a.text, "rootdisp", v), "1.000");
  TEST_EQ_STR(var(a.text, "refid", v), "192.168.1.1");
  TEST_EQ_STR(var(a.text, "reftime", v), "0xe8fe6000.00000000");
  TEST_EQ_STR(var(a.text, "clock", v), "0xe8fe6f80.00000000");
  TEST_EQ_STR(var(a.text, "peer", v), "0");
  TEST_EQ_STR(var(a.text, "tc", v), "6");
  TEST_EQ_STR(var(a.text, "mintc", v), "3");
  TEST_EQ_STR(var(a.text, "offset", v), "0.123000");
  TEST_EQ_STR(var(a.text, "frequency", v), "-12.500");
  TEST_EQ_STR(var(a.text, "sys_jitter", v), "0.200000");
  TEST_EQ_STR(var(a.text, "clk_jitter", v), "0.300000");
  TEST_EQ_STR(var(a.text, "clk_wander", v), "0.004000");
  TEST_CHECK(!has_var(a.text, "ss_received")); /* counters only by name */
  TEST_CHECK(a.len >= 2 && strcmp(a.text + a.len - 2, "\r\n") == 0);
  /* the root dispersion grows by 15 ppm */
  NTT_Now later = now0;
  later.mono_ns += 100000000000LL;
  later.real.tv_sec += 100;
  a = ask_full(&c, b, build(b, 2, 1, 0, "rootdisp", 0), &src, 0, &later, false);
  TEST_EQ_STR(var(a.text, "rootdisp", v), "2.500");
}

static void
test_ctl_rv_named_exact_text(void)
{
  CTL_Ctx c = make_ctx();
  NetAddr src = addr("192.0.2.1", 40000);
  uint8_t b[600];
  Answer a = ask(&c, b, build(b, 2, 1, 0, "stratum,refid", 0), &src);
  TEST_EQ_STR(a.text, "stratum=3, refid=192.168.1.1\r\n");
  /* stratum 1 and 16: refid as a code */
  sys.stratum = 16;
  sys.refid = PKT_RefidFromCode("INIT");
  a = ask(&c, b, build(b, 2, 1, 0, "stratum,refid,leap", 0), &src);
  TEST_EQ_STR(a.text, "stratum=16, refid=INIT, leap=0\r\n");
  sys.stratum = 1;
  sys.refid = PKT_RefidFromCode("GP\x01");
  a = ask(&c, b, build(b, 2, 1, 0, "refid", 0), &src);
  TEST_EQ_STR(a.text, "refid=GP.\r\n");
}

static void
test_ctl_unknown_variable_gets_unknownvar(void)
{
  CTL_Ctx c = make_ctx();
  NetAddr src = addr("192.0.2.1", 40000);
  uint8_t b[600];
  Answer a = ask(&c, b, build(b, 2, 1, 0, "stratum,nosuchvar", 0), &src);
  TEST_EQ_INT(a.why, CTL_R_ERR_UNKNOWNVAR);
  TEST_EQ_INT(a.err, CTW_ERR_UNKNOWNVAR);
  TEST_EQ_INT(a.total, 12);
  char longname[200];
  memset(longname, 'a', sizeof(longname) - 1);
  longname[sizeof(longname) - 1] = '\0';
  a = ask(&c, b, build(b, 2, 1, 0, longname, 0), &src);
  TEST_EQ_INT(a.err, CTW_ERR_UNKNOWNVAR);
}

static void
test_ctl_stats_counters_and_r_variants(void)
{
  CTL_Ctx c = make_ctx();
  CTL_Stats st = {.uptime = 3600, .received = 1000, .kodsent = 7, .io_sent = 990};
  CTL_Counter k[] = {{"served", 42}, {"ss_limited", 9}};
  c.stats = &st;
  c.counters = k;
  c.n_counters = 2;
  NetAddr src = addr("127.0.0.1", 40000);
  uint8_t b[600];
  Answer a = ask(&c, b,
                 build(b, 2, 1, 0,
                       "ss_uptime,ss_received,ss_received_r,ss_kodsent,ss_reset_r,served,"
                       "ss_limited,io_sent,authkeys",
                       0),
                 &src);
  TEST_EQ_INT(a.why, CTL_R_ANSWERED);
  TEST_EQ_STR(a.text, "ss_uptime=3600, ss_received=1000, ss_received_r=1000, ss_kodsent=7,\r\n"
                      "ss_reset_r=3600, served=42, ss_limited=9, io_sent=990, authkeys=0\r\n");
}

static void
test_ctl_ntpq_stat_lists_are_all_known(void)
{
  /* the names ntpsec ntpq's sysinfo, sysstats, monstats, iostats and authinfo ask for */
  static const char *const lists[] = {
      "peeradr,peermode,leap,stratum,precision,rootdelay,rootdisp,rootdist,refid,reftime,"
      "sys_jitter,clk_jitter,clk_wander,authdelay",
      "ss_uptime,ss_numctlreq",
      "ss_reset,ss_received,ss_thisver,ss_oldver,ss_ver1,ss_ver1client,ss_ver1zero,"
      "ss_ver1symm,ss_badformat,ss_badauth,ss_declined,ss_restricted,ss_limited,ss_kodsent,"
      "ss_processed,ss_reset_r,ss_received_r,ss_thisver_r,ss_oldver_r,ss_ver1_r,"
      "ss_ver1client_r,ss_ver1zero_r,ss_ver1symm_r,ss_badformat_r,ss_badauth_r,"
      "ss_declined_r,ss_restricted_r,ss_limited_r,ss_kodsent_r,ss_processed_r",
      "mru_enabled,mru_hashslots,mru_depth,mru_deepest,mru_maxdepth,mru_mindepth,"
      "mru_maxage,mru_minage,mru_mem,mru_maxmem,mru_exists,mru_new,mru_recycleold,"
      "mru_recyclefull,mru_none,mru_oldest_age",
      "authreset,authkeys,authfreek,authklookups,authknotfound,authencrypts,"
      "authdigestencrypts,authcmacencrypts,authdecrypts,authdigestdecrypts,authdigestfails,"
      "authcmacdecrypts,authcmacfails,authkuncached,authkexpired",
      "iostats_reset,total_rbuf,free_rbuf,used_rbuf,rbuf_lowater,io_dropped,io_ignored,"
      "io_received,io_sent,io_sendfailed,io_wakeups,io_goodwakeups",
  };
  CTL_Ctx c = make_ctx();
  MON_Params mp;
  MON_DefaultParams(&mp);
  MON_Table *t = MON_Create(&mp, 1);
  NetAddr cl = addr("198.51.100.9", 123);
  MON_Check(t, &cl, 3, 4, 0, now0.mono_ns - 30000000000LL, NULL);
  c.mon = t;
  c.mon_params = &mp;
  NetAddr src = addr("192.0.2.1", 40000);
  uint8_t b[600];
  char v[128];
  for (size_t i = 0; i < sizeof(lists) / sizeof(lists[0]); i++) {
    Answer a = ask(&c, b, build(b, 2, (uint16_t)i, 0, lists[i], 0), &src);
    TEST_EQ_INT(a.why, CTL_R_ANSWERED);
    TEST_EQ_INT(a.err, -1);
    if (i == 3) {
      TEST_EQ_STR(var(a.text, "mru_enabled", v), "1");
      TEST_EQ_STR(var(a.text, "mru_depth", v), "1");
      TEST_EQ_STR(var(a.text, "mru_mindepth", v), "600");
      TEST_EQ_STR(var(a.text, "mru_oldest_age", v), "30");
    }
  }
  MON_Destroy(t);
}

/* ------------------------------------------------------------------------------------ */
/* Associations                                                                          */

static CTL_Peer peers[3];

static void
make_peers(CTL_Ctx *c)
{
  memset(peers, 0, sizeof(peers));
  for (int i = 0; i < 3; i++) {
    CTL_Peer *p = &peers[i];
    p->associd = (uint16_t)(100 + i);
    p->configured = true;
    p->select = (uint8_t)(i == 0 ? CTW_SEL_SYSPEER : CTW_SEL_CANDIDATE);
    p->srcadr = addr(i == 2 ? "2001:db8:ffff:ffff:ffff:ffff:ffff:fff1" : "192.0.2.10", 123);
    p->srcadr.bytes[3] = (uint8_t)(i == 2 ? p->srcadr.bytes[3] : 10 + i);
    p->dstadr = addr(i == 2 ? "2001:db8:ffff:ffff:ffff:ffff:ffff:fff2" : "192.0.2.1", 123);
    p->hostname = i == 2 ? "a-rather-long-host-name-for-testing.time.example.net" : NULL;
    p->leap = 0;
    p->stratum = 2;
    p->hmode = 3;
    p->pmode = 4;
    p->hpoll = 6;
    p->ppoll = 6;
    p->precision = -23;
    p->rootdelay = 0.0123456;
    p->rootdisp = 0.0234567;
    p->refid = 0xc0a86401;
    p->reftime = 0xe8fe6f4012345678ULL;
    p->rec = 0xe8fe6f7012345678ULL;
    p->reach = 0xff;
    p->unreach = 0;
    p->flash = 0;
    p->keyid = 0;
    p->offset = -0.000123456;
    p->delay = 0.012345678;
    p->disp = 0.001234567;
    p->jitter = 0.000123456;
    p->filtdelay[0] = 0.0125;
  }
  c->peers = peers;
  c->n_peers = 3;
  c->sys_peer = 100;
}

static void
test_ctl_readstat_status_words(void)
{
  CTL_Ctx c = make_ctx();
  make_peers(&c);
  NetAddr src = addr("192.0.2.1", 40000);
  uint8_t b[600];
  Answer a = ask(&c, b, build(b, 1, 1, 0, NULL, 0), &src);
  TEST_EQ_INT(a.why, CTL_R_ANSWERED);
  TEST_EQ_INT(a.status, 0x0615); /* leap 0, source ntp, 1 event, last event 5 */
  TEST_EQ_INT(a.len, 12);
  const uint8_t *d = (const uint8_t *)a.text;
  TEST_EQ_INT(PKT_Get16(d), 100);
  TEST_EQ_INT(PKT_Get16(d + 2), 0x9600); /* conf, reach, sys.peer */
  TEST_EQ_INT(PKT_Get16(d + 4), 101);
  TEST_EQ_INT(PKT_Get16(d + 6), 0x9400); /* conf, reach, candidate */
  /* one association's status word and its default variables */
  peers[1].keyid = 5;
  peers[1].authentic = true;
  peers[1].num_events = 2;
  peers[1].last_event = 0xa;
  a = ask(&c, b, build(b, 1, 1, 101, NULL, 0), &src);
  TEST_EQ_INT(a.status, 0xf42a);
  TEST_CHECK(has_var(a.text, "srcadr"));
  a = ask(&c, b, build(b, 1, 1, 999, NULL, 0), &src);
  TEST_EQ_INT(a.err, CTW_ERR_BADASSOC);
}

static void
test_ctl_peer_variables(void)
{
  CTL_Ctx c = make_ctx();
  make_peers(&c);
  NetAddr src = addr("192.0.2.1", 40000);
  uint8_t b[600];
  char v[128];
  Answer a = ask(&c, b, build(b, 2, 1, 100, NULL, 0), &src);
  TEST_EQ_INT(a.why, CTL_R_ANSWERED);
  TEST_EQ_INT(a.status, 0x9600);
  TEST_EQ_STR(var(a.text, "srcadr", v), "192.0.2.10");
  TEST_EQ_STR(var(a.text, "srcport", v), "123");
  TEST_EQ_STR(var(a.text, "dstadr", v), "192.0.2.1");
  TEST_EQ_STR(var(a.text, "stratum", v), "2");
  TEST_EQ_STR(var(a.text, "refid", v), "192.168.100.1");
  TEST_EQ_STR(var(a.text, "reach", v), "0xff");
  TEST_EQ_STR(var(a.text, "hmode", v), "3");
  TEST_EQ_STR(var(a.text, "pmode", v), "4");
  TEST_EQ_STR(var(a.text, "ppoll", v), "6");
  TEST_EQ_STR(var(a.text, "hpoll", v), "6");
  TEST_EQ_STR(var(a.text, "delay", v), "12.345678");
  TEST_EQ_STR(var(a.text, "offset", v), "-0.123456");
  TEST_EQ_STR(var(a.text, "jitter", v), "0.123456");
  TEST_EQ_STR(var(a.text, "rootdisp", v), "23.457");
  TEST_EQ_STR(var(a.text, "rec", v), "0xe8fe6f70.12345678");
  a = ask(&c, b, build(b, 2, 1, 100, "filtdelay,srchost", 0), &src);
  TEST_EQ_STR(a.text, "filtdelay= 12.50 0.00 0.00 0.00 0.00 0.00 0.00 0.00\r\n");
  a = ask(&c, b, build(b, 2, 1, 100, "bogus", 0), &src);
  TEST_EQ_INT(a.err, CTW_ERR_UNKNOWNVAR);
  a = ask(&c, b, build(b, 2, 1, 4242, NULL, 0), &src);
  TEST_EQ_INT(a.err, CTW_ERR_BADASSOC);
  /* sysinfo's peeradr/peermode follow the system peer */
  a = ask(&c, b, build(b, 2, 1, 0, "peeradr,peermode,peer", 0), &src);
  TEST_EQ_STR(a.text, "peeradr=\"192.0.2.10:123\", peermode=3, peer=100\r\n");
}

static void
test_ctl_peer_defaults_cut_to_one_datagram(void)
{
  CTL_Ctx c = make_ctx();
  make_peers(&c);
  NetAddr src = addr("192.0.2.1", 40000), lo = addr("127.0.0.1", 40000);
  uint8_t b[600];
  char v[128];
  Answer a = ask(&c, b, build(b, 2, 1, 102, NULL, 0), &src);
  TEST_EQ_INT(a.why, CTL_R_ANSWERED);
  TEST_EQ_INT(a.frags, 1);
  TEST_EQ_STR(var(a.text, "srcadr", v), "2001:db8:ffff:ffff:ffff:ffff:ffff:fff1");
  TEST_EQ_STR(var(a.text, "srchost", v),
              "\"a-rather-long-host-name-for-testing.time.example.net\"");
  /* what ntpq -p needs made it; the tail did not */
  static const char *const need[] = {"dstadr",  "refid", "stratum", "hmode",
                                     "reach",   "hpoll", "ppoll",   "rec",
                                     "reftime", "delay", "offset",  "jitter"};
  for (size_t i = 0; i < sizeof(need) / sizeof(need[0]); i++)
    TEST_CHECK(has_var(a.text, need[i]));
  TEST_CHECK(!has_var(a.text, "keyid"));
  /* loopback gets them all */
  a = ask(&c, b, build(b, 2, 1, 102, NULL, 0), &lo);
  TEST_EQ_INT(a.frags, 2);
  TEST_CHECK(has_var(a.text, "keyid"));
  /* IPv4 without a host name: all in one datagram */
  a = ask(&c, b, build(b, 2, 1, 101, NULL, 0), &src);
  TEST_EQ_INT(a.frags, 1);
  TEST_CHECK(has_var(a.text, "keyid"));
}

/* ------------------------------------------------------------------------------------ */
/* MRU list                                                                              */

static MON_Table *
make_mon(int n)
{
  MON_Params mp;
  MON_DefaultParams(&mp);
  MON_Table *t = MON_Create(&mp, 7);
  for (int i = 0; i < n; i++) {
    char text[32];
    snprintf(text, sizeof(text), "198.51.100.%d", i + 1);
    NetAddr a = addr(text, (uint16_t)(1000 + i));
    for (int k = 0; k <= i % 3; k++)
      MON_Check(t, &a, 3, 4, i == 0 ? RST_NOMODIFY | RST_KOD | RST_LIMITED : 0,
                now0.mono_ns - 60000000000LL + i * 100000000LL + k * 1000000LL, NULL);
  }
  return t;
}

/* REQ_NONCE, then the nonce as ntpq sends it back. */
static void
get_nonce(const CTL_Ctx *c, const NetAddr *src, const NTT_Now *now, char *nonce)
{
  uint8_t b[600];
  Answer a = ask_full(c, b, build(b, 12, 1, 0, NULL, 0), src, 0, now, false);
  TEST_EQ_INT(a.why, CTL_R_ANSWERED);
  TEST_CHECK(strncmp(a.text, "nonce=", 6) == 0);
  TEST_CHECK(a.total <= 48);
  snprintf(nonce, 64, "%.30s", a.text);
}

static void
test_ctl_mru_needs_nonce(void)
{
  CTL_Ctx c = make_ctx();
  c.mon = make_mon(3);
  NetAddr src = addr("192.0.2.1", 40000);
  uint8_t b[600];
  Answer a = ask(&c, b, build(b, 10, 1, 0, "frags=32", 0), &src);
  TEST_EQ_INT(a.why, CTL_R_DROP_NONCE);
  TEST_EQ_INT(a.frags, 0);
  a = ask(&c, b, build(b, 10, 1, 0, "nonce=0123456789abcdef01234567, frags=32", 0), &src);
  TEST_EQ_INT(a.why, CTL_R_DROP_NONCE);
  TEST_EQ_INT(a.frags, 0);
  MON_Destroy(c.mon);
}

static void
test_ctl_mru_with_nonce_lists_records(void)
{
  CTL_Ctx c = make_ctx();
  c.mon = make_mon(3);
  NetAddr src = addr("192.0.2.1", 40000);
  uint8_t b[600];
  char nonce[64], req[128], v[128];
  get_nonce(&c, &src, &now0, nonce);
  snprintf(req, sizeof(req), "%s, frags=32", nonce);
  Answer a = ask(&c, b, build(b, 10, 2, 0, req, 0), &src);
  TEST_EQ_INT(a.why, CTL_R_ANSWERED);
  TEST_CHECK(has_var(a.text, "nonce"));
  /* oldest first */
  TEST_EQ_STR(var(a.text, "addr.0", v), "198.51.100.1:1000");
  TEST_EQ_STR(var(a.text, "addr.1", v), "198.51.100.2:1001");
  TEST_EQ_STR(var(a.text, "addr.2", v), "198.51.100.3:1002");
  TEST_EQ_STR(var(a.text, "ct.0", v), "1");
  TEST_EQ_STR(var(a.text, "ct.2", v), "3");
  TEST_EQ_STR(var(a.text, "mv.0", v), "35");
  TEST_EQ_STR(var(a.text, "rs.0", v), "0x80"); /* RES_NOMODIFY; kod/limited cleared */
  TEST_EQ_STR(var(a.text, "rs.1", v), "0x0");
  /* 60 s ago in NTP time */
  TEST_EQ_STR(var(a.text, "first.0", v), "0xe8fe6f44.00000000");
  TEST_EQ_STR(var(a.text, "now", v), "0xe8fe6f80.00000000");
  TEST_EQ_STR(var(a.text, "last.newest", v), var(a.text, "last.2", req));
  /* filters as ntpq sends them */
  snprintf(req, sizeof(req), "%s, frags=32, mincount=3", nonce);
  a = ask(&c, b, build(b, 10, 3, 0, req, 0), &src);
  TEST_EQ_STR(var(a.text, "addr.0", v), "198.51.100.3:1002");
  TEST_CHECK(!has_var(a.text, "addr.1"));
  snprintf(req, sizeof(req), "%s, frags=32, resany=0x80, laddr=192.0.2.1", nonce);
  a = ask(&c, b, build(b, 10, 3, 0, req, 0), &src);
  TEST_EQ_STR(var(a.text, "addr.0", v), "198.51.100.1:1000");
  TEST_CHECK(!has_var(a.text, "addr.1"));
  snprintf(req, sizeof(req), "%s, frags=32, recent=1", nonce);
  a = ask(&c, b, build(b, 10, 3, 0, req, 0), &src);
  TEST_EQ_STR(var(a.text, "addr.0", v), "198.51.100.3:1002");
  TEST_CHECK(!has_var(a.text, "addr.1"));
  /* neither frags nor limit */
  a = ask(&c, b, build(b, 10, 3, 0, nonce, 0), &src);
  TEST_EQ_INT(a.err, CTW_ERR_BADVALUE);
  snprintf(req, sizeof(req), "%s, frags=200", nonce);
  a = ask(&c, b, build(b, 10, 3, 0, req, 0), &src);
  TEST_EQ_INT(a.err, CTW_ERR_BADVALUE);
  /* nomrulist */
  a = ask_full(&c, b, build(b, 10, 3, 0, req, 0), &src, RST_NOMRULIST, &now0, false);
  TEST_EQ_INT(a.why, CTL_R_REFUSED_NOMRULIST);
  TEST_EQ_INT(a.err, CTW_ERR_PERMISSION);
  MON_Destroy(c.mon);
}

static void
test_ctl_mru_nonce_expires_and_binds_address(void)
{
  CTL_Ctx c = make_ctx();
  c.mon = make_mon(2);
  NetAddr src = addr("192.0.2.1", 40000);
  uint8_t b[600];
  char nonce[64], req[128];
  get_nonce(&c, &src, &now0, nonce);
  snprintf(req, sizeof(req), "%s, frags=32", nonce);
  size_t len = build(b, 10, 2, 0, req, 0);
  NTT_Now t = now0;
  t.real.tv_sec += 15;
  t.mono_ns += 15000000000LL;
  TEST_EQ_INT(ask_full(&c, b, len, &src, 0, &t, false).why, CTL_R_ANSWERED);
  t.real.tv_sec += 1; /* 16 s: expired */
  t.mono_ns += 1000000000LL;
  TEST_EQ_INT(ask_full(&c, b, len, &src, 0, &t, false).why, CTL_R_DROP_NONCE);
  NTT_Now before = now0;
  before.real.tv_sec -= 1; /* from the future */
  TEST_EQ_INT(ask_full(&c, b, len, &src, 0, &before, false).why, CTL_R_DROP_NONCE);
  NetAddr other = addr("192.0.2.2", 40000);
  TEST_EQ_INT(ask(&c, b, len, &other).why, CTL_R_DROP_NONCE);
  NetAddr other_port = addr("192.0.2.1", 40001);
  TEST_EQ_INT(ask(&c, b, len, &other_port).why, CTL_R_DROP_NONCE);
  /* another secret */
  CTL_Ctx c2 = c;
  c2.nonce_secret[0] ^= 1;
  TEST_EQ_INT(ask(&c2, b, len, &src).why, CTL_R_DROP_NONCE);
  MON_Destroy(c.mon);
}

static void
test_ctl_mru_pages_like_ntpq(void)
{
  CTL_Ctx c = make_ctx();
  c.mon = make_mon(40);
  NetAddr src = addr("192.0.2.1", 40000);
  uint8_t b[600];
  char nonce[64], req[600], v[128], name[32];
  bool seen[40] = {false};
  get_nonce(&c, &src, &now0, nonce);
  char last_addr[128] = "", last_stamp[128] = "";
  int pages = 0;
  for (; pages < 40; pages++) {
    if (pages == 0)
      snprintf(req, sizeof(req), "%s, frags=1", nonce);
    else
      snprintf(req, sizeof(req), "%s, frags=1, addr.0=%s, last.0=%s", nonce, last_addr,
               last_stamp);
    Answer a = ask(&c, b, build(b, 10, (uint16_t)(10 + pages), 0, req, 0), &src);
    TEST_EQ_INT(a.why, CTL_R_ANSWERED);
    TEST_EQ_INT(a.frags, 1);
    snprintf(nonce, sizeof(nonce), "nonce=%s", var(a.text, "nonce", v));
    for (int i = 0; i < 40; i++) {
      snprintf(name, sizeof(name), "addr.%d", i);
      if (!has_var(a.text, name))
        break;
      var(a.text, name, v);
      snprintf(last_addr, sizeof(last_addr), "%s", v);
      int octet = 0;
      sscanf(v, "198.51.100.%d", &octet);
      if (octet >= 1 && octet <= 40)
        seen[octet - 1] = true;
      snprintf(name, sizeof(name), "last.%d", i);
      snprintf(last_stamp, sizeof(last_stamp), "%s", var(a.text, name, v));
    }
    if (has_var(a.text, "now"))
      break;
  }
  TEST_CHECK(pages > 3);
  TEST_CHECK(pages < 40);
  for (int i = 0; i < 40; i++)
    TEST_CHECK(seen[i]);
  /* a prior entry that changed since: ntpq must restart */
  snprintf(req, sizeof(req),
           "%s, frags=1, addr.0=198.51.100.1:1000, last.0=0x00000001.00000000", nonce);
  Answer a = ask(&c, b, build(b, 10, 99, 0, req, 0), &src);
  TEST_EQ_INT(a.err, CTW_ERR_UNKNOWNVAR);
  MON_Destroy(c.mon);
}

/* n sources 10.0.x.y in a table of `shards` shards, seen over the last n ms, four at a
 * time (a batch shares one clock reading). */
static MON_Table *
make_big_mon(uint32_t n, uint32_t shards)
{
  MON_Params mp;
  MON_DefaultParams(&mp);
  mp.maxdepth = 2 * n; /* room for every source in every shard */
  mp.mindepth = 2 * n;
  mp.shards = shards;
  MON_Table *t = MON_Create(&mp, 7);
  for (uint32_t i = 0; i < n; i++) {
    NetAddr a;
    memset(&a, 0, sizeof(a));
    a.family = ADR_INET4;
    a.bytes[0] = 10;
    a.bytes[1] = (uint8_t)(i >> 16);
    a.bytes[2] = (uint8_t)(i >> 8);
    a.bytes[3] = (uint8_t)i;
    a.port = 123;
    MON_Check(t, &a, 3, 4, 0, now0.mono_ns - (int64_t)(n - i / 4 * 4) * 1000000LL, NULL);
  }
  return t;
}

typedef struct {
  char addr[128], last[128];
} MruEntry;

/* ntpq's mrulist loop (ntp/packet.py, ControlSession.mrulist): REQ_NONCE first; every
 * READ_MRU carries the nonce of the last reply, frags and the filter, and from the second
 * on addr.N/last.N of the newest entries so far, newest first, as many as fit in 468
 * octets. Stops at the reply with now=. Returns the number of READ_MRU requests. */
static int
ntpq_mrulist(const CTL_Ctx *c, const NetAddr *src, const char *filter, MruEntry *got,
             size_t cap, size_t *n, int max_pages, bool *complete)
{
  static Answer a;
  static char req[CTW_MAX_DATA + 1];
  uint8_t b[600];
  char nonce[64], v[128], name[32];
  int pages = 0;
  *n = 0;
  *complete = false;
  get_nonce(c, src, &now0, nonce);
  while (pages < max_pages) {
    int len = snprintf(req, sizeof(req), "%s, frags=32%s", nonce, filter);
    for (size_t i = 0; i < *n && i < 16; i++) {
      const MruEntry *e = &got[*n - 1 - i];
      char prior[160];
      int k =
          snprintf(prior, sizeof(prior), ", addr.%zu=%s, last.%zu=%s", i, e->addr, i, e->last);
      if (len + k >= CTW_MAX_DATA)
        break;
      memcpy(req + len, prior, (size_t)k + 1);
      len += k;
    }
    a = ask(c, b, build(b, 10, (uint16_t)(100 + pages), 0, req, 0), src);
    pages++;
    TEST_EQ_INT(a.why, CTL_R_ANSWERED);
    if (a.why != CTL_R_ANSWERED)
      break;
    snprintf(nonce, sizeof(nonce), "nonce=%s", var(a.text, "nonce", v));
    for (int i = 0;; i++) {
      snprintf(name, sizeof(name), "addr.%d", i);
      if (!has_var(a.text, name))
        break;
      if (*n < cap) {
        var(a.text, name, got[*n].addr);
        snprintf(name, sizeof(name), "last.%d", i);
        var(a.text, name, v);
        snprintf(got[*n].last, sizeof(got[*n].last), "%s", v);
        (*n)++;
      }
    }
    if (has_var(a.text, "now")) {
      *complete = true;
      break;
    }
  }
  return pages;
}

/* Issue 13 D: a filter that matches nothing made one request scan the whole table (N/256
 * times over). Now a request reads at most MON_WALK_BUDGET records: the answer is a page
 * without now= whose nonce names the walk, and ntpq's loop goes through 20,000 records in
 * about 20,000 / MON_WALK_BUDGET requests. */
static void
test_ctl_mru_filter_that_matches_nothing_pages(void)
{
  enum { N = 20000 };
  CTL_Ctx c = make_ctx();
  c.mon = make_big_mon(N, 8);
  NetAddr src = addr("192.0.2.1", 40000);
  static MruEntry got[16];
  size_t n;
  bool complete;
  int pages = ntpq_mrulist(&c, &src, ", mincount=1000000", got, 16, &n, 1000, &complete);
  TEST_CHECK(complete);
  TEST_EQ_INT(n, 0);
  TEST_CHECK(pages >= N / MON_WALK_BUDGET + 1);
  TEST_CHECK(pages <= 2 * (N / MON_WALK_BUDGET + 1));
  /* the same with recent= (ntpq sends it in the first request only) */
  pages =
      ntpq_mrulist(&c, &src, ", recent=10, mincount=1000000", got, 16, &n, 1000, &complete);
  TEST_CHECK(complete);
  TEST_CHECK(pages > 1);
  MON_Destroy(c.mon);
}

/* 20,000 sources over 8 shards, listed page by page as ntpq does: every source exactly
 * once, least recently seen first. */
static void
test_ctl_mru_pages_every_entry_once_in_lru_order(void)
{
  enum { N = 20000 };
  CTL_Ctx c = make_ctx();
  c.mon = make_big_mon(N, 8);
  NetAddr src = addr("192.0.2.1", 40000);
  static MruEntry got[N + 100];
  static bool seen[N];
  size_t n;
  bool complete;
  int pages = ntpq_mrulist(&c, &src, "", got, N + 100, &n, 2000, &complete);
  TEST_CHECK(complete);
  TEST_EQ_INT(n, N);
  TEST_CHECK(pages > N / 200);
  memset(seen, 0, sizeof(seen));
  unsigned long long prev = 0;
  for (size_t i = 0; i < n; i++) {
    unsigned b1, b2, b3, hi, lo;
    TEST_CHECK(sscanf(got[i].addr, "10.%u.%u.%u:123", &b1, &b2, &b3) == 3);
    uint32_t k = b1 << 16 | b2 << 8 | b3;
    TEST_CHECK(k < N && !seen[k]);
    if (k < N)
      seen[k] = true;
    TEST_CHECK(sscanf(got[i].last, "0x%8x.%8x", &hi, &lo) == 2);
    unsigned long long stamp = (unsigned long long)hi << 32 | lo;
    TEST_CHECK(stamp >= prev);
    prev = stamp;
  }
  MON_Destroy(c.mon);
}

/* A walk's nonce is good for one request and one address: a retransmitted request (its
 * answer was lost) starts again after the newest prior, so no entry is skipped; another
 * address or a changed walk id is dropped. */
static void
test_ctl_mru_walk_nonce_once_and_bound(void)
{
  CTL_Ctx c = make_ctx();
  c.mon = make_big_mon(2000, 2);
  NetAddr src = addr("192.0.2.1", 40000), other = addr("192.0.2.1", 40001);
  uint8_t b[600];
  char nonce[64], req[600], v[128], first2[128], last1[128], addr1[128], name[32];
  get_nonce(&c, &src, &now0, nonce);
  snprintf(req, sizeof(req), "%s, frags=2", nonce);
  Answer a = ask(&c, b, build(b, 10, 1, 0, req, 0), &src);
  TEST_CHECK(!has_var(a.text, "now"));
  TEST_EQ_INT(strlen(var(a.text, "nonce", v)), 34);
  int k = 0;
  for (; k < 100; k++) {
    snprintf(name, sizeof(name), "addr.%d", k + 1);
    if (!has_var(a.text, name))
      break;
  }
  snprintf(name, sizeof(name), "addr.%d", k);
  var(a.text, name, addr1);
  snprintf(name, sizeof(name), "last.%d", k);
  var(a.text, name, last1);
  snprintf(req, sizeof(req), "nonce=%s, frags=2, addr.0=%s, last.0=%s", v, addr1, last1);
  size_t len = build(b, 10, 2, 0, req, 0);
  a = ask(&c, b, len, &src);
  var(a.text, "addr.0", first2);
  TEST_CHECK(first2[0] != '\0' && strcmp(first2, addr1) != 0);
  /* again: the walk has gone on, so this starts over at the prior's time (the prior, and
   * others seen at the same time, are listed again) */
  a = ask(&c, b, len, &src);
  bool got_prior = false, got_first2 = false;
  for (int i = 0; i < 100; i++) {
    snprintf(name, sizeof(name), "addr.%d", i);
    var(a.text, name, v);
    got_prior = got_prior || strcmp(v, addr1) == 0;
    got_first2 = got_first2 || strcmp(v, first2) == 0;
  }
  TEST_CHECK(got_prior && got_first2);
  /* from another port, or with another walk id */
  TEST_EQ_INT(ask(&c, b, len, &other).why, CTL_R_DROP_NONCE);
  char *gen = strstr(req, "nonce=") + 6 + 33;
  *gen = *gen == '0' ? '1' : '0';
  TEST_EQ_INT(ask(&c, b, build(b, 10, 3, 0, req, 0), &src).why, CTL_R_DROP_NONCE);
  MON_Destroy(c.mon);
}

/* ------------------------------------------------------------------------------------ */
/* Restriction list                                                                      */

static void
test_ctl_reslist_matches_restrict_entries(void)
{
  CTL_Ctx c = make_ctx();
  KEY_Table *keys = make_keys();
  RST_Entry e[2] = {
      {.addr = addr("10.0.0.0", 0), .flags = RST_NOQUERY | RST_NOMODIFY, .ippeerlimit = -1},
      {.addr = addr("192.0.2.7", 0),
       .flags = RST_KOD | RST_LIMITED,
       .mflags = RST_M_NTPPORT,
       .ippeerlimit = -1},
  };
  ADR_MaskFromPrefix(ADR_INET4, 8, &e[0].mask);
  ADR_MaskFromPrefix(ADR_INET4, 32, &e[1].mask);
  RST_List *l = RST_Create(e, 2, NULL, 0);
  uint64_t hits[8] = {5, 6, 7, 8};
  c.rst = l;
  c.rst_hits = hits;
  c.keys = keys;
  c.control_key = 1;
  c.verify = test_verify;
  c.sign = test_sign;
  NetAddr src = addr("192.0.2.1", 40000);
  uint8_t b[600];
  char v[128], name[32];
  /* without the key */
  Answer a = ask(&c, b, build(b, 11, 1, 0, "addr_restrictions", 0), &src);
  TEST_EQ_INT(a.why, CTL_R_REFUSED_AUTH);
  TEST_EQ_INT(a.err, CTW_ERR_PERMISSION);
  /* with another trusted key */
  a = ask_full(&c, b, build(b, 11, 1, 0, "addr_restrictions", 2), &src, 0, &now0, true);
  TEST_EQ_INT(a.err, CTW_ERR_PERMISSION);
  a = ask_full(&c, b, build(b, 11, 1, 0, "addr_restrictions", 1), &src, 0, &now0, true);
  TEST_EQ_INT(a.why, CTL_R_ANSWERED);
  size_t n = RST_Count(l);
  TEST_EQ_INT(n, 4);
  for (size_t i = 0; i < n; i++) {
    const RST_Entry *r = RST_Get(l, i);
    char ab[ADR_STRLEN], hb[32];
    snprintf(name, sizeof(name), "addr.%zu", i);
    TEST_EQ_STR(var(a.text, name, v), ADR_Format(&r->addr, ab, sizeof(ab)));
    snprintf(name, sizeof(name), "mask.%zu", i);
    TEST_EQ_STR(var(a.text, name, v), ADR_Format(&r->mask, ab, sizeof(ab)));
    snprintf(name, sizeof(name), "hits.%zu", i);
    snprintf(hb, sizeof(hb), "%llu", (unsigned long long)hits[i]);
    TEST_EQ_STR(var(a.text, name, v), hb);
  }
  TEST_EQ_STR(var(a.text, "addr.0", v), "192.0.2.7");
  TEST_EQ_STR(var(a.text, "flags.0", v), "ntpport limited kod");
  TEST_EQ_STR(var(a.text, "addr.1", v), "10.0.0.0");
  TEST_EQ_STR(var(a.text, "mask.1", v), "255.0.0.0");
  TEST_EQ_STR(var(a.text, "flags.1", v), "noquery nomodify");
  TEST_EQ_STR(var(a.text, "addr.3", v), "::");
  /* ifstats and anything else: unknown */
  a = ask_full(&c, b, build(b, 11, 1, 0, "ifstats", 1), &src, 0, &now0, true);
  TEST_EQ_INT(a.err, CTW_ERR_UNKNOWNVAR);
  RST_Destroy(l);
  KEY_Destroy(keys);
}

/* ------------------------------------------------------------------------------------ */
/* Configuration, writes, traps                                                          */

static int config_calls;
static char config_text[600];

static bool
fake_configure(void *arg, const char *text, char *reply, size_t cap)
{
  (void)arg;
  config_calls++;
  snprintf(config_text, sizeof(config_text), "%s", text);
  if (strstr(text, "bad")) {
    snprintf(reply, cap, "column 1 syntax error");
    return false;
  }
  return true;
}

static void
test_ctl_configure_needs_key_and_modify(void)
{
  CTL_Ctx c = make_ctx();
  KEY_Table *keys = make_keys();
  c.keys = keys;
  c.control_key = 1;
  c.verify = test_verify;
  c.sign = test_sign;
  c.configure = fake_configure;
  NetAddr src = addr("192.0.2.1", 40000);
  uint8_t b[600];
  config_calls = 0;
  Answer a = ask(&c, b, build(b, 8, 1, 0, "server 192.0.2.9", 0), &src);
  TEST_EQ_INT(a.why, CTL_R_REFUSED_AUTH);
  TEST_EQ_INT(a.err, CTW_ERR_PERMISSION);
  a = ask_full(&c, b, build(b, 8, 1, 0, "server 192.0.2.9", 2), &src, 0, &now0, true);
  TEST_EQ_INT(a.why, CTL_R_REFUSED_AUTH);
  a = ask_full(&c, b, build(b, 8, 1, 0, "server 192.0.2.9", 1), &src, RST_NOMODIFY, &now0,
               true);
  TEST_EQ_INT(a.why, CTL_R_REFUSED_NOMODIFY);
  TEST_EQ_INT(a.err, CTW_ERR_PERMISSION);
  /* a corrupted MAC */
  size_t len = build(b, 8, 1, 0, "server 192.0.2.9", 1);
  b[len - 1] ^= 1;
  TEST_EQ_INT(ask(&c, b, len, &src).why, CTL_R_REFUSED_AUTH);
  /* a truncated MAC is no MAC */
  len = build(b, 8, 1, 0, "server 192.0.2.9", 1);
  TEST_EQ_INT(ask(&c, b, len - 8, &src).why, CTL_R_REFUSED_AUTH);
  TEST_EQ_INT(config_calls, 0);
  a = ask_full(&c, b, build(b, 8, 1, 0, "server 192.0.2.9", 1), &src, 0, &now0, true);
  TEST_EQ_INT(a.why, CTL_R_CONFIG_APPLIED);
  TEST_EQ_INT(config_calls, 1);
  TEST_EQ_STR(config_text, "server 192.0.2.9");
  TEST_EQ_STR(a.text, "Config Succeeded\r\n");
  /* the reply is signed with the request's key */
  TEST_EQ_INT(out.wire.count, 1);
  size_t mac_at = (12 + PKT_Get16(out.wire.buf[0] + 10) + 7) & ~(size_t)7;
  TEST_EQ_INT(out.wire.len[0], mac_at + 20);
  TEST_EQ_INT(PKT_Get32(out.wire.buf[0] + mac_at), 1);
  uint8_t d[16];
  md5_mac(1, out.wire.buf[0], mac_at, d);
  TEST_CHECK(memcmp(d, out.wire.buf[0] + mac_at + 4, 16) == 0);
  a = ask_full(&c, b, build(b, 8, 1, 0, "bad line", 1), &src, 0, &now0, true);
  TEST_EQ_INT(a.why, CTL_R_CONFIG_FAILED);
  TEST_EQ_STR(a.text, "column 1 syntax error\r\n");
  KEY_Destroy(keys);
}

static void
test_ctl_configure_with_keys_module(void)
{
  /* KEY_Verify/KEY_Sign (the defaults) handle MACs from octet 48 on */
  CTL_Ctx c = make_ctx();
  KEY_Table *keys = make_keys();
  c.keys = keys;
  c.control_key = 3;
  c.configure = fake_configure;
  NetAddr src = addr("192.0.2.1", 40000);
  uint8_t b[600];
  const char *text = "server 192.0.2.9 iburst minpoll 4 maxpoll 6";
  config_calls = 0;
  Answer a = ask_full(&c, b, build(b, 8, 1, 0, text, 3), &src, 0, &now0, false);
  TEST_EQ_INT(a.why, CTL_R_CONFIG_APPLIED);
  TEST_EQ_INT(config_calls, 1);
  TEST_EQ_STR(config_text, text);
  KEY_Destroy(keys);
}

static void
test_ctl_writes_and_traps_refused(void)
{
  CTL_Ctx c = make_ctx();
  KEY_Table *keys = make_keys();
  c.keys = keys;
  c.control_key = 1;
  c.verify = test_verify;
  c.sign = test_sign;
  NetAddr src = addr("192.0.2.1", 40000);
  uint8_t b[600];
  Answer a = ask(&c, b, build(b, 3, 1, 0, "leap=1", 0), &src);
  TEST_EQ_INT(a.why, CTL_R_REFUSED_AUTH);
  TEST_EQ_INT(a.err, CTW_ERR_PERMISSION);
  a = ask_full(&c, b, build(b, 3, 1, 0, "leap=1", 1), &src, 0, &now0, true);
  TEST_EQ_INT(a.err, CTW_ERR_BADOP);
  a = ask_full(&c, b, build(b, 3, 1, 0, "leap=1", 1), &src, RST_NOMODIFY, &now0, true);
  TEST_EQ_INT(a.why, CTL_R_REFUSED_NOMODIFY);
  int trap_ops[] = {CTW_OP_SETTRAP, CTW_OP_UNSETTRAP, CTW_OP_ASYNCMSG};
  for (size_t i = 0; i < 3; i++) {
    a = ask(&c, b, build(b, (uint8_t)trap_ops[i], 1, 0, NULL, 0), &src);
    TEST_EQ_INT(a.why, CTL_R_REFUSED_TRAP);
    TEST_EQ_INT(a.err, CTW_ERR_BADOP);
    a = ask_full(&c, b, build(b, (uint8_t)trap_ops[i], 1, 0, NULL, 0), &src, RST_NOTRAP, &now0,
                 false);
    TEST_EQ_INT(a.why, CTL_R_REFUSED_NOTRAP);
    TEST_EQ_INT(a.err, CTW_ERR_PERMISSION);
  }
  a = ask(&c, b, build(b, 20, 1, 0, NULL, 0), &src);
  TEST_EQ_INT(a.err, CTW_ERR_BADOP);
  KEY_Destroy(keys);
}

/* ------------------------------------------------------------------------------------ */
/* Amplification                                                                         */

static size_t
bound_for(size_t len)
{
  return CTL_UNAUTH_FACTOR * len > CTL_UNAUTH_FLOOR ? CTL_UNAUTH_FACTOR * len
                                                    : CTL_UNAUTH_FLOOR;
}

static void
test_ctl_amplification_bound_every_opcode(void)
{
  static CTL_Peer many[200];
  CTL_Ctx c = make_ctx();
  make_peers(&c);
  for (int i = 0; i < 200; i++) {
    many[i] = peers[i % 3];
    many[i].associd = (uint16_t)(i + 1);
  }
  c.peers = many;
  c.n_peers = 200;
  c.mon = make_mon(50);
  KEY_Table *keys = make_keys();
  c.keys = keys;
  c.control_key = 1;
  c.configure = fake_configure;
  NetAddr src = addr("192.0.2.1", 40000);
  uint8_t b[600];
  uint16_t assocs[] = {0, 1, 2, 200, 999};
  for (int op = 0; op < 32; op++) {
    for (size_t k = 0; k < sizeof(assocs) / sizeof(assocs[0]); k++) {
      size_t len = build(b, (uint8_t)op, 1, assocs[k], NULL, 0);
      TEST_EQ_INT(len, 12);
      CTL_Reason why = CTL_Handle(&c, b, len, &src, 0, &now0, &out);
      TEST_CHECK(CTW_TotalLen(&out.wire) <= bound_for(len));
      if (out.wire.count > 0)
        TEST_EQ_INT(out.wire.buf[0][1] & 0x1f, op);
      (void)why;
    }
  }
  /* READSTAT of 200 associations is 800 octets: refused to a remote unauthenticated source */
  size_t len = build(b, 1, 1, 0, NULL, 0);
  Answer a = ask(&c, b, len, &src);
  TEST_EQ_INT(a.why, CTL_R_REFUSED_SIZE);
  TEST_EQ_INT(a.err, CTW_ERR_PERMISSION);
  TEST_EQ_INT(a.total, 12);
  /* ... served on loopback ... */
  NetAddr lo = addr("127.0.0.1", 40000);
  a = ask(&c, b, len, &lo);
  TEST_EQ_INT(a.why, CTL_R_ANSWERED);
  TEST_EQ_INT(a.len, 800);
  NetAddr lo6 = addr("::1", 40000);
  TEST_EQ_INT(ask(&c, b, len, &lo6).why, CTL_R_ANSWERED);
  /* ... and to an authenticated request */
  c.verify = test_verify;
  c.sign = test_sign;
  len = build(b, 1, 1, 0, NULL, 2);
  a = ask_full(&c, b, len, &src, 0, &now0, true);
  TEST_EQ_INT(a.why, CTL_R_ANSWERED);
  TEST_EQ_INT(a.len, 800);
  MON_Destroy(c.mon);
  KEY_Destroy(keys);
}

static void
test_ctl_amplification_bound_random_requests(void)
{
  CTL_Ctx c = make_ctx();
  make_peers(&c);
  c.mon = make_mon(20);
  NetAddr src = addr("203.0.113.5", 123);
  RNG_State rng;
  RNG_Init(&rng, harness_seed);
  static const char *const words[] = {"stratum", "clock",     "ss_received", "mru_depth",
                                      "version", "filtdelay", "nonce=",      "frags=9",
                                      ",",       "=",         "srcadr",      "reach",
                                      "x",       " "};
  uint8_t b[600];
  for (int i = 0; i < 20000; i++) {
    uint64_t r = RNG_Next(&rng);
    char data[470] = "";
    int nw = (int)(r % 40);
    for (int k = 0; k < nw && strlen(data) < 440; k++)
      strcat(data, words[RNG_Next(&rng) % (sizeof(words) / sizeof(words[0]))]);
    uint16_t assoc = (uint16_t)((r >> 8) % 4 == 0 ? 100 + (r >> 16) % 4 : 0);
    size_t len = build(b, (uint8_t)((r >> 24) % 32), (uint16_t)i, assoc, data, 0);
    if ((r >> 32) % 8 == 0)
      b[1] |= (uint8_t)(0x20 << ((r >> 40) % 3));
    if ((r >> 44) % 16 == 0)
      len = (size_t)((r >> 48) % (len + 1));
    CTL_Handle(&c, b, len, &src, 0, &now0, &out);
    TEST_CHECK(CTW_TotalLen(&out.wire) <= bound_for(len));
    if (len >= 2 && (b[1] & 0xe0))
      TEST_EQ_INT(out.wire.count, 0);
    for (size_t k = 0; k < out.wire.count; k++)
      TEST_CHECK(out.wire.buf[k][1] & 0x80);
  }
  MON_Destroy(c.mon);
}

static void
test_ctl_reason_names(void)
{
  TEST_EQ_STR(CTL_ReasonName(CTL_R_ANSWERED), "answered");
  TEST_EQ_STR(CTL_ReasonName(CTL_R_DROP_NONCE), "dropped_nonce");
  TEST_EQ_STR(CTL_ReasonName(CTL_R_COUNT), "unknown");
}

TEST_MAIN(TEST_CASE(test_ctw_fragments_reassemble), TEST_CASE(test_ctw_odd_length_padded_to_4),
          TEST_CASE(test_ctw_writer_overflow_writes_nothing),
          TEST_CASE(test_ctw_parse_request_checks), TEST_CASE(test_ctw_items),
          TEST_CASE(test_ctw_reassemble_bad_count_and_mac),
          TEST_CASE(test_ctl_responses_errors_fragments_never_answered),
          TEST_CASE(test_ctl_bad_count_gets_format_error), TEST_CASE(test_ctl_rv_defaults),
          TEST_CASE(test_ctl_rv_named_exact_text),
          TEST_CASE(test_ctl_unknown_variable_gets_unknownvar),
          TEST_CASE(test_ctl_stats_counters_and_r_variants),
          TEST_CASE(test_ctl_ntpq_stat_lists_are_all_known),
          TEST_CASE(test_ctl_readstat_status_words), TEST_CASE(test_ctl_peer_variables),
          TEST_CASE(test_ctl_peer_defaults_cut_to_one_datagram),
          TEST_CASE(test_ctl_mru_needs_nonce),
          TEST_CASE(test_ctl_mru_with_nonce_lists_records),
          TEST_CASE(test_ctl_mru_nonce_expires_and_binds_address),
          TEST_CASE(test_ctl_mru_pages_like_ntpq),
          TEST_CASE(test_ctl_mru_filter_that_matches_nothing_pages),
          TEST_CASE(test_ctl_mru_pages_every_entry_once_in_lru_order),
          TEST_CASE(test_ctl_mru_walk_nonce_once_and_bound),
          TEST_CASE(test_ctl_reslist_matches_restrict_entries),
          TEST_CASE(test_ctl_configure_needs_key_and_modify),
          TEST_CASE(test_ctl_configure_with_keys_module),
          TEST_CASE(test_ctl_writes_and_traps_refused),
          TEST_CASE(test_ctl_amplification_bound_every_opcode),
          TEST_CASE(test_ctl_amplification_bound_random_requests),
          TEST_CASE(test_ctl_reason_names))
