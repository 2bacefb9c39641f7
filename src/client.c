#include "client.h"

#include <errno.h>
#include <netdb.h>
#include <openssl/crypto.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include "assoc.h"
#include "control.h"
#include "discipline.h"
#include "log.h"
#include "netio.h"
#include "ntsassoc.h"
#include "ntskecli.h"
#include "ntstls.h"
#include "packet.h"
#include "rng.h"
#include "siv.h"
#include "statslog.h"

#define CLI_MAX_PEERS 64
#define CLI_MAX_POOL_ADDRS 16
#define CLI_POOL_STRUCK 16 /* struck addresses remembered per pool line */
#define CLI_NTS_RETIRE 2   /* failed NTS-KE handshakes in a row that retire a pool member */
#define CLI_TIMER_S 0.1    /* poll scheduling granularity */
#define CLI_DRIFT_INTERVAL_NS (3600LL * 1000000000) /* write the drift file hourly */
#define CLI_REFRESH_NS                                                                        \
  (64LL * 1000000000) /* re-publish the system state at least this often */

typedef struct {
  CNF_Assoc conf; /* host points into `host` */
  char *host;
  int pool;       /* index into pools, -1 for server/peer lines */
  bool resolving; /* a resolver thread is working on host */
  bool resolved;  /* addr is valid */
  NetAddr addr;
  ASC_Assoc *a; /* NULL until resolved and set up */
  NIO_Socket sock;
  uint16_t associd; /* for ntpq: 1.. in creation order, never reused */
  uint64_t sent;
  uint64_t outcomes[ASC_OUTCOME_COUNT];
  uint64_t kods[4];  /* KoDs received: RATE, DENY, RSTR, any other code (metrics) */
  uint8_t select;    /* CTW_SEL_* from the last selection */
  NTT_Now last_rx;   /* when the last accepted reply arrived (mono_ns 0: none yet) */
  NTT_Stamp reftime; /* the server's reference time in that reply */
  uint8_t nevents;   /* protostats: events reported (to 15) and the last one's code */
  uint8_t last_event;
  /* NTS sources (`nts` on the line); nts is NULL for the others */
  NTA_State *nts;     /* keys, cookies, when to re-key (ntsassoc.h) */
  NTL_Ctx *tls;       /* the NTS-KE client context: a server line's own, a pool line's */
  bool own_tls;       /* tls is this peer's to free (server lines) */
  NetAddr ke_addr;    /* where NTS-KE goes: the resolved address and the TCP port */
  struct KeJob *ke;   /* the handshake under way (NULL: none) */
  LOG_Limiter ke_log; /* handshake failures, logged at most a few a minute */
} Peer;

/* One NTS-KE handshake on a helper thread; done is set under the client's lock. */
typedef struct KeJob {
  CLI_Client *c;
  NTL_Ctx *tls;
  char *host;
  NetAddr ke;
  NKC_Status st;
  NKC_Result res;
  double secs; /* how long the handshake took (for the log) */
  bool done;
} KeJob;

/* An address a pool line's retired member had: not taken again before until_ns, even if
 * the name gives it again; each retirement of the same address doubles the wait. */
typedef struct {
  NetAddr addr;
  int64_t until_ns;
  int shift; /* the wait, log2 s: tos kodbackoff, then + 1 per retirement, to kodbackoffmax */
} Struck;

typedef struct {
  CNF_Assoc conf;
  char *host;
  NTL_Ctx *tls; /* nts: the members' NTS-KE context */
  bool resolving;
  NetAddr addrs[CLI_MAX_POOL_ADDRS];
  size_t naddrs;
  int64_t retry_ns; /* re-resolve after this when members are missing */
  Struck struck[CLI_POOL_STRUCK];
  size_t nstruck;
} PoolLine;

/* One name to resolve, handed to a helper thread; the answer comes back under the lock. */
typedef struct {
  CLI_Client *c;
  char *host;
  int family;
  int peer; /* index into peers, or -1 */
  int pool; /* index into pools, or -1 */
} Job;

struct CLI_Client {
  pthread_mutex_t lock;
  EVL_Loop *loop;
  CLK_Clock *clk;
  int8_t precision;
  KEY_Table *keys;
  CNF_Tos tos;
  double phi;                  /* s/s: dispersion growth (tinker dispersion) */
  DSC_SelectParams dsc_select; /* for diagnostics */
  DSC_System *dsc;
  char *driftfile;
  int64_t drift_next_ns;
  Peer peers[CLI_MAX_PEERS];
  size_t npeers;
  uint16_t next_associd;
  PoolLine pools[CLI_MAX_PEERS];
  size_t npools;
  int evfd; /* resolver threads signal here */
  int jobs; /* resolver threads running */
  pthread_cond_t jobs_done;
  bool closing;
  NIO_Batch *batch;
  DSC_Selection sel;
  bool have_sel;
  bool synced; /* what we last told the owner */
  int64_t published_ns;
  int64_t tick_ns;
  LOG_Limiter kod_log, err_log;
  uint64_t requests, send_errors;
  uint64_t outcomes[ASC_OUTCOME_COUNT];
  CLI_SyncFn on_sync;
  CLI_PeersFn on_peers;
  STL_Writer *stats; /* statistics files (borrowed; NULL: none) */
  int stats_sys_id;  /* the system peer last reported to protostats (-1: none) */
  uint8_t sys_nevents, sys_last_event;
  bool peers_dirty; /* the set of active servers changed since on_peers was last called */
  void *arg;
  /* NTS */
  SIV_Ctx *siv;                        /* the loop thread's AES-SIV context */
  int abort_fd;                        /* an eventfd: written to end handshakes at once */
  uint16_t ke_port;                    /* `nts port`: NTS-KE's default TCP port */
  uint64_t nts_ke[NKC_STATUS_COUNT];   /* handshakes by outcome */
  uint64_t nts_rx[NTA_RX_COUNT];       /* NTS replies by NTA_Open's verdict */
  uint64_t nts_cookies, nts_no_cookie; /* cookies received; polls without a cookie */
  uint64_t nts_retired;                /* pool members retired for failing NTS-KE */
  bool any_nts;                        /* a source of the configuration uses NTS */
};

static const ASC_Random secure_random = {ASC_SecureFill, NULL};

/* ---- resolution ---- */

