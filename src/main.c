/* main: wiring only. Arguments, configuration, modules initialised in dependency order, the
 * event loop, and shutdown in reverse. */
#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <linux/netlink.h>
#include <sys/ioctl.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "client.h"
#include "control.h"
#include "clock.h"
#include "ctlserve.h"
#include "config.h"
#include "daemon.h"
#include "keys.h"
#include "log.h"
#include "loop.h"
#include "metrics.h"
#include "netio.h"
#include "notify.h"
#include "ntskesrv.h"
#include "pool.h"
#include "rng.h"
#include "runtime.h"
#include "sandbox.h"
#include "statslog.h"
#include "worker.h"

#define DEFAULT_CONFIG "/etc/ntpgate.conf"
#define MAX_SOCKETS 64

typedef struct {
  const char *config_path;
  const char *pidfile;
  const char *logfile;
  const char *user;
  const char *chroot_dir;
  int port; /* -1 = from config */
  bool no_seccomp;
  const char *seccomp_selftest; /* make a forbidden system call once the filter is on */
  const char *control_socket;   /* -s: the root-only local control socket */
  const char *control_query;    /* --control: ask a running daemon through that socket */
  bool debug;
  bool foreground;
  bool no_adjust;
  bool check_only;
} Options;

typedef struct {
  Options opt;
  CLK_Clock *clk;
  EVL_Loop *loop;
  RUN_State *run;   /* configuration in force and the system state built from it */
  POL_Pool *pool;   /* the serving threads and their sockets */
  CSV_Server *ctl;  /* the control path (mode 6) */
  CLI_Client *cli;  /* upstream associations and the clock discipline */
  CLI_Tls *cli_tls; /* its NTS-KE contexts, loaded before any chroot, until CLI_Create */
  NKS_Server *nts;  /* the NTS-KE server (NULL without `nts enable`) */
  SBX_User user;    /* -u, looked up before any chroot */
  bool pid_written;
  const char *files[2]; /* what the cleaner removes at exit */
  DMN_Cleaner cleaner;  /* with -u or -i: removes the pid file and control socket */
  uint64_t shed_logged; /* shed sources last logged */
  STL_Writer *stats;    /* the statistics files' writer thread */
  STF_Sys sys_prev;     /* counters at the last sysstats record */
  int64_t sys_prev_ns;  /* and when it was (monotonic) */
  int64_t sys_next_ns;  /* when the next hourly record is due */
  int sigfd;
  int exit_code;
  /* the metrics endpoint (NULL: none configured), where it listens (a change needs a
   * restart), the snapshot it is given, when we started */
  MTR_Server *mtr;
  NetAddr mtr_addrs[CNF_MAX_METRICS];
  size_t n_mtr_addrs;
  EXP_Snapshot snap;
  double start_time;
} Daemon;

static void
usage(FILE *out)
{
  fprintf(
      out,
      "usage: ntpgated [options]\n"
      "  -c, --config FILE     configuration file (default " DEFAULT_CONFIG ")\n"
      "  -n, --foreground      do not detach\n"
      "  -x, --no-adjust       never modify the system clock\n"
      "  -t, --check-config    check the configuration, print every error, exit 0 or 2\n"
      "  -p, --pidfile FILE    write the process id to FILE (removed at exit)\n"
      "  -l, --logfile FILE    log to FILE (\"syslog\" for syslog; default stderr)\n"
      "  -d, --debug           debug output (on or off)\n"
      "  -u, --user USER       drop root for USER after binding the sockets\n"
      "  -i, --chroot DIR      chroot to DIR after binding (reloads read paths inside it)\n"
      "      --no-seccomp      do not install the system-call allow-list\n"
      "  -s, --control-socket PATH  serve the root-only local control socket at PATH\n"
      "      --control PATH CMD     ask the daemon at control socket PATH: `rv [NAMES]`\n"
      "                             or `:config LINE` (no key needed), print the answer\n"
      "      --port N          serve on UDP port N (overrides the config's `port`)\n"
      "      --version         print the version and exit\n"
      "  -h, --help            this text\n");
}

static const struct option longopts[] = {
    {"config", required_argument, NULL, 'c'},
    {"foreground", no_argument, NULL, 'n'},
    {"no-adjust", no_argument, NULL, 'x'},
    {"check-config", no_argument, NULL, 't'},
    {"pidfile", required_argument, NULL, 'p'},
    {"logfile", required_argument, NULL, 'l'},
    {"debug", no_argument, NULL, 'd'},
    {"user", required_argument, NULL, 'u'},
    {"port", required_argument, NULL, 'P'},
    {"version", no_argument, NULL, 'V'},
    {"help", no_argument, NULL, 'h'},
    {"chroot", required_argument, NULL, 'i'},
    {"no-seccomp", no_argument, NULL, 'S'},
    {"seccomp-selftest", optional_argument, NULL, 'T'}, /* tests only: docs/security.md */
    {"control-socket", required_argument, NULL, 's'},
    {"control", required_argument, NULL, 'C'},
    {NULL, 0, NULL, 0}};

