/* Unit tests for keys: keys-file parsing, MAC known answers, verdicts, sign/verify. */
#include "keys.h"

#include "harness.h"

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* ---- OpenSSL's allocations, counted ------------------------------------------------------
 * Installed before main (OpenSSL accepts it only before its first allocation); they count
 * every allocation libcrypto makes for us, in any thread, and forward to malloc. */
#include <openssl/crypto.h>
#include <stdatomic.h>

static atomic_long ossl_allocs;

static void *
count_malloc(size_t n, const char *file, int line)
{
  (void)file;
  (void)line;
  atomic_fetch_add(&ossl_allocs, 1);
  return malloc(n);
}

static void *
count_realloc(void *p, size_t n, const char *file, int line)
{
  (void)file;
  (void)line;
  atomic_fetch_add(&ossl_allocs, 1);
  return realloc(p, n);
}

static void
count_free(void *p, const char *file, int line)
{
  (void)file;
  (void)line;
  free(p);
}

static bool ossl_counting;

__attribute__((constructor)) static void
install_counters(void)
{
  ossl_counting = CRYPTO_set_mem_functions(count_malloc, count_realloc, count_free) == 1;
}

/* ---- fixed inputs ---------------------------------------------------------------------- */

/* The 48-octet NTPv4 client request every known-answer vector is computed over. */
static const char KAT_PACKET_HEX[] = "230206ec0000010000000200c0a80101"
                                     "e9a1b2c300000000e9a1b2c311111111"
                                     "e9a1b2c422222222e9a1b2c433333333";

/* Known answers, computed once with the OpenSSL 3.0 command line (Debian 12), never with
 * our code. The packet file:
 *   printf '2302 06ec 0000 0100 0000 0200 c0a8 0101 e9a1 b2c3 0000 0000 e9a1 b2c3 \
 *           1111 1111 e9a1 b2c4 2222 2222 e9a1 b2c4 3333 3333' | xxd -r -p > pkt.bin
 * MD5, ASCII key "ntpgate-md5-key":
 *   printf '%s' ntpgate-md5-key > k; cat k pkt.bin | openssl dgst -md5 -r */
static const char KAT_MD5[] = "d6658fc3561c64b682ce6e2d4c5a076b";
/* SHA1, hex key: echo -n 0123456789abcdef0123456789abcdef01234567 | xxd -r -p > k;
 *   cat k pkt.bin | openssl dgst -sha1 -r */
static const char KAT_SHA1[] = "301a832ee9c6259d9496b3c97f92ac7c4d94914f";
/* SHA256, hex key 000102...1f (32 octets): cat k pkt.bin | openssl dgst -sha256 -r gives
 *   79b8d5d29ab7fbe12e021cb437b887037b875fa8bc7f797d23c32f9fb51df700; the MAC carries the
 *   first 20 octets (ntpd MAX_MDG_LEN, RFC 7822 24-octet MAC limit). */
static const char KAT_SHA256_20[] = "79b8d5d29ab7fbe12e021cb437b887037b875fa8";
/* AES-128-CMAC, key 2b7e151628aed2a6abf7158809cf4f3c (the RFC 4493 key):
 *   openssl mac -cipher AES-128-CBC -macopt hexkey:2b7e151628aed2a6abf7158809cf4f3c \
 *     -in pkt.bin CMAC */
static const char KAT_CMAC[] = "068814c2c62d64f7d17f5adb1eecee03";
/* AES-128-CMAC, ASCII key "cmac-short" zero-padded to 16 octets as ntpd does:
 *   openssl mac -cipher AES-128-CBC -macopt hexkey:636d61632d73686f7274000000000000 \
 *     -in pkt.bin CMAC */
static const char KAT_CMAC_PADDED[] = "40c6080db362aadceaa50e1e19b240a1";
/* RFC 4493 section 4, Example 4 (64-octet message), the published answer. */
static const char RFC4493_MSG64[] =
    "6bc1bee22e409f96e93d7e117393172aae2d8a571e03ac9c9eb76fac45af8e51"
    "30c81c46a35ce411e5fbc1191a0a52eff69f2445df4f9b17ad2b417be66c3710";
static const char RFC4493_MAC64[] = "51f0bebf7e3b9d92fc49741779363cfe";
/* The packet followed by a 16-octet extension field f000 0010 0102..0c (64 octets):
 *   (cat pkt.bin; printf 'f0000010 0102030405060708090a0b0c' | xxd -r -p) > pkt_ef.bin
 *   cat k_sha1 pkt_ef.bin | openssl dgst -sha1 -r ; cat k_md5 pkt_ef.bin | openssl dgst -md5
 * -r */
static const char KAT_EF_HEX[] = "f00000100102030405060708090a0b0c";
static const char KAT_EF_SHA1[] = "e92ae66f7e912afd5fcbe2974059df1edeb86db9";
static const char KAT_EF_MD5[] = "45ef95e903c5e39daeddffc26056d180";

#define KEYS_TEXT                                                                             \
  "# test keys\n"                                                                             \
  "1 MD5 ntpgate-md5-key\n"                                                                   \
  "2 SHA1 0123456789abcdef0123456789abcdef01234567\n"                                         \
  "3 SHA256 000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f\n"               \
  "4 AES128CMAC 2b7e151628aed2a6abf7158809cf4f3c\n"                                           \
  "5 AES128CMAC cmac-short\n"

static const CNF_KeyRange ALL_TRUSTED[] = {{1, 65535}};

/* ---- helpers --------------------------------------------------------------------------- */

static size_t
from_hex(const char *hex, uint8_t *out, size_t max)
{
  size_t n = 0;
  for (; hex[0] && hex[1] && n < max; hex += 2) {
    unsigned v;
    if (sscanf(hex, "%2x", &v) != 1)
      break;
    out[n++] = (uint8_t)v;
  }
  return n;
}

static const char *
to_hex(const uint8_t *p, size_t n)
{
  static char buf[2 * PKT_MAX_LEN + 1];
  for (size_t i = 0; i < n && i < PKT_MAX_LEN; i++)
    snprintf(buf + 2 * i, 3, "%02x", p[i]);
  buf[2 * n] = '\0';
  return buf;
}

static size_t
kat_packet(uint8_t *buf)
{
  return from_hex(KAT_PACKET_HEX, buf, PKT_HEADER_LEN);
}

/* Parse text as "t.keys" into a freshly initialised e (the caller clears it); all keys
 * trusted unless `trust` is false. */
static KEY_Table *
load(const char *text, KEY_Errors *e, bool trust)
{
  KEY_InitErrors(e);
  KEY_Table *t = KEY_ParseText("t.keys", text, e);
  if (t && trust)
    KEY_SetTrusted(t, ALL_TRUSTED, 1);
  return t;
}

static const char *
msg(const KEY_MessageList *l, size_t i)
{
  static char buf[512];
  if (i >= l->count)
    return "(no such message)";
  KEY_FormatMessage(&l->items[i], buf, sizeof(buf));
  return buf;
}

/* The single error that text gives ("(ok)" or a count when it is not exactly one). */
static const char *
only_error(const char *text)
{
  static char buf[512];
  KEY_Errors e;
  KEY_Table *t = load(text, &e, false);
  if (t || e.errors.count != 1)
    snprintf(buf, sizeof(buf), "(table=%p, %zu errors) %s", (void *)t, e.errors.count,
             msg(&e.errors, 0));
  else
    snprintf(buf, sizeof(buf), "%s", msg(&e.errors, 0));
  KEY_Destroy(t);
  KEY_ClearErrors(&e);
  return buf;
}

/* The type that a one-key text gives key 1, or 0 when it does not parse. */
static int
type_of(const char *text)
{
  KEY_Errors e;
  KEY_Info info;
  KEY_Table *t = load(text, &e, false);
  int type = t && KEY_GetInfo(t, 1, &info) ? (int)info.type : 0;
  KEY_Destroy(t);
  KEY_ClearErrors(&e);
  return type;
}

/* Sign the KAT packet with key id; return the hex of the digest (without key id). */
static const char *
kat_digest(const KEY_Table *t, uint32_t id)
{
  uint8_t buf[PKT_MAX_LEN];
  size_t len = kat_packet(buf);
  size_t out = KEY_Sign(t, id, buf, len, sizeof(buf));
  if (out < len + 4 || PKT_Get32(buf + len) != id)
    return "(sign failed)";
  return to_hex(buf + len + 4, out - len - 4);
}

static KEY_Verdict
verify(const KEY_Table *t, const uint8_t *buf, size_t len, const NetAddr *src)
{
  PKT_Trailer tr;
  if (PKT_ParseTrailer(buf, len, &tr) != PKT_TRAILER_OK)
    return (KEY_Verdict)-1;
  return KEY_Verify(t, buf, len, &tr, src);
}

