#include "runtime.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <pthread.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/utsname.h>
#include <unistd.h>

#include "access.h"
#include "control.h"
#include "config.h"
#include "iface.h"
#include "keys.h"
#include "packet.h"
#include "rng.h"

#define LOCAL_REFRESH_NS (64LL * 1000000000) /* the LOCAL driver's poll: 2^6 s */
#define ORPHAN_REFID 0x7f000001u             /* 127.0.0.1, as ntpd sends in orphan mode */

struct RUN_State {
  CNF_Config *cfg;
  int port_override;
  int precision;
  int64_t start_mono_ns; /* start, or the last loss of upstream sync (orphan timing) */
  bool client_synced;    /* the client has an upstream system peer: serve its state */
  SRV_System client_sys;
  int64_t local_refresh_ns;
  SRV_Policy policy;
  SRV_System sys;
  SRV_Ctx ctx;
  RST_List *rst;         /* restrict list in force */
  MON_Table *mon;        /* kept across reloads: a reload never resets a client's history */
  KEY_Table *keys;       /* NULL without a `keys` line */
  uint32_t source_flags; /* `restrict source` template, for associations */
  CNF_Config *prev_cfg;  /* the generation replaced last (see apply) */
  RST_List *prev_rst;
  KEY_Table *prev_keys;
  MON_Table *ctl_mon;    /* mode 6 limits (fixed parameters, see ctl_limits) */
  SHD_Table *shed;       /* load shedding; created once, reconfigured on reloads */
  MON_Params mon_params; /* of mon, for monstats */
  uint8_t nonce_secret[16];
  struct utsname uts;
  /* Lines applied at runtime (ntpq :config), kept across reloads until a restart; the
   * lock lets a reload prepare (outside the exclusive section) read them safely. */
  pthread_mutex_t text_lock;
  char *runtime_text;
  NetAddr *peers; /* the client's servers, for `restrict source` entries */
  size_t npeers;
};

/* What a configuration builds besides itself; swapped in whole or not at all. */
typedef struct {
  RST_List *rst;
  KEY_Table *keys;
  MON_Params mon;
  uint32_t source_flags;
} Tables;

/* One message as a record (dropped, like MSG_Add's, if memory runs out). */
static void
add_record(RUN_Errors *e, RUN_Severity sev, const char *file, int line, const char *text)
{
  if (e->count == e->cap) {
    size_t cap = e->cap ? 2 * e->cap : 8;
    RUN_Message *items = realloc(e->items, cap * sizeof(*items));
    if (!items)
      return;
    e->items = items;
    e->cap = cap;
  }
  char *f = strdup(file ? file : ""), *t = strdup(text);
  if (!f || !t) {
    free(f);
    free(t);
    return;
  }
  e->items[e->count++] = (RUN_Message){sev, {.file = f, .line = line, .text = t}};
  if (sev == RUN_SEV_ERROR)
    e->errors++;
}

/* An error about no file and no line. */
static void
add_msg(RUN_Errors *e, const char *text)
{
  add_record(e, RUN_SEV_ERROR, NULL, 0, text);
}

static void
collect(const MSG_List *l, bool warning, RUN_Errors *e)
{
  RUN_Severity sev = warning ? RUN_SEV_WARNING : RUN_SEV_ERROR;
  for (size_t i = 0; i < l->count; i++)
    add_record(e, sev, l->items[i].file, l->items[i].line, l->items[i].text);
  if (l->lost) {
    char buf[80];
    snprintf(buf, sizeof(buf), "(%zu more messages lost: out of memory)", l->lost);
    add_record(e, sev, NULL, 0, buf);
  }
}

size_t
RUN_FormatMessage(const RUN_Message *m, bool tag_warnings, char *buf, size_t size)
{
  const char *tag = tag_warnings && m->severity == RUN_SEV_WARNING ? "warning: " : "";
  int n;
  if (!m->msg.file || !m->msg.file[0])
    n = snprintf(buf, size, "%s%s", tag, m->msg.text);
  else if (m->msg.line > 0)
    n = snprintf(buf, size, "%s:%d: %s%s", m->msg.file, m->msg.line, tag, m->msg.text);
  else
    n = snprintf(buf, size, "%s: %s%s", m->msg.file, tag, m->msg.text);
  return n < 0 ? 0 : (size_t)n;
}

