#include "statslog.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "log.h"

#define NAME_MAX_STL 256
#define LINE_MAX_STL 512
#define ERR_INTERVAL_S 60 /* a failing set is logged at most this often */
#define SETTINGS_SLOTS 16 /* room kept in the queue for reconfigurations */
#define QUEUE_CAP (STL_QUEUE + SETTINGS_SLOTS)
#define KIND_SETTINGS STF_KIND_COUNT /* a queue entry carrying new settings */

/* What the configuration says, in fixed buffers so the writer copies it without allocating. */
typedef struct {
  char dir[PATH_MAX];
  struct {
    bool enabled, link;
    STF_Type type;
    char file[NAME_MAX_STL];
  } set[STF_KIND_COUNT];
} Settings;

/* A record, or (kind KIND_SETTINGS) the settings for every record queued after it: each
 * record is written under the settings in force when it was queued. */
typedef struct {
  int kind;
  struct timespec t;
  union {
    Settings *settings;
    STF_Loop loop;
    STF_Peer peer;
    STF_Sys sys;
    STF_Proto proto;
  } u;
} Record;

/* One set's open file, owned by the writer thread. */
typedef struct {
  int fd;
  int64_t from, until; /* the open generation covers [from, until) */
  char path[PATH_MAX];
  LOG_Limiter lim;
} OpenFile;

struct STL_Writer {
  pthread_mutex_t lock;
  pthread_cond_t wake;
  pthread_cond_t idle; /* signalled when the queue is empty and nothing is being written */
  bool busy;
  pthread_t thread;
  bool stop;
  Record q[QUEUE_CAP];
  size_t head, count;
  unsigned wanted; /* bit per kind; read without the lock (atomic) */
  STL_Counters n;
  /* the writer thread's own */
  Settings *cur; /* NULL until the first settings are taken */
  OpenFile files[STF_KIND_COUNT];
};

static int64_t
mono_ns(void)
{
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (int64_t)t.tv_sec * 1000000000 + t.tv_nsec;
}

static void
close_file(OpenFile *f)
{
  if (f->fd >= 0)
    close(f->fd);
  f->fd = -1;
  f->path[0] = '\0';
}

static void
set_error(STL_Writer *w, OpenFile *f, const char *what, const char *path)
{
  pthread_mutex_lock(&w->lock);
  w->n.errors++;
  pthread_mutex_unlock(&w->lock);
  if (LOG_Allow(&f->lim, mono_ns(), 1, ERR_INTERVAL_S))
    LOG_Warn("statistics file %s: %s (records are lost; time service goes on)", path, what);
}

/* PREFIX/FILE as a hard link to the current generation, as ntpd keeps it. */
static void
update_link(STL_Writer *w, OpenFile *f, STF_Kind k)
{
  char base[PATH_MAX];
  if (!STF_FileName(w->cur->dir, w->cur->set[k].file, "", base, sizeof(base)))
    return;
  if (unlink(base) != 0 && errno != ENOENT) {
    set_error(w, f, "cannot remove the old link", base);
    return;
  }
  if (link(f->path, base) != 0)
    set_error(w, f, "cannot link it to the current file", base);
}

/* The file of the generation holding t open in f (false: nothing can be written now). */
static bool
open_for(STL_Writer *w, STF_Kind k, int64_t t)
{
  OpenFile *f = &w->files[k];
  if (f->fd >= 0 && t >= f->from && t < f->until)
    return true;
  char suffix[32], path[PATH_MAX];
  int64_t from, until;
  STF_Type type = w->cur->set[k].type;
  STF_Generation(type, t, suffix, sizeof(suffix), &from, &until);
  if (!STF_FileName(w->cur->dir, w->cur->set[k].file, suffix, path, sizeof(path)))
    return false;
  close_file(f);
  int fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC | O_NOCTTY, 0644);
  if (fd < 0) {
    set_error(w, f, "cannot open it", path);
    return false;
  }
  f->fd = fd;
  memcpy(f->path, path, sizeof(path));
  f->from = from; /* a record before it (the clock stepped back) reopens its own file */
  f->until = until;
  if (w->cur->set[k].link && type != STF_TYPE_NONE)
    update_link(w, f, k);
  return true;
}