static NetAddr
addr(const char *text)
{
  NetAddr a;
  memset(&a, 0, sizeof(a));
  if (!ADR_Parse(text, &a))
    fprintf(stderr, "bad test address %s\n", text);
  return a;
}

/* ---- known answers --------------------------------------------------------------------- */

static void
test_key_kat_md5_ascii_key(void)
{
  KEY_Errors e;
  KEY_Table *t = load(KEYS_TEXT, &e, true);
  TEST_CHECK(t != NULL);
  TEST_EQ_STR(kat_digest(t, 1), KAT_MD5);
  KEY_Destroy(t);
  KEY_ClearErrors(&e);
}

static void
test_key_kat_sha1_hex_key(void)
{
  KEY_Errors e;
  KEY_Table *t = load(KEYS_TEXT, &e, true);
  TEST_EQ_STR(kat_digest(t, 2), KAT_SHA1);
  KEY_Destroy(t);
  KEY_ClearErrors(&e);
}

static void
test_key_kat_sha256_truncated_to_20_octets(void)
{
  KEY_Errors e;
  KEY_Table *t = load(KEYS_TEXT, &e, true);
  TEST_EQ_STR(kat_digest(t, 3), KAT_SHA256_20);
  KEY_Destroy(t);
  KEY_ClearErrors(&e);
}

static void
test_key_kat_aes128_cmac(void)
{
  KEY_Errors e;
  KEY_Table *t = load(KEYS_TEXT, &e, true);
  TEST_EQ_STR(kat_digest(t, 4), KAT_CMAC);
  KEY_Destroy(t);
  KEY_ClearErrors(&e);
}

static void
test_key_kat_cmac_short_key_is_zero_padded_with_warning(void)
{
  KEY_Errors e;
  KEY_Table *t = load(KEYS_TEXT, &e, true);
  TEST_EQ_STR(kat_digest(t, 5), KAT_CMAC_PADDED);
  TEST_EQ_INT(e.warnings.count, 1);
  TEST_EQ_STR(
      msg(&e.warnings, 0),
      "t.keys:6: key 5: AES128CMAC key of 10 octets is zero-padded to 16 (as ntpd does)");
  KEY_Destroy(t);
  KEY_ClearErrors(&e);
}

static void
test_key_kat_cmac_rfc4493_example4(void)
{
  KEY_Errors e;
  KEY_Table *t = load("4 AES128CMAC 2b7e151628aed2a6abf7158809cf4f3c\n", &e, true);
  uint8_t buf[PKT_MAX_LEN];
  size_t len = from_hex(RFC4493_MSG64, buf, sizeof(buf));
  TEST_EQ_INT(len, 64);
  TEST_EQ_INT(KEY_Sign(t, 4, buf, len, sizeof(buf)), 64 + 20);
  TEST_EQ_STR(to_hex(buf + 68, 16), RFC4493_MAC64);
  KEY_Destroy(t);
  KEY_ClearErrors(&e);
}

/* The digest covers the header and every extension field. */
static void
test_key_kat_mac_covers_extension_fields(void)
{
  KEY_Errors e;
  KEY_Table *t = load(KEYS_TEXT, &e, true);
  uint8_t buf[PKT_MAX_LEN];
  size_t len = kat_packet(buf);
  len += from_hex(KAT_EF_HEX, buf + len, 16);
  TEST_EQ_INT(len, 64);
  uint8_t copy[PKT_MAX_LEN];
  memcpy(copy, buf, len);
  TEST_EQ_INT(KEY_Sign(t, 2, buf, len, sizeof(buf)), 88);
  TEST_EQ_STR(to_hex(buf + 68, 20), KAT_EF_SHA1);
  TEST_EQ_INT(verify(t, buf, 88, NULL), KEY_OK);
  TEST_EQ_INT(KEY_Sign(t, 1, copy, len, sizeof(copy)), 84);
  TEST_EQ_STR(to_hex(copy + 68, 16), KAT_EF_MD5);
  TEST_EQ_INT(verify(t, copy, 84, NULL), KEY_OK);
  KEY_Destroy(t);
  KEY_ClearErrors(&e);
}

/* A 20-character key is ASCII, and the same octets written as hex give the same MAC. */
static void
test_key_twenty_chars_are_ascii_longer_is_hex(void)
{
  KEY_Errors e;
  KEY_Table *t = load("1 MD5 0123456789abcdef0123\n"
                      "2 MD5 3031323334353637383961626364656630313233\n"
                      "3 SHA1 ABCDEFabcdef0123456789\n"
                      "4 SHA1 414243444546616263646566303132333435363738\n"
                      "5 SHA1 ABCDEFABCDEF0123456789\n"
                      "6 SHA1 abcdefabcdef0123456789\n",
                      &e, true);
  TEST_CHECK(t != NULL);
  char d1[64], d3[64], d5[64];
  snprintf(d1, sizeof(d1), "%s", kat_digest(t, 1));
  TEST_EQ_STR(kat_digest(t, 2), d1);
  snprintf(d3, sizeof(d3), "%s", kat_digest(t, 3));
  /* key 3 is 22 characters, so it is hex (11 octets), not the ASCII of key 4 */
  TEST_CHECK(strcmp(kat_digest(t, 4), d3) != 0);
  snprintf(d5, sizeof(d5), "%s", kat_digest(t, 5));
  TEST_EQ_STR(kat_digest(t, 6), d5); /* hex digits in either case */
  TEST_EQ_STR(d5, d3);
  KEY_Destroy(t);
  KEY_ClearErrors(&e);
}

/* Random keys and packets against the openssl command line, when it is installed. */
static bool
run_openssl(const char *cmd, char *out, size_t size)
{
  FILE *f = popen(cmd, "r");
  if (!f)
    return false;
  bool ok = fgets(out, (int)size, f) != NULL;
  if (pclose(f) != 0)
    ok = false;
  out[strcspn(out, " \n")] = '\0';
  for (char *p = out; *p; p++)
    if (*p >= 'A' && *p <= 'F')
      *p = (char)(*p - 'A' + 'a');
  return ok;
}

static void
write_file(const char *path, const uint8_t *a, size_t na, const uint8_t *b, size_t nb)
{
  FILE *f = fopen(path, "wb");
  if (!f)
    return;
  fwrite(a, 1, na, f);
  if (b)
    fwrite(b, 1, nb, f);
  fclose(f);
}

/* One random case: a 48..96-octet packet and a key of `type` whose MAC openssl computes. */
static void
cli_case(const char *dir, const char *type, const char *dgst)
{
  uint8_t key[32], pkt[PKT_MAX_LEN];
  size_t klen = 32, plen = PKT_HEADER_LEN + 4 * (size_t)(test_rng() % 13);
  for (size_t i = 0; i < sizeof(key); i++)
    key[i] = (uint8_t)test_rng();
  for (size_t i = 0; i < plen; i++)
    pkt[i] = (uint8_t)test_rng();
  if (!dgst)
    klen = 16;
  char text[128], hexkey[80], path[256], cmd[512], want[160] = "";
  snprintf(hexkey, sizeof(hexkey), "%s", to_hex(key, klen));
  snprintf(text, sizeof(text), "9 %s %s\n", type, hexkey);
  if (dgst) {
    snprintf(path, sizeof(path), "%s/kp.bin", dir);
    write_file(path, key, klen, pkt, plen);
    snprintf(cmd, sizeof(cmd), "openssl dgst -%s -r %s", dgst, path);
  } else {
    snprintf(path, sizeof(path), "%s/p.bin", dir);
    write_file(path, pkt, plen, NULL, 0);
    snprintf(cmd, sizeof(cmd), "openssl mac -cipher AES-128-CBC -macopt hexkey:%s -in %s CMAC",
             hexkey, path);
  }
  TEST_CHECK(run_openssl(cmd, want, sizeof(want)));
  KEY_Errors e;
  KEY_Table *t = load(text, &e, true);
  KEY_Info info;
  if (!t || !KEY_GetInfo(t, 9, &info) || strlen(want) < 2 * info.digest_len) {
    TEST_CHECK(!"key or openssl output missing");
    KEY_Destroy(t);
    KEY_ClearErrors(&e);
    return;
  }
  size_t out = KEY_Sign(t, 9, pkt, plen, sizeof(pkt));
  TEST_EQ_INT(out, plen + 4 + info.digest_len);
  want[2 * info.digest_len] = '\0';
  TEST_EQ_STR(to_hex(pkt + plen + 4, info.digest_len), want);
  KEY_Destroy(t);
  KEY_ClearErrors(&e);
}

