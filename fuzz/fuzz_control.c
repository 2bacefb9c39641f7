/* libFuzzer target: the mode 6 handler (codec, variable parsing, MRU paging, reslist,
 * configure) with real tables and keys. The first octet chooses the source (127.0.0.1 or a
 * remote one, which bounds replies), the restrict flags and whether the request is MACed
 * with the control key; the rest is the request, in which "nonce=" and 24 '@' become a
 * valid nonce (READ_MRU with one is exempt from the bound, as docs/control.md says).
 * Properties: no crash; nothing answered when the request is a response/error/fragment; an
 * unauthenticated, non-local request gets at most max(480, 3 x request) octets back. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "control.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const char KEYS[] =
    "1 MD5 onetwothree\n2 SHA1 0123456789abcdef0123456789abcdef01234567\n";
static CTL_Ctx ctx;
static CTL_Output *out;
static SRV_System sys;
static MON_Params mp;

static bool
configure(void *arg, const char *text, char *reply, size_t cap)
{
  (void)arg;
  snprintf(reply, cap, "%zu octets", strlen(text));
  return text[0] != 'x';
}

static void
setup(void)
{
  NTT_Now now = {.real = {1700000000, 0}, .mono_ns = 1000000000};
  SRV_SystemLocal(&sys, -20, 10, PKT_RefidFromCode("LOCL"), &now);
  MON_DefaultParams(&mp);
  mp.maxdepth = 64;
  MON_Table *mon = MON_Create(&mp, 1);
  for (int i = 0; i < 40; i++) { /* something to list */
    NetAddr a;
    ADR_Parse("192.0.2.0", &a);
    a.bytes[3] = (uint8_t)i;
    a.port = (uint16_t)(1000 + i);
    MON_Check(mon, &a, 3, 4, 0, now.mono_ns + i * 1000000LL, NULL);
  }
  RST_Entry e[2] = {0};
  ADR_Parse("10.0.0.0", &e[0].addr);
  ADR_MaskFromPrefix(ADR_INET4, 8, &e[0].mask);
  e[0].flags = RST_NOSERVE;
  e[0].ippeerlimit = -1;
  ADR_Parse("2001:db8::", &e[1].addr);
  ADR_MaskFromPrefix(ADR_INET6, 32, &e[1].mask);
  e[1].flags = RST_LIMITED | RST_KOD;
  e[1].ippeerlimit = -1;
  KEY_Table *keys = KEY_ParseText("fuzz.keys", KEYS, NULL);
  CNF_KeyRange all = {1, 65535};
  if (!mon || !keys || !(out = malloc(sizeof(*out))))
    abort();
  KEY_SetTrusted(keys, &all, 1);
  ctx.sys = &sys;
  ctx.mon = mon;
  ctx.mon_params = &mp;
  ctx.rst = RST_Create(e, 2, NULL, 0);
  ctx.keys = keys;
  ctx.control_key = 1;
  ctx.verify = KEY_VerifyControl;
  ctx.sign = KEY_SignControl;
  ctx.configure = configure;
  memset(ctx.nonce_secret, 7, sizeof(ctx.nonce_secret));
}

/* "nonce=" and 24 '@' in the request become a valid nonce for src, so that READ_MRU gets
 * past the nonce check and pages through the table (MON_Walk). */
static bool
valid_nonce(uint8_t *req, size_t len, const NetAddr *src, const NTT_Now *now)
{
  static const char at[] = "nonce=@@@@@@@@@@@@@@@@@@@@@@@@";
  size_t n = sizeof(at) - 1;
  for (size_t i = 12; i + n <= len; i++)
    if (memcmp(req + i, at, n) == 0) {
      char nonce[25];
      CTL_MakeNonce(ctx.nonce_secret, src, NTT_FromTimespec(&now->real), nonce);
      memcpy(req + i + 6, nonce, 24);
      return true;
    }
  return false;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
  if (!ctx.sys)
    setup();
  if (size < 1 || size > 1200)
    return 0;
  uint8_t sel = data[0];
  uint8_t req[1400];
  size_t len = size - 1;
  memcpy(req, data + 1, len);
  NetAddr src;
  ADR_Parse((sel & 2) ? "127.0.0.1" : "192.0.2.77", &src);
  src.port = 40000;
  uint32_t rflags = ((sel & 4) ? RST_NOMODIFY : 0) | ((sel & 8) ? RST_NOTRAP : 0) |
                    ((sel & 16) ? RST_NOMRULIST : 0);
  NTT_Now now = {.real = {1700000000 + (sel >> 5), 0}, .mono_ns = 2000000000LL};
  /* READ_MRU with a valid nonce is exempt from the bound: the source proved it receives */
  bool mru = valid_nonce(req, len, &src, &now) && (req[1] & 0x1f) == 10;
  if ((sel & 1) && len >= 12 && len % 4 == 0) /* MAC it with the control key */
  {
    size_t signed_len = KEY_SignControl(ctx.keys, 1, req, len, sizeof(req));
    if (signed_len)
      len = signed_len;
  }
  CTL_Reason why = CTL_Handle(&ctx, req, len, &src, rflags, &now, out);
  if ((unsigned)why >= CTL_R_COUNT)
    abort();
  size_t total = 0;
  for (size_t i = 0; i < out->wire.count; i++)
    total += out->wire.len[i];
  bool response = len < 2 || (req[1] & 0xe0) || (len >= 10 && (req[8] | req[9]));
  if (response && (req[0] & 7) == 6 && total > 0)
    abort();
  if (!(sel & 1) && !(sel & 2) && !mru && total > (3 * len > 480 ? 3 * len : 480))
    abort();
  return 0;
}