/* The options that take a string or are a plain switch; false if c is none of them. */
static bool
set_simple(Options *o, int c, const char *arg)
{
  switch (c) {
    case 'c':
      o->config_path = arg;
      return true;
    case 'p':
      o->pidfile = arg;
      return true;
    case 'l':
      o->logfile = arg;
      return true;
    case 'u':
      o->user = arg;
      return true;
    case 'i':
      o->chroot_dir = arg;
      return true;
    case 's':
      o->control_socket = arg;
      return true;
    case 'C':
      o->control_query = arg;
      return true;
    case 'T':
      o->seccomp_selftest = arg ? arg : "personality";
      return true;
    case 'n':
      o->foreground = true;
      return true;
    case 'x':
      o->no_adjust = true;
      return true;
    case 't':
      o->check_only = true;
      return true;
    case 'd':
      o->debug = true;
      return true;
    case 'S':
      o->no_seccomp = true;
      return true;
    default:
      return false;
  }
}

/* One option that is not simple: -1 to go on, or an exit status. */
static int
set_other(Options *o, int c, const char *arg)
{
  if (c == 'P') {
    char *end;
    long p = strtol(arg, &end, 10);
    if (*end || p < 1 || p > 65535) {
      fprintf(stderr, "ntpgated: --port: not a port number: %s\n", arg);
      return 2;
    }
    o->port = (int)p;
    return -1;
  }
  if (c == 'V') {
    printf("ntpgated " NTPG_VERSION "\n");
    return 0;
  }
  usage(c == 'h' ? stdout : stderr);
  return c == 'h' ? 0 : 2;
}

/* -1 to start the daemon, or an exit status (also after answering --control). */
static int
parse_options(int argc, char **argv, Options *o)
{
  *o = (Options){.config_path = DEFAULT_CONFIG, .port = -1};
  int c;
  while ((c = getopt_long(argc, argv, "c:nxtp:l:du:i:s:h", longopts, NULL)) != -1) {
    int rc = set_simple(o, c, optarg) ? -1 : set_other(o, c, optarg);
    if (rc >= 0)
      return rc;
  }
  if (optind < argc && !o->control_query) {
    fprintf(stderr, "ntpgated: unexpected argument: %s\n", argv[optind]);
    return 2;
  }
  if (o->control_query) {
    if (optind != argc - 1) {
      fprintf(stderr, "ntpgated: --control PATH needs one command: `rv [NAMES]` or "
                      "`:config LINE`\n");
      return 2;
    }
    return CSV_LocalQuery(o->control_query, argv[optind], stdout);
  }
  return -1; /* go on */
}

/* The NTS-KE outcomes as `stats: nts_ke_NAME VALUE` lines (docs/nts.md). */
static void
log_nts_counters(const NKS_Server *s)
{
  NKS_Row rows[NKS_N_COUNTERS];
  size_t n = NKS_GetRows(s, rows);
  for (size_t i = 0; i < n; i++)
    LOG_Info("stats: nts_ke_%s %llu", rows[i].name, (unsigned long long)rows[i].value);
}

static void
dump_counters(const Daemon *d)
{
  WRK_Counters sum;
  uint64_t per_thread[POL_MAX_THREADS];
  int nthreads = POL_Threads(d->pool);
  POL_Exclusive(d->pool, -1);
  POL_SumCounters(d->pool, &sum);
  for (int i = 0; i < nthreads; i++)
    per_thread[i] = POL_ThreadReceived(d->pool, i);
  CSV_LogCounters(d->ctl);
  /* inside the section: a :config or reload commits (MON_Reconfigure frees the shards
   * MON_GetStats reads) only inside sections too */
  MON_Stats ms;
  MON_GetStats(RUN_Monitor(d->run), &ms);
  SHD_Stats ss;
  SHD_GetStats(RUN_Shed(d->run), &ss);
  POL_Release(d->pool);
  for (int i = 0; i < nthreads; i++)
    LOG_Info("stats: thread%d_received %llu", i, (unsigned long long)per_thread[i]);
  if (d->cli)
    CLI_LogCounters(d->cli);
  if (d->stats)
    STL_LogCounters(d->stats);
  if (d->nts)
    log_nts_counters(d->nts);
  const struct {
    const char *name;
    uint64_t value;
  } totals[] = {
      {"received", sum.received},
      {"received_bytes", sum.received_bytes},
      {"replied", sum.sent},
      {"replied_bytes", sum.sent_bytes},
      {"send_errors", sum.send_errors},
      {"recv_errors", sum.recv_errors},
      {"dropped_oversize", sum.oversize},
      {"blocked_larger", sum.blocked_larger},
      {"mon_entries", ms.entries},
      {"mon_capacity", ms.capacity},
      {"mon_evictions", ms.evictions},
      {"mon_not_tracked", ms.not_tracked},
      {"mon_net_entries", ms.net_entries},
      {"mon_memory_bytes", ms.memory_bytes},
      {"kod_granted", ms.kod_granted},
      {"kod_refused", ms.kod_refused},
      {"shed_now", ss.shed_now},
      {"shed_total", ss.shed},
      {"shed_expired", ss.expired},
      {"shed_displaced", ss.displaced},
      {"shed_samples", ss.samples},
      {"shed_filter_errors", POL_ShedErrors(d->pool)},
      {"kernel_drops", POL_KernelDrops(d->pool)},
  };
  for (size_t i = 0; i < sizeof(totals) / sizeof(totals[0]); i++)
    LOG_Info("stats: %s %llu", totals[i].name, (unsigned long long)totals[i].value);
  for (int r = 0; r < SRV_R_COUNT; r++)
    LOG_Info("stats: %s %llu", SRV_ReasonName((SRV_Reason)r),
             (unsigned long long)sum.reasons[r]);
}

