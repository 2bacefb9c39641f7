/* ntpload: NTP (v4, mode 3) load generator for ntpgate's benchmark (bench/run.sh).
 *
 * Sends client requests to a server on loopback from many source addresses in 127.0.0.0/8
 * (or from ::1), batching with sendmmsg/recvmmsg, and validates every reply: mode 4, version
 * 4, origin timestamp equal to the random cookie that the request carried as its transmit
 * timestamp, arrival on the address the request left from, length 48. Kiss-o'-Death replies
 * are counted apart by their code. Latency is taken from send to receive on CLOCK_MONOTONIC
 * (one clock reading per sendmmsg/recvmmsg call) into a log-linear histogram.
 *
 * Two ways of driving the load:
 *   closed loop (-r 0): keep up to WINDOW requests outstanding, send as replies come back;
 *   open loop (-r RATE): a token bucket releases RATE requests per second whatever happens.
 * Two ways of picking the source address:
 *   pktinfo: one socket bound to 0.0.0.0, IP_PKTINFO ipi_spec_dst names each packet's source;
 *   bind:    one socket bound per source address, one sendmmsg batch per socket in turn.
 *
 * Bounded: the run lasts -d seconds (default 5, at most 300), or until -c COUNT requests have
 * been sent if that comes first, plus at most one reply timeout to collect late replies; an
 * alarm ends the process should anything hang. Only loopback destinations are accepted.
 *
 * The last line of output is machine-readable: space-separated key=value pairs. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif

#include <arpa/inet.h>
#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <math.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/prctl.h>
#include <sys/random.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#define NTP_LEN 48
#define MAX_DURATION_S 300.0
#define DEFAULT_DURATION_S 5.0
#define MAX_BATCH 1024
#define MAX_SOURCES (1u << 20)
#define MAX_SLOT_BITS 20
#define RBUF_LEN 1024 /* longer than any reply we expect, so oversized ones are seen */
#define MAX_TIMEOUT_MS 5000
#define MAX_KOD_CODES 16
#define RECV_ROUNDS 8 /* recvmmsg calls per loop turn before we go back to sending */

/* ---- histogram: log-linear, 64 sub-buckets per power of two (<= 1.6 % error) ---- */

#define H_SUB_BITS 6
#define H_SUB (1u << H_SUB_BITS)
#define H_MAX_EXP 44 /* up to 2^44 ns, ~4.9 hours: anything longer is clamped */
#define H_BUCKETS (2 * H_SUB + (H_MAX_EXP - H_SUB_BITS) * H_SUB)

static unsigned
h_index(uint64_t v)
{
  if (v < 2 * H_SUB)
    return (unsigned)v;
  unsigned msb = 63u - (unsigned)__builtin_clzll(v);
  if (msb >= H_MAX_EXP)
    return H_BUCKETS - 1;
  unsigned shift = msb - H_SUB_BITS;
  unsigned top = (unsigned)(v >> shift); /* in [H_SUB, 2*H_SUB) */
  return 2 * H_SUB + (msb - H_SUB_BITS - 1) * H_SUB + (top - H_SUB);
}

/* Midpoint of a bucket's range, in ns. */
static double
h_value(unsigned idx)
{
  if (idx < 2 * H_SUB)
    return (double)idx;
  unsigned rel = idx - 2 * H_SUB;
  unsigned shift = rel / H_SUB + 1;
  uint64_t top = H_SUB + rel % H_SUB;
  uint64_t lo = top << shift;
  return (double)lo + (double)((uint64_t)1 << shift) / 2.0;
}

/* ---- state ---- */

typedef struct {
  uint64_t cookie;
  int64_t sent_ns;
  uint32_t src;        /* source index */
  uint32_t prev, next; /* outstanding list, oldest first; index nslots is the sentinel */
  bool busy;
} Slot;

typedef struct {
  char code[5];
  uint64_t count;
} KodCount;

enum { M_PKTINFO, M_BIND };

typedef struct {
  /* options */
  bool v6;
  int method;
  const char *server_str, *base_str;
  uint16_t port;
  uint32_t nsrc;
  double duration_s;
  double rate;        /* 0 = closed loop */
  uint64_t max_count; /* stop sending after this many requests; 0 = no limit */
  uint32_t window;
  unsigned batch;
  unsigned timeout_ms;
  bool progress, quiet;
  bool spin; /* never sleep: poll the socket in a loop */
  uint64_t seed;
  bool seed_given;

  /* addresses */
  struct sockaddr_storage server;
  socklen_t server_len;
  uint32_t base4; /* host order, v4 first source */

  /* sockets */
  int fd;      /* pktinfo: the one socket */
  int *fds;    /* bind: one per source */
  int epfd;    /* bind: epoll over fds */
  int wait_fd; /* what ppoll waits on: fd or epfd */

  /* slots */
  Slot *slot;
  uint32_t nslots, slot_mask;
  uint32_t *freestack, nfree;
  uint32_t outstanding;

  uint64_t rng;
  uint32_t next_src;

  /* counters */
  uint64_t sent, send_err, stalled;
  uint64_t valid, unsync, stale, lost;
  uint64_t bad_addr, bad_short, bad_mode, bad_version, bad_len, bad_dst, bad_ts;
  uint64_t kod;
  KodCount kods[MAX_KOD_CODES];
  unsigned nkods;
  uint64_t kod_other; /* codes beyond the table */
  uint64_t valid_in_window, kod_in_window, sent_in_window;

  /* latency of valid replies */
  uint64_t hist[H_BUCKETS];
  uint64_t lat_n;
  double lat_sum;
  uint64_t lat_min, lat_max;
} State;