typedef struct {
  const char *path;
  RUN_Errors *errs;
  bool failed;
} MsgSink;

static void
acc_msg(void *arg, bool warning, int line, const char *text)
{
  MsgSink *m = arg;
  add_record(m->errs, warning ? RUN_SEV_WARNING : RUN_SEV_ERROR, m->path, line, text);
  if (!warning)
    m->failed = true;
}

static void
free_tables(Tables *t)
{
  RST_Destroy(t->rst);
  KEY_Destroy(t->keys);
  memset(t, 0, sizeof(*t));
}

/* Serving threads for a configuration: `threads N`, or one per online core. */
static int
threads_for(const CNF_Config *cfg)
{
  long n = cfg->threads > 0 ? cfg->threads : sysconf(_SC_NPROCESSORS_ONLN);
  return (int)(n < 1 ? 1 : n > CNF_MAX_THREADS ? CNF_MAX_THREADS : n);
}

/* Monitor shards: a power of two, about four per thread, so threads rarely share a lock. */
static uint32_t
shards_for(int threads)
{
  uint32_t s = 1;
  while (s < (uint32_t)threads * 4 && s < 256)
    s <<= 1;
  return threads == 1 ? 1 : s;
}

/* Everything a configuration builds; false (all reasons in errs) if any part fails. */
static bool
build_tables(const CNF_Config *cfg, const char *path, RUN_Errors *errs, Tables *t)
{
  MsgSink sink = {.path = path, .errs = errs};
  memset(t, 0, sizeof(*t));
  IFC_Address local[256];
  int nlocal = IFC_List(local, 256);
  size_t nl = nlocal < 0 ? 0 : (size_t)(nlocal > 256 ? 256 : nlocal);
  t->rst =
      ACC_BuildRestrict(cfg, local, nl, ACC_ResolveSystem, &t->source_flags, acc_msg, &sink);
  if (ACC_MonitorParams(cfg, &t->mon, acc_msg, &sink))
    t->mon.shards = shards_for(threads_for(cfg));
  struct stat kst;
  if (cfg->keysfile && stat(cfg->keysfile, &kst) != 0 && errno == ENOENT) {
    /* ntpd warns and goes on without keys; so do we, loudly */
    add_record(errs, RUN_SEV_WARNING, cfg->keysfile, 0,
               "keys file does not exist: no symmetric keys, so authenticated associations "
               "and ntpq :config will fail");
  } else if (cfg->keysfile) {
    KEY_Errors ke;
    KEY_InitErrors(&ke);
    t->keys = KEY_LoadFile(cfg->keysfile, &ke);
    collect(&ke.errors, false, errs);
    collect(&ke.warnings, true, errs);
    KEY_ClearErrors(&ke);
    if (!t->keys)
      sink.failed = true;
    else
      KEY_SetTrusted(t->keys, cfg->trusted_keys, cfg->n_trusted_keys);
  }
  if (sink.failed || !t->rst) {
    free_tables(t);
    return false;
  }
  return true;
}

void
RUN_FreeErrors(RUN_Errors *e)
{
  for (size_t i = 0; i < e->count; i++) {
    free(e->items[i].msg.file);
    free(e->items[i].msg.text);
  }
  free(e->items);
  memset(e, 0, sizeof(*e));
}

/* Parse path into a fresh config; NULL (and messages in errs) if it has any error. */
#define RUNTIME_NAME "runtime-config"

