/* Access control end to end through the decision core: configuration text -> parser ->
 * ACC_BuildRestrict / ACC_MonitorParams -> SRV_Decide, with an injected monotonic clock, a
 * fake resolver and fake local interfaces. No sockets. */
#include "access.h"
#include "server.h"

#include <stdio.h>
#include <stdlib.h>

#include "harness.h"
#include "packet.h"

#include <errno.h>
#include <sys/random.h>
#include <sys/syscall.h>
#include <unistd.h>

/* The kernel's CSPRNG as this program sees it: getrandom is replaced here (the executable's
 * definition wins over libc's), counts what is asked of it and can be made to fail; else it
 * asks the kernel through the raw system call. */
static size_t random_octets;
static bool random_fails;

ssize_t
getrandom(void *buf, size_t len, unsigned int flags)
{
  random_octets += len;
  if (random_fails) {
    errno = EIO;
    return -1;
  }
  return syscall(SYS_getrandom, buf, len, flags);
}

#define SEC 1000000000LL
#define REQ_XMT 0x0123456789abcdefULL

static SRV_Policy policy = {.min_poll = 3, .max_poll = 17, .monitor = true};
static SRV_System sys;
static RNG_State rng;
static char last_msg[512];
static int n_warnings, n_errors;

typedef struct {
  CNF_Config *cfg;
  RST_List *rst;
  MON_Table *mon;
  KEY_Table *keys;
  SHD_Table *shed;
  SRV_Ctx ctx;
} Env;

static void
msg_fn(void *arg, bool warning, int line, const char *text)
{
  (void)arg;
  snprintf(last_msg, sizeof(last_msg), "%d: %s%s", line, warning ? "warning: " : "", text);
  if (warning)
    n_warnings++;
  else
    n_errors++;
}

/* "resolves" example.net to two addresses, everything else to nothing */
static size_t
fake_resolve(const char *name, int family, NetAddr *out, size_t max)
{
  size_t n = 0;
  if (strcmp(name, "example.net") != 0 || max < 2)
    return 0;
  if (family != ADR_INET6)
    ADR_Parse("192.0.2.7", &out[n++]);
  if (family != ADR_INET4)
    ADR_Parse("2001:db8::7", &out[n++]);
  return n;
}

static Env
env_text(const char *text, const char *keys_text)
{
  Env e = {0};
  CNF_Errors ce;
  CNF_InitErrors(&ce);
  e.cfg = CNF_Create();
  bool ok = CNF_ParseText(e.cfg, "t.conf", text, &ce);
  if (!ok && ce.errors.count)
    fprintf(stderr, "config error: %s\n", ce.errors.items[0].text);
  TEST_CHECK(ok);
  CNF_ClearErrors(&ce);
  IFC_Address local = {.name = "lo"};
  ADR_Parse("127.0.0.1", &local.addr);
  uint32_t source_flags;
  n_warnings = n_errors = 0;
  e.rst = ACC_BuildRestrict(e.cfg, &local, 1, fake_resolve, &source_flags, msg_fn, NULL);
  TEST_CHECK(e.rst != NULL);
  MON_Params p;
  TEST_CHECK(ACC_MonitorParams(e.cfg, &p, msg_fn, NULL));
  e.mon = MON_Create(&p, harness_seed);
  TEST_CHECK(e.mon != NULL);
  if (keys_text) {
    e.keys = KEY_ParseText("t.keys", keys_text, NULL);
    TEST_CHECK(e.keys != NULL);
    KEY_SetTrusted(e.keys, e.cfg->trusted_keys, e.cfg->n_trusted_keys);
  }
  NTT_Now now = {.real = {1700000000, 0}, .mono_ns = SEC};
  SRV_SystemLocal(&sys, -20, 10, PKT_RefidFromCode("LOCL"), &now);
  RNG_Init(&rng, harness_seed);
  policy.min_poll = (int8_t)e.cfg->discard.average;
  e.shed = SHD_Create(harness_seed); /* configured as runtime.c does */
  TEST_CHECK(e.shed != NULL);
  SHD_Params sp;
  ACC_ShedParams(e.cfg, &sp);
  char err[128];
  TEST_CHECK(SHD_ValidateParams(&sp, err, sizeof(err)));
  SHD_Configure(e.shed, &sp);
  e.ctx = (SRV_Ctx){.policy = &policy,
                    .sys = &sys,
                    .rst = e.rst,
                    .mon = e.mon,
                    .keys = e.keys,
                    .shed = e.shed};
  return e;
}

static Env
env(const char *text)
{
  return env_text(text, NULL);
}

static void
env_free(Env *e)
{
  RST_Destroy(e->rst);
  MON_Destroy(e->mon);
  KEY_Destroy(e->keys);
  SHD_Destroy(e->shed);
  CNF_Destroy(e->cfg);
}

typedef struct {
  uint8_t buf[256];
  SRV_Request rq;
} Req;

static void
req_init(Req *r, const char *src, uint16_t port, int version, int mode, int64_t mono_ns)
{
  memset(r->buf, 0, sizeof(r->buf));
  r->buf[0] = (uint8_t)((version << 3) | mode);
  r->buf[2] = 6;
  r->buf[3] = (uint8_t)-18;
  PKT_Put64(r->buf + 40, REQ_XMT);
  r->rq = (SRV_Request){
      .data = r->buf, .len = 48, .rx = {.real = {1700000010, 0}, .mono_ns = mono_ns}};
  TEST_CHECK(ADR_Parse(src, &r->rq.src));
  r->rq.src.port = port;
}