static State g;

/* ---- small helpers ---- */

static int64_t
mono_ns(void)
{
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static uint64_t
splitmix64(uint64_t *s)
{
  uint64_t z = (*s += 0x9E3779B97F4A7C15ull);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

static void
put32(uint8_t *p, uint32_t v)
{
  p[0] = (uint8_t)(v >> 24);
  p[1] = (uint8_t)(v >> 16);
  p[2] = (uint8_t)(v >> 8);
  p[3] = (uint8_t)v;
}

static uint32_t
get32(const uint8_t *p)
{
  return ((uint32_t)p[0] << 24) | ((uint32_t)p[1] << 16) | ((uint32_t)p[2] << 8) | p[3];
}

static uint64_t
get64(const uint8_t *p)
{
  return ((uint64_t)get32(p) << 32) | get32(p + 4);
}

static void
die(const char *what)
{
  fprintf(stderr, "ntpload: %s: %s\n", what, strerror(errno));
  exit(1);
}

static void
usage(FILE *f)
{
  fprintf(
      f,
      "usage: ntpload [options]\n"
      "  -s SERVER   server address, 127.0.0.0/8 or ::1 only (default 127.0.0.1; ::1 "
      "with -6)\n"
      "  -p PORT     server port (default 123)\n"
      "  -n NUM      number of source addresses (default 1; at most %u; 1 with -6)\n"
      "  -b BASE     first source address, the others follow it (default 127.100.0.1)\n"
      "  -d SECONDS  send for this long (default %.0f, at most %.0f)\n"
      "  -r RATE     open loop: requests per second (default 0 = closed-loop saturation)\n"
      "  -c COUNT    stop after sending COUNT requests, if -d has not ended the run first\n"
      "              (default 0 = no limit; -c NUM with -n NUM uses every source once)\n"
      "  -w WINDOW   closed loop: requests outstanding at once (default 64)\n"
      "  -B BATCH    messages per sendmmsg/recvmmsg; open loop sends bursts of BATCH\n"
      "              (default 32, at most %d)\n"
      "  -t MS       reply timeout; later replies count as lost (default 1000, at most %d)\n"
      "  -M METHOD   source address selection: pktinfo (default) or bind\n"
      "  -6          IPv6: from ::1 to the server (default ::1)\n"
      "  -S SEED     seed for the cookies (default: from getrandom)\n"
      "  -i          print progress every second on stderr\n"
      "  -q          print only the final key=value line\n"
      "  -P          busy-poll: never sleep (keeps core 0 awake; costs all of it)\n"
      "exit status: 0 run done and some request answered, 1 setup error, 2 usage error,\n"
      "             3 run done but no request answered\n",
      MAX_SOURCES, DEFAULT_DURATION_S, MAX_DURATION_S, MAX_BATCH, MAX_TIMEOUT_MS);
}

static double
parse_num(const char *s, char opt, double lo, double hi)
{
  char *end;
  errno = 0;
  double v = strtod(s, &end);
  if (errno || end == s || *end || !(v >= lo && v <= hi)) {
    fprintf(stderr, "ntpload: -%c %s: want a number in [%g, %g]\n", opt, s, lo, hi);
    usage(stderr);
    exit(2);
  }
  return v;
}

static bool
is_loopback(const struct sockaddr_storage *ss)
{
  if (ss->ss_family == AF_INET) {
    const struct sockaddr_in *sin = (const struct sockaddr_in *)ss;
    return (ntohl(sin->sin_addr.s_addr) >> 24) == 127;
  }
  if (ss->ss_family == AF_INET6) {
    const struct sockaddr_in6 *sin6 = (const struct sockaddr_in6 *)ss;
    return IN6_IS_ADDR_LOOPBACK(&sin6->sin6_addr);
  }
  return false;
}

static void
raise_nofile(rlim_t want)
{
  struct rlimit rl;
  if (getrlimit(RLIMIT_NOFILE, &rl) < 0)
    die("getrlimit");
  if (rl.rlim_cur >= want)
    return;
  rl.rlim_cur = want;
  if (rl.rlim_max < want)
    rl.rlim_max = want;
  if (setrlimit(RLIMIT_NOFILE, &rl) < 0)
    die("setrlimit(RLIMIT_NOFILE) for -M bind (needs that many sockets)");
}

static void
set_bufs(int fd, int bytes)
{
  /* Force (root) and fall back to the capped request. */
  if (setsockopt(fd, SOL_SOCKET, SO_RCVBUFFORCE, &bytes, sizeof bytes) < 0)
    (void)setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &bytes, sizeof bytes);
  if (setsockopt(fd, SOL_SOCKET, SO_SNDBUFFORCE, &bytes, sizeof bytes) < 0)
    (void)setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &bytes, sizeof bytes);
}

/* ---- slots: free stack + outstanding list in send order ---- */

