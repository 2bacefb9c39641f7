/* keys: symmetric-key authentication. It reads an ntpd-format keys file (`keys FILE`) into
 * a KEY_Table, appends MACs to outgoing packets (KEY_Sign) and checks the MAC of incoming
 * ones (KEY_Verify): RFC 5905 digests H(key || packet) and RFC 8573 AES-128-CMAC, computed
 * with OpenSSL libcrypto. Pure: no logging, no globals. KEY_LoadFile's read of the file is
 * the only I/O, and it only hands the text to KEY_ParseText.
 *
 * Secrets stay inside the table. No message, KEY_Info field or name contains key material,
 * and none quotes a token of the keys file, since a malformed line may have its key in any
 * column. Memory that held a key is cleared before it is freed.
 *
 * Threads: KEY_SetTrusted changes a table; call it before the table is shared. After that
 * KEY_Sign, KEY_Verify and the accessors only read the table, and any number of threads may
 * call them at once. No MAC allocates: digests run on the stack, and each thread keeps a
 * few keyed CMAC contexts of its own (created at its first CMAC, freed when it exits). The
 * digest and CMAC algorithms are fetched once per table, not per packet.
 *
 * Reload: build a new table, KEY_SetTrusted it and swap it in only when KEY_LoadFile
 * returned non-NULL. Any error in the file gives NULL, so the old table stays in force. */
#ifndef NTPG_KEYS_H
#define NTPG_KEYS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "config.h"
#include "netaddr.h"
#include "packet.h"

#define KEY_MAX_ID 65535  /* ids above were ntpd's Autokey session keys */
#define KEY_MAX_ASCII 20  /* key text up to this long is ASCII, longer is hex */
#define KEY_MAX_SECRET 32 /* octets of a key after hex decoding (64 hex digits) */
#define KEY_MAX_DIGEST                                                                        \
  64 /* digest octets in a MAC: 20 by default (RFC 7822), the whole                           \
        SHA-2 digest when a client sends that (ntpdig, chrony) */
#define KEY_MAX_MAC (4 + KEY_MAX_DIGEST)
#define KEY_CMAC_KEY_LEN 16 /* AES-128 */
#define KEY_MAX_ADDRS 64    /* entries in one key's address list */
#define KEY_MAX_ERRORS 50   /* a file with more errors stops being read (a log file?) */
#define KEY_MAX_FILE_SIZE (8 * 1024 * 1024) /* 65535 keys of 64 hex digits fit */

typedef enum {
  KEY_TYPE_MD5 = 1, /* "MD5" or ntpd's "M"; digest 16 octets */
  KEY_TYPE_SHA1,    /* "SHA1" or "SHA-1"; 20 octets */
  KEY_TYPE_SHA224,  /* the SHA-2 digests are cut to their first 20 octets, */
  KEY_TYPE_SHA256,  /* as ntpd, NTPsec and chrony do for NTPv4 */
  KEY_TYPE_SHA384,
  KEY_TYPE_SHA512,
  KEY_TYPE_AES128CMAC, /* "AES128CMAC" or "CMAC" (ntpd), "AES128" (chrony), "AES" or
                          "AES-128" (NTPsec); 16 octets */
} KEY_Type;

/* What KEY_Verify found. In the order the checks run, cheapest first. */
typedef enum {
  KEY_OK = 0,           /* the MAC verifies with a trusted key that src may use */
  KEY_CRYPTO_NAK,       /* the trailer is a crypto-NAK (key id 0, no digest) */
  KEY_NO_MAC,           /* the packet carries no MAC */
  KEY_UNKNOWN_KEY,      /* the key id is not in the table (id 0 included) */
  KEY_UNTRUSTED_KEY,    /* the key is known but not trusted (`trustedkey`) */
  KEY_BAD_LENGTH,       /* the digest length does not fit the key's type, or the trailer
                           does not describe this packet */
  KEY_ADDR_NOT_ALLOWED, /* the key's address list does not include src */
  KEY_BAD_DIGEST,       /* the digest is wrong */
  KEY_CRYPTO_FAILED,    /* OpenSSL failed (out of memory): nothing could be checked */
} KEY_Verdict;

/* Errors and warnings travel as data: {file, line, text}, with line 0 for a message about
 * the whole file. Zero-initialise (or KEY_InitErrors), pass to any number of calls
 * (messages add up), then KEY_ClearErrors. */
typedef MSG_Message KEY_Message;
typedef MSG_List KEY_MessageList;
typedef MSG_Errors KEY_Errors;