/* Configuration messages, by their severity: errors at warning level, warnings at notice
 * level ("FILE:LINE: warning: reason"). With `also` (a terminal), each goes there too, so
 * that whoever ran the command sees why. */
static void
log_config_messages(const RUN_Errors *errs, FILE *also)
{
  char buf[1400];
  for (size_t i = 0; i < errs->count; i++) {
    const RUN_Message *m = &errs->items[i];
    RUN_FormatMessage(m, true, buf, sizeof(buf));
    if (m->severity == RUN_SEV_WARNING)
      LOG_Msg(LOG_LVL_NOTICE, "%s", buf);
    else
      LOG_Warnx("%s", buf);
    if (also)
      fprintf(also, "%s\n", buf);
  }
}

/* The client's own keys table, from the configuration in force (NULL without keys). */
static KEY_Table *
client_keys(const Daemon *d)
{
  const CNF_Config *cfg = RUN_Config(d->run);
  if (!cfg->keysfile)
    return NULL;
  KEY_Table *t = KEY_LoadFile(cfg->keysfile, NULL);
  if (t)
    KEY_SetTrusted(t, cfg->trusted_keys, cfg->n_trusted_keys);
  return t;
}

/* The client's view of what we serve, swapped in while the serving threads wait. */
static void
on_sync(void *arg, const SRV_System *sys)
{
  Daemon *d = arg;
  NTT_Now now;
  POL_Exclusive(d->pool, -1);
  CLK_ReadNow(d->clk, &now);
  RUN_SetClientSystem(d->run, sys, &now);
  POL_SetContext(d->pool, RUN_Context(d->run));
  POL_Release(d->pool);
}

/* The client's servers, for `restrict source` entries. */
static void
on_peers(void *arg, const NetAddr *peers, size_t n)
{
  Daemon *d = arg;
  POL_Exclusive(d->pool, -1);
  bool ok = RUN_SetSourcePeers(d->run, peers, n);
  POL_SetContext(d->pool, RUN_Context(d->run));
  POL_Release(d->pool);
  if (!ok)
    LOG_Warnx("out of memory adding `restrict source` entries");
}

static void
on_local(void *arg, int fd, uint32_t events)
{
  Daemon *d = arg;
  (void)fd;
  (void)events;
  CSV_HandleLocal(d->ctl);
}

/* Test hook (tests/integration/test_control.py): NTPG_TEST_RELOAD_DELAY_MS=N waits N ms
 * between preparing a reload and committing it, so that a test can send a :config in
 * between. Never set outside tests. */
static void
test_reload_delay(void)
{
  const char *delay = getenv("NTPG_TEST_RELOAD_DELAY_MS");
  if (delay && atoi(delay) > 0) {
    LOG_Info("test hook: reload prepared, committing in %d ms", atoi(delay));
    struct timespec ts = {atoi(delay) / 1000, (long)(atoi(delay) % 1000) * 1000000};
    nanosleep(&ts, NULL);
  }
}

/* :config requests queued by the serving threads: prepared here, outside any section. */
static void
on_config(void *arg, int fd, uint32_t events)
{
  Daemon *d = arg;
  (void)fd;
  (void)events;
  CSV_HandleConfig(d->ctl);
}

/* ---- the metrics endpoint (docs/monitoring.md) ---- */

_Static_assert(NKS_N_COUNTERS <= EXP_MAX_ROWS && CLI_NTS_COUNTERS <= EXP_MAX_ROWS,
               "the NTS rows fit the metrics snapshot");

/* The NTS-KE server's counters, and the NTS client's when a source uses NTS. */
static void
snapshot_nts(Daemon *d, EXP_Snapshot *s)
{
  s->n_nts_ke = s->n_client_nts = 0;
  if (d->nts) {
    NKS_Row r[NKS_N_COUNTERS];
    s->n_nts_ke = NKS_GetRows(d->nts, r);
    for (size_t i = 0; i < s->n_nts_ke; i++)
      s->nts_ke[i] = (EXP_Row){r[i].name, r[i].value};
  }
  if (!d->cli || !CLI_HasNts(d->cli))
    return;
  CTL_Counter c[CLI_NTS_COUNTERS];
  size_t n = CLI_NtsCounters(d->cli, c, CLI_NTS_COUNTERS);
  static const char prefix[] = "client_nts_";
  for (size_t i = 0; i < n; i++) {
    const char *name = c[i].name;
    if (strncmp(name, prefix, sizeof(prefix) - 1) == 0)
      name += sizeof(prefix) - 1;
    s->client_nts[s->n_client_nts++] = (EXP_Row){name, c[i].value};
  }
}