static void
slots_init(uint32_t want)
{
  unsigned bits = 1;
  while ((1u << bits) < want && bits < MAX_SLOT_BITS)
    bits++;
  g.nslots = 1u << bits;
  g.slot_mask = g.nslots - 1;
  g.slot = calloc((size_t)g.nslots + 1, sizeof *g.slot);
  g.freestack = malloc((size_t)g.nslots * sizeof *g.freestack);
  if (!g.slot || !g.freestack)
    die("malloc");
  for (uint32_t i = 0; i < g.nslots; i++)
    g.freestack[i] = g.nslots - 1 - i;
  g.nfree = g.nslots;
  g.slot[g.nslots].prev = g.slot[g.nslots].next = g.nslots;
}

static void
out_append(uint32_t i)
{
  uint32_t s = g.nslots, t = g.slot[s].prev;
  g.slot[i].prev = t;
  g.slot[i].next = s;
  g.slot[t].next = i;
  g.slot[s].prev = i;
  g.slot[i].busy = true;
  g.outstanding++;
}

static void
out_release(uint32_t i)
{
  Slot *sl = &g.slot[i];
  g.slot[sl->prev].next = sl->next;
  g.slot[sl->next].prev = sl->prev;
  sl->busy = false;
  g.outstanding--;
  g.freestack[g.nfree++] = i;
}

static void
expire(int64_t now)
{
  int64_t tmo = (int64_t)g.timeout_ms * 1000000;
  uint32_t s = g.nslots;
  while (g.slot[s].next != s) {
    uint32_t i = g.slot[s].next;
    if (now - g.slot[i].sent_ns < tmo)
      break;
    out_release(i);
    g.lost++;
  }
}

/* Earliest time the oldest outstanding request times out, or INT64_MAX. */
static int64_t
next_expiry(void)
{
  uint32_t s = g.nslots;
  if (g.slot[s].next == s)
    return INT64_MAX;
  return g.slot[g.slot[s].next].sent_ns + (int64_t)g.timeout_ms * 1000000;
}

/* ---- sending ---- */

typedef union {
  char buf[CMSG_SPACE(sizeof(struct in_pktinfo)) > CMSG_SPACE(sizeof(struct in6_pktinfo))
               ? CMSG_SPACE(sizeof(struct in_pktinfo))
               : CMSG_SPACE(sizeof(struct in6_pktinfo))];
  struct cmsghdr align;
} CmsgBuf;

static uint8_t sbuf[MAX_BATCH][NTP_LEN];
static struct iovec siov[MAX_BATCH];
static CmsgBuf sctl[MAX_BATCH];
static struct mmsghdr smsg[MAX_BATCH];
static uint32_t sidx[MAX_BATCH];

static uint8_t rbuf[MAX_BATCH][RBUF_LEN];
static struct iovec riov[MAX_BATCH];
static CmsgBuf rctl[MAX_BATCH];
static struct sockaddr_storage rname[MAX_BATCH];
static struct mmsghdr rmsg[MAX_BATCH];

static void
msgs_init(void)
{
  for (unsigned j = 0; j < MAX_BATCH; j++) {
    memset(sbuf[j], 0, NTP_LEN);
    sbuf[j][0] = (0 << 6) | (4 << 3) | 3; /* LI 0, VN 4, mode 3 */
    sbuf[j][2] = 6;                       /* poll 2^6 */
    sbuf[j][3] = (uint8_t)-20;            /* precision ~1 us */
    siov[j].iov_base = sbuf[j];
    siov[j].iov_len = NTP_LEN;
    memset(&smsg[j], 0, sizeof smsg[j]);
    smsg[j].msg_hdr.msg_name = &g.server;
    smsg[j].msg_hdr.msg_namelen = g.server_len;
    smsg[j].msg_hdr.msg_iov = &siov[j];
    smsg[j].msg_hdr.msg_iovlen = 1;
    if (g.method == M_PKTINFO) {
      memset(&sctl[j], 0, sizeof sctl[j]);
      smsg[j].msg_hdr.msg_control = sctl[j].buf;
      smsg[j].msg_hdr.msg_controllen = CMSG_SPACE(sizeof(struct in_pktinfo));
      struct cmsghdr *c = CMSG_FIRSTHDR(&smsg[j].msg_hdr);
      c->cmsg_level = IPPROTO_IP;
      c->cmsg_type = IP_PKTINFO;
      c->cmsg_len = CMSG_LEN(sizeof(struct in_pktinfo));
    }
    riov[j].iov_base = rbuf[j];
    riov[j].iov_len = RBUF_LEN;
    memset(&rmsg[j], 0, sizeof rmsg[j]);
    rmsg[j].msg_hdr.msg_iov = &riov[j];
    rmsg[j].msg_hdr.msg_iovlen = 1;
  }
}

