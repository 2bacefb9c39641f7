#include "netio.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/errqueue.h>
#include <linux/filter.h>
#include <linux/net_tstamp.h>
#include <linux/sock_diag.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

static bool
is_unspecified(const NetAddr *a)
{
  static const uint8_t zero[16];
  return memcmp(a->bytes, zero, 16) == 0;
}

static bool
set_opt(int fd, int level, int name, int value, const char *what, char *err, size_t errlen)
{
  if (setsockopt(fd, level, name, &value, sizeof(value)) == 0)
    return true;
  snprintf(err, errlen, "setsockopt %s: %s", what, strerror(errno));
  return false;
}

static bool
configure_socket(int fd, const NetAddr *local, bool reuseport, char *err, size_t errlen)
{
  bool v6 = local->family == ADR_INET6;
  if (!set_opt(fd, SOL_SOCKET, SO_TIMESTAMPNS, 1, "SO_TIMESTAMPNS", err, errlen))
    return false;
  if (reuseport && !set_opt(fd, SOL_SOCKET, SO_REUSEPORT, 1, "SO_REUSEPORT", err, errlen))
    return false;
  if (v6) {
    return set_opt(fd, IPPROTO_IPV6, IPV6_V6ONLY, 1, "IPV6_V6ONLY", err, errlen) &&
           set_opt(fd, IPPROTO_IPV6, IPV6_RECVPKTINFO, 1, "IPV6_RECVPKTINFO", err, errlen);
  }
  return set_opt(fd, IPPROTO_IP, IP_PKTINFO, 1, "IP_PKTINFO", err, errlen);
}

static unsigned fault_every; /* NIO_SetSendFault: written once before the threads start */
static int fault_errno;
static _Thread_local unsigned fault_count;

void
NIO_SetSendFault(unsigned every, int err)
{
  fault_every = every;
  fault_errno = err;
}

static size_t shed_fault_min; /* NIO_SetShedFault: written once before the threads start */

void
NIO_SetShedFault(size_t min_addrs)
{
  shed_fault_min = min_addrs;
}

bool
NIO_Open(const NetAddr *local, bool reuseport, NIO_Socket *out, char *err, size_t errlen)
{
  char name[ADR_STRLEN];
  int af = local->family == ADR_INET6 ? AF_INET6 : AF_INET;
  int fd = socket(af, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  out->fd = -1;
  if (fd < 0) {
    snprintf(err, errlen, "socket: %s", strerror(errno));
    return false;
  }
  if (!configure_socket(fd, local, reuseport, err, errlen)) {
    close(fd);
    return false;
  }
  struct sockaddr_storage ss;
  socklen_t sl = ADR_ToSockaddr(local, &ss);
  if (bind(fd, (struct sockaddr *)&ss, sl) < 0) {
    snprintf(err, errlen, "bind %s: %s", ADR_FormatPort(local, name, sizeof(name)),
             strerror(errno));
    close(fd);
    return false;
  }
  out->fd = fd;
  out->local = *local;
  return true;
}

bool
NIO_Connect(const NetAddr *remote, NIO_Socket *out, char *err, size_t errlen)
{
  NetAddr any = {.family = remote->family};
  if (!NIO_Open(&any, false, out, err, errlen))
    return false;
  struct sockaddr_storage ss;
  socklen_t sl = ADR_ToSockaddr(remote, &ss);
  if (connect(out->fd, (struct sockaddr *)&ss, sl) < 0) {
    char name[ADR_STRLEN];
    snprintf(err, errlen, "connect %s: %s", ADR_FormatPort(remote, name, sizeof(name)),
             strerror(errno));
    NIO_Close(out);
    return false;
  }
  /* Kernel software timestamps of what we send (the error queue) and receive, in one
   * option: SCM_TIMESTAMPING replaces SCM_TIMESTAMPNS on this socket, so a datagram does not
   * carry both. Without it (an old or restricted kernel) SO_TIMESTAMPNS stays as it was. */
  int flags = SOF_TIMESTAMPING_TX_SOFTWARE | SOF_TIMESTAMPING_RX_SOFTWARE |
              SOF_TIMESTAMPING_SOFTWARE | SOF_TIMESTAMPING_OPT_TSONLY;
  if (setsockopt(out->fd, SOL_SOCKET, SO_TIMESTAMPING, &flags, sizeof(flags)) == 0) {
    int off = 0;
    setsockopt(out->fd, SOL_SOCKET, SO_TIMESTAMPNS, &off, sizeof(off));
  }
  return true;
}

/* The software timestamp (ts[0]) of an SCM_TIMESTAMPING message into *ts, if it holds one. */
static bool
software_stamp(const struct cmsghdr *c, struct timespec *ts)
{
  struct scm_timestamping tss;
  memcpy(&tss, CMSG_DATA(c), sizeof(tss));
  if (tss.ts[0].tv_sec == 0 && tss.ts[0].tv_nsec == 0)
    return false;
  *ts = tss.ts[0];
  return true;
}

bool
NIO_ReadTxTimestamp(const NIO_Socket *s, struct timespec *ts)
{
  bool got = false;
  for (int i = 0; i < 16; i++) { /* bounded: the queue holds one entry per datagram sent */
    uint64_t ctl[32];
    uint8_t data[64];
    struct iovec iov = {data, sizeof(data)};
    struct msghdr mh = {
        .msg_iov = &iov, .msg_iovlen = 1, .msg_control = ctl, .msg_controllen = sizeof(ctl)};
    if (recvmsg(s->fd, &mh, MSG_ERRQUEUE | MSG_DONTWAIT) < 0)
      break;
    struct timespec stamp;
    bool have = false, sent = false;
    for (struct cmsghdr *c = CMSG_FIRSTHDR(&mh); c; c = CMSG_NXTHDR(&mh, c)) {
      if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_TIMESTAMPING) {
        have = software_stamp(c, &stamp);
      } else if ((c->cmsg_level == IPPROTO_IP && c->cmsg_type == IP_RECVERR) ||
                 (c->cmsg_level == IPPROTO_IPV6 && c->cmsg_type == IPV6_RECVERR)) {
        struct sock_extended_err ee;
        memcpy(&ee, CMSG_DATA(c), sizeof(ee));
        sent = ee.ee_errno == ENOMSG && ee.ee_origin == SO_EE_ORIGIN_TIMESTAMPING &&
               ee.ee_info == SCM_TSTAMP_SND;
      }
    }
    if (have && sent) {
      *ts = stamp;
      got = true;
    }
  }
  return got;
}