static void
test_key_random_macs_match_openssl_cli(void)
{
  if (system("openssl version >/dev/null 2>&1") != 0) {
    fprintf(stderr, "  (openssl command not found: cross-check skipped)\n");
    return;
  }
  char dir[] = "/tmp/test_keys.XXXXXX";
  TEST_CHECK(mkdtemp(dir) != NULL);
  test_rng_state = harness_seed;
  for (int i = 0; i < 3; i++) {
    cli_case(dir, "MD5", "md5");
    cli_case(dir, "SHA1", "sha1");
    cli_case(dir, "SHA256", "sha256");
    cli_case(dir, "SHA512", "sha512");
    cli_case(dir, "AES128CMAC", NULL);
  }
  char path[300];
  snprintf(path, sizeof(path), "%s/kp.bin", dir);
  unlink(path);
  snprintf(path, sizeof(path), "%s/p.bin", dir);
  unlink(path);
  rmdir(dir);
}

/* ---- keys file parsing ----------------------------------------------------------------- */

static void
test_key_parse_every_type_and_alias(void)
{
  TEST_EQ_INT(type_of("1 MD5 k1234567890\n"), KEY_TYPE_MD5);
  TEST_EQ_INT(type_of("1 md5 k1234567890\n"), KEY_TYPE_MD5);
  TEST_EQ_INT(type_of("1 M k1234567890\n"), KEY_TYPE_MD5);
  TEST_EQ_INT(type_of("1 m k1234567890\n"), KEY_TYPE_MD5);
  TEST_EQ_INT(type_of("1 SHA1 k1234567890\n"), KEY_TYPE_SHA1);
  TEST_EQ_INT(type_of("1 sha-1 k1234567890\n"), KEY_TYPE_SHA1);
  TEST_EQ_INT(type_of("1 SHA224 k1234567890\n"), KEY_TYPE_SHA224);
  TEST_EQ_INT(type_of("1 Sha256 k1234567890\n"), KEY_TYPE_SHA256);
  TEST_EQ_INT(type_of("1 SHA384 k1234567890\n"), KEY_TYPE_SHA384);
  TEST_EQ_INT(type_of("1 SHA512 k1234567890\n"), KEY_TYPE_SHA512);
  TEST_EQ_INT(type_of("1 AES128CMAC 0123456789abcdef\n"), KEY_TYPE_AES128CMAC);
  TEST_EQ_INT(type_of("1 aes128cmac 0123456789abcdef\n"), KEY_TYPE_AES128CMAC);
  TEST_EQ_INT(type_of("1 CMAC 0123456789abcdef\n"), KEY_TYPE_AES128CMAC);
  TEST_EQ_INT(type_of("1 AES128 0123456789abcdef\n"), KEY_TYPE_AES128CMAC);
  TEST_EQ_INT(type_of("1 AES 0123456789abcdef\n"), KEY_TYPE_AES128CMAC);
  TEST_EQ_INT(type_of("1 aes-128 0123456789abcdef\n"), KEY_TYPE_AES128CMAC);
  /* Names no daemon accepts, or algorithms we do not carry. */
  TEST_EQ_INT(type_of("1 AES-128-CMAC 0123456789abcdef\n"), 0);
  TEST_EQ_INT(type_of("1 MD4 k1234567890\n"), 0);
  TEST_EQ_INT(type_of("1 MDX k1234567890\n"), 0);
  TEST_EQ_INT(type_of("1 SHA k1234567890\n"), 0);
  TEST_EQ_INT(type_of("1 SHA3-256 k1234567890\n"), 0);
}

static void
test_key_parse_info_and_digest_lengths(void)
{
  KEY_Errors e;
  KEY_Table *t = load(KEYS_TEXT "7 SHA512 abcdefghijk\n", &e, false);
  TEST_EQ_INT(KEY_Count(t), 6);
  KEY_Info info;
  TEST_CHECK(KEY_GetInfo(t, 1, &info));
  TEST_EQ_INT(info.digest_len, 16);
  TEST_EQ_INT(info.line, 2);
  TEST_CHECK(!info.trusted);
  TEST_EQ_INT(info.n_addrs, 0);
  TEST_CHECK(KEY_GetInfo(t, 2, &info) && info.digest_len == 20);
  TEST_CHECK(KEY_GetInfo(t, 3, &info) && info.digest_len == 20);
  TEST_CHECK(KEY_GetInfo(t, 4, &info) && info.digest_len == 16);
  TEST_CHECK(KEY_GetInfo(t, 7, &info) && info.digest_len == 20 && info.line == 7);
  TEST_CHECK(!KEY_GetInfo(t, 6, &info));
  TEST_CHECK(!KEY_GetInfo(t, 0, &info));
  TEST_CHECK(!KEY_GetInfo(t, 70000, &info));
  TEST_CHECK(!KEY_GetInfo(NULL, 1, &info));
  TEST_EQ_INT(KEY_Count(NULL), 0);
  TEST_EQ_STR(KEY_TypeName(KEY_TYPE_SHA256), "SHA256");
  TEST_EQ_STR(KEY_TypeName(KEY_TYPE_AES128CMAC), "AES128CMAC");
  TEST_EQ_STR(KEY_TypeName((KEY_Type)0), "unknown");
  KEY_Destroy(t);
  KEY_ClearErrors(&e);
}

static void
test_key_parse_comments_blank_lines_and_whitespace(void)
{
  KEY_Errors e;
  KEY_Table *t = load("\n"
                      "   # indented comment\n"
                      "#1 MD5 commented-out\n"
                      "\t1\tMD5\tabcdefghijk   # trailing comment\n"
                      "2 MD5 abcdefghijk#comment right after the key\r\n"
                      "3 SHA1 abcdefghijk\r\n"
                      "   \t  \n"
                      "4 MD5 abcdefghijk",
                      &e, false);
  TEST_CHECK(t != NULL);
  TEST_EQ_INT(e.errors.count, 0);
  TEST_EQ_INT(KEY_Count(t), 4);
  KEY_SetTrusted(t, ALL_TRUSTED, 1);
  /* "abcdefghijk#comment" is the key abcdefghijk, the same as key 1's. */
  char d1[64];
  snprintf(d1, sizeof(d1), "%s", kat_digest(t, 1));
  TEST_EQ_STR(kat_digest(t, 2), d1);
  TEST_EQ_STR(kat_digest(t, 4), d1);
  KEY_Destroy(t);
  KEY_ClearErrors(&e);
}

static void
test_key_parse_empty_text_gives_empty_table(void)
{
  KEY_Errors e;
  KEY_Table *t = load("# nothing here\n\n", &e, true);
  TEST_CHECK(t != NULL);
  TEST_EQ_INT(KEY_Count(t), 0);
  KEY_Destroy(t);
  KEY_ClearErrors(&e);
  t = load("", &e, true);
  TEST_CHECK(t != NULL);
  KEY_Destroy(t);
  KEY_ClearErrors(&e);
}

static void
test_key_parse_bad_ids(void)
{
  TEST_EQ_STR(only_error("0 MD5 abcdefghijk\n"),
              "t.keys:1: key id 0 is reserved by the NTP standard");
  TEST_EQ_STR(only_error("000000 MD5 abcdefghijk\n"),
              "t.keys:1: key id 0 is reserved by the NTP standard");
  TEST_EQ_STR(only_error("65536 MD5 abcdefghijk\n"),
              "t.keys:1: key id above 65535 (those were Autokey session keys)");
  TEST_EQ_STR(only_error("4294967297 MD5 abcdefghijk\n"),
              "t.keys:1: key id above 65535 (those were Autokey session keys)");
  TEST_EQ_STR(only_error("abc MD5 abcdefghijk\n"),
              "t.keys:1: the key id must be a number from 1 to 65535");
  TEST_EQ_STR(only_error("-1 MD5 abcdefghijk\n"),
              "t.keys:1: the key id must be a number from 1 to 65535");
  TEST_EQ_STR(only_error("1.5 MD5 abcdefghijk\n"),
              "t.keys:1: the key id must be a number from 1 to 65535");
  TEST_EQ_INT(type_of("0001 MD5 abcdefghijk\n"), KEY_TYPE_MD5);
  KEY_Errors e;
  KEY_Table *t = load("65535 MD5 abcdefghijk\n", &e, false);
  TEST_EQ_INT(KEY_Count(t), 1);
  KEY_Destroy(t);
  KEY_ClearErrors(&e);
}