static void *
resolve_thread(void *arg)
{
  Job *j = arg;
  NetAddr out[CLI_MAX_POOL_ADDRS];
  size_t n = 0;
  struct addrinfo hints = {.ai_socktype = SOCK_DGRAM}, *res = NULL;
  hints.ai_family = j->family == ADR_INET4   ? AF_INET
                    : j->family == ADR_INET6 ? AF_INET6
                                             : AF_UNSPEC;
  if (getaddrinfo(j->host, NULL, &hints, &res) == 0) {
    for (const struct addrinfo *ai = res; ai && n < CLI_MAX_POOL_ADDRS; ai = ai->ai_next) {
      NetAddr a;
      bool dup = false;
      if (!ADR_FromSockaddr(ai->ai_addr, &a))
        continue;
      for (size_t i = 0; i < n; i++)
        dup = dup || ADR_Equal(&out[i], &a);
      if (!dup)
        out[n++] = a;
    }
    freeaddrinfo(res);
  }
  CLI_Client *c = j->c;
  pthread_mutex_lock(&c->lock);
  if (j->peer >= 0) {
    Peer *p = &c->peers[j->peer];
    p->resolving = false;
    if (n > 0) {
      p->addr = out[0];
      p->addr.port = p->conf.port;
      p->resolved = true;
    }
  } else {
    PoolLine *pl = &c->pools[j->pool];
    pl->resolving = false;
    for (size_t i = 0; i < n; i++) {
      out[i].port = pl->conf.port;
      pl->addrs[i] = out[i];
    }
    pl->naddrs = n;
  }
  uint64_t one = 1; /* wake the loop; before jobs drops, so CLI_Destroy waits for it */
  ssize_t rc = write(c->evfd, &one, sizeof(one));
  (void)rc;
  c->jobs--;
  pthread_cond_broadcast(&c->jobs_done);
  pthread_mutex_unlock(&c->lock);
  free(j->host);
  free(j);
  return NULL;
}

/* Run fn(arg) on a detached helper thread. */
static bool
run_detached(void *(*fn)(void *), void *arg)
{
  pthread_t t;
  pthread_attr_t attr;
  pthread_attr_init(&attr);
  pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
  bool ok = pthread_create(&t, &attr, fn, arg) == 0;
  pthread_attr_destroy(&attr);
  return ok;
}

/* Start resolving host on a helper thread (lock held). */
static bool
start_job(CLI_Client *c, const char *host, int family, int peer, int pool)
{
  Job *j = calloc(1, sizeof(*j));
  if (!j || !(j->host = strdup(host))) {
    free(j);
    return false;
  }
  j->c = c;
  j->family = family;
  j->peer = peer;
  j->pool = pool;
  if (!run_detached(resolve_thread, j)) {
    free(j->host);
    free(j);
    return false;
  }
  c->jobs++;
  return true;
}

/* ---- NTS-KE (ntskecli.h), on helper threads ---- */

static void *
ke_thread(void *arg)
{
  KeJob *j = arg;
  struct timespec t0, t1;
  clock_gettime(CLOCK_MONOTONIC, &t0);
  j->st = NKC_Handshake(j->tls, j->host, &j->ke, j->c->abort_fd, &j->res);
  clock_gettime(CLOCK_MONOTONIC, &t1);
  j->secs = (double)(t1.tv_sec - t0.tv_sec) + (t1.tv_nsec - t0.tv_nsec) / 1e9;
  CLI_Client *c = j->c;
  pthread_mutex_lock(&c->lock);
  j->done = true; /* the loop thread collects it (collect_ke) */
  uint64_t one = 1;
  ssize_t rc = write(c->evfd, &one, sizeof(one));
  (void)rc;
  c->jobs--;
  pthread_cond_broadcast(&c->jobs_done);
  pthread_mutex_unlock(&c->lock);
  return NULL;
}

static void
free_ke(KeJob *j)
{
  if (!j)
    return;
  free(j->host);
  OPENSSL_cleanse(&j->res, sizeof(j->res));
  free(j);
}

/* Start a handshake for p (lock held). */
static bool
start_ke(CLI_Client *c, Peer *p)
{
  KeJob *j = calloc(1, sizeof(*j));
  if (!j || !(j->host = strdup(p->host))) {
    free(j);
    return false;
  }
  j->c = c;
  j->tls = p->tls;
  j->ke = p->ke_addr;
  if (!run_detached(ke_thread, j)) {
    free_ke(j);
    return false;
  }
  c->jobs++;
  p->ke = j;
  NTA_KeStarted(p->nts);
  return true;
}

/* ---- associations ---- */

static void on_reply(void *arg, int fd, uint32_t events);

/* Give a resolved peer its association and socket (lock held). */
static bool
activate(CLI_Client *c, Peer *p, const NTT_Now *now)
{
  char err[200], name[ADR_STRLEN];
  ASC_Params ap;
  ASC_ParamsFromConfig(&p->conf, &c->tos, &p->addr, c->precision, &ap);
  ap.phi = c->phi;
  if (!NIO_Connect(&p->addr, &p->sock, err, sizeof(err))) {
    LOG_Warnx("server %s: %s", ADR_FormatPort(&p->addr, name, sizeof(name)), err);
    return false;
  }
  p->a = ASC_Create(&ap, now, &secure_random);
  if (!p->a || !EVL_AddFd(c->loop, p->sock.fd, on_reply, c)) {
    ASC_Destroy(p->a);
    p->a = NULL;
    NIO_Close(&p->sock);
    return false;
  }
  if (!p->associd) /* an NTS source has had its number since it waited for NTS-KE */
    p->associd = c->next_associd++;
  c->peers_dirty = true;
  LOG_Info("association %u: %s %s (%s)", p->associd, p->pool >= 0 ? "pool member" : "server",
           ADR_FormatPort(&p->addr, name, sizeof(name)), p->host);
  return true;
}

/* Close the association and its socket (lock held); the peer keeps its place. */
static void
close_assoc(CLI_Client *c, Peer *p)
{
  if (p->sock.fd >= 0) {
    EVL_RemoveFd(c->loop, p->sock.fd);
    NIO_Close(&p->sock);
  }
  if (p->a)
    c->peers_dirty = true;
  ASC_Destroy(p->a);
  p->a = NULL;
}

static void
deactivate(CLI_Client *c, Peer *p)
{
  close_assoc(c, p);
  p->resolved = false;
  p->associd = 0;       /* a slot used again is a new association */
  if (p->nts && !p->ke) /* a handshake under way is collected, then ignored */
    NTA_Init(p->nts);
}

#define REPLACED_REFUSED "replaced: it refused us (DENY/RSTR)"
#define REPLACED_UNREACHABLE "replaced: unreachable"

/* The struck entry of address a on line pl, or NULL. */
static Struck *
find_struck(PoolLine *pl, const NetAddr *a)
{
  for (size_t i = 0; i < pl->nstruck; i++)
    if (ADR_Equal(&pl->struck[i].addr, a))
      return &pl->struck[i];
  return NULL;
}

/* A pool member that failed (a DENY/RSTR KoD, unreachable for ASC_UNREACH polls, NTS-KE that
 * keeps failing) is retired and its address struck: the member taking its place has another
 * address, and the struck one is not taken again, whatever the next resolutions give, for
 * 2^kodbackoff s (17 min), doubled each time the same address is struck again up to
 * 2^kodbackoffmax: a server that refuses us hears from us as seldom as a configured one
 * backing off from DENY (docs/client.md). Lock held. */
