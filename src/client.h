/* client: the I/O edge of the NTP client. It turns the `server`, `pool` and `peer` lines into
 * associations (assoc.h), each with its own socket on a random ephemeral port connected to
 * the server (RFC 9109), resolves host names on helper threads (never on the event loop),
 * polls on schedule, feeds replies to the association tests, runs the selection and clock
 * discipline (discipline.h) and tells its owner when what we serve may have changed.
 * It runs on the main thread's event loop; CLI_FillControl may be called from a serving
 * thread (it takes the client's lock). */
#ifndef NTPG_CLIENT_H
#define NTPG_CLIENT_H

#include <stdbool.h>
#include <stddef.h>

#include "clock.h"
#include "config.h"
#include "keys.h"
#include "loop.h"
#include "sysvars.h"

/* The control context CLI_FillControl fills in (control.h); callers that use it include
 * control.h, the client's users need not. */
typedef struct CTL_Ctx CTL_Ctx;
typedef struct CTL_Peer CTL_Peer;

typedef struct CLI_Client CLI_Client;

/* Called on the loop thread, without the client's lock held, after anything that may change
 * the system variables: sys is what we serve while synchronized to an upstream source, or
 * NULL when we are not (the owner falls back to local clock / orphan / unsynchronized). */
typedef void (*CLI_SyncFn)(void *arg, const SYS_Vars *sys);
/* Called the same way whenever the set of servers we poll changed (for `restrict source`). */
typedef void (*CLI_PeersFn)(void *arg, const NetAddr *peers, size_t n);

/* The NTS-KE TLS contexts of cfg's NTS sources, one per `server`/`pool ... nts` line: each
 * line's `ca` (else `nts ca`, else the system's store) is read here, so that a daemon that
 * chroots (-i) loads them first, from the real root. NULL with "line N: ..." in err if one
 * does not load; also NULL, with err empty, when cfg has no NTS source. */
typedef struct CLI_Tls CLI_Tls;
CLI_Tls *CLI_LoadTls(const CNF_Config *cfg, char *err, size_t errlen);
void CLI_FreeTls(CLI_Tls *t);

/* A client for cfg's associations (none is not an error: the client then has nothing to
 * do). NULL with a reason in err if it cannot be set up. keys: the client's own table (it
 * takes ownership, also on failure; may be NULL). tls: CLI_LoadTls(cfg) (the same
 * ownership; NULL: made here). clk: adjusted through the discipline unless it is no-adjust. */
CLI_Client *CLI_Create(EVL_Loop *loop, CLK_Clock *clk, const CNF_Config *cfg, KEY_Table *keys,
                       CLI_Tls *tls, CLI_SyncFn on_sync, CLI_PeersFn on_peers, void *arg,
                       char *err, size_t errlen);
void CLI_Destroy(CLI_Client *c);
/* New keys after a reload (takes ownership; the old table is freed). */
void CLI_SetKeys(CLI_Client *c, KEY_Table *keys);
/* Whether any source of the configuration it was made with uses NTS (fixed at CLI_Create). */
bool CLI_HasNts(const CLI_Client *c);
/* How many associations exist now. */
size_t CLI_Count(CLI_Client *c);
/* Fill the control context's association list (into peers[max]) and the system variables
 * that come from the discipline (system peer, offset, frequency, jitter, poll). */
void CLI_FillControl(CLI_Client *c, CTL_Ctx *ctx, CTL_Peer *peers, size_t max);
/* Write loopstats, peerstats and protostats records to w (borrowed until CLI_Destroy or
 * the next call; NULL: none). */
typedef struct STL_Writer STL_Writer;
void CLI_SetStats(CLI_Client *c, STL_Writer *w);
/* Log the client counters as `stats: client_NAME VALUE`. */
void CLI_LogCounters(CLI_Client *c);
/* The NTS client counters (client_nts_*, docs/nts.md) as readable system variables: at most
 * max of them into out (names are static), how many. */
#define CLI_NTS_COUNTERS 13
typedef struct CTL_Counter CTL_Counter;
size_t CLI_NtsCounters(CLI_Client *c, CTL_Counter *out, size_t max);

#endif
