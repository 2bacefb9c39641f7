/* Unit tests for NTS cookies and their master keys (ntscookie.c). */
#include "ntscookie.h"

#include "harness.h"

#include <string.h>

static void
fill(uint8_t *b, size_t n, uint8_t seed)
{
  for (size_t i = 0; i < n; i++)
    b[i] = (uint8_t)(seed + i * 7);
}

static void
test_cookie_round_trip_and_size(void)
{
  SIV_Ctx *siv = SIV_Create();
  NCK_Keys k = {.n = 0};
  uint8_t mk[32], c2s[32], s2c[32], nonce[16], ck[NCK_COOKIE_LEN], a[32], b[32];
  fill(mk, 32, 1);
  fill(c2s, 32, 2);
  fill(s2c, 32, 3);
  fill(nonce, 16, 4);
  TEST_EQ_INT(NCK_COOKIE_LEN, 100);
  TEST_CHECK(!NCK_Seal(&k, siv, c2s, s2c, nonce, ck)); /* no key yet */
  NCK_Rotate(&k, 1000, 77, mk);
  TEST_CHECK(NCK_Seal(&k, siv, c2s, s2c, nonce, ck));
  TEST_EQ_INT(NCK_Open(&k, siv, ck, sizeof(ck), a, b), NCK_OK);
  TEST_CHECK(memcmp(a, c2s, 32) == 0 && memcmp(b, s2c, 32) == 0);
  /* the keys are not in the cookie in clear */
  TEST_CHECK(memmem(ck, sizeof(ck), c2s, 8) == NULL && memmem(ck, sizeof(ck), s2c, 8) == NULL);
  TEST_EQ_INT(NCK_Open(&k, siv, ck, sizeof(ck) - 1, a, b), NCK_BAD_LENGTH);
  for (size_t i = 0; i < sizeof(ck); i++) {
    ck[i] ^= 0x10;
    NCK_Status st = NCK_Open(&k, siv, ck, sizeof(ck), a, b);
    TEST_CHECK(st == (i < 4 ? NCK_UNKNOWN_KEY : NCK_UNDECRYPTABLE));
    ck[i] ^= 0x10;
  }
  SIV_Destroy(siv);
}

static void
test_cookie_old_keys_open_until_dropped(void)
{
  SIV_Ctx *siv = SIV_Create();
  NCK_Keys k = {.n = 0};
  uint8_t mk[32], c2s[32] = {1}, s2c[32] = {2}, nonce[16] = {3}, ck[NCK_COOKIE_LEN], a[32],
                  b[32];
  fill(mk, 32, 10);
  NCK_Rotate(&k, 0, 5, mk);
  TEST_CHECK(NCK_Seal(&k, siv, c2s, s2c, nonce, ck));
  TEST_CHECK(!NCK_NeedsRotation(&k, NCK_ROTATE_INTERVAL - 1, NCK_ROTATE_INTERVAL));
  TEST_CHECK(NCK_NeedsRotation(&k, NCK_ROTATE_INTERVAL, NCK_ROTATE_INTERVAL));
  TEST_CHECK(NCK_NeedsRotation(&k, -5, NCK_ROTATE_INTERVAL)); /* the clock went back */
  for (int r = 1; r < NCK_MAX_KEYS; r++) {
    mk[0] = (uint8_t)r;
    NCK_Rotate(&k, r * NCK_ROTATE_INTERVAL, 5, mk); /* same id asked: made unique */
    TEST_EQ_INT(NCK_Open(&k, siv, ck, sizeof(ck), a, b), NCK_OK);
  }
  TEST_EQ_INT(k.n, NCK_MAX_KEYS);
  TEST_CHECK(k.keys[0].id != k.keys[1].id && k.keys[1].id != k.keys[2].id);
  mk[0] = 99;
  NCK_Rotate(&k, 9 * NCK_ROTATE_INTERVAL, 1234, mk);
  TEST_EQ_INT(k.n, NCK_MAX_KEYS);
  TEST_EQ_INT(NCK_Open(&k, siv, ck, sizeof(ck), a, b), NCK_UNKNOWN_KEY);
  SIV_Destroy(siv);
}