static void
retire_member(CLI_Client *c, Peer *p, const NTT_Now *now, const char *why)
{
  PoolLine *pl = &c->pools[p->pool];
  const NetAddr *a = p->nts ? &p->ke_addr : &p->addr;
  Struck *st = find_struck(pl, a);
  int first = c->tos.kod_backoff > 0 ? c->tos.kod_backoff : 10;
  int most = c->tos.kod_backoff_max >= first ? c->tos.kod_backoff_max : first;
  if (st) {
    st->shift = st->shift < most ? st->shift + 1 : most;
  } else {
    if (pl->nstruck < CLI_POOL_STRUCK) {
      st = &pl->struck[pl->nstruck++];
    } else { /* full: the entry that ends first makes room */
      st = &pl->struck[0];
      for (size_t i = 1; i < pl->nstruck; i++)
        if (pl->struck[i].until_ns < st->until_ns)
          st = &pl->struck[i];
    }
    st->addr = *a;
    st->shift = first;
  }
  st->until_ns = now->mono_ns + ((int64_t)1 << st->shift) * 1000000000;
  char name[ADR_STRLEN];
  LOG_Info("pool member %s %s; the address is not taken again for %lld s",
           ADR_FormatPort(a, name, sizeof(name)), why, (long long)1 << st->shift);
  deactivate(c, p);
}

/* Whether a is struck on line pl at now. */
static bool
is_struck(PoolLine *pl, const NetAddr *a, const NTT_Now *now)
{
  const Struck *st = find_struck(pl, a);
  return st && now->mono_ns < st->until_ns;
}

/* A pool member, or a server in service: NTS sources count from their resolution on, as
 * their association only exists once NTS-KE has given it keys. */
static bool
in_service(const Peer *p)
{
  return p->a || (p->nts && p->resolved);
}

/* Tell the owner which servers we poll, if that changed (without the lock). */
static void
report_peers(CLI_Client *c)
{
  NetAddr addrs[CLI_MAX_PEERS];
  size_t n = 0;
  pthread_mutex_lock(&c->lock);
  bool dirty = c->peers_dirty && !c->closing;
  c->peers_dirty = false;
  for (size_t i = 0; dirty && i < c->npeers; i++)
    if (c->peers[i].a)
      addrs[n++] = c->peers[i].addr;
  pthread_mutex_unlock(&c->lock);
  if (dirty && c->on_peers)
    c->on_peers(c->arg, addrs, n);
}

static bool
address_in_use(const CLI_Client *c, const NetAddr *a)
{
  for (size_t i = 0; i < c->npeers; i++) {
    const Peer *p = &c->peers[i];
    if ((p->a && ADR_Equal(&p->addr, a)) ||
        (p->nts && p->resolved && ADR_Equal(&p->ke_addr, a)))
      return true;
  }
  return false;
}

static Peer *
new_peer(CLI_Client *c, const CNF_Assoc *conf, int pool)
{
  if (c->npeers == CLI_MAX_PEERS)
    return NULL;
  Peer *p = &c->peers[c->npeers];
  memset(p, 0, sizeof(*p));
  p->host = strdup(conf->host ? conf->host : "");
  if (!p->host)
    return NULL;
  p->conf = *conf;
  p->conf.host = p->host;
  p->conf.ca = NULL; /* read at CLI_Create only */
  p->pool = pool;
  p->sock.fd = -1;
  if (conf->options & CNF_AO_NTS) {
    p->nts = malloc(sizeof(*p->nts));
    if (!p->nts) {
      free(p->host);
      return NULL;
    }
    NTA_Init(p->nts);
    p->tls = pool >= 0 ? c->pools[pool].tls : NULL;
  }
  c->npeers++;
  return p;
}

/* A resolved NTS source waits for NTS-KE at its address (lock held). It is listed for ntpq
 * from now on, with an association number that its association keeps (CLI_FillControl). */
static void
await_ke(CLI_Client *c, Peer *p)
{
  p->ke_addr = p->addr;
  p->ke_addr.port = p->conf.ke_port ? p->conf.ke_port : c->ke_port;
  if (!p->associd)
    p->associd = c->next_associd++;
}

/* Pool lines: fill free member slots from the resolved addresses; re-resolve when the
 * addresses are used up (lock held). */
static void
manage_pools(CLI_Client *c, const NTT_Now *now)
{
  int want = c->tos.maxclock > 0 ? c->tos.maxclock : 10;
  for (size_t k = 0; k < c->npools; k++) {
    PoolLine *pl = &c->pools[k];
    int members = 0;
    for (size_t i = 0; i < c->npeers; i++)
      members += c->peers[i].pool == (int)k && in_service(&c->peers[i]);
    for (size_t i = 0; i < pl->naddrs && members < want; i++) {
      if (address_in_use(c, &pl->addrs[i]) || is_struck(pl, &pl->addrs[i], now))
        continue;
      Peer *p = NULL;
      for (size_t j = 0; j < c->npeers && !p; j++) /* reuse a retired member's slot */
        if (c->peers[j].pool == (int)k && !in_service(&c->peers[j]) &&
            !c->peers[j].resolving && !c->peers[j].ke)
          p = &c->peers[j];
      if (!p)
        p = new_peer(c, &pl->conf, (int)k);
      if (!p)
        break;
      p->addr = pl->addrs[i];
      p->resolved = true;
      if (p->nts) { /* NTS-KE first (manage_nts) */
        await_ke(c, p);
        members++;
      } else if (activate(c, p, now)) {
        members++;
      }
    }
    if (members < want && !pl->resolving && now->mono_ns >= pl->retry_ns) {
      pl->naddrs = 0;
      pl->resolving = start_job(c, pl->host, pl->conf.family, -1, (int)k);
      pl->retry_ns = now->mono_ns + 60LL * 1000000000;
    }
  }
}

/* A finished handshake (lock held): keys and cookies in, the association set up or moved
 * to the NTP server NTS-KE named; or the failure counted, logged and backed off. */
static void
collect_ke(CLI_Client *c, Peer *p, const NTT_Now *now)
{
  KeJob *j = p->ke;
  char ke[ADR_STRLEN], ntp[ADR_STRLEN];
  p->ke = NULL;
  c->nts_ke[j->st]++;
  ADR_FormatPort(&j->ke, ke, sizeof(ke));
  if (!p->resolved) { /* retired meanwhile */
    free_ke(j);
    NTA_Init(p->nts);
    return;
  }
  const uint8_t *cookies[NKE_COOKIES];
  for (size_t i = 0; i < j->res.n_cookies; i++)
    cookies[i] = j->res.cookies[i];
  if (j->st == NKC_OK && NTA_KeDone(p->nts, j->res.c2s, j->res.s2c, cookies, j->res.cookie_len,
                                    j->res.n_cookies, now->mono_ns)) {
    c->nts_cookies += j->res.n_cookies;
    if (p->a && !(ADR_Equal(&p->addr, &j->res.ntp) && p->addr.port == j->res.ntp.port))
      close_assoc(c, p); /* NTS-KE names another NTP server now */
    p->addr = j->res.ntp;
    LOG_Info("NTS-KE with %s (%s) in %.1f ms: %zu cookies, NTP server %s", p->host, ke,
             j->secs * 1e3, j->res.n_cookies, ADR_FormatPort(&p->addr, ntp, sizeof(ntp)));
    if (!p->a && !activate(c, p, now))
      NTA_KeFailed(p->nts, now->mono_ns); /* no socket: try again after the back-off */
  } else {
    /* (NTA_KeDone counted a handshake without a usable cookie as failed) */
    double b =
        j->st == NKC_OK ? NTA_Backoff(p->nts->failures) : NTA_KeFailed(p->nts, now->mono_ns);
    if (LOG_Allow(&p->ke_log, now->mono_ns, 3, 60))
      LOG_Warnx("NTS-KE with %s (%s) failed (%s): %s; next attempt in %.0f s", p->host, ke,
                NKC_StatusName(j->st), j->st == NKC_OK ? "no usable cookie" : j->res.why, b);
    if (p->pool >= 0 && !p->a && p->nts->failures >= CLI_NTS_RETIRE) {
      char why[64];
      snprintf(why, sizeof(why), "retired after %u failed NTS-KE handshakes",
               p->nts->failures);
      c->nts_retired++;
      retire_member(c, p, now, why);
    }
  }
  free_ke(j);
}

