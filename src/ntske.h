/* ntske: the NTS-KE record protocol (RFC 8915 section 4) as values. Server side: a client's
 * request parsed strictly (record framing, the critical bit, unknown critical records,
 * duplicated or misplaced records, sizes), the negotiation (next protocol NTPv4,
 * AEAD_AES_SIV_CMAC_256) and the response or error records built into a caller's buffer.
 * Client side: the request we send and the server's response parsed as strictly (what was
 * negotiated, cookies, server and port, error and warning records). Also the key exporter's
 * context (section 5.1). Pure: no I/O, no allocation, no TLS. */
#ifndef NTPG_NTSKE_H
#define NTPG_NTSKE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Record types (RFC 8915 section 7.6, IANA "Network Time Security Key Establishment Record
 * Types"); the high bit of the 16-bit type field is the critical bit. */
enum {
  NKE_REC_END = 0,
  NKE_REC_NEXT_PROTO = 1,
  NKE_REC_ERROR = 2,
  NKE_REC_WARNING = 3,
  NKE_REC_AEAD = 4,
  NKE_REC_COOKIE = 5,
  NKE_REC_SERVER = 6,
  NKE_REC_PORT = 7,
};
#define NKE_CRITICAL 0x8000u

/* Error codes (section 7.7). */
enum {
  NKE_ERR_UNRECOGNIZED_CRITICAL = 0,
  NKE_ERR_BAD_REQUEST = 1,
  NKE_ERR_INTERNAL = 2,
};

#define NKE_PROTO_NTPV4 0
#define NKE_AEAD_AES_SIV_CMAC_256 15
#define NKE_KEY_LEN 32 /* AEAD_AES_SIV_CMAC_256: two 128-bit AES keys */
#define NKE_COOKIES 8  /* cookies per handshake (section 4) */
#define NKE_EXPORTER_LABEL "EXPORTER-network-time-security"
#define NKE_EXPORTER_LABEL_LEN (sizeof(NKE_EXPORTER_LABEL) - 1)
/* A request longer than this is refused: a valid one needs a few dozen octets. */
#define NKE_MAX_REQUEST 1024

typedef enum {
  NKE_OK = 0,           /* a whole request up to End of Message: see NKE_Request */
  NKE_INCOMPLETE,       /* valid so far; read more (the End of Message is not there yet) */
  NKE_BAD_REQUEST,      /* framing, sizes, a record in the wrong place or repeated */
  NKE_UNKNOWN_CRITICAL, /* a critical record of a type we do not know */
  NKE_STATUS_COUNT
} NKE_Status;

/* What a request asked for, once parsed. */
typedef struct {
  bool ntpv4;        /* NTPv4 (protocol 0) was offered */
  bool aead_siv;     /* AEAD_AES_SIV_CMAC_256 was offered */
  bool aead_given;   /* an AEAD record was present */
  size_t length;     /* octets up to and including End of Message */
  uint16_t bad_type; /* NKE_UNKNOWN_CRITICAL / NKE_BAD_REQUEST: the record's type */
  const char *why;   /* NKE_BAD_REQUEST: a short reason for counters and tests */
} NKE_Request;

/* Parse the octets received so far (len <= what has arrived). */
NKE_Status NKE_ParseRequest(const uint8_t *buf, size_t len, NKE_Request *out);

/* What the server answers besides the negotiation: the cookies (each cookie_len octets),
 * and optionally an NTPv4 server name and port (0: none sent; the client then uses the
 * NTS-KE server's address and port 123). */
typedef struct {
  const uint8_t *cookies; /* n_cookies * cookie_len octets */
  size_t n_cookies, cookie_len;
  const char *server; /* NULL: no Server Negotiation record */
  uint16_t port;      /* 0: no Port Negotiation record */
} NKE_Grant;

/* True if the request can be granted cookies: NTPv4 and our AEAD were both offered. */
bool NKE_CanGrant(const NKE_Request *rq);

/* The response to a parsed request into out: Next Protocol (NTPv4, or empty if not
 * offered), AEAD (ours, or empty if not offered), and if both negotiated the grant's
 * records, then End of Message. The octets written, 0 if cap is too small. */
size_t NKE_BuildResponse(const NKE_Request *rq, const NKE_Grant *g, uint8_t *out, size_t cap);

/* An Error record with code, then End of Message (section 4.1.3): the octets written
 * (10), 0 if cap is too small. */
size_t NKE_BuildError(uint16_t code, uint8_t *out, size_t cap);

/* The error code to send for a status (NKE_BAD_REQUEST, NKE_UNKNOWN_CRITICAL). */
uint16_t NKE_ErrorCode(NKE_Status s);

/* The exporter context for one direction (section 5.1): protocol id (2 octets), AEAD id
 * (2 octets), 0x00 for client-to-server or 0x01 for server-to-client. */
void NKE_ExporterContext(uint16_t aead, bool s2c, uint8_t out[5]);

/* ---- the client's side ---- */

#define NKE_MAX_RESPONSE 16384 /* longer is refused (8 cookies need about 1 KiB) */
#define NKE_MAX_COOKIE 256     /* a longer cookie is refused: it must fit an NTP request */
#define NKE_MAX_SERVER 255     /* Server Negotiation: a host name or address literal */

/* Our request: Next Protocol (NTPv4), AEAD (AES-SIV-CMAC-256), End of Message; all
 * critical. The octets written (16), 0 if cap is too small. */
size_t NKE_BuildClientRequest(uint8_t *out, size_t cap);

typedef enum {
  NKE_RESP_OK = 0,         /* NTPv4 and AEAD 15 negotiated, at least one cookie */
  NKE_RESP_INCOMPLETE,     /* valid so far; read more */
  NKE_RESP_ERROR,          /* an Error record: code in error_code */
  NKE_RESP_WARNING,        /* a Warning record (none is defined: section 4.1.4 says abort) */
  NKE_RESP_BAD,            /* framing, sizes, missing, repeated or unknown critical records */
  NKE_RESP_NOT_NEGOTIATED, /* NTPv4 or AEAD_AES_SIV_CMAC_256 refused (empty lists) */
  NKE_RESP_NO_COOKIE,      /* negotiated, but no cookie */
} NKE_RespStatus;

/* What a response granted; the cookies are offsets into the parsed buffer. */
typedef struct {
  size_t length;    /* octets up to and including End of Message */
  size_t n_cookies; /* at most NKE_COOKIES kept; more are ignored */
  uint16_t cookie_off[NKE_COOKIES], cookie_len[NKE_COOKIES];
  bool has_server; /* Server Negotiation: the NTP server's name or address */
  char server[NKE_MAX_SERVER + 1];
  bool has_port; /* Port Negotiation: the NTP server's UDP port */
  uint16_t port;
  uint16_t code;   /* NKE_RESP_ERROR / NKE_RESP_WARNING: the record's code */
  const char *why; /* anything but OK: a short reason for logs and tests */
} NKE_Response;

/* Parse what has arrived of a server's response (len <= what has arrived). */
NKE_RespStatus NKE_ParseResponse(const uint8_t *buf, size_t len, NKE_Response *out);

#endif