static CNF_Config *
load(const char *path, const char *extra, RUN_Errors *errs)
{
  CNF_Errors ce;
  CNF_InitErrors(&ce);
  memset(errs, 0, sizeof(*errs));
  CNF_Config *cfg = CNF_Create();
  if (!cfg) {
    add_msg(errs, "out of memory loading the configuration");
    return NULL;
  }
  bool ok = CNF_ParseFile(cfg, path, &ce);
  if (extra && *extra) /* runtime lines: access control only, checked again on every load */
    ok = CNF_ParseRuntimeText(cfg, RUNTIME_NAME, extra, &ce) && ok;
  collect(&ce.errors, false, errs);
  collect(&ce.warnings, true, errs);
  CNF_ClearErrors(&ce);
  if (!ok) {
    CNF_Destroy(cfg);
    return NULL;
  }
  return cfg;
}

static bool
orphan_due(const RUN_State *r, const NTT_Now *now)
{
  const CNF_Tos *t = &r->cfg->tos;
  return t->orphan > 0 &&
         now->mono_ns - r->start_mono_ns >= (int64_t)t->orphanwait * 1000000000;
}

/* The system variables follow from what we are synchronized to. With no client associations
 * yet, that is the local clock, orphan mode, or nothing. */
static void
update_system(RUN_State *r, const NTT_Now *now)
{
  const CNF_LocalClock *lc = &r->cfg->local_clock;
  if (r->client_synced && (!lc->configured || r->client_sys.stratum <= lc->stratum)) {
    r->sys = r->client_sys; /* upstream sync wins over a local clock of the same stratum */
  } else if (lc->configured) {
    SRV_SystemLocal(&r->sys, (int8_t)r->precision, (uint8_t)lc->stratum,
                    PKT_RefidFromCode(lc->refid), now);
  } else if (orphan_due(r, now)) {
    int stratum = r->cfg->tos.orphan >= 16 ? 16 : r->cfg->tos.orphan;
    SRV_SystemLocal(&r->sys, (int8_t)r->precision, (uint8_t)stratum,
                    stratum <= 1 ? PKT_RefidFromCode("ORPH") : ORPHAN_REFID, now);
  } else {
    SRV_SystemUnsynchronized(&r->sys, (int8_t)r->precision);
  }
  r->local_refresh_ns = now->mono_ns + LOCAL_REFRESH_NS;
}

/* Swap in a configuration and its tables; the monitor table is created once and then only
 * reconfigured. False (nothing changed, cfg and t freed) if the monitor cannot take the
 * new bounds. */
static bool
apply(RUN_State *r, CNF_Config *cfg, Tables *t, const NTT_Now *now, RUN_Errors *errs)
{
  if (r->npeers > 0) { /* `restrict source` entries for the client's servers */
    RST_List *w = ACC_WithSources(t->rst, r->peers, r->npeers, t->source_flags, NULL, 0);
    if (!w) {
      add_msg(errs, "out of memory adding `restrict source` entries; old configuration kept");
      goto fail;
    }
    RST_Destroy(t->rst);
    t->rst = w;
  }
  if (!r->mon) {
    r->mon = MON_Create(&t->mon, RNG_Seed());
    if (!r->mon) {
      add_msg(errs, "out of memory creating the monitor table (mru maxdepth/maxmem)");
      goto fail;
    }
  } else if (memcmp(&r->mon_params, &t->mon, sizeof(t->mon)) != 0 &&
             !MON_Reconfigure(r->mon, &t->mon)) { /* unchanged bounds: nothing to move */
    add_msg(errs, "out of memory resizing the monitor table; old configuration kept");
    goto fail;
  }
  /* The replaced generation lives on until the next swap: a control request that changed
   * the configuration may still hold its pointers until it has answered. */
  CNF_Destroy(r->prev_cfg);
  RST_Destroy(r->prev_rst);
  KEY_Destroy(r->prev_keys);
  r->prev_cfg = r->cfg;
  r->prev_rst = r->rst;
  r->prev_keys = r->keys;
  r->cfg = cfg;
  r->rst = t->rst;
  r->keys = t->keys;
  r->source_flags = t->source_flags;
  int avg = cfg->discard.average;
  r->policy.min_poll = (int8_t)(avg > 17 ? 17 : avg);
  r->policy.max_poll = 17;
  r->policy.monitor = cfg->sw.monitor;
  update_system(r, now);
  r->mon_params = t->mon;
  SHD_Params sp;
  ACC_ShedParams(cfg, &sp);
  SHD_Configure(r->shed, &sp);
  r->ctx = (SRV_Ctx){.policy = &r->policy,
                     .sys = &r->sys,
                     .rst = r->rst,
                     .mon = r->mon,
                     .keys = r->keys,
                     .ctl_mon = r->ctl_mon,
                     .shed = r->shed};
  return true;
fail:
  free_tables(t);
  CNF_Destroy(cfg);
  return false;
}