/* Start the handshakes that are due, collect those that are done (lock held). */
static void
manage_nts(CLI_Client *c, const NTT_Now *now)
{
  for (size_t i = 0; i < c->npeers; i++) {
    Peer *p = &c->peers[i];
    if (!p->nts)
      continue;
    if (p->ke && p->ke->done)
      collect_ke(c, p, now);
    if (!p->ke && p->resolved && NTA_KeDue(p->nts, now->mono_ns) && !c->closing &&
        !start_ke(c, p))
      NTA_KeFailed(p->nts, now->mono_ns);
  }
}

/* Activate peers whose names came back (lock held). */
static void
collect_resolved(CLI_Client *c, const NTT_Now *now)
{
  for (size_t i = 0; i < c->npeers; i++) {
    Peer *p = &c->peers[i];
    if (p->pool < 0 && p->resolved && !p->a && !p->nts)
      activate(c, p, now);
    if (p->pool < 0 && p->resolved && p->nts && p->ke_addr.family == ADR_NONE)
      await_ke(c, p);
  }
  manage_pools(c, now);
  manage_nts(c, now);
}

static void
on_resolved(void *arg, int fd, uint32_t events)
{
  CLI_Client *c = arg;
  uint64_t v;
  (void)events;
  ssize_t rc = read(fd, &v, sizeof(v));
  (void)rc;
  NTT_Now now;
  CLK_ReadNow(c->clk, &now);
  pthread_mutex_lock(&c->lock);
  collect_resolved(c, &now);
  pthread_mutex_unlock(&c->lock);
  report_peers(c);
}

/* ---- statistics files (statslog.h; the writer never blocks us) ---- */

/* ntpd's peer status word: flags and selection code, then event count and last event. */
static uint16_t
peer_status(const Peer *p)
{
  ASC_Status st;
  ASC_GetStatus(p->a, &st);
  unsigned hi = p->select & 7u;
  hi |= p->pool < 0 ? CTW_PST_CONFIG : 0;
  hi |= ASC_GetParams(p->a)->key || p->nts ? CTW_PST_AUTHENABLE | CTW_PST_AUTHENTIC : 0;
  hi |= st.reach ? CTW_PST_REACH : 0;
  return (uint16_t)(hi << 8 | (unsigned)(p->nevents << 4) | (p->last_event & 15u));
}

/* A peer event (ntpd's codes: 0x4 reachable, 0xa sys_peer), written with 0x80 set. */
static void
stats_peer_event(CLI_Client *c, Peer *p, uint8_t code, const char *name, const NTT_Now *now)
{
  if (!STL_Wants(c->stats, STF_PROTOSTATS))
    return;
  p->nevents += p->nevents < 15;
  p->last_event = code;
  STF_Proto r = {.status = peer_status(p), .code = (uint8_t)(0x80 | code)};
  ADR_Format(&p->addr, r.addr, sizeof(r.addr));
  snprintf(r.event, sizeof(r.event), "%s", name);
  STL_PutProto(c->stats, &now->real, &r);
}

/* A system event (0x3 spike_detect, 0x5 clock_sync, 0x7 panic_stop, 0x8 no_sys_peer,
 * 0xc clock_step) with ntpd's system status word: leap, clock source, count, event. */
static void
stats_sys_event(CLI_Client *c, bool synced, uint8_t code, const char *name, const NTT_Now *now)
{
  if (!STL_Wants(c->stats, STF_PROTOSTATS))
    return;
  c->sys_nevents += c->sys_nevents < 15;
  c->sys_last_event = code;
  unsigned hi = synced ? (unsigned)CTW_SST_TS_NTP : (3u << 6 | CTW_SST_TS_UNSPEC);
  STF_Proto r = {.addr = "0.0.0.0",
                 .status = (uint16_t)(hi << 8 | (unsigned)(c->sys_nevents << 4) | code),
                 .code = code};
  snprintf(r.event, sizeof(r.event), "%s", name);
  STL_PutProto(c->stats, &now->real, &r);
}

static void
stats_peer_sample(CLI_Client *c, Peer *p, const NTT_Now *now)
{
  DSC_Candidate cd;
  if (p->outcomes[ASC_SAMPLE] == 1)
    stats_peer_event(c, p, 0x4, "reachable", now);
  if (!STL_Wants(c->stats, STF_PEERSTATS) || !ASC_GetCandidate(p->a, now, 0, &cd))
    return;
  STF_Peer r = {.status = peer_status(p),
                .offset = cd.offset,
                .delay = cd.delay,
                .disp = cd.disp,
                .jitter = cd.jitter};
  ADR_Format(&p->addr, r.addr, sizeof(r.addr));
  STL_PutPeer(c->stats, &now->real, &r);
}

static void
stats_loop(CLI_Client *c, DSC_Event ev, const NTT_Now *now)
{
  if (c->have_sel && c->sel.status == DSC_OK && c->sel.sys_id != c->stats_sys_id) {
    c->stats_sys_id = c->sel.sys_id;
    if (c->sel.sys_id >= 0 && (size_t)c->sel.sys_id < c->npeers)
      stats_peer_event(c, &c->peers[c->sel.sys_id], 0xa, "sys_peer", now);
  }
  if (ev == DSC_EV_SPIKE)
    stats_sys_event(c, c->synced, 0x3, "spike_detect", now);
  else if (ev == DSC_EV_PANIC)
    stats_sys_event(c, c->synced, 0x7, "panic_stop", now);
  else if (ev == DSC_EV_STEP)
    stats_sys_event(c, c->synced, 0xc, "clock_step", now);
  if ((ev != DSC_EV_SLEW && ev != DSC_EV_STEP) || !STL_Wants(c->stats, STF_LOOPSTATS))
    return;
  const DSC_Loop *l = DSC_GetLoop(c->dsc);
  STF_Loop r = {.offset = l->last_offset,
                .freq_ppm = l->freq * 1e6,
                .jitter = l->jitter,
                .wander_ppm = l->wander * 1e6,
                .poll = DSC_GetPoll(c->dsc)};
  STL_PutLoop(c->stats, &now->real, &r);
}

/* ---- publishing ---- */