static void
snapshot_peers(Daemon *d, EXP_Snapshot *s)
{
  static CTL_Peer peers[EXP_MAX_PEERS]; /* the main thread's only */
  CTL_Ctx cc;
  memset(&cc, 0, sizeof(cc));
  s->n_peers = 0;
  s->have_client = d->cli != NULL;
  if (!d->cli)
    return;
  CLI_FillControl(d->cli, &cc, peers, EXP_MAX_PEERS);
  s->offset = cc.offset;
  s->frequency_ppm = cc.frequency_ppm;
  s->jitter = cc.sys_peer ? cc.sys_jitter : cc.clk_jitter;
  for (size_t i = 0; i < cc.n_peers; i++) {
    const CTL_Peer *p = &peers[i];
    if (p->srcadr.family == ADR_NONE)
      continue;
    EXP_Peer *e = &s->peers[s->n_peers++];
    *e = (EXP_Peer){.addr = p->srcadr,
                    .reach = p->reach,
                    .stratum = p->stratum,
                    .poll = p->hpoll,
                    .have_sample = p->delay > 0,
                    .offset = p->offset,
                    .delay = p->delay,
                    .jitter = p->jitter,
                    .kod_rate = p->kod_rate,
                    .kod_deny = p->kod_deny,
                    .kod_rstr = p->kod_rstr,
                    .kod_other = p->kod_other};
  }
}

/* When the endpoint asks (a scrape, metrics.h): the counters (summed in a short exclusive
 * section, as for SIGUSR1), the monitor, shed, system and association state. */
static void
metrics_snapshot(Daemon *d)
{
  EXP_Snapshot *s = &d->snap;
  WRK_Counters sum;
  MON_Stats ms;
  SHD_Stats ss;
  POL_Exclusive(d->pool, -1);
  POL_SumCounters(d->pool, &sum);
  MON_GetStats(RUN_Monitor(d->run), &ms);
  SHD_GetStats(RUN_Shed(d->run), &ss);
  SRV_System sys = *RUN_Context(d->run)->sys;
  POL_Release(d->pool);
  s->version = NTPG_VERSION;
  s->start_time = d->start_time;
  s->received = sum.received;
  s->received_bytes = sum.received_bytes;
  s->sent = sum.sent;
  s->sent_bytes = sum.sent_bytes;
  s->send_errors = sum.send_errors;
  s->recv_errors = sum.recv_errors;
  s->oversize = sum.oversize;
  s->kernel_drops = POL_KernelDrops(d->pool);
  memcpy(s->reasons, sum.reasons, sizeof(s->reasons));
  s->mon_entries = ms.entries;
  s->mon_capacity = ms.capacity;
  s->mon_evictions = ms.evictions;
  s->mon_not_tracked = ms.not_tracked;
  s->shed_now = ss.shed_now;
  s->shed_total = ss.shed;
  s->stratum = sys.stratum;
  s->leap = sys.leap;
  s->root_delay = sys.root_delay;
  s->root_dispersion = sys.root_disp;
  CTL_Ctx cc;
  RUN_ControlContext(d->run, &cc);
  s->leap_expiry = (double)cc.leap_expire;
  snapshot_peers(d, s);
  snapshot_nts(d, s);
  MTR_Publish(d->mtr, s);
}

static void
on_metrics_want(void *arg, int fd, uint32_t events)
{
  Daemon *d = arg;
  (void)fd;
  (void)events;
  MTR_TakeWant(d->mtr);
  metrics_snapshot(d);
}

/* Once a tick: the restrict list in force, which the endpoint checks every client against
 * (no section: tables are swapped only by this thread, so the list stays valid here). */
static void
metrics_tick(Daemon *d)
{
  if (!MTR_SetRestrict(d->mtr, RUN_Context(d->run)->rst))
    LOG_Warnx("metrics: out of memory copying the restrict list; the old one stays");
}

/* Once a tick: the restrict list in force, which NTS-KE checks every client against at
 * accept (as metrics_tick: the list stays valid on this thread). */
static void
nts_tick(Daemon *d)
{
  if (d->nts && !NKS_SetRestrict(d->nts, RUN_Context(d->run)->rst))
    LOG_Warnx("NTS-KE: out of memory copying the restrict list; the old one stays");
}

static bool
open_metrics(Daemon *d)
{
  const CNF_Config *cfg = RUN_Config(d->run);
  char err[256], name[ADR_STRLEN];
  if (cfg->n_metrics == 0)
    return true;
  d->mtr = MTR_Create(cfg->metrics, cfg->n_metrics, err, sizeof(err));
  if (!d->mtr) {
    LOG_Warnx("%s", err);
    return false;
  }
  memcpy(d->mtr_addrs, cfg->metrics, cfg->n_metrics * sizeof(cfg->metrics[0]));
  d->n_mtr_addrs = cfg->n_metrics;
  for (size_t i = 0; i < cfg->n_metrics; i++)
    LOG_Info("metrics on http://%s/metrics",
             ADR_FormatPort(&cfg->metrics[i], name, sizeof(name)));
  return true;
}

/* The endpoints are bound once, before privileges are dropped: a reload that changes them
 * says so and keeps the old ones. */