static void
test_key_parse_missing_fields_and_bad_type(void)
{
  TEST_EQ_STR(only_error("7\n"), "t.keys:1: key 7: missing key type and key");
  TEST_EQ_STR(only_error("7 MD5\n"), "t.keys:1: key 7: missing key (the type is required)");
  TEST_EQ_STR(only_error("7 SHA3-256 abcdefghijk\n"),
              "t.keys:1: key 7: unknown key type (use MD5, SHA1, SHA224, SHA256, SHA384, "
              "SHA512 or AES128CMAC)");
}

static void
test_key_parse_bad_key_material(void)
{
  TEST_EQ_STR(only_error("1 SHA1 0123456789abcdef0123456789abcdef0123456\n"),
              "t.keys:1: key 1: a key longer than 20 characters is hex, and this one has an "
              "odd number of digits");
  TEST_EQ_STR(only_error("1 SHA1 0123456789abcdef0123456789abcdef0123456g\n"),
              "t.keys:1: key 1: a key longer than 20 characters is hex, and this one has a "
              "non-hex character");
  TEST_EQ_STR(only_error("1 SHA1 this-is-no-hex-string-at-all\n"),
              "t.keys:1: key 1: a key longer than 20 characters is hex, and this one has a "
              "non-hex character");
  /* 64 hex digits is the most; 66 is too long. */
  TEST_EQ_INT(
      type_of("1 SHA1 000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f\n"),
      KEY_TYPE_SHA1);
  TEST_EQ_STR(
      only_error(
          "1 SHA1 000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f20\n"),
      "t.keys:1: key 1: the key is longer than 32 octets (64 hex digits)");
  TEST_EQ_STR(only_error("1 MD5 abc\x01"
                         "def\n"),
              "t.keys:1: key 1: the key has a character that is not printable ASCII");
  TEST_EQ_STR(only_error("1 MD5 caf\xc3\xa9\n"),
              "t.keys:1: key 1: the key has a character that is not printable ASCII");
}

static void
test_key_parse_duplicate_id(void)
{
  KEY_Errors e;
  KEY_Table *t =
      load("1 MD5 abcdefghijk\n2 MD5 abcdefghijk\n# c\n1 SHA1 abcdefghijk\n", &e, false);
  TEST_CHECK(t == NULL);
  TEST_EQ_INT(e.errors.count, 1);
  TEST_EQ_STR(msg(&e.errors, 0), "t.keys:4: key 1 is already defined at line 1");
  KEY_ClearErrors(&e);
}

static void
test_key_parse_address_list(void)
{
  KEY_Errors e;
  KEY_Table *t =
      load("1 MD5 abcdefghijk 10.0.0.0/8,192.0.2.1,2001:db8::/32,::ffff:198.51.100.0/120\n",
           &e, true);
  TEST_CHECK(t != NULL);
  KEY_Info info;
  TEST_CHECK(KEY_GetInfo(t, 1, &info));
  TEST_EQ_INT(info.n_addrs, 4);
  KEY_Destroy(t);
  KEY_ClearErrors(&e);

  const char *bad = "t.keys:1: key 1: entry 2 of the address list is not a numeric address or "
                    "ADDRESS/PREFIX";
  TEST_EQ_STR(only_error("1 MD5 abcdefghijk 10.0.0.1,10.0.0.0/33\n"), bad);
  TEST_EQ_STR(only_error("1 MD5 abcdefghijk 10.0.0.1,10.0.0.0/\n"), bad);
  TEST_EQ_STR(only_error("1 MD5 abcdefghijk 10.0.0.1,host.example\n"), bad);
  TEST_EQ_STR(only_error("1 MD5 abcdefghijk 10.0.0.1,,10.0.0.2\n"), bad);
  TEST_EQ_STR(only_error("1 MD5 abcdefghijk 10.0.0.1,\n"), bad);
  TEST_EQ_STR(only_error("1 MD5 abcdefghijk 10.0.0.1,10.0.0.0/+8\n"), bad);
  TEST_EQ_STR(only_error("1 MD5 abcdefghijk 10.0.0.1,2001:db8::/129\n"), bad);
  TEST_EQ_STR(only_error("1 MD5 abcdefghijk 10.0.0.1 10.0.0.2\n"),
              "t.keys:1: key 1: unexpected text after the address list");

  char line[2048] = "1 MD5 abcdefghijk ";
  for (int i = 0; i < KEY_MAX_ADDRS + 1; i++)
    snprintf(line + strlen(line), sizeof(line) - strlen(line), "%s10.0.0.%d", i ? "," : "", i);
  strcat(line, "\n");
  TEST_EQ_STR(only_error(line), "t.keys:1: key 1: more than 64 entries in the address list");
}

static void
test_key_parse_reports_every_error_with_its_line(void)
{
  KEY_Errors e;
  KEY_Table *t = load("1 MD5 abcdefghijk\n"            /* 1: fine */
                      "0 MD5 abcdefghijk\n"            /* 2 */
                      "# comment\n"                    /* 3 */
                      "3 FOO abcdefghijk\n"            /* 4 */
                      "4 MD5 abcdefghijk\n"            /* 5: fine */
                      "5 SHA1 0123456789abcdefX0123\n" /* 6 */
                      "1 MD5 abcdefghijk\n"            /* 7: duplicate */
                      "6 MD5 abcdefghijk 1.2.3\n",     /* 8 */
                      &e, true);
  TEST_CHECK(t == NULL);
  TEST_EQ_INT(e.errors.count, 5);
  const int lines[] = {2, 4, 6, 7, 8};
  for (size_t i = 0; i < 5 && i < e.errors.count; i++) {
    TEST_EQ_INT(e.errors.items[i].line, lines[i]);
    TEST_EQ_STR(e.errors.items[i].file, "t.keys");
  }
  KEY_ClearErrors(&e);
}

static void
test_key_parse_stops_after_max_errors(void)
{
  char *text = malloc(100 * 32);
  text[0] = '\0';
  for (int i = 0; i < 100; i++)
    strcat(text, "x MD5 abcdefghijk\n");
  KEY_Errors e;
  KEY_Table *t = load(text, &e, true);
  TEST_CHECK(t == NULL);
  TEST_EQ_INT(e.errors.count, KEY_MAX_ERRORS + 1);
  TEST_EQ_STR(msg(&e.errors, KEY_MAX_ERRORS),
              "t.keys: more than 50 errors: the rest of the file was not read");
  KEY_ClearErrors(&e);
  /* exactly the limit: every error, and no note about stopping */
  text[0] = '\0';
  for (int i = 0; i < KEY_MAX_ERRORS; i++)
    strcat(text, "x MD5 abcdefghijk\n");
  t = load(text, &e, true);
  TEST_CHECK(t == NULL);
  TEST_EQ_INT(e.errors.count, KEY_MAX_ERRORS);
  TEST_EQ_INT(e.errors.count ? e.errors.items[e.errors.count - 1].line : 0, KEY_MAX_ERRORS);
  KEY_ClearErrors(&e);
  free(text);
}

static void
test_key_parse_errors_without_errs_still_fail(void)
{
  TEST_CHECK(KEY_ParseText("t.keys", "1 MD5 abcdefghijk\nbad\n", NULL) == NULL);
  KEY_Table *t = KEY_ParseText(NULL, "1 MD5 abcdefghijk\n", NULL);
  TEST_CHECK(t != NULL);
  KEY_Destroy(t);
  KEY_Errors e;
  KEY_InitErrors(&e);
  TEST_CHECK(KEY_ParseText("t.keys", NULL, &e) == NULL);
  TEST_EQ_INT(e.errors.count, 1);
  KEY_ClearErrors(&e);
}

static void
test_key_parse_warnings(void)
{
  KEY_Errors e;
  KEY_Table *t = load("1 MD5 short\n"
                      "2 AES128CMAC 000102030405060708090a0b0c0d0e0f10111213\n"
                      "3 AES128CMAC 000102030405060708090a0b0c0d0e0f\n"
                      "4 SHA1 0123456789\n",
                      &e, true);
  TEST_CHECK(t != NULL);
  TEST_EQ_INT(e.warnings.count, 2);
  TEST_EQ_STR(msg(&e.warnings, 0), "t.keys:1: key 1 is shorter than 80 bits");
  TEST_EQ_STR(msg(&e.warnings, 1), "t.keys:2: key 2: AES128CMAC key of 20 octets: only the "
                                   "first 16 are used (as ntpd does)");
  /* The 20-octet CMAC key acts as its first 16 octets. */
  char d3[64];
  snprintf(d3, sizeof(d3), "%s", kat_digest(t, 3));
  TEST_EQ_STR(kat_digest(t, 2), d3);
  KEY_Destroy(t);
  KEY_ClearErrors(&e);
}

