/* ctlserve: the I/O edge of the control path (mode 6). Serving threads keep the mode 6
 * requests the decision core lets through (rate-limited per source and in total); after its
 * batch a thread hands them here. CSV_Handle enters an exclusive section (the other threads
 * wait between batches), so it may read every thread's counters, answers each request with
 * CTL_Handle and sends the datagrams from the address the request came to. A runtime
 * configuration change (ntpq :config) is prepared by the main thread outside any section
 * and only committed in one (CSV_HandleConfig). It counts a reason per request (stats:
 * ctl_<reason>). */
#ifndef NTPG_CTLSERVE_H
#define NTPG_CTLSERVE_H

#include <stdint.h>
#include <stdio.h>

#include "client.h"
#include "clock.h"
#include "pool.h"
#include "runtime.h"
#include "statsfile.h"

typedef struct CSV_Server CSV_Server;
typedef struct NKS_Server NKS_Server; /* ntskesrv.h */

CSV_Server *CSV_Create(RUN_State *run, POL_Pool *pool, const CLK_Clock *clk,
                       const char *config_path);
void CSV_Destroy(CSV_Server *s);
/* The client whose associations and discipline ntpq sees (NULL: none). Once the serving
 * threads run, call it inside an exclusive section (POL_Exclusive): they read it. */
void CSV_SetClient(CSV_Server *s, CLI_Client *cli);
/* The NTS-KE server whose counters ntpq reads as nts_ke_NAME (NULL: none). Set it before
 * the serving threads run; it must outlive them. */
void CSV_SetNtsServer(CSV_Server *s, const NKS_Server *nks);
/* A POL_ControlFn: arg is the CSV_Server. A :config request that passes the checks is not
 * applied here: it is queued for CSV_HandleConfig. */
void CSV_Handle(void *arg, int self, WRK_Worker *w);
/* The main thread's half of :config: when CSV_ConfigFd is readable (watch it in the event
 * loop), CSV_HandleConfig prepares each queued :config -- parsing, interfaces, name lookups
 * -- while the serving threads go on, then answers it in a short exclusive section that
 * commits what was prepared. A signed :config is answered once: the same request again (a
 * replay) is refused until a restart (docs/control.md). */
int CSV_ConfigFd(const CSV_Server *s);
void CSV_HandleConfig(CSV_Server *s);
/* The local control path: a listening Unix SOCK_SEQPACKET socket at path, created mode 0600
 * (owned by the user the daemon starts as, root in practice). Each connection carries one
 * request and its answer; only a peer whose uid (SO_PEERCRED) is root's or the daemon's own
 * is answered, with the control key's rights and no MAC. Returns its descriptor (-1 with a
 * reason in err). */
int CSV_OpenLocal(CSV_Server *s, const char *path, char *err, size_t errlen);
/* Answer the connections waiting on the local socket (call from the event loop). */
void CSV_HandleLocal(CSV_Server *s);
/* Close the local socket and remove its file (unless CSV_LeaveLocalFile). */
void CSV_CloseLocal(CSV_Server *s);
/* Someone else removes the file at exit (the privileged cleaner, daemon.h): after a chroot
 * or the switch to another user the daemon could not, or would remove the wrong one. */
void CSV_LeaveLocalFile(CSV_Server *s);

/* A client of the local socket (ntpgated --control): connect, check that the socket is
 * served by root or by our own uid, send one request -- "rv [NAMES]" (read system variables)
 * or ":config LINE" -- and write the answer's text to out. Returns an exit status: 0
 * answered, 1 refused or failed, 2 could not ask. */
int CSV_LocalQuery(const char *path, const char *command, FILE *out);

/* Log the control counters as `stats: ctl_NAME VALUE` (caller in an exclusive section or
 * the only thread touching them). */
void CSV_LogCounters(const CSV_Server *s);
/* The counters of a sysstats record (statsfile.h), since start, from the threads' summed
 * counters, with the mapping of ntpq's sysstats (docs/control.md); age is left at 0. */
void CSV_SysStats(const CSV_Server *s, const WRK_Counters *sum, STF_Sys *out);

#endif
