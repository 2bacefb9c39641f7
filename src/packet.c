/* packet: NTP wire codec. Every read is bounds-checked against the caller's length first;
 * nothing here trusts a length field taken from the packet. */
#include "packet.h"

#include <string.h>

#include <openssl/evp.h>

#define MAC_MD5_LEN 20  /* key id + 16-octet digest (MD5, AES-128-CMAC) */
#define MAC_SHA1_LEN 24 /* key id + 20-octet digest (SHA-1); RFC 7822 caps v4 MACs here */
#define KEY_ID_LEN 4
#define CRYPTO_NAK_LEN 4
#define EF_MIN_LEN 16 /* RFC 7822: smallest extension field */
/* RFC 7822: the last EF when no MAC follows, so that it cannot pass for a MAC. */
#define EF_LAST_MIN_LEN 28

bool
PKT_DecodeHeader(const uint8_t *buf, size_t len, PKT_Header *h)
{
  if (!buf || len < PKT_HEADER_LEN)
    return false;
  h->leap = (uint8_t)(buf[0] >> 6);
  h->version = (uint8_t)((buf[0] >> 3) & 7);
  h->mode = (uint8_t)(buf[0] & 7);
  h->stratum = buf[1];
  /* int8 fields via arithmetic: converting 128..255 straight to int8_t is not portable. */
  h->poll = (int8_t)((int)buf[2] - (buf[2] & 0x80 ? 256 : 0));
  h->precision = (int8_t)((int)buf[3] - (buf[3] & 0x80 ? 256 : 0));
  h->root_delay = PKT_Get32(buf + 4);
  h->root_disp = PKT_Get32(buf + 8);
  h->refid = PKT_Get32(buf + 12);
  h->ref_ts = PKT_Get64(buf + 16);
  h->org_ts = PKT_Get64(buf + 24);
  h->rx_ts = PKT_Get64(buf + 32);
  h->tx_ts = PKT_Get64(buf + 40);
  return true;
}

void
PKT_EncodeHeader(const PKT_Header *h, uint8_t *buf)
{
  buf[0] = (uint8_t)(((h->leap & 3) << 6) | ((h->version & 7) << 3) | (h->mode & 7));
  buf[1] = h->stratum;
  buf[2] = (uint8_t)h->poll;
  buf[3] = (uint8_t)h->precision;
  PKT_Put32(buf + 4, h->root_delay);
  PKT_Put32(buf + 8, h->root_disp);
  PKT_Put32(buf + 12, h->refid);
  PKT_Put64(buf + 16, h->ref_ts);
  PKT_Put64(buf + 24, h->org_ts);
  PKT_Put64(buf + 32, h->rx_ts);
  PKT_Put64(buf + 40, h->tx_ts);
}

/* Record the MAC that occupies the last `rem` octets of a `len`-octet datagram. */
static void
take_mac(const uint8_t *buf, size_t len, size_t rem, PKT_Trailer *t)
{
  size_t off = len - rem;

  t->has_mac = true;
  t->mac_offset = (uint16_t)off;
  t->key_id = PKT_Get32(buf + off);
  t->digest_len = (uint16_t)(rem - KEY_ID_LEN);
}

static bool
is_mac_size(size_t rem)
{
  return rem == MAC_MD5_LEN || rem == MAC_SHA1_LEN;
}

/* A key id and a whole SHA-256/384/512 digest, as ntpdig and chrony send with SHA-2 keys.
 * Taken as a MAC only where the trailer cannot be extension fields. */
static bool
is_long_mac_size(size_t rem)
{
  return rem == KEY_ID_LEN + 32 || rem == KEY_ID_LEN + 48 || rem == KEY_ID_LEN + 64;
}

/* The trailer is exactly four zero octets: a crypto-NAK (key id 0, no digest). */
static bool
is_crypto_nak(const uint8_t *buf, size_t len)
{
  return len - PKT_HEADER_LEN == CRYPTO_NAK_LEN && PKT_Get32(buf + PKT_HEADER_LEN) == 0;
}

/* Check the extension field at `off` (with `rem` octets left, rem >= 28) and describe it. */
static bool
take_ef(const uint8_t *buf, size_t off, size_t rem, PKT_Trailer *t, size_t *ef_len)
{
  size_t length = PKT_Get16(buf + off + 2);

  /* Length >= 16 also guarantees the walk always advances. */
  if (length % 4 != 0 || length < EF_MIN_LEN || length > rem)
    return false;
  if (t->ef_count < PKT_MAX_EF) {
    PKT_Ef *ef = &t->ef[t->ef_count];
    ef->type = PKT_Get16(buf + off);
    ef->length = (uint16_t)length;
    ef->offset = (uint16_t)off;
  }
  t->ef_count++;
  *ef_len = length;
  return true;
}

