/* Unit tests for AEAD_AES_SIV_CMAC_256 through OpenSSL (siv.c): RFC 5297's vector, round
 * trips, every tampering refused, and no allocation per seal or open. */
#include "siv.h"

#include "harness.h"

#include <stdatomic.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>

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

static size_t
unhex(const char *h, uint8_t *out)
{
  size_t n = 0;
  for (; h[0] && h[1]; h += 2) {
    unsigned v;
    sscanf(h, "%2x", &v);
    out[n++] = (uint8_t)v;
  }
  return n;
}

/* RFC 5297 appendix A.1 (deterministic: one associated-data component, no nonce). */
static void
test_siv_rfc5297_a1(void)
{
  uint8_t key[32], ad[24], pt[14], want[30], out[30], back[14];
  unhex("fffefdfcfbfaf9f8f7f6f5f4f3f2f1f0f0f1f2f3f4f5f6f7f8f9fafbfcfdfeff", key);
  unhex("101112131415161718191a1b1c1d1e1f2021222324252627", ad);
  unhex("112233445566778899aabbccddee", pt);
  unhex("85632d07c6e8f37f950acd320a2ecc9340c02b9690c4dc04daef7f6afe5c", want);
  SIV_Ctx *c = SIV_Create();
  TEST_CHECK(c != NULL);
  if (!c)
    return;
  TEST_CHECK(SIV_Seal(c, key, ad, sizeof(ad), NULL, 0, pt, sizeof(pt), out));
  TEST_CHECK(memcmp(out, want, sizeof(want)) == 0);
  TEST_CHECK(SIV_Open(c, key, ad, sizeof(ad), NULL, 0, want, sizeof(want), back));
  TEST_CHECK(memcmp(back, pt, sizeof(pt)) == 0);
  SIV_Destroy(c);
}

static void
test_siv_round_trip_and_tampering(void)
{
  SIV_Ctx *c = SIV_Create();
  uint8_t key[32], ad[48], nonce[16], pt[64], ct[80], back[64];
  test_rng_state = harness_seed;
  for (size_t i = 0; i < 32; i++)
    key[i] = (uint8_t)test_rng();
  for (size_t i = 0; i < 48; i++)
    ad[i] = (uint8_t)test_rng();
  for (size_t i = 0; i < 16; i++)
    nonce[i] = (uint8_t)test_rng();
  for (size_t i = 0; i < 64; i++)
    pt[i] = (uint8_t)test_rng();
  TEST_CHECK(SIV_Seal(c, key, ad, 48, nonce, 16, pt, 64, ct));
  TEST_CHECK(SIV_Open(c, key, ad, 48, nonce, 16, ct, 80, back));
  TEST_CHECK(memcmp(back, pt, 64) == 0);
  /* any flipped bit of ciphertext, tag, AD, nonce or key is refused */
  for (size_t bit = 0; bit < 80 * 8; bit += 7) {
    ct[bit / 8] ^= (uint8_t)(1u << (bit % 8));
    TEST_CHECK(!SIV_Open(c, key, ad, 48, nonce, 16, ct, 80, back));
    ct[bit / 8] ^= (uint8_t)(1u << (bit % 8));
  }
  ad[5] ^= 1;
  TEST_CHECK(!SIV_Open(c, key, ad, 48, nonce, 16, ct, 80, back));
  ad[5] ^= 1;
  nonce[15] ^= 0x80;
  TEST_CHECK(!SIV_Open(c, key, ad, 48, nonce, 16, ct, 80, back));
  nonce[15] ^= 0x80;
  key[31] ^= 1;
  TEST_CHECK(!SIV_Open(c, key, ad, 48, nonce, 16, ct, 80, back));
  key[31] ^= 1;
  /* the nonce is its own component: moving octets between AD and nonce changes the tag */
  TEST_CHECK(!SIV_Open(c, key, ad, 47, ad + 47, 1, ct, 80, back) ||
             !SIV_Open(c, key, ad, 48, NULL, 0, ct, 80, back));
  TEST_CHECK(!SIV_Open(c, key, ad, 48, nonce, 16, ct, 15, back)); /* shorter than a tag */
  TEST_CHECK(SIV_Open(c, key, ad, 48, nonce, 16, ct, 80, back));
  SIV_Destroy(c);
}

