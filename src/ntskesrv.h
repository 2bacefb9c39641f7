/* ntskesrv: the NTS-KE server's edge (RFC 8915 section 4) -- its own thread, never a
 * serving thread: TCP listeners on the NTS-KE port (IPv4 and IPv6 wildcard), non-blocking
 * TLS 1.3 handshakes (ntstls), the request parsed and answered by ntske, eight cookies
 * sealed by ntscookie with the keys exported from the TLS session, and the master keys
 * rotated on schedule and kept in the `nts cookie` file, then published to the serving
 * threads (NKS_Keys). A peer that the restrict list gives `ignore` or `noserve` is closed
 * at accept. Bounded: at most NKS_MAX_CONNS
 * connections, NKS_PER_ADDR from one address, and NKS_TIMEOUT s for a connection's whole
 * life (handshake, request, response), so a silent client only holds its own slot. */
#ifndef NTPG_NTSKESRV_H
#define NTPG_NTSKESRV_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "config.h"
#include "ntscookie.h"
#include "restrict.h"

#define NKS_MAX_CONNS 1500
#define NKS_PER_ADDR 64
#define NKS_TIMEOUT 5.0

typedef struct NKS_Server NKS_Server;

/* Every outcome, counted (docs/nts.md lists them). */
typedef struct {
  uint64_t accepted;         /* TCP connections taken */
  uint64_t handshakes;       /* requests answered with cookies */
  uint64_t tls_failed;       /* TLS handshake failed (no ntske/1, no TLS 1.3, bad record) */
  uint64_t bad_request;      /* Bad Request error sent */
  uint64_t unknown_critical; /* Unrecognized Critical Record error sent */
  uint64_t no_aead;          /* NTPv4 or AES-SIV-CMAC-256 not offered: no cookies */
  uint64_t timeouts;         /* closed at NKS_TIMEOUT */
  uint64_t refused_full;     /* refused: NKS_MAX_CONNS open */
  uint64_t refused_addr;     /* refused: NKS_PER_ADDR open from that address */
  uint64_t closed_early;     /* the client closed before its request was complete */
  uint64_t internal_error;   /* key export or sealing failed: Internal Server Error sent */
  uint64_t cookies_issued;
  uint64_t key_rotations;
  uint64_t refused_restrict; /* closed at accept: `restrict ignore` or `noserve` */
} NKS_Counters;

/* Build the TLS context, load or create the cookie keys and bind the listeners (IPv4
 * required, IPv6 if the host has it); NULL with the reason in err. Call before detaching
 * and confinement. */
NKS_Server *NKS_Create(const CNF_Nts *n, char *err, size_t errlen);
/* Start its thread (after any fork). */
bool NKS_Run(NKS_Server *s, char *err, size_t errlen);
/* Stop the thread and close everything; NULL is fine. */
void NKS_Stop(NKS_Server *s);
void NKS_GetCounters(const NKS_Server *s, NKS_Counters *out);
/* The cookie master keys in force, for the serving threads (server.h: SRV_Ctx.nts_keys);
 * valid until NKS_Stop. Published at NKS_Create and on every change. */
NCK_Store *NKS_Keys(NKS_Server *s);
/* The restrict list to check NTS-KE clients against at accept: s keeps its own copy (false
 * if memory ran out: the old copy stays). Any thread; NULL: no restrictions. */
bool NKS_SetRestrict(NKS_Server *s, const RST_List *rst);

#endif