/* Send k (<= batch, <= nfree) requests; returns how many left. */
static unsigned
send_batch(unsigned k, int64_t now)
{
  int fd = g.fd;
  uint32_t bind_src = 0;
  if (g.method == M_BIND) {
    bind_src = g.next_src;
    g.next_src = g.next_src + 1 == g.nsrc ? 0 : g.next_src + 1;
    fd = g.fds[bind_src];
  }
  for (unsigned j = 0; j < k; j++) {
    uint32_t i = g.freestack[--g.nfree];
    Slot *sl = &g.slot[i];
    uint64_t c;
    do
      c = splitmix64(&g.rng) & ~(uint64_t)g.slot_mask;
    while (c == 0);
    sl->cookie = c | i;
    sl->sent_ns = now;
    if (g.method == M_BIND) {
      sl->src = bind_src;
    } else {
      sl->src = g.next_src;
      g.next_src = g.next_src + 1 == g.nsrc ? 0 : g.next_src + 1;
      struct in_pktinfo pi;
      memset(&pi, 0, sizeof pi);
      pi.ipi_spec_dst.s_addr = htonl(g.base4 + sl->src);
      memcpy(CMSG_DATA(CMSG_FIRSTHDR(&smsg[j].msg_hdr)), &pi, sizeof pi);
    }
    put32(sbuf[j] + 40, (uint32_t)(sl->cookie >> 32));
    put32(sbuf[j] + 44, (uint32_t)sl->cookie);
    sidx[j] = i;
  }
  int r = sendmmsg(fd, smsg, k, 0);
  if (r < 0) {
    if (errno != EAGAIN && errno != ENOBUFS && errno != EINTR)
      g.send_err++;
    r = 0;
  }
  for (unsigned j = 0; j < (unsigned)r; j++)
    out_append(sidx[j]);
  for (unsigned j = k; j-- > (unsigned)r;) /* give back unsent slots, last first */
    g.freestack[g.nfree++] = sidx[j];
  g.sent += (unsigned)r;
  return (unsigned)r;
}

/* ---- receiving ---- */

static bool
same_server(const struct sockaddr_storage *from)
{
  if (from->ss_family != g.server.ss_family)
    return false;
  if (from->ss_family == AF_INET) {
    const struct sockaddr_in *a = (const struct sockaddr_in *)from;
    const struct sockaddr_in *b = (const struct sockaddr_in *)&g.server;
    return a->sin_addr.s_addr == b->sin_addr.s_addr && a->sin_port == b->sin_port;
  }
  const struct sockaddr_in6 *a = (const struct sockaddr_in6 *)from;
  const struct sockaddr_in6 *b = (const struct sockaddr_in6 *)&g.server;
  return IN6_ARE_ADDR_EQUAL(&a->sin6_addr, &b->sin6_addr) && a->sin6_port == b->sin6_port;
}

static void
count_kod(uint32_t refid)
{
  char code[5];
  for (int k = 0; k < 4; k++) {
    unsigned char ch = (unsigned char)(refid >> (24 - 8 * k));
    code[k] = (ch >= 'A' && ch <= 'Z') || (ch >= 'a' && ch <= 'z') || (ch >= '0' && ch <= '9')
                  ? (char)ch
                  : (ch == 0 ? '\0' : '?');
  }
  code[4] = '\0';
  if (code[0] == '\0')
    strcpy(code, "NONE");
  for (unsigned k = 0; k < g.nkods; k++) {
    if (strcmp(g.kods[k].code, code) == 0) {
      g.kods[k].count++;
      return;
    }
  }
  if (g.nkods < MAX_KOD_CODES) {
    memcpy(g.kods[g.nkods].code, code, sizeof code);
    g.kods[g.nkods++].count = 1;
  } else {
    g.kod_other++;
  }
}

static uint64_t
kod_count(const char *code)
{
  for (unsigned k = 0; k < g.nkods; k++)
    if (strcmp(g.kods[k].code, code) == 0)
      return g.kods[k].count;
  return 0;
}

/* One datagram; src_index is the bind-mode socket's source, or UINT32_MAX (pktinfo). */
static void
handle_reply(struct mmsghdr *m, const uint8_t *buf, uint32_t src_index, int64_t now,
             bool in_window)
{
  size_t len = m->msg_len;
  if (!same_server((const struct sockaddr_storage *)m->msg_hdr.msg_name)) {
    g.bad_addr++;
    return;
  }
  if (len < NTP_LEN) {
    g.bad_short++;
    return;
  }
  uint64_t org = get64(buf + 24);
  uint32_t i = (uint32_t)(org & g.slot_mask);
  Slot *sl = &g.slot[i];
  if (!sl->busy || sl->cookie != org) {
    g.stale++;
    return;
  }
  uint32_t src = sl->src;
  int64_t sent_ns = sl->sent_ns;
  out_release(i); /* answered, whatever the verdict below */

  /* The reply must come back to the address the request left from. */
  if (src_index != UINT32_MAX) {
    if (src_index != src) {
      g.bad_dst++;
      return;
    }
  } else {
    bool have = false;
    struct in_pktinfo pi;
    for (struct cmsghdr *c = CMSG_FIRSTHDR(&m->msg_hdr); c; c = CMSG_NXTHDR(&m->msg_hdr, c)) {
      if (c->cmsg_level == IPPROTO_IP && c->cmsg_type == IP_PKTINFO) {
        memcpy(&pi, CMSG_DATA(c), sizeof pi);
        have = true;
      }
    }
    if (!have || ntohl(pi.ipi_addr.s_addr) != g.base4 + src) {
      g.bad_dst++;
      return;
    }
  }
  if ((buf[0] & 7) != 4) {
    g.bad_mode++;
    return;
  }
  if (((buf[0] >> 3) & 7) != 4) {
    g.bad_version++;
    return;
  }
  if (buf[1] == 0) { /* stratum 0: Kiss-o'-Death */
    g.kod++;
    if (in_window)
      g.kod_in_window++;
    count_kod(get32(buf + 12));
    return;
  }
  if (len != NTP_LEN) {
    g.bad_len++;
    return;
  }
  if (get64(buf + 32) == 0 || get64(buf + 40) == 0) { /* receive or transmit stamp missing */
    g.bad_ts++;
    return;
  }
  if ((buf[0] >> 6) == 3 || buf[1] >= 16)
    g.unsync++;
  g.valid++;
  if (in_window)
    g.valid_in_window++;
  uint64_t lat = now > sent_ns ? (uint64_t)(now - sent_ns) : 0;
  g.hist[h_index(lat)]++;
  g.lat_n++;
  g.lat_sum += (double)lat;
  if (lat < g.lat_min)
    g.lat_min = lat;
  if (lat > g.lat_max)
    g.lat_max = lat;
}

