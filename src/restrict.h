/* restrict: the address/mask restriction list of ntp_acc(5) and the match that finds the
 * flags for a packet's source. The list is built once from configuration (or a runtime
 * change) and is immutable afterwards, so matching needs no lock and no allocation. */
#ifndef NTPG_RESTRICT_H
#define NTPG_RESTRICT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "netaddr.h"

/* Restriction flags (what an entry does to matching packets). */
enum {
  RST_IGNORE = 1u << 0,       /* drop everything, modes 6/7 included; no monitor slot */
  RST_NOSERVE = 1u << 1,      /* drop everything except modes 6/7 (DENY KoD with kod) */
  RST_NOTRUST = 1u << 2,      /* serve only authenticated requests */
  RST_VERSION = 1u << 3,      /* drop packets whose version is not ours */
  RST_NOPEER = 1u << 4,       /* never mobilize an association unauthenticated */
  RST_NOEPEER = 1u << 5,      /* never mobilize an ephemeral peer association */
  RST_LIMITED = 1u << 6,      /* enforce the discard limits */
  RST_NOQUERY = 1u << 7,      /* drop modes 6 and 7 */
  RST_NOMODIFY = 1u << 8,     /* refuse modifying mode 6 requests */
  RST_NOTRAP = 1u << 9,       /* refuse trap requests */
  RST_LOWPRIOTRAP = 1u << 10, /* traps set by matching hosts are low priority */
  RST_KOD = 1u << 11,         /* send Kiss-o'-Death where a violation allows one */
  RST_MSSNTP = 1u << 12,      /* accepted for compatibility; no effect here */
  RST_FLAKE = 1u << 13,       /* drop 10% of time packets (testing) */
  RST_NOMRULIST = 1u << 14,   /* refuse the mode 6 MRU list */
  RST_FUZZ = 1u << 15,        /* "serverresponse fuzz": blur the reference time */
};

/* Match modifiers (how an entry matches, not what it does). */
enum {
  RST_M_NTPPORT = 1u << 0,   /* only packets from source port 123 */
  RST_M_INTERFACE = 1u << 1, /* a local-address self-block entry */
  RST_M_SOURCE = 1u << 2,    /* added for an association's peer by `restrict source` */
};

/* One restrict entry: what the configuration (or the caller) hands to RST_Create, and what
 * RST_Get hands back. addr and mask have the same family; the mask need not be contiguous
 * (ntpd accepts any `mask`), though only contiguous masks take the fast path. Bits of addr
 * outside the mask and the port fields are ignored (RST_Get shows them cleared). */
typedef struct {
  NetAddr addr;
  NetAddr mask;
  uint32_t flags;  /* RST_IGNORE ... RST_FUZZ */
  uint32_t mflags; /* RST_M_* */
  int ippeerlimit; /* associations one source IP may mobilize; -1 = unlimited */
} RST_Entry;

/* An immutable restrict list (both families). Opaque. */
typedef struct RST_List RST_List;

/* RST_MatchIndex result when no entry applies (multicast or unspecified source). */
#define RST_NO_ENTRY ((size_t)-1)

/* Build a list from n entries (e may be NULL when n is 0). The list always holds a default
 * entry for each family (0.0.0.0/0 and ::/0, no flags, no match flags, ippeerlimit -1); a
 * given entry with that address, mask and no match flags sets the default's flags.
 * Entries with the same family, masked address, mask and mflags are merged as ntpd does:
 * flags are ORed, the last ippeerlimit wins. An IPv6 entry inside ::ffff:0:0/96 whose mask
 * covers those 96 bits becomes the equivalent IPv4 entry, since IPv4-mapped sources are
 * matched as IPv4 (see RST_Match).
 * Interface self-block entries and `restrict source` entries are ordinary entries the caller
 * adds: e.g. {local address, host mask, RST_IGNORE, RST_M_INTERFACE | RST_M_NTPPORT, -1}.
 * Returns NULL with a message in err (if errlen > 0) on an entry with an unknown family,
 * a mask of another family or unknown mflags bits, or when memory runs out. The entries
 * are copied; e is not referenced afterwards. */
RST_List *RST_Create(const RST_Entry *e, size_t n, char *err, size_t errlen);
void RST_Destroy(RST_List *l);
/* A list with the same entries as l (for an owner on another thread that keeps its own
 * copy); NULL when memory runs out. */
RST_List *RST_Copy(const RST_List *l);

/* Restriction flags for a packet from src (src->port is its source port). Semantics of
 * ntp_acc(5): among the entries whose (src & mask) == (addr & mask), and which are not
 * `ntpport` entries unless the source port is 123, the one last in (address ascending, mask
 * ascending) order wins; so for prefix masks the most specific prefix wins. Ties on the same
 * address and mask: an RST_M_NTPPORT entry is more specific than one without; then
 * interface entries win over ordinary ones, which win over `restrict source` ones (the
 * documented rule; ntpd 4.2.8 itself orders such ties by the raw mflags value).
 * IPv4-mapped IPv6 sources are matched as IPv4. A multicast or unspecified-family source
 * gets RST_IGNORE (ntpd's restrictions() does the same).
 * Pure and lock-free: safe to call from any number of threads on a list not being destroyed.
 * Cost: one binary search over the list's address intervals (O(log n)), plus a scan of
 * entries with non-contiguous masks, if any. */
uint32_t RST_Match(const RST_List *l, const NetAddr *src);
/* The same match, as the index (in list order, see RST_Get) of the winning entry, e.g. for
 * hit counters kept by the caller. RST_NO_ENTRY where RST_Match gives RST_IGNORE without
 * an entry (multicast or unspecified source). */
size_t RST_MatchIndex(const RST_List *l, const NetAddr *src);

/* Entries in list order: all IPv4 entries, then all IPv6 entries; within a family in the
 * order ntpd keeps and `reslist` shows them (descending address, then descending mask,
 * then tie order), so the first entry that matches a source is the one that wins and the
 * family's default normally comes last. RST_Get gives NULL for i >= RST_Count; pointers stay
 * valid until RST_Destroy. */
size_t RST_Count(const RST_List *l);
const RST_Entry *RST_Get(const RST_List *l, size_t i);
/* Bytes allocated for the list (what a reload swaps in). */
size_t RST_MemoryBytes(const RST_List *l);

#endif
