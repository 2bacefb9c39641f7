/* rng: a small fast non-cryptographic generator (xoshiro256**) for sampling decisions on the
 * packet path (leak, KoD sampling, filling timestamp bits below our precision). Its state is
 * owned by whoever calls it (one per thread, one per table); seeds come from RNG_Seed, which
 * reads the OS CSPRNG. Keys, nonces and salts never come from here. */
#ifndef NTPG_RNG_H
#define NTPG_RNG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct {
  uint64_t s[4];
} RNG_State;

/* Initialise from a 64-bit seed (deterministic: tests pass fixed seeds). */
void RNG_Init(RNG_State *r, uint64_t seed);
uint64_t RNG_Next(RNG_State *r);
/* Fill buf from the kernel's CSPRNG (getrandom); false only if the kernel refuses. */
bool RNG_Secure(void *buf, size_t len);
/* A seed from the CSPRNG (falls back to time and pid mixing only if getrandom fails). */
uint64_t RNG_Seed(void);

#endif