static SRV_Action
decide(Env *e, Req *r, SRV_Verdict *v, uint8_t *out)
{
  SRV_Action a = SRV_Decide(&e->ctx, &r->rq, &rng, out, v);
  if (a == SRV_REPLY) {
    size_t len = SRV_Finish(&e->ctx, v, out, PKT_MAX_LEN, &r->rq.rx.real, &rng);
    TEST_CHECK(len > 0);
    v->len = len;
  }
  if (a != SRV_DROP)
    TEST_CHECK(v->len <= r->rq.len);
  return a;
}

/* One client request from src at time t (s); returns the reason. */
static SRV_Reason
ask(Env *e, const char *src, double t)
{
  Req r;
  uint8_t out[PKT_MAX_LEN];
  SRV_Verdict v;
  req_init(&r, src, 40000, 4, 3, (int64_t)(t * SEC));
  decide(e, &r, &v, out);
  return v.why;
}

static void
check_kod(const uint8_t *out, size_t len, const char *code, int version)
{
  PKT_Header h;
  TEST_EQ_INT(len, 48);
  TEST_CHECK(PKT_DecodeHeader(out, len, &h));
  TEST_EQ_INT(h.leap, PKT_LEAP_UNSYNC);
  TEST_EQ_INT(h.stratum, 0);
  TEST_EQ_INT(h.mode, 4);
  TEST_EQ_INT(h.version, version);
  TEST_EQ_INT(h.refid, PKT_RefidFromCode(code));
  TEST_CHECK(h.org_ts == REQ_XMT && h.rx_ts == REQ_XMT && h.tx_ts == REQ_XMT);
  TEST_EQ_INT(h.precision, -18); /* the request's own */
}

static void
test_acc_open_config_serves(void)
{
  Env e = env("");
  TEST_EQ_INT(ask(&e, "192.0.2.1", 1), SRV_R_SERVED);
  TEST_EQ_INT(ask(&e, "2001:db8::1", 1), SRV_R_SERVED);
  env_free(&e);
}

static void
test_acc_ignore_takes_no_monitor_slot(void)
{
  Env e = env("restrict 192.0.2.0 mask 255.255.255.0 ignore\n");
  Req r;
  uint8_t out[PKT_MAX_LEN];
  SRV_Verdict v;
  req_init(&r, "192.0.2.9", 40000, 4, 3, SEC);
  TEST_EQ_INT(decide(&e, &r, &v, out), SRV_DROP);
  TEST_EQ_INT(v.why, SRV_R_DROP_IGNORE);
  req_init(&r, "192.0.2.9", 40000, 4, 6, SEC); /* mode 6 too */
  r.rq.len = 12;
  TEST_EQ_INT(decide(&e, &r, &v, out), SRV_DROP);
  TEST_EQ_INT(v.why, SRV_R_DROP_IGNORE);
  MON_Stats ms;
  MON_GetStats(e.mon, &ms);
  TEST_EQ_INT(ms.entries, 0);
  TEST_EQ_INT(ask(&e, "192.0.3.9", 1), SRV_R_SERVED);
  MON_GetStats(e.mon, &ms);
  TEST_EQ_INT(ms.entries, 1);
  env_free(&e);
}

static void
test_acc_noserve_with_and_without_kod(void)
{
  Env e = env("restrict 192.0.2.0/24 noserve\nrestrict 198.51.100.0/24 noserve kod\n");
  TEST_EQ_INT(ask(&e, "192.0.2.5", 1), SRV_R_DROP_NOSERVE);
  Req r;
  uint8_t out[PKT_MAX_LEN];
  SRV_Verdict v;
  req_init(&r, "198.51.100.5", 40000, 3, 3, SEC);
  TEST_EQ_INT(decide(&e, &r, &v, out), SRV_KOD);
  TEST_EQ_INT(v.why, SRV_R_KOD_DENY);
  check_kod(out, v.len, "DENY", 3);
  env_free(&e);
}

static void
test_acc_noserve_leaves_queries_alone(void)
{
  Env e = env("restrict default noserve\n");
  Req r;
  uint8_t out[PKT_MAX_LEN];
  SRV_Verdict v;
  req_init(&r, "192.0.2.5", 40000, 2, 6, SEC);
  r.rq.len = 12;
  r.buf[1] = 1; /* READSTAT request */
  decide(&e, &r, &v, out);
  TEST_EQ_INT(v.why, SRV_R_DROP_MODE6); /* reaches the control path, not noserve */
  env_free(&e);
}

static void
test_acc_noquery_drops_modes_6_and_7_only(void)
{
  Env e = env("restrict default noquery\n");
  Req r;
  uint8_t out[PKT_MAX_LEN];
  SRV_Verdict v;
  for (int mode = 6; mode <= 7; mode++) {
    req_init(&r, "192.0.2.5", 40000, 2, mode, SEC);
    r.rq.len = 12;
    r.buf[1] = 1;
    if (mode == 7)
      r.buf[1] = 0; /* auth bit clear, sequence 0 */
    TEST_EQ_INT(decide(&e, &r, &v, out), SRV_DROP);
    TEST_EQ_INT(v.why, SRV_R_DROP_NOQUERY);
  }
  TEST_EQ_INT(ask(&e, "192.0.2.5", 1), SRV_R_SERVED);
  env_free(&e);
}

static void
test_acc_mode7_never_answered_even_open(void)
{
  Env e = env("");
  Req r;
  uint8_t out[PKT_MAX_LEN];
  SRV_Verdict v;
  req_init(&r, "192.0.2.5", 40000, 2, 7, SEC);
  r.rq.len = 12;
  r.buf[0] = (uint8_t)((2 << 3) | 7); /* request: R and M clear */
  TEST_EQ_INT(decide(&e, &r, &v, out), SRV_DROP);
  TEST_EQ_INT(v.why, SRV_R_DROP_MODE7);
  env_free(&e);
}

