/* packet: the NTP wire codec (RFC 5905 header, RFC 7822 extension fields and MAC framing),
 * decoded and encoded field by field -- never by struct overlay. Pure and allocation-free;
 * every function is safe on any input bytes and length. */
#ifndef NTPG_PACKET_H
#define NTPG_PACKET_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "netaddr.h"
#include "ntptime.h"

#define PKT_HEADER_LEN 48
#define PKT_MAX_LEN 1500 /* largest datagram we read or build */
#define PKT_VERSION 4

enum { PKT_LEAP_NONE = 0, PKT_LEAP_ADD = 1, PKT_LEAP_DEL = 2, PKT_LEAP_UNSYNC = 3 };
enum {
  PKT_MODE_RESERVED = 0,
  PKT_MODE_ACTIVE = 1,
  PKT_MODE_PASSIVE = 2,
  PKT_MODE_CLIENT = 3,
  PKT_MODE_SERVER = 4,
  PKT_MODE_BROADCAST = 5,
  PKT_MODE_CONTROL = 6,
  PKT_MODE_PRIVATE = 7
};

typedef struct {
  uint8_t leap, version, mode; /* octet 0 split into its fields */
  uint8_t stratum;
  int8_t poll, precision;
  NTT_Short root_delay, root_disp;
  uint32_t refid; /* host order of the four octets as read big-endian */
  NTT_Stamp ref_ts, org_ts, rx_ts, tx_ts;
} PKT_Header;

/* What follows the 48-octet header. */
typedef enum {
  PKT_TRAILER_OK = 0,
  PKT_TRAILER_SHORT,   /* fewer than 48 octets */
  PKT_TRAILER_ALIGN,   /* total length not a multiple of 4 */
  PKT_TRAILER_BAD_EF,  /* an extension field with a bad length */
  PKT_TRAILER_BAD_MAC, /* trailer of a size that is neither EF nor MAC */
} PKT_TrailerStatus;

#define PKT_MAX_EF 8
typedef struct {
  uint16_t type;
  uint16_t length; /* whole field in octets, header and padding included */
  uint16_t offset; /* from the start of the datagram */
} PKT_Ef;

typedef struct {
  uint8_t ef_count; /* extension fields found (at most PKT_MAX_EF are described) */
  PKT_Ef ef[PKT_MAX_EF];
  bool has_mac;        /* a key id + digest follows the header/EFs */
  bool crypto_nak;     /* exactly 4 zero octets after the header */
  uint32_t key_id;     /* when has_mac */
  uint16_t mac_offset; /* offset of the key id; also the length that the digest covers */
  uint16_t digest_len; /* 16 (MD5/CMAC) or 20 (SHA1) */
} PKT_Trailer;

/* First-octet peeks, valid for any length >= 1. */
static inline int
PKT_PeekMode(const uint8_t *buf)
{
  return buf[0] & 7;
}
static inline int
PKT_PeekVersion(const uint8_t *buf)
{
  return (buf[0] >> 3) & 7;
}

/* Decode the header of buf (len must be >= PKT_HEADER_LEN, else false). */
bool PKT_DecodeHeader(const uint8_t *buf, size_t len, PKT_Header *h);
/* Encode h into the first 48 octets of buf. */
void PKT_EncodeHeader(const PKT_Header *h, uint8_t *buf);
/* Walk what follows the header (RFC 7822 section 7): NTPv4 may carry extension fields before an
 * optional MAC; v1-v3 only a MAC. Fills t even on failure as far as it got. */
PKT_TrailerStatus PKT_ParseTrailer(const uint8_t *buf, size_t len, PKT_Trailer *t);
const char *PKT_TrailerStatusName(PKT_TrailerStatus s);

/* Reference ids. */
uint32_t PKT_RefidFromCode(const char *code);      /* up to 4 ASCII chars, zero padded */
void PKT_RefidToCode(uint32_t refid, char out[5]); /* printable code or "" */
uint32_t PKT_RefidFromAddr(const NetAddr *a); /* IPv4 address, or first 4 MD5 octets of v6 */

/* Big-endian helpers shared by other wire codecs (mode 6, MACs). */
static inline uint16_t
PKT_Get16(const uint8_t *p)
{
  return (uint16_t)((p[0] << 8) | p[1]);
}
static inline uint32_t
PKT_Get32(const uint8_t *p)
{
  return ((uint32_t)p[0] << 24) | ((uint32_t)p[1] << 16) | ((uint32_t)p[2] << 8) | p[3];
}
static inline uint64_t
PKT_Get64(const uint8_t *p)
{
  return ((uint64_t)PKT_Get32(p) << 32) | PKT_Get32(p + 4);
}
static inline void
PKT_Put16(uint8_t *p, uint16_t v)
{
  p[0] = (uint8_t)(v >> 8);
  p[1] = (uint8_t)v;
}
static inline void
PKT_Put32(uint8_t *p, uint32_t v)
{
  p[0] = (uint8_t)(v >> 24);
  p[1] = (uint8_t)(v >> 16);
  p[2] = (uint8_t)(v >> 8);
  p[3] = (uint8_t)v;
}
static inline void
PKT_Put64(uint8_t *p, uint64_t v)
{
  PKT_Put32(p, (uint32_t)(v >> 32));
  PKT_Put32(p + 4, (uint32_t)v);
}

#endif
