/* ntsef: the NTS extension fields of NTP packets (RFC 8915 section 5): Unique Identifier
 * (0x0104), NTS Cookie (0x0204), Cookie Placeholder (0x0304) and NTS Authenticator and
 * Encrypted Extension Fields (0x0404). Parses a request and checks it, builds the reply (the
 * identifier echoed, fresh cookies encrypted under the S2C key, which NEF_Seal completes
 * once the transmit timestamp is written) or the NTSN Kiss-o'-Death's fields; also builds a
 * request and opens a reply, for tests and test clients. Pure: the caller passes the cookie
 * master keys, its thread's AES-SIV context and the random octets (nonces); nothing is
 * allocated, nothing is logged (no cookie or key ever leaves these functions but as the
 * sealed octets the protocol sends). */
#ifndef NTPG_NTSEF_H
#define NTPG_NTSEF_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "ntscookie.h"
#include "siv.h"

#define NEF_UNIQUE_ID 0x0104
#define NEF_COOKIE 0x0204
#define NEF_PLACEHOLDER 0x0304
#define NEF_AUTHENTICATOR 0x0404

#define NEF_MIN_UID 32    /* octets of a Unique Identifier's body, at least (5.3) */
#define NEF_NONCE_LEN 16  /* the nonce we send; a request's nonce and padding span this */
#define NEF_MAX_COOKIES 8 /* fresh cookies in one reply, at most */
#define NEF_MIN_EF 16     /* an extension field's length, at least (RFC 7822 section 7.5) */
#define NEF_COOKIE_EF (4 + NCK_COOKIE_LEN) /* one of our cookies as an extension field */

typedef enum {
  NEF_NOT_NTS = 0, /* no NTS extension field: a plain request */
  NEF_OK,          /* an NTS request, well formed: NEF_Open next */
  NEF_MALFORMED,   /* NTS fields that break the rules: dropped */
} NEF_Status;

/* Where the NTS fields of a request are (offsets from the start of the datagram). */
typedef struct {
  uint16_t uid_off, uid_len;       /* the whole Unique Identifier field (echoed) */
  uint16_t cookie_off, cookie_len; /* the cookie: the NTS Cookie field's body */
  uint16_t auth_off; /* the authenticator field: also the associated data's length */
  uint16_t nonce_off, nonce_len;
  uint16_t ct_off, ct_len; /* ciphertext: tag and encrypted fields */
  uint8_t placeholders;    /* Cookie Placeholder fields outside the encryption */
} NEF_Request;

/* Parse the fields after the 48-octet header (len >= 48). NEF_OK needs exactly one Unique
 * Identifier (body >= NEF_MIN_UID), exactly one NTS Cookie, placeholders of the cookie's
 * length, and exactly one authenticator, which is the last field (nothing follows it, not
 * even a MAC) with a nonce and ciphertext that fit its body, a ciphertext of at least a tag,
 * and the nonce with its padding at least NEF_NONCE_LEN octets (RFC 8915 section 5.6).
 * Any NTS field present and a rule broken: NEF_MALFORMED. */
NEF_Status NEF_ParseRequest(const uint8_t *pkt, size_t len, NEF_Request *r);

typedef enum {
  NEF_OPEN_OK = 0,
  NEF_OPEN_COOKIE,    /* the cookie is not ours, its key is gone, or it was tampered with */
  NEF_OPEN_AUTH,      /* the authenticator does not verify under the cookie's C2S key */
  NEF_OPEN_MALFORMED, /* the encrypted fields inside break the rules */
} NEF_OpenStatus;

/* What an opened request gives the reply. Holds keys: clear it when done. */
typedef struct {
  uint8_t c2s[SIV_KEY_LEN], s2c[SIV_KEY_LEN];
  unsigned want; /* cookies asked for: the cookie and every placeholder, at most 8 */
} NEF_Session;

/* Open the cookie with the master keys and verify the authenticator (associated data: the
 * datagram up to the authenticator; RFC 8915 section 5.6); count the encrypted placeholders.
 * pkt is the datagram r was parsed from. */
NEF_OpenStatus NEF_Open(const uint8_t *pkt, const NEF_Request *r, const NCK_Keys *k,
                        SIV_Ctx *siv, NEF_Session *s);

/* Where NEF_BuildReply left the authenticator for NEF_Seal. Holds the S2C key. */
typedef struct {
  uint16_t auth_off; /* associated data: the reply up to here */
  uint16_t nonce_off;
  uint16_t ct_off; /* the tag goes here, the plaintext follows it */
  uint16_t pt_len;
  uint8_t s2c[SIV_KEY_LEN];
} NEF_Pending;

/* After the reply's 48-octet header in out: the request's Unique Identifier, then an
 * authenticator holding as many fresh cookies (sealed under the newest master key with
 * s's keys) as were asked for, as fit in cap octets (the request's length: a reply is never
 * larger than its request) and as the random octets allow (NEF_NONCE_LEN for the
 * authenticator's nonce and one per cookie). The cookies stay in clear until NEF_Seal.
 * Returns the reply's length (0 if out cannot hold even no cookie, or sealing a cookie
 * failed); *used: random octets taken from the start of rnd. */
size_t NEF_BuildReply(uint8_t *out, size_t cap, const uint8_t *pkt, const NEF_Request *r,
                      const NEF_Session *s, const NCK_Keys *k, SIV_Ctx *siv,
                      const uint8_t *rnd, size_t rndlen, NEF_Pending *p, size_t *used);
/* Encrypt the cookies and write the tag, over the reply as it is now (header stamped). */
bool NEF_Seal(uint8_t *out, const NEF_Pending *p, SIV_Ctx *siv);

/* The NTSN KoD's field: the request's Unique Identifier after the 48-octet header in out.
 * Returns the KoD's length (never more than the request's). */
size_t NEF_BuildNak(uint8_t *out, const uint8_t *pkt, const NEF_Request *r);

/* ---- the client's side, for tests and test clients ---- */

/* After the 48-octet header already in out: a Unique Identifier (uid, uid_len octets), the
 * cookie, `placeholders` Cookie Placeholders, and an authenticator over all of it under c2s
 * with the given nonce (NEF_NONCE_LEN octets) and no encrypted fields. Returns the length,
 * 0 if cap is too small or sealing failed. */
size_t NEF_BuildRequest(uint8_t *out, size_t cap, const uint8_t *uid, size_t uid_len,
                        const uint8_t *cookie, size_t cookie_len, unsigned placeholders,
                        const uint8_t c2s[SIV_KEY_LEN], const uint8_t nonce[NEF_NONCE_LEN],
                        SIV_Ctx *siv);

typedef enum {
  NEF_REPLY_OK = 0,
  NEF_REPLY_NAK,      /* an NTSN KoD echoing our identifier */
  NEF_REPLY_BAD_UID,  /* no identifier, or not ours */
  NEF_REPLY_BAD_AUTH, /* no authenticator, or it does not verify under s2c */
  NEF_REPLY_MALFORMED,
} NEF_ReplyStatus;

/* Check a reply against our identifier and S2C key; on NEF_REPLY_OK the cookies it brought
 * (at most max, each cookie_cap octets at most) are copied to cookies[i*cookie_cap] with
 * their lengths in lens[i], and *n says how many. */
NEF_ReplyStatus NEF_OpenReply(const uint8_t *pkt, size_t len, const uint8_t *uid,
                              size_t uid_len, const uint8_t s2c[SIV_KEY_LEN], SIV_Ctx *siv,
                              uint8_t *cookies, size_t cookie_cap, size_t *lens, size_t max,
                              size_t *n);

#endif
