/* runtime: the configuration in force and everything built from it -- the serving policy,
 * the system variables replies carry, the restrict list, the keys, the monitor and
 * load-shedding tables. It is the one place where a configuration becomes behaviour, so
 * start-up, SIGHUP and runtime changes share one validated, all-or-nothing path: a new
 * configuration replaces the old only when it loaded with zero errors. */
#ifndef NTPG_RUNTIME_H
#define NTPG_RUNTIME_H

#include <stdbool.h>
#include <stddef.h>

#include "control.h"
#include "msglist.h"
#include "netaddr.h"
#include "ntptime.h"
#include "server.h"

/* Messages for the operator as data: each with its severity, file, line and reason (in the
 * order found), so that no reader has to take formatted text apart. Zero-initialise or let
 * a RUN_ call fill it; RUN_FreeErrors when done. */
typedef enum { RUN_SEV_ERROR = 0, RUN_SEV_WARNING } RUN_Severity;
typedef struct {
  RUN_Severity severity;
  MSG_Message msg; /* file ("" when about no file), line (0: none), text */
} RUN_Message;
typedef struct {
  RUN_Message *items;
  size_t count;  /* errors and warnings */
  size_t errors; /* how many of them are errors */
  size_t cap;    /* internal */
} RUN_Errors;
void RUN_FreeErrors(RUN_Errors *e);
/* "FILE:LINE: reason" ("FILE: reason" without a line, "reason" without a file), always
 * terminated when size > 0; the length the whole text needs, as snprintf. Warnings get
 * "warning: " before the reason when tag_warnings is true. */
size_t RUN_FormatMessage(const RUN_Message *m, bool tag_warnings, char *buf, size_t size);
/* ntpq's answer to a :config that failed: "Config Failed: " and the first message. */
void RUN_FailureReply(const RUN_Errors *errs, char *reply, size_t replycap);

typedef struct RUN_State RUN_State;

/* Load path. port_override > 0 replaces the config's `port`. NULL if the config has errors
 * (all of them in errs); warnings are in errs either way. */
RUN_State *RUN_Create(const char *path, int port_override, int precision, const NTT_Now *now,
                      RUN_Errors *errs);
void RUN_Destroy(RUN_State *r);
/* Parse and validate only (ntpgated -t). */
bool RUN_CheckFile(const char *path, RUN_Errors *errs);
/* Re-read path; on any error keep everything as it was and return false. */
bool RUN_Reload(RUN_State *r, const char *path, const NTT_Now *now, RUN_Errors *errs);
/* The same in two steps, so the slow part (files, interfaces, name resolution) runs while
 * the serving threads go on: RUN_Prepare loads and builds (NULL on any error, all in errs),
 * RUN_Commit swaps it in (needs exclusive use: no thread deciding with the old context) and
 * always consumes p; RUN_Discard drops a prepared config unused. A prepared config is built
 * on the configuration in force at the time (the file and the runtime lines); once another
 * commit came in (a :config, a reload) it is stale: RUN_IsCurrent says so (call it inside
 * the section), and RUN_Commit refuses it, changing nothing; prepare again. */
typedef struct RUN_Pending RUN_Pending;
RUN_Pending *RUN_Prepare(RUN_State *r, const char *path, RUN_Errors *errs);
bool RUN_IsCurrent(const RUN_State *r, const RUN_Pending *p);
bool RUN_Commit(RUN_State *r, RUN_Pending *p, const NTT_Now *now, RUN_Errors *errs);
void RUN_Discard(RUN_Pending *p);
/* Once a second: whether local clock / orphan bookkeeping would change the system state,
 * and the change itself (which needs exclusive use, like RUN_Commit). */
bool RUN_TickDue(const RUN_State *r, const NTT_Now *now);
/* What the client is synchronized to (NULL: nothing). Serves it unless a local clock of a
 * lower stratum is configured; on loss of sync falls back to local clock, orphan mode
 * (counted from the loss) or unsynchronized. Needs exclusive use, like RUN_Commit. */
void RUN_SetClientSystem(RUN_State *r, const SRV_System *sys, const NTT_Now *now);
/* The client's servers now: each gets a `restrict source` host entry (also after later
 * reloads). False if memory ran out (the old list stays). Needs exclusive use. */
bool RUN_SetSourcePeers(RUN_State *r, const NetAddr *peers, size_t n);
/* The configuration in force (read-only; valid until the next commit). */
const CNF_Config *RUN_Config(const RUN_State *r);
void RUN_Tick(RUN_State *r, const NTT_Now *now);
/* Runtime configuration (ntpq :config): text (access-control directives only: restrict,
 * unrestrict, delrestrict, discard, mru) on top of the file at path and the earlier
 * runtime lines, through the same all-or-nothing path as a reload. On success the lines
 * stay in force, across SIGHUP reloads too, until a restart. The runtime lines are kept
 * normalized (blanks collapsed) and without repeats: a line sent again moves to the end
 * instead of adding a copy; with text they may hold at most RUN_RUNTIME_MAX_LINES lines
 * and RUN_RUNTIME_MAX_OCTETS octets, else the text is refused.
 * RUN_PrepareConfigure does the slow part without exclusive use (like RUN_Prepare): NULL
 * if the text is refused or the result has errors; reply gets the text for ntpq either way
 * ("" = plain success; a warning about the text is "Config Succeeded: line N: ..."). Commit
 * the result with RUN_Commit (on failure, its first message is the reply). RUN_Configure
 * does both and needs exclusive use. */
#define RUN_RUNTIME_MAX_LINES 256
#define RUN_RUNTIME_MAX_OCTETS 16384
RUN_Pending *RUN_PrepareConfigure(RUN_State *r, const char *path, const char *text,
                                  char *reply, size_t replycap);
bool RUN_Configure(RUN_State *r, const char *path, const char *text, const NTT_Now *now,
                   char *reply, size_t replycap);
/* The runtime lines in force: how many, and their octets in *octets. */
size_t RUN_RuntimeSize(RUN_State *r, size_t *octets);
/* The control path's context for the configuration in force (valid until the next commit
 * or tick); the caller adds counters, associations and the configure callback. */
void RUN_ControlContext(const RUN_State *r, CTL_Ctx *c);
/* The leap second the clock driver should have armed now (CLK_SetLeap): +1, -1 or 0; it
 * changes on RUN_Tick, RUN_SetClientSystem and commits. */
int RUN_LeapArm(const RUN_State *r);
/* Serving threads the configuration asks for (`threads`, default one per core). */
int RUN_Threads(const RUN_State *r);

/* Serve NTS with the cookie master keys in keys (the NTS-KE server's store, which outlives
 * r's serving threads); NULL: not served. Call before the serving threads start. */
void RUN_SetNtsKeys(RUN_State *r, NCK_Store *keys);
/* What the workers decide with; valid until the next RUN_Reload or RUN_Tick. */
const SRV_Ctx *RUN_Context(const RUN_State *r);
/* Addresses (with port) to open sockets on, per the `interface` lines; wildcard addresses
 * when there is no `interface listen` line. Returns the count (at most max). */
size_t RUN_ListenAddresses(const RUN_State *r, NetAddr *out, size_t max);
const char *RUN_LogFile(const RUN_State *r);
/* The monitor table (for counters and the control path's MRU list). */
MON_Table *RUN_Monitor(const RUN_State *r);
/* The load-shedding table (kept across reloads). */
SHD_Table *RUN_Shed(const RUN_State *r);
const char *RUN_PidFile(const RUN_State *r);

#endif