/* Tell the owner what we serve (without the lock). */
static void
publish(CLI_Client *c, const NTT_Now *now, bool force)
{
  SYS_Vars sys;
  pthread_mutex_lock(&c->lock);
  bool synced = c->dsc && DSC_GetServerSystem(c->dsc, now, c->precision, &sys);
  bool due = force || synced != c->synced ||
             (synced && now->mono_ns - c->published_ns >= CLI_REFRESH_NS);
  if (due) {
    if (synced != c->synced) {
      LOG_Info("%s", synced ? "synchronized to an upstream server" : "lost synchronization");
      stats_sys_event(c, synced, synced ? 0x5 : 0x8, synced ? "clock_sync" : "no_sys_peer",
                      now);
    }
    c->synced = synced;
    c->published_ns = now->mono_ns;
  }
  pthread_mutex_unlock(&c->lock);
  if (due && c->on_sync)
    c->on_sync(c->arg, synced ? &sys : NULL);
}

/* ---- discipline ---- */

static void
after_step(CLI_Client *c, double stepped)
{
  for (size_t i = 0; i < c->npeers; i++)
    if (c->peers[i].a)
      ASC_AfterStep(c->peers[i].a, stepped);
}

static uint8_t
tally(DSC_SelState s)
{
  switch (s) {
    case DSC_SEL_FALSETICKER:
      return CTW_SEL_FALSETICK;
    case DSC_SEL_EXCESS:
      return CTW_SEL_EXCESS;
    case DSC_SEL_OUTLIER:
      return CTW_SEL_OUTLIER;
    case DSC_SEL_SURVIVOR:
      return CTW_SEL_CANDIDATE;
    case DSC_SEL_SYSPEER:
      return CTW_SEL_SYSPEER;
    default:
      return CTW_SEL_REJECT;
  }
}

/* A new filtered sample: selection, loop, poll (lock held). */
static void
update(CLI_Client *c, NTT_Now *now)
{
  DSC_Candidate cand[CLI_MAX_PEERS] = {0};
  size_t idx[CLI_MAX_PEERS], n = 0;
  for (size_t i = 0; i < c->npeers; i++) {
    if (!c->peers[i].a)
      continue;
    ASC_GetCandidate(c->peers[i].a, now, (int)i, &cand[n]);
    LOG_Debug("candidate %u: offset %+.6f delay %.6f stratum %u: %s", c->peers[i].associd,
              cand[n].offset, cand[n].delay, cand[n].stratum,
              DSC_UnfitName(DSC_Unfit(&cand[n], &c->dsc_select)));
    idx[n++] = i;
  }
  DSC_Event ev = DSC_Update(c->dsc, cand, n, now, &c->sel);
  c->have_sel = true;
  LOG_Debug("selection %s, %zu survivors, offset %+.6f s: %s",
            DSC_SelectStatusName(c->sel.status), c->sel.survivors, c->sel.offset,
            DSC_EventName(ev));
  for (size_t k = 0; k < n && k < c->sel.n; k++)
    c->peers[idx[k]].select = tally(c->sel.state[k]);
  stats_loop(c, ev, now);
  switch (ev) {
    case DSC_EV_STEP:
      LOG_Info("clock %s by %+.6f s",
               CLK_IsNoAdjust(c->clk) ? "would be stepped (-x)" : "stepped", c->sel.offset);
      CLK_ReadNow(c->clk, now);
      after_step(c, DSC_GetStepped(c->dsc));
      break;
    case DSC_EV_STEP_FAILED:
      LOG_Warnx("the clock driver refused to step the clock");
      break;
    case DSC_EV_PANIC:
      LOG_Warnx("offset %+.3f s is beyond the panic threshold; the clock is left alone",
                c->sel.offset);
      break;
    default:
      break;
  }
  int poll = DSC_GetPoll(c->dsc);
  for (size_t i = 0; i < c->npeers; i++)
    if (c->peers[i].a)
      ASC_SetPoll(c->peers[i].a, poll, now);
}

/* ---- packets ---- */

/* The kernel's transmit timestamp of the outstanding request, if the socket has one
 * queued (ASC_SetKernelTransmitTime decides whether it is that request's). */
static void
take_tx_timestamp(Peer *p)
{
  struct timespec ts;
  if (NIO_ReadTxTimestamp(&p->sock, &ts))
    ASC_SetKernelTransmitTime(p->a, &ts);
}

static void
count_kod(Peer *p, uint32_t kiss)
{
  char code[5];
  PKT_RefidToCode(kiss, code);
  static const char *const known[] = {"RATE", "DENY", "RSTR"};
  size_t i = 0;
  while (i < 3 && strcmp(code, known[i]) != 0)
    i++;
  p->kods[i]++;
}

static void
log_kod(CLI_Client *c, const Peer *p, ASC_Outcome o, const ASC_Result *res, int64_t mono_ns)
{
  if (!res->log || !LOG_Allow(&c->kod_log, mono_ns, 10, 60))
    return;
  char code[5], name[ADR_STRLEN];
  PKT_RefidToCode(res->kiss, code);
  ADR_FormatPort(&p->addr, name, sizeof(name));
  if (o == ASC_KOD_DENY)
    LOG_Info("KoD %s from %s: not polling it for %.0f s", code, name, res->backoff);
  else if (o == ASC_KOD_RATE)
    LOG_Info("KoD RATE from %s: poll raised to at least 2^%d s", name, res->poll_floor);
  else
    LOG_Info("KoD %s from %s ignored (no action defined for this code)", code, name);
}

static void
on_reply(void *arg, int fd, uint32_t events)
{
  CLI_Client *c = arg;
  (void)events;
  bool updated = false;
  NTT_Now now;
  pthread_mutex_lock(&c->lock);
  Peer *p = NULL;
  for (size_t i = 0; i < c->npeers && !p; i++)
    if (c->peers[i].a && c->peers[i].sock.fd == fd)
      p = &c->peers[i];
  if (p) /* drains the error queue (EPOLLERR); a late stamp is still in time for its reply */
    take_tx_timestamp(p);
  int n = p ? NIO_Receive(&p->sock, c->batch) : 0;
  CLK_ReadNow(c->clk, &now);
  for (int i = 0; i < n; i++) {
    NIO_Datagram *d = &c->batch->in[i];
    if (d->truncated) {
      p->outcomes[ASC_DROP_FORMAT]++;
      c->outcomes[ASC_DROP_FORMAT]++;
      continue;
    }
    NTT_Now rx = now;
    if (d->rx.tv_sec != 0)
      rx.real = d->rx;
    NetAddr from = d->src;
    ADR_Unmap(&from);
    ASC_Result res;
    ASC_Outcome o;
    if (p->nts) {
      unsigned fresh = 0;
      NTA_RxStatus ns = NTA_Open(p->nts, d->data, d->len, c->siv, now.mono_ns, &fresh);
      c->nts_rx[ns]++;
      c->nts_cookies += fresh;
      if (ns == NTA_RX_NAK && LOG_Allow(&c->kod_log, now.mono_ns, 10, 60))
        LOG_Info("NTS NAK (NTSN) from association %u: NTS-KE again unless the next poll is "
                 "answered",
                 p->associd);
      o = ASC_ProcessNtsReply(p->a, d->data, d->len, &from, &rx, ns == NTA_RX_AUTH, &res);
    } else {
      o = ASC_ProcessReply(p->a, d->data, d->len, &from, &rx, c->keys, &res);
    }
    p->outcomes[o]++;
    c->outcomes[o]++;
    if (o == ASC_SAMPLE) {
      p->last_rx = rx;
      p->reftime = res.reftime;
    }
    if (o == ASC_KOD_DENY || o == ASC_KOD_RATE || o == ASC_KOD_IGNORED) {
      count_kod(p, res.kiss);
      log_kod(c, p, o, &res, now.mono_ns);
    }
    /* The selection runs on every accepted sample, not only on a new filter output: a
     * sample that is not the filter's best still lowers the dispersion that decides
     * whether a source is fit. DSC_Update feeds the loop only a newer system-peer sample. */
    if (o == ASC_SAMPLE) {
      update(c, &now);
      stats_peer_sample(c, p, &now);
      updated = true;
    }
  }
  if (p && ASC_NeedsReplacement(p->a) && p->pool >= 0) {
    ASC_Status st; /* a KoD, or an error (ICMP) read after ASC_UNREACH silent polls */
    ASC_GetStatus(p->a, &st);
    retire_member(c, p, &now, st.denied ? REPLACED_REFUSED : REPLACED_UNREACHABLE);
    manage_pools(c, &now);
  }
  pthread_mutex_unlock(&c->lock);
  if (updated)
    publish(c, &now, true);
}