static void
metrics_reloaded(const Daemon *d)
{
  const CNF_Config *cfg = RUN_Config(d->run);
  bool same = cfg->n_metrics == d->n_mtr_addrs;
  for (size_t i = 0; same && i < cfg->n_metrics; i++)
    same = ADR_Equal(&cfg->metrics[i], &d->mtr_addrs[i]) &&
           cfg->metrics[i].port == d->mtr_addrs[i].port;
  if (!same)
    LOG_Warnx("metrics listen lines changed: they take effect at the next restart");
}

/* The client's selection and discipline take tos (but orphan mode) and tinker at start. */
static bool
same_discipline(const CNF_Config *a, const CNF_Config *b)
{
  const CNF_Tos *x = &a->tos, *y = &b->tos;
  const CNF_Tinker *p = &a->tinker, *q = &b->tinker;
  return x->minclock == y->minclock && x->minsane == y->minsane &&
         x->maxclock == y->maxclock && x->maxdist == y->maxdist && x->mindist == y->mindist &&
         x->floor == y->floor && x->ceiling == y->ceiling &&
         x->kod_backoff == y->kod_backoff && x->kod_backoff_max == y->kod_backoff_max &&
         x->kod_rate_cap == y->kod_rate_cap && p->stepback == q->stepback &&
         p->stepfwd == q->stepfwd && p->panic == q->panic && p->stepout == q->stepout &&
         p->dispersion == q->dispersion && p->huffpuff == q->huffpuff;
}

static void
reload(Daemon *d)
{
  RUN_Errors errs;
  CNF_Tos old_tos = RUN_Config(d->run)->tos;
  CNF_Tinker old_tinker = RUN_Config(d->run)->tinker;
  LOG_Info("SIGHUP: reloading %s", d->opt.config_path);
  LOG_Reopen();
  bool ok = false;
  /* A commit that came in between prepare and commit (a :config) makes the prepared
   * configuration stale: prepare again rather than undo it (RUN_Commit refuses it). */
  for (int attempt = 1; attempt <= 3; attempt++) {
    RUN_Pending *pending =
        RUN_Prepare(d->run, d->opt.config_path, &errs); /* threads keep serving */
    test_reload_delay();
    if (!pending)
      break;
    NTT_Now now;
    POL_Exclusive(d->pool, -1);
    if (attempt < 3 && !RUN_IsCurrent(d->run, pending)) {
      RUN_Discard(pending);
      POL_Release(d->pool);
      RUN_FreeErrors(&errs);
      LOG_Info("SIGHUP: the configuration changed while the reload was prepared; again");
      continue;
    }
    CLK_ReadNow(d->clk, &now);
    ok = RUN_Commit(d->run, pending, &now, &errs);
    POL_SetContext(d->pool, RUN_Context(d->run));
    POL_Release(d->pool);
    break;
  }
  if (!ok) {
    log_config_messages(&errs, NULL);
    LOG_Warnx("reload failed with %zu error(s); the previous configuration stays in force",
              errs.errors);
  } else {
    log_config_messages(&errs, NULL);
    if (d->cli)
      CLI_SetKeys(d->cli, client_keys(d));
    if (!STL_Configure(d->stats, RUN_Config(d->run)))
      LOG_Warnx("statsdir or a filegen file name is too long; statistics files unchanged");
    LOG_Info("configuration reloaded (associations change only on restart)");
    CNF_Config old = {.tos = old_tos, .tinker = old_tinker};
    if (d->cli && !same_discipline(&old, RUN_Config(d->run)))
      LOG_Warnx("SIGHUP: tinker or tos selection options changed: the client's selection "
                "and clock discipline keep the values they started with until a restart");
    metrics_reloaded(d);
  }
  RUN_FreeErrors(&errs);
}

