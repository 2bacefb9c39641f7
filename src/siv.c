#include "siv.h"

#include <limits.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>

/* RFC 5297 built on two AES-128 contexts: ECB for the CMACs of S2V (K1, the key's first
 * half) and CTR for the encryption (K2, its second half). OpenSSL's own "AES-128-SIV"
 * gives the same octets but allocates about thirty times per call (it builds CMAC
 * contexts at every key) and cannot seal an empty plaintext, which every NTS request
 * carries; re-keying an existing ECB or CTR context allocates nothing. */
struct SIV_Ctx {
  EVP_CIPHER_CTX *ecb, *ctr;
};

typedef struct {
  EVP_CIPHER_CTX *ecb;
  uint8_t k1[16], k2[16]; /* CMAC subkeys (RFC 4493) */
} Cmac;

SIV_Ctx *
SIV_Create(void)
{
  static const uint8_t zero[16];
  SIV_Ctx *c = calloc(1, sizeof(*c));
  if (!c)
    return NULL;
  EVP_CIPHER *ecb = EVP_CIPHER_fetch(NULL, "AES-128-ECB", NULL);
  EVP_CIPHER *ctr = EVP_CIPHER_fetch(NULL, "AES-128-CTR", NULL);
  c->ecb = EVP_CIPHER_CTX_new();
  c->ctr = EVP_CIPHER_CTX_new();
  bool ok = ecb && ctr && c->ecb && c->ctr &&
            EVP_EncryptInit_ex2(c->ecb, ecb, zero, NULL, NULL) == 1 &&
            EVP_CIPHER_CTX_set_padding(c->ecb, 0) == 1 &&
            EVP_EncryptInit_ex2(c->ctr, ctr, zero, zero, NULL) == 1;
  EVP_CIPHER_free(ecb); /* the contexts hold their own references */
  EVP_CIPHER_free(ctr);
  if (!ok) {
    SIV_Destroy(c);
    return NULL;
  }
  return c;
}

void
SIV_Destroy(SIV_Ctx *c)
{
  if (!c)
    return;
  EVP_CIPHER_CTX_free(c->ecb);
  EVP_CIPHER_CTX_free(c->ctr);
  free(c);
}

static bool
aes(EVP_CIPHER_CTX *ecb, const uint8_t in[16], uint8_t out[16])
{
  int outl;
  return EVP_EncryptUpdate(ecb, out, &outl, in, 16) == 1 && outl == 16;
}

/* Doubling in GF(2^128) (RFC 5297 section 2.3). */
static void
dbl(uint8_t b[16])
{
  uint8_t carry = b[0] >> 7;
  for (int i = 0; i < 15; i++)
    b[i] = (uint8_t)(b[i] << 1 | b[i + 1] >> 7);
  b[15] = (uint8_t)(b[15] << 1 ^ (carry ? 0x87 : 0));
}

static void
xor16(uint8_t *d, const uint8_t *s)
{
  for (int i = 0; i < 16; i++)
    d[i] ^= s[i];
}

/* Key the ECB context with k and derive the CMAC subkeys (RFC 4493 section 2.3). */
static bool
cmac_key(Cmac *m, EVP_CIPHER_CTX *ecb, const uint8_t k[16])
{
  static const uint8_t zero[16];
  m->ecb = ecb;
  if (EVP_EncryptInit_ex2(ecb, NULL, k, NULL, NULL) != 1 || !aes(ecb, zero, m->k1))
    return false;
  dbl(m->k1);
  memcpy(m->k2, m->k1, 16);
  dbl(m->k2);
  return true;
}

/* AES-CMAC of msg, with `tail` (may be NULL) XORed into its last 16 octets first (the
 * "xorend" of S2V; then len >= 16). */