static size_t
format(const Record *r, char *buf, size_t size)
{
  switch (r->kind) {
    case STF_LOOPSTATS:
      return STF_FormatLoop(&r->t, &r->u.loop, buf, size);
    case STF_PEERSTATS:
      return STF_FormatPeer(&r->t, &r->u.peer, buf, size);
    case STF_SYSSTATS:
      return STF_FormatSys(&r->t, &r->u.sys, buf, size);
    case STF_PROTOSTATS:
      return STF_FormatProto(&r->t, &r->u.proto, buf, size);
    default:
      return 0;
  }
}

static void
write_record(STL_Writer *w, const Record *r)
{
  if (!w->cur || !w->cur->set[r->kind].enabled ||
      !open_for(w, (STF_Kind)r->kind, (int64_t)r->t.tv_sec))
    return;
  OpenFile *f = &w->files[r->kind];
  char line[LINE_MAX_STL];
  size_t n = format(r, line, sizeof(line));
  if (n == 0 || n >= sizeof(line))
    return;
  ssize_t done = write(f->fd, line, n);
  if (done != (ssize_t)n) {
    if (done >= 0)
      errno = ENOSPC; /* a short write: the disk is full */
    set_error(w, f, "cannot write it", f->path);
    return;
  }
  pthread_mutex_lock(&w->lock);
  w->n.written++;
  pthread_mutex_unlock(&w->lock);
}

static void *
writer_thread(void *arg)
{
  STL_Writer *w = arg;
  Record r;
  pthread_mutex_lock(&w->lock);
  for (;;) {
    w->busy = false;
    if (w->count == 0)
      pthread_cond_broadcast(&w->idle);
    while (w->count == 0 && !w->stop)
      pthread_cond_wait(&w->wake, &w->lock);
    if (w->count == 0)
      break; /* stopping, and everything queued is written */
    w->busy = true;
    r = w->q[w->head];
    w->head = (w->head + 1) % QUEUE_CAP;
    w->count--;
    pthread_mutex_unlock(&w->lock);
    if (r.kind == KIND_SETTINGS) {
      free(w->cur);
      w->cur = r.u.settings;
      for (int k = 0; k < STF_KIND_COUNT; k++)
        close_file(&w->files[k]); /* names may have changed: reopened by the next record */
    } else {
      write_record(w, &r);
    }
    pthread_mutex_lock(&w->lock);
  }
  pthread_mutex_unlock(&w->lock);
  return NULL;
}

STL_Writer *
STL_Create(void)
{
  STL_Writer *w = calloc(1, sizeof(*w));
  if (!w)
    return NULL;
  for (int k = 0; k < STF_KIND_COUNT; k++)
    w->files[k].fd = -1;
  pthread_mutex_init(&w->lock, NULL);
  pthread_cond_init(&w->wake, NULL);
  pthread_cond_init(&w->idle, NULL);
  if (pthread_create(&w->thread, NULL, writer_thread, w) != 0) {
    pthread_cond_destroy(&w->idle);
    pthread_cond_destroy(&w->wake);
    pthread_mutex_destroy(&w->lock);
    free(w);
    return NULL;
  }
  return w;
}

void
STL_Destroy(STL_Writer *w)
{
  if (!w)
    return;
  pthread_mutex_lock(&w->lock);
  w->stop = true;
  pthread_cond_signal(&w->wake);
  pthread_mutex_unlock(&w->lock);
  pthread_join(w->thread, NULL);
  for (int k = 0; k < STF_KIND_COUNT; k++)
    close_file(&w->files[k]);
  free(w->cur);
  pthread_cond_destroy(&w->idle);
  pthread_cond_destroy(&w->wake);
  pthread_mutex_destroy(&w->lock);
  free(w);
}