void
NIO_Close(NIO_Socket *s)
{
  if (s->fd >= 0)
    close(s->fd);
  s->fd = -1;
}

static void
parse_control(struct msghdr *mh, NIO_Datagram *d)
{
  for (struct cmsghdr *c = CMSG_FIRSTHDR(mh); c; c = CMSG_NXTHDR(mh, c)) {
    if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_TIMESTAMPNS) {
      memcpy(&d->rx, CMSG_DATA(c), sizeof(d->rx));
    } else if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_TIMESTAMPING) {
      software_stamp(c, &d->rx); /* client sockets (NIO_Connect) */
    } else if (c->cmsg_level == IPPROTO_IP && c->cmsg_type == IP_PKTINFO) {
      struct in_pktinfo pi;
      memcpy(&pi, CMSG_DATA(c), sizeof(pi));
      d->dst.family = ADR_INET4;
      memcpy(d->dst.bytes, &pi.ipi_addr, 4);
      d->ifindex = pi.ipi_ifindex;
    } else if (c->cmsg_level == IPPROTO_IPV6 && c->cmsg_type == IPV6_PKTINFO) {
      struct in6_pktinfo pi6;
      memcpy(&pi6, CMSG_DATA(c), sizeof(pi6));
      d->dst.family = ADR_INET6;
      memcpy(d->dst.bytes, &pi6.ipi6_addr, 16);
      d->ifindex = (int)pi6.ipi6_ifindex;
    }
  }
}