/* Bug 1331: responses/errors, even "from" our own address and port 123, even where the
 * restrict list would let queries through. */
static void
test_acc_control_responses_from_self_never_answered(void)
{
  Env e = env("restrict 127.0.0.1\n");
  Req r;
  uint8_t out[PKT_MAX_LEN];
  SRV_Verdict v;
  req_init(&r, "127.0.0.1", 123, 2, 7, SEC);
  r.rq.len = 12;
  r.buf[0] = (uint8_t)(0x80 | (2 << 3) | 7); /* mode 7 response */
  TEST_EQ_INT(decide(&e, &r, &v, out), SRV_DROP);
  TEST_EQ_INT(v.why, SRV_R_DROP_CTL_RESPONSE);
  req_init(&r, "127.0.0.1", 123, 2, 6, SEC);
  r.rq.len = 12;
  r.buf[1] = 0x40 | 1; /* mode 6 error */
  TEST_EQ_INT(decide(&e, &r, &v, out), SRV_DROP);
  TEST_EQ_INT(v.why, SRV_R_DROP_CTL_RESPONSE);
  env_free(&e);
}

static void
test_acc_version_flag(void)
{
  Env e = env("restrict 192.0.2.0/24 version\nrestrict 198.51.100.0/24 version kod\n");
  Req r;
  uint8_t out[PKT_MAX_LEN];
  SRV_Verdict v;
  req_init(&r, "192.0.2.5", 40000, 3, 3, SEC);
  TEST_EQ_INT(decide(&e, &r, &v, out), SRV_DROP);
  TEST_EQ_INT(v.why, SRV_R_DROP_VERSION);
  req_init(&r, "192.0.2.5", 40000, 4, 3, SEC);
  TEST_EQ_INT(decide(&e, &r, &v, out), SRV_REPLY);
  req_init(&r, "198.51.100.5", 40000, 2, 3, SEC);
  TEST_EQ_INT(decide(&e, &r, &v, out), SRV_KOD);
  TEST_EQ_INT(v.why, SRV_R_KOD_RSTR);
  check_kod(out, v.len, "RSTR", 2);
  /* without the flag, versions 1..4 are all served */
  req_init(&r, "203.0.113.5", 40000, 1, 3, SEC);
  TEST_EQ_INT(decide(&e, &r, &v, out), SRV_REPLY);
  env_free(&e);
}

static void
test_acc_notrust_without_keys_denies_all(void)
{
  Env e = env("restrict 192.0.2.0/24 notrust\nrestrict 198.51.100.0/24 notrust kod\n");
  TEST_EQ_INT(ask(&e, "192.0.2.5", 1), SRV_R_DROP_NOTRUST);
  TEST_EQ_INT(ask(&e, "198.51.100.5", 1), SRV_R_KOD_DENY);
  /* a MAC under a key we do not have: nothing (no kod) or CRYP (kod); never a crypto-NAK,
   * which would carry our time (ntp_acc(5) notrust) */
  Req r;
  uint8_t out[PKT_MAX_LEN];
  SRV_Verdict v;
  req_init(&r, "192.0.2.5", 40000, 4, 3, 2 * SEC);
  PKT_Put32(r.buf + 48, 7);
  r.rq.len = 48 + 4 + 16;
  TEST_EQ_INT(decide(&e, &r, &v, out), SRV_DROP);
  TEST_EQ_INT(v.why, SRV_R_DROP_NOTRUST);
  /* the same request from a source without notrust gets the crypto-NAK */
  req_init(&r, "203.0.113.5", 40000, 4, 3, 2 * SEC);
  PKT_Put32(r.buf + 48, 7);
  r.rq.len = 48 + 4 + 16;
  TEST_EQ_INT(decide(&e, &r, &v, out), SRV_REPLY);
  TEST_EQ_INT(v.why, SRV_R_CRYPTO_NAK);
  TEST_EQ_INT(v.len, 52);
  TEST_EQ_INT(PKT_Get32(out + 48), 0);
  req_init(&r, "198.51.100.5", 40000, 4, 3, 5 * SEC);
  PKT_Put32(r.buf + 48, 7);
  r.rq.len = 48 + 4 + 16;
  TEST_EQ_INT(decide(&e, &r, &v, out), SRV_KOD);
  TEST_EQ_INT(v.why, SRV_R_KOD_CRYP);
  check_kod(out, v.len, "CRYP", 4);
  env_free(&e);
}

static const char KEYS[] =
    "1 MD5 onetwothree\n2 SHA1 0123456789abcdef0123456789abcdef01234567\n"
    "3 MD5 untrusted\n";

/* A request MACed with key `id` from src. */
static void
signed_req(Env *e, Req *r, const char *src, uint32_t id, int64_t mono_ns)
{
  req_init(r, src, 40000, 4, 3, mono_ns);
  r->rq.len = KEY_Sign(e->keys, id, r->buf, 48, sizeof(r->buf));
  TEST_CHECK(r->rq.len > 48);
}

