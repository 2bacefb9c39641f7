/* ctlwire: the NTP mode 6 (control, RFC 9327) wire format, as ntpq speaks it. It owns the
 * 12-octet header, the request checks of ntpd (R/E/M bits, offset, count, padding), where a
 * request's MAC sits, the fragmenting writer of responses (468 data octets per datagram,
 * "name=value" text items in ntpd's layout, the M bit and offsets), error replies, and the
 * client-side reassembly of a fragmented response (for tests and tools).
 * Pure: no I/O, no clock, no logging, no allocation, no globals. MACs are computed by the
 * signing function the caller hands in (KEY_Sign-compatible, see CTW_SignFn).
 *
 *   |LI|VN|Mode=6|R|E|M|Opcode(5)| Sequence(16) | Status(16) | AssocID(16) |
 *   | Offset(16) | Count(16) | Data (Count octets) | pad to 4 | [pad to 8, KeyID, Digest] |
 */
#ifndef NTPG_CTLWIRE_H
#define NTPG_CTLWIRE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "keys.h"
#include "ntptime.h"
#include "packet.h"

#define CTW_HEADER_LEN 12
#define CTW_MAX_DATA 468 /* data octets in one datagram (RFC 9327, ntpd CTL_MAX_DATA_LEN) */
#define CTW_MAX_FRAGS 32 /* datagrams in one response; ntpq's MAXFRAGS */
/* Largest datagram: header + data (480, a multiple of 8) + key id + 20-octet digest. */
#define CTW_MAX_DATAGRAM (CTW_HEADER_LEN + CTW_MAX_DATA + KEY_MAX_MAC)
#define CTW_MAX_PAYLOAD (CTW_MAX_FRAGS * CTW_MAX_DATA)
#define CTW_LINE_LEN 72 /* ntpd starts a new text line ("\r\n") before this column */

/* Bits of octet 1. */
enum { CTW_RESPONSE = 0x80, CTW_ERROR = 0x40, CTW_MORE = 0x20, CTW_OPCODE_MASK = 0x1f };

/* Opcodes (RFC 9327 and ntpd). */
enum {
  CTW_OP_UNSPEC = 0,
  CTW_OP_READSTAT = 1,
  CTW_OP_READVAR = 2,
  CTW_OP_WRITEVAR = 3,
  CTW_OP_READCLOCK = 4,
  CTW_OP_WRITECLOCK = 5,
  CTW_OP_SETTRAP = 6,
  CTW_OP_ASYNCMSG = 7,
  CTW_OP_CONFIGURE = 8,
  CTW_OP_SAVECONFIG = 9,
  CTW_OP_READ_MRU = 10,
  CTW_OP_READ_ORDLIST_A = 11,
  CTW_OP_REQ_NONCE = 12,
  CTW_OP_UNSETTRAP = 31,
};

/* Error codes, carried in the high octet of the status of an error reply. */
enum {
  CTW_ERR_UNSPEC = 0,
  CTW_ERR_PERMISSION = 1,
  CTW_ERR_BADFMT = 2,
  CTW_ERR_BADOP = 3,
  CTW_ERR_BADASSOC = 4,
  CTW_ERR_UNKNOWNVAR = 5,
  CTW_ERR_BADVALUE = 6,
  CTW_ERR_RESTRICT = 7,
};

/* System status word: clock source codes (bits 8..13). */
enum { CTW_SST_TS_UNSPEC = 0, CTW_SST_TS_LOCAL = 5, CTW_SST_TS_NTP = 6 };
/* Peer status word: flags of the high octet, and the selection code in its low 3 bits. */
enum {
  CTW_PST_CONFIG = 0x80,
  CTW_PST_AUTHENABLE = 0x40,
  CTW_PST_AUTHENTIC = 0x20,
  CTW_PST_REACH = 0x10,
  CTW_PST_BCAST = 0x08,
};
enum {
  CTW_SEL_REJECT = 0,    /* ' ' */
  CTW_SEL_FALSETICK = 1, /* 'x' */
  CTW_SEL_EXCESS = 2,    /* '.' */
  CTW_SEL_OUTLIER = 3,   /* '-' */
  CTW_SEL_CANDIDATE = 4, /* '+' */
  CTW_SEL_BACKUP = 5,    /* '#' */
  CTW_SEL_SYSPEER = 6,   /* '*' */
  CTW_SEL_PPSPEER = 7,   /* 'o' */
};

