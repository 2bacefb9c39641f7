#include "siphash.h"

static uint64_t
load_le64(const uint8_t *p)
{
  uint64_t v = 0;
  for (int i = 7; i >= 0; i--)
    v = (v << 8) | p[i];
  return v;
}

static uint64_t
rotl(uint64_t x, int b)
{
  return (x << b) | (x >> (64 - b));
}

/* One SipRound over the four state words. */
static void
sip_round(uint64_t v[4])
{
  v[0] += v[1];
  v[1] = rotl(v[1], 13);
  v[1] ^= v[0];
  v[0] = rotl(v[0], 32);
  v[2] += v[3];
  v[3] = rotl(v[3], 16);
  v[3] ^= v[2];
  v[0] += v[3];
  v[3] = rotl(v[3], 21);
  v[3] ^= v[0];
  v[2] += v[1];
  v[1] = rotl(v[1], 17);
  v[1] ^= v[2];
  v[2] = rotl(v[2], 32);
}

static void
compress(uint64_t v[4], uint64_t m)
{
  v[3] ^= m;
  sip_round(v);
  sip_round(v);
  v[0] ^= m;
}

void
SIP_SetKey(SIP_Key *key, const uint8_t bytes[16])
{
  key->k0 = load_le64(bytes);
  key->k1 = load_le64(bytes + 8);
}

uint64_t
SIP_Hash24(const SIP_Key *key, const void *data, size_t len)
{
  const uint8_t *p = data;
  uint64_t v[4] = {key->k0 ^ 0x736f6d6570736575ULL, key->k1 ^ 0x646f72616e646f6dULL,
                   key->k0 ^ 0x6c7967656e657261ULL, key->k1 ^ 0x7465646279746573ULL};
  size_t whole = len & ~(size_t)7;

  for (size_t i = 0; i < whole; i += 8)
    compress(v, load_le64(p + i));

  /* Last block: the remaining bytes, zero padded, with len mod 256 in the top byte. */
  uint64_t last = (uint64_t)(len & 0xff) << 56;
  for (size_t i = 0; i < (len & 7); i++)
    last |= (uint64_t)p[whole + i] << (8 * i);
  compress(v, last);

  v[2] ^= 0xff;
  for (int i = 0; i < 4; i++)
    sip_round(v);
  return v[0] ^ v[1] ^ v[2] ^ v[3];
}