static uint64_t
mono_us(void)
{
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

static void
on_signal(void *arg, int fd, uint32_t events)
{
  Daemon *d = arg;
  struct signalfd_siginfo si;
  (void)events;
  while (read(fd, &si, sizeof(si)) == (ssize_t)sizeof(si)) {
    switch (si.ssi_signo) {
      case SIGTERM:
      case SIGINT:
        LOG_Info("signal %u: exiting", si.ssi_signo);
        NTF_Stopping();
        EVL_Stop(d->loop);
        break;
      case SIGHUP:
        NTF_Reloading(mono_us());
        reload(d);
        NTF_Ready(); /* the reload is over, whether it was taken or refused */
        break;
      case SIGUSR1:
        dump_counters(d);
        break;
      default:
        break;
    }
  }
}

/* Load shedding: let go of sources whose hold ran out, install a changed list (serving
 * threads install what they shed themselves; this catches expiries and reloads), and say
 * when the number of shed sources changes. */
static void
shed_tick(Daemon *d, const NTT_Now *now)
{
  SHD_Table *t = RUN_Shed(d->run);
  SHD_Expire(t, now->mono_ns);
  int failed = POL_ApplyShed(d->pool);
  if (failed > 0)
    LOG_Warnx("load shedding: %d socket(s) refused the filter", failed);
  SHD_Stats st;
  SHD_GetStats(t, &st);
  if (st.shed_now != d->shed_logged) {
    LOG_Info("load shedding: %llu source(s) dropped in the kernel (%llu shed since start)",
             (unsigned long long)st.shed_now, (unsigned long long)st.shed);
    d->shed_logged = st.shed_now;
  }
}

/* Give the clock driver the leap second the runtime decided on (the kernel takes it at the
 * end of the UTC day; under -x it is only recorded). */
static void
arm_leap(Daemon *d)
{
  int want = RUN_LeapArm(d->run);
  if (want == CLK_GetLeap(d->clk))
    return;
  if (!CLK_SetLeap(d->clk, want))
    LOG_Warn("cannot %s the leap second in the kernel", want ? "arm" : "disarm");
  else
    LOG_Info("leap second: %s%s",
             want > 0   ? "insertion at the end of the UTC day"
             : want < 0 ? "deletion at the end of the UTC day"
                        : "none",
             CLK_IsNoAdjust(d->clk) && want ? " (announced only: the clock is not adjusted)"
                                            : "");
}

#define SYSSTATS_INTERVAL_NS (3600LL * 1000000000) /* ntpd writes sysstats hourly */

/* A sysstats record: the counters since the previous one, as ntpd (which resets them). */
static void
sysstats_record(Daemon *d, const NTT_Now *now)
{
  WRK_Counters sum;
  STF_Sys cur, r;
  POL_Exclusive(d->pool, -1);
  POL_SumCounters(d->pool, &sum);
  POL_Release(d->pool);
  CSV_SysStats(d->ctl, &sum, &cur);
  const STF_Sys *p = &d->sys_prev;
  r = (STF_Sys){.age = (uint64_t)((now->mono_ns - d->sys_prev_ns) / 1000000000),
                .received = cur.received - p->received,
                .processed = cur.processed - p->processed,
                .newversion = cur.newversion - p->newversion,
                .oldversion = cur.oldversion - p->oldversion,
                .restricted = cur.restricted - p->restricted,
                .badlength = cur.badlength - p->badlength,
                .badauth = cur.badauth - p->badauth,
                .declined = cur.declined - p->declined,
                .limited = cur.limited - p->limited,
                .kodsent = cur.kodsent - p->kodsent};
  STL_PutSys(d->stats, &now->real, &r);
  d->sys_prev = cur;
  d->sys_prev_ns = now->mono_ns;
}

static void
on_tick(void *arg)
{
  Daemon *d = arg;
  NTT_Now now;
  CLK_ReadNow(d->clk, &now);
  shed_tick(d, &now);
  if (now.mono_ns >= d->sys_next_ns) {
    d->sys_next_ns += SYSSTATS_INTERVAL_NS;
    if (STL_Wants(d->stats, STF_SYSSTATS))
      sysstats_record(d, &now);
  }
  if (RUN_TickDue(d->run, &now)) {
    POL_Exclusive(d->pool, -1);
    RUN_Tick(d->run, &now);
    POL_SetContext(d->pool, RUN_Context(d->run));
    POL_Release(d->pool);
  }
  arm_leap(d);
  if (d->mtr)
    metrics_tick(d);
  nts_tick(d);
}

static int
setup_signals(void)
{
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGTERM);
  sigaddset(&set, SIGINT);
  sigaddset(&set, SIGHUP);
  sigaddset(&set, SIGUSR1);
  sigprocmask(SIG_BLOCK, &set, NULL);
  signal(SIGPIPE, SIG_IGN);
  return signalfd(-1, &set, SFD_NONBLOCK | SFD_CLOEXEC);
}

static bool
open_sockets(Daemon *d)
{
  NetAddr addrs[MAX_SOCKETS];
  char err[256], name[ADR_STRLEN];
  size_t n = RUN_ListenAddresses(d->run, addrs, MAX_SOCKETS);
  int threads = RUN_Threads(d->run);
  d->pool = POL_Create(d->clk, threads, addrs, n, err, sizeof(err));
  if (!d->pool) {
    LOG_Warnx("cannot listen: %s", err);
    return false;
  }
  for (size_t i = 0; i < n; i++)
    LOG_Info("listening on %s", ADR_FormatPort(&addrs[i], name, sizeof(name)));
  LOG_Info("%d serving thread%s", threads, threads == 1 ? "" : "s");
  return true;
}

static int
check_config(const Options *o)
{
  RUN_Errors errs;
  bool ok = RUN_CheckFile(o->config_path, &errs);
  char buf[1400];
  for (size_t i = 0; i < errs.count; i++) {
    RUN_FormatMessage(&errs.items[i], true, buf, sizeof(buf));
    fprintf(stderr, "%s\n", buf);
  }
  RUN_FreeErrors(&errs);
  if (ok)
    printf("%s: configuration OK\n", o->config_path);
  return ok ? 0 : 2;
}

/* Tests only (docs/security.md): make one call the filter forbids, which must kill us. */
static void
seccomp_selftest(const char *what)
{
  LOG_Info("seccomp self-test: %s, which is not allowed", what);
  if (strcmp(what, "socket") == 0) /* a raw packet socket */
    close(socket(AF_PACKET, SOCK_DGRAM, 0));
  else if (strcmp(what, "netlink") == 0) /* netlink other than NETLINK_ROUTE */
    close(socket(AF_NETLINK, SOCK_DGRAM, NETLINK_KOBJECT_UEVENT));
  else if (strcmp(what, "ioctl") == 0) /* push a character into a terminal's input */
    ioctl(STDIN_FILENO, TIOCSTI, "x");
  else
    syscall(SYS_personality, 0xffffffffUL);
  LOG_Warnx("seccomp self-test: still alive");
}

