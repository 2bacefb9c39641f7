/* ctlmru: the MRU list of mode 6 as ntpq's `mrulist` asks for it (READ_MRU), the half of
 * the control module that reads the monitor table (control.h has the contract
 * for callers; this header is internal to control.c and ctlmru.c).
 *
 * Nonces (control.c): REQ_NONCE hands a source a nonce (CTL_MakeNonce) that READ_MRU must
 * echo within CTL_NONCE_LIFETIME s from the same address and port: no list goes to an
 * address that does not receive there.
 *
 * Paging: the list is walked in LRU order (least recently seen first) with MON_Walk, so one
 * request reads at most MON_WALK_BUDGET records of the monitor table, whatever the filter
 * (mincount, resall, resany, maxlstint, minlstint) or recent=; the serving threads keep
 * serving meanwhile (the table's shard locks are each held for a bounded number of
 * records). A reply that does not end the list carries no `now=`; its nonce names the walk
 * (slot and generation, under the nonce's MAC), and ntpq echoes the last nonce it got in
 * its next request, so the next page goes on where this one stopped, even when no entry
 * matched the filter (ntpq's addr.N/last.N priors name only entries it was given). A walk
 * id is good for one request: a repeated request (ntpq retrying after a lost reply), a
 * walk ended by newer ones, or a plain REQ_NONCE nonce (ntpq fetches a new one every 16 s)
 * start a new walk after the newest prior entry that is unchanged (ntpd's rule: the prior
 * itself and later ones are listed, ntpq drops the duplicates), or from the start without
 * priors; priors of which none is unchanged give CTW_ERR_UNKNOWNVAR (ntpq starts over).
 * A record seen again while paging is listed again at the end, as with ntpd. */
#ifndef NTPG_CTLMRU_H
#define NTPG_CTLMRU_H

#include "ctlreq.h"

/* READ_MRU */
CTL_Reason CTL_ReadMru(CTL_Req *q);
/* Seconds since the least recently seen record was last seen (0 for none); O(shards). */
uint64_t CTL_OldestAge(const CTL_Req *q);

#endif