/* No message may contain key material, whatever column the key ended up in. */
static void
test_key_messages_never_contain_key_text(void)
{
  static const char *lines[] = {
      "1 Sup3rS3cret\n",     /* chrony style, no type */
      "1 Sup3rS3cret MD5\n", /* type and key swapped */
      "Sup3rS3cret\n",       /* continuation of a wrapped line */
      "Sup3rS3cret MD5 x\n",
      "1 MD5 Sup3rS3cretXXXXXXXXXXXXX\n",  /* long, so read as bad hex */
      "1 MD5 Sup3rS3cretXXXXXXXXXXXXXX\n", /* odd length */
      "1 MD5 Sup3rS3cret\x01\n",           /* bad character */
      "1 MD5 Sup3r S3cret\n",              /* space inside the key */
      "1 MD5 key Sup3rS3cret\n",           /* in the address list */
      "1 MD5 key 1.2.3.4,Sup3rS3cret\n",
      "1 MD5 key 1.2.3.4 Sup3rS3cret\n", /* extra text */
      "1 Sup3rS3cret Sup3rS3cret Sup3rS3cret Sup3rS3cret Sup3rS3cret\n",
      "1 AES128CMAC Sup3rS3cret\n",             /* warning: padded */
      "1 MD5 Sup3rS3\n",                        /* warning: short */
      "1 MD5 Sup3rS3cret\n1 MD5 Sup3rS3cret\n", /* duplicate */
      "0 MD5 Sup3rS3cret\n",
      "99999 MD5 Sup3rS3cret\n",
  };
  for (size_t i = 0; i < sizeof(lines) / sizeof(lines[0]); i++) {
    KEY_Errors e;
    KEY_Table *t = load(lines[i], &e, true);
    TEST_CHECK(e.errors.count + e.warnings.count > 0);
    for (size_t j = 0; j < e.errors.count + e.warnings.count; j++) {
      const char *m =
          j < e.errors.count ? msg(&e.errors, j) : msg(&e.warnings, j - e.errors.count);
      bool leaked = strstr(m, "Sup3r") || strstr(m, "S3cret") || strstr(m, "5375703372");
      TEST_CHECK(!leaked);
      if (leaked)
        fprintf(stderr, "  leaked in: %s\n", m);
    }
    KEY_Destroy(t);
    KEY_ClearErrors(&e);
  }
}

/* Keys in any order are all found (the table is sorted by id after parsing). */
static void
test_key_parse_many_keys_in_any_order(void)
{
  enum { N = 3000 };
  static uint16_t ids[N];
  for (int i = 0; i < N; i++)
    ids[i] = (uint16_t)(i * 21 + 7); /* distinct, 7..62986 */
  test_rng_state = harness_seed;
  for (int i = N - 1; i > 0; i--) { /* shuffle */
    int j = (int)(test_rng() % (uint64_t)(i + 1));
    uint16_t tmp = ids[i];
    ids[i] = ids[j];
    ids[j] = tmp;
  }
  char *text = malloc((size_t)N * 32);
  size_t off = 0;
  for (int i = 0; i < N; i++)
    off += (size_t)sprintf(text + off, "%u SHA1 key-number-%05u\n", ids[i], ids[i]);
  KEY_Errors e;
  KEY_Table *t = load(text, &e, true);
  TEST_EQ_INT(KEY_Count(t), N);
  int wrong = 0;
  for (int i = 0; i < N; i++) {
    KEY_Info info;
    if (!KEY_GetInfo(t, ids[i], &info) || info.line != i + 1 || info.id != ids[i])
      wrong++;
  }
  TEST_EQ_INT(wrong, 0);
  KEY_Info info;
  TEST_CHECK(!KEY_GetInfo(t, 8, &info));
  /* A key signs with its own secret: key ids[0] and ids[1] differ. */
  char d0[64];
  snprintf(d0, sizeof(d0), "%s", kat_digest(t, ids[0]));
  TEST_CHECK(strcmp(kat_digest(t, ids[1]), d0) != 0);
  KEY_Destroy(t);
  KEY_ClearErrors(&e);
  free(text);
}

static void
test_key_set_trusted_marks_ranges_only(void)
{
  KEY_Errors e;
  KEY_Table *t = load("1 MD5 abcdefghijk\n5 MD5 abcdefghijk\n9 MD5 abcdefghijk\n"
                      "10 MD5 abcdefghijk\n",
                      &e, false);
  const CNF_KeyRange r[] = {{5, 9}, {1, 1}};
  TEST_EQ_INT(KEY_SetTrusted(t, r, 2), 3);
  KEY_Info info;
  TEST_CHECK(KEY_GetInfo(t, 1, &info) && info.trusted);
  TEST_CHECK(KEY_GetInfo(t, 5, &info) && info.trusted);
  TEST_CHECK(KEY_GetInfo(t, 9, &info) && info.trusted);
  TEST_CHECK(KEY_GetInfo(t, 10, &info) && !info.trusted);
  const CNF_KeyRange r2[] = {{10, 10}};
  TEST_EQ_INT(KEY_SetTrusted(t, r2, 1), 1);
  TEST_CHECK(KEY_GetInfo(t, 1, &info) && !info.trusted);
  TEST_EQ_INT(KEY_SetTrusted(t, NULL, 0), 0);
  TEST_EQ_INT(KEY_SetTrusted(NULL, r, 2), 0);
  KEY_Destroy(t);
  KEY_ClearErrors(&e);
}

/* ---- loading files --------------------------------------------------------------------- */

static void
test_key_load_file(void)
{
  char dir[] = "/tmp/test_keys.XXXXXX";
  TEST_CHECK(mkdtemp(dir) != NULL);
  char path[300], missing[300];
  snprintf(path, sizeof(path), "%s/ntp.keys", dir);
  snprintf(missing, sizeof(missing), "%s/missing.keys", dir);
  FILE *f = fopen(path, "w");
  fputs(KEYS_TEXT, f);
  fclose(f);
  chmod(path, 0600);

  KEY_Errors e;
  KEY_InitErrors(&e);
  KEY_Table *t = KEY_LoadFile(path, &e);
  TEST_CHECK(t != NULL);
  TEST_EQ_INT(KEY_Count(t), 5);
  TEST_EQ_INT(e.errors.count, 0);
  TEST_EQ_INT(e.warnings.count, 1); /* key 5 padded; no permission warning at 0600 */
  KEY_SetTrusted(t, ALL_TRUSTED, 1);
  TEST_EQ_STR(kat_digest(t, 1), KAT_MD5);
  KEY_Destroy(t);
  KEY_ClearErrors(&e);

  chmod(path, 0644);
  t = KEY_LoadFile(path, &e);
  TEST_CHECK(t != NULL);
  TEST_EQ_INT(e.warnings.count, 2);
  TEST_CHECK(e.warnings.count == 2 &&
             strstr(msg(&e.warnings, 0), "is readable by every user") != NULL);
  KEY_Destroy(t);
  KEY_ClearErrors(&e);

  t = KEY_LoadFile(missing, &e);
  TEST_CHECK(t == NULL);
  TEST_EQ_INT(e.errors.count, 1);
  TEST_EQ_INT(e.errors.count ? e.errors.items[0].line : -1, 0);
  TEST_CHECK(strstr(msg(&e.errors, 0), "cannot read keys: No such file") != NULL);
  KEY_ClearErrors(&e);

  t = KEY_LoadFile(dir, &e);
  TEST_CHECK(t == NULL);
  TEST_CHECK(strstr(msg(&e.errors, 0), "not a regular file") != NULL);
  KEY_ClearErrors(&e);

  f = fopen(path, "wb");
  fwrite("1 MD5 abc\0defghij\n", 1, 18, f);
  fclose(f);
  t = KEY_LoadFile(path, &e);
  TEST_CHECK(t == NULL);
  TEST_CHECK(strstr(msg(&e.errors, 0), "contains a NUL octet") != NULL);
  KEY_ClearErrors(&e);

  TEST_EQ_INT(truncate(path, KEY_MAX_FILE_SIZE + 1), 0); /* sparse: costs no disk */
  t = KEY_LoadFile(path, &e);
  TEST_CHECK(t == NULL);
  TEST_CHECK(strstr(msg(&e.errors, 0), "larger than 8 MiB") != NULL);
  KEY_ClearErrors(&e);

  f = fopen(path, "w");
  fputs("1 MD5 abcdefghijk\n2 BAD abcdefghijk\n", f);
  fclose(f);
  t = KEY_LoadFile(path, &e);
  TEST_CHECK(t == NULL);
  char want[400];
  snprintf(want, sizeof(want), "%s:2: key 2: unknown key type", path);
  TEST_CHECK(strncmp(msg(&e.errors, 0), want, strlen(want)) == 0);
  KEY_ClearErrors(&e);

  unlink(path);
  rmdir(dir);
}

