/* ctlserve: the I/O edge of the control path (mode 6). Serving threads keep the mode 6
 * requests the decision core lets through (rate-limited per source and in total); after its
 * batch a thread hands them here. CSV_Handle enters an exclusive section (the other threads
 * wait between batches), so it may read every thread's counters and may apply a runtime
 * configuration change (ntpq :config) through the runtime's all-or-nothing path, answers
 * each request with CTL_Handle and sends the datagrams from the address the request came
 * to. It counts a reason per request (stats: ctl_<reason>). */
#ifndef NTPG_CTLSERVE_H
#define NTPG_CTLSERVE_H

#include <stdint.h>

#include "client.h"
#include "clock.h"
#include "pool.h"
#include "runtime.h"

typedef struct CSV_Server CSV_Server;

CSV_Server *CSV_Create(RUN_State *run, POL_Pool *pool, const CLK_Clock *clk,
                       const char *config_path);
void CSV_Destroy(CSV_Server *s);
/* The client whose associations and discipline ntpq sees (NULL: none). */
void CSV_SetClient(CSV_Server *s, CLI_Client *cli);
/* A POL_ControlFn: arg is the CSV_Server. */
void CSV_Handle(void *arg, int self, WRK_Worker *w);
/* Log the control counters as `stats: ctl_NAME VALUE` (caller in an exclusive section or
 * the only thread touching them). */
void CSV_LogCounters(const CSV_Server *s);

#endif
