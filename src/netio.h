/* netio: UDP sockets and batched datagram I/O. Opens one socket per listen address (or a
 * wildcard socket per family), reads batches with recvmmsg together with the kernel receive
 * timestamp (SO_TIMESTAMPNS) and the local destination address (IP_PKTINFO/IPV6_PKTINFO),
 * and sends batches of replies with sendmmsg from the address the request arrived on.
 * It decides nothing; errors are reported through a caller's buffer and never logged here. */
#ifndef NTPG_NETIO_H
#define NTPG_NETIO_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <time.h>

#include "netaddr.h"
#include "packet.h"

#define NIO_BATCH 32

typedef struct {
  int fd;
  NetAddr local; /* bound address and port; the unspecified address for a wildcard socket */
} NIO_Socket;

/* Open and bind a UDP socket on `local` (port included). reuseport: allow several sockets on
 * one address (one per thread). False with a reason in err. */
bool NIO_Open(const NetAddr *local, bool reuseport, NIO_Socket *out, char *err, size_t errlen);
void NIO_Close(NIO_Socket *s);
/* A client socket: bound to a random ephemeral port of the kernel's choice (RFC 9109) on
 * the wildcard address of remote's family, connected to remote, with kernel software
 * receive timestamps and, where the kernel gives them (SO_TIMESTAMPING), transmit
 * timestamps. Read it with NIO_Receive, and its transmit timestamps with
 * NIO_ReadTxTimestamp after each send and before each NIO_Receive. */
bool NIO_Connect(const NetAddr *remote, NIO_Socket *out, char *err, size_t errlen);
/* Drain the socket's error queue (without blocking); true with the latest kernel software
 * transmit timestamp (CLOCK_REALTIME) in *ts if it held one. Matching the timestamp to a
 * request is the caller's business. */
bool NIO_ReadTxTimestamp(const NIO_Socket *s, struct timespec *ts);

/* One received datagram. */
typedef struct {
  uint8_t data[PKT_MAX_LEN];
  size_t len;
  NetAddr src;        /* with source port */
  NetAddr dst;        /* local address it was sent to (port = socket's) */
  int ifindex;        /* arrival interface, 0 if unknown */
  struct timespec rx; /* kernel receive time (CLOCK_REALTIME); zero if none */
  bool truncated;     /* longer than PKT_MAX_LEN: data holds the first part */
} NIO_Datagram;

/* One reply to send. */
typedef struct {
  uint8_t data[PKT_MAX_LEN];
  size_t len;
  size_t req_len; /* length of the request it answers (a reply is never longer) */
  NetAddr dst;    /* the requester */
  NetAddr src;    /* the local address to send from (the request's dst) */
  int ifindex;
} NIO_Reply;

/* Buffers for one batch; owned by one thread. Large: allocate it, do not put it on a stack. */
typedef struct {
  NIO_Datagram in[NIO_BATCH];
  NIO_Reply out[NIO_BATCH];
  struct mmsghdr rmsg[NIO_BATCH], smsg[NIO_BATCH];
  struct iovec riov[NIO_BATCH], siov[NIO_BATCH];
  struct sockaddr_storage rname[NIO_BATCH], sname[NIO_BATCH];
  uint64_t rctl[NIO_BATCH][16], sctl[NIO_BATCH][8]; /* control buffers, 8-aligned */
} NIO_Batch;

/* Receive up to NIO_BATCH datagrams without blocking. Returns the count (0 = nothing
 * waiting), or -1 with errno on an error other than EAGAIN. */
int NIO_Receive(const NIO_Socket *s, NIO_Batch *b);
/* Send b->out[0..n-1] from socket s. Returns how many the kernel took (the rest are lost:
 * UDP), or -1 with errno. */
int NIO_Send(const NIO_Socket *s, NIO_Batch *b, int n);

/* Load shedding (shed.h): install a socket filter on s that drops, in the kernel, every
 * datagram from one of the n addresses (of s's family; others are ignored) except 1 in
 * 2^leak chosen at random (leak 0: all of them). n = 0 removes the filter. The swap is
 * atomic: each datagram sees either the old filter or the new one. False with errno if the
 * kernel refused it; the socket then has no filter at all (fail open). */
#define NIO_SHED_MAX 64
bool NIO_SetShedFilter(const NIO_Socket *s, const NetAddr *addrs, size_t n, int leak);
/* Datagrams the kernel dropped on s (filter and full receive buffer); 0 if unknown. */
uint64_t NIO_KernelDrops(const NIO_Socket *s);

/* Fault injection for tests (set once at start, before any thread sends): every `every`-th
 * NIO_Send call of each thread fails as if the kernel said err (ENOBUFS, EAGAIN) without
 * sending anything. 0 turns it off (the default). */
void NIO_SetSendFault(unsigned every, int err);
/* Fault injection for tests (set once before the threads start): NIO_SetShedFilter refuses
 * (ENOMEM, the socket's filter detached) every list with at least min_addrs addresses of the
 * socket's family, as a kernel whose net.core.optmem_max is too small for it does. 0 (the
 * default) turns it off. */
void NIO_SetShedFault(size_t min_addrs);

#endif