/* T1 is read again just before the send (building and signing the request come first), not
 * after it: on loopback the server may receive (and timestamp) the request before send()
 * even returns. Where the socket gives the kernel's transmit timestamp, that replaces it. */
static void
send_request(CLI_Client *c, Peer *p)
{
  uint8_t buf[PKT_MAX_LEN];
  size_t len = 0;
  NTT_Now now;
  CLK_ReadNow(c->clk, &now);
  if (ASC_BuildRequest(p->a, &now, c->keys, &secure_random, buf, &len) != ASC_TX_SEND)
    return;
  if (p->nts) { /* the NTS fields, or nothing at all: never plain NTP */
    uint8_t rnd[NTA_RANDOM];
    NTA_TxStatus ts = RNG_Secure(rnd, sizeof(rnd))
                          ? NTA_Seal(p->nts, buf, sizeof(buf), rnd, c->siv, now.mono_ns, &len)
                          : NTA_TX_FAIL;
    if (ts == NTA_TX_NO_COOKIE)
      c->nts_no_cookie++;
    if (ts != NTA_TX_OK)
      return;
  }
  struct timespec stale;
  NIO_ReadTxTimestamp(&p->sock, &stale); /* whatever an earlier request left in the queue */
  NTT_Now t1;
  CLK_ReadNow(c->clk, &t1);
  ASC_SetTransmitTime(p->a, &t1.real);
  if (send(p->sock.fd, buf, len, 0) == (ssize_t)len) {
    p->sent++;
    c->requests++;
    take_tx_timestamp(p);
  } else {
    c->send_errors++;
    if (LOG_Allow(&c->err_log, now.mono_ns, 5, 60))
      LOG_Warn("sending to association %u", p->associd);
  }
}

static void
on_timer(void *arg)
{
  CLI_Client *c = arg;
  NTT_Now now;
  CLK_ReadNow(c->clk, &now);
  pthread_mutex_lock(&c->lock);
  for (size_t i = 0; i < c->npeers; i++) {
    Peer *p = &c->peers[i];
    if (p->a && now.mono_ns >= ASC_NextPollTime(p->a))
      send_request(c, p);
  }
  manage_nts(c, &now);
  bool second = now.mono_ns - c->tick_ns >= 1000000000;
  if (second) {
    c->tick_ns = now.mono_ns;
    double slewed = DSC_Tick(c->dsc, &now);
    for (size_t i = 0; i < c->npeers; i++)
      if (c->peers[i].a)
        ASC_AdjustOffsets(c->peers[i].a, slewed);
    for (size_t i = 0; i < c->npeers; i++) {
      Peer *p = &c->peers[i];
      if (p->a && p->pool >= 0 && ASC_NeedsReplacement(p->a))
        retire_member(c, p, &now, REPLACED_UNREACHABLE);
    }
    manage_pools(c, &now);
    if (c->driftfile && c->synced && now.mono_ns >= c->drift_next_ns) {
      c->drift_next_ns = now.mono_ns + CLI_DRIFT_INTERVAL_NS;
      if (!DSC_WriteDriftFile(c->driftfile, DSC_GetFrequency(c->dsc) * 1e6))
        LOG_Warn("writing %s", c->driftfile);
    }
  }
  pthread_mutex_unlock(&c->lock);
  if (second) {
    report_peers(c);
    publish(c, &now, false);
  }
}

/* ---- life ---- */

struct CLI_Tls {
  size_t n;
  NTL_Ctx *ctx[]; /* by association index; NULL for a source without NTS */
};

CLI_Tls *
CLI_LoadTls(const CNF_Config *cfg, char *err, size_t errlen)
{
  err[0] = '\0';
  bool any = false;
  for (size_t i = 0; i < cfg->n_assocs; i++)
    any = any || (cfg->assocs[i].options & CNF_AO_NTS);
  if (!any)
    return NULL;
  CLI_Tls *t = calloc(1, sizeof(*t) + cfg->n_assocs * sizeof(t->ctx[0]));
  if (!t) {
    snprintf(err, errlen, "out of memory");
    return NULL;
  }
  t->n = cfg->n_assocs;
  for (size_t i = 0; i < cfg->n_assocs; i++) {
    const CNF_Assoc *ca = &cfg->assocs[i];
    if (!(ca->options & CNF_AO_NTS))
      continue;
    char why[400];
    t->ctx[i] = NTL_CreateClient(ca->ca ? ca->ca : cfg->nts.ca,
                                 (ca->options & CNF_AO_NOVAL) != 0, why, sizeof(why));
    if (!t->ctx[i]) {
      snprintf(err, errlen, "line %d: NTS source %s: %s", ca->line, ca->host, why);
      CLI_FreeTls(t);
      return NULL;
    }
  }
  return t;
}

void
CLI_FreeTls(CLI_Tls *t)
{
  if (!t)
    return;
  for (size_t i = 0; i < t->n; i++)
    NTL_Destroy(t->ctx[i]);
  free(t);
}