/* ---- verdicts -------------------------------------------------------------------------- */

/* A signed KAT packet (key id) in buf; returns its length. */
static size_t
signed_packet(const KEY_Table *t, uint32_t id, uint8_t *buf)
{
  size_t len = kat_packet(buf);
  return KEY_Sign(t, id, buf, len, PKT_MAX_LEN);
}

static void
test_key_verify_valid_mac_is_ok(void)
{
  KEY_Errors e;
  KEY_Table *t = load(KEYS_TEXT, &e, true);
  uint8_t buf[PKT_MAX_LEN];
  for (uint32_t id = 1; id <= 5; id++) {
    size_t len = signed_packet(t, id, buf);
    TEST_EQ_INT(verify(t, buf, len, NULL), KEY_OK);
  }
  KEY_Destroy(t);
  KEY_ClearErrors(&e);
}

static void
test_key_verify_bad_digest(void)
{
  KEY_Errors e;
  KEY_Table *t = load(KEYS_TEXT, &e, true);
  uint8_t buf[PKT_MAX_LEN];
  for (uint32_t id = 1; id <= 5; id++) {
    size_t len = signed_packet(t, id, buf);
    buf[len - 1] ^= 1; /* last digest octet */
    TEST_EQ_INT(verify(t, buf, len, NULL), KEY_BAD_DIGEST);
    buf[len - 1] ^= 1;
    buf[52] ^= 0x80; /* first digest octet */
    TEST_EQ_INT(verify(t, buf, len, NULL), KEY_BAD_DIGEST);
    buf[52] ^= 0x80;
    buf[47] ^= 1; /* covered header octet */
    TEST_EQ_INT(verify(t, buf, len, NULL), KEY_BAD_DIGEST);
    buf[47] ^= 1;
    TEST_EQ_INT(verify(t, buf, len, NULL), KEY_OK);
  }
  /* The right digest under another key id of the same type is still wrong. */
  KEY_Errors e2;
  KEY_Table *t2 = load("1 MD5 ntpgate-md5-key\n2 MD5 other-md5-key\n", &e2, true);
  size_t len = signed_packet(t2, 1, buf);
  PKT_Put32(buf + 48, 2);
  TEST_EQ_INT(verify(t2, buf, len, NULL), KEY_BAD_DIGEST);
  KEY_Destroy(t2);
  KEY_ClearErrors(&e2);
  KEY_Destroy(t);
  KEY_ClearErrors(&e);
}

static void
test_key_verify_unknown_key(void)
{
  KEY_Errors e;
  KEY_Table *t = load(KEYS_TEXT, &e, true);
  uint8_t buf[PKT_MAX_LEN];
  size_t len = signed_packet(t, 1, buf);
  PKT_Put32(buf + 48, 99);
  TEST_EQ_INT(verify(t, buf, len, NULL), KEY_UNKNOWN_KEY);
  PKT_Put32(buf + 48, 0); /* key 0 with a digest: not a crypto-NAK, not a key */
  TEST_EQ_INT(verify(t, buf, len, NULL), KEY_UNKNOWN_KEY);
  PKT_Put32(buf + 48, 65537);
  TEST_EQ_INT(verify(t, buf, len, NULL), KEY_UNKNOWN_KEY);
  PKT_Put32(buf + 48, 1);
  TEST_EQ_INT(verify(NULL, buf, len, NULL), KEY_UNKNOWN_KEY);
  KEY_Destroy(t);
  KEY_ClearErrors(&e);
}

static void
test_key_verify_untrusted_key(void)
{
  KEY_Errors e;
  KEY_Table *t = load(KEYS_TEXT, &e, false);
  uint8_t buf[PKT_MAX_LEN];
  size_t len = signed_packet(t, 2, buf); /* signing needs no trust */
  TEST_EQ_INT(len, 72);
  TEST_EQ_INT(verify(t, buf, len, NULL), KEY_UNTRUSTED_KEY);
  const CNF_KeyRange r[] = {{2, 2}};
  KEY_SetTrusted(t, r, 1);
  TEST_EQ_INT(verify(t, buf, len, NULL), KEY_OK);
  len = signed_packet(t, 1, buf);
  TEST_EQ_INT(verify(t, buf, len, NULL), KEY_UNTRUSTED_KEY);
  KEY_Destroy(t);
  KEY_ClearErrors(&e);
}

/* A MAC whose digest length does not fit the key's type. */
static void
test_key_verify_truncated_or_wrong_length_mac(void)
{
  KEY_Errors e;
  KEY_Table *t = load(KEYS_TEXT, &e, true);
  uint8_t buf[PKT_MAX_LEN];
  /* SHA1 MAC cut to 20 octets (16-octet digest) */
  size_t len = signed_packet(t, 2, buf);
  TEST_EQ_INT(verify(t, buf, len - 4, NULL), KEY_BAD_LENGTH);
  /* MD5 and CMAC keys with a 24-octet MAC */
  len = signed_packet(t, 1, buf);
  memset(buf + len, 0, 4);
  TEST_EQ_INT(verify(t, buf, len + 4, NULL), KEY_BAD_LENGTH);
  len = signed_packet(t, 4, buf);
  memset(buf + len, 0, 4);
  TEST_EQ_INT(verify(t, buf, len + 4, NULL), KEY_BAD_LENGTH);
  /* A trailer that does not describe this packet */
  len = signed_packet(t, 1, buf);
  PKT_Trailer tr;
  TEST_EQ_INT(PKT_ParseTrailer(buf, len, &tr), PKT_TRAILER_OK);
  TEST_EQ_INT(KEY_Verify(t, buf, len + 4, &tr, NULL), KEY_BAD_LENGTH);
  TEST_EQ_INT(KEY_Verify(t, NULL, len, &tr, NULL), KEY_BAD_LENGTH);
  tr.mac_offset = 20;
  TEST_EQ_INT(KEY_Verify(t, buf, 40, &tr, NULL), KEY_BAD_LENGTH);
  KEY_Destroy(t);
  KEY_ClearErrors(&e);
}

static void
test_key_verify_mac_after_extension_fields(void)
{
  KEY_Errors e;
  KEY_Table *t = load(KEYS_TEXT, &e, true);
  for (uint32_t id = 1; id <= 5; id++) {
    uint8_t buf[PKT_MAX_LEN];
    size_t len = kat_packet(buf);
    /* two fields: 16 octets, then 32 */
    PKT_Put16(buf + len, 0xf000);
    PKT_Put16(buf + len + 2, 16);
    memset(buf + len + 4, 0xa5, 12);
    len += 16;
    PKT_Put16(buf + len, 0xf001);
    PKT_Put16(buf + len + 2, 32);
    memset(buf + len + 4, 0x5a, 28);
    len += 32;
    size_t out = KEY_Sign(t, id, buf, len, sizeof(buf));
    TEST_CHECK(out == len + 20 || out == len + 24);
    PKT_Trailer tr;
    TEST_EQ_INT(PKT_ParseTrailer(buf, out, &tr), PKT_TRAILER_OK);
    TEST_EQ_INT(tr.ef_count, 2);
    TEST_EQ_INT(tr.mac_offset, len);
    TEST_EQ_INT(KEY_Verify(t, buf, out, &tr, NULL), KEY_OK);
    buf[len - 1] ^= 1; /* inside the second field */
    TEST_EQ_INT(verify(t, buf, out, NULL), KEY_BAD_DIGEST);
  }
  KEY_Destroy(t);
  KEY_ClearErrors(&e);
}