static inline uint16_t
CTW_SysStatus(unsigned leap, unsigned source, unsigned nevents, unsigned event)
{
  return (uint16_t)(((leap & 3u) << 14) | ((source & 0x3fu) << 8) | ((nevents & 0xfu) << 4) |
                    (event & 0xfu));
}
static inline uint16_t
CTW_PeerStatus(unsigned flags_sel, unsigned nevents, unsigned event)
{
  return (uint16_t)(((flags_sel & 0xffu) << 8) | ((nevents & 0xfu) << 4) | (event & 0xfu));
}

/* The MAC primitives: the same contracts as KEY_Sign and KEY_Verify (which are valid values),
 * but a mode 6 MAC can start at any multiple of 4 from octet 12 on, and KEY_Sign/KEY_Verify
 * only accept MACs that start at octet 48 or later; see control.h. */
typedef size_t (*CTW_SignFn)(const KEY_Table *t, uint32_t id, uint8_t *pkt, size_t len,
                             size_t bufsize);
typedef KEY_Verdict (*CTW_VerifyFn)(const KEY_Table *t, const uint8_t *pkt, size_t len,
                                    const PKT_Trailer *tr, const NetAddr *src);

/* ------------------------------------------------------------------------------------ */
/* Requests                                                                              */

typedef struct {
  uint8_t leap, version, mode;
  uint8_t rem;    /* R, E and M bits of octet 1 */
  uint8_t opcode; /* low 5 bits of octet 1 */
  uint16_t sequence, status, associd, offset, count;
  const uint8_t *data; /* count octets (points into the request) */
  PKT_Trailer mac;     /* has_mac, key_id, mac_offset, digest_len: what KEY_Verify reads */
} CTW_Header;

typedef enum {
  CTW_PARSE_OK = 0,
  CTW_PARSE_SHORT,    /* fewer than 12 octets: drop */
  CTW_PARSE_MODE,     /* not mode 6: drop */
  CTW_PARSE_RESPONSE, /* R, E or M set, or offset != 0: drop, never answer (bug 1331) */
  CTW_PARSE_VERSION,  /* version outside 1..4: drop */
  CTW_PARSE_LENGTH,   /* length not a multiple of 4: answer CTW_ERR_BADFMT */
  CTW_PARSE_COUNT,    /* count above the data present or above 468: CTW_ERR_BADFMT */
} CTW_ParseResult;

/* Decode and check a request, in the order above (h is filled as far as it got). A MAC is
 * recognised after the data padded to 8 octets (what ntpq sends) or, failing that, to 4
 * octets (what ntpd's own check accepts): a trailer of exactly 4 + 16 or 4 + 20 octets.
 * Any other trailer is ignored: the request is then simply unauthenticated. */
CTW_ParseResult CTW_ParseRequest(const uint8_t *buf, size_t len, CTW_Header *h);

/* One item of a request's text: "name" or "name=value", separated by commas. Whitespace
 * around names and values is skipped. Neither is NUL-terminated. */
typedef struct {
  const char *name;
  size_t name_len;
  const char *value; /* NULL without '=' */
  size_t value_len;
} CTW_Item;

/* Next item from *p (advanced past it) up to end. False at the end of the text. */
bool CTW_NextItem(const char **p, const char *end, CTW_Item *it);
/* Does the item's name equal s? */
bool CTW_ItemIs(const CTW_Item *it, const char *s);

/* ------------------------------------------------------------------------------------ */
/* Responses                                                                             */

typedef struct {
  size_t count; /* datagrams to send, in order */
  size_t len[CTW_MAX_FRAGS];
  uint8_t buf[CTW_MAX_FRAGS][CTW_MAX_DATAGRAM];
} CTW_Datagrams;

/* Builds the data of a response straight into the data areas of out's datagrams, as one
 * stream split every 468 octets (an item may straddle two datagrams, as in ntpd). */
