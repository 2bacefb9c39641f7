/* access: turns the recorded access-control configuration (restrict / unrestrict /
 * delrestrict lines, discard, mru) into the tables the decision core reads: the restrict
 * list (restrict.h) and the monitor parameters (monitor.h). Host names are resolved here,
 * through a resolver the caller passes (the daemon's uses getaddrinfo; tests inject one), so
 * the parser stays free of DNS. Nothing is logged: problems go to a message callback. */
#ifndef NTPG_ACCESS_H
#define NTPG_ACCESS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "config.h"
#include "iface.h"
#include "monitor.h"
#include "restrict.h"
#include "shed.h"

/* Receives every problem found: line is the configuration line (0: not line-bound). */
typedef void (*ACC_MsgFn)(void *arg, bool warning, int line, const char *text);

/* Resolve name (family ADR_INET4/ADR_INET6 or ADR_NONE for both) into up to max addresses.
 * Returns the count, 0 if the name does not resolve. */
typedef size_t (*ACC_ResolveFn)(const char *name, int family, NetAddr *out, size_t max);

/* The resolver the daemon uses: getaddrinfo, numeric results only. */
size_t ACC_ResolveSystem(const char *name, int family, NetAddr *out, size_t max);

/* *source_flags when the configuration has no `restrict source` line: then associations
 * get no entries of their own and their addresses are matched like any other source
 * (ntp_acc(5): the template applies "only if" the line is present). No flag set reaches
 * this value (restrict.h uses the low 16 bits). */
#define ACC_NO_SOURCE UINT32_MAX

/* Build the restrict list: configuration lines in order (ADD ORs flags into an entry with
 * the same address, mask and match flags; DELETE removes it; CLEAR clears flags), host
 * names resolved to one host entry per address (a name that does not resolve is skipped
 * with a warning, so a DNS failure cannot block a reload), `restrict source` recorded
 * for associations (not an entry), then one `ignore interface ntpport` entry per local
 * address so we never answer our own packets. resolve may be NULL (names are skipped).
 * *source_flags gets the `restrict source` flags (0 for a bare `restrict source`), or
 * ACC_NO_SOURCE without such a line. NULL on error (reported). */
RST_List *ACC_BuildRestrict(const CNF_Config *cfg, const IFC_Address *locals, size_t nlocals,
                            ACC_ResolveFn resolve, uint32_t *source_flags, ACC_MsgFn msg,
                            void *arg);

/* `restrict source`: a copy of base in which every earlier RST_M_SOURCE entry is replaced
 * by one host entry per peer address (an association's server) with source_flags and
 * RST_M_SOURCE, so a configured or pool server gets the template's flags rather than the
 * default's (an explicit entry for the same address still wins, restrict.h). With
 * source_flags ACC_NO_SOURCE no entry is added (old ones still go): a server's address
 * then gets what `restrict default` or a matching address entry gives it, so a forged
 * upstream address gains nothing. NULL (reason in err) if memory runs out. */
RST_List *ACC_WithSources(const RST_List *base, const NetAddr *peers, size_t npeers,
                          uint32_t source_flags, char *err, size_t errlen);

/* Monitor parameters from discard and mru. ntpd 4.2.8 units: average in log2 s, minimum
 * in s. maxmem KiB becomes entries of MON_RECORD_BYTES each. False (reported) if a value is
 * outside what the monitor accepts. */
bool ACC_MonitorParams(const CNF_Config *cfg, MON_Params *out, ACC_MsgFn msg, void *arg);
/* Load-shedding parameters from `discard` (shedrate, sheddepth, shedhold, shedwait and the
 * leak it shares with the rate limit). The parser has checked their ranges. */
void ACC_ShedParams(const CNF_Config *cfg, SHD_Params *out);

#endif
