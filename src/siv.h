/* siv: AEAD_AES_SIV_CMAC_256 (RFC 5297; the AEAD of RFC 8915): S2V and CTR written here
 * from the RFC over OpenSSL's AES-128 block cipher, with a 32-octet key. The output of a seal
 * is the 16-octet synthetic IV (the tag) followed by the ciphertext, as RFC 5297 and RFC 8915
 * lay it out; the nonce is the last associated-data component. A SIV_Ctx is one thread's:
 * created once, reused for every seal and open (nothing is allocated per call:
 * tests/unit/test_siv.c counts). Pure apart from libcrypto. */
#ifndef NTPG_SIV_H
#define NTPG_SIV_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define SIV_KEY_LEN 32
#define SIV_TAG_LEN 16

typedef struct SIV_Ctx SIV_Ctx;

/* NULL if OpenSSL has no AES-SIV or memory is short. */
SIV_Ctx *SIV_Create(void);
void SIV_Destroy(SIV_Ctx *c);

/* Seal pt (ptlen octets) under key with associated data ad and nonce (either may be empty:
 * length 0 leaves that component out) into out: SIV_TAG_LEN + ptlen octets. False on an
 * OpenSSL failure. out may not overlap pt, except that pt may be out + SIV_TAG_LEN itself
 * (sealing in place: the tag is written in front of the plaintext it then encrypts). */
bool SIV_Seal(SIV_Ctx *c, const uint8_t key[SIV_KEY_LEN], const uint8_t *ad, size_t adlen,
              const uint8_t *nonce, size_t nlen, const uint8_t *pt, size_t ptlen,
              uint8_t *out);

/* Open in (SIV_TAG_LEN + ptlen octets, inlen >= SIV_TAG_LEN) into pt (inlen - SIV_TAG_LEN
 * octets): true only if it authenticates (pt is then the plaintext; on false its contents
 * are undefined and must not be used). */
bool SIV_Open(SIV_Ctx *c, const uint8_t key[SIV_KEY_LEN], const uint8_t *ad, size_t adlen,
              const uint8_t *nonce, size_t nlen, const uint8_t *in, size_t inlen, uint8_t *pt);

#endif
