#include "runtime.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <pthread.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/utsname.h>
#include <time.h>
#include <unistd.h>

#include "access.h"
#include "control.h"
#include "config.h"
#include "iface.h"
#include "keys.h"
#include "leapsec.h"
#include "ntstls.h"
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
  LSC_List *leaps; /* the `leapfile` list in force; NULL without one */
  LSC_List *prev_leaps;
  LSC_Decision leap;     /* what we do about leaps now (update_system) */
  SRV_Smear smear;       /* r->ctx.smear points here while a leap is smeared */
  MON_Table *ctl_mon;    /* mode 6 limits (fixed parameters, see ctl_limits) */
  SHD_Table *shed;       /* load shedding; created once, reconfigured on reloads */
  NCK_Store *nts_keys;   /* NTS cookie master keys (RUN_SetNtsKeys); kept across commits */
  MON_Params mon_params; /* of mon, for monstats */
  uint8_t nonce_secret[16];
  struct utsname uts;
  /* Lines applied at runtime (ntpq :config), kept across reloads until a restart; the
   * lock lets a reload prepare (outside the exclusive section) read them safely. */
  pthread_mutex_t text_lock;
  char *runtime_text; /* normalized lines, each ending in '\n' (see runtime_merge) */
  /* Generation of what is in force: counts every commit. A prepared configuration records
   * the generation it was built on and RUN_Commit refuses it once another commit came in
   * (so a SIGHUP prepared before a :config cannot undo it). Written under text_lock inside
   * an exclusive section; read under text_lock. */
  uint64_t gen;
  NetAddr *peers; /* the client's servers, for `restrict source` entries */
  size_t npeers;
};