/* Parse and build; NULL config if anything failed. */
static CNF_Config *
load_all(const char *path, const char *extra, RUN_Errors *errs, Tables *t)
{
  CNF_Config *cfg = load(path, extra, errs);
  if (cfg && !build_tables(cfg, path, errs, t)) {
    CNF_Destroy(cfg);
    return NULL;
  }
  return cfg;
}

bool
RUN_CheckFile(const char *path, RUN_Errors *errs)
{
  Tables t;
  CNF_Config *cfg = load_all(path, NULL, errs, &t);
  if (!cfg)
    return false;
  free_tables(&t);
  CNF_Destroy(cfg);
  return true;
}

/* Mode 6 limits, not configurable: per source a bucket of 64 requests refilled at 8 per
 * second (the monitor's per-network limit with /32 and /128 "networks"; the per-source
 * discard algorithm is made inert with average 0, minimum 0), and 200 requests per second
 * in total (the table's KoD bucket, used as a request budget). Room for 1,024 sources. */
static void
ctl_limits(MON_Params *p)
{
  MON_DefaultParams(p);
  p->average = 0;
  p->minimum = 0;
  p->leak = 0;
  p->maxdepth = 1024;
  p->mindepth = 64;
  p->maxage = 64;
  p->netprefix4 = 32;
  p->netprefix6 = 128;
  p->netaverage = -3;
  p->netburst = 64;
  p->netdepth = 1024;
  p->kodlimit = 200;
}

RUN_State *
RUN_Create(const char *path, int port_override, int precision, const NTT_Now *now,
           RUN_Errors *errs)
{
  Tables t;
  CNF_Config *cfg = load_all(path, NULL, errs, &t);
  if (!cfg)
    return NULL;
  RUN_State *r = calloc(1, sizeof(*r));
  if (!r) {
    free_tables(&t);
    CNF_Destroy(cfg);
    add_msg(errs, "out of memory");
    return NULL;
  }
  r->port_override = port_override;
  r->precision = precision;
  r->start_mono_ns = now->mono_ns;
  pthread_mutex_init(&r->text_lock, NULL);
  uname(&r->uts);
  MON_Params cp;
  ctl_limits(&cp);
  r->ctl_mon = MON_Create(&cp, RNG_Seed());
  r->shed = SHD_Create(RNG_Seed());
  if (!r->ctl_mon || !r->shed || !RNG_Secure(r->nonce_secret, sizeof(r->nonce_secret)) ||
      !apply(r, cfg, &t, now, errs)) {
    if (!r->ctl_mon || !r->shed)
      add_msg(errs, "out of memory creating the control table");
    MON_Destroy(r->ctl_mon);
    SHD_Destroy(r->shed);
    pthread_mutex_destroy(&r->text_lock);
    free(r);
    return NULL;
  }
  return r;
}

void
RUN_Destroy(RUN_State *r)
{
  if (!r)
    return;
  CNF_Destroy(r->cfg);
  RST_Destroy(r->rst);
  KEY_Destroy(r->keys);
  CNF_Destroy(r->prev_cfg);
  RST_Destroy(r->prev_rst);
  KEY_Destroy(r->prev_keys);
  MON_Destroy(r->mon);
  MON_Destroy(r->ctl_mon);
  SHD_Destroy(r->shed);
  pthread_mutex_destroy(&r->text_lock);
  free(r->runtime_text);
  free(r->peers);
  free(r);
}

struct RUN_Pending {
  CNF_Config *cfg;
  Tables t;
};

