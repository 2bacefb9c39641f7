#include "access.h"

#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "msglist.h"

#define ACC_MAX_HOST_ADDRS 16

size_t
ACC_ResolveSystem(const char *name, int family, NetAddr *out, size_t max)
{
  struct addrinfo hints = {.ai_socktype = SOCK_DGRAM}, *res = NULL;
  hints.ai_family = family == ADR_INET4 ? AF_INET : family == ADR_INET6 ? AF_INET6 : AF_UNSPEC;
  if (getaddrinfo(name, NULL, &hints, &res) != 0)
    return 0;
  size_t n = 0;
  for (const struct addrinfo *ai = res; ai && n < max; ai = ai->ai_next) {
    NetAddr a;
    if (!ADR_FromSockaddr(ai->ai_addr, &a))
      continue;
    a.port = 0;
    bool dup = false;
    for (size_t i = 0; i < n; i++)
      dup = dup || ADR_Equal(&out[i], &a);
    if (!dup)
      out[n++] = a;
  }
  freeaddrinfo(res);
  return n;
}

typedef struct {
  RST_Entry *v;
  size_t n, cap;
  bool oom;
} EntryVec;

static RST_Entry *
find(EntryVec *ev, const RST_Entry *key)
{
  for (size_t i = 0; i < ev->n; i++) {
    RST_Entry *e = &ev->v[i];
    if (e->mflags == key->mflags && ADR_Equal(&e->addr, &key->addr) &&
        ADR_Equal(&e->mask, &key->mask))
      return e;
  }
  return NULL;
}

static void
push(EntryVec *ev, const RST_Entry *e)
{
  if (ev->n == ev->cap) {
    size_t cap = ev->cap ? ev->cap * 2 : 64;
    RST_Entry *v = realloc(ev->v, cap * sizeof(*v));
    if (!v) {
      ev->oom = true;
      return;
    }
    ev->v = v;
    ev->cap = cap;
  }
  ev->v[ev->n++] = *e;
}

static void
apply_line(EntryVec *ev, const CNF_Restrict *r, const RST_Entry *key)
{
  RST_Entry *e = find(ev, key);
  switch (r->op) {
    case CNF_RST_ADD:
      if (e) {
        e->flags |= key->flags;
        e->ippeerlimit = key->ippeerlimit;
      } else {
        push(ev, key);
      }
      break;
    case CNF_RST_DELETE:
      if (e)
        *e = ev->v[--ev->n];
      break;
    case CNF_RST_CLEAR:
      if (e)
        e->flags &= ~key->flags;
      break;
  }
}

/* The entry a line is about, for one address (hosts) or its own address/mask. */
static RST_Entry
entry_for(const CNF_Restrict *r, const NetAddr *addr, const NetAddr *mask)
{
  RST_Entry e = {.addr = *addr,
                 .mask = *mask,
                 .flags = r->flags,
                 .mflags = r->match,
                 .ippeerlimit = r->ippeerlimit};
  e.addr.port = 0;
  e.mask.port = 0;
  return e;
}

static void
apply_host(EntryVec *ev, const CNF_Restrict *r, ACC_ResolveFn resolve, ACC_MsgFn msg,
           void *arg)
{
  NetAddr addrs[ACC_MAX_HOST_ADDRS];
  size_t n = resolve ? resolve(r->host, r->family, addrs, ACC_MAX_HOST_ADDRS) : 0;
  if (n == 0) {
    char text[200];
    snprintf(text, sizeof(text), "restrict: host name '%.64s' does not resolve; line skipped",
             r->host);
    msg(arg, true, r->line, text);
    return;
  }
  for (size_t i = 0; i < n; i++) {
    NetAddr mask;
    ADR_MaskFromPrefix(addrs[i].family, ADR_Bits(&addrs[i]), &mask);
    RST_Entry e = entry_for(r, &addrs[i], &mask);
    apply_line(ev, r, &e);
  }
}