/* chroot, drop root (keeping CAP_SYS_TIME only for the real clock driver), seccomp. */
static bool
confine(Daemon *d, char *err, size_t errlen)
{
  const Options *o = &d->opt;
  bool adjusts = !CLK_IsNoAdjust(d->clk);
  if (o->chroot_dir && !SBX_Chroot(o->chroot_dir, err, errlen))
    return false;
  if (o->user && !SBX_DropPrivileges(&d->user, adjusts, err, errlen))
    return false;
  if (geteuid() == 0)
    LOG_Warnx("running as root: give -u USER to drop root once the sockets are bound "
              "(docs/security.md)");
  if (o->no_seccomp) {
    LOG_Info("seccomp filter disabled (--no-seccomp)");
  } else if (!SBX_SeccompAvailable()) {
    LOG_Info("seccomp filter not available in this build");
  } else {
    if (!SBX_ApplySeccomp(adjusts, err, errlen))
      return false;
    LOG_Info("seccomp filter installed");
    if (o->seccomp_selftest)
      seccomp_selftest(o->seccomp_selftest);
  }
  return true;
}

/* The pid file, and with -u or -i the cleaner that removes it (and the control socket) at
 * exit: once confined the daemon cannot (docs/security.md). */
static void
write_pid_file(Daemon *d)
{
  const Options *o = &d->opt;
  char err[256];
  const char *pidfile = o->pidfile ? o->pidfile : RUN_PidFile(d->run);
  if (pidfile && !DMN_WritePidFile(pidfile, err, sizeof(err)))
    LOG_Fatalx("%s", err);
  d->pid_written = pidfile != NULL;
  size_t n = 0;
  if (pidfile)
    d->files[n++] = pidfile;
  if (o->control_socket)
    d->files[n++] = o->control_socket;
  if (n == 0 || (!o->user && !o->chroot_dir))
    return;
  if (!DMN_StartCleaner(&d->cleaner, d->files, n, !o->no_seccomp, err, sizeof(err)))
    LOG_Fatalx("%s", err);
  CSV_LeaveLocalFile(d->ctl);
}

static int
start(Daemon *d)
{
  RUN_Errors errs;
  char err[256];
  const Options *o = &d->opt;
  if (o->logfile && !LOG_SetTarget(o->logfile)) {
    fprintf(stderr, "ntpgated: cannot open log %s: %s\n", o->logfile, strerror(errno));
    return 2;
  }
  LOG_SetLevel(o->debug ? LOG_LVL_DEBUG : LOG_LVL_INFO);
  if (o->user && !SBX_LookupUser(o->user, &d->user, err, sizeof(err))) {
    LOG_Warnx("%s; not starting", err); /* before the chroot: the password file is here */
    return 2;
  }
  d->clk = CLK_CreateSystem(o->no_adjust);
  NTT_Now now;
  CLK_ReadNow(d->clk, &now);
  d->run = RUN_Create(o->config_path, o->port, CLK_PrecisionLog2(d->clk), &now, &errs);
  /* the operator at the terminal must see why we refuse to start */
  log_config_messages(&errs, o->logfile ? stderr : NULL);
  RUN_FreeErrors(&errs);
  if (!d->run) {
    LOG_Warnx("configuration %s has errors; not starting", o->config_path);
    return 2;
  }
  if (!o->logfile && RUN_LogFile(d->run) && !LOG_SetTarget(RUN_LogFile(d->run)))
    LOG_Warn("cannot open log %s; logging to stderr", RUN_LogFile(d->run));
  d->loop = EVL_Create(err, sizeof(err));
  if (!d->loop)
    LOG_Fatalx("%s", err);
  if (!open_sockets(d) || !open_metrics(d))
    return 1;
  d->start_time = (double)now.real.tv_sec + now.real.tv_nsec * 1e-9;
  if (RUN_Config(d->run)->nts.enable) {
    d->nts = NKS_Create(&RUN_Config(d->run)->nts, err, sizeof(err));
    if (!d->nts)
      LOG_Fatalx("%s", err);
    LOG_Info("NTS-KE on TCP port %u", RUN_Config(d->run)->nts.port);
    RUN_SetNtsKeys(d->run, NKS_Keys(d->nts)); /* NTS in NTP packets, on the serving threads */
    nts_tick(d);
  }
  d->ctl = CSV_Create(d->run, d->pool, d->clk, o->config_path);
  if (!d->ctl)
    LOG_Fatalx("out of memory");
  CSV_SetNtsServer(d->ctl, d->nts);
  if (o->control_socket) { /* bound while still root, so the file is root's, mode 0600 */
    int fd = CSV_OpenLocal(d->ctl, o->control_socket, err, sizeof(err));
    if (fd < 0 || !EVL_AddFd(d->loop, fd, on_local, d))
      LOG_Fatalx("%s", fd < 0 ? err : "cannot watch the control socket");
    LOG_Info("local control socket %s", o->control_socket);
  }
  if (!NTF_Open(err, sizeof(err))) /* connected before any chroot */
    LOG_Warnx("readiness notification off: %s", err);
  if (!o->foreground && !DMN_Detach(err, sizeof(err)))
    LOG_Fatalx("%s", err);
  write_pid_file(d);
  /* the NTS sources' CA files and the system's store are outside any chroot */
  d->cli_tls = CLI_LoadTls(RUN_Config(d->run), err, sizeof(err));
  if (!d->cli_tls && err[0])
    LOG_Fatalx("%s", err);
  if (!confine(d, err, sizeof(err)))
    LOG_Fatalx("%s", err);
  return -1;
}

