/* statslog: the edge that writes the statistics files (statsfile.h has the lines and names).
 *
 * One writer thread of its own. Records are handed in by value (STL_Put*) from the main
 * thread (the client, the hourly sysstats): they go into a bounded queue under a mutex held
 * only to copy one record, so the caller never waits for the disk; when the queue is full
 * the record is dropped and counted. The thread formats each record, opens the file of the
 * record's generation for appending (O_APPEND, mode 0644) on the first record of a
 * generation, so files rotate at the generation's end (00:00 UTC for type day), keeps
 * PREFIX/FILE hard-linked to it when the set has `link`, and writes the line. A file that
 * cannot be opened or written (missing directory, EACCES, ENOSPC) is logged, at most once a
 * minute per set, and the record is lost; nothing else happens.
 *
 * Never called from the serving threads. STL_Configure may be called at any time (start,
 * SIGHUP): the new settings go through the queue too, so every record is written under the
 * settings in force when it was queued. */
#ifndef NTPG_STATSLOG_H
#define NTPG_STATSLOG_H

#include <stdbool.h>
#include <stdint.h>
#include <time.h>

#include "config.h"
#include "statsfile.h"

#define STL_QUEUE 512 /* records waiting for the writer at most */

typedef struct STL_Writer STL_Writer;

/* A writer with nothing enabled and its thread started; NULL if that fails. */
STL_Writer *STL_Create(void);
/* Write what is queued, stop the thread, close the files. NULL is allowed. */
void STL_Destroy(STL_Writer *w);
/* Wait until every record queued so far is written (or failed). */
void STL_Drain(STL_Writer *w);
/* Take statsdir and every filegen setting from cfg (copied); `disable stats` (cfg->sw.stats
 * false) turns every set off, as ntpd's stats_control does. False (and the previous
 * settings kept) if a path is too long for the writer, memory is short, or 16 changes are
 * already waiting for a writer that is stuck. */
bool STL_Configure(STL_Writer *w, const CNF_Config *cfg);
/* Whether records of kind k are wanted now (lets callers skip building them). */
bool STL_Wants(const STL_Writer *w, STF_Kind k);

/* Queue one record stamped with real time t; ignored when the set is not enabled. */
void STL_PutLoop(STL_Writer *w, const struct timespec *t, const STF_Loop *r);
void STL_PutPeer(STL_Writer *w, const struct timespec *t, const STF_Peer *r);
void STL_PutSys(STL_Writer *w, const struct timespec *t, const STF_Sys *r);
void STL_PutProto(STL_Writer *w, const struct timespec *t, const STF_Proto *r);

typedef struct {
  uint64_t queued, written, dropped, errors;
} STL_Counters;
void STL_GetCounters(STL_Writer *w, STL_Counters *out);
/* Log the counters as `stats: statsfile_NAME VALUE`. */
void STL_LogCounters(STL_Writer *w);

#endif
