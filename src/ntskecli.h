/* ntskecli: one NTS-KE handshake as a client (RFC 8915 section 4), run to the end on the
 * calling thread -- never the event loop's: the client runs it on a helper thread of its own.
 * TCP to the NTS-KE server, TLS 1.3 with ALPN ntske/1, SNI and the certificate checked for
 * the host name (or the IP address) the configuration gave, our request, the response
 * parsed (ntske.h), the two session keys exported (label EXPORTER-network-time-security,
 * context NTPv4 / AEAD 15 / c2s or s2c) and the NTP server named by the response (Server
 * and Port Negotiation honoured; a host name resolved here). Everything within one deadline;
 * a write to abort_fd (an eventfd) ends a handshake under way at once. */
#ifndef NTPG_NTSKECLI_H
#define NTPG_NTSKECLI_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "netaddr.h"
#include "ntske.h"
#include "ntstls.h"
#include "siv.h"

#define NKC_TIMEOUT_MS 10000 /* a handshake gets this long, connection included */

/* How a handshake ended; the failures are counters (client_nts_ke_fail_*). */
#define NKC_STATUSES(X)                                                                       \
  X(OK, "ok")                                                                                 \
  X(CONNECT, "connect")   /* TCP: refused, unreachable, or reset before TLS began */          \
  X(TLS, "tls")           /* TLS failed: version, ALPN, alerts, a closed connection */        \
  X(VERIFY, "verify")     /* the certificate: untrusted, expired, or not for the host */      \
  X(PROTOCOL, "protocol") /* records: Error/Warning, refused, malformed, no cookie; an */     \
                          /* NTP server name that does not resolve */                         \
  X(TIMEOUT, "timeout")   /* not done within NKC_TIMEOUT_MS */

typedef enum {
#define NKC_ENUM(id, name) NKC_##id,
  NKC_STATUSES(NKC_ENUM)
#undef NKC_ENUM
      NKC_STATUS_COUNT
} NKC_Status;

const char *NKC_StatusName(NKC_Status s);

typedef struct {
  uint8_t c2s[SIV_KEY_LEN], s2c[SIV_KEY_LEN];
  uint8_t cookies[NKE_COOKIES][NKE_MAX_COOKIE];
  uint16_t cookie_len[NKE_COOKIES];
  size_t n_cookies;
  NetAddr ntp;   /* the NTP server: address and UDP port (123 unless negotiated) */
  char why[256]; /* a failure's reason, for the log (never key material) */
} NKC_Result;

/* Run a handshake with the server at ke (address and TCP port); host is the name the
 * certificate must carry (a host name or an address literal). */
NKC_Status NKC_Handshake(NTL_Ctx *ctx, const char *host, const NetAddr *ke, int abort_fd,
                         NKC_Result *out);

#endif