static bool
cmac(const Cmac *m, const uint8_t *msg, size_t len, const uint8_t *tail, uint8_t out[16])
{
  uint8_t x[16] = {0}, last[32];
  /* the final one or two blocks are copied so that the tail can be XORed in */
  size_t rest = len == 0 ? 0 : (len % 16 == 0 ? 16 : len % 16);
  if (tail && len > rest && rest < 16)
    rest += 16;
  size_t head = len - rest;
  for (size_t i = 0; i < head; i += 16) {
    xor16(x, msg + i);
    if (!aes(m->ecb, x, x))
      return false;
  }
  memcpy(last, msg + head, rest);
  if (tail && rest >= 16)
    xor16(last + (rest - 16), tail);
  if (rest > 16) { /* one full block before the final one */
    xor16(x, last);
    if (!aes(m->ecb, x, x))
      return false;
    memmove(last, last + 16, rest - 16);
    rest -= 16;
  }
  if (rest == 16) {
    xor16(last, m->k1);
  } else {
    memset(last + rest, 0, 16 - rest);
    last[rest] = 0x80;
    xor16(last, m->k2);
  }
  xor16(x, last);
  return aes(m->ecb, x, out);
}

/* S2V over (ad, nonce, p) with empty components left out (RFC 5297 section 2.4). */
static bool
s2v(const Cmac *m, const uint8_t *ad, size_t adlen, const uint8_t *nonce, size_t nlen,
    const uint8_t *p, size_t plen, uint8_t v[16])
{
  static const uint8_t zero[16];
  uint8_t d[16], t[16];
  if (!cmac(m, zero, 16, NULL, d))
    return false;
  const uint8_t *comp[2] = {ad, nonce};
  const size_t clen[2] = {adlen, nlen};
  for (int i = 0; i < 2; i++) {
    if (clen[i] == 0)
      continue;
    if (!cmac(m, comp[i], clen[i], NULL, t))
      return false;
    dbl(d);
    xor16(d, t);
  }
  if (plen >= 16)
    return cmac(m, p, plen, d, v);
  dbl(d);
  memset(t, 0, 16);
  if (plen)
    memcpy(t, p, plen);
  t[plen] = 0x80;
  xor16(t, d);
  return cmac(m, t, 16, NULL, v);
}

static bool
ctr(SIV_Ctx *c, const uint8_t k2[16], const uint8_t v[16], const uint8_t *in, size_t len,
    uint8_t *out)
{
  uint8_t q[16];
  int outl;
  memcpy(q, v, 16);
  q[8] &= 0x7f; /* RFC 5297 section 2.6: clear bits 63 and 31 of the counter */
  q[12] &= 0x7f;
  if (len > INT_MAX || EVP_EncryptInit_ex2(c->ctr, NULL, k2, q, NULL) != 1)
    return false;
  return len == 0 || EVP_EncryptUpdate(c->ctr, out, &outl, in, (int)len) == 1;
}

bool
SIV_Seal(SIV_Ctx *c, const uint8_t key[SIV_KEY_LEN], const uint8_t *ad, size_t adlen,
         const uint8_t *nonce, size_t nlen, const uint8_t *pt, size_t ptlen, uint8_t *out)
{
  Cmac m;
  return cmac_key(&m, c->ecb, key) && s2v(&m, ad, adlen, nonce, nlen, pt, ptlen, out) &&
         ctr(c, key + 16, out, pt, ptlen, out + SIV_TAG_LEN);
}

bool
SIV_Open(SIV_Ctx *c, const uint8_t key[SIV_KEY_LEN], const uint8_t *ad, size_t adlen,
         const uint8_t *nonce, size_t nlen, const uint8_t *in, size_t inlen, uint8_t *pt)
{
  Cmac m;
  uint8_t v[16];
  if (inlen < SIV_TAG_LEN)
    return false;
  size_t plen = inlen - SIV_TAG_LEN;
  if (!ctr(c, key + 16, in, in + SIV_TAG_LEN, plen, pt) || !cmac_key(&m, c->ecb, key) ||
      !s2v(&m, ad, adlen, nonce, nlen, pt, plen, v))
    return false;
  return CRYPTO_memcmp(v, in, 16) == 0;
}