void
STL_Drain(STL_Writer *w)
{
  pthread_mutex_lock(&w->lock);
  while (w->count > 0 || w->busy)
    pthread_cond_wait(&w->idle, &w->lock);
  pthread_mutex_unlock(&w->lock);
}

bool
STL_Configure(STL_Writer *w, const CNF_Config *cfg)
{
  Settings *s = malloc(sizeof(*s));
  if (!s)
    return false;
  memset(s, 0, sizeof(*s));
  unsigned wanted = 0;
  bool ok = snprintf(s->dir, sizeof(s->dir), "%s", cfg->statsdir ? cfg->statsdir : "") <
            (int)sizeof(s->dir);
  for (int k = 0; k < STF_KIND_COUNT && ok; k++) {
    const CNF_FileGen *g = &cfg->filegen[k];
    const char *file = g->file ? g->file : STF_KindName((STF_Kind)k);
    ok = snprintf(s->set[k].file, NAME_MAX_STL, "%s", file) < NAME_MAX_STL;
    s->set[k].enabled = cfg->sw.stats && g->enabled && STF_KindWritten((STF_Kind)k);
    s->set[k].link = g->link;
    s->set[k].type = g->type;
    if (s->set[k].enabled)
      wanted |= 1u << k;
  }
  if (!ok) {
    free(s);
    return false;
  }
  pthread_mutex_lock(&w->lock);
  ok = w->count < QUEUE_CAP; /* full only if the writer is stuck through 16 reloads */
  if (ok) {
    w->q[(w->head + w->count) % QUEUE_CAP] = (Record){.kind = KIND_SETTINGS, .u.settings = s};
    w->count++;
    __atomic_store_n(&w->wanted, wanted, __ATOMIC_RELAXED);
    pthread_cond_signal(&w->wake);
  }
  pthread_mutex_unlock(&w->lock);
  if (!ok)
    free(s);
  return ok;
}

bool
STL_Wants(const STL_Writer *w, STF_Kind k)
{
  return w && (__atomic_load_n(&w->wanted, __ATOMIC_RELAXED) & (1u << k)) != 0;
}

static void
put(STL_Writer *w, const Record *r)
{
  if (!STL_Wants(w, r->kind))
    return;
  pthread_mutex_lock(&w->lock);
  if (w->count >= STL_QUEUE) {
    w->n.dropped++;
  } else {
    w->q[(w->head + w->count) % QUEUE_CAP] = *r;
    w->count++;
    w->n.queued++;
    pthread_cond_signal(&w->wake);
  }
  pthread_mutex_unlock(&w->lock);
}

void
STL_PutLoop(STL_Writer *w, const struct timespec *t, const STF_Loop *r)
{
  put(w, &(Record){.kind = STF_LOOPSTATS, .t = *t, .u.loop = *r});
}

void
STL_PutPeer(STL_Writer *w, const struct timespec *t, const STF_Peer *r)
{
  put(w, &(Record){.kind = STF_PEERSTATS, .t = *t, .u.peer = *r});
}

void
STL_PutSys(STL_Writer *w, const struct timespec *t, const STF_Sys *r)
{
  put(w, &(Record){.kind = STF_SYSSTATS, .t = *t, .u.sys = *r});
}

void
STL_PutProto(STL_Writer *w, const struct timespec *t, const STF_Proto *r)
{
  put(w, &(Record){.kind = STF_PROTOSTATS, .t = *t, .u.proto = *r});
}

void
STL_GetCounters(STL_Writer *w, STL_Counters *out)
{
  pthread_mutex_lock(&w->lock);
  *out = w->n;
  pthread_mutex_unlock(&w->lock);
}

void
STL_LogCounters(STL_Writer *w)
{
  STL_Counters c;
  STL_GetCounters(w, &c);
  LOG_Info("stats: statsfile_queued %llu", (unsigned long long)c.queued);
  LOG_Info("stats: statsfile_written %llu", (unsigned long long)c.written);
  LOG_Info("stats: statsfile_dropped %llu", (unsigned long long)c.dropped);
  LOG_Info("stats: statsfile_errors %llu", (unsigned long long)c.errors);
}