static void
test_acc_notrust_with_keys(void)
{
  Env e = env_text("keys /dev/null\ntrustedkey 1 2\n"
                   "restrict default notrust\nrestrict 198.51.100.0/24 notrust kod\n",
                   KEYS);
  Req r;
  uint8_t out[PKT_MAX_LEN];
  SRV_Verdict v;
  for (uint32_t id = 1; id <= 2; id++) {
    signed_req(&e, &r, "192.0.2.5", id, (int64_t)id * 10 * SEC);
    TEST_EQ_INT(decide(&e, &r, &v, out), SRV_REPLY);
    TEST_EQ_INT(v.why, SRV_R_SERVED_AUTH);
    TEST_EQ_INT(v.len, r.rq.len); /* same key, same MAC size */
    PKT_Trailer tr;
    TEST_EQ_INT(PKT_ParseTrailer(out, v.len, &tr), PKT_TRAILER_OK);
    TEST_EQ_INT(KEY_Verify(e.keys, out, v.len, &tr, NULL), KEY_OK);
    TEST_EQ_INT(tr.key_id, id);
  }
  /* untrusted key -> nothing under notrust; with kod -> CRYP */
  signed_req(&e, &r, "192.0.2.6", 3, 40 * SEC);
  TEST_EQ_INT(decide(&e, &r, &v, out), SRV_DROP);
  TEST_EQ_INT(v.why, SRV_R_DROP_NOTRUST);
  signed_req(&e, &r, "198.51.100.6", 3, 40 * SEC);
  TEST_EQ_INT(decide(&e, &r, &v, out), SRV_KOD);
  TEST_EQ_INT(v.why, SRV_R_KOD_CRYP);
  /* bad digest: the same */
  signed_req(&e, &r, "192.0.2.7", 1, 50 * SEC);
  r.buf[r.rq.len - 1] ^= 1;
  TEST_EQ_INT(decide(&e, &r, &v, out), SRV_DROP);
  TEST_EQ_INT(v.why, SRV_R_DROP_NOTRUST);
  signed_req(&e, &r, "198.51.100.7", 1, 50 * SEC);
  r.buf[r.rq.len - 1] ^= 1;
  TEST_EQ_INT(decide(&e, &r, &v, out), SRV_KOD);
  TEST_EQ_INT(v.why, SRV_R_KOD_CRYP);
  check_kod(out, v.len, "CRYP", 4);
  /* no MAC at all */
  TEST_EQ_INT(ask(&e, "192.0.2.8", 60), SRV_R_DROP_NOTRUST);
  TEST_EQ_INT(ask(&e, "198.51.100.8", 60), SRV_R_KOD_DENY);
  env_free(&e);
}

static void
test_acc_overlapping_masks_most_specific_wins(void)
{
  Env e = env("restrict default noserve\n"
              "restrict 10.0.0.0 mask 255.0.0.0\n"
              "restrict 10.1.0.0/16 noserve\n"
              "restrict 10.1.2.0/24\n"
              "restrict -6 default ignore\n"
              "restrict 2001:db8::/32\n"
              "restrict 2001:db8:1::/48 noserve\n");
  TEST_EQ_INT(ask(&e, "192.0.2.1", 1), SRV_R_DROP_NOSERVE);
  TEST_EQ_INT(ask(&e, "10.9.9.9", 1), SRV_R_SERVED);
  TEST_EQ_INT(ask(&e, "10.1.9.9", 1), SRV_R_DROP_NOSERVE);
  TEST_EQ_INT(ask(&e, "10.1.2.9", 1), SRV_R_SERVED);
  TEST_EQ_INT(ask(&e, "2001:db9::1", 1), SRV_R_DROP_IGNORE);
  TEST_EQ_INT(ask(&e, "2001:db8:2::1", 1), SRV_R_SERVED);
  TEST_EQ_INT(ask(&e, "2001:db8:1::1", 1), SRV_R_DROP_NOSERVE);
  TEST_EQ_INT(ask(&e, "::ffff:10.1.2.9", 1), SRV_R_SERVED); /* mapped: matched as IPv4 */
  env_free(&e);
}

static void
test_acc_ntpport_and_interface_entries(void)
{
  Env e = env("restrict 192.0.2.0/24 noserve ntpport\n");
  Req r;
  uint8_t out[PKT_MAX_LEN];
  SRV_Verdict v;
  req_init(&r, "192.0.2.5", 123, 4, 3, SEC);
  decide(&e, &r, &v, out);
  TEST_EQ_INT(v.why, SRV_R_DROP_NOSERVE);
  req_init(&r, "192.0.2.5", 40123, 4, 3, SEC);
  decide(&e, &r, &v, out);
  TEST_EQ_INT(v.why, SRV_R_SERVED);
  /* our own interface address, port 123: ignored; another port: served */
  req_init(&r, "127.0.0.1", 123, 4, 3, SEC);
  decide(&e, &r, &v, out);
  TEST_EQ_INT(v.why, SRV_R_DROP_IGNORE);
  req_init(&r, "127.0.0.1", 50000, 4, 3, SEC);
  decide(&e, &r, &v, out);
  TEST_EQ_INT(v.why, SRV_R_SERVED);
  env_free(&e);
}

static void
test_acc_unrestrict_and_delrestrict(void)
{
  Env e = env("restrict 192.0.2.0/24 noserve kod\n"
              "unrestrict 192.0.2.0/24 kod\n"
              "restrict 198.51.100.0/24 noserve\n"
              "delrestrict 198.51.100.0 mask 255.255.255.0\n");
  TEST_EQ_INT(ask(&e, "192.0.2.5", 1), SRV_R_DROP_NOSERVE); /* kod cleared */
  TEST_EQ_INT(ask(&e, "198.51.100.5", 1), SRV_R_SERVED);    /* entry removed */
  env_free(&e);
}

static void
test_acc_host_names_resolved_outside_parser(void)
{
  Env e = env("restrict example.net noserve\nrestrict nowhere.invalid noserve\n");
  TEST_EQ_INT(n_warnings, 1);
  TEST_CHECK(strstr(last_msg, "nowhere.invalid") != NULL);
  TEST_CHECK(strstr(last_msg, "2: warning:") == last_msg);
  TEST_EQ_INT(ask(&e, "192.0.2.7", 1), SRV_R_DROP_NOSERVE);
  TEST_EQ_INT(ask(&e, "2001:db8::7", 1), SRV_R_DROP_NOSERVE);
  TEST_EQ_INT(ask(&e, "192.0.2.8", 1), SRV_R_SERVED);
  env_free(&e);
}