int
NIO_Receive(const NIO_Socket *s, NIO_Batch *b)
{
  for (int i = 0; i < NIO_BATCH; i++) {
    b->riov[i] = (struct iovec){b->in[i].data, sizeof(b->in[i].data)};
    b->rmsg[i].msg_hdr = (struct msghdr){
        .msg_name = &b->rname[i],
        .msg_namelen = sizeof(b->rname[i]),
        .msg_iov = &b->riov[i],
        .msg_iovlen = 1,
        .msg_control = b->rctl[i],
        .msg_controllen = sizeof(b->rctl[i]),
    };
    b->rmsg[i].msg_len = 0;
  }
  int n = recvmmsg(s->fd, b->rmsg, NIO_BATCH, MSG_DONTWAIT, NULL);
  if (n < 0)
    return (errno == EAGAIN || errno == EWOULDBLOCK) ? 0 : -1;
  for (int i = 0; i < n; i++) {
    NIO_Datagram *d = &b->in[i];
    struct msghdr *mh = &b->rmsg[i].msg_hdr;
    d->len = b->rmsg[i].msg_len;
    d->truncated = (mh->msg_flags & MSG_TRUNC) != 0;
    d->rx = (struct timespec){0, 0};
    d->dst = s->local;
    d->ifindex = 0;
    if (!ADR_FromSockaddr((struct sockaddr *)&b->rname[i], &d->src))
      d->src.family = ADR_NONE;
    ADR_Unmap(&d->src);
    parse_control(mh, d);
    d->dst.port = s->local.port;
  }
  return n;
}

/* Replies from a wildcard socket must leave from the address the request was sent to. */
static size_t
set_source(const NIO_Socket *s, const NIO_Reply *r, uint64_t *ctl, size_t ctlsize)
{
  if (!is_unspecified(&s->local) || r->src.family != s->local.family)
    return 0;
  struct msghdr mh = {.msg_control = ctl, .msg_controllen = ctlsize};
  struct cmsghdr *c = CMSG_FIRSTHDR(&mh);
  memset(ctl, 0, ctlsize);
  if (r->src.family == ADR_INET4) {
    struct in_pktinfo pi = {0};
    memcpy(&pi.ipi_spec_dst, r->src.bytes, 4);
    c->cmsg_level = IPPROTO_IP;
    c->cmsg_type = IP_PKTINFO;
    c->cmsg_len = CMSG_LEN(sizeof(pi));
    memcpy(CMSG_DATA(c), &pi, sizeof(pi));
    return CMSG_SPACE(sizeof(pi));
  }
  struct in6_pktinfo pi6 = {0};
  memcpy(&pi6.ipi6_addr, r->src.bytes, 16);
  pi6.ipi6_ifindex = (unsigned)r->ifindex;
  c->cmsg_level = IPPROTO_IPV6;
  c->cmsg_type = IPV6_PKTINFO;
  c->cmsg_len = CMSG_LEN(sizeof(pi6));
  memcpy(CMSG_DATA(c), &pi6, sizeof(pi6));
  return CMSG_SPACE(sizeof(pi6));
}

int
NIO_Send(const NIO_Socket *s, NIO_Batch *b, int n)
{
  for (int i = 0; i < n; i++) {
    NIO_Reply *r = &b->out[i];
    b->siov[i] = (struct iovec){r->data, r->len};
    size_t ctl = set_source(s, r, b->sctl[i], sizeof(b->sctl[i]));
    b->smsg[i].msg_hdr = (struct msghdr){
        .msg_name = &b->sname[i],
        .msg_namelen = ADR_ToSockaddr(&r->dst, &b->sname[i]),
        .msg_iov = &b->siov[i],
        .msg_iovlen = 1,
        .msg_control = ctl ? b->sctl[i] : NULL,
        .msg_controllen = ctl,
    };
  }
  if (fault_every && ++fault_count % fault_every == 0) {
    errno = fault_errno;
    return -1;
  }
  int sent = 0;
  while (sent < n) {
    int k = sendmmsg(s->fd, b->smsg + sent, (unsigned)(n - sent), MSG_DONTWAIT);
    if (k <= 0) {
      if (k < 0 && errno == EINTR)
        continue;
      return sent > 0 ? sent : -1;
    }
    sent += k;
  }
  return sent;
}

/* ---- load shedding: a classic BPF socket filter ----
 * The program loads the source address from the network header (negative offsets reach it
 * from a UDP socket's filter), compares it with each shed address, accepts the packet if
 * none matches, and otherwise accepts it only if the low `leak` bits of a kernel random
 * number are zero. Loads are big-endian: an address word is compared as ntohl() of it. */

#define INSN(c, k) ((struct sock_filter){(uint16_t)(c), 0, 0, (uint32_t)(k)})
#define JUMP(c, k, jt, jf)                                                                    \
  ((struct sock_filter){(uint16_t)(c), (uint8_t)(jt), (uint8_t)(jf), (uint32_t)(k)})
#define ACCEPT 0xffffffffu