RST_List *
ACC_BuildRestrict(const CNF_Config *cfg, const IFC_Address *locals, size_t nlocals,
                  ACC_ResolveFn resolve, uint32_t *source_flags, ACC_MsgFn msg, void *arg)
{
  EntryVec ev = {0};
  *source_flags = ACC_NO_SOURCE;
  for (size_t i = 0; i < cfg->n_restricts; i++) {
    const CNF_Restrict *r = &cfg->restricts[i];
    switch (r->kind) {
      case CNF_RST_SOURCE: /* the template exists from its first line on */
        if (*source_flags == ACC_NO_SOURCE)
          *source_flags = 0;
        if (r->op == CNF_RST_ADD)
          *source_flags |= r->flags;
        else if (r->op == CNF_RST_CLEAR)
          *source_flags &= ~r->flags;
        break;
      case CNF_RST_HOST:
        apply_host(&ev, r, resolve, msg, arg);
        break;
      case CNF_RST_DEFAULT:
      case CNF_RST_ADDR: {
        RST_Entry e = entry_for(r, &r->addr, &r->mask);
        apply_line(&ev, r, &e);
        break;
      }
    }
  }
  for (size_t i = 0; i < nlocals; i++) {
    NetAddr mask;
    ADR_MaskFromPrefix(locals[i].addr.family, ADR_Bits(&locals[i].addr), &mask);
    RST_Entry e = {.addr = locals[i].addr,
                   .mask = mask,
                   .flags = RST_IGNORE,
                   .mflags = RST_M_INTERFACE | RST_M_NTPPORT,
                   .ippeerlimit = -1};
    e.addr.port = 0;
    if (!find(&ev, &e))
      push(&ev, &e);
  }
  if (ev.oom) {
    free(ev.v);
    msg(arg, false, 0, "out of memory building the restrict list");
    return NULL;
  }
  char err[200] = "";
  RST_List *l = RST_Create(ev.v, ev.n, err, sizeof(err));
  free(ev.v);
  if (!l) {
    char text[256];
    snprintf(text, sizeof(text), "restrict list: %s", err);
    msg(arg, false, 0, text);
  }
  return l;
}

RST_List *
ACC_WithSources(const RST_List *base, const NetAddr *peers, size_t npeers,
                uint32_t source_flags, char *err, size_t errlen)
{
  EntryVec ev = {0};
  for (size_t i = 0; i < RST_Count(base); i++) {
    const RST_Entry *e = RST_Get(base, i);
    if (!(e->mflags & RST_M_SOURCE))
      push(&ev, e);
  }
  for (size_t i = 0; source_flags != ACC_NO_SOURCE && i < npeers; i++) {
    NetAddr a = peers[i], mask;
    ADR_Unmap(&a);
    a.port = 0;
    ADR_MaskFromPrefix(a.family, ADR_Bits(&a), &mask);
    RST_Entry e = {.addr = a,
                   .mask = mask,
                   .flags = source_flags,
                   .mflags = RST_M_SOURCE,
                   .ippeerlimit = -1};
    if (!find(&ev, &e))
      push(&ev, &e);
  }
  if (ev.oom) {
    free(ev.v);
    MSG_SetError(err, errlen, "out of memory building the restrict list");
    return NULL;
  }
  RST_List *l = RST_Create(ev.v, ev.n, err, errlen);
  free(ev.v);
  return l;
}

/* ntpd's "entries or KiB" pair as a number of records. */
static uint32_t
mru_entries(const CNF_MruSize *s)
{
  if (!s->in_kib)
    return s->value;
  /* a record plus room for its share of the index and the table's fixed parts, so that
   * the whole table stays within maxmem */
  uint64_t n = (uint64_t)s->value * 1024 / (MON_RECORD_BYTES + 4);
  return n > UINT32_MAX ? UINT32_MAX : (uint32_t)n;
}

bool
ACC_MonitorParams(const CNF_Config *cfg, MON_Params *p, ACC_MsgFn msg, void *arg)
{
  const CNF_Discard *d = &cfg->discard;
  MON_DefaultParams(p);
  p->average = d->average;
  p->minimum = d->minimum;
  p->monitor = (uint32_t)d->monitor;
  p->leak = d->leak;
  p->kodlimit = (uint32_t)d->kodlimit;
  p->netprefix4 = d->netprefix4;
  p->netprefix6 = d->netprefix6;
  p->netaverage = d->netaverage;
  p->maxdepth = mru_entries(&cfg->mru.max);
  p->mindepth = cfg->mru.mindepth;
  p->maxage = cfg->mru.maxage;
  if (p->mindepth > p->maxdepth)
    p->mindepth = p->maxdepth;
  char err[200] = "";
  if (MON_ValidateParams(p, err, sizeof(err)))
    return true;
  char text[256];
  snprintf(text, sizeof(text), "discard/mru: %s", err);
  msg(arg, false, 0, text);
  return false;
}

void
ACC_ShedParams(const CNF_Config *cfg, SHD_Params *out)
{
  const CNF_Discard *d = &cfg->discard;
  *out = (SHD_Params){.rate = (uint32_t)d->shedrate,
                      .depth = (uint32_t)d->sheddepth,
                      .hold_s = (uint32_t)d->shedhold,
                      .leak = d->leak,
                      .wait_ms = (uint32_t)d->shedwait};
}