static void
test_cookie_file_shared_by_two_servers(void)
{
  SIV_Ctx *siv = SIV_Create();
  NCK_Keys k1 = {.n = 0}, k2;
  uint8_t mk[32], c2s[32] = {4}, s2c[32] = {5}, nonce[16] = {6}, ck[NCK_COOKIE_LEN], a[32],
                  b[32];
  fill(mk, 32, 20);
  NCK_Rotate(&k1, 1700000000, 0xdeadbeef, mk);
  fill(mk, 32, 21);
  NCK_Rotate(&k1, 1700086400, 42, mk);
  char text[1024];
  size_t n = NCK_Format(&k1, text, sizeof(text));
  TEST_CHECK(n > 0 && strlen(text) == n);
  TEST_CHECK(strncmp(text, "42 ", 3) == 0);
  int line;
  const char *why = NULL;
  TEST_CHECK(NCK_Parse(text, &k2, &line, &why));
  TEST_EQ_INT(k2.n, 2);
  TEST_CHECK(memcmp(&k1.keys, &k2.keys, 2 * sizeof(k1.keys[0])) == 0);
  TEST_CHECK(NCK_Seal(&k1, siv, c2s, s2c, nonce, ck));
  TEST_EQ_INT(NCK_Open(&k2, siv, ck, sizeof(ck), a, b), NCK_OK);
  TEST_EQ_INT(NCK_Format(&k1, text, 100), 0); /* too small */
  SIV_Destroy(siv);
}

static void
test_cookie_file_errors(void)
{
  NCK_Keys k = {.n = 7};
  int line;
  const char *why;
  static const char hex[] = "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f";
  char t[512];
  snprintf(t, sizeof(t), "# keys\n\n1 %s 5\n", hex);
  TEST_CHECK(NCK_Parse(t, &k, &line, &why) && k.n == 1 && k.keys[0].key[31] == 0x1f);
  snprintf(t, sizeof(t), "1 %s 5\n2 %.62s 5\n", hex, hex);
  TEST_CHECK(!NCK_Parse(t, &k, &line, &why) && line == 2);
  TEST_CHECK(strstr(why, "64 hexadecimal") != NULL && strstr(why, "0001") == NULL);
  snprintf(t, sizeof(t), "1 %s 5\n1 %s 6\n", hex, hex);
  TEST_CHECK(!NCK_Parse(t, &k, &line, &why) && strstr(why, "repeated"));
  snprintf(t, sizeof(t), "1 %s\n", hex);
  TEST_CHECK(!NCK_Parse(t, &k, &line, &why) && line == 1);
  snprintf(t, sizeof(t), "x %s 5\n", hex);
  TEST_CHECK(!NCK_Parse(t, &k, &line, &why));
  snprintf(t, sizeof(t), "4294967296 %s 5\n", hex);
  TEST_CHECK(!NCK_Parse(t, &k, &line, &why));
  snprintf(t, sizeof(t), "1 %s -5\n", hex);
  TEST_CHECK(!NCK_Parse(t, &k, &line, &why));
  snprintf(t, sizeof(t), "1 %s 1\n2 %s 2\n3 %s 3\n4 %s 4\n", hex, hex, hex, hex);
  TEST_CHECK(!NCK_Parse(t, &k, &line, &why) && line == 4);
  TEST_EQ_INT(k.n, 1); /* a failed parse changes nothing */
}

TEST_MAIN(TEST_CASE(test_cookie_round_trip_and_size),
          TEST_CASE(test_cookie_old_keys_open_until_dropped),
          TEST_CASE(test_cookie_file_shared_by_two_servers), TEST_CASE(test_cookie_file_errors))
