/* ntsassoc: the NTS state of one client association (RFC 8915 section 5), as values -- the
 * session keys and the cookie jar from the last NTS-KE handshake, the request's NTS fields
 * (a fresh Unique Identifier, one cookie used once, placeholders so that the jar refills to
 * eight, the authenticator under the C2S key), the reply's check (our identifier, the
 * authenticator under the S2C key, the fresh cookies taken into the jar), the NTSN KoD, and
 * when to run NTS-KE again: when the jar is empty, or when an NTSN was not followed by an
 * authenticated reply by the next poll (section 5.7), with an exponential back-off after
 * failures (NTA_BACKOFF_MIN doubled up to NTA_BACKOFF_MAX). Pure: time, random octets and
 * the AES-SIV context are handed in; nothing is allocated, logged or sent. An NTS
 * association sends nothing without a cookie, so it never falls back to plain NTP.
 *
 * The client's edge drives it: NTA_KeDue -> run NTS-KE (off the event loop) -> NTA_KeDone or
 * NTA_KeFailed. Before each request NTA_Seal appends the NTS fields to the 48-octet header
 * ASC_BuildRequest wrote (NTA_TX_NO_COOKIE: send nothing). Each datagram on the socket goes
 * to NTA_Open first; only NTA_RX_AUTH replies may go on to the association's tests
 * (ASC_ProcessReply with authentic true), so an unauthenticated KoD has no effect. */
#ifndef NTPG_NTSASSOC_H
#define NTPG_NTSASSOC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "ntske.h"
#include "siv.h"

#define NTA_JAR NKE_COOKIES           /* cookies held at most (8) */
#define NTA_UID_LEN 32                /* octets of our Unique Identifiers */
#define NTA_RANDOM (NTA_UID_LEN + 16) /* random octets NTA_Seal takes: identifier, nonce */
#define NTA_BACKOFF_MIN 16            /* s before the first retry after a failure */
#define NTA_BACKOFF_MAX 3600          /* s: the doubling stops here */

typedef struct {
  /* session */
  bool have_keys;
  uint8_t c2s[SIV_KEY_LEN], s2c[SIV_KEY_LEN];
  uint8_t jar[NTA_JAR][NKE_MAX_COOKIE];
  uint16_t jar_len[NTA_JAR];
  unsigned n; /* cookies in the jar; the newest is used first */
  /* the outstanding request */
  bool pending;
  uint8_t uid[NTA_UID_LEN];
  /* NTS-KE */
  bool running;        /* a handshake is under way */
  bool rekey;          /* a handshake is wanted (no keys yet, jar empty, unanswered NTSN) */
  bool nak;            /* an NTSN came and no authenticated reply since */
  bool authed;         /* an authenticated reply came since the last handshake */
  unsigned failures;   /* failed handshakes, and re-keyings without an authenticated reply */
  int64_t ke_due_ns;   /* monotonic: not before this */
  unsigned handshakes; /* completed: 1 after the first */
} NTA_State;

/* A state that wants its first handshake now. */
void NTA_Init(NTA_State *s);
/* Wipe the keys and cookies. */
void NTA_Clear(NTA_State *s);

/* True when a handshake should start now. */
bool NTA_KeDue(const NTA_State *s, int64_t now_ns);
void NTA_KeStarted(NTA_State *s);
/* The handshake failed: the next is due after the back-off; returns it in s. */
double NTA_KeFailed(NTA_State *s, int64_t now_ns);
/* The handshake succeeded: the old keys and cookies are replaced by these (at most NTA_JAR
 * cookies of 1..NKE_MAX_COOKIE octets; more are ignored). False (state unchanged but for the
 * handshake ending as failed) if there is no usable cookie. */
bool NTA_KeDone(NTA_State *s, const uint8_t c2s[SIV_KEY_LEN], const uint8_t s2c[SIV_KEY_LEN],
                const uint8_t *const *cookies, const uint16_t *lens, size_t n, int64_t now_ns);
/* The back-off after `failures` failures in a row (0: none), s. */
double NTA_Backoff(unsigned failures);

typedef enum {
  NTA_TX_OK = 0,    /* *len octets to send */
  NTA_TX_NO_COOKIE, /* the jar is empty: send nothing; a handshake is now wanted */
  NTA_TX_FAIL,      /* no keys, too small a buffer, or sealing failed: send nothing */
} NTA_TxStatus;

/* After the 48-octet header in pkt (cap octets): the identifier (rnd[0..32)), the newest
 * cookie (taken out of the jar: each is used once), placeholders to refill the jar to
 * NTA_JAR (fewer if the datagram would exceed PKT_MAX_LEN), the authenticator with nonce
 * rnd[32..48). Also starts the re-keying an unanswered NTSN asks for (section 5.7: the
 * request still goes out with an old cookie meanwhile). */
NTA_TxStatus NTA_Seal(NTA_State *s, uint8_t *pkt, size_t cap, const uint8_t rnd[NTA_RANDOM],
                      SIV_Ctx *siv, int64_t now_ns, size_t *len);

typedef enum {
  NTA_RX_AUTH = 0,    /* authenticated reply to our request: *fresh cookies into the jar */
  NTA_RX_NAK,         /* NTSN KoD with our identifier: re-key unless the next poll is good */
  NTA_RX_NOT_PENDING, /* no request outstanding (late, duplicated or replayed) */
  NTA_RX_UNAUTH,      /* not authenticated (other identifier, bad authenticator, none) */
  NTA_RX_UNAUTH_KOD,  /* as NTA_RX_UNAUTH, and a KoD (RATE, DENY, RSTR...): ignored */
  NTA_RX_COUNT
} NTA_RxStatus;

/* Check a datagram from the association's socket (len octets). Only NTA_RX_AUTH and
 * NTA_RX_NAK change the state: the request is answered (not pending any more). */
NTA_RxStatus NTA_Open(NTA_State *s, const uint8_t *pkt, size_t len, SIV_Ctx *siv,
                      int64_t now_ns, unsigned *fresh);
const char *NTA_RxName(NTA_RxStatus st);

#endif
