/* ctlreq: one mode 6 request being answered, as the two halves of the control module share
 * it: control.c (dispatch, authentication, the amplification bound, variables, nonces,
 * reslist, :config) and ctlmru.c (the MRU list). Internal to those two files; other
 * modules use control.h. */
#ifndef NTPG_CTLREQ_H
#define NTPG_CTLREQ_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "control.h"

#define CTL_MAX_TOKEN 127 /* longest name or value we look at */

typedef struct {
  const CTL_Ctx *ctx;
  const CTW_Header *h;
  const NetAddr *src;
  uint32_t rflags;
  const NTT_Now *now;
  NTT_Stamp now_ts; /* now->real as an NTP timestamp */
  CTL_Output *out;
  CTW_Reply reply;
  bool authenticated; /* MAC verified with a trusted key */
  bool control;       /* ... and that key is the control key */
  bool unbounded;     /* exempt from the amplification bound */
  bool have_mon_stats;
  MON_Stats mon_stats;
} CTL_Req;

/* Replace the reply with a 12-octet error err; returns why. */
CTL_Reason CTL_SendError(CTL_Req *q, uint8_t err, CTL_Reason why);
/* Start the reply's text (at most max_frags datagrams) with this status word. */
void CTL_Start(CTL_Req *q, CTW_Writer *w, size_t max_frags, uint16_t status);
/* Turn the text into the reply's datagrams; returns why. */
CTL_Reason CTL_Finish(CTL_Req *q, CTW_Writer *w, CTL_Reason why);
/* The NTP time of a monotonic reading, through the request's (real, monotonic) pair. */
NTT_Stamp CTL_StampOfMono(const CTL_Req *q, int64_t mono_ns);
/* Eight hex digits (either case) at s. */
bool CTL_ParseHex32(const char *s, uint32_t *v);

/* Nonces (control.c). A nonce is CTL_NONCE_LEN hex digits: the NTP time it was made, then
 * 32 bits of SipHash-2-4 keyed with the secret over that time, the address and port it
 * was made for and, in a walk nonce (a page of the MRU list that did not end it), the
 * walk's slot and generation, which follow as 10 more hex digits. */
#define CTL_NONCE_LEN 24
#define CTL_WALK_NONCE_LEN (CTL_NONCE_LEN + 2 + 8)
/* buf needs CTL_WALK_NONCE_LEN + 1 octets. */
void CTL_MakeWalkNonce(const uint8_t secret[16], const NetAddr *src, NTT_Stamp ts,
                       const MON_WalkId *walk, char *buf);
/* Check a nonce of either form; *walk gets the walk it names (gen 0: none). */
bool CTL_CheckWalkNonce(const uint8_t secret[16], const NetAddr *src, const char *nonce,
                        size_t n, NTT_Stamp now, MON_WalkId *walk);

#endif