/* ntpd 4.2.8 with defaults (average 3, minimum 2): at 1 s spacing 13 packets are served,
 * the 14th is a violation with a KoD, the next ones are dropped silently until the leak
 * counter drains. Leak off so the count is exact. */
static void
test_acc_limited_kod_at_one_second_spacing(void)
{
  Env e = env("restrict default limited kod\ndiscard leak 0\n");
  int served = 0, first_kod = -1;
  for (int i = 0; i < 30; i++) {
    SRV_Reason why = ask(&e, "192.0.2.5", 10.0 + i);
    if (why == SRV_R_SERVED)
      served++;
    else if (why == SRV_R_KOD_RATE && first_kod < 0)
      first_kod = i;
    else if (first_kod < 0)
      TEST_CHECK(why == SRV_R_SERVED);
  }
  TEST_EQ_INT(first_kod, 13);
  TEST_CHECK(served >= 13 && served < 30);
  env_free(&e);
}

static void
test_acc_limited_boundaries(void)
{
  /* minimum 2 s: a 2nd packet 0.4 s after the first is a violation; 0.5 s is not */
  Env e = env("restrict -4 default limited\ndiscard leak 0\n");
  TEST_EQ_INT(ask(&e, "192.0.2.5", 10.0), SRV_R_SERVED);
  TEST_EQ_INT(ask(&e, "192.0.2.5", 10.4), SRV_R_DROP_LIMITED);
  TEST_EQ_INT(ask(&e, "192.0.2.6", 10.0), SRV_R_SERVED);
  TEST_EQ_INT(ask(&e, "192.0.2.6", 10.5), SRV_R_SERVED);
  /* 8 s spacing (= 2^average) is served forever */
  for (int i = 0; i < 100; i++)
    TEST_EQ_INT(ask(&e, "192.0.2.7", 100.0 + 8.0 * i), SRV_R_SERVED);
  /* unlimited sources are monitored but never limited */
  for (int i = 0; i < 50; i++)
    TEST_CHECK(ask(&e, "2001:db8::9", 1.0 + 0.01 * i) != SRV_R_DROP_LIMITED);
  env_free(&e);
  Env u = env("restrict default\n");
  for (int i = 0; i < 50; i++)
    TEST_EQ_INT(ask(&u, "192.0.2.5", 1.0 + 0.01 * i), SRV_R_SERVED);
  env_free(&u);
}

/* A flood from many limited sources: the global KoD limit (kodlimit per second) caps the
 * RATE KoDs in total; the rest are counted as suppressed. Another source is still served. */
static void
test_acc_global_kod_limit(void)
{
  Env e = env("restrict default limited kod\ndiscard leak 0 kodlimit 1\n");
  int kods = 0, suppressed = 0;
  char src[32];
  for (int round = 0; round < 20; round++) { /* 20 rounds over 2 s */
    for (int s = 0; s < 10; s++) {
      snprintf(src, sizeof(src), "192.0.2.%d", s + 1);
      SRV_Reason why = ask(&e, src, 10.0 + round * 0.1);
      kods += why == SRV_R_KOD_RATE;
      suppressed += why == SRV_R_DROP_KOD_LIMIT;
    }
  }
  TEST_CHECK(kods >= 1 && kods <= 3); /* full bucket of 1 at start, +1 per second */
  TEST_CHECK(suppressed >= 7);
  TEST_EQ_INT(ask(&e, "198.51.100.1", 12.0), SRV_R_SERVED);
  env_free(&e);
}

static void
test_acc_kodlimit_zero_sends_none(void)
{
  Env e = env("restrict default limited kod noserve\ndiscard leak 0 kodlimit 0\n");
  TEST_EQ_INT(ask(&e, "192.0.2.5", 1), SRV_R_DROP_KOD_LIMIT);
  env_free(&e);
}

/* DENY KoDs to one flooding source are limited per source by the discard algorithm. */
static void
test_acc_deny_kods_limited_per_source(void)
{
  Env e = env("restrict default noserve kod\ndiscard leak 0 kodlimit 1000\n");
  int kods = 0;
  for (int i = 0; i < 200; i++)
    kods += ask(&e, "192.0.2.5", 10.0 + 0.01 * i) == SRV_R_KOD_DENY;
  TEST_CHECK(kods >= 1 && kods <= 3);
  env_free(&e);
}

static void
test_acc_leak_serves_some(void)
{
  Env e = env("restrict default limited\ndiscard leak 2\n");
  int leaked = 0;
  for (int i = 0; i < 2000; i++)
    leaked += ask(&e, "192.0.2.5", 10.0 + 0.001 * i) == SRV_R_SERVED_LEAK;
  /* 1 in 4 of the ~2000 over-limit requests */
  TEST_CHECK(leaked > 350 && leaked < 650);
  env_free(&e);
}

static void
test_acc_no_kod_for_mode_4_or_5(void)
{
  Env e = env("restrict default limited kod noserve\n");
  Req r;
  uint8_t out[PKT_MAX_LEN];
  SRV_Verdict v;
  for (int mode = 4; mode <= 5; mode++) {
    for (int i = 0; i < 20; i++) {
      req_init(&r, "192.0.2.5", 123, 4, mode, SEC + i);
      TEST_EQ_INT(decide(&e, &r, &v, out), SRV_DROP);
      TEST_EQ_INT(v.why, SRV_R_DROP_RESPONSE);
    }
  }
  req_init(&r, "192.0.2.5", 123, 4, 1, SEC);
  TEST_EQ_INT(decide(&e, &r, &v, out), SRV_DROP);
  TEST_EQ_INT(v.why, SRV_R_DROP_SYMMETRIC);
  env_free(&e);
}