/* Drain one socket without blocking; returns datagrams read. */
static unsigned
recv_socket(int fd, uint32_t src_index, bool in_window)
{
  unsigned total = 0;
  unsigned rb = g.batch < 64 ? 64 : g.batch;
  for (int round = 0; round < RECV_ROUNDS; round++) {
    for (unsigned j = 0; j < rb; j++) {
      rmsg[j].msg_hdr.msg_name = &rname[j];
      rmsg[j].msg_hdr.msg_namelen = sizeof rname[j];
      rmsg[j].msg_hdr.msg_control = rctl[j].buf;
      rmsg[j].msg_hdr.msg_controllen = sizeof rctl[j].buf;
      rmsg[j].msg_hdr.msg_flags = 0;
    }
    int r = recvmmsg(fd, rmsg, rb, MSG_DONTWAIT, NULL);
    if (r <= 0)
      break;
    int64_t now = mono_ns();
    for (int j = 0; j < r; j++)
      handle_reply(&rmsg[j], rbuf[j], src_index, now, in_window);
    total += (unsigned)r;
    if ((unsigned)r < rb)
      break;
  }
  return total;
}

static unsigned
recv_all(bool in_window)
{
  if (g.method == M_PKTINFO)
    return recv_socket(g.fd, UINT32_MAX, in_window);
  struct epoll_event ev[256];
  int n = epoll_wait(g.epfd, ev, 256, 0);
  unsigned total = 0;
  for (int k = 0; k < n; k++)
    total += recv_socket(g.fds[ev[k].data.u32], ev[k].data.u32, in_window);
  return total;
}

static void
wait_until(int64_t now, int64_t until)
{
  if (until <= now || g.spin)
    return;
  int64_t d = until - now;
  struct timespec ts = {.tv_sec = d / 1000000000, .tv_nsec = d % 1000000000};
  struct pollfd p = {.fd = g.wait_fd, .events = POLLIN};
  (void)ppoll(&p, 1, &ts, NULL);
}

/* ---- setup ---- */

static void
setup_sockets(void)
{
  int one = 1;
  if (g.method == M_PKTINFO) {
    g.fd = socket(AF_INET, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (g.fd < 0)
      die("socket");
    if (setsockopt(g.fd, IPPROTO_IP, IP_PKTINFO, &one, sizeof one) < 0)
      die("setsockopt(IP_PKTINFO)");
    set_bufs(g.fd, 8 << 20);
    struct sockaddr_in any = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_ANY)};
    if (bind(g.fd, (struct sockaddr *)&any, sizeof any) < 0)
      die("bind 0.0.0.0");
    g.wait_fd = g.fd;
    return;
  }
  raise_nofile((rlim_t)g.nsrc + 64);
  g.fds = malloc((size_t)g.nsrc * sizeof *g.fds);
  if (!g.fds)
    die("malloc");
  g.epfd = epoll_create1(EPOLL_CLOEXEC);
  if (g.epfd < 0)
    die("epoll_create1");
  for (uint32_t s = 0; s < g.nsrc; s++) {
    int fd = socket(g.v6 ? AF_INET6 : AF_INET, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
      die("socket");
    if (g.nsrc == 1)
      set_bufs(fd, 8 << 20);
    if (g.v6) {
      struct sockaddr_in6 a = {.sin6_family = AF_INET6, .sin6_addr = IN6ADDR_LOOPBACK_INIT};
      if (bind(fd, (struct sockaddr *)&a, sizeof a) < 0)
        die("bind ::1");
    } else {
      struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(g.base4 + s)};
      if (bind(fd, (struct sockaddr *)&a, sizeof a) < 0)
        die("bind source address");
    }
    struct epoll_event ev = {.events = EPOLLIN, .data.u32 = s};
    if (epoll_ctl(g.epfd, EPOLL_CTL_ADD, fd, &ev) < 0)
      die("epoll_ctl");
    g.fds[s] = fd;
  }
  g.wait_fd = g.epfd;
}

