/* ntscookie: NTS cookies (RFC 8915 section 6) -- the server's master keys, their rotation,
 * their file, and sealing and opening a cookie. A cookie is opaque to the client:
 *   master key id (4) | nonce (16) | AES-SIV-CMAC-256 tag (16) | C2S key (32) | S2C key (32)
 * with the two keys sealed under the master key (the key id is the associated data, the
 * nonce the nonce): 100 octets. The newest master key seals; every key still held opens,
 * so a key stays valid for (NCK_MAX_KEYS - 1) rotations after the next one replaced it.
 * The key file (`nts cookie FILE`) holds the keys as text, so servers of one service that
 * share the file accept each other's cookies. Pure: the caller passes the time and the
 * randomness; key material is never formatted anywhere but into the file's text.
 * NCK_Store, the one part with a lock, hands the keys from the NTS-KE thread (which rotates
 * them) to the serving threads (which open cookies with them). */
#ifndef NTPG_NTSCOOKIE_H
#define NTPG_NTSCOOKIE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "siv.h"

#define NCK_MAX_KEYS 3 /* the current key and two older ones */
#define NCK_NONCE_LEN 16
#define NCK_COOKIE_LEN (4 + NCK_NONCE_LEN + SIV_TAG_LEN + 2 * SIV_KEY_LEN)
#define NCK_ROTATE_INTERVAL 86400 /* s: a new master key each day */

typedef struct {
  uint32_t id;
  uint8_t key[SIV_KEY_LEN];
  int64_t created; /* Unix time, s */
} NCK_MasterKey;

typedef struct {
  NCK_MasterKey keys[NCK_MAX_KEYS]; /* [0] is the newest: it seals */
  size_t n;
} NCK_Keys;

typedef enum {
  NCK_OK = 0,
  NCK_BAD_LENGTH,    /* not a cookie of ours */
  NCK_UNKNOWN_KEY,   /* sealed under a key we no longer (or never) held */
  NCK_UNDECRYPTABLE, /* tampered with, or forged */
} NCK_Status;

/* True if the newest key is at least `interval` s old (or there is none). */
bool NCK_NeedsRotation(const NCK_Keys *k, int64_t now, int64_t interval);
/* A new newest key (its id is made different from every held id); the oldest is dropped
 * when NCK_MAX_KEYS are held. */
void NCK_Rotate(NCK_Keys *k, int64_t now, uint32_t id, const uint8_t key[SIV_KEY_LEN]);

/* Seal the two keys into out (NCK_COOKIE_LEN octets) under the newest key. */
bool NCK_Seal(const NCK_Keys *k, SIV_Ctx *siv, const uint8_t c2s[SIV_KEY_LEN],
              const uint8_t s2c[SIV_KEY_LEN], const uint8_t nonce[NCK_NONCE_LEN],
              uint8_t out[NCK_COOKIE_LEN]);
/* Open a cookie of len octets: NCK_OK with the two keys, or why not. */
NCK_Status NCK_Open(const NCK_Keys *k, SIV_Ctx *siv, const uint8_t *cookie, size_t len,
                    uint8_t c2s[SIV_KEY_LEN], uint8_t s2c[SIV_KEY_LEN]);

/* The key file's text: one line per key, newest first, "ID HEXKEY CREATED". The octets
 * written (without the NUL), 0 if size is too small. */
size_t NCK_Format(const NCK_Keys *k, char *buf, size_t size);
/* Parse that text; false with a reason (and the line) if any line is bad. Never echoes key
 * material in the reason. */
bool NCK_Parse(const char *text, NCK_Keys *k, int *line, const char **why);

/* The keys in force, shared between one writer (the NTS-KE thread) and the serving threads.
 * The writer publishes a whole key set under a mutex and then bumps a generation counter
 * (release). Each serving thread keeps its own copy: NCK_StoreRefresh compares the counter
 * (one acquire load, a line written once a day) and copies only when it moved, taking the
 * mutex with trylock: a serving thread never waits; if the writer holds it, the thread keeps
 * its copy and tries again at its next batch. A copy is used only by its thread, so nothing
 * is freed or overwritten under a reader (tests/unit/test_ntsef.c runs it under TSan). */
typedef struct NCK_Store NCK_Store;

NCK_Store *NCK_StoreCreate(void);
void NCK_StoreDestroy(NCK_Store *s);
/* Publish k (copied). */
void NCK_StorePublish(NCK_Store *s, const NCK_Keys *k);
/* Bring *copy up to date if a newer set was published since *gen (0 before the first
 * call); true if it copied. Never blocks. */
bool NCK_StoreRefresh(NCK_Store *s, NCK_Keys *copy, uint64_t *gen);

#endif