static void
test_acc_flake_drops_about_a_tenth(void)
{
  Env e = env("restrict default flake\n");
  int dropped = 0;
  for (int i = 0; i < 2000; i++)
    dropped += ask(&e, "192.0.2.5", 1 + i * 10.0) == SRV_R_DROP_FLAKE;
  TEST_CHECK(dropped > 120 && dropped < 280);
  env_free(&e);
}

static void
test_acc_kod_poll_and_length(void)
{
  Env e = env("restrict default noserve kod\ndiscard average 5 kodlimit 10\n");
  Req r;
  uint8_t out[PKT_MAX_LEN];
  SRV_Verdict v;
  req_init(&r, "192.0.2.5", 40000, 4, 3, SEC);
  r.buf[2] = 2; /* poll 4 s < 2^average */
  TEST_EQ_INT(decide(&e, &r, &v, out), SRV_KOD);
  TEST_EQ_INT((int8_t)out[2], 5);
  req_init(&r, "192.0.2.6", 40000, 4, 3, SEC);
  r.buf[2] = 10;
  TEST_EQ_INT(decide(&e, &r, &v, out), SRV_KOD);
  TEST_EQ_INT((int8_t)out[2], 10);
  env_free(&e);
}

static void
test_acc_serverresponse_fuzz(void)
{
  Env e = env("restrict 192.0.2.0/24 serverresponse fuzz\n");
  Req r;
  uint8_t out[PKT_MAX_LEN];
  SRV_Verdict v;
  sys.ref_ts = 0xe8fd12abfedcba98ULL; /* low bits set in seconds and fraction */
  req_init(&r, "192.0.3.5", 40000, 4, 3, SEC);
  TEST_EQ_INT(decide(&e, &r, &v, out), SRV_REPLY);
  TEST_CHECK(PKT_Get64(out + 16) == 0xe8fd12abfedcba98ULL); /* not fuzzed */
  req_init(&r, "192.0.2.5", 40000, 4, 3, SEC);
  TEST_EQ_INT(decide(&e, &r, &v, out), SRV_REPLY);
  TEST_EQ_INT(PKT_Get32(out + 16) & 0x3f, 0); /* reference time: low seconds bits */
  TEST_EQ_INT(PKT_Get32(out + 20), 0);        /* and the whole fraction */
  env_free(&e);
}

static void
test_acc_monitor_params_from_config(void)
{
  Env e = env("discard average 4 minimum 1 monitor 100 leak 3 kodlimit 5\n"
              "mru maxmem 64 mindepth 10 maxage 30\n");
  MON_Params p;
  TEST_CHECK(ACC_MonitorParams(e.cfg, &p, msg_fn, NULL));
  TEST_EQ_INT(p.average, 4);
  TEST_EQ_INT(p.minimum, 1);
  TEST_EQ_INT(p.monitor, 100);
  TEST_EQ_INT(p.leak, 3);
  TEST_EQ_INT(p.kodlimit, 5);
  TEST_EQ_INT(p.maxdepth, 64 * 1024 / (MON_RECORD_BYTES + 4));
  TEST_EQ_INT(p.mindepth, 10);
  TEST_EQ_INT(p.maxage, 30);
  env_free(&e);
  /* maxmem bounds the whole table (records, index and fixed parts) at a real size */
  e = env("mru maxmem 65536\n");
  TEST_CHECK(ACC_MonitorParams(e.cfg, &p, msg_fn, NULL));
  MON_Table *t = MON_Create(&p, 1);
  TEST_CHECK(t && MON_MemoryBytes(t) <= 65536u * 1024);
  MON_Destroy(t);
  env_free(&e);
}

/* A table bounded at 64 KiB keeps its memory whatever the number of sources. */
static void
test_acc_monitor_bounded_under_many_sources(void)
{
  Env e = env("restrict default limited kod\nmru maxmem 64 maxage 1 mindepth 1\n");
  size_t before = MON_MemoryBytes(e.mon);
  char src[32];
  for (int i = 0; i < 20000; i++) {
    snprintf(src, sizeof(src), "10.%d.%d.%d", (i >> 16) & 255, (i >> 8) & 255, i & 255);
    TEST_CHECK(ask(&e, src, 10.0 + i * 0.001) != SRV_R_DROP_IGNORE);
  }
  MON_Stats ms;
  MON_GetStats(e.mon, &ms);
  TEST_EQ_INT(MON_MemoryBytes(e.mon), before);
  TEST_CHECK(ms.entries <= 64 * 1024 / (MON_RECORD_BYTES + 4));
  TEST_CHECK(ms.evictions + ms.not_tracked > 0);
  env_free(&e);
}

/* `restrict source`: each server we poll gets a host entry with the template's flags; an
 * explicit entry for the same address wins; a new peer set replaces the old entries. */