/* What a configuration builds besides itself; swapped in whole or not at all. */
typedef struct {
  RST_List *rst;
  KEY_Table *keys;
  MON_Params mon;
  uint32_t source_flags;
  LSC_List *leaps;
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
  free(t->leaps);
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

/* Test hook (tests/integration/test_control.py): NTPG_TEST_RESOLVE_DELAY_MS=N makes every
 * host-name lookup of a configuration take N ms more, like a resolver waiting for a DNS
 * server that does not answer. Never set outside tests. */
static size_t
resolve(const char *name, int family, NetAddr *out, size_t max)
{
  const char *delay = getenv("NTPG_TEST_RESOLVE_DELAY_MS");
  if (delay && atoi(delay) > 0) {
    struct timespec ts = {atoi(delay) / 1000, (long)(atoi(delay) % 1000) * 1000000};
    nanosleep(&ts, NULL);
  }
  return ACC_ResolveSystem(name, family, out, max);
}

/* The `leapfile` list: errors as the file's own FILE:LINE messages; an expired list, or one
 * near its expiry, is a warning (it is still used, see LSC_Decide). */
static bool
load_leaps(const char *path, RUN_Errors *errs, LSC_List **out)
{
  struct stat st;
  if (stat(path, &st) != 0 && errno == ENOENT) { /* as ntpd: say so and go on */
    add_record(errs, RUN_SEV_WARNING, path, 0,
               "leap-second list does not exist: leaps come only from the upstream servers' "
               "leap indicators");
    return true;
  }
  MSG_Errors me;
  MSG_Init(&me);
  LSC_List *l = malloc(sizeof(*l));
  bool ok = l && LSC_Load(l, path, &me);
  if (!l)
    add_msg(errs, "out of memory loading the leap-second list");
  collect(&me.errors, false, errs);
  collect(&me.warnings, true, errs);
  MSG_Clear(&me);
  if (!ok) {
    free(l);
    return false;
  }
  char day[13], text[200];
  LSC_FormatStamp(l->expires, day);
  LSC_Expiry e = LSC_CheckExpiry(l, (int64_t)time(NULL));
  if (e != LSC_EXPIRY_OK) {
    snprintf(text, sizeof(text),
             "leap-second list %s %.4s-%.2s-%.2s; it is still used, but get a current one "
             "(IERS, or the tzdata package's leap-seconds.list)",
             e == LSC_EXPIRY_PAST ? "expired on" : "expires on", day, day + 4, day + 6);
    add_record(errs, RUN_SEV_WARNING, path, 0, text);
  }
  *out = l;
  return true;
}

/* The `nts` lines: the certificate and key load and match, OpenSSL takes the lists. */
static bool
check_nts(const CNF_Nts *n, const char *path, RUN_Errors *errs)
{
  char why[512], text[600];
  NTL_Ctx *c = NTL_CreateServer(n, why, sizeof(why));
  if (c) {
    NTL_Destroy(c);
    return true;
  }
  snprintf(text, sizeof(text), "nts: %s", why);
  add_record(errs, RUN_SEV_ERROR, path, n->line, text);
  return false;
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
  t->rst = ACC_BuildRestrict(cfg, local, nl, resolve, &t->source_flags, acc_msg, &sink);
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
  if (cfg->leapfile && !load_leaps(cfg->leapfile, errs, &t->leaps))
    sink.failed = true;
  if (cfg->nts.enable && !check_nts(&cfg->nts, path, errs))
    sink.failed = true;
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

/* Leaps: while synchronized, the list in force or the upstreams' vote (the leap bits of
 * what we are synchronized to) says what to announce, arm in the kernel, or smear. */
static void
update_leap(RUN_State *r, const NTT_Now *now)
{
  int voted = r->sys.leap == PKT_LEAP_UNSYNC ? 0 : r->sys.leap;
  if (r->sys.leap == PKT_LEAP_UNSYNC) {
    memset(&r->leap, 0, sizeof(r->leap));
  } else {
    LSC_Decide(r->leaps, voted, (int64_t)now->real.tv_sec, r->cfg ? r->cfg->leap_smear : 0,
               &r->leap);
    r->sys.leap = (uint8_t)r->leap.li;
  }
  r->smear = (SRV_Smear){.leap = r->leap.leap, .dir = r->leap.dir, .interval = r->leap.smear};
  r->ctx.smear = r->leap.smear > 0 ? &r->smear : NULL;
}

/* Whether a leap boundary (the start of the last day, a smear, the leap itself) may be near:
 * then the system state is brought up to date every tick rather than every 64 s. */
static bool
leap_near(const RUN_State *r, const NTT_Now *now)
{
  if (r->leap.li || r->leap.arm || r->sys.leap == PKT_LEAP_ADD || r->sys.leap == PKT_LEAP_DEL)
    return true;
  if (!r->leaps)
    return false;
  LSC_State st;
  LSC_At(r->leaps, (int64_t)now->real.tv_sec, &st);
  return st.next && st.next - (int64_t)now->real.tv_sec <= 2 * LSC_ANNOUNCE;
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
  if (r->sys.phi <= 0) /* the local clock, orphan mode: tinker dispersion in force */
    r->sys.phi = r->cfg->tinker.dispersion * 1e-6;
  r->local_refresh_ns = now->mono_ns + LOCAL_REFRESH_NS;
  update_leap(r, now);
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
    r->mon = MON_CreateSecure(&t->mon);
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
  free(r->prev_leaps);
  r->prev_leaps = r->leaps;
  r->leaps = t->leaps;
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
                     .shed = r->shed,
                     .nts_keys = r->nts_keys};
  update_system(r, now); /* also sets ctx.smear */
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
  const char *why = NULL;
  RUN_State *r = calloc(1, sizeof(*r));
  if (!r) {
    why = "out of memory";
    goto fail;
  }
  r->port_override = port_override;
  r->precision = precision;
  r->start_mono_ns = now->mono_ns;
  pthread_mutex_init(&r->text_lock, NULL);
  uname(&r->uts);
  MON_Params cp;
  ctl_limits(&cp);
  r->ctl_mon = MON_CreateSecure(&cp);
  r->shed = SHD_CreateSecure();
  if (!r->ctl_mon || !r->shed) {
    why = "cannot create the control and load-shedding tables (out of memory, or no random "
          "numbers from the kernel for their keys)";
    goto fail;
  }
  if (!RNG_Secure(r->nonce_secret, sizeof(r->nonce_secret))) {
    why = "no random numbers from the kernel (getrandom failed): cannot make the mode 6 "
          "nonce secret";
    goto fail;
  }
  if (apply(r, cfg, &t, now, errs)) /* on failure it says why and frees cfg and t */
    return r;
  cfg = NULL;
fail: /* the one way out after load_all: everything made so far is freed */
  if (why)
    add_msg(errs, why);
  free_tables(&t);
  CNF_Destroy(cfg);
  if (r)
    RUN_Destroy(r);
  return NULL;
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
  free(r->leaps);
  free(r->prev_leaps);
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
  uint64_t gen;       /* RUN_State.gen it was built on */
  char *runtime_text; /* :config: the runtime lines to keep on commit; NULL: unchanged */
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

/* A copy of the runtime lines (NULL if none or no memory) and the generation in force. */
static char *
runtime_lines(RUN_State *r, uint64_t *gen)
{
  pthread_mutex_lock(&r->text_lock);
  char *text = r->runtime_text ? strdup(r->runtime_text) : NULL;
  *gen = r->gen;
  pthread_mutex_unlock(&r->text_lock);
  return text;
}

RUN_Pending *
RUN_Prepare(RUN_State *r, const char *path, RUN_Errors *errs)
{
  uint64_t gen;
  char *extra = runtime_lines(r, &gen);
  RUN_Pending *p = prepare(path, extra, errs);
  free(extra);
  if (p)
    p->gen = gen;
  return p;
}

bool
RUN_IsCurrent(const RUN_State *r, const RUN_Pending *p)
{
  return p->gen == r->gen; /* r->gen only changes in a section, where this is called */
}

void
RUN_Discard(RUN_Pending *p)
{
  if (!p)
    return;
  free_tables(&p->t);
  CNF_Destroy(p->cfg);
  free(p->runtime_text);
  free(p);
}

bool
RUN_Commit(RUN_State *r, RUN_Pending *p, const NTT_Now *now, RUN_Errors *errs)
{
  if (!RUN_IsCurrent(r, p)) {
    add_msg(errs, "the configuration in force changed (runtime :config) while this one was "
                  "prepared; nothing changed, prepare again");
    RUN_Discard(p);
    return false;
  }
  bool ok = apply(r, p->cfg, &p->t, now, errs); /* takes (or frees) cfg and tables */
  pthread_mutex_lock(&r->text_lock);
  if (ok) {
    r->gen++;
    if (p->runtime_text) {
      free(r->runtime_text);
      r->runtime_text = p->runtime_text;
      p->runtime_text = NULL;
    }
  }
  pthread_mutex_unlock(&r->text_lock);
  free(p->runtime_text);
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

/* A runtime line as kept: blanks collapsed to one space, none at either end (the lines
 * :config may use have no quoted words). Returns its length in out, 0 for a line that is
 * blank or only a comment. */
static size_t
normalize(const char *line, size_t n, char *out, size_t cap)
{
  size_t k = 0;
  bool blank = false;
  for (size_t i = 0; i < n; i++) {
    if (line[i] == ' ' || line[i] == '\t') {
      blank = k > 0;
      continue;
    }
    if (k == 0 && line[i] == '#')
      return 0;
    if (blank && k + 1 < cap)
      out[k++] = ' ';
    blank = false;
    if (k + 1 < cap)
      out[k++] = line[i];
  }
  out[k] = '\0';
  return k;
}

typedef struct {
  char **v;
  size_t n;
} Lines;

static void
free_lines(Lines *l)
{
  for (size_t i = 0; i < l->n; i++)
    free(l->v[i]);
  free(l->v);
  memset(l, 0, sizeof(*l));
}

static bool
has_line(const Lines *l, const char *s)
{
  for (size_t i = 0; i < l->n; i++)
    if (strcmp(l->v[i], s) == 0)
      return true;
  return false;
}

/* Append the normalized lines of text to l; a line already in l moves to the end. */
static bool
add_lines(Lines *l, const char *text)
{
  for (const char *line = text; line && *line;) {
    const char *end = strchr(line, '\n');
    size_t n = end ? (size_t)(end - line) : strlen(line);
    char *norm = malloc(n + 1);
    char **v = realloc(l->v, (l->n + 1) * sizeof(*v));
    if (!norm || !v) {
      free(norm);
      if (v)
        l->v = v;
      return false;
    }
    l->v = v;
    if (normalize(line, n, norm, n + 1) == 0) {
      free(norm);
    } else {
      size_t k = 0;
      for (size_t i = 0; i < l->n; i++) /* drop an earlier copy */
        if (strcmp(l->v[i], norm) != 0)
          l->v[k++] = l->v[i];
        else
          free(l->v[i]);
      l->n = k;
      l->v[l->n++] = norm;
    }
    line = end ? end + 1 : NULL;
  }
  return true;
}

/* The lines joined, each ending in '\n' (NULL: no memory). */
static char *
join_lines(const Lines *l, size_t *octets)
{
  size_t need = 1;
  for (size_t i = 0; i < l->n; i++)
    need += strlen(l->v[i]) + 1;
  char *s = malloc(need), *w = s;
  if (!s)
    return NULL;
  for (size_t i = 0; i < l->n; i++)
    w += sprintf(w, "%s\n", l->v[i]);
  *w = '\0';
  *octets = need - 1;
  return s;
}

/* The runtime lines after text: the earlier lines that text does not repeat (kept), then
 * text's own lines. An identical line sent again moves to the end rather than adding a
 * copy; every directive :config allows sets values (restrict ORs its flags into the entry
 * of its address and mask, unrestrict clears them, delrestrict removes the entry, discard
 * and mru set the options they name), so applying the line once more at the end gives the
 * same tables as applying both copies. */
static bool
runtime_merge(const char *old, const char *text, char **kept, size_t *kept_lines,
              char **merged, size_t *merged_lines, size_t *merged_octets)
{
  Lines o = {0}, t = {0}, k = {0};
  size_t kept_octets;
  bool ok = add_lines(&o, old) && add_lines(&t, text);
  for (size_t i = 0; ok && i < o.n; i++) {
    if (has_line(&t, o.v[i]))
      continue;
    char **v = realloc(k.v, (k.n + 1) * sizeof(*v));
    ok = v != NULL;
    if (ok) {
      k.v = v;
      k.v[k.n++] = o.v[i];
      o.v[i] = NULL;
    }
  }
  *kept = ok ? join_lines(&k, &kept_octets) : NULL;
  *kept_lines = k.n;
  *merged_lines = k.n + t.n;
  for (size_t i = 0; ok && i < t.n; i++) {
    char **v = realloc(k.v, (k.n + 1) * sizeof(*v));
    ok = v != NULL;
    if (ok) {
      k.v = v;
      k.v[k.n++] = t.v[i];
      t.v[i] = NULL;
    }
  }
  *merged = ok && *kept ? join_lines(&k, merged_octets) : NULL;
  free_lines(&o);
  free_lines(&t);
  free_lines(&k);
  if (!*merged) {
    free(*kept);
    *kept = NULL;
    return false;
  }
  return true;
}

/* The reply for ntpq after a prepare: the first message about the lines just sent,
 * numbered from 1 in what was sent (earlier runtime lines are parsed again, and their
 * warnings are old news); on a failure with no such message, the first of all: the file
 * may have gone bad on disk. */
static void
configure_reply(const RUN_Errors *errs, bool ok, size_t old_lines, char *reply,
                size_t replycap)
{
  const RUN_Message *first = NULL;
  for (size_t i = 0; i < errs->count && !first; i++) {
    const MSG_Message *m = &errs->items[i].msg;
    if (strcmp(m->file, RUNTIME_NAME) == 0 && m->line > (int)old_lines)
      first = &errs->items[i];
  }
  if (first)
    snprintf(reply, replycap, "Config %s: line %ld: %s%s", ok ? "Succeeded" : "Failed",
             (long)first->msg.line - (long)old_lines,
             first->severity == RUN_SEV_WARNING ? "warning: " : "", first->msg.text);
  else if (!ok)
    RUN_FailureReply(errs, reply, replycap);
}

void
RUN_FailureReply(const RUN_Errors *errs, char *reply, size_t replycap)
{
  char msg[512];
  if (errs->count)
    snprintf(reply, replycap, "Config Failed: %s",
             (RUN_FormatMessage(&errs->items[0], true, msg, sizeof(msg)), msg));
  else
    snprintf(reply, replycap, "Config Failed");
}

RUN_Pending *
RUN_PrepareConfigure(RUN_State *r, const char *path, const char *text, char *reply,
                     size_t replycap)
{
  char bad[300];
  reply[0] = '\0';
  if (text[strspn(text, " \t\r\n")] == '\0') {
    snprintf(reply, replycap, "Config Failed: no configuration lines");
    return NULL;
  }
  if (!runtime_allowed(text, bad, sizeof(bad))) {
    snprintf(reply, replycap, "Config Failed: %s", bad);
    return NULL;
  }
  uint64_t gen;
  char *old = runtime_lines(r, &gen);
  char *kept, *merged;
  size_t kept_lines, merged_lines, merged_octets;
  bool merge_ok =
      runtime_merge(old, text, &kept, &kept_lines, &merged, &merged_lines, &merged_octets);
  free(old);
  if (!merge_ok) {
    snprintf(reply, replycap, "Config Failed: out of memory");
    return NULL;
  }
  if (merged_octets > RUN_RUNTIME_MAX_OCTETS || merged_lines > RUN_RUNTIME_MAX_LINES) {
    snprintf(reply, replycap,
             "Config Failed: runtime configuration full (%zu lines, %zu octets with these; "
             "limit %d lines, %d octets until a restart)",
             merged_lines, merged_octets, RUN_RUNTIME_MAX_LINES, RUN_RUNTIME_MAX_OCTETS);
    free(kept);
    free(merged);
    return NULL;
  }
  /* Parsed: the kept lines, then the text as sent, so that messages carry its own line
   * numbers; what stays in force is merged (the same lines, normalized). */
  size_t need = strlen(kept) + strlen(text) + 2;
  char *all = malloc(need);
  if (!all) {
    free(kept);
    free(merged);
    snprintf(reply, replycap, "Config Failed: out of memory");
    return NULL;
  }
  snprintf(all, need, "%s%s%s", kept, text, text[strlen(text) - 1] == '\n' ? "" : "\n");
  free(kept);
  RUN_Errors errs;
  RUN_Pending *p = prepare(path, all, &errs);
  free(all);
  configure_reply(&errs, p != NULL, kept_lines, reply, replycap);
  RUN_FreeErrors(&errs);
  if (!p) {
    free(merged);
    return NULL;
  }
  p->gen = gen;
  p->runtime_text = merged;
  return p;
}

bool
RUN_Configure(RUN_State *r, const char *path, const char *text, const NTT_Now *now,
              char *reply, size_t replycap)
{
  RUN_Pending *p = RUN_PrepareConfigure(r, path, text, reply, replycap);
  if (!p)
    return false;
  RUN_Errors errs = {0};
  bool ok = RUN_Commit(r, p, now, &errs);
  if (!ok)
    RUN_FailureReply(&errs, reply, replycap);
  RUN_FreeErrors(&errs);
  return ok;
}

size_t
RUN_RuntimeSize(RUN_State *r, size_t *octets)
{
  size_t lines = 0;
  pthread_mutex_lock(&r->text_lock);
  *octets = r->runtime_text ? strlen(r->runtime_text) : 0;
  for (const char *q = r->runtime_text; q && *q; q++)
    lines += *q == '\n';
  pthread_mutex_unlock(&r->text_lock);
  return lines;
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
  if (r->leaps) { /* ntpd's tai, leapsec and expire */
    LSC_State st;
    LSC_At(r->leaps, (int64_t)time(NULL), &st);
    c->tai = st.tai;
    c->leapsec = st.last;
    c->leap_expire = r->leaps->expires;
  }
}

int
RUN_LeapArm(const RUN_State *r)
{
  return r->leap.arm;
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
  return now->mono_ns >= r->local_refresh_ns || (!was_synced && orphan_due(r, now)) ||
         (was_synced && leap_near(r, now));
}

void
RUN_Tick(RUN_State *r, const NTT_Now *now)
{
  if (RUN_TickDue(r, now))
    update_system(r, now);
}

void
RUN_SetNtsKeys(RUN_State *r, NCK_Store *keys)
{
  r->nts_keys = keys;
  r->ctx.nts_keys = keys;
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
