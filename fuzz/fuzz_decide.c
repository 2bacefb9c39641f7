/* libFuzzer target: the decision core with a restrict list, a monitor table and keys. The
 * first 4 octets choose the source (address in 192.0.2.0/24 or 2001:db8::/120, port) and
 * time step; the rest is the datagram. Properties: no crash, a verdict reason in range, and
 * no reply or KoD longer than the request, also after SRV_Finish adds a MAC. */
#include <stdlib.h>
#include <string.h>

#include "access.h"
#include "server.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const char CONFIG[] = "restrict default limited kod\n"
                             "restrict 192.0.2.0/28 noserve kod\n"
                             "restrict 192.0.2.16/28 notrust kod\n"
                             "restrict 192.0.2.32/28 version kod\n"
                             "restrict 192.0.2.48/28 ignore\n"
                             "restrict 192.0.2.64/28 noquery flake\n"
                             "restrict 192.0.2.80/28 notrust\n"
                             "restrict 192.0.2.96/28 serverresponse fuzz\n"
                             "restrict 2001:db8::/121 noserve\n"
                             "trustedkey 1 2 4\n"
                             "discard kodlimit 100 leak 2\n"
                             "mru maxdepth 64 mindepth 8 maxage 1\n";
static const char KEYS[] = "1 MD5 onetwothree\n"
                           "2 SHA1 0123456789abcdef0123456789abcdef01234567\n"
                           "3 MD5 untrusted\n"
                           "4 AES128CMAC 000102030405060708090a0b0c0d0e0f\n";

static SRV_Ctx ctx;
static SRV_Policy policy = {.min_poll = 3, .max_poll = 17, .monitor = true};
static SRV_System sys;
static RNG_State rng;
static int64_t mono_ns = 1000000000;

static void
ignore_msg(void *arg, bool warning, int line, const char *text)
{
  (void)arg, (void)warning, (void)line, (void)text;
}

static void
setup(void)
{
  CNF_Config *cfg = CNF_Create();
  if (!cfg || !CNF_ParseText(cfg, "fuzz.conf", CONFIG, NULL))
    abort();
  uint32_t source_flags;
  MON_Params p;
  ctx.rst = ACC_BuildRestrict(cfg, NULL, 0, NULL, &source_flags, ignore_msg, NULL);
  if (!ctx.rst || !ACC_MonitorParams(cfg, &p, ignore_msg, NULL))
    abort();
  ctx.mon = MON_Create(&p, 1);
  KEY_Table *keys = KEY_ParseText("fuzz.keys", KEYS, NULL);
  if (!ctx.mon || !keys)
    abort();
  KEY_SetTrusted(keys, cfg->trusted_keys, cfg->n_trusted_keys);
  ctx.keys = keys;
  NTT_Now now = {.real = {1700000000, 0}, .mono_ns = mono_ns};
  SRV_SystemLocal(&sys, -20, 10, PKT_RefidFromCode("LOCL"), &now);
  ctx.policy = &policy;
  ctx.sys = &sys;
  /* load shedding with a low rate, so that fuzzed floods shed sources and produce samples */
  ctx.shed = SHD_Create(1);
  SHD_Params sp = {.rate = 3, .depth = 4, .hold_s = 2, .leak = 2, .wait_ms = 0};
  if (!ctx.shed)
    abort();
  SHD_Configure(ctx.shed, &sp);
  RNG_Init(&rng, 1);
  CNF_Destroy(cfg);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
  if (!ctx.sys)
    setup();
  if (size < 4)
    return 0;
  SRV_Request rq = {.data = data + 4, .len = size - 4};
  if (data[0] & 0x80) {
    ADR_Parse("2001:db8::", &rq.src);
    rq.src.bytes[15] = data[1];
  } else {
    ADR_Parse("192.0.2.0", &rq.src);
    rq.src.bytes[3] = data[1];
  }
  rq.src.port = (uint16_t)((data[2] & 1) ? 123 : 1024 + data[2]);
  mono_ns += (int64_t)(data[3] & 0x7f) * 10000000; /* 0..1.27 s per packet */
  rq.rx.mono_ns = mono_ns;
  rq.rx.real.tv_sec = 1700000000 + mono_ns / 1000000000;
  /* as pool.c does: expire, and "install" a changed list as of now */
  static uint64_t applied;
  SHD_Expire(ctx.shed, mono_ns);
  if (SHD_Generation(ctx.shed) != applied) {
    applied = SHD_Generation(ctx.shed);
    SHD_Applied(ctx.shed, applied,
                (int64_t)rq.rx.real.tv_sec * 1000000000 + rq.rx.real.tv_nsec - 1);
  }
  uint8_t out[PKT_MAX_LEN];
  SRV_Verdict v;
  SRV_Action a = SRV_Decide(&ctx, &rq, &rng, out, &v);
  if (v.shed_sample && v.why == SRV_R_DROP_LIMITED) /* a sample passed the limiter */
    abort();
  if ((unsigned)v.why >= SRV_R_COUNT)
    abort();
  if (a == SRV_DROP)
    return 0;
  size_t len = v.len;
  if (a == SRV_REPLY)
    len = SRV_Finish(&ctx, &v, out, sizeof(out), &rq.rx.real, &rng);
  if (len > rq.len)
    abort();
  return 0;
}