static RUN_Pending *
prepare(const char *path, const char *extra, RUN_Errors *errs)
{
  RUN_Pending *p = calloc(1, sizeof(*p));
  if (!p) {
    memset(errs, 0, sizeof(*errs));
    add_msg(errs, "out of memory");
    return NULL;
  }
  p->cfg = load_all(path, extra, errs, &p->t);
  if (!p->cfg) {
    free(p);
    return NULL;
  }
  return p;
}

/* A copy of the runtime lines (NULL if none or no memory). */
static char *
runtime_lines(RUN_State *r)
{
  pthread_mutex_lock(&r->text_lock);
  char *text = r->runtime_text ? strdup(r->runtime_text) : NULL;
  pthread_mutex_unlock(&r->text_lock);
  return text;
}

RUN_Pending *
RUN_Prepare(RUN_State *r, const char *path, RUN_Errors *errs)
{
  char *extra = runtime_lines(r);
  RUN_Pending *p = prepare(path, extra, errs);
  free(extra);
  return p;
}

void
RUN_Discard(RUN_Pending *p)
{
  if (!p)
    return;
  free_tables(&p->t);
  CNF_Destroy(p->cfg);
  free(p);
}

bool
RUN_Commit(RUN_State *r, RUN_Pending *p, const NTT_Now *now, RUN_Errors *errs)
{
  bool ok = apply(r, p->cfg, &p->t, now, errs); /* takes (or frees) cfg and tables */
  free(p);
  return ok;
}

bool
RUN_Reload(RUN_State *r, const char *path, const NTT_Now *now, RUN_Errors *errs)
{
  RUN_Pending *p = RUN_Prepare(r, path, errs);
  return p && RUN_Commit(r, p, now, errs);
}

/* Directives ntpq :config may use: access control only. Nothing that names a file, opens
 * sockets or touches keys (CVE-2015-7849..7851, 5196: remote config naming files). The
 * parser decides, from the directives it parsed (CNF_ParseRuntimeText), never from the raw
 * text; a control character anywhere (e.g. "\rincludefile FILE") is an error there too.
 * False with the first error, "line N: reason", in why. */
static bool
runtime_allowed(const char *text, char *why, size_t whylen)
{
  CNF_Config *scratch = CNF_Create();
  if (!scratch) {
    snprintf(why, whylen, "out of memory");
    return false;
  }
  CNF_Errors ce;
  CNF_InitErrors(&ce);
  bool ok = CNF_ParseRuntimeText(scratch, RUNTIME_NAME, text, &ce);
  if (!ok && ce.errors.count > 0)
    snprintf(why, whylen, "line %d: %s", ce.errors.items[0].line, ce.errors.items[0].text);
  else if (!ok)
    snprintf(why, whylen, "out of memory");
  CNF_ClearErrors(&ce);
  CNF_Destroy(scratch);
  return ok;
}