typedef struct {
  CTW_Datagrams *out;
  size_t pos;    /* data octets written */
  size_t cap;    /* limit on pos */
  int line;      /* octets on the current text line */
  bool text;     /* text was written: end with "\r\n" as ntpd does */
  bool any;      /* an item was written: the next one needs a separator */
  bool overflow; /* something did not fit (and was not written) */
} CTW_Writer;

/* Start a response of at most max_frags datagrams (1..CTW_MAX_FRAGS). */
void CTW_WriterInit(CTW_Writer *w, CTW_Datagrams *out, size_t max_frags);
/* Binary data (no separators). False (nothing written) if it does not fit. */
bool CTW_PutBytes(CTW_Writer *w, const void *data, size_t n);
/* A text item: ", " before it (",\r\n" when the line would reach 72 columns), then the
 * item. False (nothing written, overflow set) if it does not fit. */
bool CTW_PutItem(CTW_Writer *w, const char *item);
/* name=value items in ntpd's formats. */
bool CTW_PutUint(CTW_Writer *w, const char *name, uint64_t v);               /* 123 */
bool CTW_PutInt(CTW_Writer *w, const char *name, int64_t v);                 /* -20 */
bool CTW_PutHex(CTW_Writer *w, const char *name, uint64_t v);                /* 0x1f */
bool CTW_PutDouble(CTW_Writer *w, const char *name, int decimals, double v); /* 1.500 */
/* 0xe1234567.80000000 */
bool CTW_PutStamp(CTW_Writer *w, const char *name, NTT_Stamp ts);
bool CTW_PutString(CTW_Writer *w, const char *name, const char *s); /* name="s" */
bool CTW_PutRaw(CTW_Writer *w, const char *name, const char *s);    /* name=s */

/* What every datagram of a reply carries. */
typedef struct {
  uint8_t leap;    /* our leap indicator */
  uint8_t version; /* the request's */
  uint8_t opcode;
  uint16_t sequence, status, associd;
  /* Sign with this key (sign non-NULL): what an authenticated request gets back. */
  CTW_SignFn sign;
  const KEY_Table *keys;
  uint32_t key_id;
} CTW_Reply;

/* Turn the written data into datagrams: headers, R bit, M on all but the last, offsets,
 * counts, zero padding to 4 octets, and with r->sign the padding to 8 and the MAC (a
 * datagram the signer refuses goes out unsigned). Always at least one datagram. */
void CTW_Finish(CTW_Writer *w, const CTW_Reply *r);
/* Replace out's contents with one error reply (12 octets, plus a MAC when signing). */
void CTW_SetError(CTW_Datagrams *out, const CTW_Reply *r, uint8_t err);
/* Sum of the datagram lengths. */
size_t CTW_TotalLen(const CTW_Datagrams *out);

/* ------------------------------------------------------------------------------------ */
/* Client side: reassembly                                                               */

typedef enum {
  CTW_RA_OK = 0,
  CTW_RA_SERVER_ERROR, /* an error reply: *status >> 8 is the code */
  CTW_RA_BAD_HEADER,   /* not a mode 6 response, or another sequence/opcode */
  CTW_RA_BAD_PADDING,  /* a datagram length that is not a multiple of 4 */
  CTW_RA_BAD_COUNT,    /* count above the octets present */
  CTW_RA_BAD_MAC,      /* expected a MAC (mac_len > 0) and the trailer is not that size */
  CTW_RA_GAP,          /* offsets leave a hole or overlap */
  CTW_RA_NO_LAST,      /* no datagram without M, or one before the end */
  CTW_RA_TOO_LONG,     /* more data than cap */
} CTW_ReassembleResult;

/* Reassemble n datagrams (in any order) of the response to (sequence, opcode) into
 * data[0..cap), as ntpq does. mac_len: the MAC trailer each datagram must carry after its
 * data padded to 8 octets (0: none expected, any trailer ignored). */
CTW_ReassembleResult CTW_Reassemble(const uint8_t *const *dgrams, const size_t *lens, size_t n,
                                    uint16_t sequence, uint8_t opcode, size_t mac_len,
                                    uint8_t *data, size_t cap, size_t *data_len,
                                    uint16_t *status);

#endif