static void
test_acc_restrict_source_entries(void)
{
  Env e = env("restrict default noserve\nrestrict source limited\n"
              "restrict 192.0.2.9 notrust\n");
  NetAddr peers[3];
  ADR_Parse("192.0.2.7", &peers[0]);
  ADR_Parse("2001:db8::7", &peers[1]);
  ADR_Parse("192.0.2.9", &peers[2]);
  char err[100] = "";
  RST_List *l = ACC_WithSources(e.rst, peers, 3, RST_LIMITED, err, sizeof(err));
  TEST_CHECK(l != NULL);
  NetAddr a;
  ADR_Parse("192.0.2.7", &a);
  a.port = 40000;
  TEST_EQ_INT(RST_Match(l, &a), RST_LIMITED);
  ADR_Parse("2001:db8::7", &a);
  TEST_EQ_INT(RST_Match(l, &a), RST_LIMITED);
  ADR_Parse("192.0.2.9", &a); /* the explicit entry wins over the source entry */
  TEST_EQ_INT(RST_Match(l, &a), RST_NOTRUST);
  ADR_Parse("192.0.2.8", &a);
  TEST_EQ_INT(RST_Match(l, &a), RST_NOSERVE);
  RST_List *l2 = ACC_WithSources(l, &peers[1], 1, RST_LIMITED, err, sizeof(err));
  ADR_Parse("192.0.2.7", &a); /* no longer a peer */
  TEST_EQ_INT(RST_Match(l2, &a), RST_NOSERVE);
  TEST_EQ_INT(RST_Count(l2), RST_Count(l) - 2); /* three source entries became one */
  RST_Destroy(l2);
  RST_Destroy(l);
  env_free(&e);
}

/* Issue 13 B: without a `restrict source` line an upstream server's address gets no entry
 * of its own, so `restrict default limited kod noquery` still holds for it (before, a
 * flagless host entry made a forged upstream address unrestricted). A bare `restrict
 * source` line is a template with no flags, and its flags are the line's. */
static uint32_t
source_template(const char *text)
{
  CNF_Errors ce;
  CNF_InitErrors(&ce);
  CNF_Config *cfg = CNF_Create();
  TEST_CHECK(CNF_ParseText(cfg, "t.conf", text, &ce));
  CNF_ClearErrors(&ce);
  uint32_t flags = 12345;
  RST_List *l = ACC_BuildRestrict(cfg, NULL, 0, fake_resolve, &flags, msg_fn, NULL);
  TEST_CHECK(l != NULL);
  RST_Destroy(l);
  CNF_Destroy(cfg);
  return flags;
}

static void
test_acc_no_source_line_no_source_entries(void)
{
  const char *text = "restrict default limited kod noquery\nserver 192.0.2.7 iburst\n";
  TEST_EQ_INT(source_template(text), ACC_NO_SOURCE);
  TEST_EQ_INT(source_template("restrict source\n"), 0);
  TEST_EQ_INT(source_template("restrict source noquery\nrestrict source limited\n"),
              RST_NOQUERY | RST_LIMITED);
  Env e = env(text);
  uint32_t flags;
  RST_List *base = ACC_BuildRestrict(e.cfg, NULL, 0, fake_resolve, &flags, msg_fn, NULL);
  TEST_CHECK(base != NULL);
  NetAddr peer;
  ADR_Parse("192.0.2.7", &peer);
  char err[100] = "";
  RST_List *l = ACC_WithSources(base, &peer, 1, flags, err, sizeof(err));
  TEST_CHECK(l != NULL);
  TEST_EQ_INT(RST_Count(l), RST_Count(base));
  NetAddr a = peer;
  a.port = 123;
  TEST_EQ_INT(RST_Match(l, &a), RST_LIMITED | RST_KOD | RST_NOQUERY);
  /* through the decision core: a mode 6 request from the upstream's address is dropped,
   * and a burst of time requests from it is rate limited */
  RST_Destroy(e.rst);
  e.rst = l;
  e.ctx.rst = l;
  Req r;
  uint8_t out[PKT_MAX_LEN];
  SRV_Verdict v;
  req_init(&r, "192.0.2.7", 123, 2, 6, 10 * SEC);
  TEST_EQ_INT(decide(&e, &r, &v, out), SRV_DROP);
  TEST_EQ_INT(v.why, SRV_R_DROP_NOQUERY);
  int served = 0, limited = 0;
  for (int i = 0; i < 20; i++) {
    req_init(&r, "192.0.2.7", 123, 4, 3, 20 * SEC + i * (SEC / 100));
    decide(&e, &r, &v, out);
    served += v.why == SRV_R_SERVED;
    limited += v.why == SRV_R_KOD_RATE || v.why == SRV_R_DROP_LIMITED ||
               v.why == SRV_R_DROP_KOD_LIMIT || v.why == SRV_R_SERVED_LEAK;
  }
  TEST_CHECK(served <= 2);
  TEST_CHECK(limited >= 18);
  /* with `restrict source noquery` the entry carries the line's flags */
  RST_List *l2 = ACC_WithSources(base, &peer, 1, RST_NOQUERY, err, sizeof(err));
  TEST_EQ_INT(RST_Match(l2, &a), RST_NOQUERY);
  RST_Destroy(l2);
  RST_Destroy(base);
  env_free(&e);
}

/* Issue 13 item 6: the daemon's monitor and shed tables are keyed from the kernel's CSPRNG
 * (two 16-octet SipHash keys and a sampling seed for the monitor, a 16-octet key for the
 * shed table), not from a 64-bit seed stretched by splitmix or an LCG, and without
 * randomness they are not created at all (RNG_Seed would fall back to time and pid). */
static void
test_acc_tables_keyed_from_the_csprng(void)
{
  MON_Params p;
  MON_DefaultParams(&p);
  random_octets = 0;
  MON_Table *m = MON_CreateSecure(&p);
  TEST_CHECK(m != NULL);
  TEST_CHECK(random_octets >= 32);
  random_octets = 0;
  SHD_Table *s = SHD_CreateSecure();
  TEST_CHECK(s != NULL);
  TEST_CHECK(random_octets >= 16);
  MON_Destroy(m);
  SHD_Destroy(s);
  random_fails = true;
  TEST_CHECK(MON_CreateSecure(&p) == NULL);
  TEST_CHECK(SHD_CreateSecure() == NULL);
  random_fails = false;
}