static uint32_t
word_at(const uint8_t *b)
{
  return (uint32_t)b[0] << 24 | (uint32_t)b[1] << 16 | (uint32_t)b[2] << 8 | b[3];
}

/* Writes the program into prog (room for 9 * NIO_SHED_MAX + 6); returns its length. */
static size_t
shed_program(int family, const NetAddr *addrs, size_t n, int leak, struct sock_filter *prog)
{
  size_t k = 0;
  size_t matches[NIO_SHED_MAX]; /* jumps to patch to the match section */
  size_t nm = 0;
  for (size_t i = 0; i < n && nm < NIO_SHED_MAX; i++) {
    if (addrs[i].family != family)
      continue;
    if (family == ADR_INET4) {
      prog[k++] = INSN(BPF_LD | BPF_W | BPF_ABS, SKF_NET_OFF + 12);
      prog[k++] = JUMP(BPF_JMP | BPF_JEQ | BPF_K, word_at(addrs[i].bytes), 0, 1);
    } else {
      for (int w = 0; w < 4; w++) { /* a mismatch skips the rest of this address */
        prog[k++] = INSN(BPF_LD | BPF_W | BPF_ABS, SKF_NET_OFF + 8 + 4 * w);
        prog[k++] = JUMP(BPF_JMP | BPF_JEQ | BPF_K, word_at(addrs[i].bytes + 4 * w), 0,
                         2 * (3 - w) + 1);
      }
    }
    matches[nm++] = k;
    prog[k++] = INSN(BPF_JMP | BPF_JA, 0); /* patched below */
  }
  if (nm == 0)
    return 0;
  prog[k++] = INSN(BPF_RET | BPF_K, ACCEPT); /* no shed address */
  size_t match = k;
  if (leak > 0) {
    prog[k++] = INSN(BPF_LD | BPF_W | BPF_ABS, SKF_AD_OFF + SKF_AD_RANDOM);
    prog[k++] = INSN(BPF_ALU | BPF_AND | BPF_K, (1u << leak) - 1);
    prog[k++] = JUMP(BPF_JMP | BPF_JEQ | BPF_K, 0, 0, 1);
    prog[k++] = INSN(BPF_RET | BPF_K, ACCEPT); /* the sample */
  }
  prog[k++] = INSN(BPF_RET | BPF_K, 0);
  for (size_t i = 0; i < nm; i++)
    prog[matches[i]].k = (uint32_t)(match - matches[i] - 1);
  return k;
}

bool
NIO_SetShedFilter(const NIO_Socket *s, const NetAddr *addrs, size_t n, int leak)
{
  struct sock_filter prog[9 * NIO_SHED_MAX + 6];
  if (leak < 0 || leak > 30) {
    errno = EINVAL;
    return false;
  }
  size_t len = shed_program(s->local.family, addrs, n, leak, prog);
  if (len == 0) {
    int unused = 0;
    return setsockopt(s->fd, SOL_SOCKET, SO_DETACH_FILTER, &unused, sizeof(unused)) == 0 ||
           errno == ENOENT;
  }
  size_t mine = 0;
  for (size_t i = 0; i < n; i++)
    mine += addrs[i].family == s->local.family;
  struct sock_fprog fp = {.len = (unsigned short)len, .filter = prog};
  if ((shed_fault_min == 0 || mine < shed_fault_min) &&
      setsockopt(s->fd, SOL_SOCKET, SO_ATTACH_FILTER, &fp, sizeof(fp)) == 0)
    return true;
  if (shed_fault_min && mine >= shed_fault_min)
    errno = ENOMEM;
  /* fail open: an older list must not stay in force (e.g. net.core.optmem_max too small) */
  int e = errno, unused = 0;
  setsockopt(s->fd, SOL_SOCKET, SO_DETACH_FILTER, &unused, sizeof(unused));
  errno = e;
  return false;
}

uint64_t
NIO_KernelDrops(const NIO_Socket *s)
{
  uint32_t mem[SK_MEMINFO_VARS] = {0};
  socklen_t len = sizeof(mem);
  if (getsockopt(s->fd, SOL_SOCKET, SO_MEMINFO, mem, &len) != 0 ||
      len < (SK_MEMINFO_DROPS + 1) * sizeof(uint32_t))
    return 0;
  return mem[SK_MEMINFO_DROPS];
}