bool
RUN_Configure(RUN_State *r, const char *path, const char *text, const NTT_Now *now,
              char *reply, size_t replycap)
{
  char bad[300];
  reply[0] = '\0';
  if (text[strspn(text, " \t\r\n")] == '\0') {
    snprintf(reply, replycap, "Config Failed: no configuration lines");
    return false;
  }
  if (!runtime_allowed(text, bad, sizeof(bad))) {
    snprintf(reply, replycap, "Config Failed: %s", bad);
    return false;
  }
  char *old = runtime_lines(r);
  long old_lines = 0;
  for (const char *q = old; q && *q; q++)
    old_lines += *q == '\n';
  size_t need = (old ? strlen(old) : 0) + strlen(text) + 2;
  char *all = malloc(need);
  if (!all) {
    free(old);
    snprintf(reply, replycap, "Config Failed: out of memory");
    return false;
  }
  snprintf(all, need, "%s%s%s", old ? old : "", text,
           text[0] && text[strlen(text) - 1] == '\n' ? "" : "\n");
  free(old);
  RUN_Errors errs;
  RUN_Pending *p = prepare(path, all, &errs);
  bool ok = p && RUN_Commit(r, p, now, &errs);
  if (ok) {
    pthread_mutex_lock(&r->text_lock);
    free(r->runtime_text);
    r->runtime_text = all;
    pthread_mutex_unlock(&r->text_lock);
    all = NULL;
  }
  free(all);
  /* The first message about the lines just sent goes back to ntpq, numbered from 1 in
   * what was sent (earlier runtime lines are parsed again, and their warnings are old
   * news); on a failure with no such message, the first of all: the file may have gone
   * bad on disk. */
  const RUN_Message *first = NULL;
  for (size_t i = 0; i < errs.count && !first; i++) {
    const MSG_Message *m = &errs.items[i].msg;
    if (strcmp(m->file, RUNTIME_NAME) == 0 && m->line > old_lines)
      first = &errs.items[i];
  }
  char msg[512] = "";
  if (first)
    snprintf(reply, replycap, "Config %s: line %ld: %s%s", ok ? "Succeeded" : "Failed",
             (long)first->msg.line - old_lines,
             first->severity == RUN_SEV_WARNING ? "warning: " : "", first->msg.text);
  else if (!ok && errs.count)
    snprintf(reply, replycap, "Config Failed: %s",
             (RUN_FormatMessage(&errs.items[0], true, msg, sizeof(msg)), msg));
  else if (!ok)
    snprintf(reply, replycap, "Config Failed");
  RUN_FreeErrors(&errs);
  return ok;
}

void
RUN_ControlContext(const RUN_State *r, CTL_Ctx *c)
{
  memset(c, 0, sizeof(*c));
  c->sys = &r->sys;
  /* clock source of the system status word: the local clock (or orphan mode) for now */
  c->sys_source = r->sys.stratum < 16 ? CTW_SST_TS_LOCAL : CTW_SST_TS_UNSPEC;
  c->poll = r->policy.min_poll;
  c->minpoll = r->policy.min_poll;
  c->version = "ntpgated " NTPG_VERSION;
  c->processor = r->uts.machine;
  c->system = r->uts.sysname;
  c->release = r->uts.release;
  c->mon = r->mon;
  c->mon_params = &r->mon_params;
  c->rst = r->rst;
  c->keys = r->keys;
  c->control_key = r->cfg->control_key;
  c->verify = KEY_VerifyControl;
  c->sign = KEY_SignControl;
  memcpy(c->nonce_secret, r->nonce_secret, sizeof(c->nonce_secret));
}

int
RUN_Threads(const RUN_State *r)
{
  return threads_for(r->cfg);
}

MON_Table *
RUN_Monitor(const RUN_State *r)
{
  return r->mon;
}

SHD_Table *
RUN_Shed(const RUN_State *r)
{
  return r->shed;
}

bool
RUN_SetSourcePeers(RUN_State *r, const NetAddr *peers, size_t n)
{
  NetAddr *copy = n ? malloc(n * sizeof(*copy)) : NULL;
  if (n && !copy)
    return false;
  RST_List *w = ACC_WithSources(r->rst, peers, n, r->source_flags, NULL, 0);
  if (!w) {
    free(copy);
    return false;
  }
  if (n)
    memcpy(copy, peers, n * sizeof(*copy));
  free(r->peers);
  r->peers = copy;
  r->npeers = n;
  RST_Destroy(r->prev_rst); /* one generation kept, as in apply */
  r->prev_rst = r->rst;
  r->rst = w;
  r->ctx.rst = w;
  return true;
}

void
RUN_SetClientSystem(RUN_State *r, const SRV_System *sys, const NTT_Now *now)
{
  if (sys) {
    r->client_sys = *sys;
  } else if (r->client_synced) {
    r->start_mono_ns = now->mono_ns; /* orphan mode counts from the loss of sync */
  }
  r->client_synced = sys != NULL;
  update_system(r, now);
}

bool
RUN_TickDue(const RUN_State *r, const NTT_Now *now)
{
  bool was_synced = r->sys.stratum < 16;
  return now->mono_ns >= r->local_refresh_ns || (!was_synced && orphan_due(r, now));
}