static void
test_key_verify_address_restriction(void)
{
  KEY_Errors e;
  KEY_Table *t = load("1 MD5 abcdefghijk 10.0.0.0/8,192.0.2.1,2001:db8::/32,"
                      "::ffff:198.51.100.0/120\n"
                      "2 MD5 abcdefghijk\n",
                      &e, true);
  uint8_t buf[PKT_MAX_LEN];
  size_t len = signed_packet(t, 1, buf);
  NetAddr a;
  a = addr("10.1.2.3");
  a.port = 123;
  TEST_EQ_INT(verify(t, buf, len, &a), KEY_OK);
  a = addr("10.255.255.255");
  TEST_EQ_INT(verify(t, buf, len, &a), KEY_OK);
  a = addr("11.0.0.1");
  TEST_EQ_INT(verify(t, buf, len, &a), KEY_ADDR_NOT_ALLOWED);
  a = addr("192.0.2.1");
  TEST_EQ_INT(verify(t, buf, len, &a), KEY_OK);
  a = addr("192.0.2.2");
  TEST_EQ_INT(verify(t, buf, len, &a), KEY_ADDR_NOT_ALLOWED);
  a = addr("2001:db8:ffff::1");
  TEST_EQ_INT(verify(t, buf, len, &a), KEY_OK);
  a = addr("2001:db9::1");
  TEST_EQ_INT(verify(t, buf, len, &a), KEY_ADDR_NOT_ALLOWED);
  a = addr("::ffff:10.9.9.9"); /* mapped source matches the IPv4 rule */
  TEST_EQ_INT(verify(t, buf, len, &a), KEY_OK);
  a = addr("198.51.100.77"); /* IPv4 source matches the mapped rule */
  TEST_EQ_INT(verify(t, buf, len, &a), KEY_OK);
  a = addr("198.51.101.1");
  TEST_EQ_INT(verify(t, buf, len, &a), KEY_ADDR_NOT_ALLOWED);
  TEST_EQ_INT(verify(t, buf, len, NULL), KEY_ADDR_NOT_ALLOWED);
  /* A bad digest from an allowed address is still bad. */
  a = addr("10.1.2.3");
  buf[len - 1] ^= 1;
  TEST_EQ_INT(verify(t, buf, len, &a), KEY_BAD_DIGEST);
  /* Key 2 has no list: any source. */
  len = signed_packet(t, 2, buf);
  a = addr("203.0.113.9");
  TEST_EQ_INT(verify(t, buf, len, &a), KEY_OK);
  TEST_EQ_INT(verify(t, buf, len, NULL), KEY_OK);
  KEY_Destroy(t);
  KEY_ClearErrors(&e);
}

static void
test_key_verify_crypto_nak_and_no_mac(void)
{
  KEY_Errors e;
  KEY_Table *t = load(KEYS_TEXT, &e, true);
  uint8_t buf[PKT_MAX_LEN];
  size_t len = kat_packet(buf);
  TEST_EQ_INT(verify(t, buf, len, NULL), KEY_NO_MAC);
  TEST_EQ_INT(KEY_AppendCryptoNak(buf, len, sizeof(buf)), 52);
  TEST_EQ_INT(PKT_Get32(buf + 48), 0);
  TEST_EQ_INT(verify(t, buf, 52, NULL), KEY_CRYPTO_NAK);
  TEST_EQ_INT(verify(NULL, buf, 52, NULL), KEY_CRYPTO_NAK);
  TEST_EQ_INT(KEY_AppendCryptoNak(buf, 52, sizeof(buf)), 0);
  TEST_EQ_INT(KEY_AppendCryptoNak(buf, 48, 51), 0);
  TEST_EQ_INT(KEY_AppendCryptoNak(NULL, 48, 52), 0);
  KEY_Destroy(t);
  KEY_ClearErrors(&e);
}

static void
test_key_verdict_names(void)
{
  TEST_EQ_STR(KEY_VerdictName(KEY_OK), "ok");
  TEST_EQ_STR(KEY_VerdictName(KEY_CRYPTO_NAK), "crypto-nak");
  TEST_EQ_STR(KEY_VerdictName(KEY_NO_MAC), "no-mac");
  TEST_EQ_STR(KEY_VerdictName(KEY_UNKNOWN_KEY), "unknown-key");
  TEST_EQ_STR(KEY_VerdictName(KEY_UNTRUSTED_KEY), "untrusted-key");
  TEST_EQ_STR(KEY_VerdictName(KEY_BAD_LENGTH), "bad-length");
  TEST_EQ_STR(KEY_VerdictName(KEY_ADDR_NOT_ALLOWED), "addr-not-allowed");
  TEST_EQ_STR(KEY_VerdictName(KEY_BAD_DIGEST), "bad-digest");
  TEST_EQ_STR(KEY_VerdictName(KEY_CRYPTO_FAILED), "crypto-failed");
  TEST_EQ_STR(KEY_VerdictName((KEY_Verdict)99), "unknown");
}

/* ---- signing --------------------------------------------------------------------------- */

static void
test_key_sign_refuses_bad_input_and_leaves_packet(void)
{
  KEY_Errors e;
  KEY_Table *t = load(KEYS_TEXT, &e, true);
  uint8_t buf[PKT_MAX_LEN], before[PKT_MAX_LEN];
  size_t len = kat_packet(buf);
  memset(buf + len, 0xee, sizeof(buf) - len);
  memcpy(before, buf, sizeof(buf));
  TEST_EQ_INT(KEY_Sign(t, 99, buf, len, sizeof(buf)), 0); /* unknown key */
  TEST_EQ_INT(KEY_Sign(t, 0, buf, len, sizeof(buf)), 0);
  TEST_EQ_INT(KEY_Sign(NULL, 1, buf, len, sizeof(buf)), 0);
  TEST_EQ_INT(KEY_Sign(t, 2, buf, len, len + 23), 0); /* one octet short */
  TEST_EQ_INT(KEY_Sign(t, 1, buf, len, len + 19), 0);
  TEST_EQ_INT(KEY_Sign(t, 1, buf, 44, sizeof(buf)), 0); /* shorter than a header */
  TEST_EQ_INT(KEY_Sign(t, 1, buf, 50, sizeof(buf)), 0); /* not a multiple of 4 */
  uint8_t big[2048] = {0};
  TEST_EQ_INT(KEY_Sign(t, 1, big, PKT_MAX_LEN - 16, sizeof(big)), 0); /* would pass 1500 */
  TEST_EQ_INT(KEY_Sign(t, 1, big, PKT_MAX_LEN - 20, sizeof(big)), PKT_MAX_LEN);
  TEST_EQ_INT(KEY_Sign(t, 1, NULL, len, sizeof(buf)), 0);
  TEST_CHECK(memcmp(buf, before, sizeof(buf)) == 0);
  TEST_EQ_INT(KEY_Sign(t, 2, buf, len, len + 24), len + 24); /* exactly fits */
  TEST_EQ_INT(KEY_Sign(t, 1, before, len, len + 20), len + 20);
  KEY_Destroy(t);
  KEY_ClearErrors(&e);
}

/* Every type, NTPv4 and NTPv3, random packets: sign, parse the trailer, verify. */
static void
test_key_sign_then_verify_round_trip_every_type(void)
{
  KEY_Errors e;
  KEY_Table *t = load("1 MD5 abcdefghijk\n"
                      "2 SHA1 abcdefghijk\n"
                      "3 SHA224 abcdefghijk\n"
                      "4 SHA256 abcdefghijk\n"
                      "5 SHA384 abcdefghijk\n"
                      "6 SHA512 abcdefghijk\n"
                      "7 AES128CMAC abcdefghijklmnop\n"
                      "8 M 0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef\n",
                      &e, true);
  TEST_CHECK(t != NULL);
  test_rng_state = harness_seed;
  for (uint32_t id = 1; id <= 8; id++) {
    for (int vn = 3; vn <= 4; vn++) {
      uint8_t buf[PKT_MAX_LEN];
      for (size_t i = 0; i < PKT_HEADER_LEN; i++)
        buf[i] = (uint8_t)test_rng();
      buf[0] = (uint8_t)(vn << 3 | 3);
      size_t out = KEY_Sign(t, id, buf, PKT_HEADER_LEN, sizeof(buf));
      KEY_Info info;
      TEST_CHECK(KEY_GetInfo(t, id, &info));
      TEST_EQ_INT(out, PKT_HEADER_LEN + 4 + info.digest_len);
      PKT_Trailer tr;
      TEST_EQ_INT(PKT_ParseTrailer(buf, out, &tr), PKT_TRAILER_OK);
      TEST_CHECK(tr.has_mac && tr.key_id == id && tr.digest_len == info.digest_len);
      TEST_EQ_INT(KEY_Verify(t, buf, out, &tr, NULL), KEY_OK);
    }
  }
  KEY_Destroy(t);
  KEY_ClearErrors(&e);
}

/* A reloaded table with a changed key rejects what the old one signed. */
static void
test_key_changed_key_fails_verification(void)
{
  KEY_Errors e, e2;
  KEY_Table *old = load("1 SHA1 0123456789abcdef0123456789abcdef01234567\n", &e, true);
  KEY_Table *new = load("1 SHA1 0123456789abcdef0123456789abcdef01234568\n", &e2, true);
  uint8_t buf[PKT_MAX_LEN];
  size_t len = signed_packet(old, 1, buf);
  TEST_EQ_INT(verify(old, buf, len, NULL), KEY_OK);
  TEST_EQ_INT(verify(new, buf, len, NULL), KEY_BAD_DIGEST);
  KEY_Destroy(old);
  KEY_Destroy(new);
  KEY_ClearErrors(&e);
  KEY_ClearErrors(&e2);
}