static void
parse_args(int argc, char **argv)
{
  g.port = 123;
  g.nsrc = 1;
  g.duration_s = DEFAULT_DURATION_S;
  g.window = 64;
  g.batch = 32;
  g.timeout_ms = 1000;
  g.method = M_PKTINFO;
  g.base_str = "127.100.0.1";
  int c;
  while ((c = getopt(argc, argv, "s:p:n:b:d:r:c:w:B:t:M:6S:iqPh")) != -1) {
    switch (c) {
      case 's':
        g.server_str = optarg;
        break;
      case 'p':
        g.port = (uint16_t)parse_num(optarg, 'p', 1, 65535);
        break;
      case 'n':
        g.nsrc = (uint32_t)parse_num(optarg, 'n', 1, MAX_SOURCES);
        break;
      case 'b':
        g.base_str = optarg;
        break;
      case 'd':
        g.duration_s = parse_num(optarg, 'd', 0.1, MAX_DURATION_S);
        break;
      case 'r':
        g.rate = parse_num(optarg, 'r', 0, 1e8);
        break;
      case 'c':
        g.max_count = (uint64_t)parse_num(optarg, 'c', 0, 1e12);
        break;
      case 'w':
        g.window = (uint32_t)parse_num(optarg, 'w', 1, 1u << MAX_SLOT_BITS);
        break;
      case 'B':
        g.batch = (unsigned)parse_num(optarg, 'B', 1, MAX_BATCH);
        break;
      case 't':
        g.timeout_ms = (unsigned)parse_num(optarg, 't', 1, MAX_TIMEOUT_MS);
        break;
      case 'M':
        if (strcmp(optarg, "pktinfo") == 0)
          g.method = M_PKTINFO;
        else if (strcmp(optarg, "bind") == 0)
          g.method = M_BIND;
        else {
          fprintf(stderr, "ntpload: -M %s: want pktinfo or bind\n", optarg);
          exit(2);
        }
        break;
      case '6':
        g.v6 = true;
        break;
      case 'S':
        g.seed = strtoull(optarg, NULL, 0);
        g.seed_given = true;
        break;
      case 'i':
        g.progress = true;
        break;
      case 'q':
        g.quiet = true;
        break;
      case 'P':
        g.spin = true;
        break;
      case 'h':
        usage(stdout);
        exit(0);
      default:
        usage(stderr);
        exit(2);
    }
  }
  if (optind != argc) {
    fprintf(stderr, "ntpload: unexpected argument %s\n", argv[optind]);
    usage(stderr);
    exit(2);
  }

  memset(&g.server, 0, sizeof g.server);
  if (g.v6) {
    struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)&g.server;
    s6->sin6_family = AF_INET6;
    s6->sin6_port = htons(g.port);
    if (inet_pton(AF_INET6, g.server_str ? g.server_str : "::1", &s6->sin6_addr) != 1) {
      fprintf(stderr, "ntpload: -s %s: not an IPv6 address\n", g.server_str);
      exit(2);
    }
    g.server_len = sizeof *s6;
    if (g.nsrc != 1) {
      fprintf(stderr, "ntpload: IPv6 loopback has one address (::1): -n must be 1\n");
      exit(2);
    }
    g.method = M_BIND; /* one socket bound to ::1 */
  } else {
    struct sockaddr_in *s4 = (struct sockaddr_in *)&g.server;
    s4->sin_family = AF_INET;
    s4->sin_port = htons(g.port);
    if (inet_pton(AF_INET, g.server_str ? g.server_str : "127.0.0.1", &s4->sin_addr) != 1) {
      fprintf(stderr, "ntpload: -s %s: not an IPv4 address (use -6 for ::1)\n", g.server_str);
      exit(2);
    }
    g.server_len = sizeof *s4;
    struct in_addr b;
    if (inet_pton(AF_INET, g.base_str, &b) != 1) {
      fprintf(stderr, "ntpload: -b %s: not an IPv4 address\n", g.base_str);
      exit(2);
    }
    g.base4 = ntohl(b.s_addr);
    uint64_t last = (uint64_t)g.base4 + g.nsrc - 1;
    if ((g.base4 >> 24) != 127 || (last >> 24) != 127 || (g.base4 & 0xffffff) == 0 ||
        (last & 0xffffff) == 0xffffff) {
      fprintf(stderr,
              "ntpload: sources %s + %" PRIu32 " must stay within 127.0.0.1-127.255.255.254\n",
              g.base_str, g.nsrc);
      exit(2);
    }
  }
  if (!is_loopback(&g.server)) {
    fprintf(stderr, "ntpload: refusing a server outside 127.0.0.0/8 and ::1\n");
    exit(2);
  }
}

/* ---- report ---- */

static double
percentile_us(double p)
{
  if (g.lat_n == 0)
    return 0;
  uint64_t rank = (uint64_t)ceil(p / 100.0 * (double)g.lat_n);
  if (rank < 1)
    rank = 1;
  uint64_t cum = 0;
  for (unsigned i = 0; i < H_BUCKETS; i++) {
    cum += g.hist[i];
    if (cum >= rank)
      return h_value(i) / 1000.0;
  }
  return (double)g.lat_max / 1000.0;
}