static inline void
KEY_InitErrors(KEY_Errors *errs)
{
  MSG_Init(errs);
}
static inline void
KEY_ClearErrors(KEY_Errors *errs)
{
  MSG_Clear(errs);
}
/* "FILE:LINE: text" ("FILE: text" when line is 0); see MSG_Format. */
static inline size_t
KEY_FormatMessage(const KEY_Message *m, char *buf, size_t size)
{
  return MSG_Format(m, buf, size);
}

/* An immutable set of keys (after KEY_SetTrusted). Opaque. */
typedef struct KEY_Table KEY_Table;

/* Parse keys-file text. `name` labels the messages. Every problem is reported (errs may be
 * NULL), up to KEY_MAX_ERRORS. Returns the table, or NULL if there was any error or
 * memory ran out; warnings alone do not fail. Keys start untrusted. */
KEY_Table *KEY_ParseText(const char *name, const char *text, KEY_Errors *errs);
/* Read a regular file of at most KEY_MAX_FILE_SIZE octets and parse it as above. Also
 * warns when the file is readable by every user. */
KEY_Table *KEY_LoadFile(const char *path, KEY_Errors *errs);
/* Clears the key material and frees the table (NULL is fine). */
void KEY_Destroy(KEY_Table *t);

/* Mark as trusted exactly the keys whose id lies in one of the n ranges (what `trustedkey`
 * lines record; ranges may be NULL when n is 0). Every other key becomes untrusted. Returns
 * how many keys of the table are now trusted. */
size_t KEY_SetTrusted(KEY_Table *t, const CNF_KeyRange *ranges, size_t n);

typedef struct {
  uint32_t id;
  KEY_Type type;
  size_t digest_len; /* octets after the key id in this key's MAC: 16 or 20 */
  bool trusted;
  size_t n_addrs; /* entries in the address list; 0 = any source */
  int line;       /* where the key was defined */
} KEY_Info;

/* Number of keys in t (0 for NULL). */
size_t KEY_Count(const KEY_Table *t);
/* Describe key id. False if t is NULL or has no such key. */
bool KEY_GetInfo(const KEY_Table *t, uint32_t id, KEY_Info *out);

/* Append the MAC of pkt[0..len) under key id: the 4-octet key id, then the digest. pkt must
 * hold a header and any extension fields (len >= 48, a multiple of 4) in a buffer of
 * bufsize octets. Returns the new length, or 0 if t is NULL, the key is unknown, the
 * buffer is too small, the result would exceed PKT_MAX_LEN or OpenSSL failed (pkt is then
 * left as it was). Trust is not required: checking what comes in is KEY_Verify's job. */
size_t KEY_Sign(const KEY_Table *t, uint32_t id, uint8_t *pkt, size_t len, size_t bufsize);

/* Check the MAC of pkt[0..len) as described by tr (from PKT_ParseTrailer on the same
 * bytes) for a packet from src. src may be NULL when the source is not known; a key with an
 * address list then gives KEY_ADDR_NOT_ALLOWED. t may be NULL (no keys). The digest is
 * compared in constant time. Nothing is allocated that outlives the call. */
KEY_Verdict KEY_Verify(const KEY_Table *t, const uint8_t *pkt, size_t len,
                       const PKT_Trailer *tr, const NetAddr *src);

/* The same with digest_len octets of digest: the key's default (0 or its default length)
 * or, for SHA-256/384/512 keys, the whole digest (32/48/64), to answer a client that sent
 * one. */
size_t KEY_SignAs(const KEY_Table *t, uint32_t id, uint8_t *pkt, size_t len, size_t bufsize,
                  size_t digest_len);

/* The same for mode 6 (control) packets, whose MAC follows a 12-octet header and the data
 * (RFC 9327), so it may start at octet 12 rather than 48. */
#define KEY_CONTROL_HEADER_LEN 12
size_t KEY_SignControl(const KEY_Table *t, uint32_t id, uint8_t *pkt, size_t len,
                       size_t bufsize);
KEY_Verdict KEY_VerifyControl(const KEY_Table *t, const uint8_t *pkt, size_t len,
                              const PKT_Trailer *tr, const NetAddr *src);

/* Append a crypto-NAK (four zero octets) to the 48-octet header in pkt. Returns 52, or 0 if
 * len is not 48 or bufsize is below 52. */
size_t KEY_AppendCryptoNak(uint8_t *pkt, size_t len, size_t bufsize);

/* Canonical names: "MD5", ..., "AES128CMAC"; "ok", "crypto-nak", "no-mac", "unknown-key",
 * "untrusted-key", "bad-length", "addr-not-allowed", "bad-digest", "crypto-failed". */
const char *KEY_TypeName(KEY_Type type);
const char *KEY_VerdictName(KEY_Verdict v);

#endif