/* One table, several threads verifying and signing at once (each thread has its own CMAC
 * contexts): every result must still be right. */
typedef struct {
  const KEY_Table *t;
  int wrong;
} ThreadArg;

static void *
verify_thread(void *arg)
{
  ThreadArg *a = arg;
  for (int i = 0; i < 400; i++) {
    uint32_t id = 1 + (uint32_t)(i % 5);
    uint8_t buf[PKT_MAX_LEN];
    size_t len = kat_packet(buf);
    buf[47] = (uint8_t)i;
    len = KEY_Sign(a->t, id, buf, len, sizeof(buf));
    PKT_Trailer tr;
    if (len == 0 || PKT_ParseTrailer(buf, len, &tr) != PKT_TRAILER_OK ||
        KEY_Verify(a->t, buf, len, &tr, NULL) != KEY_OK)
      a->wrong++;
    buf[len - 1] ^= 1;
    if (KEY_Verify(a->t, buf, len, &tr, NULL) != KEY_BAD_DIGEST)
      a->wrong++;
  }
  return NULL;
}

static void
test_key_concurrent_sign_and_verify(void)
{
  KEY_Errors e;
  KEY_Table *t = load(KEYS_TEXT, &e, true);
  pthread_t th[4];
  ThreadArg args[4];
  for (int i = 0; i < 4; i++) {
    args[i] = (ThreadArg){t, 0};
    TEST_EQ_INT(pthread_create(&th[i], NULL, verify_thread, &args[i]), 0);
  }
  for (int i = 0; i < 4; i++) {
    pthread_join(th[i], NULL);
    TEST_EQ_INT(args[i].wrong, 0);
  }
  KEY_Destroy(t);
  KEY_ClearErrors(&e);
}

/* Issue 13 item 6: a MAC costs no allocation. Each key type signs once (a thread's first
 * CMAC sets up its contexts), then 1,000 rounds of sign, verify and verify-with-a-bad-digest
 * for every key must not allocate at all, neither in OpenSSL nor here (before: an
 * EVP_MD_CTX or a duplicated EVP_MAC_CTX for every MAC, 2 to 5 allocations each). */
#define ALLOC_KEYS                                                                            \
  KEYS_TEXT "6 SHA512 00112233445566778899aabbccddeeff\n"                                     \
            "7 SHA224 00112233445566778899aabbccddeeff\n"                                     \
            "8 SHA384 00112233445566778899aabbccddeeff\n"

static int
mac_round(const KEY_Table *t, uint32_t id, int i)
{
  uint8_t buf[PKT_MAX_LEN];
  size_t len = kat_packet(buf);
  buf[47] = (uint8_t)i;
  len = KEY_Sign(t, id, buf, len, sizeof(buf));
  PKT_Trailer tr;
  int wrong = len == 0 || PKT_ParseTrailer(buf, len, &tr) != PKT_TRAILER_OK ||
              KEY_Verify(t, buf, len, &tr, NULL) != KEY_OK;
  buf[len - 1] ^= 1;
  return wrong + (KEY_Verify(t, buf, len, &tr, NULL) != KEY_BAD_DIGEST);
}

static void
test_key_macs_allocate_nothing(void)
{
  if (!ossl_counting) {
    printf("     (OpenSSL allocated before main: allocation count not checked)\n");
    return;
  }
  KEY_Errors e;
  KEY_Table *t = load(ALLOC_KEYS, &e, true);
  TEST_CHECK(t != NULL);
  int wrong = 0;
  for (uint32_t id = 1; id <= 8; id++)
    wrong += mac_round(t, id, 0);
  long before = atomic_load(&ossl_allocs);
  for (int i = 0; i < 1000; i++)
    for (uint32_t id = 1; id <= 8; id++)
      wrong += mac_round(t, id, i);
  long allocs = atomic_load(&ossl_allocs) - before;
  printf("     OpenSSL allocations over 24,000 MACs (8 key types): %ld\n", allocs);
  TEST_EQ_INT(allocs, 0);
  TEST_EQ_INT(wrong, 0);
  KEY_Destroy(t);
  KEY_ClearErrors(&e);
}

/* The thread's CMAC contexts are keyed per key, never per key id: more CMAC keys in turn
 * than it has contexts, and a reloaded table whose key 4 has another secret, still give
 * the right MACs (a context keyed for the old table's key must not be reused). */
static void
test_key_cmac_contexts_follow_the_key(void)
{
  char text[1024] = "";
  for (int id = 1; id <= 9; id++) {
    char line[80];
    snprintf(line, sizeof(line), "%d AES128CMAC %032x\n", id, id * 0x1111);
    strcat(text, line);
  }
  KEY_Errors e, e2;
  KEY_Table *t = load(text, &e, true);
  int wrong = 0;
  for (int i = 0; i < 50; i++)
    for (uint32_t id = 1; id <= 9; id++)
      wrong += mac_round(t, id, i);
  TEST_EQ_INT(wrong, 0);
  KEY_Table *t2 = load("4 AES128CMAC 2b7e151628aed2a6abf7158809cf4f3c\n", &e2, true);
  uint8_t a[PKT_MAX_LEN], b[PKT_MAX_LEN];
  size_t la = signed_packet(t, 4, a), lb = signed_packet(t2, 4, b);
  TEST_CHECK(la == lb && la > 0 && memcmp(a, b, la) != 0);
  TEST_EQ_STR(kat_digest(t2, 4), KAT_CMAC);
  KEY_Destroy(t);
  TEST_EQ_STR(kat_digest(t2, 4), KAT_CMAC);
  KEY_Destroy(t2);
  KEY_ClearErrors(&e);
  KEY_ClearErrors(&e2);
}

TEST_MAIN(
    TEST_CASE(test_key_kat_md5_ascii_key), TEST_CASE(test_key_kat_sha1_hex_key),
    TEST_CASE(test_key_kat_sha256_truncated_to_20_octets), TEST_CASE(test_key_kat_aes128_cmac),
    TEST_CASE(test_key_kat_cmac_short_key_is_zero_padded_with_warning),
    TEST_CASE(test_key_kat_cmac_rfc4493_example4),
    TEST_CASE(test_key_kat_mac_covers_extension_fields),
    TEST_CASE(test_key_twenty_chars_are_ascii_longer_is_hex),
    TEST_CASE(test_key_random_macs_match_openssl_cli),
    TEST_CASE(test_key_parse_every_type_and_alias),
    TEST_CASE(test_key_parse_info_and_digest_lengths),
    TEST_CASE(test_key_parse_comments_blank_lines_and_whitespace),
    TEST_CASE(test_key_parse_empty_text_gives_empty_table), TEST_CASE(test_key_parse_bad_ids),
    TEST_CASE(test_key_parse_missing_fields_and_bad_type),
    TEST_CASE(test_key_parse_bad_key_material), TEST_CASE(test_key_parse_duplicate_id),
    TEST_CASE(test_key_parse_address_list),
    TEST_CASE(test_key_parse_reports_every_error_with_its_line),
    TEST_CASE(test_key_parse_stops_after_max_errors),
    TEST_CASE(test_key_parse_errors_without_errs_still_fail),
    TEST_CASE(test_key_parse_warnings), TEST_CASE(test_key_messages_never_contain_key_text),
    TEST_CASE(test_key_parse_many_keys_in_any_order),
    TEST_CASE(test_key_set_trusted_marks_ranges_only), TEST_CASE(test_key_load_file),
    TEST_CASE(test_key_verify_valid_mac_is_ok), TEST_CASE(test_key_verify_bad_digest),
    TEST_CASE(test_key_verify_unknown_key), TEST_CASE(test_key_verify_untrusted_key),
    TEST_CASE(test_key_verify_truncated_or_wrong_length_mac),
    TEST_CASE(test_key_verify_mac_after_extension_fields),
    TEST_CASE(test_key_verify_address_restriction),
    TEST_CASE(test_key_verify_crypto_nak_and_no_mac), TEST_CASE(test_key_verdict_names),
    TEST_CASE(test_key_sign_refuses_bad_input_and_leaves_packet),
    TEST_CASE(test_key_sign_then_verify_round_trip_every_type),
    TEST_CASE(test_key_changed_key_fails_verification),
    TEST_CASE(test_key_concurrent_sign_and_verify), TEST_CASE(test_key_macs_allocate_nothing),
    TEST_CASE(test_key_cmac_contexts_follow_the_key))