/* NTPv4 (RFC 7822 section 7, RFC 5905 section 7.5): extension fields, then optional MAC. A trailer of 20 or 24 octets
 * is always the MAC, so an EF that ends the packet must reach 28 octets; together these make
 * the split unambiguous. */
static PKT_TrailerStatus
walk_v4(const uint8_t *buf, size_t len, PKT_Trailer *t)
{
  size_t off = PKT_HEADER_LEN;

  while (off < len) {
    size_t rem = len - off, ef_len;
    if (is_mac_size(rem)) {
      take_mac(buf, len, rem, t);
      return PKT_TRAILER_OK;
    }
    if (rem < EF_LAST_MIN_LEN)
      return PKT_TRAILER_BAD_MAC;
    if (!take_ef(buf, off, rem, t, &ef_len)) {
      if (!is_long_mac_size(rem))
        return PKT_TRAILER_BAD_EF;
      take_mac(buf, len, rem, t);
      return PKT_TRAILER_OK;
    }
    off += ef_len;
  }
  return PKT_TRAILER_OK;
}

/* NTPv1-3 have no extension fields: whatever follows the header must be a whole MAC. */
static PKT_TrailerStatus
walk_legacy(const uint8_t *buf, size_t len, PKT_Trailer *t)
{
  size_t rem = len - PKT_HEADER_LEN;

  if (rem == 0)
    return PKT_TRAILER_OK;
  if (!is_mac_size(rem) && !is_long_mac_size(rem))
    return PKT_TRAILER_BAD_MAC;
  take_mac(buf, len, rem, t);
  return PKT_TRAILER_OK;
}

PKT_TrailerStatus
PKT_ParseTrailer(const uint8_t *buf, size_t len, PKT_Trailer *t)
{
  memset(t, 0, sizeof(*t));
  if (!buf || len < PKT_HEADER_LEN)
    return PKT_TRAILER_SHORT;
  if (len % 4 != 0)
    return PKT_TRAILER_ALIGN;
  /* Nothing this long is ever read or sent; refusing it also keeps every offset in uint16. */
  if (len > PKT_MAX_LEN)
    return PKT_TRAILER_BAD_MAC;
  if (is_crypto_nak(buf, len)) {
    t->crypto_nak = true;
    return PKT_TRAILER_OK;
  }
  /* Versions above 4 are not ours to reject (the caller checks VN); give them v4 rules. */
  if (PKT_PeekVersion(buf) >= PKT_VERSION)
    return walk_v4(buf, len, t);
  return walk_legacy(buf, len, t);
}

const char *
PKT_TrailerStatusName(PKT_TrailerStatus s)
{
  switch (s) {
    case PKT_TRAILER_OK:
      return "ok";
    case PKT_TRAILER_SHORT:
      return "short";
    case PKT_TRAILER_ALIGN:
      return "align";
    case PKT_TRAILER_BAD_EF:
      return "bad-ef";
    case PKT_TRAILER_BAD_MAC:
      return "bad-mac";
  }
  return "unknown";
}

uint32_t
PKT_RefidFromCode(const char *code)
{
  uint8_t octets[4] = {0, 0, 0, 0};

  for (int i = 0; code && i < 4 && code[i] != '\0'; i++)
    octets[i] = (uint8_t)code[i];
  return PKT_Get32(octets);
}

static bool
is_code_char(uint8_t c)
{
  return c > 0x20 && c < 0x7f; /* printable ASCII, no space */
}

void
PKT_RefidToCode(uint32_t refid, char out[5])
{
  uint8_t octets[4];
  int n = 0;

  PKT_Put32(octets, refid);
  while (n < 4 && is_code_char(octets[n]))
    n++;
  /* A code is at least one printable char followed only by zero padding; anything else
   * (an address, a hash) is not printed as text. */
  for (int i = n; i < 4; i++) {
    if (octets[i] != 0)
      n = 0;
  }
  memcpy(out, octets, (size_t)n);
  out[n] = '\0';
}

/* First four octets of MD5 over the 16-octet address, in digest order (RFC 5905 section 7.3, refid of an IPv6 reference). */
static uint32_t
refid_from_v6(const uint8_t bytes[16])
{
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned int md_len = 0;

  /* MD5 may be unavailable (e.g. a FIPS provider); 0 then means "no refid". */
  if (!EVP_Digest(bytes, 16, md, &md_len, EVP_md5(), NULL) || md_len < 4)
    return 0;
  return PKT_Get32(md);
}

uint32_t
PKT_RefidFromAddr(const NetAddr *a)
{
  if (!a)
    return 0;
  switch (a->family) {
    case ADR_INET4:
      return PKT_Get32(a->bytes);
    case ADR_INET6:
      return refid_from_v6(a->bytes);
    default:
      return 0;
  }
}