void
RUN_Tick(RUN_State *r, const NTT_Now *now)
{
  if (RUN_TickDue(r, now))
    update_system(r, now);
}

const SRV_Ctx *
RUN_Context(const RUN_State *r)
{
  return &r->ctx;
}

static uint16_t
listen_port(const RUN_State *r)
{
  return (uint16_t)(r->port_override > 0 ? r->port_override : r->cfg->port);
}

static bool
excluded(const CNF_Config *cfg, const IFC_Address *a)
{
  for (size_t i = 0; i < cfg->n_interfaces; i++) {
    const CNF_Interface *in = &cfg->interfaces[i];
    if (in->action == CNF_IF_LISTEN)
      continue;
    if (in->match == CNF_IFM_NAME && strcmp(in->name, a->name) == 0)
      return true;
    if (in->match == CNF_IFM_ADDR && ADR_Equal(&in->addr, &a->addr))
      return true;
  }
  return false;
}

static bool
matches(const CNF_Interface *in, const IFC_Address *a)
{
  switch (in->match) {
    case CNF_IFM_NAME:
      return strcmp(in->name, a->name) == 0;
    case CNF_IFM_IPV4:
      return a->addr.family == ADR_INET4;
    case CNF_IFM_IPV6:
      return a->addr.family == ADR_INET6;
    case CNF_IFM_ADDR: {
      if (in->addr.family != a->addr.family)
        return false;
      NetAddr mask, x, y;
      ADR_MaskFromPrefix(in->addr.family, in->prefix, &mask);
      ADR_ApplyMask(&in->addr, &mask, &x);
      ADR_ApplyMask(&a->addr, &mask, &y);
      return ADR_Equal(&x, &y);
    }
    default:
      return false;
  }
}

static size_t
add_unique(NetAddr *out, size_t n, size_t max, const NetAddr *a)
{
  for (size_t i = 0; i < n; i++)
    if (ADR_Equal(&out[i], a))
      return n;
  if (n < max)
    out[n++] = *a;
  return n;
}

static size_t
add_wildcard(NetAddr *out, size_t n, size_t max, int family, uint16_t port)
{
  NetAddr any = {.family = (uint8_t)family, .port = port};
  return add_unique(out, n, max, &any);
}

size_t
RUN_ListenAddresses(const RUN_State *r, NetAddr *out, size_t max)
{
  const CNF_Config *cfg = r->cfg;
  uint16_t port = listen_port(r);
  IFC_Address local[256];
  int nlocal = IFC_List(local, 256);
  size_t n = 0;
  bool any_listen = false;
  for (size_t i = 0; i < cfg->n_interfaces; i++) {
    const CNF_Interface *in = &cfg->interfaces[i];
    if (in->action != CNF_IF_LISTEN)
      continue;
    any_listen = true;
    if (in->match == CNF_IFM_WILDCARD || in->match == CNF_IFM_ALL) {
      n = add_wildcard(out, n, max, ADR_INET4, port);
      n = add_wildcard(out, n, max, ADR_INET6, port);
    } else if (in->match == CNF_IFM_ADDR && in->prefix < 0) {
      NetAddr a = in->addr; /* exactly this address, local or not: bind will tell */
      a.port = port;
      n = add_unique(out, n, max, &a);
    } else {
      for (int k = 0; k < nlocal && k < 256; k++) {
        if (!matches(in, &local[k]) || excluded(cfg, &local[k]))
          continue;
        NetAddr a = local[k].addr;
        a.port = port;
        n = add_unique(out, n, max, &a);
      }
    }
  }
  if (!any_listen) {
    n = add_wildcard(out, n, max, ADR_INET4, port);
    n = add_wildcard(out, n, max, ADR_INET6, port);
  }
  return n;
}

const CNF_Config *
RUN_Config(const RUN_State *r)
{
  return r->cfg;
}

const char *
RUN_LogFile(const RUN_State *r)
{
  return r->cfg->logfile;
}

const char *
RUN_PidFile(const RUN_State *r)
{
  return r->cfg->pidfile;
}