CLI_Client *
CLI_Create(EVL_Loop *loop, CLK_Clock *clk, const CNF_Config *cfg, KEY_Table *keys,
           CLI_Tls *tls_set, CLI_SyncFn on_sync, CLI_PeersFn on_peers, void *arg, char *err,
           size_t errlen)
{
  if (!tls_set) { /* nothing loaded before: load now (err says why if one fails) */
    tls_set = CLI_LoadTls(cfg, err, errlen);
    if (!tls_set && err[0]) {
      KEY_Destroy(keys);
      return NULL;
    }
  }
  CLI_Client *c = calloc(1, sizeof(*c));
  if (!c) {
    snprintf(err, errlen, "out of memory");
    KEY_Destroy(keys);
    CLI_FreeTls(tls_set);
    return NULL;
  }
  pthread_mutex_init(&c->lock, NULL);
  pthread_cond_init(&c->jobs_done, NULL);
  c->loop = loop;
  c->clk = clk;
  c->keys = keys;
  c->precision = (int8_t)CLK_PrecisionLog2(clk);
  c->tos = cfg->tos;
  c->phi = cfg->tinker.dispersion * 1e-6;
  c->on_sync = on_sync;
  c->on_peers = on_peers;
  c->arg = arg;
  c->next_associd = 1;
  c->evfd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
  c->abort_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
  c->ke_port = cfg->nts.port ? cfg->nts.port : CNF_NTS_KE_PORT;
  c->batch = malloc(sizeof(*c->batch));
  NTT_Now now;
  CLK_ReadNow(clk, &now);
  c->tick_ns = now.mono_ns;
  if (cfg->driftfile)
    c->driftfile = strdup(cfg->driftfile);
  double ppm = 0;
  bool have = cfg->driftfile && DSC_ReadDriftFile(cfg->driftfile, &ppm);
  DSC_Params dp;
  DSC_ParamsFromConfig(cfg, &dp);
  dp.loop.precision_log2 = c->precision;
  c->dsc_select = dp.select;
  c->dsc = DSC_Create(&dp, clk, have, ppm * 1e-6, &now);
  for (size_t i = 0; i < cfg->n_assocs; i++)
    c->any_nts = c->any_nts || (cfg->assocs[i].options & CNF_AO_NTS);
  if (c->evfd < 0 || c->abort_fd < 0 || !c->batch || !c->dsc ||
      (c->any_nts && !(c->siv = SIV_Create())) || !EVL_AddFd(loop, c->evfd, on_resolved, c) ||
      EVL_AddTimer(loop, CLI_TIMER_S, on_timer, c) < 0) {
    snprintf(err, errlen, "cannot set up the client: %s", strerror(errno));
    CLI_FreeTls(tls_set);
    CLI_Destroy(c);
    return NULL;
  }
  pthread_mutex_lock(&c->lock);
  for (size_t i = 0; i < cfg->n_assocs; i++) {
    const CNF_Assoc *ca = &cfg->assocs[i];
    NTL_Ctx *tls = NULL;
    if (tls_set && i < tls_set->n) { /* ours now */
      tls = tls_set->ctx[i];
      tls_set->ctx[i] = NULL;
    }
    if (ca->type == CNF_POOL) {
      if (c->npools == CLI_MAX_PEERS) {
        NTL_Destroy(tls);
        continue;
      }
      PoolLine *pl = &c->pools[c->npools++];
      pl->host = strdup(ca->host);
      pl->conf = *ca;
      pl->conf.host = pl->host;
      pl->conf.ca = NULL;
      pl->tls = tls;
      continue;
    }
    Peer *p = new_peer(c, ca, -1);
    if (!p) {
      NTL_Destroy(tls);
      break;
    }
    p->tls = tls;
    p->own_tls = true;
    if (ca->numeric) {
      p->addr = ca->addr;
      p->addr.port = ca->port;
      p->resolved = true;
    } else {
      p->resolving = start_job(c, p->host, ca->family, (int)(p - c->peers), -1);
    }
  }
  CLI_FreeTls(tls_set);
  collect_resolved(c, &now);
  pthread_mutex_unlock(&c->lock);
  report_peers(c);
  return c;
}

void
CLI_Destroy(CLI_Client *c)
{
  if (!c)
    return;
  pthread_mutex_lock(&c->lock);
  c->closing = true;
  if (c->abort_fd >= 0) { /* handshakes under way end at once */
    uint64_t one = 1;
    ssize_t rc = write(c->abort_fd, &one, sizeof(one));
    (void)rc;
  }
  while (c->jobs > 0) /* resolver and NTS-KE threads write into us: wait for them */
    pthread_cond_wait(&c->jobs_done, &c->lock);
  pthread_mutex_unlock(&c->lock);
  for (size_t i = 0; i < c->npeers; i++) {
    Peer *p = &c->peers[i];
    free_ke(p->ke);
    p->ke = NULL;
    deactivate(c, p);
    free(p->host);
    if (p->nts) {
      NTA_Clear(p->nts);
      free(p->nts);
    }
    if (p->own_tls)
      NTL_Destroy(p->tls);
  }
  for (size_t i = 0; i < c->npools; i++) {
    free(c->pools[i].host);
    NTL_Destroy(c->pools[i].tls);
  }
  if (c->abort_fd >= 0)
    close(c->abort_fd);
  SIV_Destroy(c->siv);
  if (c->evfd >= 0) {
    EVL_RemoveFd(c->loop, c->evfd);
    close(c->evfd);
  }
  DSC_Destroy(c->dsc);
  KEY_Destroy(c->keys);
  free(c->driftfile);
  free(c->batch);
  pthread_cond_destroy(&c->jobs_done);
  pthread_mutex_destroy(&c->lock);
  free(c);
}

void
CLI_SetKeys(CLI_Client *c, KEY_Table *keys)
{
  pthread_mutex_lock(&c->lock);
  KEY_Destroy(c->keys);
  c->keys = keys;
  pthread_mutex_unlock(&c->lock);
}

bool
CLI_HasNts(const CLI_Client *c)
{
  return c->any_nts;
}

size_t
CLI_Count(CLI_Client *c)
{
  pthread_mutex_lock(&c->lock);
  size_t n = 0;
  for (size_t i = 0; i < c->npeers; i++)
    n += c->peers[i].a != NULL;
  pthread_mutex_unlock(&c->lock);
  return n;
}

static void
fill_peer(const CLI_Client *c, const Peer *p, const NTT_Now *now, CTL_Peer *o)
{
  ASC_Status st;
  DSC_Candidate cd;
  const ASC_Params *ap = ASC_GetParams(p->a);
  ASC_GetStatus(p->a, &st);
  bool have = ASC_GetCandidate(p->a, now, 0, &cd);
  memset(o, 0, sizeof(*o));
  o->associd = p->associd;
  o->configured = p->pool < 0;
  o->authentic = ap->key != 0 || ap->nts;
  o->nts = ap->nts;
  o->select = c->have_sel ? p->select : CTW_SEL_REJECT;
  o->srcadr = p->addr;
  o->hostname = p->host;
  o->hmode = PKT_MODE_CLIENT;
  o->pmode = PKT_MODE_SERVER;
  o->hpoll = (int8_t)st.hpoll;
  o->ppoll = (int8_t)st.poll;
  o->precision = c->precision;
  o->reach = st.reach;
  o->unreach = st.unreach;
  o->keyid = ap->key;
  o->sent = p->sent;
  o->received = p->outcomes[ASC_SAMPLE] + p->outcomes[ASC_KOD_DENY] +
                p->outcomes[ASC_KOD_RATE] + p->outcomes[ASC_KOD_IGNORED];
  o->kod_rate = p->kods[0];
  o->kod_deny = p->kods[1];
  o->kod_rstr = p->kods[2];
  o->kod_other = p->kods[3];
  o->badauth = p->outcomes[ASC_DROP_AUTH];
  o->bogusorg = p->outcomes[ASC_DROP_BOGUS_ORIGIN] + p->outcomes[ASC_DROP_ZERO_ORIGIN];
  o->oldpkt = p->outcomes[ASC_DROP_DUPLICATE] + p->outcomes[ASC_DROP_NOT_PENDING];
  int64_t next = ASC_NextPollTime(p->a);
  o->timer = next > now->mono_ns ? (uint32_t)((next - now->mono_ns) / 1000000000) : 0;
  if (p->last_rx.mono_ns != 0) { /* ntpq's "when" */
    o->rec = NTT_FromTimespec(&p->last_rx.real);
    o->reftime = p->reftime;
    o->timerec = (uint32_t)((now->mono_ns - p->last_rx.mono_ns) / 1000000000);
  }
  o->leap = PKT_LEAP_UNSYNC;
  o->stratum = 16;
  if (have) {
    o->leap = cd.leap;
    o->stratum = cd.stratum;
    o->offset = cd.offset;
    o->delay = cd.delay;
    o->jitter = cd.jitter;
    o->disp = cd.disp;
    o->rootdelay = cd.root_delay;
    o->rootdisp = cd.root_disp;
    o->refid = cd.peer_refid;
  }
}

