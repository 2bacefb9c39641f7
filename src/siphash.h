/* siphash: SipHash-2-4 (Aumasson and Bernstein, 2012), a keyed 64-bit PRF for hash tables
 * whose keys an attacker chooses (the monitor table hashes client addresses with it, so a
 * flood of crafted source addresses cannot be aimed at one hash chain).
 * Pure: no allocation, no globals. Output is the 64-bit value whose little-endian bytes are
 * the reference implementation's output bytes. */
#ifndef NTPG_SIPHASH_H
#define NTPG_SIPHASH_H

#include <stddef.h>
#include <stdint.h>

typedef struct {
  uint64_t k0, k1; /* the 128-bit key as two little-endian words */
} SIP_Key;

/* Key from 16 bytes, in the byte order of the reference code (k0 = bytes 0..7 LE). */
void SIP_SetKey(SIP_Key *key, const uint8_t bytes[16]);

/* SipHash-2-4 of len bytes at data. */
uint64_t SIP_Hash24(const SIP_Key *key, const void *data, size_t len);

#endif