/* OpenSSL's own AES-128-SIV as the reference (it cannot take an empty plaintext). */
static bool
reference_seal(const uint8_t *key, const uint8_t *ad, size_t adlen, const uint8_t *nonce,
               size_t nlen, const uint8_t *pt, size_t ptlen, uint8_t *out)
{
  EVP_CIPHER *ci = EVP_CIPHER_fetch(NULL, "AES-128-SIV", NULL);
  EVP_CIPHER_CTX *x = EVP_CIPHER_CTX_new();
  int l = 0, f = 0;
  bool ok = ci && x && EVP_EncryptInit_ex2(x, ci, key, NULL, NULL) == 1 &&
            (adlen == 0 || EVP_EncryptUpdate(x, NULL, &l, ad, (int)adlen) == 1) &&
            (nlen == 0 || EVP_EncryptUpdate(x, NULL, &l, nonce, (int)nlen) == 1) &&
            EVP_EncryptUpdate(x, out + 16, &l, pt, (int)ptlen) == 1 &&
            EVP_EncryptFinal_ex(x, out + 16 + l, &f) == 1 &&
            EVP_CIPHER_CTX_ctrl(x, EVP_CTRL_AEAD_GET_TAG, 16, out) == 1;
  EVP_CIPHER_CTX_free(x);
  EVP_CIPHER_free(ci);
  return ok;
}

/* Every length of AD, nonce and plaintext around the block boundaries gives OpenSSL's
 * octets (the S2V paths: xorend for >= 16 octets, pad for fewer; 0, 1 or 2 AD parts). */
static void
test_siv_matches_openssl_siv(void)
{
  SIV_Ctx *c = SIV_Create();
  uint8_t key[32], ad[100], nonce[40], pt[100], mine[116], ref[116], back[100];
  test_rng_state = harness_seed;
  int mismatches = 0;
  for (int it = 0; it < 600; it++) {
    size_t adlen = (size_t)(test_rng() % 70), nlen = (size_t)(test_rng() % 3) * 16,
           ptlen = 1 + (size_t)(test_rng() % 99);
    for (size_t i = 0; i < 32; i++)
      key[i] = (uint8_t)test_rng();
    for (size_t i = 0; i < adlen; i++)
      ad[i] = (uint8_t)test_rng();
    for (size_t i = 0; i < nlen; i++)
      nonce[i] = (uint8_t)test_rng();
    for (size_t i = 0; i < ptlen; i++)
      pt[i] = (uint8_t)test_rng();
    bool a = SIV_Seal(c, key, ad, adlen, nonce, nlen, pt, ptlen, mine);
    bool b = reference_seal(key, ad, adlen, nonce, nlen, pt, ptlen, ref);
    if (!a || !b || memcmp(mine, ref, 16 + ptlen) != 0) {
      if (mismatches++ < 3)
        fprintf(stderr, "mismatch: ad %zu nonce %zu pt %zu\n", adlen, nlen, ptlen);
    }
    TEST_CHECK(SIV_Open(c, key, ad, adlen, nonce, nlen, ref, 16 + ptlen, back) &&
               memcmp(back, pt, ptlen) == 0);
  }
  TEST_EQ_INT(mismatches, 0);
  SIV_Destroy(c);
}

/* RFC 8915 requests carry an empty plaintext: the tag alone authenticates. */
static void
test_siv_empty_plaintext(void)
{
  SIV_Ctx *c = SIV_Create();
  uint8_t key[32] = {1}, ad[48] = {2}, nonce[16] = {3}, tag[16], none[1];
  TEST_CHECK(SIV_Seal(c, key, ad, 48, nonce, 16, NULL, 0, tag));
  TEST_CHECK(SIV_Open(c, key, ad, 48, nonce, 16, tag, 16, none));
  ad[0] ^= 1;
  TEST_CHECK(!SIV_Open(c, key, ad, 48, nonce, 16, tag, 16, none));
  SIV_Destroy(c);
}

static void
test_siv_no_allocation_per_call(void)
{
  TEST_CHECK(ossl_counting);
  SIV_Ctx *c = SIV_Create();
  uint8_t key[32] = {9}, ad[48] = {8}, nonce[16] = {7}, pt[64] = {6}, ct[80], back[64];
  TEST_CHECK(SIV_Seal(c, key, ad, 48, nonce, 16, pt, 64, ct)); /* warm up */
  TEST_CHECK(SIV_Open(c, key, ad, 48, nonce, 16, ct, 80, back));
  long before = atomic_load(&ossl_allocs);
  for (int i = 0; i < 1000; i++) {
    key[i % 32] ^= (uint8_t)i; /* a new key every time, as per packet */
    TEST_CHECK(SIV_Seal(c, key, ad, 48, nonce, 16, pt, 64, ct));
    TEST_CHECK(SIV_Open(c, key, ad, 48, nonce, 16, ct, 80, back));
  }
  long per = (atomic_load(&ossl_allocs) - before);
  fprintf(stderr, "OpenSSL allocations over 2000 SIV calls: %ld\n", per);
  TEST_EQ_INT(per, 0);
  SIV_Destroy(c);
}

TEST_MAIN(TEST_CASE(test_siv_rfc5297_a1), TEST_CASE(test_siv_round_trip_and_tampering),
          TEST_CASE(test_siv_matches_openssl_siv),
          TEST_CASE(test_siv_empty_plaintext), TEST_CASE(test_siv_no_allocation_per_call))