/* An NTS source without an association yet (NTS-KE under way, failing or backing off): what
 * ntpq -p shows of it, the NTS-KE address with refid .NTS., stratum 16 and reach 0, so that a
 * source that never gets keys is seen (and a metrics alert on reach 0 fires). */
static void
fill_awaiting_ke(const CLI_Client *c, const Peer *p, const NTT_Now *now, CTL_Peer *o)
{
  memset(o, 0, sizeof(*o));
  o->associd = p->associd;
  o->configured = p->pool < 0;
  o->nts = true;
  o->select = CTW_SEL_REJECT;
  o->srcadr = p->ke_addr;
  o->hostname = p->host;
  o->hmode = PKT_MODE_CLIENT;
  o->hpoll = o->ppoll = (int8_t)p->conf.minpoll;
  o->precision = c->precision;
  o->leap = PKT_LEAP_UNSYNC;
  o->stratum = 16;
  o->refid = (uint32_t)'N' << 24 | (uint32_t)'T' << 16 | (uint32_t)'S' << 8;
  o->unreach = p->nts->failures;
  int64_t due = p->nts->ke_due_ns;
  o->timer = !p->ke && due > now->mono_ns ? (uint32_t)((due - now->mono_ns) / 1000000000) : 0;
}

void
CLI_FillControl(CLI_Client *c, CTL_Ctx *ctx, CTL_Peer *peers, size_t max)
{
  NTT_Now now;
  CLK_ReadNow(c->clk, &now);
  pthread_mutex_lock(&c->lock);
  size_t n = 0;
  for (size_t i = 0; i < c->npeers && n < max; i++) {
    const Peer *p = &c->peers[i];
    if (p->a)
      fill_peer(c, p, &now, &peers[n++]);
    else if (p->nts && p->resolved && p->associd)
      fill_awaiting_ke(c, p, &now, &peers[n++]);
  }
  ctx->peers = peers;
  ctx->n_peers = n;
  const DSC_Loop *l = DSC_GetLoop(c->dsc);
  ctx->offset = DSC_GetOffset(c->dsc, &now);
  ctx->frequency_ppm = l->freq * 1e6;
  ctx->clk_jitter = l->jitter;
  ctx->clk_wander_ppm = l->wander * 1e6;
  ctx->poll = (int8_t)DSC_GetPoll(c->dsc);
  if (c->synced && c->have_sel && c->sel.status == DSC_OK) {
    int sys = c->sel.sys_id;
    ctx->sys_peer = sys >= 0 && (size_t)sys < c->npeers ? c->peers[sys].associd : 0;
    ctx->sys_jitter = c->sel.jitter;
    ctx->sys_source = CTW_SST_TS_NTP;
  }
  pthread_mutex_unlock(&c->lock);
}

void
CLI_SetStats(CLI_Client *c, STL_Writer *w)
{
  pthread_mutex_lock(&c->lock);
  c->stats = w;
  c->stats_sys_id = -1;
  pthread_mutex_unlock(&c->lock);
}

/* The NTS counters (lock held): names and values, at most CLI_NTS_COUNTERS. */
static size_t
nts_counters(const CLI_Client *c, CTL_Counter *out)
{
  static const char *const ke[NKC_STATUS_COUNT] = {"client_nts_ke_ok",
                                                   "client_nts_ke_fail_connect",
                                                   "client_nts_ke_fail_tls",
                                                   "client_nts_ke_fail_verify",
                                                   "client_nts_ke_fail_protocol",
                                                   "client_nts_ke_fail_timeout"};
  size_t n = 0;
  for (int i = 0; i < NKC_STATUS_COUNT; i++)
    out[n++] = (CTL_Counter){ke[i], c->nts_ke[i]};
  out[n++] = (CTL_Counter){"client_nts_cookies", c->nts_cookies};
  out[n++] = (CTL_Counter){"client_nts_auth", c->nts_rx[NTA_RX_AUTH]};
  out[n++] = (CTL_Counter){"client_nts_ntsn", c->nts_rx[NTA_RX_NAK]};
  out[n++] = (CTL_Counter){"client_nts_dropped_unauth",
                           c->nts_rx[NTA_RX_UNAUTH] + c->nts_rx[NTA_RX_NOT_PENDING]};
  out[n++] = (CTL_Counter){"client_nts_kod_ignored", c->nts_rx[NTA_RX_UNAUTH_KOD]};
  out[n++] = (CTL_Counter){"client_nts_no_cookie", c->nts_no_cookie};
  out[n++] = (CTL_Counter){"client_nts_pool_retired", c->nts_retired};
  return n;
}

size_t
CLI_NtsCounters(CLI_Client *c, CTL_Counter *out, size_t max)
{
  CTL_Counter all[CLI_NTS_COUNTERS];
  pthread_mutex_lock(&c->lock);
  size_t n = nts_counters(c, all);
  pthread_mutex_unlock(&c->lock);
  n = n < max ? n : max;
  memcpy(out, all, n * sizeof(*out));
  return n;
}

void
CLI_LogCounters(CLI_Client *c)
{
  CTL_Counter nts[CLI_NTS_COUNTERS];
  pthread_mutex_lock(&c->lock);
  LOG_Info("stats: client_requests %llu", (unsigned long long)c->requests);
  LOG_Info("stats: client_send_errors %llu", (unsigned long long)c->send_errors);
  for (int i = 0; i < ASC_OUTCOME_COUNT; i++)
    LOG_Info("stats: client_%s %llu", ASC_OutcomeName((ASC_Outcome)i),
             (unsigned long long)c->outcomes[i]);
  size_t n = nts_counters(c, nts);
  for (size_t i = 0; i < n; i++)
    LOG_Info("stats: %s %llu", nts[i].name, (unsigned long long)nts[i].value);
  pthread_mutex_unlock(&c->lock);
}