static int
serve(Daemon *d)
{
  char err[256];
  const char *fault = getenv("NTPG_TEST_SEND_FAULT"); /* tests only: docs/security.md */
  if (fault && atoi(fault) > 0) {
    NIO_SetSendFault((unsigned)atoi(fault), atoi(fault) % 2 ? ENOBUFS : EAGAIN);
    LOG_Warnx("fault injection: every %d-th send fails", atoi(fault));
  }
  d->sigfd = setup_signals(); /* blocked before the threads start, so only we get them */
  if (d->sigfd < 0 || !EVL_AddFd(d->loop, d->sigfd, on_signal, d))
    LOG_Fatal("signalfd");
  if (!EVL_AddFd(d->loop, CSV_ConfigFd(d->ctl), on_config, d))
    LOG_Fatalx("cannot watch the :config queue");
  POL_SetControlHandler(d->pool, CSV_Handle, d->ctl);
  POL_SetShed(d->pool, RUN_Shed(d->run));
  if (!POL_Start(d->pool, RUN_Context(d->run), err, sizeof(err)))
    LOG_Fatalx("%s", err);
  d->stats = STL_Create(); /* after any fork (-n absent): its thread must be ours */
  if (!d->stats || !STL_Configure(d->stats, RUN_Config(d->run)))
    LOG_Fatalx(
        "cannot start the statistics files' writer (statsdir or a file name too long?)");
  NTT_Now start;
  CLK_ReadNow(d->clk, &start);
  d->sys_prev_ns = start.mono_ns;
  d->sys_next_ns = start.mono_ns + SYSSTATS_INTERVAL_NS;
  if (RUN_Config(d->run)->n_assocs > 0) {
    d->cli = CLI_Create(d->loop, d->clk, RUN_Config(d->run), client_keys(d), d->cli_tls,
                        on_sync, on_peers, d, err, sizeof(err));
    d->cli_tls = NULL; /* the client's now, also on failure */
    if (!d->cli)
      LOG_Fatalx("%s", err);
    /* the serving threads answer ntpq already: hand them the client inside a section */
    POL_Exclusive(d->pool, -1);
    CSV_SetClient(d->ctl, d->cli);
    POL_Release(d->pool);
    CLI_SetStats(d->cli, d->stats);
  }
  if (d->mtr) {
    metrics_tick(d);
    if (!EVL_AddFd(d->loop, MTR_WantFd(d->mtr), on_metrics_want, d))
      LOG_Fatalx("cannot watch the metrics endpoint's requests");
    if (!MTR_Start(d->mtr, err, sizeof(err)))
      LOG_Fatalx("%s", err);
  }
  if (d->nts && !NKS_Run(d->nts, err, sizeof(err)))
    LOG_Fatalx("%s", err);
  EVL_AddTimer(d->loop, 1.0, on_tick, d);
  LOG_Info("ntpgated " NTPG_VERSION " running, clock %s, precision 2^%d s", CLK_Name(d->clk),
           CLK_PrecisionLog2(d->clk));
  NTF_Ready(); /* sockets bound, configuration in force, privileges dropped */
  if (!EVL_Run(d->loop))
    LOG_Warn("event loop failed");
  if (STL_Wants(d->stats, STF_SYSSTATS)) { /* the last, partial hour is not lost */
    NTT_Now end;
    CLK_ReadNow(d->clk, &end);
    sysstats_record(d, &end);
  }
  dump_counters(d);
  return 0;
}

static void
shutdown_daemon(Daemon *d)
{
  if (d->pid_written && d->cleaner.pid == 0)
    DMN_RemovePidFile(d->files[0]); /* else the cleaner does it, below */
  POL_Destroy(d->pool); /* threads first: they read the client, the NTS keys and counters */
  NKS_Stop(d->nts);
  CLI_Destroy(d->cli);
  CLI_FreeTls(d->cli_tls);
  STL_Destroy(d->stats); /* after the client, which queues records; writes what is queued */
  CSV_Destroy(d->ctl);
  MTR_Destroy(d->mtr);
  if (d->sigfd > 0)
    close(d->sigfd);
  EVL_Destroy(d->loop);
  RUN_Destroy(d->run);
  CLK_Destroy(d->clk);
  DMN_StopCleaner(&d->cleaner); /* the pid file is gone when we exit */
  LOG_Info("stopped");
  NTF_Close();
  LOG_Close();
}

int
main(int argc, char **argv)
{
  Daemon d = {.sigfd = -1};
  int rc = parse_options(argc, argv, &d.opt);
  if (rc >= 0)
    return rc;
  if (d.opt.check_only)
    return check_config(&d.opt);
  rc = start(&d);
  if (rc < 0)
    rc = serve(&d);
  shutdown_daemon(&d);
  return rc;
}