static double
cpu_s(void)
{
  struct rusage ru;
  getrusage(RUSAGE_SELF, &ru);
  return (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec / 1e6 +
         (double)ru.ru_stime.tv_sec + (double)ru.ru_stime.tv_usec / 1e6;
}

int
main(int argc, char **argv)
{
  parse_args(argc, argv);
  signal(SIGPIPE, SIG_IGN);
  (void)prctl(PR_SET_TIMERSLACK, 1UL, 0UL, 0UL, 0UL); /* pace open-loop sends finely */
  /* Backstop: whatever happens, the process ends shortly after its run. */
  alarm((unsigned)ceil(g.duration_s) + (g.timeout_ms + 999) / 1000 + 10);

  if (!g.seed_given) {
    if (getrandom(&g.seed, sizeof g.seed, 0) != (ssize_t)sizeof g.seed)
      g.seed = (uint64_t)mono_ns() ^ ((uint64_t)getpid() << 32);
  }
  g.rng = g.seed;

  uint32_t want = g.window;
  if (g.rate > 0) {
    /* Open loop: room for everything that may be outstanding within one timeout. */
    double w = g.rate * g.timeout_ms / 1000.0 * 1.25 + g.batch;
    if (w > (double)want)
      want = w > (double)(1u << MAX_SLOT_BITS) ? 1u << MAX_SLOT_BITS : (uint32_t)w;
  }
  slots_init(want);
  setup_sockets();
  msgs_init();
  g.lat_min = UINT64_MAX;

  double cpu0 = cpu_s();
  int64_t t0 = mono_ns();
  int64_t t_end = t0 + (int64_t)(g.duration_s * 1e9);
  int64_t next_progress = t0 + 1000000000;
  uint64_t prog_valid = 0, prog_sent = 0;
  double tokens = g.batch; /* the first burst goes at once, then pace */
  /* Tokens pile up to 5 ms worth, so a late wakeup (timer slack, a busy vCPU) is made up
   * for at once rather than lost: the offered rate stays RATE. */
  double burst = g.rate * 0.005 > g.batch ? g.rate * 0.005 : g.batch;
  int64_t t_last = t0;
  uint32_t closed_cap = g.window < g.nslots ? g.window : g.nslots;

  int64_t now = t0;
  while (now < t_end && !(g.max_count && g.sent >= g.max_count)) {
    unsigned got = recv_all(true);
    now = mono_ns();
    expire(now);

    unsigned sent_now = 0;
    if (g.rate > 0) {
      tokens += g.rate * (double)(now - t_last) / 1e9;
      t_last = now;
      if (tokens > burst)
        tokens = burst;
      while (tokens >= (double)g.batch) { /* bursts of one batch */
        unsigned k = g.batch;
        if (g.max_count && g.max_count - g.sent < k)
          k = (unsigned)(g.max_count - g.sent);
        if (k == 0)
          break;
        if (g.nfree < k) {
          g.stalled += k - g.nfree; /* no slot for them: skipped, not sent */
          tokens -= k - g.nfree;
          k = g.nfree;
          if (k == 0)
            break;
        }
        unsigned r = send_batch(k, now);
        tokens -= r;
        sent_now += r;
        if (r < k)
          break;
      }
    } else {
      while (g.outstanding < closed_cap) {
        unsigned k = closed_cap - g.outstanding;
        if (k > g.batch)
          k = g.batch;
        if (g.max_count && g.max_count - g.sent < k)
          k = (unsigned)(g.max_count - g.sent);
        if (k == 0)
          break;
        unsigned r = send_batch(k, now);
        sent_now += r;
        if (r < k)
          break;
      }
    }

    if (g.progress && now >= next_progress) {
      fprintf(stderr,
              "ntpload: t=%.0fs sent/s=%" PRIu64 " valid/s=%" PRIu64 " outstanding=%" PRIu32
              " lost=%" PRIu64 " kod=%" PRIu64 "\n",
              (double)(now - t0) / 1e9, g.sent - prog_sent, g.valid - prog_valid,
              g.outstanding, g.lost, g.kod);
      prog_sent = g.sent;
      prog_valid = g.valid;
      next_progress += 1000000000;
    }

    if (got == 0 && sent_now == 0) {
      int64_t until = t_end;
      int64_t e = next_expiry();
      if (e < until)
        until = e;
      if (g.rate > 0) {
        int64_t tk = now + (int64_t)(((double)g.batch - tokens) / g.rate * 1e9) + 1;
        if (tk < until)
          until = tk;
      }
      if (g.progress && next_progress < until)
        until = next_progress;
      wait_until(now, until);
      now = mono_ns();
    }
  }
  int64_t t_stop = now;
  g.sent_in_window = g.sent;

  /* Collect replies still in flight, at most one timeout long. */
  int64_t t_drain = t_stop + (int64_t)g.timeout_ms * 1000000;
  while (g.outstanding > 0) {
    now = mono_ns();
    expire(now);
    if (g.outstanding == 0 || now >= t_drain)
      break;
    if (recv_all(false) == 0) {
      int64_t e = next_expiry();
      wait_until(now, e < t_drain ? e : t_drain);
    }
  }
  g.lost += g.outstanding; /* none left unless the drain was cut short */
  double cpu = cpu_s() - cpu0;
  double secs = (double)(t_stop - t0) / 1e9;

  uint64_t invalid =
      g.bad_addr + g.bad_short + g.bad_mode + g.bad_version + g.bad_len + g.bad_dst + g.bad_ts;
  double rps = g.valid_in_window / secs;
  double kps = g.kod_in_window / secs;
  double sps = g.sent_in_window / secs;
  double p50 = percentile_us(50), p90 = percentile_us(90), p99 = percentile_us(99),
         p999 = percentile_us(99.9);
  double mean = g.lat_n ? g.lat_sum / (double)g.lat_n / 1000.0 : 0;
  double lmin = g.lat_n ? (double)g.lat_min / 1000.0 : 0;
  double lmax = (double)g.lat_max / 1000.0;
  double gen_us = g.sent ? cpu * 1e6 / (double)g.sent : 0;
  char srv[INET6_ADDRSTRLEN];
  if (g.v6)
    inet_ntop(AF_INET6, &((struct sockaddr_in6 *)&g.server)->sin6_addr, srv, sizeof srv);
  else
    inet_ntop(AF_INET, &((struct sockaddr_in *)&g.server)->sin_addr, srv, sizeof srv);
  const char *method = g.v6 ? "v6" : g.method == M_BIND ? "bind" : "pktinfo";
  uint64_t kod_known = kod_count("RATE") + kod_count("DENY") + kod_count("RSTR");

  if (!g.quiet) {
    printf("ntpload: %s port %u, %" PRIu32 " source%s from %s (%s), %s", srv, g.port, g.nsrc,
           g.nsrc == 1 ? "" : "s", g.v6 ? "::1" : g.base_str, method,
           g.rate > 0 ? "open loop" : "closed loop");
    if (g.rate > 0)
      printf(" at %.0f/s", g.rate);
    else
      printf(", window %" PRIu32, closed_cap);
    printf(", batch %u, %.2f s\n", g.batch, secs);
    printf("  sent        %12" PRIu64 "  %10.0f/s", g.sent, sps);
    if (g.stalled || g.send_err)
      printf("  (skipped for want of a slot %" PRIu64 ", send errors %" PRIu64 ")", g.stalled,
             g.send_err);
    printf("\n  valid       %12" PRIu64 "  %10.0f/s", g.valid, rps);
    if (g.unsync)
      printf("  (%" PRIu64 " of them unsynchronised: leap 3 or stratum >= 16)", g.unsync);
    printf("\n  KoD         %12" PRIu64 "  %10.0f/s", g.kod, kps);
    for (unsigned k = 0; k < g.nkods; k++)
      printf("  %s %" PRIu64, g.kods[k].code, g.kods[k].count);
    if (g.kod_other)
      printf("  (more codes) %" PRIu64, g.kod_other);
    printf("\n  invalid     %12" PRIu64 "  (address %" PRIu64 ", short %" PRIu64
           ", mode %" PRIu64 ", version %" PRIu64 ", length %" PRIu64
           ", wrong destination %" PRIu64 ", zero timestamps %" PRIu64 ")\n",
           invalid, g.bad_addr, g.bad_short, g.bad_mode, g.bad_version, g.bad_len, g.bad_dst,
           g.bad_ts);
    printf("  stale       %12" PRIu64 "  (origin matched no outstanding request)\n", g.stale);
    printf("  lost        %12" PRIu64 "  (no reply within %u ms)\n", g.lost, g.timeout_ms);
    printf("  latency us  p50 %.1f  p90 %.1f  p99 %.1f  p99.9 %.1f  (min %.1f mean %.1f max "
           "%.1f)\n",
           p50, p90, p99, p999, lmin, mean, lmax);
    printf("  generator   %.3f us CPU per request sent\n", gen_us);
  }
  printf("tool=ntpload server=%s port=%u sources=%" PRIu32 " base=%s count_limit=%" PRIu64
         " method=%s rate=%.0f window=%" PRIu32 " batch=%u duration=%.3f sent=%" PRIu64
         " valid=%" PRIu64 " invalid=%" PRIu64 " stale=%" PRIu64 " lost=%" PRIu64
         " skipped=%" PRIu64 " send_err=%" PRIu64 " unsync=%" PRIu64 " kod=%" PRIu64
         " kod_RATE=%" PRIu64 " kod_DENY=%" PRIu64 " kod_RSTR=%" PRIu64 " kod_other=%" PRIu64
         " sent_per_s=%.0f rps=%.0f kod_per_s=%.0f p50_us=%.1f p90_us=%.1f p99_us=%.1f"
         " p999_us=%.1f mean_us=%.1f max_us=%.1f gen_cpu_us=%.3f\n",
         srv, g.port, g.nsrc, g.v6 ? "::1" : g.base_str, g.max_count, method, g.rate,
         g.rate > 0 ? g.nslots : closed_cap, g.batch, secs, g.sent, g.valid, invalid, g.stale,
         g.lost, g.stalled, g.send_err, g.unsync, g.kod, kod_count("RATE"), kod_count("DENY"),
         kod_count("RSTR"), g.kod - kod_known, sps, rps, kps, p50, p90, p99, p999, mean, lmax,
         gen_us);
  fflush(stdout);
  return g.valid + g.kod + invalid > 0 ? 0 : 3;
}