/* Load shedding through the decision core: a flooder's rate-limit drops shed it; once its
 * filter is in place, what the kernel lets through is answered as the leak; the verdicts
 * before that, and for everyone else, are the rate limiter's. */
static void
test_acc_flooder_is_shed_and_samples_answered(void)
{
  Env e = env("restrict default limited kod\ndiscard shedrate 50 shedhold 4 leak 4\n");
  int count[SRV_R_COUNT] = {0};
  Req r;
  uint8_t out[PKT_MAX_LEN];
  SRV_Verdict v;
  for (int i = 0; i < 200; i++) { /* 200 requests in 0.2 s */
    req_init(&r, "192.0.2.9", 40000, 4, 3, 10 * SEC + i * (SEC / 1000));
    decide(&e, &r, &v, out);
    count[v.why]++;
  }
  TEST_EQ_INT(count[SRV_R_SERVED], 1);
  TEST_EQ_INT(count[SRV_R_KOD_RATE], 1);
  TEST_EQ_INT(count[SRV_R_DROP_LIMITED] + count[SRV_R_SERVED_LEAK], 198);
  SHD_Stats st;
  SHD_GetStats(e.shed, &st);
  TEST_EQ_INT(st.shed_now, 1);
  NetAddr l[SHD_MAX_DEPTH];
  int leak;
  uint64_t gen;
  TEST_EQ_INT(SHD_Snapshot(e.shed, ADR_INET4, l, SHD_MAX_DEPTH, &leak, &gen), 1);
  TEST_EQ_INT(leak, 4);
  /* the filter is in place as of real time 1700000010.5; later arrivals are samples */
  SHD_Applied(e.shed, gen, 1700000010 * SEC + SEC / 2);
  int leaked = 0;
  for (int i = 0; i < 20; i++) {
    req_init(&r, "192.0.2.9", 40001, 4, 3, 11 * SEC + i * (SEC / 1000));
    r.rq.rx.real = (struct timespec){1700000011, i};
    TEST_EQ_INT(decide(&e, &r, &v, out), SRV_REPLY);
    leaked += v.why == SRV_R_SERVED_LEAK && v.shed_sample;
  }
  TEST_EQ_INT(leaked, 20);
  /* queued before the filter: the rate limiter's verdict (a drop or its own leak) */
  req_init(&r, "192.0.2.9", 40001, 4, 3, 11 * SEC + 30 * (SEC / 1000));
  r.rq.rx.real = (struct timespec){1700000010, 0};
  decide(&e, &r, &v, out);
  TEST_CHECK(v.why == SRV_R_DROP_LIMITED || v.why == SRV_R_SERVED_LEAK);
  TEST_CHECK(!v.shed_sample);
  /* a polite neighbour is served as always, and is no sample */
  req_init(&r, "192.0.2.10", 40000, 4, 3, 11 * SEC + SEC / 2);
  TEST_EQ_INT(decide(&e, &r, &v, out), SRV_REPLY);
  TEST_CHECK(v.why == SRV_R_SERVED && !v.shed_sample);
  /* gone after its hold once it stops */
  TEST_CHECK(SHD_Expire(e.shed, 16 * SEC));
  env_free(&e);

  /* shedrate 0: never shed */
  e = env("restrict default limited kod\ndiscard shedrate 0\n");
  for (int i = 0; i < 2000; i++) {
    req_init(&r, "192.0.2.9", 40000, 4, 3, 10 * SEC + i * (SEC / 10000));
    decide(&e, &r, &v, out);
  }
  SHD_GetStats(e.shed, &st);
  TEST_EQ_INT(st.shed, 0);
  env_free(&e);
}

TEST_MAIN(TEST_CASE(test_acc_flooder_is_shed_and_samples_answered),
          TEST_CASE(test_acc_open_config_serves), TEST_CASE(test_acc_restrict_source_entries),
          TEST_CASE(test_acc_no_source_line_no_source_entries),
          TEST_CASE(test_acc_tables_keyed_from_the_csprng),
          TEST_CASE(test_acc_ignore_takes_no_monitor_slot),
          TEST_CASE(test_acc_noserve_with_and_without_kod),
          TEST_CASE(test_acc_noserve_leaves_queries_alone),
          TEST_CASE(test_acc_noquery_drops_modes_6_and_7_only),
          TEST_CASE(test_acc_mode7_never_answered_even_open),
          TEST_CASE(test_acc_control_responses_from_self_never_answered),
          TEST_CASE(test_acc_version_flag),
          TEST_CASE(test_acc_notrust_without_keys_denies_all),
          TEST_CASE(test_acc_notrust_with_keys),
          TEST_CASE(test_acc_overlapping_masks_most_specific_wins),
          TEST_CASE(test_acc_ntpport_and_interface_entries),
          TEST_CASE(test_acc_unrestrict_and_delrestrict),
          TEST_CASE(test_acc_host_names_resolved_outside_parser),
          TEST_CASE(test_acc_limited_kod_at_one_second_spacing),
          TEST_CASE(test_acc_limited_boundaries), TEST_CASE(test_acc_global_kod_limit),
          TEST_CASE(test_acc_kodlimit_zero_sends_none),
          TEST_CASE(test_acc_deny_kods_limited_per_source),
          TEST_CASE(test_acc_leak_serves_some), TEST_CASE(test_acc_no_kod_for_mode_4_or_5),
          TEST_CASE(test_acc_flake_drops_about_a_tenth),
          TEST_CASE(test_acc_kod_poll_and_length), TEST_CASE(test_acc_serverresponse_fuzz),
          TEST_CASE(test_acc_monitor_params_from_config),
          TEST_CASE(test_acc_monitor_bounded_under_many_sources))
