/* ctlreq: one mode 6 request being answered, as the two halves of the control module share
 * it: control.c (dispatch, authentication, the amplification bound, variables, reslist,
 * :config) and ctlmru.c (nonces and the MRU list). Internal to those two files; other
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

#endif
